"""The ``blender-material`` language pack: Blender shader node trees as text.

The catalog comes from Blender itself (tools/derive_blender_catalog.py writes catalog.json), so
this pack validates, formats and scores without bpy; the bpy side (import/export/render) is in
other modules of this package and imports bpy lazily. docs/blender.md describes the language.
"""
from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Callable

from dsl.packs import Highlight, LanguagePack, PackCommand

from .catalog import INTERFACE_TYPES, PACKAGE, load_catalog
from .text import HEADER_KEYS, KEYWORDS, analyse, grammar_text, to_text

HIGHLIGHTS = (
    Highlight(r"^\s*#.*$", "comment"),
    Highlight(r"^\s*(MATERIAL|GROUP)\s*:", "header", 1),
    Highlight(r"^\s*(INPUT|OUTPUT|NODE|LINK)\b", "keyword", 1),
    Highlight(r"\bn[0-9]+\b", "node_id"),
    Highlight(r"^\s*NODE\s+n[0-9]+\s*:\s*([A-Za-z_][A-Za-z0-9_]*)", "type", 1),
    Highlight(r"^\s*(?:INPUT|OUTPUT)\s+(?:\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)", "type", 1),
    Highlight(r"\bn[0-9]+\.([A-Za-z_][A-Za-z0-9_]*)", "pin", 1),
    Highlight(r"\"([^\"\\\n]|\\.)*\"", "string"),
    Highlight(r"(?<![A-Za-z_0-9])-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", "number"),
    Highlight(r"->|=", "operator"),
)


def _have_bpy() -> bool:
    """Whether Blender (the bpy module) is installed here; looked up, not imported (blend.bpy_available
    imports it, which the engine's process must not do)."""
    import importlib.util

    return importlib.util.find_spec("bpy") is not None


class BlenderMaterialPack(LanguagePack):
    """Blender materials and shader node groups."""

    def root(self) -> Traversable:
        return resources.files(PACKAGE)

    def grammar_text(self) -> str:
        return grammar_text()

    def system_prompt(self) -> str:
        return self.root().joinpath("system_prompt.txt").read_text(encoding="utf-8")

    def starter_dir(self) -> Traversable:
        return self.root().joinpath("starter")

    def vocabulary(self) -> list[str]:
        """Keywords, type names and aliases, socket names, param names and enum items (sorted, unique)."""
        cat = load_catalog()
        words: set[str] = set(KEYWORDS) | set(INTERFACE_TYPES.values()) | {"true", "false", "label"}
        words |= set(cat.short_names.values())
        for idname, node in cat.nodes.items():
            spec = cat.spec(idname)
            for side in ("inputs", "outputs"):
                words |= set(spec.dsl_names[side].values())
            for name, prop in node["props"].items():
                if prop["type"] == "STRUCT":
                    words |= set(prop["params"])
                    continue
                words.add(name)
                words |= {i for i in prop.get("items", []) if i}
        return sorted(words)

    def node_names(self) -> list[str]:
        """Short type name of every shader node type in the catalog (what the text's NODE lines name)."""
        cat = load_catalog()
        return sorted(cat.short(idname) for idname in cat.nodes)

    def validate(self, text: str, *, unknown_nodes: str = "error") -> list[Any]:
        """The text's diagnostics (unknown node types are always errors: Blender cannot build them)."""
        return analyse(text).diagnostics

    def format(self, text: str) -> str:
        from dsl.formatter import FormatError

        result = analyse(text)
        syntax = [d for d in result.diagnostics if d.code == "syntax"]
        if result.graph is None or syntax:
            first = syntax[0] if syntax else (result.diagnostics[0] if result.diagnostics else None)
            raise FormatError(str(first) if first else "nothing to format")
        return to_text(result.graph)

    def score(self, expected: str, actual: str) -> Any:
        from .scorer import score

        return score(expected, actual)

    def node_types(self, text: str) -> list[str]:
        """Short (canonical) type name of every node, in line order."""
        result = analyse(text)
        if result.graph is None:
            return []
        cat = load_catalog()
        return [cat.short(n.bl_idname) for n in result.graph.nodes]

    def constraint(self, unknown_nodes: str = "error") -> Callable[[], Any] | None:
        """Fresh catalog-aware prefix checkers for constrained decoding (constraint.py); unknown node
        types are always refused (Blender cannot build them), whatever the workspace's policy."""
        from .constraint import MaterialConstraint, MaterialRules

        rules = MaterialRules()
        return lambda: MaterialConstraint(rules)

    def references(self, text: str) -> tuple[str | None, frozenset[str]]:
        """A GROUP text defines its name; any text calls the groups its Group nodes name."""
        graph = analyse(text).graph
        if graph is None:
            return None, frozenset()
        return (graph.name if graph.kind == "group" else None), frozenset(graph.groups_used)

    def tool_check_args(self) -> list[str] | None:
        """Blender is the final judge when bpy is installed: `bpllm validate --in-blender --json`."""
        if not _have_bpy():
            return None
        return ["validate", "--in-blender", "--json", "--compact", "--language", self.name]

    def exam_preview_args(self, workspace: str, version: str) -> list[str] | None:
        """Expected vs actual material balls, rendered by Blender when bpy is installed (`render-exam`)."""
        if not _have_bpy():
            return None
        return ["render-exam", "-w", workspace, "--version", version, "--json"]

    def synthesize(self, count: int, seed: int, focus_nodes: list[str] | None = None) -> list[dict[str, str]]:
        """Rows around every material node type (synthetic.py), each validated; descriptions from the graph."""
        from .synthetic import generate

        return generate(count, seed=seed, focus_nodes=focus_nodes)


PACK = BlenderMaterialPack(
    name="blender-material",
    title="Blender materials and shader node groups (catalog from Blender itself)",
    header_keys=HEADER_KEYS,
    suffixes=(".dsl", ".bmat"),
    highlights=HIGHLIGHTS,
    anonymous_headers=("MATERIAL",),
    commands=(
        PackCommand("import-blend", "dsl.packs.blender_material.cli", ".blend -> material DSL, with a report"),
        PackCommand("export-blend", "dsl.packs.blender_material.cli", "material DSL -> .blend built by Blender"),
        PackCommand("render-material", "dsl.packs.blender_material.cli", "a material on a ball, Cycles on the CPU"),
        PackCommand("render-exam", "dsl.packs.blender_material.cli", "expected vs actual previews of an exam"),
    ),
    provides={
        "grammar": "grammar.lark (Lark, llguidance subset)",
        "catalog": "catalog.json derived from bpy by tools/derive_blender_catalog.py",
        "validate": "syntax, node types, sockets, enum items, link types, cycles, output node, ids",
        "format": "canonical text (to_text of the parsed graph)",
        "score": "structural score with per-node-type shares",
        "system_prompt": "system_prompt.txt",
        "constraint": "catalog-aware prefix checker for decoding (constraint.py; the validator is its oracle)",
        "synthetic": "one graph per catalog node type, described from the graph (synthetic.py)",
        "tool_check": "step 2.2 builds every lesson and dataset text in Blender when bpy is installed",
        "importers": "import-blend (.blend files, through Blender)",
        "exporters": "export-blend, render-material, render-exam (through Blender)",
        "starter": "3 lessons and a starter dataset, each text built in Blender by a test",
    },
)
