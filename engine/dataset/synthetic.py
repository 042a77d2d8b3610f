"""Blueprint's synthetic generator, kept importable at its old path.

The generator is Blueprint data and lives in its pack (``dsl.packs.blueprint.synthetic``); the
engine asks the workspace's pack (``LanguagePack.synthesize``) so another language brings its own.
"""
from __future__ import annotations

from dsl.packs.blueprint.synthetic import (  # noqa: F401
    GENERATOR_VERSION,
    Generator,
    coverage_report,
    generate,
    templates_for,
    words,
)
