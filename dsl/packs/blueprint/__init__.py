"""The Blueprint pack: Unreal Engine 5 Blueprint DSL, the first language bpllm teaches.

Its data sits beside this file (found with ``importlib.resources``): ``grammar.lark``,
``catalog.json`` (node types, pins, params), ``catalog_ue.json`` (the Unreal clipboard mapping),
``starter/`` (what `bpllm init` copies). The language itself is the shared machinery of ``dsl/``
(parser, catalog-driven validator, formatter, structural scorer) run with this catalog; this module
only binds them, importing each lazily so listing packs stays cheap.
"""
from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Callable

from dsl.packs import Highlight, LanguagePack, PackCommand

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

# The lesson editor's colours, in the order they are laid on (a later rule wins where two overlap).
# token "" = the name of the regex group that matched (one alternation, so a string's inside is a string).
HIGHLIGHTS = (
    Highlight(r"^\s*(BLUEPRINT|PARENT|CATEGORY|VAR|GRAPH|NODE|EXEC|DATA)\b", "keyword", 1),
    Highlight(
        r'(?P<string>"(?:[^"\\\n]|\\.)*"?)'
        r"|(?P<arrow>->)"
        r"|(?P<node>\bn[0-9]+\b)"
        r"|(?P<number>-?\b[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\b)"
        r"|(?P<const>\b(?:true|false|None)\b)"
        r"|(?P<param>\b[A-Za-z_][A-Za-z0-9_]*(?=\s*=))"
        r"|(?P<pin>(?<=\.)[A-Za-z_][A-Za-z0-9_]*)"
        r"|(?P<punct>[\[\]():,=<>.])",
        "",
    ),
    Highlight(rf"^\s*NODE\s+n[0-9]+\s*:\s*({_IDENT})", "type", 1),
    Highlight(rf"^\s*VAR\s+{_IDENT}\s*:\s*([A-Za-z_][A-Za-z0-9_<>, ]*)", "dtype", 1),
    Highlight(r"^\s*DATA\b.*\[\s*([A-Za-z_][A-Za-z0-9_<>, ]*)\]\s*$", "dtype", 1),
)


class BlueprintPack(LanguagePack):
    """Blueprint DSL through dsl/'s parser, validator, formatter and scorer with the Blueprint catalog."""

    def root(self) -> Traversable:
        return resources.files(__name__)

    def grammar_text(self) -> str:
        from dsl.parser import grammar_text

        return grammar_text()

    def catalog(self) -> Any:
        from dsl.catalog import default_catalog

        return default_catalog()

    def system_prompt(self) -> str:
        return (self.starter_dir() / "system_prompt.txt").read_text(encoding="utf-8").strip()

    def starter_dir(self) -> Traversable:
        return self.root() / "starter"

    def vocabulary(self) -> list[str]:
        """Every node type, pin, param and alias name of the catalog (the tiny base's tokenizer words)."""
        cat = self.catalog()
        words: list[str] = []
        for name, spec in cat.nodes.items():
            words.append(name)
            words.extend(p.name for p in spec.pins)
            words.extend(p.name for p in spec.params)
        words.extend(getattr(cat, "node_aliases", {}).keys())
        return words

    def node_names(self) -> list[str]:
        return list(self.catalog().nodes)

    def validate(self, text: str, *, unknown_nodes: str = "error") -> list:
        from dsl.validator import validate

        return validate(text, unknown_nodes=unknown_nodes)

    def format(self, text: str) -> str:
        from dsl.formatter import format_dsl

        return format_dsl(text)

    def score(self, expected: str, actual: str) -> Any:
        from dsl.scorer import score

        return score(expected, actual)

    def node_types(self, text: str) -> list[str]:
        from dsl.parser import parse

        cat = self.catalog()
        return [cat.canonical_node_type(n.type) for n in parse(text).nodes]

    def synthesize(self, count: int, seed: int, focus_nodes: list[str] | None = None) -> list[dict[str, str]]:
        from .synthetic import generate

        return generate(count, seed=seed, focus_nodes=focus_nodes)

    def constraint(self, unknown_nodes: str = "error") -> Callable[[], Any] | None:
        """Fresh catalog-aware prefix checkers (dsl.constraint) for the workspace's unknown-node policy."""
        from dsl.constraint import ConstraintState, rules_for

        rules = rules_for(None, unknown_nodes)
        return lambda: ConstraintState(rules)


PACK = BlueprintPack(
    name="blueprint",
    title="Unreal Engine 5 Blueprint DSL (event graphs: NODE / EXEC / DATA lines)",
    header_keys=("BLUEPRINT",),
    suffixes=(".dsl",),
    commands=(PackCommand("import-t3d", "dsl.t3d.cli", "Unreal clipboard text -> DSL"),
              PackCommand("export-t3d", "dsl.t3d.cli", "DSL -> Unreal clipboard text")),
    highlights=HIGHLIGHTS,
    anonymous_headers=("BLUEPRINT",),
    provides={
        "grammar": "grammar.lark (Lark LALR, llguidance-compatible)",
        "catalog": "catalog.json + catalog_ue.json (Unreal mapping)",
        "validator": "dsl.validator with the Blueprint catalog",
        "formatter": "dsl.formatter (canonical node order)",
        "scorer": "dsl.scorer (structural graph match)",
        "synthetic": "catalog-driven templates (dsl.packs.blueprint.synthetic)",
        "constraint": "catalog-aware prefix checker (dsl.constraint)",
        "importers": "import-t3d (Unreal clipboard)",
        "exporters": "export-t3d (Unreal clipboard)",
    },
)
