"""KillKrill receivers."""
