"""import-blend → DSL text → validate → export-blend with the real commands, the real Blender and
real .blend files: the corpus in place, and materials built here in bpy the way the issue's hidden
check does (reroutes, a frame, a node group with interface sockets, enums, a colour ramp, an image
reference, a Mix Shader with both Shader inputs). Skips with its reason when bpy or the corpus is absent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.blender_helpers import BLEND_CORPUS, need_bpy

ROOT = Path(__file__).resolve().parents[2]
CORPUS = BLEND_CORPUS

pytestmark = need_bpy


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def test_corpus_imports_as_valid_dsl_and_round_trips_through_the_text(tmp_path: Path) -> None:
    files = sorted(CORPUS.glob("*.blend")) if CORPUS.is_dir() else []
    if not files:
        pytest.skip(f"Blender corpus absent: {CORPUS} (the shared corpus is not mounted here)")
    out = tmp_path / "imp"
    r = _cli("import-blend", *map(str, files), "--out", str(out), "--roundtrip", "--json")
    report = json.loads(r.stdout)
    t = report["totals"]
    assert (t["files"], t["opened"], t["failed"]) == (len(files), len(files), 0), r.stderr[-2000:]
    assert t["materials"] + t["groups"] > 0
    assert t["validation_errors"] == 0 and t["invalid"] == 0, [
        (g["name"], g["diagnostics"][:2]) for f in report["files"] for g in f["graphs"] if g.get("diagnostics")]
    # every graph is written, or skipped with a reason in the report
    for f in report["files"]:
        for g in f["graphs"]:
            assert "out" in g or g.get("skipped"), g
    assert t["written"] + t["skipped"] == t["materials"] + t["groups"]
    rt = t["roundtrip"]
    different = [(g["name"], g["roundtrip"]) for f in report["files"] for g in f["graphs"]
                 if g.get("roundtrip") not in (None, "identical")]
    assert (rt["different"], rt["build_failed"]) == (0, 0), different[:5]
    assert rt["identical"] == t["written"]
    assert r.returncode == 0, r.stderr[-2000:]
    # the written files validate on their own, with the ordinary command
    written = sorted(out.rglob("*.dsl"))
    assert len(written) == t["written"]
    v = _cli("validate", "--json", *map(str, written))
    assert v.returncode == 0, v.stdout[-2000:]
    assert all(i["valid"] for f in json.loads(v.stdout)["files"] for i in f["items"])


# -- the hidden check, with .blend files made here ---------------------------------------
def _make_file(path: Path) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    grp = bpy.data.node_groups.new("Tint Mix", "ShaderNodeTree")
    grp.interface.new_socket("Base Color", in_out="INPUT", socket_type="NodeSocketColor")
    amt = grp.interface.new_socket("Amount", in_out="INPUT", socket_type="NodeSocketFloat")
    amt.default_value, amt.min_value, amt.max_value = 0.25, 0.0, 1.0
    grp.interface.new_socket("Result", in_out="OUTPUT", socket_type="NodeSocketColor")
    gi, go = grp.nodes.new("NodeGroupInput"), grp.nodes.new("NodeGroupOutput")
    mix = grp.nodes.new("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
    for s in mix.inputs:
        if s.identifier == "B_Color":
            s.default_value = (0.9, 0.4, 0.1, 1.0)
    grp.links.new(gi.outputs["Amount"], mix.inputs["Factor"])
    grp.links.new(gi.outputs["Base Color"], next(s for s in mix.inputs if s.identifier == "A_Color"))
    grp.links.new(next(s for s in mix.outputs if s.identifier == "Result_Color"), go.inputs["Result"])

    # 1: procedural wood: reroute chain, a frame, a colour ramp, the group
    m = bpy.data.materials.new("Wood Floor")
    m.use_fake_user = True
    nt = m.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    out, bsdf = nt.nodes.new("ShaderNodeOutputMaterial"), nt.nodes.new("ShaderNodeBsdfPrincipled")
    tc, mp = nt.nodes.new("ShaderNodeTexCoord"), nt.nodes.new("ShaderNodeMapping")
    mp.vector_type = "TEXTURE"
    mp.inputs["Scale"].default_value = (2.0, 8.0, 1.0)
    frame = nt.nodes.new("NodeFrame")
    frame.label = "Grain"
    wave = nt.nodes.new("ShaderNodeTexWave")
    wave.wave_type, wave.bands_direction = "RINGS", "Z"
    wave.inputs["Distortion"].default_value = 6.5
    wave.parent = frame
    r1, r2 = nt.nodes.new("NodeReroute"), nt.nodes.new("NodeReroute")
    ramp = nt.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.interpolation = "EASE"
    ramp.color_ramp.elements[0].color = (0.2, 0.1, 0.05, 1.0)
    ramp.color_ramp.elements.new(0.45).color = (0.5, 0.3, 0.1, 1.0)
    g = nt.nodes.new("ShaderNodeGroup")
    g.node_tree = grp
    g.inputs["Amount"].default_value = 0.7
    bsdf.inputs["Roughness"].default_value = 0.35
    nt.links.new(tc.outputs["Object"], mp.inputs["Vector"])
    nt.links.new(mp.outputs["Vector"], wave.inputs["Vector"])
    nt.links.new(wave.outputs["Fac"], r1.inputs[0])
    nt.links.new(r1.outputs[0], r2.inputs[0])
    nt.links.new(r2.outputs[0], ramp.inputs["Fac"])
    nt.links.new(r1.outputs[0], bsdf.inputs["Specular IOR Level"])
    nt.links.new(ramp.outputs["Color"], g.inputs["Base Color"])
    nt.links.new(g.outputs["Result"], bsdf.inputs["Base Color"])
    nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])

    # 2: a mix shader with both Shader inputs, enums on the BSDFs and the output target
    m = bpy.data.materials.new("Car Paint")
    m.use_fake_user = True
    nt = m.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    out.target = "CYCLES"
    diff, gloss = nt.nodes.new("ShaderNodeBsdfDiffuse"), nt.nodes.new("ShaderNodeBsdfAnisotropic")
    gloss.distribution = "BECKMANN"
    diff.inputs["Color"].default_value = (0.6, 0.02, 0.02, 1.0)
    lw, mix = nt.nodes.new("ShaderNodeLayerWeight"), nt.nodes.new("ShaderNodeMixShader")
    lw.inputs["Blend"].default_value = 0.2
    nt.links.new(lw.outputs["Facing"], mix.inputs["Fac"])
    nt.links.new(diff.outputs["BSDF"], mix.inputs[1])
    nt.links.new(gloss.outputs["BSDF"], mix.inputs[2])
    nt.links.new(mix.outputs["Shader"], out.inputs["Surface"])

    # 3: an image texture reference, math with an enum and a clamp, value and colour nodes, bump
    m = bpy.data.materials.new("Tiles")
    m.use_fake_user = True
    nt = m.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    img = bpy.data.images.new("tiles_albedo.png", 4, 4)
    img.filepath = "//textures/tiles_albedo.png"
    out, bsdf = nt.nodes.new("ShaderNodeOutputMaterial"), nt.nodes.new("ShaderNodeBsdfPrincipled")
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image, tex.interpolation, tex.extension = img, "Closest", "MIRROR"
    math = nt.nodes.new("ShaderNodeMath")
    math.operation, math.use_clamp = "POWER", True
    val, rgb = nt.nodes.new("ShaderNodeValue"), nt.nodes.new("ShaderNodeRGB")
    val.outputs[0].default_value = 2.2
    rgb.outputs[0].default_value = (0.1, 0.8, 0.3, 1.0)
    bump = nt.nodes.new("ShaderNodeBump")
    bump.invert = True
    bump.inputs["Strength"].default_value = 0.4
    nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    nt.links.new(tex.outputs["Alpha"], math.inputs[0])
    nt.links.new(val.outputs[0], math.inputs[1])
    nt.links.new(math.outputs[0], bump.inputs["Height"])
    nt.links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    nt.links.new(rgb.outputs[0], bsdf.inputs["Emission Color"])
    nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])

    # 4: a vector math chain through a reroute into a group-less volume setup
    m = bpy.data.materials.new("Fog")
    m.use_fake_user = True
    nt = m.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    out, vol = nt.nodes.new("ShaderNodeOutputMaterial"), nt.nodes.new("ShaderNodeVolumePrincipled")
    noise = nt.nodes.new("ShaderNodeTexNoise")
    noise.noise_dimensions, noise.noise_type = "4D", "HETERO_TERRAIN"
    noise.inputs["W"].default_value = 1.5
    curve = nt.nodes.new("ShaderNodeFloatCurve")
    curve.mapping.curves[0].points[0].location = (0.0, 0.1)
    curve.mapping.curves[0].points.new(0.5, 0.9).handle_type = "VECTOR"
    curve.mapping.update()
    rr = nt.nodes.new("NodeReroute")
    nt.links.new(noise.outputs["Fac"], rr.inputs[0])
    nt.links.new(rr.outputs[0], curve.inputs["Value"])
    nt.links.new(curve.outputs["Value"], vol.inputs["Density"])
    nt.links.new(vol.outputs["Volume"], out.inputs["Volume"])
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


def _summary(path: Path) -> dict:
    """Each material and group of a file as Blender holds it, independent of the project's reader:
    node signatures (type, enum/bool settings, unlinked input values, ramp, curve, image, group,
    output values) and links resolved through reroutes; frames and reroutes left out."""
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(path))

    def r(v):
        if hasattr(v, "__len__") and not isinstance(v, str):
            return tuple(round(float(x), 4) for x in v)
        return round(float(v), 4) if isinstance(v, float) else v

    def sock_key(node, sock):
        return sock.name if node.bl_idname in ("ShaderNodeGroup", "NodeGroupInput", "NodeGroupOutput") \
            else sock.identifier

    def sig(n, linked):
        props = tuple(sorted((p.identifier, getattr(n, p.identifier)) for p in n.bl_rna.properties
                             if p.type in ("ENUM", "BOOLEAN") and not p.is_readonly
                             and p.identifier not in bpy.types.Node.bl_rna.properties
                             and p.identifier not in ("show_texture", "show_options", "show_preview")
                             and not getattr(p, "is_enum_flag", False)))
        inputs = tuple((s.identifier, r(s.default_value)) for s in n.inputs
                       if s.enabled and hasattr(s, "default_value") and (n.name, s.identifier) not in linked)
        outs = tuple(r(s.default_value) for s in n.outputs if hasattr(s, "default_value")) \
            if n.bl_idname in ("ShaderNodeValue", "ShaderNodeRGB") else ()
        extra = []
        if getattr(n, "color_ramp", None) is not None:
            extra.append(tuple((r(e.position), r(e.color)) for e in n.color_ramp.elements))
        if getattr(n, "mapping", None) is not None:
            extra.append(tuple(tuple((r(p.location), p.handle_type) for p in c.points) for c in n.mapping.curves))
        if getattr(n, "image", None) is not None:
            extra.append(n.image.name)
        if getattr(n, "node_tree", None) is not None:
            extra.append(n.node_tree.name)
        return (n.bl_idname, props, inputs, outs, tuple(extra))

    def tree(nt):
        real = {n.name: n for n in nt.nodes if n.bl_idname not in ("NodeReroute", "NodeFrame")}

        def sources(node, sock):
            for lk in nt.links:
                if lk.to_node == node and lk.to_socket == sock:
                    if lk.from_node.bl_idname == "NodeReroute":
                        yield from sources(lk.from_node, lk.from_node.inputs[0])
                    else:
                        yield lk.from_node, lk.from_socket

        links, linked = Counter(), set()
        for n in real.values():
            for s in n.inputs:
                for src, ss in sources(n, s):
                    linked.add((n.name, s.identifier))
                    links[(src.bl_idname, sock_key(src, ss), n.bl_idname, sock_key(n, s))] += 1
        sigs = {name: sig(n, linked) for name, n in real.items()}
        resolved = Counter()
        for lk_key, k in links.items():
            resolved[lk_key] += k
        return {"nodes": Counter(sigs.values()), "links": resolved}

    out = {("material", m.name): tree(m.node_tree) for m in bpy.data.materials if m.node_tree}
    for g in bpy.data.node_groups:
        t = tree(g)
        t["interface"] = [(i.in_out, i.name, i.socket_type, r(getattr(i, "default_value", 0))
                           if i.in_out == "INPUT" else None) for i in g.interface.items_tree if i.item_type == "SOCKET"]
        out[("group", g.name)] = t
    return out


def test_made_in_blender_import_validate_export_reopen_identical(tmp_path: Path) -> None:
    src = tmp_path / "hidden.blend"
    _make_file(src)
    before = _summary(src)
    dsl_dir = tmp_path / "dsl"
    r = _cli("import-blend", str(src), "--out", str(dsl_dir), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    totals = json.loads(r.stdout)["totals"]
    assert (totals["materials"], totals["groups"], totals["validation_errors"]) == (4, 1, 0), totals
    texts = sorted(dsl_dir.rglob("*.dsl"))
    assert len(texts) == 5
    wood = next(p for p in texts if "Wood" in p.name).read_text(encoding="utf-8")
    assert "Group [node_tree=\"Tint Mix\"" in wood and "Reroute" not in wood and "Frame" not in wood
    v = _cli("validate", "--json", *map(str, texts))
    assert v.returncode == 0, v.stdout[-2000:]
    report = json.loads(v.stdout)
    assert sum(len(i["diagnostics"]) for f in report["files"] for i in f["items"]
               if any(d["severity"] == "error" for d in i["diagnostics"])) == 0
    vb = _cli("validate", "--in-blender", *map(str, texts))
    assert vb.returncode == 0, vb.stdout[-2000:] + vb.stderr[-2000:]
    out = tmp_path / "out.blend"
    e = _cli("export-blend", *map(str, texts), "--out", str(out))
    assert e.returncode == 0, e.stderr[-2000:]
    after = _summary(out)
    assert set(after) == set(before)
    for key, want in before.items():
        got = after[key]
        assert got["nodes"] == want["nodes"], (key, want["nodes"] - got["nodes"], got["nodes"] - want["nodes"])
        assert got["links"] == want["links"], (key, want["links"] - got["links"], got["links"] - want["links"])
        assert got.get("interface") == want.get("interface"), key


def test_validate_in_blender_reports_what_blender_rejects(tmp_path: Path) -> None:
    text = tmp_path / "m.dsl"
    # a material calling a group no file gives: the catalog cannot know, Blender's build does
    text.write_text('MATERIAL: M\nNODE n1: MaterialOutput\nNODE n2: Group [node_tree="Nowhere"]\n'
                    "LINK n2.Shader -> n1.Surface\n", encoding="utf-8")
    plain = _cli("validate", str(text))
    assert plain.returncode == 0, plain.stdout
    r = _cli("validate", "--in-blender", "--json", str(text))
    assert r.returncode == 1
    diags = json.loads(r.stdout)["files"][0]["items"][0]["diagnostics"]
    assert any(d["code"] == "blender" and "Nowhere" in d["message"] for d in diags), diags


def test_in_blender_verdicts_with_repeated_names_and_nested_groups() -> None:
    """A dataset repeats names across repositories ("Material", "G"): each material is built with the
    groups it calls, and the groups those call, so a right text is never rejected and a wrong one is."""
    from dsl.packs.blender_material.cli import in_blender_diagnostics

    inner = "GROUP: Inner\nOUTPUT Result: Float\nNODE n1: Value\nNODE n2: GroupOutput\nLINK n1.Value -> n2.Result\n"
    outer = ('GROUP: G\nOUTPUT Shader: Shader\nNODE n1: Group [node_tree="Inner"]\nNODE n2: DiffuseBSDF\n'
             "NODE n3: GroupOutput\nLINK n1.Result -> n2.Roughness\nLINK n2.BSDF -> n3.Shader\n")
    other_g = "GROUP: G\nOUTPUT Result: Float\nNODE n1: Value\nNODE n2: GroupOutput\nLINK n1.Value -> n2.Result\n"
    shader_call = 'MATERIAL: Material\nNODE n1: MaterialOutput\nNODE n2: Group [node_tree="G"]\nLINK n2.Shader -> n1.Surface\n'
    float_call = ('MATERIAL: Material\nNODE n1: MaterialOutput\nNODE n2: Group [node_tree="G"]\nNODE n3: PrincipledBSDF\n'
                  "LINK n2.Result -> n3.Roughness\nLINK n3.BSDF -> n1.Surface\n")
    wrong = shader_call.replace("n2.Shader", "n2.Result")  # G (the shader one, just before it) has no Result
    verdicts = in_blender_diagnostics([inner, outer, shader_call, other_g, float_call, outer, wrong])
    assert verdicts is not None
    assert [bool(v) for v in verdicts] == [False, False, False, False, False, False, True], verdicts
    assert "no output 'Result'" in verdicts[-1][0].message
