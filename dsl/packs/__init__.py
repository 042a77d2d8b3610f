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
    # the editor's style classes (bpllm_tui/widgets/dsl_editor.py TOKEN_STYLES): keyword string arrow node
    # number const param pin punct type dtype; "" = the name of the regex's named group that matched
    token: str
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
    # header keys whose name is only a label: dedup and leakage compare graphs without it ("BLUEPRINT",
    # "MATERIAL"); a GROUP's name is not one (materials call groups by name)
    anonymous_headers: tuple[str, ...] = ()

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

    def catalog(self) -> Any | None:
        """The language's dsl.catalog.Catalog when it has one (None: the pack checks texts its own way)."""
        return None

    def node_names(self) -> list[str]:
        """Every node type name (the tiny base may give each one token; `bpllm languages` counts them)."""
        cat = self.catalog()
        return list(cat.nodes) if cat is not None else []

    # -- the language ---------------------------------------------------------------------------
    def validate(self, text: str, *, unknown_nodes: str = "error") -> "list[Diagnostic]":
        """Every problem of a text as positioned diagnostics (syntax and semantics); never raises.

        ``unknown_nodes``: the workspace's ``[dsl] unknown_nodes`` policy ("error" or "warning")."""
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

    def synthesize(self, count: int, seed: int, focus_nodes: list[str] | None = None) -> list[dict[str, str]]:
        """``count`` rows ``{"instruction", "output"}`` covering the catalog, deterministic for a seed.

        ``focus_nodes``: only rows built around these node types (grading's drafted lessons)."""
        raise NotImplementedError

    def constraint(self, unknown_nodes: str = "error") -> Callable[[], Any] | None:
        """A factory of fresh catalog-aware prefix checkers (dsl.constraint.ConstraintState-like), or None
        when the pack has none: constrained decoding then keeps to the grammar alone."""
        return None

    def references(self, text: str) -> tuple[str | None, frozenset[str]]:
        """(the name this text defines for other texts to call, the names it calls): a Blender node group
        and the groups a material uses. Dedup never drops a definition a kept row calls. Default: none."""
        return None, frozenset()

    def tool_check_args(self) -> list[str] | None:
        """`bpllm` arguments that judge lesson and dataset files with the language's own tool (the
        Blender pack: build every text in Blender), ending before the file paths; step 2.2 runs them in
        a child process and quarantines the rows the tool rejects. None: no such tool installed here."""
        return None

    def exam_preview_args(self, workspace: str, version: str) -> list[str] | None:
        """`bpllm` arguments that picture a version's exam answers beside their golds and print a JSON
        summary (rendered, cached, failed); step 6.6 runs them in a child process. None: no pictures here."""
        return None

    def has(self, method: str) -> bool:
        """Whether this pack overrides METHOD (what `bpllm languages` reports as provided)."""
        return getattr(type(self), method, None) is not getattr(LanguagePack, method, None)

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


_GENERATION = [0]  # bumped whenever the set of packs changes (callers cache what they derive from it)


def register(pack: LanguagePack) -> None:
    """Add a pack at run time (tests, plugins that are not installed as distributions)."""
    _EXTRA[pack.name] = pack
    load.cache_clear()
    _GENERATION[0] += 1


def unregister(name: str) -> None:
    """Remove a pack added with register (tests clean up after themselves)."""
    _EXTRA.pop(name, None)
    load.cache_clear()
    _GENERATION[0] += 1


def generation() -> int:
    return _GENERATION[0]


_ANONYMOUS: dict[int, tuple[str, ...]] = {}


def anonymous_headers() -> tuple[str, ...]:
    """Every loadable pack's anonymous header keys (cached until the set of packs changes)."""
    gen = generation()
    if gen not in _ANONYMOUS:
        _ANONYMOUS.clear()
        _ANONYMOUS[gen] = tuple(sorted({k for p in all_packs() for k in p.anonymous_headers}))
    return _ANONYMOUS[gen]


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


_FAILED: dict[str, str] = {}


def load_errors() -> dict[str, str]:
    """name -> why it did not load, for the packs ``all_packs`` skipped (`bpllm languages` shows them)."""
    return dict(_FAILED)


def all_packs() -> Iterable[LanguagePack]:
    """Every pack that loads; one that fails is skipped here and listed by load_errors()."""
    for n in names():
        try:
            yield load(n)
        except Exception as exc:  # noqa: BLE001 - a broken pack must not break the others; load_errors() reports it
            _FAILED[n] = f"{type(exc).__name__}: {exc}"


def for_text(text: str, default: str = DEFAULT_LANGUAGE) -> LanguagePack:
    """The pack whose header the text starts with, else DEFAULT."""
    for pack in all_packs():
        if pack.detect(text):
            return pack
    return load(default)
