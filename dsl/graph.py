"""A text as a graph: nodes with canonical labels, exec and data edges.

The formatter and the structural scorer both look at a text this way, after
aliases are resolved (``Event_CustomEvent`` → ``Event_Custom``, ``bLooping`` →
``Looping``), so spelling variants and node numbering never count as differences.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .ast import Document, PinRef, Value
from .catalog import Catalog, default_catalog
from .parser import parse

_EVENT_PREFIXES = ("Event_", "InputAction", "InputKey")


@dataclass(slots=True)
class GNode:
    id: str
    type: str
    params: dict[str, str]  # canonical name -> canonical value text
    raw_params: dict[str, Value]
    line: int
    is_event: bool
    pure: bool
    param_order: list[str]

    @property
    def label(self) -> str:
        return self.type + "[" + ",".join(f"{k}={v}" for k, v in sorted(self.params.items())) + "]"


@dataclass(frozen=True, slots=True)
class GEdge:
    kind: str  # EXEC | DATA
    src: str | None  # node id, None for a literal source
    src_pin: str  # pin name, or the literal's canonical text
    dst: str
    dst_pin: str
    type: str | None
    line: int


@dataclass(slots=True)
class GVar:
    name: str
    type: str
    default: str | None
    line: int


@dataclass(slots=True)
class Graph:
    doc: Document
    headers: dict[str, str]
    header_lines: dict[str, int]
    vars: list[GVar] = field(default_factory=list)
    nodes: dict[str, GNode] = field(default_factory=dict)
    edges: list[GEdge] = field(default_factory=list)
    graph_name: str | None = None

    def out_edges(self) -> dict[str, list[GEdge]]:
        result: dict[str, list[GEdge]] = {n: [] for n in self.nodes}
        for e in self.edges:
            if e.src in result:
                result[e.src].append(e)
        return result

    def in_edges(self) -> dict[str, list[GEdge]]:
        result: dict[str, list[GEdge]] = {n: [] for n in self.nodes}
        for e in self.edges:
            if e.dst in result:
                result[e.dst].append(e)
        return result


_NAME_TYPES = ("Name", "Class")


def _value_text(value: Value, type_name: str | None = None) -> str:
    """Canonical value text; a Name/Class given as a quoted identifier equals the bare one.

    Gold lessons write both ``EventName=OnActivate`` and ``EventName="OnActivate"``,
    and Unreal's clipboard text cannot tell them apart.
    """
    if type_name in _NAME_TYPES and value.kind == "string":
        text = value.python
        if text.isidentifier():
            return text
    return value.canonical()


def build_graph(source: str | Document, catalog: Catalog | None = None) -> Graph:
    """Resolve aliases and collect nodes/edges of whatever parsed."""
    doc = source if isinstance(source, Document) else parse(source)
    cat = catalog if catalog is not None else default_catalog()
    headers: dict[str, str] = {}
    header_lines: dict[str, int] = {}
    for h in doc.headers:
        headers.setdefault(h.key, h.value)
        header_lines.setdefault(h.key, h.span.line)
    g = Graph(doc=doc, headers=headers, header_lines=header_lines)
    if doc.graphs:
        g.graph_name = doc.graphs[0].name
    for v in doc.vars:
        g.vars.append(GVar(v.name, cat.canonical_type(str(v.type)), _value_text(v.default) if v.default else None, v.span.line))
    for n in doc.nodes:
        if n.id in g.nodes:
            continue
        ntype = cat.canonical_node_type(n.type)
        spec = cat.get(ntype)
        params: dict[str, str] = {}
        raw: dict[str, Value] = {}
        order: list[str] = []
        for p in n.params:
            name = cat.canonical_param(ntype, p.name)
            if name in params:
                continue
            pspec = spec.param(name) if spec is not None else None
            params[name] = _value_text(p.value, pspec.type if pspec is not None else None)
            raw[name] = p.value
            order.append(name)
        if spec is not None and spec.params:
            known = [p.name for p in spec.params]
            order.sort(key=lambda k: (known.index(k) if k in known else len(known), k if k not in known else ""))
        is_event = spec.is_event if spec is not None else ntype.startswith(_EVENT_PREFIXES)
        pure = spec.pure if spec is not None else False
        g.nodes[n.id] = GNode(n.id, ntype, params, raw, n.span.line, is_event, pure, order)
    def pin_name(node: GNode | None, pin: str) -> str:
        if node is None:
            return pin
        pin = cat.canonical_pin(node.type, pin)
        spec = cat.get(node.type)
        # VariableGet [VarName=Health] may be wired as n2.Health: Unreal names the pin after the variable
        if spec is not None and spec.named_pin is not None:
            param, generic = spec.named_pin
            if node.params.get(param) == pin:
                return generic
        return pin

    seen_edges: set[tuple] = set()
    for c in doc.connections:
        dst_node = g.nodes.get(c.target.node)
        dst_pin = pin_name(dst_node, c.target.pin)
        ctype = cat.canonical_type(str(c.type)) if c.type is not None else None
        if isinstance(c.source, PinRef):
            src_node = g.nodes.get(c.source.node)
            src_pin = pin_name(src_node, c.source.pin)
            edge = GEdge(c.kind, c.source.node, src_pin, c.target.node, dst_pin, ctype, c.span.line)
        else:
            edge = GEdge(c.kind, None, _value_text(c.source), c.target.node, dst_pin, ctype, c.span.line)
        # a graph holds a wire once; a repeated line is the validator's business
        key = (edge.kind, edge.src, edge.src_pin, edge.dst, edge.dst_pin, edge.type)
        if key not in seen_edges:
            seen_edges.add(key)
            g.edges.append(edge)
    return g


def wl_rounds(g: Graph, rounds: int = 3) -> list[dict[str, str]]:
    """Weisfeiler-Lehman style signatures after each of ``rounds`` refinements.

    A node's label refined by its wiring: equal signatures mean structurally
    interchangeable nodes (as far as that many hops can tell). They order nodes
    for the formatter and seed the scorer's matching, which compares every round.
    """
    sig = {nid: n.label for nid, n in g.nodes.items()}
    outs, ins = g.out_edges(), g.in_edges()
    history: list[dict[str, str]] = []
    for _ in range(rounds):
        new = {}
        for nid in g.nodes:
            parts = [sig[nid]]
            parts.extend(sorted(f">{e.kind}:{e.src_pin}:{e.dst_pin}:{sig.get(e.dst, '?')}" for e in outs[nid]))
            parts.extend(
                sorted(
                    f"<{e.kind}:{e.src_pin}:{e.dst_pin}:{sig.get(e.src, 'lit') if e.src else 'lit'}" for e in ins[nid]
                )
            )
            new[nid] = hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()
        sig = new
        history.append(sig)
    return history


def wl_signatures(g: Graph, rounds: int = 3) -> dict[str, str]:
    """Signatures after ``rounds`` refinements (see :func:`wl_rounds`)."""
    history = wl_rounds(g, rounds)
    return history[-1] if history else {nid: n.label for nid, n in g.nodes.items()}
