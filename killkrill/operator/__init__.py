"""KillKrill operator."""
