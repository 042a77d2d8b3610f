"""Real Blender (bpy) ⇄ the material graph model: import from .blend, export to .blend, compare.

Blender is the judge of this language, so both directions go through the real thing (``bpy``,
imported lazily: validation and the TUI must work without it). ``read_blend`` turns every material
with a *stored* node tree and every shader node group of a file into a :class:`model.Graph`
(reroutes resolved into direct links, frames dropped, only non-default values kept) and reports
what did not map and why; ``write_blend`` builds graphs in a fresh empty file and saves it;
``compare`` lists the differences between two graphs, which is how a round trip is judged.

bpy is process-global: every entry point starts from ``read_factory_settings(use_empty=True)`` and
leaves an empty file behind, so one file's data never leaks into the next.
"""
from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from dsl.errors import BpllmError

from .model import Graph, Link, Node, Socket, Unmapped, Value

INSTALL_HINT = "pip install 'bpllm[blender]' (Python 3.11 only; the bpy wheel needs it)"
# Blender 5.0 removed Material.use_nodes: a material saved without a tree gets a default one on load,
# wrapped in a frame with this label (measured on the corpus: the 10 grease-pencil "Dots Stroke").
VERSIONING_FRAME_LABEL = "Versioning: Use Nodes was removed"
LAYOUT_NODES = ("NodeFrame", "NodeReroute")
GROUP_IO = ("NodeGroupInput", "NodeGroupOutput")
OUTPUT_TYPES = ("ShaderNodeOutputMaterial", "NodeGroupOutput", "ShaderNodeOutputWorld", "ShaderNodeOutputLight",
                "ShaderNodeOutputAOV")
# Nodes whose output sockets hold the data (Value, RGB, Normal): stored in props as "outputs.<identifier>".
OUTPUT_VALUE_PREFIX = "outputs."
# Pointer properties that are layout or per-image-user state, not part of the material's meaning.
SKIPPED_POINTERS = ("texture_mapping", "color_mapping", "image_user")
SKIPPED_PROPS = ("bytecode", "bytecode_hash", "filepath", "use_auto_update", "script", "mode")
FLOAT_TOL = 1e-4


class BlenderMissing(BpllmError):
    """bpy is not importable: the Blender commands say how to install it."""

    def __init__(self) -> None:
        super().__init__("Blender (the bpy module) is not installed", INSTALL_HINT)


class BuildError(BpllmError):
    """Blender refused part of a graph (unknown type, socket or enum item, an invalid link)."""

    def __init__(self, problems: list[str]) -> None:
        head = problems[0] if problems else "build failed"
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"Blender rejects the graph: {head}{more}", "fix the DSL; `bpllm validate --in-blender` lists all")
        self.problems = problems


def require_bpy() -> Any:
    """The bpy module, or BlenderMissing (one line with the install command)."""
    try:
        import bpy  # noqa: PLC0415 - heavy (374 MB, ~1 s): only the Blender commands load it
    except ImportError as exc:
        raise BlenderMissing() from exc
    global _EXIT_HOOKED
    if not _EXIT_HOOKED:  # Blender prints "Not freed memory blocks" on the C stdout at exit
        atexit.register(_stdout_to_stderr)
        _EXIT_HOOKED = True
    return bpy


_EXIT_HOOKED = False


def _stdout_to_stderr() -> None:
    """Point fd 1 at stderr once Python is done with stdout, so Blender's exit report never lands in a
    command's stdout (a ``--json`` document, `dataset build --json`)."""
    with contextlib.suppress(OSError, ValueError):  # stdout already closed: nothing to protect
        sys.stdout.flush()
        os.dup2(2, 1)


def bpy_available() -> bool:
    try:
        require_bpy()
    except BlenderMissing:
        return False
    return True


@contextlib.contextmanager
def quiet_blender(log: list[str] | None = None) -> Iterator[None]:
    """Blender writes progress ("Read blend: …") to the C-level stdout; keep it off ours (``--json``)
    and collect its lines in LOG (warnings such as "File written by newer Blender binary")."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # noqa: BLE001 - C stdio flush best-effort; fds restored below
                import ctypes

                ctypes.CDLL(None).fflush(None)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if log is not None:
                sink.seek(0)
                log.extend(sink.read().decode("utf-8", "replace").splitlines())


def reset(bpy: Any) -> None:
    """An empty factory file: the clean state every entry point starts from and leaves behind."""
    with quiet_blender():
        bpy.ops.wm.read_factory_settings(use_empty=True)


# -- values ------------------------------------------------------------------------------------------
def py_value(v: Any) -> Value:
    """A bpy value as plain Python (floats rounded to 6 places so reports and JSON are stable)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return round(v, 6) + 0.0
    if isinstance(v, str):
        return v
    try:
        return tuple(py_value(x) for x in v)
    except TypeError:
        return str(v)


def same_value(a: Any, b: Any, tol: float = FLOAT_TOL) -> bool:
    """Equality with a float tolerance, through tuples and lists."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_value(x, y, tol) for x, y in zip(a, b))
    return a == b


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


# -- reference nodes: what "default" means ----------------------------------------------------------
class _Reference:
    """Freshly created nodes, one per type, in a scratch group: the defaults to compare against."""

    def __init__(self, bpy: Any) -> None:
        self.bpy = bpy
        self.tree = bpy.data.node_groups.new("__bpllm_reference__", "ShaderNodeTree")
        self.nodes: dict[str, Any] = {}

    def node(self, bl_idname: str) -> Any | None:
        if bl_idname not in self.nodes:
            try:
                self.nodes[bl_idname] = self.tree.nodes.new(bl_idname)
            except RuntimeError:
                self.nodes[bl_idname] = None
        return self.nodes[bl_idname]

    def close(self) -> None:
        with contextlib.suppress(ReferenceError):
            self.bpy.data.node_groups.remove(self.tree)


def _base_props(bpy: Any) -> frozenset[str]:
    return frozenset(p.identifier for p in bpy.types.ShaderNode.bl_rna.properties)


# -- import ------------------------------------------------------------------------------------------
class _FileReader:
    """One opened .blend: turns its trees into graphs and collects the report."""

    def __init__(self, bpy: Any, file_name: str, known_types: frozenset[str] | None) -> None:
        self.bpy = bpy
        self.file = file_name
        self.known = known_types
        self.unmapped: list[Unmapped] = []
        self.ref = _Reference(bpy)
        self.base = _base_props(bpy)
        self.iface: dict[str, dict[str, str]] = {}  # group name -> original identifier -> canonical

    def report(self, owner: str, what: str, reason: str) -> None:
        item = Unmapped(self.file, owner, what, reason)
        if item not in self.unmapped:  # an image packed once is used by many nodes: say it once per owner
            self.unmapped.append(item)

    def run(self) -> list[Graph]:
        bpy = self.bpy
        graphs: list[Graph] = []
        groups = sorted((ng for ng in bpy.data.node_groups if ng.name != self.ref.tree.name), key=lambda g: g.name)
        for ng in groups:
            if ng.bl_idname == "ShaderNodeTree":
                self.iface[ng.name] = interface_map(ng)
        for mat in sorted(bpy.data.materials, key=lambda m: m.name):
            if mat.library is not None:
                self.report(mat.name, "material", f"linked from library {mat.library.filepath}")
                continue
            tree = mat.node_tree
            if tree is None:
                continue
            invented = _invented_nodes(tree)
            if invented and all(n.name in invented or n.bl_idname in LAYOUT_NODES for n in tree.nodes):
                self.report(mat.name, "material", "no stored node tree (Blender 5 invents a default tree on load)")
                continue
            graphs.append(self.graph("material", mat.name, tree, skip=invented))
        for ng in groups:
            if ng.library is not None:
                self.report(ng.name, "node group", f"linked from library {ng.library.filepath}")
            elif ng.bl_idname != "ShaderNodeTree":
                self.report(ng.name, f"node group {ng.bl_idname}", "not a shader node group")
            else:
                graphs.append(self.graph("group", ng.name, ng))
        self.ref.close()
        return graphs

    def graph(self, kind: str, name: str, tree: Any, skip: frozenset[str] = frozenset()) -> Graph:
        g = Graph(kind=kind, name=name, source=self.file)  # type: ignore[arg-type]
        if kind == "group":
            g.inputs, g.outputs = interface_sockets(tree, self.iface[name])
        anim = getattr(tree, "animation_data", None)
        if anim is not None:
            for d in anim.drivers:
                self.report(name, f"driver on {d.data_path}", "drivers are not part of the language")
            if anim.action is not None:
                self.report(name, f"animation '{anim.action.name}'", "keyframed values are not part of the language")
        kept = {}
        for n in tree.nodes:
            if n.name in skip or n.bl_idname in LAYOUT_NODES:
                continue
            why = self._unsupported(n)
            if why:
                self.report(name, f"node {n.bl_idname} '{n.name}'", why)
                continue
            if n.mute:
                self.report(name, f"node {n.bl_idname} '{n.name}'", "muted: kept unmuted (mute is not in the language)")
            kept[n.name] = n
        pairs = self._links(name, tree, kept)
        order = _node_order(kept, pairs)
        ids = {nm: f"n{i}" for i, nm in enumerate(order, 1)}
        linked_inputs = {(dst.name, dsock.identifier) for _s, _ss, dst, dsock in pairs}
        for nm in order:
            g.nodes.append(self._node(name, ids[nm], kept[nm], linked_inputs))
        for src, ssock, dst, dsock in pairs:
            g.links.append(Link(ids[src.name], self._sock_id(src, ssock), ids[dst.name], self._sock_id(dst, dsock)))
        g.links.sort(key=lambda lk: (_natural(lk.dst), lk.dst_socket, _natural(lk.src), lk.src_socket))
        g.groups_used = sorted({str(n.props["node_tree"]) for n in g.nodes if "node_tree" in n.props})
        return g

    def _unsupported(self, n: Any) -> str:
        if n.bl_idname == "NodeUndefined" or not n.bl_idname:
            return "node type unknown to this Blender (an add-on node: it loads as NodeUndefined)"
        if n.bl_idname == "ShaderNodeScript":
            return "OSL script node: its script is not part of the language"
        if n.bl_idname == "ShaderNodeGroup":
            if n.node_tree is None:
                return "group node without a node group"
            if n.node_tree.library is not None:
                return f"uses node group '{n.node_tree.name}' linked from another file"
        if self.known is not None and n.bl_idname not in self.known and n.bl_idname not in GROUP_IO:
            return "node type not in the catalog (newer than the Blender the catalog came from)"
        return ""

    def _links(self, owner: str, tree: Any, kept: dict[str, Any]) -> list[tuple[Any, Any, Any, Any]]:
        """Real links (source node, socket, destination node, socket) with reroute chains resolved."""
        out = []
        seen = set()
        for lk in tree.links:
            dst, dsock = lk.to_node, lk.to_socket
            if dst.bl_idname in LAYOUT_NODES or dst.name not in kept:
                continue
            src, ssock, muted = _resolve(lk)
            if src is None or src.name not in kept:
                continue
            where = f"link {src.name}.{ssock.identifier} -> {dst.name}.{dsock.identifier}"
            if muted:
                self.report(owner, where, "muted link: dropped")
                continue
            if not lk.is_valid:
                self.report(owner, where, "Blender marks this link invalid: dropped")
                continue
            if not dsock.enabled:
                self.report(owner, where, "goes into a socket the node hides for its settings: dropped")
                continue
            key = (src.name, ssock.identifier, dst.name, dsock.identifier)
            if key not in seen:
                seen.add(key)
                out.append((src, ssock, dst, dsock))
        return out

    def _sock_id(self, node: Any, sock: Any) -> str:
        """Socket identifier; group sockets get the canonical interface identifier (Socket_<n>)."""
        if node.bl_idname in GROUP_IO:
            return self.iface.get(node.id_data.name, {}).get(sock.identifier, sock.identifier)
        if node.bl_idname == "ShaderNodeGroup" and node.node_tree is not None:
            return self.iface.get(node.node_tree.name, {}).get(sock.identifier, sock.identifier)
        return sock.identifier

    def _node(self, owner: str, node_id: str, n: Any, linked: set[tuple[str, str]]) -> Node:
        node = Node(id=node_id, bl_idname=n.bl_idname, label=n.label,
                    location=(round(n.location.x, 1), round(n.location.y, 1)))
        ref = self.ref.node(n.bl_idname)
        if n.bl_idname == "ShaderNodeGroup":
            node.props["node_tree"] = n.node_tree.name
            iface_defaults = {self._sock_id(n, s): py_value(s.default_value)
                              for s in n.node_tree.interface.items_tree
                              if s.item_type == "SOCKET" and hasattr(s, "default_value")}
            # group node sockets carry the interface identifiers: map them first
            for s in n.inputs:
                sid = self._sock_id(n, s)
                if (n.name, s.identifier) in linked or not hasattr(s, "default_value") or not s.enabled:
                    continue
                v = py_value(s.default_value)
                if not same_value(v, iface_defaults.get(sid, v)):
                    node.inputs[sid] = v
            return node
        if n.bl_idname in GROUP_IO:
            return node
        for name, v in self._props(owner, n, ref):
            node.props[name] = v
        if ref is not None:
            ref_in = {s.identifier: s for s in ref.inputs}
            for s in n.inputs:
                if (n.name, s.identifier) in linked or not s.enabled or not hasattr(s, "default_value"):
                    continue
                v = py_value(s.default_value)
                r = ref_in.get(s.identifier)
                if r is None or not hasattr(r, "default_value") or not same_value(v, py_value(r.default_value)):
                    node.inputs[s.identifier] = v
            ref_out = {s.identifier: s for s in ref.outputs}
            for s in n.outputs:
                r = ref_out.get(s.identifier)
                if hasattr(s, "default_value") and r is not None and hasattr(r, "default_value"):
                    v = py_value(s.default_value)
                    if not same_value(v, py_value(r.default_value)):
                        node.props[OUTPUT_VALUE_PREFIX + s.identifier] = v
        return node

    def _props(self, owner: str, n: Any, ref: Any) -> Iterable[tuple[str, Value]]:
        where = f"node {n.bl_idname} '{n.name}'"
        for p in n.bl_rna.properties:
            pid = p.identifier
            if pid in self.base or pid in SKIPPED_PROPS or pid in SKIPPED_POINTERS:
                continue
            if p.type == "POINTER":
                value = getattr(n, pid)
                if pid == "image":
                    if value is not None:
                        yield "image", value.name
                        if value.packed_file is not None:
                            self.report(owner, f"packed image '{value.name}'", "packed pixel data is not carried (only the image name)")
                elif pid == "color_ramp":
                    yield from _ramp_props(value, getattr(ref, pid, None))
                elif pid == "mapping":
                    yield from _curve_props(value, getattr(ref, pid, None))
                elif value is not None:
                    self.report(owner, f"{where} {pid} -> '{getattr(value, 'name', value)}'",
                                "references to other data (objects, texts) are not part of the language")
                continue
            if p.is_readonly or p.type not in ("ENUM", "BOOLEAN", "INT", "FLOAT", "STRING"):
                continue
            if p.type == "ENUM" and p.is_enum_flag:
                continue
            v = py_value(getattr(n, pid))
            if p.type == "ENUM" and v == "":
                self.report(owner, f"{where} {pid}", "stored enum value unknown to this Blender (file saved by a newer one)")
                continue
            r = py_value(getattr(ref, pid)) if ref is not None else None
            if ref is None or not same_value(v, r):
                yield pid, v


def _ramp_props(ramp: Any, ref: Any) -> Iterable[tuple[str, Value]]:
    """A colour ramp as props: ``color_ramp`` = [(position, r, g, b, a), …] and its modes."""
    if ramp is None:
        return
    elements = [(py_value(e.position), *py_value(e.color)) for e in ramp.elements]
    ref_elements = [(py_value(e.position), *py_value(e.color)) for e in ref.elements] if ref is not None else None
    if ref_elements is None or not same_value(elements, ref_elements):
        yield "color_ramp", [tuple(e) for e in elements]
    for attr in ("interpolation", "color_mode", "hue_interpolation"):
        v = getattr(ramp, attr)
        if ref is None or v != getattr(ref, attr):
            yield f"color_ramp.{attr}", v


def _curve_points(mapping: Any) -> list[list[tuple]]:
    return [[py_value(tuple(p.location)) + (p.handle_type,) for p in c.points] for c in mapping.curves]


def _curve_props(mapping: Any, ref: Any) -> Iterable[tuple[str, Value]]:
    """Curve nodes (RGB/Vector/Float Curves) as ``mapping`` = per curve [(x, y, handle), …]."""
    if mapping is None:
        return
    pts = _curve_points(mapping)
    if ref is None or not same_value(pts, _curve_points(ref)):
        yield "mapping", pts


def _resolve(link: Any) -> tuple[Any, Any, bool]:
    """Follow a link back through reroutes to a real output: (node, socket, any muted link on the way)."""
    src, sock, muted = link.from_node, link.from_socket, link.is_muted
    hops = 0
    while src.bl_idname == "NodeReroute":
        ins = [lk for lk in src.inputs[0].links]
        if not ins or hops > 10_000:
            return None, None, muted
        muted = muted or ins[0].is_muted
        src, sock = ins[0].from_node, ins[0].from_socket
        hops += 1
    return src, sock, muted


def _invented_nodes(tree: Any) -> frozenset[str]:
    """Names of the nodes Blender 5 versioning put in a material (inside the 'Use Nodes was removed' frame)."""
    frames = {n.name for n in tree.nodes if n.bl_idname == "NodeFrame" and n.label == VERSIONING_FRAME_LABEL}
    if not frames:
        return frozenset()
    return frozenset(n.name for n in tree.nodes
                     if n.name in frames or (n.parent is not None and n.parent.name in frames))


def _node_order(nodes: dict[str, Any], pairs: list[tuple[Any, Any, Any, Any]]) -> list[str]:
    """Deterministic order: depth-first from the output nodes, sources before users (post-order),
    inputs in socket order; ties by (type, label, name). Blender's internal order never matters."""
    feeds: dict[str, list[tuple[int, str]]] = {nm: [] for nm in nodes}  # dst -> [(input index, src)]
    for src, _ss, dst, dsock in pairs:
        idx = list(dst.inputs).index(dsock) if dsock in list(dst.inputs) else 0
        feeds[dst.name].append((idx, src.name))

    def key(nm: str) -> tuple:
        n = nodes[nm]
        return (n.bl_idname not in OUTPUT_TYPES, not getattr(n, "is_active_output", False), n.bl_idname,
                n.label, _natural(nm))

    order: list[str] = []
    seen: set[str] = set()

    def visit(start: str) -> None:  # iterative post-order (group trees reach 200+ nodes deep)
        stack = [(start, False)]
        while stack:
            nm, done = stack.pop()
            if done:
                order.append(nm)
                continue
            if nm in seen:
                continue
            seen.add(nm)
            stack.append((nm, True))
            srcs = sorted(feeds[nm], key=lambda t: (t[0], key(t[1])))
            for _i, s in reversed(srcs):
                if s not in seen:
                    stack.append((s, False))

    for nm in sorted((nm for nm in nodes if nodes[nm].bl_idname in OUTPUT_TYPES), key=key):
        visit(nm)
    while len(seen) < len(nodes):  # what does not reach an output: sinks first, then anything (cycles)
        rest = [nm for nm in nodes if nm not in seen]
        sinks = [nm for nm in rest if not any(s == nm for d in rest for _i, s in feeds[d])]
        visit(min(sinks or rest, key=key))
    return order


def interface_map(tree: Any) -> dict[str, str]:
    """Original interface identifier -> canonical ``Socket_<n>`` (inputs first, then outputs): the
    identifiers Blender gives a fresh group built in that order, so export reproduces them."""
    items = [it for it in tree.interface.items_tree if it.item_type == "SOCKET"]
    ordered = [it for it in items if it.in_out == "INPUT"] + [it for it in items if it.in_out == "OUTPUT"]
    return {it.identifier: f"Socket_{i}" for i, it in enumerate(ordered)}


def interface_sockets(tree: Any, canon: dict[str, str]) -> tuple[list[Socket], list[Socket]]:
    ins: list[Socket] = []
    outs: list[Socket] = []
    for it in tree.interface.items_tree:
        if it.item_type != "SOCKET":
            continue
        s = Socket(name=it.name, socket_type=it.socket_type, identifier=canon.get(it.identifier, it.identifier))
        if hasattr(it, "default_value") and it.in_out == "INPUT":  # an output's default is never used
            s.default = py_value(it.default_value)
        if hasattr(it, "min_value"):
            s.min_value = py_value(it.min_value)
            s.max_value = py_value(it.max_value)
        (ins if it.in_out == "INPUT" else outs).append(s)
    return ins, outs


def catalog_types() -> frozenset[str] | None:
    """bl_idnames the pack's catalog knows, or None while the catalog is not there."""
    try:
        from .catalog import load_catalog  # noqa: PLC0415 - written on another branch; optional here
    except ImportError:
        return None
    cat = load_catalog()
    for attr in ("nodes", "types", "node_types"):
        got = getattr(cat, attr, None) if not isinstance(cat, dict) else cat.get(attr)
        if got:
            types = frozenset(got.keys() if isinstance(got, dict) else (getattr(t, "bl_idname", t) for t in got))
            # a shape this reader does not understand must not drop every node as "unknown"
            return types if "ShaderNodeBsdfPrincipled" in types else None
    return None


def read_blend(path: str | Path, known_types: frozenset[str] | None = None,
               log: list[str] | None = None) -> tuple[list[Graph], list[Unmapped]]:
    """Every material with a stored node tree and every shader node group of a .blend (plain, gzip or
    zstd), plus what did not map. KNOWN_TYPES (default: the catalog's) flags newer node types."""
    bpy = require_bpy()
    path = Path(path)
    if not path.is_file():
        raise BpllmError(f"{path}: no such file", "check the path")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"BLEN" and head[:2] != b"\x1f\x8b" and head != b"\x28\xb5\x2f\xfd":  # plain, gzip, zstd
        raise BpllmError(f"{path}: not a .blend file (no BLENDER header, not gzip or zstd)", "give a file saved by Blender")
    known = catalog_types() if known_types is None else (known_types or None)  # frozenset(): no check
    lines: list[str] = []
    try:
        with quiet_blender(lines):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    except RuntimeError as exc:
        reset(bpy)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise BpllmError(f"{path}: Blender cannot open it ({first})", "check that the file is a complete .blend") from None
    if log is not None:
        log.extend(ln for ln in lines if ln.startswith(("Warning", "Error")))
    try:
        reader = _FileReader(bpy, path.name, known)
        with quiet_blender():  # bpy.rna warns on stdout for enum values it does not know (reported instead)
            graphs = reader.run()
        return graphs, reader.unmapped
    finally:
        reset(bpy)


# -- export ------------------------------------------------------------------------------------------
def _order_groups(graphs: list[Graph]) -> tuple[list[Graph], list[str]]:
    """Groups before the graphs that use them (nested groups too); problems for missing/cyclic ones."""
    groups = {g.name: g for g in graphs if g.kind == "group"}
    problems = []
    ordered: list[Graph] = []
    state: dict[str, int] = {}

    def visit(g: Graph, path: tuple[str, ...]) -> None:
        if state.get(g.name) == 2:
            return
        if state.get(g.name) == 1:
            problems.append(f"group '{g.name}': uses itself ({' -> '.join(path + (g.name,))})")
            return
        state[g.name] = 1
        for used in g.groups_used:
            if used in groups:
                visit(groups[used], path + (g.name,))
        state[g.name] = 2
        ordered.append(g)

    for g in sorted(groups.values(), key=lambda g: g.name):
        visit(g, ())
    for g in graphs:
        for used in sorted(set(g.groups_used) | {str(n.props["node_tree"]) for n in g.nodes if "node_tree" in n.props}):
            if used not in groups:
                problems.append(f"{g.kind} '{g.name}': uses node group '{used}' which is not given")
    return ordered + [g for g in graphs if g.kind == "material"], problems


class _Builder:
    """Builds graphs into the current (empty) Blender file, collecting every problem."""

    def __init__(self, bpy: Any) -> None:
        self.bpy = bpy
        self.problems: list[str] = []
        self.trees: dict[str, Any] = {}
        self.materials: dict[str, Any] = {}

    def build_all(self, graphs: list[Graph]) -> None:
        ordered, problems = _order_groups(graphs)
        self.problems.extend(problems)
        for g in ordered:
            self.build(g)

    def build(self, g: Graph) -> None:
        bpy = self.bpy
        where = f"{g.kind} '{g.name}'"
        if g.kind == "group":
            tree = bpy.data.node_groups.new(g.name, "ShaderNodeTree")
            tree.use_fake_user = True
            self.trees[g.name] = tree
            for sockets, side in ((g.inputs, "INPUT"), (g.outputs, "OUTPUT")):
                for s in sockets:
                    try:
                        it = tree.interface.new_socket(s.name, in_out=side, socket_type=s.socket_type)
                    except (TypeError, RuntimeError) as exc:
                        self.problems.append(f"{where}: interface socket '{s.name}': {_short(exc)}")
                        continue
                    if s.default is not None and hasattr(it, "default_value"):
                        self._set(where, f"socket '{s.name}' default", it, "default_value", s.default)
                    if s.min_value is not None and hasattr(it, "min_value"):
                        self._set(where, f"socket '{s.name}' min", it, "min_value", s.min_value)
                    if s.max_value is not None and hasattr(it, "max_value"):
                        self._set(where, f"socket '{s.name}' max", it, "max_value", s.max_value)
        else:
            mat = bpy.data.materials.new(g.name)
            mat.use_fake_user = True  # data with no users is not saved
            self.materials[g.name] = mat
            tree = mat.node_tree
            for n in list(tree.nodes):
                tree.nodes.remove(n)
        built: dict[str, Any] = {}
        for node in g.nodes:
            try:
                bn = tree.nodes.new(node.bl_idname)
            except RuntimeError:
                self.problems.append(f"{where}: node {node.id}: unknown node type {node.bl_idname}")
                continue
            bn.name = node.id
            bn.label = node.label
            built[node.id] = bn
            self._props(f"{where} node {node.id} ({node.bl_idname})", bn, node)
        for node in g.nodes:
            bn = built.get(node.id)
            if bn is None:
                continue
            for ident, v in node.inputs.items():
                sock = _socket(bn.inputs, ident)
                if sock is None:
                    self.problems.append(f"{where}: node {node.id} ({node.bl_idname}) has no input '{ident}'")
                elif hasattr(sock, "default_value"):
                    self._set(f"{where} node {node.id}", f"input '{ident}'", sock, "default_value", v)
        for lk in g.links:
            a, b = built.get(lk.src), built.get(lk.dst)
            text = f"{lk.src}.{lk.src_socket} -> {lk.dst}.{lk.dst_socket}"
            if a is None or b is None:
                missing = lk.src if a is None else lk.dst
                if not any(n.id == missing for n in g.nodes):
                    self.problems.append(f"{where}: link {text}: no node {missing}")
                continue
            out, inp = _socket(a.outputs, lk.src_socket), _socket(b.inputs, lk.dst_socket)
            if out is None or inp is None:
                side = f"output '{lk.src_socket}' on {lk.src}" if out is None else f"input '{lk.dst_socket}' on {lk.dst}"
                self.problems.append(f"{where}: link {text}: no {side}")
                continue
            link = tree.links.new(out, inp)
            if not inp.enabled:
                self.problems.append(f"{where}: link {text}: input '{lk.dst_socket}' is unavailable with the node's settings")
            elif not link.is_valid:
                self.problems.append(f"{where}: link {text}: Blender marks it invalid "
                                     f"({out.bl_idname} -> {inp.bl_idname})")
        layout(tree, g)

    def _props(self, where: str, bn: Any, node: Node) -> None:
        props = dict(node.props)
        tree_name = props.pop("node_tree", None)
        if tree_name is not None:
            if bn.bl_idname != "ShaderNodeGroup":
                self.problems.append(f"{where}: node_tree is only for group nodes")
            elif str(tree_name) in self.trees:
                bn.node_tree = self.trees[str(tree_name)]
        image = props.pop("image", None)
        if image is not None:
            img = self.bpy.data.images.get(str(image)) or self.bpy.data.images.new(str(image), 8, 8)
            self._set(where, "image", bn, "image", img)
        ramp = {k: props.pop(k) for k in list(props) if k.startswith("color_ramp")}
        if ramp:
            self._ramp(where, bn, ramp)
        curves = props.pop("mapping", None)
        if curves is not None:
            self._curves(where, bn, curves)
        outputs = {k: props.pop(k) for k in list(props) if k.startswith(OUTPUT_VALUE_PREFIX)}
        # enums that reshape the node first (data_type decides which sockets exist), then the rest
        for k in sorted(props, key=lambda k: (k != "data_type", k)):
            if not hasattr(bn, k):
                self.problems.append(f"{where}: no property '{k}'")
                continue
            self._set(where, f"property '{k}'", bn, k, props[k])
        for k, v in outputs.items():
            ident = k[len(OUTPUT_VALUE_PREFIX):]
            sock = _socket(bn.outputs, ident)
            if sock is None or not hasattr(sock, "default_value"):
                self.problems.append(f"{where}: no output value '{ident}'")
            else:
                self._set(where, f"output '{ident}'", sock, "default_value", v)

    def _ramp(self, where: str, bn: Any, ramp: dict[str, Value]) -> None:
        cr = getattr(bn, "color_ramp", None)
        if cr is None:
            self.problems.append(f"{where}: no colour ramp")
            return
        for attr in ("color_mode", "interpolation", "hue_interpolation"):
            if f"color_ramp.{attr}" in ramp:
                self._set(where, f"color_ramp.{attr}", cr, attr, ramp[f"color_ramp.{attr}"])
        elements = ramp.get("color_ramp")
        if not elements:
            return
        while len(cr.elements) > 1:
            cr.elements.remove(cr.elements[-1])
        first, *rest = [tuple(e) for e in elements]  # type: ignore[union-attr]
        cr.elements[0].position = first[0]
        cr.elements[0].color = first[1:5]
        for e in rest:
            el = cr.elements.new(e[0])
            el.color = e[1:5]

    def _curves(self, where: str, bn: Any, curves: Value) -> None:
        mapping = getattr(bn, "mapping", None)
        if mapping is None or not isinstance(curves, (list, tuple)) or len(curves) != len(mapping.curves):
            self.problems.append(f"{where}: curve data does not fit this node")
            return
        for curve, pts in zip(mapping.curves, curves):
            while len(curve.points) > 2:
                curve.points.remove(curve.points[-1])
            pts = [tuple(p) for p in pts]
            for i, p in enumerate(pts[:2]):
                curve.points[i].location = p[:2]
            for p in pts[2:]:
                curve.points.new(p[0], p[1])
            for point, p in zip(curve.points, sorted(pts, key=lambda p: p[0])):
                if len(p) > 2:
                    point.handle_type = p[2]
        mapping.update()

    def _set(self, where: str, what: str, obj: Any, attr: str, value: Any) -> None:
        try:
            setattr(obj, attr, list(value) if isinstance(value, tuple) else value)
        except (TypeError, ValueError, AttributeError, RuntimeError) as exc:
            self.problems.append(f"{where}: {what} = {value!r}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _socket(sockets: Any, identifier: str) -> Any | None:
    for s in sockets:
        if s.identifier == identifier:
            return s
    return None


def layout(tree: Any, g: Graph) -> None:
    """Left-to-right columns by depth from the output nodes (outputs on the right); within a column
    nodes keep the graph's order, spaced by an estimate of their height."""
    feeds: dict[str, set[str]] = {n.id: set() for n in g.nodes}
    for lk in g.links:
        if lk.dst in feeds and lk.src in feeds:
            feeds[lk.dst].add(lk.src)
    depth: dict[str, int] = {}
    roots = [n.id for n in g.nodes if n.bl_idname in OUTPUT_TYPES] or [
        n.id for n in g.nodes if not any(n.id in s for s in feeds.values())]
    frontier = [(r, 0) for r in roots]
    guard = len(g.nodes) * len(g.nodes) + 10
    while frontier and guard:
        guard -= 1
        nid, d = frontier.pop()
        if depth.get(nid, -1) >= d or d > len(g.nodes):
            continue
        depth[nid] = d
        frontier.extend((s, d + 1) for s in feeds[nid])
    column_y: dict[int, float] = {}
    for n in g.nodes:
        bn = tree.nodes.get(n.id)
        if bn is None:
            continue
        d = depth.get(n.id, max(depth.values(), default=0) + 1)
        y = column_y.get(d, 0.0)
        visible = sum(1 for s in bn.inputs if s.enabled and not s.hide) + sum(1 for s in bn.outputs if s.enabled)
        bn.location = (-d * 280.0, y)
        column_y[d] = y - (60.0 + 22.0 * visible + (80.0 if bn.bl_idname == "ShaderNodeValToRGB" else 0.0) + 40.0)


def build_graphs(graphs: list[Graph]) -> list[str]:
    """Build GRAPHS into the current Blender file; every problem as a line (empty when Blender accepts all)."""
    builder = _Builder(require_bpy())
    builder.build_all(graphs)
    return builder.problems


def write_blend(graphs: list[Graph], out_path: str | Path) -> Path:
    """Build GRAPHS (materials and the groups they use) in a fresh file and save it (BuildError if
    Blender rejects anything: nothing is written then)."""
    bpy = require_bpy()
    out = Path(out_path)
    reset(bpy)
    try:
        problems = build_graphs(graphs)
        if problems:
            raise BuildError(problems)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".blend", dir=out.parent)
        os.close(fd)
        try:
            with quiet_blender():
                bpy.ops.wm.save_as_mainfile(filepath=tmp, compress=True, copy=True)
            os.replace(tmp, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    finally:
        reset(bpy)
    return out


def validate_in_blender(graphs: list[Graph]) -> list[str]:
    """Build GRAPHS in Blender and return what it rejects (unknown types, sockets, enum items,
    invalid links); Blender is the final judge. Leaves an empty file behind."""
    bpy = require_bpy()
    reset(bpy)
    try:
        return build_graphs(graphs)
    finally:
        reset(bpy)


# -- compare -----------------------------------------------------------------------------------------
def compare(a: Graph, b: Graph) -> list[str]:
    """Differences between two graphs (B against A): node types, links, non-default values (float
    tolerance), enum settings, groups used, group interface. Empty means identical."""
    diffs: list[str] = []
    if (a.kind, a.name) != (b.kind, b.name):
        diffs.append(f"graph: {a.kind} '{a.name}' vs {b.kind} '{b.name}'")
    an, bn = {n.id: n for n in a.nodes}, {n.id: n for n in b.nodes}
    for nid in sorted(set(an) | set(bn), key=_natural):
        x, y = an.get(nid), bn.get(nid)
        if x is None or y is None:
            diffs.append(f"node {nid}: only in {'b' if x is None else 'a'} ({(x or y).bl_idname})")  # type: ignore[union-attr]
            continue
        if x.bl_idname != y.bl_idname:
            diffs.append(f"node {nid}: type {x.bl_idname} vs {y.bl_idname}")
            continue
        for field, xa, ya in (("input", x.inputs, y.inputs), ("prop", x.props, y.props)):
            for k in sorted(set(xa) | set(ya)):
                if k not in xa or k not in ya or not same_value(xa[k], ya[k]):
                    diffs.append(f"node {nid} ({x.bl_idname}) {field} {k}: {xa.get(k, '<default>')!r} vs "
                                 f"{ya.get(k, '<default>')!r}")
    al, bl = set(a.links), set(b.links)
    for lk in sorted(al - bl, key=str):
        diffs.append(f"link only in a: {lk.src}.{lk.src_socket} -> {lk.dst}.{lk.dst_socket}")
    for lk in sorted(bl - al, key=str):
        diffs.append(f"link only in b: {lk.src}.{lk.src_socket} -> {lk.dst}.{lk.dst_socket}")
    if sorted(a.groups_used) != sorted(b.groups_used):
        diffs.append(f"groups used: {sorted(a.groups_used)} vs {sorted(b.groups_used)}")
    for side, xs, ys in (("input", a.inputs, b.inputs), ("output", a.outputs, b.outputs)):
        if len(xs) != len(ys):
            diffs.append(f"interface {side}s: {len(xs)} vs {len(ys)}")
            continue
        for i, (s, t) in enumerate(zip(xs, ys)):
            if (s.name, s.socket_type) != (t.name, t.socket_type):
                diffs.append(f"interface {side} {i}: {s.name}:{s.socket_type} vs {t.name}:{t.socket_type}")
            for f in ("default", "min_value", "max_value"):
                if not same_value(getattr(s, f), getattr(t, f)):
                    diffs.append(f"interface {side} {i} '{s.name}' {f}: {getattr(s, f)!r} vs {getattr(t, f)!r}")
    return diffs
