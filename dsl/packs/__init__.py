"""Language packs: everything that makes one node-graph language differ from another.

``dsl/`` core is language-neutral (grammar machinery, diagnostics, the typed graph, the catalog
model, the structural scorer). A *pack* supplies the rest: its grammar file and catalog data, its
validation rules, formatter, synthetic generator, importers/exporters, starter lessons, system
prompt, the tiny base's vocabulary and the editor's syntax colours. docs/languages.md says how to
write one.

Packs are found through the entry-point group ``bpllm.languages`` (``name = "module:OBJECT"``,
OBJECT a :class:`LanguagePack` instance); the built-in ones are listed in ``BUILTIN`` so a source
checkout works without an install. Listing packs imports only the pack modules, never their
heavy parts (bpy, torch): those load inside the methods that need them.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any, Callable, Iterable

from dsl.errors import BpllmError

if TYPE_CHECKING:
    from dsl.ast import Diagnostic

ENTRY_POINT_GROUP = "bpllm.languages"
DEFAULT_LANGUAGE = "blueprint"

# name -> "module:OBJECT" for the packs shipped with bpllm (also declared as entry points in pyproject)
BUILTIN: dict[str, str] = {
    "blueprint": "dsl.packs.blueprint:PACK",
    "blender-material": "dsl.packs.blender_material:PACK",
}


class UnknownLanguage(BpllmError, LookupError):
    """A language name no installed pack provides."""


@dataclass(frozen=True, slots=True)
class PackCommand:
    """A CLI command a pack adds (``import-t3d``, ``import-blend``): registered like engine/cli modules."""

    name: str
    module: str  # exposes register(subparsers) adding this command
    help: str


@dataclass(frozen=True, slots=True)
class Highlight:
    """One syntax-colour rule for the lesson editor: a regex, its group (0 = whole match) and a token class."""

    pattern: str
    token: str  # keyword | header | node_id | type | pin | string | number | comment | operator
    group: int = 0


@dataclass
class LanguagePack:
    """What one language provides. Subclass it and override the methods; attributes are plain data.

    Everything the engine and the TUI need that differs per language goes through one of these
    methods, so adding a language never touches ``dsl/`` core or ``engine/``.
    """

    name: str  # registry key, recorded in bpllm.toml as `language = NAME`
    title: str  # one line for `bpllm languages`
    header_keys: tuple[str, ...]  # first keywords that identify a text of this language ("BLUEPRINT")
    suffixes: tuple[str, ...] = (".dsl",)
    commands: tuple[PackCommand, ...] = ()
    highlights: tuple[Highlight, ...] = ()
    provides: dict[str, str] = field(default_factory=dict)  # what -> short description, for `bpllm languages`

    # -- data -----------------------------------------------------------------------------------
    def root(self) -> Traversable:
        """The pack's folder of data files (grammar, catalog, starter/)."""
        raise NotImplementedError

    def grammar_text(self) -> str:
        """The Lark grammar (llguidance-compatible subset) used for parsing and constrained decoding."""
        raise NotImplementedError

    def system_prompt(self) -> str:
        raise NotImplementedError

    def starter_dir(self) -> Traversable:
        """Starter workspace content: lessons/*.json, datasets/*.jsonl (copied by `bpllm init`)."""
        raise NotImplementedError

    def vocabulary(self) -> list[str]:
        """Words the tiny base must know (node types, pins, params, keywords): added to its tokenizer."""
        raise NotImplementedError

    # -- the language ---------------------------------------------------------------------------
    def validate(self, text: str) -> "list[Diagnostic]":
        """Every problem of a text as positioned diagnostics (syntax and semantics); never raises."""
        raise NotImplementedError

    def format(self, text: str) -> str:
        """The canonical form of a text (raises dsl.formatter.FormatError when it does not parse)."""
        raise NotImplementedError

    def score(self, expected: str, actual: str) -> Any:
        """Structural score (dsl.scorer.ScoreResult) of ACTUAL against EXPECTED."""
        raise NotImplementedError

    def node_types(self, text: str) -> list[str]:
        """Canonical node type of every node of a text, in order (grading and mastery)."""
        raise NotImplementedError

    def synthesize(self, count: int, seed: int) -> list[dict[str, str]]:
        """``count`` rows ``{"instruction", "output"}`` covering the catalog, deterministic for a seed."""
        raise NotImplementedError

    def constraint(self) -> Callable[[], Any] | None:
        """A factory for a catalog-aware prefix checker (dsl.constraint.ConstraintState-like) or None."""
        return None

    def detect(self, text: str) -> bool:
        """True when the text's first statement is one of this language's headers."""
        for line in text.splitlines():
            s = line.strip()
            if not s or s.startswith(("//", "#")):
                continue
            return any(re.match(rf"{re.escape(k)}\s*:", s) for k in self.header_keys)
        return False


def _entry_points() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


_EXTRA: dict[str, LanguagePack] = {}


def register(pack: LanguagePack) -> None:
    """Add a pack at run time (tests, plugins that are not installed as distributions)."""
    _EXTRA[pack.name] = pack
    load.cache_clear()


def names() -> list[str]:
    return sorted(set(_entry_points()) | set(_EXTRA))


@lru_cache(maxsize=None)
def load(name: str) -> LanguagePack:
    """The pack called NAME (UnknownLanguage with the installed names when there is none)."""
    if name in _EXTRA:
        return _EXTRA[name]
    target = _entry_points().get(name)
    if target is None:
        raise UnknownLanguage(f"unknown language {name!r}; installed: {', '.join(names())}")
    module, _, obj = target.partition(":")
    pack = getattr(importlib.import_module(module), obj or "PACK")
    if not isinstance(pack, LanguagePack):
        raise UnknownLanguage(f"{target} is not a LanguagePack")
    return pack


def all_packs() -> Iterable[LanguagePack]:
    for n in names():
        yield load(n)


def for_text(text: str, default: str = DEFAULT_LANGUAGE) -> LanguagePack:
    """The pack whose header the text starts with, else DEFAULT."""
    for pack in all_packs():
        if pack.detect(text):
            return pack
    return load(default)
