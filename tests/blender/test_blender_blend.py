"""The Blender side of the material language, with the real Blender (bpy) and real .blend files.

Materials are built with bpy here, saved, imported, exported, reimported and compared; corpus
files are read in place. Everything skips with its reason when bpy or the corpus is absent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.blender_helpers import BLEND_CORPUS, need_bpy

ROOT = Path(__file__).resolve().parents[2]
CORPUS = BLEND_CORPUS


def corpus_file(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"Blender corpus file absent: {path} (the shared corpus is not mounted here)")
    return path


from dsl.packs.blender_material import blend  # noqa: E402
from dsl.packs.blender_material.model import Graph, Link, Node  # noqa: E402


def _ident(sockets, identifier: str):
    """bpy collections index by name; Blender's own address for a socket is its identifier."""
    return next(s for s in sockets if s.identifier == identifier)


def _build_scene_file(path: Path, reverse: bool = False) -> None:
    """A material using a group, a reroute chain, a frame, non-default values and enums, a packed image.
    REVERSE creates the nodes in the opposite order with other names (ids must not depend on it)."""
    import bpy

    blend.reset(bpy)
    grp = bpy.data.node_groups.new("Tint", "ShaderNodeTree")
    grp.interface.new_socket("Color", in_out="INPUT", socket_type="NodeSocketColor")
    amount = grp.interface.new_socket("Amount", in_out="INPUT", socket_type="NodeSocketFloat")
    amount.default_value = 0.5
    amount.min_value, amount.max_value = 0.0, 1.0
    grp.interface.new_socket("Result", in_out="OUTPUT", socket_type="NodeSocketColor")
    gi, go = grp.nodes.new("NodeGroupInput"), grp.nodes.new("NodeGroupOutput")
    mix = grp.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.blend_type = "MULTIPLY"
    grp.links.new(gi.outputs["Amount"], _ident(mix.inputs, "Factor_Float"))
    grp.links.new(gi.outputs["Color"], _ident(mix.inputs, "A_Color"))
    _ident(mix.inputs, "B_Color").default_value = (0.9, 0.2, 0.1, 1.0)
    grp.links.new(_ident(mix.outputs, "Result_Color"), go.inputs["Result"])

    mat = bpy.data.materials.new("Ball")
    mat.use_fake_user = True
    nt = mat.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    kinds = [("noise", "ShaderNodeTexNoise"), ("r1", "NodeReroute"), ("r2", "NodeReroute"),
             ("ramp", "ShaderNodeValToRGB"), ("math", "ShaderNodeMath"), ("group", "ShaderNodeGroup"),
             ("bsdf", "ShaderNodeBsdfPrincipled"), ("out", "ShaderNodeOutputMaterial"), ("frame", "NodeFrame"),
             ("img", "ShaderNodeTexImage")]
    made = {}
    for i, (key, kind) in enumerate(reversed(kinds) if reverse else kinds):
        made[key] = nt.nodes.new(kind)
        made[key].name = f"{'zz' if reverse else 'a'}{i}"
    noise, r1, r2, ramp, math = (made[k] for k in ("noise", "r1", "r2", "ramp", "math"))
    noise.inputs["Scale"].default_value = 12.0
    noise.parent = made["frame"]
    nt.links.new(noise.outputs["Fac"], r1.inputs[0])
    nt.links.new(r1.outputs[0], r2.inputs[0])
    nt.links.new(r2.outputs[0], ramp.inputs["Fac"])
    nt.links.new(r2.outputs[0], math.inputs[0])
    ramp.color_ramp.interpolation = "CONSTANT"
    ramp.color_ramp.elements.new(0.4).color = (0.1, 0.5, 0.2, 1.0)
    math.operation = "MULTIPLY"
    math.use_clamp = True
    math.inputs[1].default_value = 3.0
    g = made["group"]
    g.node_tree = grp
    nt.links.new(ramp.outputs["Color"], g.inputs["Color"])
    bsdf = made["bsdf"]
    nt.links.new(g.outputs["Result"], bsdf.inputs["Base Color"])
    nt.links.new(math.outputs[0], bsdf.inputs["Roughness"])
    nt.links.new(bsdf.outputs["BSDF"], made["out"].inputs["Surface"])
    pixels = bpy.data.images.new("pixels_src", 4, 4)
    pixels.filepath_raw = str(path.parent / "pixels.png")
    pixels.file_format = "PNG"
    pixels.save()
    img = bpy.data.images.load(str(path.parent / "pixels.png"))
    img.pack()
    made["img"].image = img
    nt.links.new(made["img"].outputs["Alpha"], bsdf.inputs["Alpha"])
    with blend.quiet_blender():
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
    blend.reset(bpy)


@need_bpy
def test_built_file_imports_with_reroutes_resolved_and_values(tmp_path: Path) -> None:
    src = tmp_path / "built.blend"
    _build_scene_file(src)
    graphs, unmapped = blend.read_blend(src, known_types=frozenset())
    by = {(g.kind, g.name): g for g in graphs}
    mat, grp = by[("material", "Ball")], by[("group", "Tint")]
    types = {n.id: n.bl_idname for n in mat.nodes}
    assert "NodeReroute" not in types.values() and "NodeFrame" not in types.values()
    noise = next(n for n in mat.nodes if n.bl_idname == "ShaderNodeTexNoise")
    ramp = next(n for n in mat.nodes if n.bl_idname == "ShaderNodeValToRGB")
    math = next(n for n in mat.nodes if n.bl_idname == "ShaderNodeMath")
    # the reroute chain became direct links, one per real destination
    assert Link(noise.id, "Fac", ramp.id, "Fac") in mat.links
    assert Link(noise.id, "Fac", math.id, "Value") in mat.links
    assert noise.inputs == {"Scale": 12.0}
    assert math.props == {"operation": "MULTIPLY", "use_clamp": True} and math.inputs == {"Value_001": 3.0}
    assert ramp.props["color_ramp.interpolation"] == "CONSTANT" and len(ramp.props["color_ramp"]) == 3
    assert mat.groups_used == ["Tint"]
    assert next(n for n in mat.nodes if n.bl_idname == "ShaderNodeGroup").props == {"node_tree": "Tint"}
    assert [n.bl_idname for n in mat.nodes][-1] == "ShaderNodeOutputMaterial"  # sources first, output last
    assert [(s.name, s.socket_type, s.identifier) for s in grp.inputs] == [
        ("Color", "NodeSocketColor", "Socket_0"), ("Amount", "NodeSocketFloat", "Socket_1")]
    assert grp.inputs[1].default == 0.5 and grp.outputs[0].identifier == "Socket_2"
    mixn = next(n for n in grp.nodes if n.bl_idname == "ShaderNodeMix")
    assert mixn.props == {"data_type": "RGBA", "blend_type": "MULTIPLY"}
    assert [(u.owner, u.what) for u in unmapped] == [("Ball", "packed image 'pixels.png'")]


@need_bpy
def test_ids_do_not_depend_on_blender_order_or_names(tmp_path: Path) -> None:
    a, b = tmp_path / "a.blend", tmp_path / "b.blend"
    _build_scene_file(a)
    _build_scene_file(b, reverse=True)
    ga, _ = blend.read_blend(a, known_types=frozenset())
    gb, _ = blend.read_blend(b, known_types=frozenset())
    assert [(g.kind, g.name) for g in ga] == [(g.kind, g.name) for g in gb]
    for x, y in zip(ga, gb):
        assert blend.compare(x, y) == []


@need_bpy
def test_round_trip_of_built_material_and_compare_sees_changes(tmp_path: Path) -> None:
    src, out = tmp_path / "built.blend", tmp_path / "out.blend"
    _build_scene_file(src)
    graphs, _ = blend.read_blend(src, known_types=frozenset())
    blend.write_blend(graphs, out)
    assert out.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # saved zstd-compressed
    again, _ = blend.read_blend(out, known_types=frozenset())
    assert len(again) == len(graphs) == 2
    for x, y in zip(graphs, again):
        assert blend.compare(x, y) == []
    # compare is not blind: a changed value, enum, link and group use are each reported
    y = again[1] if again[1].kind == "material" else again[0]
    math = next(n for n in y.nodes if n.bl_idname == "ShaderNodeMath")
    math.inputs["Value_001"] = 3.5
    math.props["operation"] = "ADD"
    y.links.pop()
    y.groups_used = []
    x = next(g for g in graphs if g.kind == "material")
    diffs = blend.compare(x, y)
    assert any("Value_001" in d for d in diffs) and any("operation" in d for d in diffs)
    assert any(d.startswith("link only in a") for d in diffs) and any("groups used" in d for d in diffs)


@need_bpy
def test_invalid_link_and_unknown_type_are_errors(tmp_path: Path) -> None:
    bad = Graph(kind="material", name="Bad", nodes=[
        Node("n1", "ShaderNodeEmission"), Node("n2", "ShaderNodeMath"), Node("n3", "ShaderNodeNoSuchThing"),
        Node("n4", "ShaderNodeOutputMaterial")],
        links=[Link("n1", "Emission", "n2", "Value"), Link("n2", "Value", "n4", "Surface")])
    problems = blend.validate_in_blender([bad])
    assert any("n1.Emission -> n2.Value" in p and "invalid" in p for p in problems), problems
    assert any("unknown node type ShaderNodeNoSuchThing" in p for p in problems), problems
    with pytest.raises(blend.BuildError) as err:
        blend.write_blend([bad], tmp_path / "bad.blend")
    assert "invalid" in str(err.value) or "unknown" in str(err.value)
    assert not (tmp_path / "bad.blend").exists()
    good = Graph(kind="material", name="Good", nodes=[Node("n1", "ShaderNodeEmission"),
                                                      Node("n2", "ShaderNodeOutputMaterial")],
                 links=[Link("n1", "Emission", "n2", "Surface")])
    assert blend.validate_in_blender([good]) == []
    missing_group = Graph(kind="material", name="G", nodes=[Node("n1", "ShaderNodeGroup", props={"node_tree": "Nope"})],
                          groups_used=["Nope"])
    assert any("'Nope' which is not given" in p for p in blend.validate_in_blender([missing_group]))


@need_bpy
def test_corpus_files_of_each_compression_import_and_report() -> None:
    # zstd (newer than this Blender), gzip with an add-on node, plain with a grease-pencil material
    dispersion = corpus_file("KhronosGroup__glTF-Blender-IO__01_dispersion.blend")
    particle = corpus_file("armory3d__armory_examples__particle_info.blend")
    smoothie = corpus_file("Tommozite__Blender_Stuff__smoothie.blend")
    paint = corpus_file("proteanblank__paintsystem__library2.blend")
    graphs, unmapped = blend.read_blend(dispersion, known_types=frozenset())
    assert sum(g.kind == "material" for g in graphs) == 5
    assert any("newer" in u.reason for u in unmapped)
    graphs, unmapped = blend.read_blend(particle, known_types=frozenset())
    assert [u.what for u in unmapped if "NodeUndefined" in u.reason] == ["node NodeUndefined 'Shader Data'"]
    assert all(n.bl_idname != "NodeUndefined" for g in graphs for n in g.nodes)
    graphs, unmapped = blend.read_blend(smoothie, known_types=frozenset())
    assert "Dots Stroke" not in {g.name for g in graphs}  # Blender 5's invented tree is not data
    assert any(u.owner == "Dots Stroke" and "no stored node tree" in u.reason for u in unmapped)
    graphs, unmapped = blend.read_blend(paint, known_types=frozenset())
    assert sum("OSL script" in u.reason for u in unmapped) == 2
    assert all(n.bl_idname != "ShaderNodeScript" for g in graphs for n in g.nodes)


@need_bpy
def test_corpus_group_file_round_trips_identical(tmp_path: Path) -> None:
    src = corpus_file("ucupumar__ucupaint__lib_281.blend")  # a material calling nested groups
    graphs, _ = blend.read_blend(src, known_types=frozenset())
    assert len(graphs) == 6 and any(g.groups_used for g in graphs)
    out = blend.write_blend(graphs, tmp_path / "rt.blend")
    again = {(g.kind, g.name): g for g in blend.read_blend(out, known_types=frozenset())[0]}
    for g in graphs:
        assert blend.compare(g, again[(g.kind, g.name)]) == [], g.name


def _png_size_and_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (no imaging library needed)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@need_bpy
def test_render_material_ball_png(tmp_path: Path) -> None:
    from dsl.packs.blender_material.render import render_material

    red = Graph(kind="material", name="Red", nodes=[
        Node("n1", "ShaderNodeBsdfPrincipled", inputs={"Base Color": (0.8, 0.05, 0.05, 1.0)}),
        Node("n2", "ShaderNodeOutputMaterial")], links=[Link("n1", "BSDF", "n2", "Surface")])
    out = render_material([red], tmp_path / "ball.png", size=48, samples=2)
    width, height, raw = _png_size_and_pixels(out)
    assert (width, height) == (48, 48)
    assert len(set(raw)) > 20  # a scene, not a blank frame


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@need_bpy
def test_cli_import_roundtrip_json_and_export(tmp_path: Path) -> None:
    src = corpus_file("armory3d__armory_examples__particle_info.blend")
    res = _cli("import-blend", str(src), "--out", str(tmp_path / "out"), "--format", "json", "--json", "--roundtrip")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)  # stdout is exactly one JSON document
    totals = report["totals"]
    assert totals["opened"] == 1 and totals["materials"] == 2 and totals["groups"] == 2
    assert totals["roundtrip"] == {"identical": 4, "different": 0, "build_failed": 0}
    written = sorted((tmp_path / "out").rglob("*.json"))
    assert len(written) == 4
    res = _cli("export-blend", *map(str, written), "--out", str(tmp_path / "x.blend"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "x.blend").stat().st_size > 0
    res = _cli("import-blend", str(tmp_path / "nothing.blend"))
    assert res.returncode == 1 and "no such file" in res.stderr


def test_commands_without_bpy_say_how_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "bpy.py").write_text("raise ImportError('bpy hidden for this test')\n")
    res = _cli("render-material", "x.dsl", "--out", str(tmp_path / "x.png"),
               env_extra={"PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"})
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'bpllm[blender]'" in lines[0], res.stderr
