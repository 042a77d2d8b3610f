"""The typed node catalog: which node types exist, their pins and params, and aliases.

The catalog is data (``data/catalog.json``); this module only loads it and answers
questions about it. Aliases map the spelling variants different sources use for
the same concept (``Event_CustomEvent`` → ``Event_Custom``, ``bLooping`` → ``Looping``)
onto one canonical form, used by the validator, the formatter and the scorer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

DEFAULT_CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "catalog.json"
# Unreal (T3D clipboard) mapping per node type, merged into NodeSpec.ue; kept in its
# own file so the language catalog and the Unreal mapping can be curated separately.
DEFAULT_UE_MAPPING_PATH = DEFAULT_CATALOG_PATH.with_name("catalog_ue.json")


@dataclass(frozen=True, slots=True)
class PinSpec:
    name: str
    direction: Literal["in", "out"]
    kind: Literal["exec", "data"]
    type: str | None = None  # data pins: Float, Int, Bool, String, Vector, Rotator, Actor, Object, Array, ...
    required: bool = False  # an unconnected required data input is a warning


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str  # same type names as pins; "Name"/"Class"/"Enum" for identifiers


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    category: str
    pure: bool
    pins: tuple[PinSpec, ...]
    params: tuple[ParamSpec, ...]
    is_event: bool = False
    # pins named by the graph itself (VariableGet's output named after the variable,
    # CallFunction on a user function): unknown pin names are accepted on these
    dynamic_pins: bool = False
    description: str = ""
    ue: dict[str, Any] = field(default_factory=dict)  # Unreal export/import mapping (T3D)

    def pin(self, name: str) -> PinSpec | None:
        for p in self.pins:
            if p.name == name:
                return p
        return None

    def param(self, name: str) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def pins_where(self, direction: str, kind: str) -> list[PinSpec]:
        return [p for p in self.pins if p.direction == direction and p.kind == kind]


class Catalog:
    """Read-only view over the catalog data with alias resolution."""

    def __init__(self, data: dict[str, Any], source: str = "<memory>"):
        self.source = source
        self.raw = data
        self.nodes: dict[str, NodeSpec] = {}
        for name, spec in data.get("nodes", {}).items():
            self.nodes[name] = NodeSpec(
                name=name,
                category=spec.get("category", ""),
                pure=bool(spec.get("pure", False)),
                pins=tuple(
                    PinSpec(
                        name=p["name"],
                        direction=p["dir"],
                        kind=p["kind"],
                        type=p.get("type"),
                        required=bool(p.get("required", False)),
                    )
                    for p in spec.get("pins", [])
                ),
                params=tuple(ParamSpec(p["name"], p.get("type", "String")) for p in spec.get("params", [])),
                is_event=bool(spec.get("event", False)),
                dynamic_pins=bool(spec.get("dynamic_pins", False)),
                description=spec.get("description", ""),
                ue=spec.get("ue", {}),
            )
        aliases = data.get("aliases", {})
        self.node_aliases: dict[str, str] = dict(aliases.get("nodes", {}))
        # {"*": {...}} applies to every node type; {"Type": {...}} to one
        self.param_aliases: dict[str, dict[str, str]] = {k: dict(v) for k, v in aliases.get("params", {}).items()}
        self.pin_aliases: dict[str, dict[str, str]] = {k: dict(v) for k, v in aliases.get("pins", {}).items()}
        self.type_aliases: dict[str, str] = dict(aliases.get("types", {}))

    def merge_ue_mapping(self, mapping: dict[str, dict[str, Any]]) -> None:
        """Attach Unreal export/import data (``data/catalog_ue.json``) to node specs."""
        for name, ue in mapping.items():
            spec = self.nodes.get(name)
            if spec is not None:
                self.nodes[name] = NodeSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "ue": {**spec.ue, **ue}})

    def __contains__(self, name: str) -> bool:
        return self.canonical_node_type(name) in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def canonical_node_type(self, name: str) -> str:
        return self.node_aliases.get(name, name)

    def get(self, name: str) -> NodeSpec | None:
        return self.nodes.get(self.canonical_node_type(name))

    def canonical_param(self, node_type: str, name: str) -> str:
        node_type = self.canonical_node_type(node_type)
        specific = self.param_aliases.get(node_type, {})
        if name in specific:
            return specific[name]
        return self.param_aliases.get("*", {}).get(name, name)

    def canonical_pin(self, node_type: str, name: str) -> str:
        node_type = self.canonical_node_type(node_type)
        specific = self.pin_aliases.get(node_type, {})
        if name in specific:
            return specific[name]
        return self.pin_aliases.get("*", {}).get(name, name)

    def canonical_type(self, name: str) -> str:
        return self.type_aliases.get(name, name)

    def pin(self, node_type: str, name: str) -> PinSpec | None:
        spec = self.get(node_type)
        if spec is None:
            return None
        return spec.pin(self.canonical_pin(node_type, name))


def load_catalog_file(path: str | Path) -> Catalog:
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    return Catalog(data, source=str(path))


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The catalog shipped with bpllm (``data/catalog.json``), loaded once."""
    if not DEFAULT_CATALOG_PATH.exists():
        return Catalog({}, source=str(DEFAULT_CATALOG_PATH))
    catalog = load_catalog_file(DEFAULT_CATALOG_PATH)
    if DEFAULT_UE_MAPPING_PATH.exists():
        with DEFAULT_UE_MAPPING_PATH.open(encoding="utf-8") as fh:
            catalog.merge_ue_mapping(json.load(fh).get("nodes", {}))
    return catalog
