"""TCSS stylesheets, one per screen."""
