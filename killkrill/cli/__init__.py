"""KillKrill cli."""
