"""Canonical formatter: one deterministic text per graph.

Sections in order (headers, VARs, GRAPH, NODEs, EXECs, DATAs), aliases resolved,
node ids renumbered n1..nK in a stable graph order (events first, then along the
exec flow, each node preceded by the pure nodes that feed it), connections
sorted. Idempotent, and ``parse(format_dsl(x))`` is the same graph as ``x``.
"""
from __future__ import annotations

import re

from .ast import Document, Value, quote
from .catalog import Catalog, default_catalog
from .errors import BpllmError
from .graph import GEdge, Graph, build_graph, wl_signatures
from .parser import parse


class FormatError(BpllmError, ValueError):
    """The text has syntax errors; formatting it would lose what did not parse."""


def _number_text(raw: str) -> str:
    try:
        return str(int(raw))
    except ValueError:
        pass
    number = float(raw)
    text = repr(number)
    return text


def value_text(value: Value) -> str:
    """A value in canonical spelling (numbers normalised, strings re-quoted)."""
    if value.kind == "number":
        return _number_text(value.raw)
    if value.kind == "string":
        return quote(value.python)
    if value.kind == "struct":
        return "(" + ",".join(f"{f.name}={value_text(f.value)}" for f in value.fields) + ")"
    return value.raw


def _param_text(node, key: str) -> str:
    """Numbers keep their float-ness (``3.0``); everything else as the graph canonicalised it."""
    raw = node.raw_params[key]
    if raw.kind in ("number", "struct"):
        return value_text(raw)
    return node.params[key]


def _pin_rank(g: Graph, catalog: Catalog, node_id: str | None, pin: str, direction: str) -> tuple[int, int, str]:
    """Catalog pin order; pattern families (Then_0, Then_1, ... Then_10) in numeric order."""
    node = g.nodes.get(node_id) if node_id is not None else None
    spec = catalog.get(node.type) if node else None
    stem, _, suffix = pin.rpartition("_")
    number = int(suffix) if stem and suffix.isdigit() else -1
    if spec is not None:
        for i, p in enumerate(spec.pins):
            if p.direction != direction:
                continue
            if p.name == pin:
                return (i, number, "")
            if p.pattern and re.fullmatch(p.pattern, pin):
                return (i, number, pin)
    return (1 << 20, number, pin)


def node_order(g: Graph, catalog: Catalog) -> list[str]:
    """Stable order: independent of ids and line order, dependent only on the graph."""
    sig = wl_signatures(g)
    outs, ins = g.out_edges(), g.in_edges()
    order: list[str] = []
    seen: set[str] = set()

    def key(nid: str) -> tuple:
        n = g.nodes[nid]
        return (n.label, sig[nid])

    def visit_providers(nid: str) -> None:
        feeding = [e for e in ins[nid] if e.kind == "DATA" and e.src in g.nodes and e.src not in seen]
        feeding.sort(key=lambda e: (_pin_rank(g, catalog, nid, e.dst_pin, "in"), key(e.src)))  # type: ignore[arg-type]
        for e in feeding:
            src = e.src
            assert src is not None
            if src in seen or not g.nodes[src].pure:
                continue
            seen.add(src)
            visit_providers(src)
            order.append(src)

    def visit(nid: str) -> None:
        stack = [nid]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            visit_providers(cur)
            order.append(cur)
            nxt = [e for e in outs[cur] if e.kind == "EXEC" and e.dst in g.nodes and e.dst not in seen]
            nxt.sort(key=lambda e: (_pin_rank(g, catalog, cur, e.src_pin, "out"), key(e.dst)))
            stack.extend(e.dst for e in reversed(nxt))

    roots = [nid for nid, n in g.nodes.items() if n.is_event]
    has_exec_in = {e.dst for e in g.edges if e.kind == "EXEC"}
    roots += [nid for nid, n in g.nodes.items() if not n.is_event and not n.pure and nid not in has_exec_in]
    for nid in sorted(roots, key=lambda r: (not g.nodes[r].is_event, key(r))):
        visit(nid)
    for nid in sorted(g.nodes, key=key):
        if nid not in seen:
            visit(nid)
    return order


def format_graph(g: Graph, catalog: Catalog) -> str:
    order = node_order(g, catalog)
    new_id = {old: f"n{i}" for i, old in enumerate(order, start=1)}
    # wires may name nodes that were never declared (a validator error): give them
    # fresh ids after the declared ones so they can never collide with a renumbered id
    ghosts = sorted({x for e in g.edges for x in (e.src, e.dst) if x is not None and x not in new_id},
                    key=lambda x: (len(x), x))
    for ghost in ghosts:
        new_id[ghost] = f"n{len(new_id) + 1}"
    out: list[str] = []
    for key in ("BLUEPRINT", "PARENT", "CATEGORY"):
        if key in g.headers:
            out.append(f"{key}: {g.headers[key]}")
    if g.vars:
        out.append("")
        for v in sorted(g.doc.vars, key=lambda v: v.name):
            default = f" = {value_text(v.default)}" if v.default is not None else ""
            out.append(f"VAR {v.name}: {catalog.canonical_type(str(v.type))}{default}")
    out.append("")
    out.append(f"GRAPH: {g.graph_name or 'EventGraph'}")
    if order:
        out.append("")
    for old in order:
        n = g.nodes[old]
        params = ""
        if n.param_order:
            params = " [" + ", ".join(f"{k}={_param_text(n, k)}" for k in n.param_order) + "]"
        out.append(f"NODE {new_id[old]}: {n.type}{params}")

    def edge_key(e: GEdge) -> tuple:
        src_rank = int(new_id[e.src][1:]) if e.src in new_id else 0
        dst_rank = int(new_id[e.dst][1:]) if e.dst in new_id else 1 << 30
        return (
            src_rank,
            _pin_rank(g, catalog, e.src, e.src_pin, "out") if e.src else (0, 0, e.src_pin),
            dst_rank,
            _pin_rank(g, catalog, e.dst, e.dst_pin, "in"),
            e.type or "",
        )

    def endpoint(node: str | None, pin: str) -> str:
        if node is None:
            return pin
        return f"{new_id[node]}.{pin}"

    execs = sorted({e for e in g.edges if e.kind == "EXEC"}, key=edge_key)
    datas = sorted({e for e in g.edges if e.kind == "DATA"}, key=edge_key)
    seen_lines: set[str] = set()
    for block, kind in ((execs, "EXEC"), (datas, "DATA")):
        lines = []
        for e in block:
            suffix = f" [{e.type}]" if kind == "DATA" and e.type else ""
            line = f"{kind} {endpoint(e.src, e.src_pin)} -> {endpoint(e.dst, e.dst_pin)}{suffix}"
            if line not in seen_lines:
                seen_lines.add(line)
                lines.append(line)
        if lines:
            out.append("")
            out.extend(lines)
    return "\n".join(out) + "\n"


def format_dsl(source: str | Document, catalog: Catalog | None = None) -> str:
    """Canonical text for ``source``; raises :class:`FormatError` on syntax errors."""
    doc = source if isinstance(source, Document) else parse(source)
    if doc.errors:
        first = doc.errors[0]
        raise FormatError(f"line {first.line}:{first.column}: {first.message} ({len(doc.errors)} syntax error(s))")
    cat = catalog if catalog is not None else default_catalog()
    return format_graph(build_graph(doc, cat), cat)
