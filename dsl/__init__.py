"""Blueprint DSL: grammar, parser, catalog, validator, formatter and structural scorer.

The headless truth layer: no torch, no textual. Import the pieces lazily from
their modules (``dsl.parser.parse``, ``dsl.validator.validate``,
``dsl.formatter.format_dsl``, ``dsl.scorer.score``); the names below re-export them.
"""
from __future__ import annotations

from typing import Any

__all__ = ["parse", "validate", "format_dsl", "score", "default_catalog"]


def __getattr__(name: str) -> Any:
    if name == "parse":
        from .parser import parse
        return parse
    if name == "validate":
        from .validator import validate
        return validate
    if name == "format_dsl":
        from .formatter import format_dsl
        return format_dsl
    if name == "score":
        from .scorer import score
        return score
    if name == "default_catalog":
        from .catalog import default_catalog
        return default_catalog
    raise AttributeError(name)
