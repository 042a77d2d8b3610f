"""Dashboard and editor widgets, one per file."""
