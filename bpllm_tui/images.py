"""Material previews in the review: pictures where the terminal can draw them, PNG paths elsewhere.

textual-image picks sixel, the kitty graphics protocol or coloured half blocks for the terminal it
runs in, but it can only ask the terminal what it supports before Textual takes the terminal over:
:func:`prepare` imports it from ``main`` first. In the browser (``bpllm-tui --serve``, where the app's
driver is the web driver) nothing can be drawn that way, so the review shows the PNG paths, as it
does without textual-image or with ``BPLLM_TUI_IMAGES=0``.
"""
from __future__ import annotations

import os
import sys
from typing import Any

ENV = "BPLLM_TUI_IMAGES"  # "0": never draw pictures (serve mode sets it for the app it launches)


def _disabled() -> bool:
    return os.environ.get(ENV, "").strip() == "0"


def _stdout_is_tty() -> bool:
    out = sys.__stdout__
    try:
        return bool(out and out.isatty())
    except ValueError:  # a closed stdout
        return False


def prepare() -> None:
    """Load textual-image while the terminal can still answer its capability queries."""
    if _disabled():
        return
    try:
        import textual_image.widget  # noqa: F401, PLC0415 - queries the terminal on import
    except (ImportError, OSError):  # not installed, or a terminal that does not answer: paths instead
        return


def image_class(app: Any) -> type | None:
    """textual-image's widget class for APP, or None when pictures cannot be shown there."""
    if _disabled() or getattr(app, "is_web", False):
        return None
    module = sys.modules.get("textual_image.widget")
    if module is None:
        if _stdout_is_tty():  # not prepared: importing now would query a terminal Textual owns
            return None
        try:  # no terminal to ask (tests, pipes): textual-image falls back on its own
            import textual_image.widget as module  # noqa: PLC0415
        except ImportError:
            return None
    return getattr(module, "Image", None)
