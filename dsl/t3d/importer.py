"""Unreal clipboard text → Blueprint DSL, with a report of everything that did not map.

Pipeline: :func:`~dsl.t3d.parser.parse_t3d` → classify each object (graph node,
reroute knot, comment box, ControlRig/RigVM object, unknown) → map graph nodes to
catalog node types through ``dsl/packs/blueprint/catalog_ue.json`` → collect wires from
``LinkedTo`` (written on both ends; deduplicated), pass them through reroute knots
→ map pin names to catalog pins, wire types from the pins → params from input pins'
non-default ``DefaultValue``s → DSL text (canonical formatting) → validation.

Nothing is dropped silently: every object, pin, wire or value that has no DSL
equivalent is counted in :class:`ImportReport` under a reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..ast import Diagnostic, Document, quote
from ..catalog import NodeSpec
from .mapping import FUNCTION_CLASSES, UEEntry, UEMapping, default_mapping, is_ident, object_short_name, sanitize_ident
from .parser import Struct, T3DObject, T3DPin, parse_t3d
from .values import ue_to_dsl

NON_CONCRETE = frozenset({"Wildcard", "Numeric", "Var", "Struct", "Enum"})
ZERO_VALUES = {
    "bool": {"false"},
    "int": {"0"},
    "int64": {"0"},
    "byte": {"0"},
    "real": {"0", "0.0", "0.000000"},
    "string": {""},
    "name": {"", "None"},
    "text": {""},
}
_ZERO_VECTORS = {"0,0,0", "0, 0, 0", "0.000000,0.000000,0.000000"}
_EVENT_CLASSES = frozenset(
    {"K2Node_Event", "K2Node_CustomEvent", "K2Node_ComponentBoundEvent", "K2Node_InputAction", "K2Node_InputKey",
     "K2Node_EnhancedInputAction", "K2Node_InputDebugKey", "K2Node_ActorBoundEvent", "K2Node_InputAxisEvent"}
)


@dataclass(slots=True)
class Unsupported:
    what: str  # graph | node | pin | wire | value | variable | parse
    reason: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "reason": self.reason, "count": self.count, "examples": self.examples}


@dataclass(slots=True)
class ImportReport:
    """What one clipboard file became, and what it could not become (with counts)."""

    source: str = "<text>"
    objects: int = 0  # top-level objects in the text
    graph_nodes: int = 0  # Blueprint graph nodes (not knots/comments/RigVM)
    nodes_imported: int = 0
    exec_wires: int = 0
    data_wires: int = 0
    params: int = 0
    literal_inputs: int = 0
    knots_collapsed: int = 0
    comments_dropped: int = 0
    nodes_folded: int = 0  # helper nodes merged into the DSL node they serve (MakeTransform into SpawnActor)
    rigvm_objects: int = 0
    node_types: Counter = field(default_factory=Counter)
    unsupported: dict[tuple[str, str], Unsupported] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, reason: str, example: str | None = None, count: int = 1) -> None:
        item = self.unsupported.get((what, reason))
        if item is None:
            item = self.unsupported[(what, reason)] = Unsupported(what, reason)
        item.count += count
        if example and len(item.examples) < 5 and example not in item.examples:
            item.examples.append(example)

    @property
    def kind(self) -> str:
        if self.rigvm_objects and not self.graph_nodes:
            return "controlrig"
        if self.rigvm_objects:
            return "mixed"
        return "blueprint" if self.graph_nodes else "empty"

    @property
    def unsupported_total(self) -> int:
        return sum(u.count for u in self.unsupported.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "objects": self.objects,
            "graph_nodes": self.graph_nodes,
            "nodes_imported": self.nodes_imported,
            "exec_wires": self.exec_wires,
            "data_wires": self.data_wires,
            "params": self.params,
            "literal_inputs": self.literal_inputs,
            "knots_collapsed": self.knots_collapsed,
            "comments_dropped": self.comments_dropped,
            "nodes_folded": self.nodes_folded,
            "rigvm_objects": self.rigvm_objects,
            "node_types": dict(sorted(self.node_types.items())),
            "unsupported_total": self.unsupported_total,
            "unsupported": [u.to_dict() for u in sorted(self.unsupported.values(), key=lambda u: (-u.count, u.what, u.reason))],
            "notes": self.notes,
        }

    def summary(self) -> str:
        lines = [
            f"{self.source}: {self.kind}, {self.nodes_imported}/{self.graph_nodes} nodes, "
            f"{self.exec_wires} EXEC, {self.data_wires} DATA, {self.params} params"
            + (f", {self.literal_inputs} literal inputs" if self.literal_inputs else "")
            + (f", {self.knots_collapsed} knots collapsed" if self.knots_collapsed else "")
            + (f", {self.comments_dropped} comment boxes dropped" if self.comments_dropped else "")
            + (f", {self.nodes_folded} helper nodes folded" if self.nodes_folded else "")
        ]
        for u in sorted(self.unsupported.values(), key=lambda u: (-u.count, u.what, u.reason)):
            ex = f" (e.g. {', '.join(u.examples[:3])})" if u.examples else ""
            lines.append(f"  unsupported {u.what} x{u.count}: {u.reason}{ex}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


@dataclass(slots=True)
class ImportResult:
    dsl_text: str
    report: ImportReport
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    def training_row(self, instruction: str | None = None) -> dict[str, Any]:
        """A dataset row (``{instruction, output, source}``) whose instruction a human completes."""
        return {
            "instruction": instruction
            or f"TODO: describe what this Blueprint does (imported from {self.report.source}; "
            f"{self.report.nodes_imported} nodes).",
            "output": self.dsl_text,
            "source": f"t3d:{self.report.source}",
            "category": "imported",
        }


# --------------------------------------------------------------------------- internals


@dataclass(slots=True)
class _Node:
    obj: T3DObject
    type: str
    spec: NodeSpec | None
    entry: UEEntry | None
    params: dict[str, str] = field(default_factory=dict)
    var_name: str | None = None
    id: str = ""
    dynamic: bool = False  # pins pass through by name (user functions, custom events)
    key: str = ""  # unique object key (names can repeat when copies are concatenated)
    borrowed_pins: list[T3DPin] = field(default_factory=list)  # a folded helper's inputs (SpawnActor)


def _prop_str(obj: T3DObject, key: str) -> str:
    value = obj.props.get(key)
    return str(value) if isinstance(value, str) else ""


def _member(obj: T3DObject, key: str) -> tuple[str, str, bool]:
    ref = obj.props.get(key)
    if not isinstance(ref, Struct):
        return "", "", False
    return str(ref.get("MemberName") or ""), str(ref.get("MemberParent") or ""), str(ref.get("bSelfContext") or "") == "True"


def _is_user_class(parent: str) -> bool:
    return "BlueprintGeneratedClass" in parent or parent.startswith("/Game/")


class _Importer:
    def __init__(self, text: str, source: str, mapping: UEMapping, parent: str | None, context: Document | None):
        self.text = text
        self.mapping = mapping
        self.catalog = mapping.catalog
        self.report = ImportReport(source=source)
        self.parent = parent
        self.context = context
        self.nodes: dict[str, _Node] = {}
        self.knots: dict[str, T3DObject] = {}
        self.objects: dict[str, T3DObject] = {}
        self.unsupported_nodes: dict[str, str] = {}  # node name -> its class/label
        self.graph_names: Counter = Counter()
        self.blueprint_names: Counter = Counter()
        self.variables: dict[str, str] = {}  # DSL var name -> DSL type
        self.var_renames: dict[str, str] = {}
        self.names: dict[str, list[str]] = {}  # object name -> unique keys (names repeat when copies are concatenated)
        self.duplicate_names = 0

    # -- classification -------------------------------------------------------

    def _has_spec(self, dsl_type: str) -> bool:
        return len(self.catalog) == 0 or self.catalog.get(dsl_type) is not None

    def _resolve(self, obj: T3DObject) -> tuple[str | None, str]:
        """(DSL type, "") or (None, reason)."""
        sc = obj.short_class
        m = self.mapping
        if sc in FUNCTION_CLASSES:
            name, parent, self_ctx = _member(obj, "FunctionReference")
            dsl = None
            if sc == "K2Node_PromotableOperator":
                dsl = m.by_operation.get(_prop_str(obj, "OperationName"))
                if dsl is not None and not self._has_spec(dsl):
                    dsl = None
            near = None
            if dsl is None:
                dsl, near = m.function_type(name, parent)
            if dsl is None and (self_ctx or _is_user_class(parent)) and name:
                dsl = "CallEvent" if name in self.custom_events else "CallFunction"
            if dsl is None:
                owner = object_short_name(parent) if parent else "self"
                if near:
                    return None, f"function {owner}.{name} has no catalog node type (not the catalog's {near})"
                return None, f"function {owner}.{name} has no catalog node type"
            return dsl, ""
        if sc == "K2Node_Event":
            name, parent, _ = _member(obj, "EventReference")
            dsl = m.by_event.get(name)
            if dsl is None and _is_user_class(parent) and self._has_spec("Event_Custom"):
                # an event declared by a Blueprint (interface or parent class): a named custom event
                self.report.add("approximation", "Blueprint-defined (interface/parent) event imported as Event_Custom", name)
                return "Event_Custom", ""
            if dsl is None:
                return None, f"event {name} has no catalog node type"
            return dsl, ""
        if sc == "K2Node_MacroInstance":
            ref = obj.props.get("MacroGraphReference")
            graph = str(ref.get("MacroGraph") or "") if isinstance(ref, Struct) else ""
            macro = graph.rstrip("'").rsplit(":", 1)[-1]
            dsl = m.by_macro.get(macro)
            if dsl is None:
                return None, f"macro {macro or '?'} has no catalog node type"
            return dsl, ""
        if sc == "K2Node_DynamicCast":
            target = object_short_name(_prop_str(obj, "TargetType"))
            dsl = m.by_cast.get(target)
            if dsl is None:
                return None, f"cast to {target or '?'} has no catalog node type"
            return dsl, ""
        dsl = m.by_class.get(sc)
        if dsl is None:
            return None, f"node class {sc or '(none)'} has no catalog node type"
        return dsl, ""

    def classify(self) -> None:
        doc = parse_t3d(self.text)
        for issue in doc.issues:
            self.report.add("parse", "unreadable text skipped", str(issue))
        self.report.objects = len(doc.objects)
        # custom events defined in this paste turn self calls into CallEvent
        self.custom_events = {
            _prop_str(o, "CustomFunctionName") for o in doc.objects if o.short_class == "K2Node_CustomEvent"
        } | {
            _member(o, "EventReference")[0]
            for o in doc.objects
            if o.short_class == "K2Node_Event" and _is_user_class(_member(o, "EventReference")[1])
        }
        for obj in doc.objects:
            sc = obj.short_class
            if obj.cls.startswith("/Script/RigVM") or sc.startswith("RigVM") or "ControlRig" in obj.cls:
                self.report.rigvm_objects += sum(1 for _ in obj.walk())
                if sc not in ("RigVMPin", "RigVMLink", "RigVMGraph"):
                    self.report.add("graph", "ControlRig (RigVM) node: not a Blueprint graph, no DSL equivalent", sc)
                continue
            if not obj.name:
                self.report.add("object", "object without a name (cannot be wired)", sc or "?")
                continue
            key = obj.name
            if key in self.objects:
                # several copies pasted into one file reuse names; pin ids stay unique
                key = f"{obj.name}#{len(self.names[obj.name]) + 1}"
                self.duplicate_names += 1
            self.names.setdefault(obj.name, []).append(key)
            self.objects[key] = obj
            self._note_path(obj)
            if sc in ("EdGraphNode_Comment", "MaterialGraphNode_Comment"):
                self.report.comments_dropped += 1
                continue
            if sc == "K2Node_Knot":
                self.knots[key] = obj
                continue
            self.report.graph_nodes += 1
            dsl_type, reason = self._resolve(obj)
            if dsl_type is not None and not self._has_spec(dsl_type):
                reason = f"maps to {dsl_type}, which the catalog does not define"
                dsl_type = None
            if dsl_type is None:
                self.unsupported_nodes[key] = sc
                self.report.add("node", reason, obj.name)
                continue
            canonical = self.catalog.canonical_node_type(dsl_type)
            node = _Node(obj, canonical, self.catalog.get(canonical), self.mapping.entry(canonical))
            node.dynamic = bool(node.spec.dynamic_pins) if node.spec else False
            node.key = key
            self._node_params_from_props(node)
            self.nodes[key] = node
        if self.duplicate_names:
            self.report.notes.append(
                f"{self.duplicate_names} object name(s) repeat (several copies in one file); links resolved by pin id"
            )

    def _note_path(self, obj: T3DObject) -> None:
        path = obj.header.get("ExportPath", "")
        inner = path.split("'", 2)[1] if path.count("'") >= 2 else path
        # /Game/Dir/BP_X.BP_X:EventGraph.K2Node_Event_2
        if ":" in inner:
            asset, rest = inner.split(":", 1)
            self.blueprint_names[asset.rsplit(".", 1)[-1]] += 1
            graph = rest.split(".", 1)[0]
            if graph:
                self.graph_names[graph] += 1

    def _name_value(self, node: _Node, param: str, value: str) -> str:
        style = (node.entry.data.get("value_style", {}) if node.entry else {}).get(param)
        if style != "string" and is_ident(value):
            return value
        return quote(value)

    def _node_params_from_props(self, node: _Node) -> None:
        obj = node.obj
        sc = obj.short_class
        if sc in ("K2Node_VariableGet", "K2Node_VariableSet"):
            name, _, _ = _member(obj, "VariableReference")
            if name:
                dsl_name = name if is_ident(name) else sanitize_ident(name)
                if dsl_name != name:
                    self.var_renames[name] = dsl_name
                node.var_name = name
                node.params["VarName"] = dsl_name
            else:
                self.report.add("value", "variable node without a variable name", obj.name)
            return
        if node.type == "Event_Custom" or sc == "K2Node_CustomEvent":
            name = _prop_str(obj, "CustomFunctionName") or _member(obj, "EventReference")[0]
            if name:
                node.params["EventName"] = self._name_value(node, "EventName", name)
            return
        if node.type in ("CallFunction", "CallEvent"):
            name, _, _ = _member(obj, "FunctionReference")
            key = "EventName" if node.type == "CallEvent" else "FunctionName"
            node.params[key] = self._name_value(node, key, name) if key == "EventName" else quote(name)
            return
        if node.entry is not None:
            for param, prop in node.entry.params.items():
                raw = obj.props.get(prop)
                if raw is None:
                    continue
                if isinstance(raw, Struct):
                    self.report.add("value", f"{prop} struct has no DSL spelling", obj.name)
                    continue
                text = str(raw)
                if prop in ("InputAction",):
                    text = object_short_name(text)
                if text and text != "None":
                    node.params[param] = self._name_value(node, param, text)

    # -- pins -------------------------------------------------------------------

    def dsl_pin(self, node: _Node, pin: T3DPin, allow_param: bool = False) -> str | None:
        """The catalog pin name for an Unreal pin of a mapped node, or None.

        With ``allow_param`` an input may also map to a declared param
        (CreateWidget's ``Class`` pin holds its ``WidgetClass`` param)."""
        direction = "out" if pin.direction == "out" else "in"
        if node.entry is not None:
            candidates = node.entry.dsl_pins(pin.name, node.var_name)
        else:
            candidates = [(sanitize_ident(pin.name), "passthrough")]
        spec = node.spec
        for name, kind in candidates:
            if spec is None:
                return name
            if kind == "var":
                # VariableGet/Set: the pin Unreal names after the variable is the catalog's Value pin
                return name
            if kind == "passthrough":
                if node.dynamic:
                    return name
                continue
            found = spec.pin(name, direction)
            if found is not None:
                return self.catalog.canonical_pin(node.type, found.name)
            canon = self.catalog.canonical_pin(node.type, name)
            if spec.pin(canon, direction) is not None:
                return canon
            if allow_param and direction == "in":
                pname = self.catalog.canonical_param(node.type, name)
                if spec.param(pname) is not None:
                    return pname
        return None

    def pin_type(self, node: _Node | None, dsl_pin: str | None, pin: T3DPin, direction: str) -> str | None:
        """Concrete DSL type of a pin: the catalog's when concrete, else from Unreal's pin category."""
        if node is not None and node.spec is not None and dsl_pin is not None:
            spec_pin = node.spec.pin(dsl_pin, direction)
            if spec_pin is not None and spec_pin.type and spec_pin.type not in NON_CONCRETE:
                return self.catalog.canonical_type(spec_pin.type)
        return self.ue_pin_type(pin)

    def ue_pin_type(self, pin: T3DPin) -> str | None:
        cat = pin.category
        if cat in ("", "wildcard", "exec"):
            return None
        if pin.container == "Array":
            return "Array"
        key = (cat, object_short_name(pin.sub_category_object) if pin.sub_category_object else "", "")
        t = self.mapping.type_by_ue.get(key)
        if t is not None and self.catalog.known_type(t):
            return t
        t = self.mapping.object_types.get(key[1]) if cat in ("object", "interface") else None
        if t is not None:
            return t
        if cat == "object":
            sub = pin.sub_category_object
            if "WidgetBlueprintGeneratedClass" in sub or "/Script/UMG." in sub:
                return "Widget"
            if "BlueprintGeneratedClass" in sub:
                return "Actor"
            return "Object"
        if cat == "struct":
            short = object_short_name(pin.sub_category_object)
            return short if self.catalog.known_type(short) else "Struct"
        if cat == "byte":
            return "Enum" if pin.sub_category_object else "Int"
        if cat in ("softobject", "interface"):
            return "Object"
        if cat in ("class", "softclass"):
            return "Class"
        return self.mapping.type_by_ue.get((cat, "", ""))

    def _is_subtype(self, sub: str, sup: str) -> bool:
        seen = set()
        cur: str | None = sub
        while cur and cur not in seen:
            if cur == sup and cur != sub:
                return True
            seen.add(cur)
            cur = self.catalog.types.get(cur, {}).get("parent") if hasattr(self.catalog, "types") else None
        return False

    # -- wires ------------------------------------------------------------------

    def collect_wires(self) -> list[tuple[str, T3DPin, str, T3DPin]]:
        """Directed pin-to-pin links (source out → target in), deduplicated, knots collapsed."""
        pin_index: dict[tuple[str, str], T3DPin] = {}
        for name, obj in self.objects.items():
            for pin in obj.pins:
                pin_index[(name, pin.pin_id)] = pin
        edges: set[tuple[str, str, str, str]] = set()
        outside = 0
        for name, obj in self.objects.items():
            for pin in obj.pins:
                for other, other_id in pin.linked_to:
                    other_key = next((k for k in self.names.get(other, ()) if (k, other_id) in pin_index), None)
                    if other_key is None:
                        outside += 1
                        continue
                    if pin.direction == "out":
                        edges.add((name, pin.pin_id, other_key, other_id))
                    else:
                        edges.add((other_key, other_id, name, pin.pin_id))
        if outside:
            self.report.add("wire", "link to a node outside the copied selection", count=outside)
        by_source: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for s, sp, d, dp in edges:
            by_source.setdefault((s, sp), []).append((d, dp))
        knot_out: dict[str, list[tuple[str, str]]] = {}
        for name, knot in self.knots.items():
            targets: list[tuple[str, str]] = []
            for pin in knot.pins:
                if pin.direction == "out":
                    targets.extend(by_source.get((name, pin.pin_id), []))
            knot_out[name] = targets
        used_knots: set[str] = set()

        def expand(d: str, dp: str, seen: frozenset[str]) -> list[tuple[str, str]]:
            if d not in self.knots:
                return [(d, dp)]
            if d in seen:
                return []
            used_knots.add(d)
            result: list[tuple[str, str]] = []
            for nd, ndp in knot_out.get(d, []):
                result.extend(expand(nd, ndp, seen | {d}))
            return result

        wires: list[tuple[str, T3DPin, str, T3DPin]] = []
        seen_final: set[tuple[str, str, str, str]] = set()
        for s, sp, d, dp in sorted(edges):
            if s in self.knots:
                continue
            for fd, fdp in expand(d, dp, frozenset()):
                key = (s, sp, fd, fdp)
                if key in seen_final:
                    continue
                seen_final.add(key)
                wires.append((s, pin_index[(s, sp)], fd, pin_index[(fd, fdp)]))
        self.report.knots_collapsed = len(used_knots)
        orphan_knots = len(self.knots) - len(used_knots)
        if orphan_knots:
            self.report.add("knot", "reroute knot with no source wire (its wires lead nowhere)", count=orphan_knots)
        return wires

    # -- assembly -----------------------------------------------------------------

    def _fold_expansions(self, wires: list[tuple[str, T3DPin, str, T3DPin]]) -> list[tuple[str, T3DPin, str, T3DPin]]:
        """Two Unreal nodes that are one DSL node: SpawnActorFromClass fed only by a
        MakeTransform (default scale) is ``SpawnActor`` with SpawnLocation/SpawnRotation."""
        for dsl_type, entry in self.mapping.entries.items():
            spec = entry.data.get("expand")
            if not spec or not self._has_spec(dsl_type):
                continue
            for key, node in list(self.nodes.items()):
                if node.obj.cls != entry.cls or node.type == dsl_type:
                    continue
                feeding = [w for w in wires if w[2] == key and w[3].name == spec["into"]]
                if len(feeding) != 1:
                    continue
                helper_key = feeding[0][0]
                helper = self.nodes.get(helper_key)
                if helper is None or helper.type != spec["via"]:
                    continue
                mapped = set(spec["pins"].values())
                if any(w[0] == helper_key and w[2] != key for w in wires):
                    continue  # the transform is used elsewhere too
                extra = [
                    p for p in helper.obj.pins
                    if p.direction == "in" and not p.hidden and p.name not in mapped
                    and (any(w[2] == helper_key and w[3] is p for w in wires) or not self._is_default(helper, p))
                ]
                if extra:
                    continue  # a scale (or anything else) set: keep both nodes
                node.type, node.spec, node.entry = dsl_type, self.catalog.get(dsl_type), entry
                node.borrowed_pins = [p for p in helper.obj.pins if p.name in mapped]
                del self.nodes[helper_key]
                self.report.nodes_folded += 1
                wires = [
                    (s, sp, key if d == helper_key else d, dp)
                    for s, sp, d, dp in wires
                    if not (s == helper_key and d == key)
                ]
        return wires

    def build(self) -> str:
        self.classify()
        wires = self._fold_expansions(self.collect_wires())
        ids = {}
        for i, (name, node) in enumerate(self._ordered_nodes(), start=1):
            node.id = f"n{i}"
            ids[name] = node
        execs: list[str] = []
        datas: list[str] = []
        linked_inputs: set[tuple[str, str]] = set()
        for s, spin, d, dpin in wires:
            linked_inputs.add((d, dpin.pin_id))
            src, dst = self.nodes.get(s), self.nodes.get(d)
            if src is None or dst is None:
                which = self.unsupported_nodes.get(s if src is None else d, "")
                self.report.add("wire", "wire to or from an unsupported node", f"{s}.{spin.name} -> {d}.{dpin.name}" if which else None)
                continue
            sname, dname = self.dsl_pin(src, spin), self.dsl_pin(dst, dpin)
            if sname is None or dname is None:
                bad_pin = spin if sname is None else dpin
                bad = f"{src.type}.{spin.name}" if sname is None else f"{dst.type}.{dpin.name}"
                if bad_pin.parent_pin:
                    self.report.add("pin", "member pin of a split struct (Split Struct Pin) has no DSL equivalent", bad)
                else:
                    self.report.add("pin", "wired pin has no catalog pin", bad)
                continue
            if spin.is_exec or dpin.is_exec:
                execs.append(f"EXEC {src.id}.{sname} -> {dst.id}.{dname}")
                self.report.exec_wires += 1
                continue
            wtype = self._wire_type(src, sname, spin, dst, dname, dpin)
            if wtype is None:
                self.report.add("wire", "DATA wire between untyped (wildcard) pins; typed Wildcard", f"{src.type}.{sname}")
                wtype = "Wildcard"
            datas.append(f"DATA {src.id}.{sname} -> {dst.id}.{dname} [{wtype}]")
            self.report.data_wires += 1
        # params from input pin defaults
        self.literal_datas: list[str] = []
        for name, node in ids.items():
            self._pin_params(node, linked_inputs)
            self._collect_var(node)
        return self._render(ids, execs, datas + self.literal_datas)

    def _wire_type(self, src: _Node, sname: str, spin: T3DPin, dst: _Node, dname: str, dpin: T3DPin) -> str | None:
        dst_t = self.pin_type(dst, dname, dpin, "in")
        src_t = self.pin_type(src, sname, spin, "out")
        if dst_t is not None and dst.entry is not None and dname in dst.entry.data.get("wire_type_from_target", ()):
            return dst_t
        if dst_t is None:
            return src_t
        if src_t is not None and self._is_subtype(src_t, dst_t):
            return src_t
        return dst_t

    def _is_default(self, node: _Node, pin: T3DPin) -> bool:
        """Unreal writes ``AutogeneratedDefaultValue`` next to every untouched default, so a
        value differs from the default when it differs from that, or stands without it."""
        if pin.category in ("object", "class", "softobject", "softclass", "interface"):
            return not pin.default_object
        value = pin.default_value
        if value is None:
            return True
        if pin.autogenerated_default is not None:
            return _same_value(value, pin.autogenerated_default)
        if value.strip() == "" and pin.category not in ("string", "text"):
            return True
        return False

    def _pin_params(self, node: _Node, linked_inputs: set[tuple[str, str]]) -> None:
        for pin in [*node.obj.pins, *node.borrowed_pins]:
            if pin.direction != "in" or pin.is_exec or pin.hidden or pin.parent_pin:
                continue
            if (node.key, pin.pin_id) in linked_inputs or pin.linked_to:
                continue
            if self._is_default(node, pin):
                continue
            literal = ue_to_dsl(pin.category, pin.sub_category_object, pin.default_value, pin.default_object)
            label = f"{node.type}.{pin.name}={pin.default_object or pin.default_value}"
            if literal is None:
                self.report.add("value", "pin default has no DSL spelling", label[:80])
                continue
            dname = self.dsl_pin(node, pin, allow_param=True)
            if dname is None:
                self.report.add("value", "pin with a value has no catalog pin", label[:80])
                continue
            if node.type == "VariableSet" and dname == "Value":
                # the lessons write a literal into a variable as a DATA line, never as a param
                vtype = self.ue_pin_type(pin) or "Wildcard"
                self.literal_datas.append(f"DATA {literal} -> {node.id}.Value [{vtype}]")
                self.report.literal_inputs += 1
                continue
            if dname in node.params:
                continue
            if node.dynamic and node.spec is not None and node.spec.param(dname) is None:
                # a user function's own input: the DSL names its pins but has no params for them
                self.report.add("value", "value on a user function/event pin has no DSL param", label[:80])
                continue
            node.params[dname] = literal
            self.report.params += 1

    def _collect_var(self, node: _Node) -> None:
        if node.var_name is None:
            return
        dsl_name = node.params.get("VarName", node.var_name)
        for pin in node.obj.pins:
            if pin.name == node.var_name:
                t = self.ue_pin_type(pin)
                if t == "Array":
                    elem = self.ue_pin_type(_element_pin(pin))
                    if elem is not None and elem != "Array":
                        t = f"Array<{elem}>"
                if t is not None:
                    self.variables.setdefault(dsl_name, t)
                    return
        self.variables.setdefault(dsl_name, "Wildcard")

    def _ordered_nodes(self) -> list[tuple[str, _Node]]:
        def pos(node: _Node) -> tuple[int, int]:
            try:
                return int(str(node.obj.props.get("NodePosX", 0))), int(str(node.obj.props.get("NodePosY", 0)))
            except ValueError:
                return 0, 0

        items = list(self.nodes.items())
        items.sort(key=lambda kv: (0 if kv[1].obj.short_class in _EVENT_CLASSES else 1, pos(kv[1])[1] if kv[1].obj.short_class in _EVENT_CLASSES else 0, pos(kv[1]), kv[0]))
        return items

    def _render(self, ids: dict[str, _Node], execs: list[str], datas: list[str]) -> str:
        ctx = self.context
        name = ctx.name if ctx is not None and ctx.name else None
        if name is None:
            guess = self.blueprint_names.most_common(1)[0][0] if self.blueprint_names else "BP_Imported"
            name = guess if is_ident(guess) else sanitize_ident(guess)
        parent = self.parent or (ctx.header("PARENT") if ctx is not None else None)
        if parent is None:
            parent = self._guess_parent()
            self.report.notes.append(f"clipboard text names no parent class; PARENT guessed as {parent} (pass --parent to set it)")
        lines = [f"BLUEPRINT: {name}", f"PARENT: {parent}"]
        if ctx is not None and ctx.header("CATEGORY"):
            lines.append(f"CATEGORY: {ctx.header('CATEGORY')}")
        declared: dict[str, str] = {}
        if ctx is not None:
            for v in ctx.vars:
                line = f"VAR {v.name}: {v.type}" + (f" = {v.default.raw}" if v.default is not None else "")
                declared[v.name] = line
        for var, vtype in self.variables.items():
            declared.setdefault(var, f"VAR {var}: {vtype}")
        lines.extend(declared.values())
        for old, new in self.var_renames.items():
            self.report.add("variable", "variable name is not a DSL identifier; renamed", f"{old!r} -> {new}")
        graph = self.graph_names.most_common(1)[0][0] if self.graph_names else "EventGraph"
        if ctx is not None and ctx.graphs:
            graph = ctx.graphs[0].name
        if len(self.graph_names) > 1:
            self.report.notes.append(f"nodes come from several graphs ({', '.join(self.graph_names)}); all placed in {graph}")
        lines.append(f"GRAPH: {graph if is_ident(graph) else sanitize_ident(graph)}")
        for node in ids.values():
            params = ", ".join(f"{k}={v}" for k, v in node.params.items())
            lines.append(f"NODE {node.id}: {node.type}" + (f" [{params}]" if params else ""))
            self.report.node_types[node.type] += 1
        self.report.nodes_imported = len(ids)
        lines.extend(execs)
        lines.extend(datas)
        return "\n".join(lines) + "\n"

    def _guess_parent(self) -> str:
        parents = Counter()
        for node in self.nodes.values():
            if node.obj.short_class == "K2Node_Event":
                _, parent, _ = _member(node.obj, "EventReference")
                short = object_short_name(parent)
                if short in ("UserWidget",):
                    parents["UserWidget"] += 1
                elif short in ("Pawn", "Character", "PlayerController", "Actor"):
                    parents[short] += 1
        return parents.most_common(1)[0][0] if parents else "Actor"


def _element_pin(pin: T3DPin) -> T3DPin:
    """The same pin type without its container (an Array<Actor> pin's Actor)."""
    from dataclasses import replace

    return replace(pin, container="")


def _same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        pass
    if "," in a and "," in b:
        pa, pb = [x.strip() for x in a.split(",")], [x.strip() for x in b.split(",")]
        if len(pa) == len(pb):
            return all(_same_value(x, y) for x, y in zip(pa, pb))
    return a.strip().lower() == b.strip().lower() and a.strip().lower() in ("true", "false")


# --------------------------------------------------------------------------- API


def map_objects(text: str, mapping: UEMapping | None = None) -> list[tuple[T3DObject, str]]:
    """Every graph node of a clipboard text that maps to a catalog type, with that type."""
    importer = _Importer(text, "<text>", mapping or default_mapping(), None, None)
    importer.classify()
    return [(node.obj, node.type) for node in importer.nodes.values()]


def import_t3d_text(
    text: str,
    source: str = "<clipboard>",
    *,
    parent: str | None = None,
    context: Document | str | None = None,
    mapping: UEMapping | None = None,
    validate_output: bool = True,
) -> ImportResult:
    """Clipboard text → ``ImportResult(dsl_text, report, diagnostics)``; never raises on bad input.

    ``context`` (an existing DSL text or Document) supplies what clipboard text
    cannot carry: the BLUEPRINT name, PARENT class and VAR declarations (types and
    defaults). Without it PARENT is guessed (and the guess noted in the report).
    """
    from ..parser import parse

    mapping = mapping or default_mapping()
    if isinstance(context, str):
        context = parse(context)
    importer = _Importer(text if isinstance(text, str) else str(text), source, mapping, parent, context)
    raw = importer.build()
    dsl_text = raw
    try:
        from ..formatter import format_dsl

        dsl_text = format_dsl(raw, mapping.catalog)
    except Exception as exc:  # noqa: BLE001 - reported in the notes; the unformatted text still says everything
        importer.report.notes.append(f"formatter refused the output ({type(exc).__name__}: {exc}); left unformatted")
    diagnostics: list[Diagnostic] = []
    if validate_output:
        diagnostics = _validate(dsl_text, mapping)
    return ImportResult(dsl_text, importer.report, diagnostics)


def _validate(dsl_text: str, mapping: UEMapping) -> list[Diagnostic]:
    try:
        from ..validator import validate
    except ImportError:
        from ..parser import parse

        return list(parse(dsl_text).errors)
    try:
        return list(validate(dsl_text, mapping.catalog))
    except TypeError:
        return list(validate(dsl_text))
