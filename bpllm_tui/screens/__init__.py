"""Screens of the app (one TCSS file each under styles/)."""
