"""Headless teaching-loop engine (no textual)."""
