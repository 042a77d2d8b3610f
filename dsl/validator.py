"""Semantic validation of a Blueprint DSL text against the node catalog.

``validate`` returns every problem of a text as positioned diagnostics: the
parser's syntax errors plus the semantic ones found here (structure, node types,
params, pins, wire kinds and directions, types, reachability). Each diagnostic
points at the exact token (a pin name, a param value, a ``[Type]`` suffix) and its
message says what is wrong and what would be right. The codes are stable and
documented in ``docs/catalog.md``.

It never raises: any input (junk included) yields a list. The semantic pass is
linear in the text with catalog lookups precomputed, so it can run on every
keystroke of the lesson editor; difflib only runs to phrase an error message.
"""
from __future__ import annotations

import difflib
import re
from collections import defaultdict
from typing import Iterable, Literal

from .ast import Connection, Diagnostic, Document, NodeDecl, PinRef, Severity, Span, Value
from .catalog import VAR_TYPE, WILDCARD, Catalog, NodeSpec, PinSpec, default_catalog
from .parser import parse

__all__ = ["validate", "CODES"]

# code -> (default severity, one-line meaning); docs/catalog.md explains each with an example.
CODES: dict[str, tuple[str, str]] = {
    "syntax": ("error", "the line does not match the grammar (reported by the parser)"),
    "missing-header": ("error", "no BLUEPRINT: or PARENT: header"),
    "duplicate-header": ("error", "a header key given twice"),
    "missing-graph": ("error", "no GRAPH: line"),
    "duplicate-graph": ("error", "a second GRAPH: line"),
    "empty-graph": ("error", "a graph with no NODE lines"),
    "duplicate-var": ("error", "a VAR name declared twice"),
    "duplicate-node": ("error", "a node id declared twice"),
    "undeclared-node": ("error", "a wire names a node id no NODE line declares"),
    "unknown-node": ("error", "a node type the catalog does not know (warning if the workspace allows it)"),
    "unknown-param": ("error", "a param the node type does not have"),
    "duplicate-param": ("error", "a param given twice on one node"),
    "missing-param": ("error", "a required param is absent (VariableGet without VarName)"),
    "literal-type": ("error", "a literal that does not fit its type (param value, VAR default, DATA literal)"),
    "unknown-pin": ("error", "a pin the node type does not have"),
    "kind-mismatch": ("error", "an EXEC wire on a data pin or a DATA wire on an exec pin"),
    "direction": ("error", "a wire that does not run from an output to an input"),
    "type-mismatch": ("error", "a DATA [Type] that disagrees with its source or target pin"),
    "multiple-sources": ("error", "a data input fed by more than one wire"),
    "variadic-input": ("warning", "several wires into one input of an operator that grows input pins (Add, Multiply)"),
    "unknown-type": ("warning", "a type name the catalog does not know"),
    "order": ("warning", "sections out of order (headers, VARs, GRAPH, NODEs, wires)"),
    "undeclared-var": ("warning", "VariableGet/VariableSet names a variable no VAR line declares"),
    "var-as-pin": ("warning", "a variable read as if it were an output pin of another node"),
    "pure-exec": ("warning", "an EXEC wire on a pure node, which has no exec pins in Unreal"),
    "alias": ("warning", "a spelling the catalog resolves, but which is wrong for Unreal"),
    "duplicate-connection": ("warning", "the same wire twice"),
    "exec-fanout": ("warning", "one exec output wired to several inputs"),
    "unconnected-input": ("warning", "a required data input with no wire and no param"),
    "unreachable": ("warning", "a node no exec path from an event reaches"),
    "no-event": ("error", "a graph with nodes but no event node: nothing in it ever runs"),
    "no-wires": ("error", "a graph of several nodes without a single EXEC or DATA line"),
    "internal": ("error", "the validator itself failed (a bug; please report the text)"),
}

_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
_INT_RE = re.compile(r"-?[0-9]+")
_DIR_WORD = {"in": "input", "out": "output"}


def validate(
    source: str | Document,
    catalog: Catalog | None = None,
    *,
    unknown_nodes: Literal["error", "warning"] | str = "error",
) -> list[Diagnostic]:
    """All diagnostics of a text (syntax + semantics), sorted by position. Never raises."""
    diags: list[Diagnostic] = []
    try:
        doc = source if isinstance(source, Document) else parse(source if isinstance(source, str) else str(source))
        diags.extend(doc.errors)
        cat = catalog if catalog is not None else default_catalog()
        _Checker(doc, cat, "warning" if unknown_nodes == "warning" else "error", diags).run()
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"; surface it as a diagnostic
        diags.append(Diagnostic(1, 1, 1, 2, "error", "internal", f"validator failed: {type(exc).__name__}: {exc}"))
    diags.sort(key=lambda d: (d.line, d.column, _SEVERITY_RANK.get(d.severity, 3), d.code, d.message))
    return diags


def literal_kind(value: Value) -> str:
    """The literal kind a catalog type table speaks of: int/float split numbers."""
    if value.kind == "number":
        return "int" if _INT_RE.fullmatch(value.raw) else "float"
    return value.kind


_KIND_WORDS = {
    "int": "a whole number",
    "float": "a decimal number",
    "string": "a quoted string",
    "bool": "true/false",
    "none": "None",
    "ident": "a bare name",
    "struct": "a struct (X=..,Y=..)",
}


def _literal_hint(kinds: frozenset[str] | None) -> str:
    if kinds is None:
        return "any value"
    if not kinds:
        return "a wire (this type has no literals)"
    order = ["bool", "int", "float", "string", "ident", "struct", "none"]
    words = [_KIND_WORDS[k] for k in order if k in kinds]
    if "int" in kinds and "float" in kinds:
        words.remove(_KIND_WORDS["int"])
        words[words.index(_KIND_WORDS["float"])] = "a number"
    return " or ".join(words)


def _suggest(name: str, options: Iterable[str]) -> str:
    """" (did you mean 'X'?)" when a close spelling exists (error path only)."""
    options = list(options)
    lowered = {o.lower(): o for o in options}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return f" (did you mean '{lowered[name.lower()]}'?)"
    matches = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def _a(word: str) -> str:
    """'a Float', 'an Actor', 'an exec input'."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


class _Resolved:
    """A wire endpoint's pin after lookup, with its effective data type."""

    __slots__ = ("pin", "type")

    def __init__(self, pin: PinSpec | None, type_: str | None):
        self.pin = pin
        self.type = type_


_UNJUDGED = _Resolved(None, None)  # endpoint on an unknown node or a reported error: no type checks


class _Checker:
    def __init__(self, doc: Document, cat: Catalog, unknown_severity: Severity, out: list[Diagnostic]):
        self.doc = doc
        self.cat = cat
        self.unknown_severity = unknown_severity
        self.out = out
        self.nodes: dict[str, NodeDecl] = {}
        self.specs: dict[str, NodeSpec | None] = {}
        self.var_types: dict[str, str] = {}  # VAR name -> base type
        self.pin_maps: dict[str, dict[str, str]] = {}  # node id -> its pin aliases
        self.param_maps: dict[str, dict[str, str]] = {}  # node id -> its param aliases

    # -- helpers -------------------------------------------------------------
    def emit(self, span: Span, code: str, message: str, severity: Severity | None = None) -> None:
        sev = severity or CODES[code][0]
        self.out.append(Diagnostic.at(span, sev, code, message))  # type: ignore[arg-type]

    def run(self) -> None:
        self.check_structure()
        self.check_vars()
        self.check_nodes()
        self.check_connections()

    # -- headers, graph, order -----------------------------------------------
    def check_structure(self) -> None:
        doc = self.doc
        first_line = Span(1, 1, 1, 2)
        seen: dict[str, int] = {}
        for h in doc.headers:
            if h.key in seen:
                self.emit(h.span, "duplicate-header",
                          f"second {h.key} header; the first is on line {seen[h.key]} (a text has one of each)")
            else:
                seen[h.key] = h.span.line
        for key, example in (("BLUEPRINT", "BLUEPRINT: BP_MyActor"), ("PARENT", "PARENT: Actor")):
            if key not in seen:
                self.emit(first_line, "missing-header", f"missing {key} header; start the text with '{example}'")
        if not doc.graphs:
            where = doc.nodes[0].span if doc.nodes else first_line
            self.emit(where, "missing-graph", "missing 'GRAPH: EventGraph' line; put it after the headers and VARs, before the first NODE")
        for g in doc.graphs[1:]:
            self.emit(g.span, "duplicate-graph",
                      f"second GRAPH line; a text has exactly one graph (declared on line {doc.graphs[0].span.line})")
        if len(doc.nodes) > 1 and not doc.connections and not self._broken_wire_lines():
            self.emit(doc.graphs[0].span if doc.graphs else doc.nodes[0].span, "no-wires",
                      f"{len(doc.nodes)} nodes but no EXEC or DATA lines: nothing is wired, so nothing happens; "
                      "connect them, e.g. EXEC n1.Then -> n2.Execute")
        if doc.graphs and not doc.nodes:
            self.emit(doc.graphs[0].span, "empty-graph",
                      f"GRAPH: {doc.graphs[0].name} has no NODE lines; a graph needs at least an event node "
                      "(e.g. NODE n1: Event_BeginPlay)")
        # section order: headers, VARs, GRAPH, NODEs, then wires (wires and nodes may interleave)
        rank_of = {"Header": 0, "VarDecl": 1, "GraphDecl": 2, "NodeDecl": 3, "Connection": 3}
        names = {"Header": "header", "VarDecl": "VAR", "GraphDecl": "GRAPH", "NodeDecl": "NODE", "Connection": "wire"}
        highest, highest_kind = -1, ""
        for st in doc.statements:
            kind = type(st).__name__
            rank = rank_of.get(kind, 3)
            if kind == "GraphDecl" and highest >= 2:
                pass  # duplicate-graph covers a second GRAPH
            elif rank < highest:
                what = f"{st.key} header" if kind == "Header" else names[kind]  # type: ignore[union-attr]
                self.emit(st.span, "order",
                          f"{what} after a {highest_kind} line; order is headers, VARs, GRAPH, then NODEs and wires")
                continue
            if rank > highest:
                highest, highest_kind = rank, names[kind]

    def _broken_wire_lines(self) -> bool:
        """Whether some EXEC/DATA line failed to parse (then "no wires" would mislead)."""
        lines = self.doc.text.split("\n")
        for d in self.doc.errors:
            if 0 < d.line <= len(lines) and lines[d.line - 1].lstrip().startswith(("EXEC", "DATA")):
                return True
        return False

    # -- VARs ----------------------------------------------------------------
    def check_vars(self) -> None:
        cat = self.cat
        lines: dict[str, int] = {}
        for v in self.doc.vars:
            if v.name in lines:
                self.emit(v.name_span, "duplicate-var", f"variable {v.name} is already declared on line {lines[v.name]}")
                continue
            lines[v.name] = v.span.line
            base = cat.base_type(v.type.name)
            if not cat.known_type(base):
                self.emit(v.type.span, "unknown-type",
                          f"unknown type '{v.type.name}'{_suggest(v.type.name, cat.types)}; known: {self._type_list()}")
                self.var_types[v.name] = WILDCARD
                continue
            self.var_types[v.name] = base
            for arg in v.type.args:
                if not cat.known_type(cat.base_type(arg.name)):
                    self.emit(arg.span, "unknown-type", f"unknown element type '{arg.name}'{_suggest(arg.name, cat.types)}")
            if v.default is not None:
                kind = literal_kind(v.default)
                if not cat.accepts_literal(base, kind):
                    self.emit(v.default.span, "literal-type",
                              f"default {v.default.raw} does not fit {v.type}; write {_literal_hint(cat.literal_kinds(base))}")

    def _type_list(self) -> str:
        return ", ".join(t for t in self.cat.types if t not in (WILDCARD, VAR_TYPE, "Numeric"))

    # -- NODEs ---------------------------------------------------------------
    def check_nodes(self) -> None:
        cat = self.cat
        for n in self.doc.nodes:
            if n.id in self.nodes:
                first = self.nodes[n.id]
                self.emit(n.id_span, "duplicate-node",
                          f"node id {n.id} is already declared on line {first.span.line} ({first.type}); use a new id")
                continue
            self.nodes[n.id] = n
            self.pin_maps[n.id] = cat.pin_alias_map(n.type)
            self.param_maps[n.id] = cat.param_alias_map(n.type)
            spec = cat.get(n.type)
            self.specs[n.id] = spec
            if spec is None:
                self.emit(n.type_span, "unknown-node",
                          f"unknown node type '{n.type}'{_suggest(n.type, self._node_names())}", self.unknown_severity)
                continue
            if spec.name != n.type:
                warn = cat.alias_warning("nodes", n.type, n.type)
                if warn:
                    self.emit(n.type_span, "alias", warn)
            self.check_params(n, spec)

    def _node_names(self) -> list[str]:
        return list(self.cat.nodes) + list(self.cat.node_aliases)

    def check_params(self, n: NodeDecl, spec: NodeSpec) -> None:
        cat = self.cat
        given: dict[str, int] = {}
        aliases = self.param_maps[n.id]
        for p in n.params:
            name = aliases.get(p.name, p.name)
            if name in given:
                self.emit(p.name_span, "duplicate-param", f"{spec.name} param {name} is already given on this node")
                continue
            given[name] = 1
            ps = spec.param(name)
            if ps is None:
                options = [q.name for q in spec.all_params]
                listing = ", ".join(options) if options else "none"
                self.emit(p.name_span, "unknown-param",
                          f"{spec.name} has no param '{p.name}'{_suggest(p.name, options)}; params: {listing}")
                continue
            if name != p.name:
                warn = cat.alias_warning("params", n.type, p.name)
                if warn:
                    self.emit(p.name_span, "alias", warn)
            ptype = ps.type
            if ptype == VAR_TYPE:
                ptype = self._var_type_of(n, spec)
            kind = literal_kind(p.value)
            if not cat.accepts_literal(ptype, kind):
                self.emit(p.value.span, "literal-type",
                          f"{spec.name}.{name} is {_a(ptype)}; {p.value.raw} is {_KIND_WORDS.get(kind, kind)} — "
                          f"write {_literal_hint(cat.literal_kinds(ptype))}")
        for ps in spec.params:
            if ps.required and ps.name not in given:
                example = self._example(ps.type)
                if spec.named_pin is not None and ps.name == spec.named_pin[0] and self.var_types:
                    example = next(iter(self.var_types))
                self.emit(n.type_span, "missing-param",
                          f"{spec.name} needs {ps.name}=...; e.g. NODE {n.id}: {spec.name} [{ps.name}={example}]")
        if spec.named_pin is not None:
            param_name = spec.named_pin[0]
            p = self._param(n, param_name)
            if p is not None:
                var = p.value.python
                if isinstance(var, str) and var not in self.var_types:
                    self.emit(p.value.span, "undeclared-var",
                              f"variable {var} is not declared; add 'VAR {var}: <Type>' before GRAPH")

    @staticmethod
    def _example(type_name: str) -> str:
        return {"Bool": "true", "Int": "0", "Float": "1.0", "String": '"Text"', "Text": '"Text"'}.get(type_name, "MyName")

    def _param(self, n: NodeDecl, canonical: str):
        if not n.params:
            return None
        aliases = self.param_maps.get(n.id) or self.cat.param_alias_map(n.type)
        for p in n.params:
            if aliases.get(p.name, p.name) == canonical:
                return p
        return None

    def _var_type_of(self, n: NodeDecl, spec: NodeSpec) -> str:
        """The type of the VAR a VariableGet/VariableSet names (Wildcard when unknown)."""
        if spec.named_pin is None:
            return WILDCARD
        p = self._param(n, spec.named_pin[0])
        if p is None:
            return WILDCARD
        name = p.value.python
        return self.var_types.get(name, WILDCARD) if isinstance(name, str) else WILDCARD

    # -- wires ---------------------------------------------------------------
    def resolve(self, ref: PinRef, want_dir: str, want_kind: str) -> _Resolved:
        """Look up one endpoint, reporting what is wrong with it."""
        node = self.nodes.get(ref.node)
        if node is None:
            declared = ", ".join(sorted(self.nodes, key=lambda s: (len(s), s))) or "none"
            self.emit(ref.node_span, "undeclared-node", f"{ref.node} is not declared; declared nodes: {declared}")
            return _UNJUDGED
        spec = self.specs.get(ref.node)
        if spec is None:
            return _UNJUDGED
        cat = self.cat
        name = self.pin_maps[ref.node].get(ref.pin, ref.pin)
        if name != ref.pin:
            warn = cat.alias_warning("pins", node.type, ref.pin)
            if warn:
                self.emit(ref.pin_span, "alias", warn)
        cands = spec.pins_named(name)
        if not cands and spec.named_pin is not None:
            p = self._param(node, spec.named_pin[0])
            if p is not None and p.value.python == ref.pin:
                cands = spec.pins_named(spec.named_pin[1])
        if not cands:
            return self._unknown_pin(ref, node, spec, want_dir, want_kind)
        for c in cands:
            if c.direction == want_dir and c.kind == want_kind:
                return _Resolved(c, self._pin_type(node, spec, c))
        wire = "EXEC" if want_kind == "exec" else "DATA"
        end = "source" if want_dir == "out" else "target"
        same_dir = [c for c in cands if c.direction == want_dir]
        if same_dir:
            c = same_dir[0]
            options = spec.pin_names(want_dir, want_kind)
            hint = f"{spec.name} {want_kind} {_DIR_WORD[want_dir]}s: {', '.join(options)}" if options else \
                f"{spec.name} has no {want_kind} {_DIR_WORD[want_dir]}s"
            self.emit(ref.pin_span, "kind-mismatch",
                      f"{ref} is {_a(c.kind)} {_DIR_WORD[c.direction]}; {_a(wire)} {end} must be {_a(want_kind)} pin ({hint})")
            return _UNJUDGED
        if want_kind == "exec" and spec.pure:
            return self._pure_exec(ref, spec)
        c = cands[0]
        options = spec.pin_names(want_dir, want_kind)
        hint = f"{spec.name} {want_kind} {_DIR_WORD[want_dir]}s: {', '.join(options)}" if options else \
            f"{spec.name} has no {want_kind} {_DIR_WORD[want_dir]}s"
        self.emit(ref.pin_span, "direction",
                  f"{ref} is an {_DIR_WORD[c.direction]}; wires run from an output "
                  f"to an input, so the {end} must be an {_DIR_WORD[want_dir]} ({hint})")
        return _UNJUDGED

    def _pure_exec(self, ref: PinRef, spec: NodeSpec) -> _Resolved:
        self.emit(ref.pin_span, "pure-exec",
                  f"{spec.name} is pure (no exec pins in Unreal); {ref} is ignored — wire the exec chain past it")
        return _UNJUDGED

    def _unknown_pin(self, ref: PinRef, node: NodeDecl, spec: NodeSpec, want_dir: str, want_kind: str) -> _Resolved:
        if spec.dynamic_pins:
            return _Resolved(None, WILDCARD)
        if want_kind == "data" and want_dir == "out" and ref.pin in self.var_types:
            self.emit(ref.pin_span, "var-as-pin",
                      f"{spec.name} has no output '{ref.pin}'; {ref.pin} is a variable — read it with "
                      f"a 'VariableGet [VarName={ref.pin}]' node")
            return _Resolved(None, self.var_types[ref.pin])
        if want_kind == "exec" and spec.pure and ref.pin in ("Execute", "Then"):
            return self._pure_exec(ref, spec)
        options = spec.pin_names(want_dir, want_kind)
        all_names = [p.name for p in spec.pins]
        suggestion = _suggest(ref.pin, all_names)
        if options:
            listing = f"; {want_kind} {_DIR_WORD[want_dir]}s: {', '.join(options)}"
        else:
            listing = f"; it has no {want_kind} {_DIR_WORD[want_dir]}s"
        if spec.pure and want_kind == "exec":
            listing += " (pure node)"
        self.emit(ref.pin_span, "unknown-pin",
                  f"{spec.name} has no {want_kind} {_DIR_WORD[want_dir]} '{ref.pin}'{suggestion}{listing}")
        return _UNJUDGED

    def _pin_type(self, node: NodeDecl, spec: NodeSpec, pin: PinSpec) -> str | None:
        if pin.kind != "data":
            return None
        t = pin.type or WILDCARD
        if t == VAR_TYPE:
            return self._var_type_of(node, spec)
        return t

    def check_connections(self) -> None:
        exec_out: dict[tuple[str, str], list[Connection]] = defaultdict(list)
        data_in: dict[tuple[str, str], list[Connection]] = defaultdict(list)
        seen_wires: dict[tuple, int] = {}
        exec_edges: dict[str, list[str]] = defaultdict(list)
        data_feeds: dict[str, list[str]] = defaultdict(list)  # target node -> source nodes
        for c in self.doc.connections:
            target = c.target
            if isinstance(c.source, PinRef) and self._reversed(c):
                if c.kind == "EXEC":
                    exec_edges[target.node].append(c.source.node)
                else:
                    data_feeds[c.source.node].append(target.node)
                continue
            if c.kind == "EXEC":
                src = self.resolve(c.source, "out", "exec")  # type: ignore[arg-type]
                dst = self.resolve(target, "in", "exec")
                s_ref: PinRef = c.source  # type: ignore[assignment]
                if s_ref.node in self.nodes and target.node in self.nodes:
                    exec_edges[s_ref.node].append(target.node)
                    if src.pin is not None and dst.pin is not None:
                        exec_out[(s_ref.node, src.pin.name)].append(c)
                key = ("EXEC", s_ref.node, self._canon_pin(s_ref), target.node, self._canon_pin(target))
            else:
                dst = self.resolve(target, "in", "data")
                if isinstance(c.source, Value):
                    self.check_literal_wire(c, c.source, dst)
                    key = ("DATA", c.source.canonical(), target.node, self._canon_pin(target))
                else:
                    src = self.resolve(c.source, "out", "data")
                    self.check_data_types(c, src, dst)
                    if c.source.node in self.nodes and target.node in self.nodes:
                        data_feeds[target.node].append(c.source.node)
                    key = ("DATA", c.source.node, self._canon_pin(c.source), target.node, self._canon_pin(target))
                if target.node in self.nodes and dst.pin is not None:
                    data_in[(target.node, dst.pin.name)].append(c)
            if key in seen_wires:
                self.emit(c.span, "duplicate-connection", f"this wire already appears on line {seen_wires[key]}")
            else:
                seen_wires[key] = c.span.line
        for (node_id, pin), conns in exec_out.items():
            targets = {(c.target.node, self._canon_pin(c.target)) for c in conns}
            if len(targets) > 1:
                first = conns[0]
                for c in conns[1:]:
                    if (c.target.node, self._canon_pin(c.target)) == (first.target.node, self._canon_pin(first.target)):
                        continue
                    self.emit(c.span, "exec-fanout",
                              f"{node_id}.{pin} already drives {first.target} (line {first.span.line}); an exec output "
                              "runs one input — chain the nodes or use a Sequence")
        for (node_id, pin), conns in data_in.items():
            sources = {self._source_key(c) for c in conns}
            if len(sources) > 1:
                spec = self.specs.get(node_id)
                for c in conns[1:]:
                    if self._source_key(c) == self._source_key(conns[0]):
                        continue
                    if spec is not None and spec.variadic:
                        self.emit(c.span, "variadic-input",
                                  f"{node_id}.{pin} is already fed on line {conns[0].span.line}; {spec.name} takes one wire "
                                  "per input — in Unreal add an input pin for the extra operand")
                    else:
                        self.emit(c.span, "multiple-sources",
                                  f"{node_id}.{pin} is already fed on line {conns[0].span.line}; a data input takes one wire")
        self.check_required_inputs(data_in)
        self.check_reachability(exec_edges, data_feeds)

    def _reversed(self, c: Connection) -> bool:
        """A wire written target-first (input -> output): one error with the corrected line."""
        src, dst = c.source, c.target
        assert isinstance(src, PinRef)
        s_spec, d_spec = self.specs.get(src.node), self.specs.get(dst.node)
        if s_spec is None or d_spec is None:
            return False
        kind = "exec" if c.kind == "EXEC" else "data"
        s_c = s_spec.pins_named(self._canon_pin(src))
        d_c = d_spec.pins_named(self._canon_pin(dst))
        if not s_c or not d_c:
            return False
        if not (all(p.direction == "in" for p in s_c) and any(p.kind == kind for p in s_c)):
            return False
        if not (all(p.direction == "out" for p in d_c) and any(p.kind == kind for p in d_c)):
            return False
        suffix = f" [{c.type}]" if c.type is not None else ""
        self.emit(Span(c.span.line, src.span.column, c.span.line, dst.span.end_column), "direction",
                  f"this wire runs backwards ({src} is an input, {dst} an output); "
                  f"write {c.kind} {dst} -> {src}{suffix}")
        return True

    def _canon_pin(self, ref: PinRef) -> str:
        aliases = self.pin_maps.get(ref.node)
        return aliases.get(ref.pin, ref.pin) if aliases else ref.pin

    def _source_key(self, c: Connection) -> tuple:
        if isinstance(c.source, Value):
            return ("lit", c.source.canonical())
        return (c.source.node, self._canon_pin(c.source))

    def _wire_type(self, c: Connection) -> str | None:
        """The DATA line's [Type] as a base type, or None when absent or unknown (reported)."""
        if c.type is None:
            return None
        base = self.cat.base_type(c.type.name)
        if not self.cat.known_type(base):
            self.emit(c.type.span, "unknown-type",
                      f"unknown type '{c.type.name}'{_suggest(c.type.name, self.cat.types)}; known: {self._type_list()}")
            return None
        return base

    @staticmethod
    def _concrete(t: str | None) -> bool:
        return t is not None and t not in (WILDCARD, VAR_TYPE, "Numeric")

    def check_data_types(self, c: Connection, src: _Resolved, dst: _Resolved) -> None:
        cat = self.cat
        wire = self._wire_type(c)
        s, d = src.type, dst.type
        span = c.type.span if c.type is not None else c.span
        if wire is not None:
            if s is not None and not cat.assignable(s, wire):
                fix = f"; write [{s}]" if self._concrete(s) else ""
                self.emit(span, "type-mismatch", f"[{c.type}] disagrees with {c.source}, which is {_a(s)}{fix}")
                return
            if d is not None and not cat.assignable(wire, d):
                fix = f"; write [{d}]" if self._concrete(d) and (s is None or cat.assignable(s, d)) else ""
                self.emit(span, "type-mismatch", f"{c.target} takes {_a(d)}; a [{c.type}] wire cannot feed it{fix}")
            return
        if s is not None and d is not None and not cat.assignable(s, d):
            self.emit(span, "type-mismatch", f"{c.source} is {_a(s)}; {c.target} takes {_a(d)}")

    def check_literal_wire(self, c: Connection, lit: Value, dst: _Resolved) -> None:
        cat = self.cat
        wire = self._wire_type(c)
        kind = literal_kind(lit)
        if wire is not None:
            if not cat.accepts_literal(wire, kind):
                self.emit(lit.span, "literal-type",
                          f"{lit.raw} is {_KIND_WORDS.get(kind, kind)}, not {_a(wire)}; "
                          f"write {_literal_hint(cat.literal_kinds(wire))}")
                return
            if dst.type is not None and not cat.assignable(wire, dst.type):
                fix = f"; write [{dst.type}]" if self._concrete(dst.type) else ""
                self.emit(c.type.span, "type-mismatch",  # type: ignore[union-attr]
                          f"{c.target} takes {_a(dst.type)}; a [{c.type}] wire cannot feed it{fix}")
            return
        if dst.type is not None and not cat.accepts_literal(dst.type, kind):
            self.emit(lit.span, "literal-type",
                      f"{c.target} takes {_a(dst.type)}; {lit.raw} is {_KIND_WORDS.get(kind, kind)}")

    # -- graph-level warnings ------------------------------------------------
    def check_required_inputs(self, data_in: dict[tuple[str, str], list[Connection]]) -> None:
        for node_id, node in self.nodes.items():
            spec = self.specs.get(node_id)
            if spec is None:
                continue
            for pin in spec.pins:
                if not pin.required or pin.direction != "in" or pin.kind != "data":
                    continue
                if (node_id, pin.name) in data_in or self._param(node, pin.name) is not None:
                    continue
                self.emit(node.span, "unconnected-input",
                          f"{node_id} ({spec.name}) input {pin.name} is not connected; wire {_a(pin.type or 'value')} into "
                          f"{node_id}.{pin.name}")

    def check_reachability(self, exec_edges: dict[str, list[str]], data_feeds: dict[str, list[str]]) -> None:
        if not self.nodes:
            return
        roots = [nid for nid, n in self.nodes.items() if self._is_event(nid, n)]
        if not roots:
            where = self.doc.graphs[0].span if self.doc.graphs else next(iter(self.nodes.values())).span
            self.emit(where, "no-event",
                      "no event node: nothing in this graph ever runs (add one, e.g. NODE n1: Event_BeginPlay)")
            return
        reached = set(roots)
        stack = list(roots)
        while stack:
            for nxt in exec_edges.get(stack.pop(), ()):
                if nxt not in reached:
                    reached.add(nxt)
                    stack.append(nxt)
        # pure nodes run when something that runs reads their outputs
        stack = list(reached)
        while stack:
            for src in data_feeds.get(stack.pop(), ()):
                if src not in reached and self._runs_on_demand(src):
                    reached.add(src)
                    stack.append(src)
        for nid, node in self.nodes.items():
            if nid in reached:
                continue
            spec = self.specs.get(nid)
            tname = spec.name if spec else node.type
            if spec is not None and spec.pure:
                msg = f"{nid} ({tname}) is unused: nothing that runs reads its outputs"
            else:
                msg = f"{nid} ({tname}) never runs: no exec path from an event reaches it"
            self.emit(node.span, "unreachable", msg)

    def _is_event(self, nid: str, node: NodeDecl) -> bool:
        spec = self.specs.get(nid)
        if spec is not None:
            return spec.is_event
        return node.type.startswith("Event")

    def _runs_on_demand(self, nid: str) -> bool:
        spec = self.specs.get(nid)
        return spec is None or spec.pure
