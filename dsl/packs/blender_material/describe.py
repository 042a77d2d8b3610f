"""A natural-language instruction for a material graph: what it looks like and how it is wired.

``bpllm dataset build`` pairs each imported material with such a description, so a model learns to
go from words to the graph. The text comes only from the graph (model.Graph, Blender's own naming):
the surface shader and its key values in words (colour names from RGB, roughness and metallic words,
emission, transparency), the textures and other nodes used, and which node chain feeds which input
of the shader. Node ids never appear (they are an artefact of numbering, not something a user asks
for). The wording is picked from several phrasings by ``seed``: the same graph and seed always give
the same text, another seed usually another text. Pure stdlib: no bpy.
"""
from __future__ import annotations

import colorsys
import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any

from dsl.packs.blender_material import model

# bl_idname -> words. Anything missing is spelled from its idname (ShaderNodeTexBrick -> "brick texture").
NODE_WORDS: dict[str, str] = {
    "ShaderNodeBsdfPrincipled": "Principled BSDF", "ShaderNodeBsdfDiffuse": "diffuse BSDF",
    "ShaderNodeBsdfGlossy": "glossy BSDF", "ShaderNodeBsdfAnisotropic": "glossy BSDF",
    "ShaderNodeBsdfGlass": "glass BSDF", "ShaderNodeBsdfRefraction": "refraction BSDF",
    "ShaderNodeBsdfTransparent": "transparent BSDF", "ShaderNodeBsdfTranslucent": "translucent BSDF",
    "ShaderNodeBsdfSheen": "sheen BSDF", "ShaderNodeBsdfToon": "toon BSDF", "ShaderNodeBsdfHair": "hair BSDF",
    "ShaderNodeBsdfMetallic": "metallic BSDF", "ShaderNodeSubsurfaceScattering": "subsurface scattering",
    "ShaderNodeEmission": "emission shader", "ShaderNodeBackground": "background shader",
    "ShaderNodeHoldout": "holdout", "ShaderNodeMixShader": "mix shader", "ShaderNodeAddShader": "add shader",
    "ShaderNodeVolumePrincipled": "principled volume", "ShaderNodeVolumeAbsorption": "volume absorption",
    "ShaderNodeVolumeScatter": "volume scatter", "ShaderNodeEeveeSpecular": "specular BSDF",
    "ShaderNodeTexNoise": "noise texture", "ShaderNodeTexVoronoi": "Voronoi texture",
    "ShaderNodeTexImage": "image texture", "ShaderNodeTexEnvironment": "environment texture",
    "ShaderNodeTexWave": "wave texture", "ShaderNodeTexMusgrave": "Musgrave texture",
    "ShaderNodeTexGradient": "gradient texture", "ShaderNodeTexMagic": "magic texture",
    "ShaderNodeTexChecker": "checker texture", "ShaderNodeTexBrick": "brick texture",
    "ShaderNodeTexWhiteNoise": "white noise", "ShaderNodeTexSky": "sky texture",
    "ShaderNodeTexGabor": "Gabor texture", "ShaderNodeTexCoord": "texture coordinates",
    "ShaderNodeUVMap": "UV map", "ShaderNodeMapping": "mapping", "ShaderNodeValToRGB": "colour ramp",
    "ShaderNodeRGBCurve": "RGB curves", "ShaderNodeFloatCurve": "float curve",
    "ShaderNodeVectorCurve": "vector curves", "ShaderNodeMapRange": "map range", "ShaderNodeClamp": "clamp",
    "ShaderNodeMath": "math", "ShaderNodeVectorMath": "vector math", "ShaderNodeMix": "mix",
    "ShaderNodeMixRGB": "mix", "ShaderNodeInvert": "invert", "ShaderNodeHueSaturation": "hue/saturation",
    "ShaderNodeBrightContrast": "brightness/contrast", "ShaderNodeGamma": "gamma", "ShaderNodeRGBToBW": "RGB to BW",
    "ShaderNodeSeparateColor": "separate colour", "ShaderNodeCombineColor": "combine colour",
    "ShaderNodeSeparateRGB": "separate RGB", "ShaderNodeCombineRGB": "combine RGB",
    "ShaderNodeSeparateXYZ": "separate XYZ", "ShaderNodeCombineXYZ": "combine XYZ",
    "ShaderNodeBump": "bump", "ShaderNodeNormalMap": "normal map", "ShaderNodeNormal": "normal",
    "ShaderNodeDisplacement": "displacement", "ShaderNodeVectorDisplacement": "vector displacement",
    "ShaderNodeFresnel": "Fresnel", "ShaderNodeLayerWeight": "layer weight", "ShaderNodeRGB": "RGB colour",
    "ShaderNodeValue": "value", "ShaderNodeAttribute": "attribute", "ShaderNodeVertexColor": "colour attribute",
    "ShaderNodeObjectInfo": "object info", "ShaderNodeNewGeometry": "geometry", "ShaderNodeLightPath": "light path",
    "ShaderNodeAmbientOcclusion": "ambient occlusion", "ShaderNodeBlackbody": "blackbody",
    "ShaderNodeWavelength": "wavelength", "ShaderNodeTangent": "tangent", "ShaderNodeCameraData": "camera data",
    "ShaderNodeParticleInfo": "particle info", "ShaderNodeShaderToRGB": "shader to RGB",
    "ShaderNodeGroup": "node group", "NodeGroupInput": "group input", "NodeGroupOutput": "group output",
    "ShaderNodeOutputMaterial": "material output",
}
TEXTURES = {k for k in NODE_WORDS if k.startswith("ShaderNodeTex") and k not in ("ShaderNodeTexCoord",)}
LAYOUT = {"NodeFrame", "NodeReroute"}  # layout only: never described
SHADER_INPUTS = ("Shader", "Shader_001")
MAX_SAME = 3  # more textures of one kind than this are counted, not listed
MAX_WIRES = 8  # wiring sentences told; the rest are counted

# Principled BSDF defaults (Blender 4/5): model.Node.inputs holds only values that differ from them
PRINCIPLED_DEFAULTS: dict[str, Any] = {"Base Color": (0.8, 0.8, 0.8, 1.0), "Metallic": 0.0, "Roughness": 0.5,
                                       "Alpha": 1.0, "Transmission Weight": 0.0, "Emission Color": (1, 1, 1, 1),
                                       "Emission Strength": 0.0, "Coat Weight": 0.0, "Sheen Weight": 0.0,
                                       "Subsurface Weight": 0.0}
COLOR_INPUT = {"ShaderNodeBsdfPrincipled": "Base Color", "ShaderNodeEmission": "Color",
               "ShaderNodeBackground": "Color"}
DEFAULT_COLOR = (0.8, 0.8, 0.8, 1.0)
ONE = (1.0, 1.0, 1.0, 1.0)


def node_words(node: model.Node) -> str:
    """What a node is, in words (with its operation or group name: that is what makes it what it is)."""
    if node.bl_idname == "ShaderNodeGroup":
        name = node.props.get("node_tree")
        return f"node group '{name}'" if name else "node group"
    base = NODE_WORDS.get(node.bl_idname) or _spell(node.bl_idname)
    op = node.props.get("operation") or node.props.get("blend_type")
    if isinstance(op, str) and node.bl_idname in ("ShaderNodeMath", "ShaderNodeVectorMath", "ShaderNodeMix",
                                                   "ShaderNodeMixRGB"):
        return f"{base} ({op.lower().replace('_', ' ')})"
    return base


def _spell(idname: str) -> str:
    core = re.sub(r"^(ShaderNode|Node)", "", idname)
    tex = core.startswith("Tex")
    core = core[3:] if tex else core
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", core).lower()
    return f"{words} texture" if tex else words


# --------------------------------------------------------------------------- colours and values
_HUES = ((15, "red"), (40, "orange"), (65, "yellow"), (160, "green"), (195, "cyan"), (255, "blue"),
         (290, "purple"), (335, "magenta"), (360, "red"))


def _to_srgb(c: float) -> float:
    c = min(max(float(c), 0.0), 1.0)
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


def color_name(rgb: Any) -> str:
    """A plain colour name for a linear RGB(A) value as Blender stores it ("dark red", "light grey")."""
    r, g, b = (_to_srgb(v) for v in tuple(rgb)[:3])
    h, light, sat = colorsys.rgb_to_hls(r, g, b)
    if sat < 0.15 or max(r, g, b) - min(r, g, b) < 0.06:
        if light < 0.12:
            return "black"
        if light > 0.92:
            return "white"
        return "dark grey" if light < 0.35 else ("light grey" if light > 0.7 else "grey")
    deg = h * 360
    hue = next(name for top, name in _HUES if deg < top)
    if hue == "orange" and light < 0.4:
        return "brown"
    if hue == "red" and light > 0.7:
        return "pink"
    if light < 0.25:
        return f"dark {hue}"
    if light > 0.75:
        return f"pale {hue}"
    return hue


def roughness_words(v: float) -> str:
    if v < 0.08:
        return "mirror-like"
    if v < 0.3:
        return "glossy"
    if v < 0.6:
        return "satin"
    if v < 0.85:
        return "rough"
    return "very rough, matte"


def _num(v: Any, default: float) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return default


def _is_black(c: Any) -> bool:
    return isinstance(c, (tuple, list)) and len(c) >= 3 and max(float(x) for x in tuple(c)[:3]) < 0.01


# --------------------------------------------------------------------------- facts
@dataclass
class Facts:
    """What describe() says, before wording: also handy for tests and reports."""

    name: str
    kind: str
    shader: str = ""  # words for the surface shader ("Principled BSDF", "mix of glass BSDF and ...")
    looks: list[str] = field(default_factory=list)  # ordered adjectives/phrases ("dark red", "metallic")
    textures: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # other notable nodes (colour ramp, bump, groups)
    wiring: list[str] = field(default_factory=list)  # "a noise texture through a colour ramp drives Base Color"
    volume: str = ""
    displacement: str = ""
    interface: str = ""  # groups: "inputs Color, Scale; outputs Shader"
    n_nodes: int = 0
    n_links: int = 0


class _View:
    def __init__(self, graph: model.Graph):
        self.g = graph
        self.by_id = {n.id: n for n in graph.nodes}
        self.into: dict[str, list[model.Link]] = {}
        for link in graph.links:
            self.into.setdefault(link.dst, []).append(link)

    def source(self, node_id: str, socket: str) -> model.Node | None:
        """The real node feeding ``socket`` of ``node_id`` (through reroutes)."""
        for link in self.into.get(node_id, []):
            if link.dst_socket == socket:
                src = self.by_id.get(link.src)
                while src is not None and src.bl_idname == "NodeReroute":
                    ups = self.into.get(src.id, [])
                    src = self.by_id.get(ups[0].src) if ups else None
                return src
        return None

    def inputs_linked(self, node: model.Node) -> list[tuple[str, model.Node]]:
        out = []
        for link in self.into.get(node.id, []):
            src = self.source(node.id, link.dst_socket)
            if src is not None and all(s != link.dst_socket for s, _ in out):
                out.append((link.dst_socket, src))
        return out

    def chain(self, node: model.Node, depth: int = 3) -> list[model.Node]:
        """The node and, upstream, the first real input of each (a readable path, not the whole tree)."""
        path = [node]
        seen = {node.id}
        while len(path) < depth:
            ups = [src for _s, src in self.inputs_linked(path[-1]) if src.id not in seen
                   and src.bl_idname not in ("ShaderNodeTexCoord", "ShaderNodeUVMap", "NodeGroupInput")]
            if not ups:
                break
            path.append(ups[0])
            seen.add(ups[0].id)
        return path


def _output(view: _View, kind: str) -> model.Node | None:
    want = "ShaderNodeOutputMaterial" if kind == "material" else "NodeGroupOutput"
    outs = [n for n in view.g.nodes if n.bl_idname == want]
    if not outs:
        return None
    linked = [n for n in outs if view.into.get(n.id)]
    active = [n for n in linked if n.props.get("is_active_output", True)]
    return (active or linked or outs)[0]


def _shader_words(view: _View, node: model.Node | None, depth: int = 0) -> str:
    if node is None:
        return ""
    if node.bl_idname in ("ShaderNodeMixShader", "ShaderNodeAddShader") and depth < 2:
        a = _shader_words(view, view.source(node.id, "Shader"), depth + 1) or "nothing"
        b = _shader_words(view, view.source(node.id, "Shader_001"), depth + 1) or "nothing"
        how = "mix" if node.bl_idname == "ShaderNodeMixShader" else "sum"
        return f"a {how} of {_a(a)} and {_a(b)}"
    return node_words(node)


def _a(words: str) -> str:
    if words.startswith(("a ", "an ", "node group", "nothing")):
        return words
    # by sound: "a UV map" (you-vee); the U of an acronym is the one vowel letter that is not a vowel sound
    vowel = words[:1].lower() in "aeiou" and not (words[:2].isupper() and words[:1] == "U")
    return ("an " if vowel else "a ") + words


def _looks(view: _View, node: model.Node | None) -> list[str]:
    """Adjectives for the surface shader's unlinked key values (linked ones are told by the wiring)."""
    if node is None:
        return []
    linked = {s for s, _ in view.inputs_linked(node)}
    vals = node.inputs
    out: list[str] = []
    cin = COLOR_INPUT.get(node.bl_idname, "Color")
    if cin not in linked and node.bl_idname not in ("ShaderNodeMixShader", "ShaderNodeAddShader"):
        default = ONE if node.bl_idname in ("ShaderNodeEmission", "ShaderNodeBsdfTransparent",
                                            "ShaderNodeBsdfGlass") else DEFAULT_COLOR
        out.append(color_name(vals.get(cin, default)))
    if node.bl_idname == "ShaderNodeBsdfPrincipled":
        d = PRINCIPLED_DEFAULTS
        metal = _num(vals.get("Metallic"), d["Metallic"])
        if "Metallic" in linked:
            out.append("varying metalness")
        elif metal >= 0.5:
            out.append("metallic")
        elif metal > 0.1:
            out.append("slightly metallic")
        if "Roughness" not in linked:
            out.append(roughness_words(_num(vals.get("Roughness"), d["Roughness"])))
        strength = _num(vals.get("Emission Strength"), d["Emission Strength"])
        ecol = vals.get("Emission Color", d["Emission Color"])
        if "Emission Strength" in linked or "Emission Color" in linked or (strength > 0 and not _is_black(ecol)):
            glow = f"glowing {color_name(ecol)}" if "Emission Color" not in linked and not _is_black(ecol) else "glowing"
            out.append(glow + (f" (strength {strength:g})" if strength > 0 and "Emission Strength" not in linked
                               else ""))
        alpha = _num(vals.get("Alpha"), d["Alpha"])
        if "Alpha" in linked:
            out.append("with a cut-out alpha")
        elif alpha < 0.99:
            out.append("partly transparent" if alpha > 0.05 else "almost invisible")
        if _num(vals.get("Transmission Weight"), 0.0) > 0.5 or "Transmission Weight" in linked:
            out.append("transmissive like glass")
        for key, word in (("Coat Weight", "clear-coated"), ("Sheen Weight", "with sheen"),
                          ("Subsurface Weight", "with subsurface scattering")):
            if _num(vals.get(key), 0.0) > 0.05:
                out.append(word)
    elif "Roughness" in {**vals, **dict.fromkeys(linked)} or node.bl_idname in ("ShaderNodeBsdfGlossy",
                                                                                "ShaderNodeBsdfAnisotropic"):
        if "Roughness" not in linked:
            out.append(roughness_words(_num(vals.get("Roughness"), 0.5)))
    if node.bl_idname == "ShaderNodeEmission" and "Strength" not in linked:
        out.append(f"strength {_num(vals.get('Strength'), 1.0):g}")
    return out


def _chain_words(view: _View, node: model.Node) -> str:
    path = view.chain(node)
    words = [_a(node_words(n)) for n in path]
    if len(words) == 1:
        return words[0]
    return words[0] + "".join(f" fed by {w}" for w in words[1:])


def facts(graph: model.Graph) -> Facts:
    view = _View(graph)
    real = [n for n in graph.nodes if n.bl_idname not in LAYOUT]
    f = Facts(name=graph.name, kind=graph.kind, n_nodes=len(real),
              n_links=sum(1 for link in graph.links if link.src in view.by_id and link.dst in view.by_id))
    out = _output(view, graph.kind)
    surface = None
    if out is not None:
        if graph.kind == "material":
            surface = view.source(out.id, "Surface")
            vol = view.source(out.id, "Volume")
            disp = view.source(out.id, "Displacement")
            f.volume = _chain_words(view, vol) if vol is not None else ""
            f.displacement = _chain_words(view, disp) if disp is not None else ""
        else:
            linked = view.inputs_linked(out)
            surface = next((src for _s, src in linked if src.bl_idname in NODE_WORDS and "Bsdf" in src.bl_idname
                            or src.bl_idname in ("ShaderNodeMixShader", "ShaderNodeEmission")), None)
    f.shader = _shader_words(view, surface)
    f.looks = _looks(view, surface)
    if surface is not None:
        shader_nodes = [surface]
        if surface.bl_idname in ("ShaderNodeMixShader", "ShaderNodeAddShader"):
            shader_nodes += [s for s in (view.source(surface.id, k) for k in SHADER_INPUTS) if s is not None]
            fac = view.source(surface.id, "Fac")
            if fac is not None:
                f.wiring.append(f"{_chain_words(view, fac)} sets the mix factor")
        drives: dict[str, list[str]] = {}  # chain -> inputs it drives (one source often feeds several)
        for sh in shader_nodes:
            for socket, src in view.inputs_linked(sh):
                if socket in SHADER_INPUTS or (sh is surface and socket == "Fac"):
                    continue
                target = socket if len(shader_nodes) == 1 else f"{socket} of the {node_words(sh)}"
                drives.setdefault(_chain_words(view, src), []).append(target)
        f.wiring += [f"{chain} drives {_join(targets)}" for chain, targets in drives.items()]
    seen_t: list[str] = []
    seen_o: list[str] = []
    skip = {"ShaderNodeOutputMaterial", "NodeGroupInput", "NodeGroupOutput", "ShaderNodeTexCoord",
            "ShaderNodeUVMap", "ShaderNodeMapping", "ShaderNodeValue", "ShaderNodeRGB"}
    kinds: dict[str, int] = {}
    for n in real:
        if n.bl_idname in TEXTURES:
            kinds[n.bl_idname] = kinds.get(n.bl_idname, 0) + 1
    for n in real:
        w = node_words(n)
        if n.bl_idname in TEXTURES and kinds[n.bl_idname] > MAX_SAME:  # "10 image textures", not ten names
            w = f"{kinds[n.bl_idname]} {w.replace('texture', 'textures')}"
            if w not in seen_t:
                seen_t.append(w)
        elif n.bl_idname in TEXTURES:
            if n.bl_idname == "ShaderNodeTexImage" and isinstance(n.props.get("image"), str):
                w = f"{w} '{n.props['image']}'"
            elif isinstance(n.inputs.get("Scale"), (int, float)) and not isinstance(n.inputs["Scale"], bool):
                w = f"{w} at scale {float(n.inputs['Scale']):g}"
            if w not in seen_t:
                seen_t.append(w)
        elif n.bl_idname not in skip and n is not surface and "Bsdf" not in n.bl_idname and w not in seen_o:
            seen_o.append(w)
    f.textures, f.others = seen_t, seen_o
    if graph.kind == "group":
        ins = ", ".join(s.name for s in graph.inputs) or "none"
        outs = ", ".join(s.name for s in graph.outputs) or "none"
        f.interface = f"inputs {ins}; outputs {outs}"
    return f


# --------------------------------------------------------------------------- wording
_OPEN_MATERIAL = ("Create a material named '{name}'", "Make a Blender material called '{name}'",
                  "Build the shader node tree of a material '{name}'", "I need a material '{name}'",
                  "Write the node graph for a material named '{name}'")
_OPEN_GROUP = ("Create a shader node group named '{name}'", "Make a reusable node group '{name}'",
               "Build the node group '{name}'")
_LOOK = ("{looks} {shader}", "{shader} that looks {looks}", "{shader}, {looks}")
_TEX = ("It uses {list}.", "Textures: {list}.", "Bring in {list}.")
_OTHERS = ("Along the way it uses {list}.", "Other nodes: {list}.", "It also needs {list}.")
_WIRE = ("Wiring: {list}.", "Connect it so that {list}.", "Hook it up: {list}.")


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _rng(graph: model.Graph, seed: int) -> random.Random:
    key = f"{seed}\0{graph.kind}\0{graph.name}\0{len(graph.nodes)}\0{len(graph.links)}"
    return random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))


def describe(graph: model.Graph, seed: int = 0) -> str:
    """The instruction for ``graph``: deterministic for (graph, seed), phrased by the seed; no node ids."""
    f = facts(graph)
    rng = _rng(graph, seed)
    opener = rng.choice(_OPEN_MATERIAL if graph.kind == "material" else _OPEN_GROUP).format(name=graph.name)
    parts: list[str] = []
    if f.shader:
        looks = [w for w in f.looks if w]
        if looks:
            phrases = f.shader.startswith("a ") or any(re.search(r" with |\(| like ", w) for w in looks)
            form = _LOOK[2] if phrases else rng.choice(_LOOK)  # "a with sheen BSDF" reads badly
            parts.append(f"{opener}: {_a(form.format(looks=_join(looks), shader=f.shader))}.")
        else:
            parts.append(f"{opener}: {_a(f.shader)}.")
    else:
        parts.append(f"{opener} ({f.n_nodes} nodes).")
    if f.interface:
        parts.append(f"Interface: {f.interface}.")
    if f.textures:
        parts.append(rng.choice(_TEX).format(list=_join([_a(t) for t in f.textures])))
    if f.wiring:
        wiring = f.wiring[:MAX_WIRES]
        if len(f.wiring) > MAX_WIRES:
            wiring.append(f"{len(f.wiring) - MAX_WIRES} more connections like these")
        parts.append(rng.choice(_WIRE).format(list="; ".join(wiring)))
    if f.volume:
        parts.append(f"The volume comes from {f.volume}.")
    if f.displacement:
        parts.append(f"Displacement comes from {f.displacement}.")
    shown = " ".join(parts).lower()
    rest = [o for o in f.others if o.lower() not in shown]
    if rest:
        parts.append(rng.choice(_OTHERS).format(list=_join([_a(o) for o in rest[:8]])))
    return " ".join(parts)
