"""The two spellings of ``model.Graph`` joined: what blend.py reads/builds ⇄ what text.py writes/parses.

The bpy side and the text side were built against the same dataclasses but with different
conventions for a few things; this module is the one place that converts, so neither side has to
know the other's spelling:

* group sockets: bpy side ``Socket_<n>`` (canonical interface identifiers, inputs first, then
  outputs); text side the interface *name* on GroupInput/GroupOutput and ``dsl_name(name)`` on a
  Group node's sockets;
* colour ramps: bpy ``color_ramp`` = [(pos, r, g, b, a)]; text ``color_ramp.elements`` =
  [(pos, (r, g, b, a))];
* curves: bpy ``mapping`` = per curve [(x, y, handle)]; text ``mapping.curves`` = per curve
  [(x, y)] or [(x, y, handle)] when the handle is not AUTO.

:func:`to_text_model` also drops (and reports) what the text cannot say and Blender would not
use anyway: enum values the catalog does not know (glTF files store ``subsurface_method=""``),
links and values on sockets hidden by the node's settings (a link into ``A_Float`` of a Mix
with ``data_type=VECTOR``), and interface names that collide in the DSL spelling.
"""
from __future__ import annotations

import copy

from .catalog import dsl_name, load_catalog
from .model import Graph, Link, Node, Socket

GROUP_IO = ("NodeGroupInput", "NodeGroupOutput")
DEFAULT_HANDLE = "AUTO"
INT_SOCKETS = ("NodeSocketInt", "NodeSocketBool")


def _canon(graph: Graph) -> tuple[dict[str, Socket], dict[str, Socket]]:
    """identifier -> interface socket, for inputs and outputs (``Socket_<n>``, inputs first)."""
    ins = {s.identifier or f"Socket_{i}": s for i, s in enumerate(graph.inputs)}
    off = len(graph.inputs)
    outs = {s.identifier or f"Socket_{off + i}": s for i, s in enumerate(graph.outputs)}
    return ins, outs


def _collisions(graph: Graph) -> list[str]:
    """Interface names whose DSL spelling collides within one side (the text cannot tell them apart)."""
    bad = []
    for side in (graph.inputs, graph.outputs):
        seen: set[str] = set()
        for s in side:
            key = dsl_name(s.name)
            if key in seen:
                bad.append(s.name)
            seen.add(key)
    return bad


def text_problems(graph: Graph) -> list[str]:
    """Why a (bpy-side) graph cannot be written as DSL at all; empty when it can."""
    return [f"interface socket name {n!r} repeats (in the DSL spelling) on its side; the text names "
            "group sockets by name" for n in _collisions(graph)]


def to_text_model(graph: Graph, groups: dict[str, Graph]) -> tuple[Graph, list[tuple[str, str]]]:
    """The graph in the text side's spelling, plus (what, reason) for everything dropped on the way."""
    cat = load_catalog()
    g = copy.deepcopy(graph)
    dropped: list[tuple[str, str]] = []
    own_in, own_out = _canon(g) if g.kind == "group" else ({}, {})
    sock_names: dict[str, dict[str, dict[str, str]]] = {}  # node id -> side -> identifier -> text name
    for n in g.nodes:
        if n.bl_idname == "NodeGroupInput":
            sock_names[n.id] = {"outputs": {k: s.name for k, s in own_in.items()}, "inputs": {}}
        elif n.bl_idname == "NodeGroupOutput":
            sock_names[n.id] = {"inputs": {k: s.name for k, s in own_out.items()}, "outputs": {}}
        elif n.bl_idname == "ShaderNodeGroup":
            used = groups.get(str(n.props.get("node_tree")))
            if used is not None:
                gi, go = _canon(used)
                sock_names[n.id] = {"inputs": {k: dsl_name(s.name) for k, s in gi.items()},
                                    "outputs": {k: dsl_name(s.name) for k, s in go.items()}}
        spec = cat.spec(n.bl_idname)
        if spec is not None and not spec.is_group:
            for k, v in list(n.props.items()):
                p = spec.props.get(k)
                if p is not None and p.get("type") == "ENUM" and not p.get("flag") and v not in p["items"]:
                    del n.props[k]
                    dropped.append((f"node {n.id} {k}={v!r}", "enum value not in the catalog (Blender ignores "
                                                            "it): dropped"))
            for k in [k for k in n.props if k.startswith("outputs.")]:
                if not spec.available("outputs", k[len("outputs."):], n.props):
                    dropped.append((f"node {n.id} {k}", "value on a socket hidden by the node's settings: dropped"))
                    del n.props[k]
            for ident in list(n.inputs):
                if not spec.available("inputs", ident, n.props):
                    del n.inputs[ident]
                    dropped.append((f"node {n.id} input {ident}", "value on a socket hidden by the node's "
                                                                 "settings: dropped"))
        _props_to_text(n)
        names = sock_names.get(n.id)
        if names is not None:
            n.inputs = {names["inputs"].get(k, k): v for k, v in n.inputs.items()}
    specs = {n.id: cat.spec(n.bl_idname) for n in g.nodes}
    props = {n.id: n.props for n in g.nodes}
    links = []
    for lk in g.links:
        hidden = [(nid, side, ident) for nid, side, ident in ((lk.src, "outputs", lk.src_socket),
                                                             (lk.dst, "inputs", lk.dst_socket))
                  if specs.get(nid) is not None and not specs[nid].is_group
                  and not specs[nid].available(side, ident, props[nid])]
        if hidden:
            nid, side, ident = hidden[0]
            dropped.append((f"link {lk.src}.{lk.src_socket} -> {lk.dst}.{lk.dst_socket}",
                            f"{side[:-1]} {ident} of {nid} is hidden by the node's settings: dropped"))
            continue
        src = sock_names.get(lk.src, {}).get("outputs", {}).get(lk.src_socket, lk.src_socket)
        dst = sock_names.get(lk.dst, {}).get("inputs", {}).get(lk.dst_socket, lk.dst_socket)
        links.append(Link(lk.src, src, lk.dst, dst))
    g.links = links
    return g, dropped


def from_text_model(graph: Graph, groups: dict[str, Graph]) -> Graph:
    """The graph in the bpy side's spelling (GROUPS: text-side graphs by name, for Group node sockets)."""
    g = copy.deepcopy(graph)
    for i, s in enumerate(g.inputs + g.outputs):
        s.identifier = s.identifier or f"Socket_{i}"
        if s.socket_type in INT_SOCKETS:  # the text reads 0 and 0.0 alike; Blender wants ints here
            s.default, s.min_value, s.max_value = (int(v) if isinstance(v, float) else v
                                                   for v in (s.default, s.min_value, s.max_value))
    own_in = {s.name: s.identifier for s in g.inputs}
    own_out = {s.name: s.identifier for s in g.outputs}
    sock_ids: dict[str, dict[str, dict[str, str]]] = {}
    for n in g.nodes:
        if n.bl_idname == "NodeGroupInput":
            sock_ids[n.id] = {"outputs": own_in, "inputs": {}}
        elif n.bl_idname == "NodeGroupOutput":
            sock_ids[n.id] = {"inputs": own_out, "outputs": {}}
        elif n.bl_idname == "ShaderNodeGroup":
            used = groups.get(str(n.props.get("node_tree")))
            if used is not None:
                off = len(used.inputs)
                sock_ids[n.id] = {
                    "inputs": {dsl_name(s.name): s.identifier or f"Socket_{i}" for i, s in enumerate(used.inputs)},
                    "outputs": {dsl_name(s.name): s.identifier or f"Socket_{off + i}"
                                for i, s in enumerate(used.outputs)}}
        _props_from_text(n)
        ids = sock_ids.get(n.id)
        if ids is not None:
            n.inputs = {ids["inputs"].get(k, ids["inputs"].get(dsl_name(k), k)): v for k, v in n.inputs.items()}
    links = []
    for lk in g.links:
        so = sock_ids.get(lk.src, {}).get("outputs", {})
        si = sock_ids.get(lk.dst, {}).get("inputs", {})
        links.append(Link(lk.src, so.get(lk.src_socket, so.get(dsl_name(lk.src_socket), lk.src_socket)),
                          lk.dst, si.get(lk.dst_socket, si.get(dsl_name(lk.dst_socket), lk.dst_socket))))
    g.links = links
    return g


def from_text_models(graphs: list[Graph]) -> list[Graph]:
    """A set of text-side graphs (materials and the groups they use) in the bpy side's spelling."""
    groups = {g.name: g for g in graphs if g.kind == "group"}
    return [from_text_model(g, groups) for g in graphs]


def _props_to_text(n: Node) -> None:
    p = n.props
    if "color_ramp" in p:
        p["color_ramp.elements"] = [(float(e[0]), tuple(float(x) for x in e[1:5])) for e in p.pop("color_ramp")]
    if "mapping" in p:
        p["mapping.curves"] = [[(float(q[0]), float(q[1])) + ((q[2],) if len(q) > 2 and q[2] != DEFAULT_HANDLE
                                                                else ()) for q in c] for c in p.pop("mapping")]


def _props_from_text(n: Node) -> None:
    p = n.props
    if "color_ramp.elements" in p:
        p["color_ramp"] = [(float(pos), *(float(x) for x in col)) for pos, col in p.pop("color_ramp.elements")]
    if "mapping.curves" in p:
        p["mapping"] = [[(float(q[0]), float(q[1]), q[2] if len(q) > 2 else DEFAULT_HANDLE) for q in c]
                        for c in p.pop("mapping.curves")]

