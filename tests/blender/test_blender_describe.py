"""describe(): the instruction `dataset build` pairs with each material, from hand-built model graphs."""
from __future__ import annotations

import re

import pytest

from dsl.packs.blender_material.describe import color_name, describe, facts
from dsl.packs.blender_material.model import Graph, Link, Node, Socket


def rusty(ids: tuple[str, ...] = ("n1", "n2", "n3", "n4", "n5", "n6")) -> Graph:
    a, b, c, d, e, f = ids
    return Graph("material", "Rusty Metal", nodes=[
        Node(a, "ShaderNodeTexCoord"), Node(b, "ShaderNodeTexNoise", inputs={"Scale": 8.0}),
        Node(c, "ShaderNodeValToRGB"), Node(d, "ShaderNodeBsdfPrincipled", inputs={"Metallic": 1.0, "Roughness": 0.7}),
        Node(e, "ShaderNodeOutputMaterial"), Node(f, "ShaderNodeBump")],
        links=[Link(a, "Object", b, "Vector"), Link(b, "Fac", c, "Fac"), Link(c, "Color", d, "Base Color"),
               Link(b, "Fac", f, "Height"), Link(f, "Normal", d, "Normal"), Link(d, "BSDF", e, "Surface")])


def glass_mix() -> Graph:
    return Graph("material", "Frosted", nodes=[
        Node("n1", "ShaderNodeBsdfGlass", inputs={"Roughness": 0.2}),
        Node("n2", "ShaderNodeBsdfDiffuse", inputs={"Color": (0.02, 0.1, 0.6, 1.0)}),
        Node("n3", "ShaderNodeMixShader"), Node("n4", "ShaderNodeLayerWeight"),
        Node("n5", "ShaderNodeOutputMaterial"), Node("n6", "ShaderNodeTexImage", props={"image": "frost.png"}),
        Node("n7", "NodeReroute"), Node("n8", "NodeFrame")],
        links=[Link("n1", "BSDF", "n3", "Shader"), Link("n2", "BSDF", "n3", "Shader_001"),
               Link("n4", "Fresnel", "n7", "Input"), Link("n7", "Output", "n3", "Fac"),
               Link("n3", "Shader", "n5", "Surface"), Link("n6", "Color", "n2", "Color")])


def test_deterministic_for_a_seed():
    assert describe(rusty(), 3) == describe(rusty(), 3)
    assert describe(glass_mix(), 0) == describe(glass_mix(), 0)


def test_seeds_vary_the_phrasing_not_the_content():
    texts = {describe(rusty(), s) for s in range(12)}
    assert len(texts) >= 3
    for t in texts:
        assert "Rusty Metal" in t and "metallic" in t and "rough" in t and "noise texture" in t
        assert "colour ramp" in t and "Base Color" in t and "Normal" in t


def test_never_leaks_node_ids():
    odd = ("tex_coord_zz1", "qq_noise_77", "ramp_xx", "pbsdf_yy", "out_ww", "bump_vv")
    for s in range(6):
        text = describe(rusty(odd), s)
        assert not any(i in text for i in odd), text
        assert not re.search(r"\bn\d+\b", describe(rusty(), s))
        assert not re.search(r"\bn\d+\b", describe(glass_mix(), s))
    # the ids are not what the text is made of: renumbering changes nothing
    assert describe(rusty(odd), 5) == describe(rusty(), 5)


def test_mix_of_shaders_and_wiring_through_reroutes():
    f = facts(glass_mix())
    assert f.shader == "a mix of a glass BSDF and a diffuse BSDF"
    assert f.n_nodes == 6  # reroute and frame are layout
    assert any("layer weight sets the mix factor" in w for w in f.wiring)
    assert any("image texture drives Color of the diffuse BSDF" in w for w in f.wiring)
    assert f.textures == ["image texture 'frost.png'"]
    assert sum("Fac" in w for w in f.wiring) == 0  # told once, as the mix factor


@pytest.mark.parametrize("rgb,name", [
    ((0.0, 0.0, 0.0), "black"), ((1.0, 1.0, 1.0), "white"), ((0.2, 0.2, 0.2), "grey"),
    ((0.8, 0.01, 0.01), "red"), ((0.01, 0.5, 0.01), "green"), ((0.01, 0.02, 0.8), "blue"),
    ((0.9, 0.7, 0.01), "yellow"), ((0.1, 0.03, 0.005), "brown"),
])
def test_colour_names_from_linear_rgb(rgb, name):
    assert color_name(rgb) == name


def test_emission_and_transparency_words():
    g = Graph("material", "Lamp", nodes=[
        Node("a", "ShaderNodeBsdfPrincipled", inputs={"Emission Color": (1.0, 0.3, 0.0, 1.0),
                                                      "Emission Strength": 5.0, "Alpha": 0.4, "Roughness": 0.05}),
        Node("b", "ShaderNodeOutputMaterial")], links=[Link("a", "BSDF", "b", "Surface")])
    f = facts(g)
    assert "glowing orange (strength 5)" in f.looks and "partly transparent" in f.looks
    assert "mirror-like" in f.looks and "light grey" in f.looks  # the default base colour, 0.8 linear


def test_group_describes_its_interface():
    g = Graph("group", "Wood Grain", nodes=[Node("i", "NodeGroupInput"), Node("w", "ShaderNodeTexWave"),
                                            Node("o", "NodeGroupOutput")],
              links=[Link("i", "Scale", "w", "Scale"), Link("w", "Color", "o", "Color")],
              inputs=[Socket("Scale", "NodeSocketFloat", 5.0)], outputs=[Socket("Color", "NodeSocketColor")])
    text = describe(g, 0)
    assert "Wood Grain" in text and "node group" in text.lower()
    assert "inputs Scale; outputs Color" in text and "wave texture" in text


def test_one_source_for_many_inputs_and_many_textures_are_counted():
    nodes = [Node("g", "ShaderNodeGroup", props={"node_tree": "Bark"}), Node("p", "ShaderNodeBsdfPrincipled"),
             Node("o", "ShaderNodeOutputMaterial")]
    nodes += [Node(f"t{i}", "ShaderNodeTexImage", props={"image": f"img{i}.png"}) for i in range(5)]
    links = [Link("g", "Color", "p", "Base Color"), Link("g", "Normal", "p", "Normal"),
             Link("g", "Rough", "p", "Roughness"), Link("p", "BSDF", "o", "Surface")]
    f = facts(Graph("material", "Birch", nodes=nodes, links=links))
    assert f.wiring == ["node group 'Bark' drives Base Color, Normal and Roughness"]
    assert f.textures == ["5 image textures"]
