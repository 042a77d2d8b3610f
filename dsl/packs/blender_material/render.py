"""Preview renders: a material on a ball, in Cycles on the CPU, in seconds.

The scene is the classic material-preview set-up, built from nothing so it does not depend on a
startup file: a smooth UV sphere on a checker floor, a camera looking slightly down, a key area
light and a grey world for fill. Small sizes and few samples (256 px, 16 samples: a few seconds on
2 cores) are enough to see colour, roughness, transparency and bumps.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from dsl.errors import BpllmError

from .blend import BuildError, build_graphs, quiet_blender, require_bpy, reset
from .model import Graph


def _sphere(bpy, bmesh, name: str, radius: float):
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=48, v_segments=24, radius=radius, calc_uvs=True)
    bm.to_mesh(mesh)
    bm.free()
    for poly in mesh.polygons:
        poly.use_smooth = True
    return mesh


def _plane(bpy, name: str, size: float):
    mesh = bpy.data.meshes.new(name)
    h = size / 2
    mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new(name="UVMap")
    return mesh


def _floor_material(bpy):
    mat = bpy.data.materials.new("__bpllm_floor__")
    nt = mat.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    bsdf = nt.nodes.new("ShaderNodeBsdfDiffuse")
    checker = nt.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 8.0
    checker.inputs["Color1"].default_value = (0.55, 0.55, 0.55, 1.0)
    checker.inputs["Color2"].default_value = (0.25, 0.25, 0.25, 1.0)
    nt.links.new(checker.outputs["Color"], bsdf.inputs["Color"])
    nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return mat


def render_material(graphs: list[Graph], out_png: str | Path, size: int = 256, samples: int = 16,
                    material: str | None = None) -> Path:
    """Render MATERIAL (default: the first material among GRAPHS, which may also carry the groups it
    uses) on a ball to a SIZE×SIZE PNG. BuildError when Blender rejects the graph."""
    bpy = require_bpy()
    import bmesh  # noqa: PLC0415 - part of bpy, only loadable with it

    mats = [g for g in graphs if g.kind == "material"]
    if material is not None:
        mats = [g for g in mats if g.name == material]
    if not mats:
        raise BpllmError("nothing to render: no material graph given" + (f" named {material!r}" if material else ""),
                         "give a material DSL file (a group alone has no surface to show)")
    if size < 8 or samples < 1:
        raise BpllmError(f"--size {size} / --samples {samples} too small", "use a size >= 8 and samples >= 1")
    out = Path(out_png)
    reset(bpy)
    try:
        problems = build_graphs(graphs)
        if problems:
            raise BuildError(problems)
        mat = bpy.data.materials[mats[0].name]
        scene = bpy.data.scenes.new("__bpllm_preview__") if not bpy.data.scenes else bpy.data.scenes[0]
        coll = scene.collection

        ball = bpy.data.objects.new("Ball", _sphere(bpy, bmesh, "Ball", 1.0))
        ball.location = (0, 0, 1.0)
        ball.data.materials.append(mat)
        coll.objects.link(ball)
        floor = bpy.data.objects.new("Floor", _plane(bpy, "Floor", 12.0))
        floor.data.materials.append(_floor_material(bpy))
        coll.objects.link(floor)

        cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        cam.location = (0.0, -5.2, 2.3)
        cam.rotation_euler = (1.34, 0.0, 0.0)
        cam.data.lens = 50
        coll.objects.link(cam)
        scene.camera = cam
        light = bpy.data.objects.new("Key", bpy.data.lights.new("Key", "AREA"))
        light.data.energy = 600
        light.data.size = 3.0
        light.location = (-3.0, -3.0, 5.0)
        light.rotation_euler = (0.75, 0.0, -0.75)
        coll.objects.link(light)

        world = bpy.data.worlds.new("__bpllm_world__")
        world.color = (0.3, 0.3, 0.32)
        nt = world.node_tree
        if nt is not None:
            bg = next((n for n in nt.nodes if n.bl_idname == "ShaderNodeBackground"), None)
            if bg is None:
                bg = nt.nodes.new("ShaderNodeBackground")
                wout = next((n for n in nt.nodes if n.bl_idname == "ShaderNodeOutputWorld"), None) \
                    or nt.nodes.new("ShaderNodeOutputWorld")
                nt.links.new(bg.outputs["Background"], wout.inputs["Surface"])
            bg.inputs["Color"].default_value = (0.3, 0.3, 0.32, 1.0)
            bg.inputs["Strength"].default_value = 0.8
        scene.world = world

        r = scene.render
        r.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_adaptive_sampling = False
        scene.cycles.use_denoising = False
        scene.cycles.max_bounces = 4
        r.resolution_x = r.resolution_y = size
        r.resolution_percentage = 100
        r.threads_mode = "FIXED"
        r.threads = max(1, min(4, os.cpu_count() or 1))
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGBA"
        r.film_transparent = False
        with contextlib.suppress(TypeError):  # Standard: base colours as given, so expected vs actual compare
            scene.view_settings.view_transform = "Standard"
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".png", dir=out.parent)
        os.close(fd)
        try:
            r.filepath = tmp
            with quiet_blender():
                bpy.ops.render.render(write_still=True, scene=scene.name)
            if not os.path.getsize(tmp):
                raise BpllmError(f"{out}: Blender wrote no image", "run with a smaller --size to check the set-up")
            os.replace(tmp, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    finally:
        reset(bpy)
    return out
