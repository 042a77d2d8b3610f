"""The stored Blender catalog against the live Blender (real bpy; skipped with a reason without it)."""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from dsl.packs.blender_material.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

SAMPLE = ("ShaderNodeMath", "ShaderNodeMix", "ShaderNodeBsdfPrincipled", "ShaderNodeTexImage",
          "ShaderNodeValToRGB", "ShaderNodeMixShader", "ShaderNodeTexVoronoi", "ShaderNodeVectorMath")


@pytest.fixture(scope="module")
def live():
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed (pip install 'bpllm[blender]' on Python 3.11): live catalog not checked")
    import derive_blender_catalog

    return derive_blender_catalog.derive()


def test_stored_catalog_loads_without_bpy():
    cat = load_catalog()
    assert cat.version and len(cat.nodes) >= 90
    assert cat.resolve_type("Principled") == "ShaderNodeBsdfPrincipled"
    assert cat.resolve_type("MixRGB") == "ShaderNodeMixRGB" and cat.nodes["ShaderNodeMixRGB"]["legacy"]
    assert cat.resolve_type("Musgrave") == "ShaderNodeTexNoise"
    assert not cat.can_link("SHADER", "VALUE") and cat.can_link("RGBA", "VALUE")


def test_stored_catalog_matches_live_blender_for_a_sample(live):
    stored = load_catalog().data
    assert stored["blender_version"] == live["blender_version"], "re-run tools/derive_blender_catalog.py"
    for t in SAMPLE:
        assert stored["nodes"][t] == json.loads(json.dumps(live["nodes"][t])), t


def test_catalog_covers_every_shader_node_type_bpy_reports(live):
    import bpy

    reported = {n for n in dir(bpy.types) if n.startswith("ShaderNode")}
    stored = set(load_catalog().nodes)
    assert reported - stored == set(live["skipped"])  # only abstract bases are skipped
    assert {"ShaderNode", "ShaderNodeTree"} <= set(live["skipped"])


def test_diff_reports_changes(live):
    import derive_blender_catalog

    old = copy.deepcopy(live)
    del old["nodes"]["ShaderNodeWireframe"]
    old["nodes"]["ShaderNodeMath"]["props"]["operation"]["items"].remove("SINE")
    lines = derive_blender_catalog.diff(old, live)
    assert "+ node ShaderNodeWireframe" in lines
    assert any(line.startswith("~ ShaderNodeMath.operation items: +['SINE']") for line in lines)
    assert derive_blender_catalog.diff(live, live)[-1] == "no changes"


def test_enum_items_blender_refuses_are_not_in_the_catalog():
    """RNA lists data_type ROTATION for the shader Mix node, but Blender refuses it there (a geometry-nodes
    type): the catalog keeps only settable items, records the rest, and the validator rejects them."""
    from dsl.packs import load

    prop = load_catalog().nodes["ShaderNodeMix"]["props"]["data_type"]
    assert "ROTATION" not in prop["items"] and prop["refused"] == ["ROTATION"]
    diags = load("blender-material").validate("MATERIAL: M\nNODE n1: MaterialOutput\nNODE n2: Mix [data_type=ROTATION]\n")
    assert [d.code for d in diags if d.severity == "error"] == ["unknown-enum"]


def test_every_stored_enum_item_is_settable_in_live_blender(live):
    stored = load_catalog().data["nodes"]
    for idname, node in live["nodes"].items():
        for name, prop in node["props"].items():
            if prop.get("type") == "ENUM":
                assert stored[idname]["props"][name]["items"] == prop["items"], (idname, name)
