"""Development tools (not installed with the hub)."""
