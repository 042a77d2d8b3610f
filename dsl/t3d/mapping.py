"""The Unreal mapping tables (``dsl/packs/blueprint/catalog_ue.json``) as lookups for import and export.

One entry per DSL node type says which Unreal node class it is, which function,
event, macro or cast target identifies it, and how DSL pin names map to Unreal
pin names. Templates cover pins named by the graph:

* ``"Then_{n}": "then_{n}"`` — numbered families (Sequence, MultiGate, SwitchOnInt);
* ``"Case_{s}": "{s}"`` — named families (SwitchOnString);
* ``"Value": "{var}"`` — the pin Unreal names after the variable (VariableGet/Set);
* ``"{pin}": "{pin}"`` — any other pin passes through by name (user functions, custom events).

The importer reads the tables backwards (Unreal → DSL), the exporter forwards; both
use this one module so the two directions cannot drift apart.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..catalog import Catalog, NodeSpec, default_catalog

DEFAULT_UE_PATH = Path(str(resources.files("dsl.packs.blueprint") / "catalog_ue.json"))

# Unreal classes whose identity is a FunctionReference member name.
FUNCTION_CLASSES = frozenset(
    {
        "K2Node_CallFunction",
        "K2Node_PromotableOperator",
        "K2Node_CommutativeAssociativeBinaryOperator",
        "K2Node_CallArrayFunction",
        "K2Node_CallFunctionOnMember",
    }
)

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def short_class(path: str) -> str:
    return path.rsplit(".", 1)[-1] if path else ""


def object_short_name(path: str) -> str:
    """``/Script/CoreUObject.Class'/Script/Engine.Character'`` → ``Character``;
    ``/Game/BP/BP_Door.BP_Door_C`` → ``BP_Door_C``."""
    text = path.strip().strip('"')
    if "'" in text:
        inner = text.split("'", 2)[1] if text.count("'") >= 2 else text.split("'", 1)[1]
        text = inner or text
    text = text.rsplit("/", 1)[-1]
    text = text.rsplit(":", 1)[-1]
    return text.rsplit(".", 1)[-1]


def sanitize_ident(name: str) -> str:
    """A DSL identifier for an Unreal name (``"Array Element"`` → ``Array_Element``)."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", name.strip()).strip("_")
    if not out:
        return "Pin"
    if out[0].isdigit():
        out = "_" + out
    return out


def is_ident(text: str) -> bool:
    return bool(_IDENT_RE.match(text))


@dataclass(slots=True)
class PinRule:
    dsl: str  # DSL pin name or template
    ue: str  # Unreal pin name or template
    dsl_rx: re.Pattern[str] | None = None
    ue_rx: re.Pattern[str] | None = None
    kind: str = "plain"  # plain | family | var | passthrough


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{n\}|\{s\})", template)
    rx = "".join(
        "(?P<n>-?[0-9]+)" if p == "{n}" else "(?P<s>.+)" if p == "{s}" else re.escape(p) for p in parts if p != ""
    )
    return re.compile(rx + r"\Z")


def _make_rule(dsl: str, ue: str) -> PinRule:
    if ue == "{var}":
        return PinRule(dsl, ue, kind="var")
    if dsl == "{pin}":
        return PinRule(dsl, ue, kind="passthrough")
    if "{n}" in dsl or "{s}" in dsl:
        return PinRule(dsl, ue, _template_regex(dsl), _template_regex(ue), kind="family")
    return PinRule(dsl, ue)


@dataclass(slots=True)
class UEEntry:
    """The mapping of one DSL node type."""

    type: str
    cls: str
    data: dict[str, Any]
    rules: list[PinRule] = field(default_factory=list)

    @property
    def short_class(self) -> str:
        return short_class(self.cls)

    @property
    def member_name(self) -> str | None:
        return self.data.get("member_name")

    @property
    def member_parent(self) -> str | None:
        return self.data.get("member_parent")

    @property
    def params(self) -> dict[str, str]:
        """DSL params stored as node properties rather than pin defaults."""
        return self.data.get("params", {})

    @property
    def defaults(self) -> dict[str, str]:
        return self.data.get("defaults", {})

    @property
    def sub_categories(self) -> dict[str, str]:
        return self.data.get("sub", {})

    def ue_pin(self, dsl_pin: str, var_name: str | None = None) -> str | None:
        """Unreal pin name for a DSL pin (or param) name; None when unmapped."""
        for rule in self.rules:
            if rule.kind == "plain" and rule.dsl == dsl_pin:
                return rule.ue
            if rule.kind == "var" and rule.dsl == dsl_pin:
                return var_name if var_name else dsl_pin
            if rule.kind == "family" and rule.dsl_rx is not None:
                m = rule.dsl_rx.match(dsl_pin)
                if m:
                    return _fill(rule.ue, m)
        for rule in self.rules:
            if rule.kind == "passthrough":
                return dsl_pin
        return None

    def dsl_pins(self, ue_pin: str, var_name: str | None = None) -> list[tuple[str, str]]:
        """Candidate DSL names for an Unreal pin, in preference order, each with its rule kind."""
        found: list[tuple[str, str]] = []
        for rule in self.rules:
            if rule.kind == "plain" and rule.ue == ue_pin:
                found.append((rule.dsl, "plain"))
            elif rule.kind == "var" and var_name is not None and ue_pin == var_name:
                found.append((rule.dsl, "var"))
            elif rule.kind == "family" and rule.ue_rx is not None:
                m = rule.ue_rx.match(ue_pin)
                if m:
                    found.append((_fill(rule.dsl, m, sanitize=True), "family"))
        for rule in self.rules:
            if rule.kind == "passthrough":
                found.append((sanitize_ident(ue_pin), "passthrough"))
        return found


def _fill(template: str, m: re.Match[str], sanitize: bool = False) -> str:
    groups = m.groupdict()
    out = template
    if groups.get("n") is not None:
        out = out.replace("{n}", groups["n"])
    if groups.get("s") is not None:
        out = out.replace("{s}", sanitize_ident(groups["s"]) if sanitize else groups["s"])
    return out


class UEMapping:
    """Lookups over ``catalog_ue.json`` plus the language catalog it belongs to."""

    def __init__(self, data: dict[str, Any], catalog: Catalog, source: str = "<memory>"):
        self.source = source
        self.catalog = catalog
        self.types: dict[str, dict[str, Any]] = dict(data.get("types", {}))
        self.entries: dict[str, UEEntry] = {}
        for name, spec in data.get("nodes", {}).items():
            if "class" not in spec:
                continue
            entry = UEEntry(name, spec["class"], spec)
            entry.rules = [_make_rule(d, u) for d, u in spec.get("pins", {}).items()]
            self.entries[name] = entry
        # import index: (kind, key) -> DSL type; first entry listed wins
        self.by_function: dict[str, list[str]] = {}  # member name -> DSL types, preferred first
        self.by_event: dict[str, str] = {}
        self.by_macro: dict[str, str] = {}
        self.by_cast: dict[str, str] = {}
        self.by_class: dict[str, str] = {}
        self.by_operation: dict[str, str] = {}  # K2Node_PromotableOperator OperationName
        promotable = [n for n, e in self.entries.items() if e.short_class == "K2Node_PromotableOperator"]
        for name in promotable:
            e = self.entries[name]
            if e.data.get("operation"):
                self.by_operation.setdefault(e.data["operation"], name)
        # typed library calls first: a K2Node_CallFunction Add_DoubleDouble is AddFloat, not Add
        ordered = [n for n in self.entries if n not in promotable] + promotable
        for name in ordered:
            e = self.entries[name]
            sc = e.short_class
            if sc in FUNCTION_CLASSES and e.member_name:
                for member in [e.member_name, *e.data.get("also_import", []), *e.data.get("members_by_type", {}).values()]:
                    types = self.by_function.setdefault(member, [])
                    if name not in types:
                        types.append(name)
            elif sc == "K2Node_Event" and e.member_name:
                self.by_event.setdefault(e.member_name, name)
            elif sc == "K2Node_MacroInstance" and e.data.get("macro"):
                self.by_macro.setdefault(e.data["macro"], name)
            elif sc == "K2Node_DynamicCast" and e.data.get("target_type"):
                self.by_cast.setdefault(object_short_name(e.data["target_type"]), name)
            elif sc not in FUNCTION_CLASSES:
                self.by_class.setdefault(sc, name)
        # Unreal object classes the catalog has no type for -> the DSL type they travel as
        self.object_types: dict[str, str] = dict(data.get("import_object_types", {}))
        # type table backwards: (category, sub-object short name, container) -> DSL type
        self.type_by_ue: dict[tuple[str, str, str], str] = {}
        for tname, t in self.types.items():
            key = (t.get("category", ""), object_short_name(t["object"]) if t.get("object") else "", t.get("container", ""))
            self.type_by_ue.setdefault(key, tname)

    def function_type(self, member: str, parent: str) -> tuple[str | None, str | None]:
        """(DSL type, None) for a called function, or (None, the catalog's nearest match).

        ``MemberParent`` is the class that declares the function, so it must agree:
        CharacterMovementComponent.AddImpulse is not PrimitiveComponent.AddImpulse."""
        candidates = self.by_function.get(member, [])
        if not candidates:
            return None, None
        if not parent:
            return candidates[0], None
        owner = object_short_name(parent)
        for name in candidates:
            declared = self.entries[name].member_parent
            if not declared or object_short_name(declared) == owner:
                return name, None
        declared = self.entries[candidates[0]].member_parent or ""
        return None, f"{candidates[0]} ({object_short_name(declared)}.{member})"

    def entry(self, dsl_type: str) -> UEEntry | None:
        return self.entries.get(self.catalog.canonical_node_type(dsl_type))

    def spec(self, dsl_type: str) -> NodeSpec | None:
        return self.catalog.get(dsl_type)

    def ue_type(self, dsl_type: str | None) -> dict[str, Any]:
        """Unreal pin type fields for a DSL type name (unknown → wildcard)."""
        if not dsl_type:
            return {"category": "wildcard"}
        base = dsl_type.split("<", 1)[0].strip()
        base = self.catalog.canonical_type(base)
        t = self.types.get(base)
        if t is None:
            return {"category": "wildcard"}
        if base == "Array" and "<" in dsl_type:
            inner = dsl_type.split("<", 1)[1].rsplit(">", 1)[0]
            elem = dict(self.ue_type(inner))
            elem["container"] = "Array"
            return elem
        return t


def load_mapping(path: str | Path | None = None, catalog: Catalog | None = None) -> UEMapping:
    path = Path(path) if path is not None else DEFAULT_UE_PATH
    cat = catalog if catalog is not None else default_catalog()
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        data = {}
    return UEMapping(data, cat, source=str(path))


@lru_cache(maxsize=1)
def default_mapping() -> UEMapping:
    return load_mapping()
