"""The typed node catalog: which node types exist, their pins and params, and aliases.

The catalog is data (``dsl/packs/blueprint/catalog.json`` for Blueprint, documented in ``docs/catalog.md``); this
module only loads it and answers questions about it, with every lookup the
validator needs precomputed at load time (it runs on each keystroke of the lesson
editor). Aliases map the spelling variants different sources use for the same
concept (``Event_CustomEvent`` → ``Event_Custom``, ``bLooping`` → ``Looping``) onto one
canonical form, used by the validator, the formatter and the scorer.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

# Blueprint, the first language pack, ships the default catalog (found by resource, not by path climbing)
DEFAULT_CATALOG_PATH = Path(str(resources.files("dsl.packs.blueprint") / "catalog.json"))
# Unreal (T3D clipboard) mapping per node type, merged into NodeSpec.ue; kept in its
# own file so the language catalog and the Unreal mapping can be curated separately.
DEFAULT_UE_MAPPING_PATH = DEFAULT_CATALOG_PATH.with_name("catalog_ue.json")

# Types every catalog understands even when its "types" table is missing.
WILDCARD = "Wildcard"
VAR_TYPE = "Var"  # VariableGet/VariableSet: the type of the VAR the node names


@dataclass(frozen=True, slots=True)
class PinSpec:
    name: str
    direction: Literal["in", "out"]
    kind: Literal["exec", "data"]
    type: str | None = None  # data pins: Float, Int, Bool, String, Vector, Rotator, Actor, Object, Array, ...
    required: bool = False  # an unconnected required data input is a warning
    # a family of pins named by the graph (Sequence's Then_0, Then_1, ...): a regex
    # every member's name matches in full; ``name`` is the first member
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str  # same type names as pins; "Name"/"Class"/"Enum" for identifiers
    required: bool = False  # a node without it is an error (VariableGet without VarName)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    category: str
    pure: bool
    pins: tuple[PinSpec, ...]
    params: tuple[ParamSpec, ...]
    is_event: bool = False
    # pins named by the graph itself (CallFunction on a user function, a custom
    # event's inputs): unknown pin names are accepted on these
    dynamic_pins: bool = False
    description: str = ""
    ue: dict[str, Any] = field(default_factory=dict)  # Unreal export/import mapping (T3D)
    # (param, pin): a pin spelled like the param's value is that pin
    # (VariableGet [VarName=Health] exposes its Value pin as "Health", as Unreal draws it)
    named_pin: tuple[str, str] | None = None
    # commutative operators that grow input pins in Unreal (Add, Multiply, AND, Append):
    # several wires into one input read as extra operands (a warning, not an error)
    variadic: bool = False
    # lookups built once in __post_init__
    _by_name: dict[str, tuple[PinSpec, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _patterns: tuple[tuple[re.Pattern[str], PinSpec], ...] = field(default=(), init=False, repr=False, compare=False)
    _params: dict[str, ParamSpec] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, list[PinSpec]] = {}
        patterns = []
        for p in self.pins:
            by_name.setdefault(p.name, []).append(p)
            if p.pattern:
                patterns.append((re.compile(p.pattern), p))
        object.__setattr__(self, "_by_name", {k: tuple(v) for k, v in by_name.items()})
        object.__setattr__(self, "_patterns", tuple(patterns))
        params = {p.name: p for p in self.params}
        # Every data input can also be given a literal default as a param (Unreal pin defaults).
        for p in self.pins:
            if p.direction == "in" and p.kind == "data" and p.name not in params:
                params[p.name] = ParamSpec(p.name, p.type or WILDCARD)
        object.__setattr__(self, "_params", params)

    def pins_named(self, name: str) -> tuple[PinSpec, ...]:
        """Every pin this name denotes (VariableSet has both an input and an output ``Value``)."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        for rx, p in self._patterns:
            if rx.fullmatch(name):
                return (dataclasses.replace(p, name=name, pattern=None),)
        return ()

    def pin(self, name: str, direction: str | None = None) -> PinSpec | None:
        candidates = self.pins_named(name)
        for p in candidates:
            if direction is None or p.direction == direction:
                return p
        return None

    def param(self, name: str) -> ParamSpec | None:
        """A declared param, or a data input (any input pin can take a literal default)."""
        return self._params.get(name)

    @property
    def all_params(self) -> tuple[ParamSpec, ...]:
        return tuple(self._params.values())

    def pins_where(self, direction: str, kind: str) -> list[PinSpec]:
        return [p for p in self.pins if p.direction == direction and p.kind == kind]

    def pin_names(self, direction: str, kind: str) -> list[str]:
        """Names for messages; pattern families read ``Then_0, Then_1, ...``."""
        out = []
        for p in self.pins_where(direction, kind):
            if p.pattern:
                stem = p.name.rsplit("_", 1)[0]
                out.append(f"{stem}_0, {stem}_1, ..." if p.name.endswith("_0") else f"{stem}_<Name>")
            else:
                out.append(p.name)
        return out


class Catalog:
    """Read-only view over the catalog data with alias resolution and type rules."""

    def __init__(self, data: dict[str, Any], source: str = "<memory>"):
        self.source = source
        self.raw = data
        self.nodes: dict[str, NodeSpec] = {}
        for name, spec in data.get("nodes", {}).items():
            named = spec.get("named_pin")
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
                        pattern=p.get("pattern"),
                    )
                    for p in spec.get("pins", [])
                ),
                params=tuple(
                    ParamSpec(p["name"], p.get("type", "String"), bool(p.get("required", False)))
                    for p in spec.get("params", [])
                ),
                is_event=bool(spec.get("event", False)),
                dynamic_pins=bool(spec.get("dynamic_pins", False)),
                description=spec.get("description", ""),
                ue=spec.get("ue", {}),
                named_pin=(named["param"], named["pin"]) if named else None,
                variadic=bool(spec.get("variadic", False)),
            )
        aliases = data.get("aliases", {})
        self.node_aliases: dict[str, str] = dict(aliases.get("nodes", {}))
        # {"*": {...}} applies to every node type; {"Type": {...}} to one
        self.param_aliases: dict[str, dict[str, str]] = {k: dict(v) for k, v in aliases.get("params", {}).items()}
        self.pin_aliases: dict[str, dict[str, str]] = {k: dict(v) for k, v in aliases.get("pins", {}).items()}
        self.type_aliases: dict[str, str] = dict(aliases.get("types", {}))
        # aliases that resolve a spelling which is wrong for Unreal: resolved, but worth a warning
        warn = data.get("alias_warnings", {})
        self.alias_warnings: dict[str, dict[str, dict[str, str]]] = {
            kind: {k: dict(v) for k, v in warn.get(kind, {}).items()} for kind in ("nodes", "params", "pins")
        }
        self.quirks: list[dict[str, Any]] = list(data.get("quirks", []))
        self._param_maps: dict[str, dict[str, str]] = {}
        self._pin_maps: dict[str, dict[str, str]] = {}
        self._init_types(data.get("types", {}), data.get("conversions", {}))

    # -- types ---------------------------------------------------------------
    def _init_types(self, types: dict[str, dict[str, Any]], conversions: dict[str, list[str]]) -> None:
        self.types: dict[str, dict[str, Any]] = {k: dict(v) for k, v in types.items()}
        self.types.setdefault(WILDCARD, {"any": True})
        self.types.setdefault(VAR_TYPE, {"any": True})
        self._any = {k for k, v in self.types.items() if v.get("any")}
        self._any_of = {k: frozenset(v["any_of"]) for k, v in self.types.items() if v.get("any_of")}
        self._ancestors: dict[str, frozenset[str]] = {}
        for name in self.types:
            chain, cur = [], name
            while cur is not None and cur not in chain:
                chain.append(cur)
                cur = self.types.get(cur, {}).get("parent")
            self._ancestors[name] = frozenset(chain)
        self._conv = {k: frozenset(v) for k, v in conversions.items()}
        self._assign_cache: dict[tuple[str, str], bool] = {}
        # literal kinds a type accepts, inherited from the parent when not given
        self._literals: dict[str, frozenset[str] | None] = {}
        for name in self.types:
            cur, lits = name, None
            seen: set[str] = set()
            while cur is not None and cur not in seen:
                seen.add(cur)
                if "literals" in self.types.get(cur, {}):
                    lits = frozenset(self.types[cur]["literals"])
                    break
                cur = self.types.get(cur, {}).get("parent")
            self._literals[name] = None if name in self._any else lits

    def literal_kinds(self, type_name: str) -> frozenset[str] | None:
        """Literal kinds (``int float string bool none ident struct``) a type accepts; None: any."""
        return self._literals.get(self.canonical_type(type_name))

    def accepts_literal(self, type_name: str, kind: str) -> bool:
        """Whether a literal of ``kind`` fits ``type_name`` (unknown types accept anything)."""
        kinds = self._literals.get(self.canonical_type(type_name))
        return kinds is None or kind in kinds

    def known_type(self, name: str) -> bool:
        return self.canonical_type(name) in self.types

    def base_type(self, name: str) -> str:
        """``Array<Vector>`` → ``Array``, aliases resolved (wires carry base types only)."""
        head = name.split("<", 1)[0].strip()
        return self.canonical_type(head)

    def assignable(self, src: str, dst: str) -> bool:
        """Can a value of type ``src`` flow into a pin of type ``dst``?

        Same type; either side a wildcard; ``Numeric`` against its members; a subtype
        into its parent (Actor → Object); or an automatic conversion Unreal inserts
        (Int → Float, Vector → String, Vector → Transform, ...). Unknown type names
        are not judged (True): the validator reports them separately.
        """
        key = (src, dst)
        hit = self._assign_cache.get(key)
        if hit is not None:
            return hit
        result = self._assignable(self.canonical_type(src), self.canonical_type(dst))
        self._assign_cache[key] = result
        return result

    def _assignable(self, src: str, dst: str) -> bool:
        if src == dst or src in self._any or dst in self._any:
            return True
        if src not in self.types or dst not in self.types:
            return True
        if dst in self._any_of:
            members = self._any_of[dst]
            return any(self._assignable(src, m) for m in members if m != dst)
        if src in self._any_of:
            members = self._any_of[src]
            return any(self._assignable(m, dst) for m in members if m != src)
        if dst in self._ancestors.get(src, ()):
            return True
        for t in self._ancestors.get(src, (src,)):
            if dst in self._conv.get(t, ()):
                return True
        return False

    # -- lookups -------------------------------------------------------------
    def merge_ue_mapping(self, mapping: dict[str, dict[str, Any]]) -> None:
        """Attach Unreal export/import data (``dsl/packs/blueprint/catalog_ue.json``) to node specs."""
        for name, ue in mapping.items():
            spec = self.nodes.get(name)
            if spec is not None:
                self.nodes[name] = dataclasses.replace(spec, ue={**spec.ue, **ue})

    def __contains__(self, name: str) -> bool:
        return self.canonical_node_type(name) in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def canonical_node_type(self, name: str) -> str:
        return self.node_aliases.get(name, name)

    def get(self, name: str) -> NodeSpec | None:
        return self.nodes.get(self.canonical_node_type(name))

    def param_alias_map(self, node_type: str) -> dict[str, str]:
        """Every param alias that applies to ``node_type`` ("*" merged under its own), cached."""
        canon = self.canonical_node_type(node_type)
        hit = self._param_maps.get(canon)
        if hit is None:
            hit = {**self.param_aliases.get("*", {}), **self.param_aliases.get(canon, {})}
            self._param_maps[canon] = hit
        return hit

    def pin_alias_map(self, node_type: str) -> dict[str, str]:
        """Every pin alias that applies to ``node_type`` ("*" merged under its own), cached."""
        canon = self.canonical_node_type(node_type)
        hit = self._pin_maps.get(canon)
        if hit is None:
            hit = {**self.pin_aliases.get("*", {}), **self.pin_aliases.get(canon, {})}
            self._pin_maps[canon] = hit
        return hit

    def canonical_param(self, node_type: str, name: str) -> str:
        return self.param_alias_map(node_type).get(name, name)

    def canonical_pin(self, node_type: str, name: str) -> str:
        return self.pin_alias_map(node_type).get(name, name)

    def canonical_type(self, name: str) -> str:
        return self.type_aliases.get(name, name)

    def alias_warning(self, kind: Literal["nodes", "params", "pins"], node_type: str, name: str) -> str | None:
        """The warning for an alias that fixes a spelling wrong for Unreal, if any.

        For ``nodes`` pass the written type as ``name`` (``node_type`` is ignored).
        """
        table = self.alias_warnings.get(kind, {})
        if kind == "nodes":
            return table.get("*", {}).get(name)
        specific = table.get(self.canonical_node_type(node_type))
        if specific and name in specific:
            return specific[name]
        return table.get("*", {}).get(name)

    def pin(self, node_type: str, name: str, direction: str | None = None) -> PinSpec | None:
        spec = self.get(node_type)
        if spec is None:
            return None
        return spec.pin(self.canonical_pin(node_type, name), direction)


def load_catalog_file(path: str | Path) -> Catalog:
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    return Catalog(data, source=str(path))


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The Blueprint pack's catalog (``dsl/packs/blueprint/catalog.json``), loaded once."""
    if not DEFAULT_CATALOG_PATH.exists():
        return Catalog({}, source=str(DEFAULT_CATALOG_PATH))
    catalog = load_catalog_file(DEFAULT_CATALOG_PATH)
    if DEFAULT_UE_MAPPING_PATH.exists():
        with DEFAULT_UE_MAPPING_PATH.open(encoding="utf-8") as fh:
            catalog.merge_ue_mapping(json.load(fh).get("nodes", {}))
    return catalog
