"""KillKrill workers."""
