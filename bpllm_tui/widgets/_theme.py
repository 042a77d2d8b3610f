"""Resolve ``$accent``-style theme variables inside Rich style strings, so hand-drawn
widgets follow the theme switch like CSS-styled ones do."""
from __future__ import annotations

import re

from rich.style import Style
from textual.app import App

_VAR = re.compile(r"\$([a-z][a-z0-9-]*)")


def themed(app: App, spec: str) -> Style:
    if not spec:
        return Style.null()
    variables = app.theme_variables

    def sub(match: re.Match[str]) -> str:
        value = variables.get(match.group(1), "")
        return value if value.startswith("#") else "default"

    try:
        return Style.parse(_VAR.sub(sub, spec))
    except Exception:  # noqa: BLE001 - an odd theme value must never break a repaint: unstyled text instead
        return Style.null()


def tint(app: App, name: str, amount: float = 0.3) -> str:
    """A theme colour blended into the background (for line backgrounds that keep text readable)."""
    from textual.color import Color, ColorParseError

    variables = app.theme_variables
    try:
        colour = Color.parse(variables.get(name, "#888888"))
        background = Color.parse(variables.get("background", "#000000"))
    except ColorParseError:  # a theme without this colour: the terminal's default
        return "default"
    return background.blend(colour, amount).hex
