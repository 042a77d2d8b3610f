"""Synthetic training rows for the material language: one graph built around each catalog node type.

The catalog drives it, as Blueprint's generator does: a row is built around a *focus* type, with
enum settings drawn from the catalog's items, a few input values that differ from Blender's
defaults, a provider for one of its inputs and a consumer for its output chosen by socket type, so
every link is one Blender accepts (``link_rules``) and a socket a setting hides is never used. Then:

* a shader-output type feeds the Material Output (volumes the Volume input), sometimes through a
  Mix Shader with a second BSDF;
* a colour, value or vector type drives an input of a Principled BSDF (or Displacement);
* about one row in eight is a GROUP (a node group with an interface), which covers Group Input and
  Group Output.

The instruction is ``describe(graph, seed)``: words generated from the graph, like the rows
``bpllm dataset build`` makes from real .blend files. Every text is checked by the pack's own
validator and a row with any error is never returned; same seed → same rows.

Types no row is built around (``EXCLUDED``) and why: they belong to other kinds of node tree than a
material (world, light, Freestyle line style), need data a text cannot carry (an OSL script), or
are legacy types Blender converts on load (the model should write the replacement).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from . import model
from .catalog import BlenderCatalog, NodeSpec, dsl_name, load_catalog
from .describe import describe
from .text import analyse, to_text

GENERATOR_VERSION = 1
SOURCE = f"synthetic-bmat-v{GENERATOR_VERSION}"

EXCLUDED: dict[str, str] = {
    "ShaderNodeOutputWorld": "world trees only (a material's output is Material Output)",
    "ShaderNodeOutputLight": "light trees only",
    "ShaderNodeOutputLineStyle": "Freestyle line-style trees only",
    "ShaderNodeUVAlongStroke": "Freestyle line-style trees only",
    "ShaderNodeScript": "needs an OSL script, which a text cannot carry; without one it has no sockets",
    "ShaderNodeMixRGB": "legacy: Blender 5 turns it into Mix on load; rows teach Mix",
}
LINKABLE = ("VALUE", "RGBA", "VECTOR")
PALETTE = ((0.8, 0.05, 0.03, 1), (0.02, 0.2, 0.8, 1), (0.05, 0.5, 0.08, 1), (0.9, 0.6, 0.05, 1),
           (0.02, 0.02, 0.02, 1), (0.9, 0.9, 0.9, 1), (0.35, 0.15, 0.05, 1), (0.5, 0.05, 0.6, 1),
           (0.9, 0.3, 0.5, 1), (0.1, 0.6, 0.7, 1))
NAMES = ("Rust", "Marble", "Lava", "Moss", "Glass", "Ceramic", "Bark", "Slate", "Copper", "Velvet", "Ice",
         "Clay", "Neon", "Sand", "Leather", "Chrome", "Paint", "Jade", "Ash", "Opal", "Coral", "Steel")
SUFFIXES = ("", " Dark", " Worn", " Bright", " Wet", " Old", " Fine", " Rough")
# inputs of the consumer nodes a provider may drive, by socket type
PRINCIPLED_TARGETS = {"RGBA": ("Base Color", "Emission Color", "Coat Tint", "Sheen Tint"),
                      "VALUE": ("Roughness", "Metallic", "Alpha", "Coat Weight", "Emission Strength"),
                      "VECTOR": ("Normal", "Coat Normal")}
PROVIDERS = {"VECTOR": ("ShaderNodeTexCoord", "ShaderNodeUVMap", "ShaderNodeNewGeometry"),
             "VALUE": ("ShaderNodeTexNoise", "ShaderNodeValue", "ShaderNodeFresnel", "ShaderNodeLayerWeight"),
             "RGBA": ("ShaderNodeRGB", "ShaderNodeTexChecker", "ShaderNodeTexNoise", "ShaderNodeTexGradient")}
SECOND_SHADERS = ("ShaderNodeBsdfTransparent", "ShaderNodeBsdfDiffuse", "ShaderNodeEmission",
                  "ShaderNodeBsdfSheen", "ShaderNodeBsdfAnisotropic")
GROUP_SHARE = 8  # one row in GROUP_SHARE is a node group
GROUP_IO = ("NodeGroupInput", "NodeGroupOutput")
# what a group built around GroupInput/GroupOutput (a drill on them) wraps
GROUP_INNER = ("ShaderNodeBsdfDiffuse", "ShaderNodeEmission", "ShaderNodeTexNoise", "ShaderNodeMath",
               "ShaderNodeMix", "ShaderNodeBsdfPrincipled", "ShaderNodeHueSaturation", "ShaderNodeMapRange")


def coverable(catalog: BlenderCatalog | None = None) -> list[str]:
    """bl_idnames rows are built around: every catalog type except EXCLUDED (GroupInput/Output by groups)."""
    cat = catalog or load_catalog()
    return sorted(t for t in cat.nodes if t not in EXCLUDED)


@dataclass
class _Builder:
    """One graph under construction: nodes get ids n1, n2, ... in the order they are added."""

    cat: BlenderCatalog
    rng: random.Random
    graph: model.Graph

    def add(self, bl_idname: str, *, vary: bool = True) -> model.Node:
        node = model.Node(id=f"n{len(self.graph.nodes) + 1}", bl_idname=bl_idname)
        if vary:
            self._settings(node)
        self.graph.nodes.append(node)
        return node

    def spec(self, node: model.Node) -> NodeSpec:
        spec = self.cat.spec(node.bl_idname)
        assert spec is not None, node.bl_idname
        return spec

    def _settings(self, node: model.Node) -> None:
        """Enum settings drawn from the catalog's items (half the time left at Blender's default)."""
        spec = self.spec(node)
        for name, prop in spec.props.items():
            if prop.get("type") != "ENUM" or name == "target" or not prop.get("items"):
                continue
            if self.rng.random() < 0.5:
                pick = self.rng.choice(prop["items"])
                if pick != prop.get("default"):
                    node.props[name] = pick

    def sockets(self, node: model.Node, side: str, kinds: tuple[str, ...] = LINKABLE) -> list[dict[str, Any]]:
        """Available, enabled sockets of NODE on SIDE whose type is one of KINDS."""
        spec = self.spec(node)
        return [s for s in spec.sockets(side) if s["type"] in kinds and spec.available(side, s["identifier"], node.props)]

    def link(self, src: model.Node, src_socket: str, dst: model.Node, dst_socket: str) -> None:
        self.graph.links.append(model.Link(src.id, src_socket, dst.id, dst_socket))

    def linked_inputs(self, node: model.Node) -> set[str]:
        return {lk.dst_socket for lk in self.graph.links if lk.dst == node.id}

    def values(self, node: model.Node, at_most: int = 2) -> None:
        """Up to AT_MOST unlinked input values that differ from the default, within the socket's range."""
        free = [s for s in self.sockets(node, "inputs") if s["identifier"] not in self.linked_inputs(node)
                and "default" in s and not s.get("hide_value")]
        for sock in self.rng.sample(free, min(len(free), self.rng.randint(0, at_most))):
            value = self._value(sock)
            if value is not None and value != _plain(sock.get("default")):
                node.inputs[sock["identifier"]] = value

    def _value(self, sock: dict[str, Any]) -> Any:
        default = sock.get("default")
        if sock["type"] == "RGBA":
            return tuple(float(x) for x in self.rng.choice(PALETTE))
        if sock["type"] == "VECTOR" and isinstance(default, (list, tuple)):
            return tuple(round(self.rng.uniform(-1, 2), 2) for _ in default)
        if sock["type"] == "VALUE" and isinstance(default, (int, float)) and not isinstance(default, bool):
            lo, hi = max(float(sock.get("min", 0.0)), -10.0), min(float(sock.get("max", 10.0)), 10.0)
            if hi <= lo:
                return None
            return round(self.rng.uniform(lo, hi if sock.get("subtype") == "FACTOR" else min(hi, lo + 5)), 2)
        return None


def _plain(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _feed(b: _Builder, node: model.Node) -> None:
    """Maybe drive one of NODE's linkable inputs from a provider of a matching type."""
    ins = [s for s in b.sockets(node, "inputs") if s["identifier"] not in b.linked_inputs(node)]
    if not ins or b.rng.random() < 0.3:
        return
    target = b.rng.choice(ins)
    choices = [t for t in PROVIDERS[target["type"]] if t != node.bl_idname]
    provider = b.add(b.rng.choice(choices))
    outs = [s for s in b.sockets(provider, "outputs") if s["type"] == target["type"]] or b.sockets(provider, "outputs")
    b.link(provider, b.rng.choice(outs)["identifier"], node, target["identifier"])


def _shader_sink(b: _Builder, shader: model.Node, out: model.Node) -> None:
    """SHADER output of SHADER into the Material Output (volumes into Volume), maybe through a Mix Shader."""
    sock = b.sockets(shader, "outputs", ("SHADER",))[0]["identifier"]
    if "Volume" in shader.bl_idname:
        b.link(shader, sock, out, "Volume")
        return
    if b.rng.random() < 0.3:
        mix = b.add("ShaderNodeMixShader")
        other = b.add(b.rng.choice([t for t in SECOND_SHADERS if t != shader.bl_idname]))
        b.values(other, 1)
        first, second = ("Shader", "Shader_001") if b.rng.random() < 0.5 else ("Shader_001", "Shader")
        b.link(shader, sock, mix, first)
        b.link(other, b.sockets(other, "outputs", ("SHADER",))[0]["identifier"], mix, second)
        mix.inputs["Fac"] = round(b.rng.uniform(0.1, 0.9), 2)
        b.link(mix, "Shader", out, "Surface")
    else:
        b.link(shader, sock, out, "Surface")


def _material(b: _Builder, focus: str) -> None:
    if focus == "ShaderNodeOutputMaterial":  # the output itself: a Principled BSDF into it
        out = b.add(focus, vary=False)
        bsdf = b.add("ShaderNodeBsdfPrincipled")
        _feed(b, bsdf)
        b.values(bsdf, 2)
        b.link(bsdf, "BSDF", out, "Surface")
        return
    out = b.add("ShaderNodeOutputMaterial", vary=False)
    node = b.add(focus)
    spec = b.spec(node)
    if spec.is_output:  # AOV Output: a second output beside the Material Output, fed a texture
        _feed(b, node)
        bsdf = b.add("ShaderNodeBsdfPrincipled", vary=False)
        b.values(bsdf, 2)
        b.link(bsdf, "BSDF", out, "Surface")
        b.values(node, 1)
        return
    shader_outs = b.sockets(node, "outputs", ("SHADER",))
    if shader_outs:
        _feed(b, node)
        b.values(node, 2)
        _shader_sink(b, node, out)
        return
    outs = b.sockets(node, "outputs")
    _feed(b, node)
    b.values(node, 2)
    if outs and outs[0]["type"] == "VECTOR" and b.rng.random() < 0.3:
        disp = b.add("ShaderNodeDisplacement", vary=False)  # a vector into Displacement's Normal
        b.link(node, outs[0]["identifier"], disp, "Normal")
        b.link(disp, "Displacement", out, "Displacement")
    bsdf = b.add("ShaderNodeBsdfPrincipled", vary=False)
    if outs:
        src = b.rng.choice(outs)
        b.link(node, src["identifier"], bsdf, b.rng.choice(PRINCIPLED_TARGETS[src["type"]]))
    b.values(bsdf, 1)
    b.link(bsdf, "BSDF", out, "Surface")


IFACE = {"VALUE": "NodeSocketFloat", "RGBA": "NodeSocketColor", "VECTOR": "NodeSocketVector"}
IFACE_NAMES = {"VALUE": ("Scale", "Amount", "Strength", "Factor"), "RGBA": ("Tint", "Base Color", "Color"),
               "VECTOR": ("Offset", "Coordinates", "Direction")}


def _group(b: _Builder, focus: str) -> bool:
    """A node group: GroupInput -> FOCUS -> GroupOutput with an interface matching the sockets used."""
    gin = b.add("NodeGroupInput", vary=False)
    node = b.add(focus)
    gout = b.add("NodeGroupOutput", vary=False)
    ins, outs = b.sockets(node, "inputs"), b.sockets(node, "outputs", LINKABLE + ("SHADER",))
    if not ins or not outs:
        return False
    for sock in b.rng.sample(ins, min(len(ins), b.rng.randint(1, 2))):
        name = b.rng.choice(IFACE_NAMES[sock["type"]])
        if any(s.name == name for s in b.graph.inputs):
            continue
        default = b._value(sock)
        if sock["type"] == "VECTOR":  # a Vector interface socket holds 3 numbers whatever the node's socket
            default = tuple(round(b.rng.uniform(-1, 2), 2) for _ in range(3))
        b.graph.inputs.append(model.Socket(name=name, socket_type=IFACE[sock["type"]], default=default))
        b.link(gin, name, node, sock["identifier"])
    out = outs[0]
    name = "Shader" if out["type"] == "SHADER" else "Result"
    b.graph.outputs.append(model.Socket(name=name, socket_type=IFACE.get(out["type"], "NodeSocketShader")))
    b.link(node, out["identifier"], gout, name)
    b.values(node, 1)
    return True


def _name(rng: random.Random, taken: set[str]) -> str:
    """A name not in TAKEN that does not give the focus type away (the instruction says it in words)."""
    name = f"{rng.choice(NAMES)}{rng.choice(SUFFIXES)}"
    while name in taken or rng.random() < 0.2:
        name = f"{rng.choice(NAMES)}{rng.choice(SUFFIXES)} {rng.randint(2, 999)}"
        if name not in taken:
            break
    taken.add(name)
    return name


def build_graph(focus: str, rng: random.Random, *, group: bool = False, catalog: BlenderCatalog | None = None,
                taken: set[str] | None = None) -> model.Graph | None:
    """One graph built around FOCUS (a bl_idname), or None when that shape cannot hold it.

    TAKEN: names already used (one Blender file holds every row's material under its own name)."""
    cat = catalog or load_catalog()
    name = _name(rng, taken if taken is not None else set())
    b = _Builder(cat, rng, model.Graph(kind="group" if group else "material", name=name))
    if group:
        if not _group(b, focus):
            return None
    else:
        _material(b, focus)
    return b.graph


def build(focus: str, rng: random.Random, *, group: bool = False, catalog: BlenderCatalog | None = None,
          taken: set[str] | None = None) -> str | None:
    """build_graph() as canonical text."""
    graph = build_graph(focus, rng, group=group, catalog=catalog, taken=taken)
    return None if graph is None else to_text(graph)


PRINCIPLED_BY_IFACE = {"NodeSocketColor": "Base Color", "NodeSocketFloat": "Roughness", "NodeSocketVector": "Normal"}


def call_graph(group: model.Graph, rng: random.Random, *, catalog: BlenderCatalog | None = None,
               taken: set[str] | None = None) -> model.Graph:
    """A material that calls GROUP through a Group node: an input value set, its output wired to the
    Material Output (a shader) or to a Principled BSDF input of its type. Group sockets are written by
    their interface names (docs/blender.md)."""
    cat = catalog or load_catalog()
    b = _Builder(cat, rng, model.Graph(kind="material", name=_name(rng, taken if taken is not None else set())))
    out = b.add("ShaderNodeOutputMaterial", vary=False)
    call = b.add("ShaderNodeGroup", vary=False)
    call.props["node_tree"] = group.name
    b.graph.groups_used.append(group.name)
    if group.inputs:
        sock = rng.choice(group.inputs)
        value = b._value({"type": {"NodeSocketColor": "RGBA", "NodeSocketVector": "VECTOR"}.get(
            sock.socket_type, "VALUE"), "default": sock.default if sock.default is not None else 0.0})
        if value is not None and sock.socket_type != "NodeSocketVector":
            call.inputs[dsl_name(sock.name)] = value
    result = group.outputs[0]
    if result.socket_type == "NodeSocketShader":
        b.link(call, dsl_name(result.name), out, "Surface")
    else:
        bsdf = b.add("ShaderNodeBsdfPrincipled", vary=False)
        b.link(call, dsl_name(result.name), bsdf, PRINCIPLED_BY_IFACE.get(result.socket_type, "Roughness"))
        b.link(bsdf, "BSDF", out, "Surface")
    return b.graph


def _resolve(names: list[str], cat: BlenderCatalog) -> list[str]:
    out = []
    for n in names:
        idname = n if n in cat.nodes else cat.resolve_type(n)
        if idname in cat.nodes and idname not in EXCLUDED:
            out.append(idname)
    return sorted(set(out))


def _row(text: str, pattern: str, seed: int, cat: BlenderCatalog) -> dict[str, str] | None:
    """The row of a text that validates, its instruction described from its graph; None otherwise."""
    result = analyse(text, cat)
    if result.errors or result.graph is None:
        return None  # never a row that does not validate (tests count these: there are none)
    return {"instruction": describe(result.graph, seed), "output": text, "focus": pattern.split(":", 1)[1],
            "pattern": pattern, "source": SOURCE}


def _pair(rng: random.Random, cat: BlenderCatalog, names: set[str], seed: int) -> list[dict[str, str]]:
    """A group row and a material row calling it (both validated; none when either is not)."""
    group = build_graph(rng.choice(GROUP_INNER), rng, group=True, catalog=cat, taken=names)
    if group is None:
        return []
    caller = call_graph(group, rng, catalog=cat, taken=names)
    first = _row(to_text(group), "group:GroupInput", seed, cat)
    second = _row(to_text(caller), "material:Group", seed + 1, cat)
    return [first, second] if first and second else []


def generate(count: int, seed: int = 0, focus_nodes: list[str] | None = None) -> list[dict[str, str]]:
    """COUNT rows ``{instruction, output, focus, pattern, source}``: each focus type in turn, every text valid.

    ``focus_nodes`` (short names, aliases or bl_idnames): rows only around those (GroupInput and
    GroupOutput: node groups); names that are not material types (or are EXCLUDED) are ignored,
    and none left gives no rows. Without it, every coverable type in turn, one row in GROUP_SHARE a
    group (so GroupInput/GroupOutput are covered too)."""
    cat = load_catalog()
    focus = _resolve(focus_nodes, cat) if focus_nodes else [t for t in coverable(cat) if t not in GROUP_IO]
    rng = random.Random(seed)
    order: list[str] = []
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    names: set[str] = set()
    attempts = 0
    while focus and len(rows) < count and attempts < count * 20:
        attempts += 1
        if not order:  # every type once per round, in a seeded order
            order = list(focus)
            rng.shuffle(order)
        t = order.pop()
        if t == "ShaderNodeGroup":  # a pair of rows: a node group, then a material that calls it
            pair = _pair(rng, cat, names, seed + len(rows)) if len(rows) + 2 <= count else []
            if not any(r["output"] in seen for r in pair):
                rows += pair
                seen.update(r["output"] for r in pair)
            continue
        group = t in GROUP_IO or rng.randrange(GROUP_SHARE) == 0
        text = build(rng.choice(GROUP_INNER) if t in GROUP_IO else t, rng, group=group, catalog=cat, taken=names)
        if text is None:  # the type has no input or output a group interface could carry
            group, text = False, build(t, rng, catalog=cat, taken=names)
        if text is None or text in seen:
            continue
        row = _row(text, f"{'group' if group else 'material'}:{cat.short(t)}", seed + len(rows), cat)
        if row is not None:
            seen.add(text)
            rows.append(row)
    return rows
