"""The Blender material language: parsing, diagnostics, canonical text, round trip, scorer, pack."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import packs
from dsl.packs.blender_material import PACK, model
from dsl.packs.blender_material.catalog import dsl_name, load_catalog
from dsl.packs.blender_material.text import analyse, from_text, grammar_text, to_text

WOOD = """\
MATERIAL: "Wood Floor.001"
NODE n1: TextureCoordinate
NODE n2: NoiseTexture [Scale=12.5, Detail=4]
NODE n3: ColorRamp [interpolation=EASE, stops=[(0, (0.1, 0.05, 0.02, 1)), (1, (0.6, 0.4, 0.2, 1))]]
NODE n4: Mix [data_type=RGBA, blend_type=MULTIPLY, Factor=0.3, B=(1, 1, 1, 1)]
NODE n5: PrincipledBSDF [Roughness=0.4]
NODE n6: MixShader
NODE n7: TransparentBSDF
NODE n8: MaterialOutput
LINK n1.Object -> n2.Vector
LINK n2.Factor -> n3.Factor
LINK n3.Color -> n4.A
LINK n4.Result -> n5.Base_Color
LINK n5.BSDF -> n6.Shader
LINK n7.BSDF -> n6.Shader_001
LINK n6.Shader -> n8.Surface
"""

GROUP = """\
GROUP: "Bark Shader"
INPUT "Base Color": Color = (0.3, 0.2, 0.1, 1)
INPUT Scale: Float = 5 [min=0, max=100]
OUTPUT Shader: Shader
NODE n1: GroupInput
NODE n2: NoiseTexture
NODE n3: DiffuseBSDF
NODE n4: GroupOutput
LINK n1.Base_Color -> n3.Color
LINK n1.Scale -> n2.Scale
LINK n3.BSDF -> n4.Shader
"""


def codes(text: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.column) for d in analyse(text).diagnostics]


# -- the language ------------------------------------------------------------------------------

def test_example_parses_to_blender_names():
    graph, diags = from_text(WOOD)
    assert diags == []
    assert graph is not None and graph.kind == "material" and graph.name == "Wood Floor.001"
    mix = graph.node("n4")
    assert mix.bl_idname == "ShaderNodeMix"
    assert mix.props == {"data_type": "RGBA", "blend_type": "MULTIPLY"}
    # data_type=RGBA picks the colour variants of the same-named sockets
    assert mix.inputs == {"Factor_Float": 0.3, "B_Color": (1.0, 1.0, 1.0, 1.0)}
    links = {(k.src, k.src_socket, k.dst, k.dst_socket) for k in graph.links}
    assert ("n3", "Color", "n4", "A_Color") in links
    assert ("n4", "Result_Color", "n5", "Base Color") in links
    assert ("n7", "BSDF", "n6", "Shader_001") in links  # duplicate names go by identifier
    ramp = graph.node("n3").props
    assert ramp["color_ramp.interpolation"] == "EASE"
    assert ramp["color_ramp.elements"][1] == (1.0, (0.6, 0.4, 0.2, 1.0))


def test_group_interface_and_sockets_by_name():
    graph, diags = from_text(GROUP)
    assert diags == [], diags
    assert graph.kind == "group" and graph.name == "Bark Shader"
    assert [(s.name, s.socket_type) for s in graph.inputs] == [("Base Color", "NodeSocketColor"),
                                                               ("Scale", "NodeSocketFloat")]
    assert graph.inputs[1].default == 5.0 and graph.inputs[1].max_value == 100.0
    assert model.Link("n1", "Base Color", "n3", "Color") in graph.links  # interface names, spaces kept
    assert to_text(graph) == GROUP


def test_group_call_keeps_socket_names_and_records_the_group():
    text = ('MATERIAL: M\nNODE n1: Group [node_tree="Bark Shader", Scale=3]\nNODE n2: MaterialOutput\n'
            "LINK n1.Shader -> n2.Surface\n")
    graph, diags = from_text(text)
    assert diags == []
    assert graph.groups_used == ["Bark Shader"]
    assert graph.node("n1").inputs == {"Scale": 3}
    assert to_text(graph) == text


def test_aliases_and_legacy_names_resolve():
    text = "MATERIAL: M\nNODE n1: Principled\nNODE n2: ShaderNodeOutputMaterial\nNODE n3: Musgrave\nLINK n1.BSDF -> n2.Surface\n"
    graph, diags = from_text(text)
    assert diags == []
    assert [n.bl_idname for n in graph.nodes] == ["ShaderNodeBsdfPrincipled", "ShaderNodeOutputMaterial",
                                                  "ShaderNodeTexNoise"]
    assert to_text(graph).splitlines()[1:4] == ["NODE n1: PrincipledBSDF", "NODE n2: MaterialOutput",
                                                "NODE n3: NoiseTexture"]


def test_legacy_type_is_a_warning():
    text = "MATERIAL: M\nNODE n1: MixRGB\nNODE n2: MaterialOutput\n"
    diags = analyse(text).diagnostics
    assert [(d.code, d.severity, d.line) for d in diags] == [("legacy-node", "warning", 2)]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("NODE n1: Principld\nNODE n9: MaterialOutput", [("unknown-node", 2, 10)]),
        ("NODE n1: Math [operation=ADDD]\nNODE n9: MaterialOutput", [("unknown-enum", 2, 26)]),
        ("NODE n1: Math [Valu=1]\nNODE n9: MaterialOutput", [("unknown-param", 2, 16)]),
        ("NODE n1: Emission\nNODE n9: MaterialOutput\nLINK n1.Emision -> n9.Surface", [("unknown-socket", 4, 9)]),
        ("NODE n1: Emission\nNODE n2: Math\nNODE n9: MaterialOutput\nLINK n1.Emission -> n2.Value",
         [("link-type", 5, 1)]),
        ("NODE n1: Math\nNODE n2: Math\nNODE n9: MaterialOutput\nLINK n1.Value -> n2.Value\n"
         "LINK n2.Value -> n1.Value", [("cycle", 6, 1)]),
        ("NODE n1: Emission", [("missing-output", 1, 1)]),
        ("NODE n1: Emission\nNODE n1: Emission\nNODE n9: MaterialOutput", [("duplicate-id", 3, 6)]),
        ("NODE n1: Mix [A_Color=(1, 0, 0, 1)]\nNODE n9: MaterialOutput", [("unavailable-socket", 2, 15)]),
        ("NODE n1: Math [operation=SINE]\nNODE n2: Value\nNODE n9: MaterialOutput\nLINK n2.Value -> n1.Value_001",
         [("unavailable-socket", 5, 21)]),
        ("NODE n1: Math [Value=(1, 2)]\nNODE n9: MaterialOutput", [("bad-value", 2, 22)]),
        ("NODE n1 Math\nNODE n9: MaterialOutput", [("syntax", 2, 9)]),
        ("NODE n1: Emission\nNODE n9: MaterialOutput\nLINK n1.Emission -> n7.Surface", [("unknown-id", 4, 21)]),
        ("NODE n1: Emission\nNODE n2: Emission\nNODE n9: MaterialOutput\nLINK n1.Emission -> n9.Surface\n"
         "LINK n2.Emission -> n9.Surface", [("input-linked-twice", 6, 21)]),
        ("NODE n1: Emission\nNODE n9: MaterialOutput\nLINK n9.Surface -> n1.Color", [("wrong-direction", 4, 9)]),
    ],
)
def test_each_diagnostic_is_positioned(body, expected):
    assert codes("MATERIAL: M\n" + body + "\n") == expected


def test_a_bad_line_does_not_hide_the_rest():
    text = "MATERIAL: M\nNODE n1 Emission\nNODE n2: Nope\nNODE n9: MaterialOutput\n"
    assert [c for c, _, _ in codes(text)] == ["syntax", "unknown-node"]
    graph, diags = from_text(text)
    assert graph is None and len(diags) == 2


def test_missing_header_and_group_io_in_material():
    assert [c for c, _, _ in codes("NODE n1: MaterialOutput\n")] == ["missing-header"]
    assert "group-io-in-material" in [c for c, _, _ in codes("MATERIAL: M\nNODE n1: GroupInput\nNODE n2: MaterialOutput\n")]


def test_messages_say_what_to_do():
    (d,) = analyse("MATERIAL: M\nNODE n1: Emission\nNODE n2: Math\nNODE n3: MaterialOutput\n"
                   "LINK n1.Emission -> n2.Value\n").diagnostics
    assert "shader output into a value input" in d.message
    (d,) = analyse("MATERIAL: M\nNODE n1: Mix [A_Color=(1, 0, 0, 1)]\nNODE n3: MaterialOutput\n").diagnostics
    assert "data_type=FLOAT" in d.message


# -- canonical text ----------------------------------------------------------------------------

def test_format_is_canonical_and_idempotent():
    messy = ('MATERIAL:   "Wood Floor.001"\n\n# a comment\nNODE n2: Noise [Detail=4.0, Scale=12.50]\nNODE n1: TexCoord\n'
             "NODE n3: MaterialOutput\nLINK n2.Fac -> n3.Displacement\nLINK n1.Object -> n2.Vector\n")
    once = PACK.format(messy)
    assert once == ('MATERIAL: "Wood Floor.001"\nNODE n1: TextureCoordinate\nNODE n2: NoiseTexture [Scale=12.5, Detail=4]\n'
                    "NODE n3: MaterialOutput\nLINK n1.Object -> n2.Vector\nLINK n2.Factor -> n3.Displacement\n")
    assert PACK.format(once) == once


def test_format_refuses_a_text_that_does_not_parse():
    from dsl.formatter import FormatError

    with pytest.raises(FormatError):
        PACK.format("MATERIAL: M\nNODE n1 Emission\n")


_CAT = load_catalog()
_TYPES = sorted(
    t for t, n in _CAT.nodes.items()
    if not n.get("is_group") and not n.get("legacy") and not n.get("group_only") and t != "ShaderNodeScript"
)
_NUM = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, -1.5, 12.5, 0.001])


@st.composite
def graphs(draw):
    """Random valid material graphs from the catalog: enum settings, input values on available
    unlinked sockets, links from earlier to later nodes between available sockets Blender accepts."""
    count = draw(st.integers(1, 7))
    nodes = []
    for i in range(count):
        bl = draw(st.sampled_from(_TYPES))
        spec = _CAT.spec(bl)
        node = model.Node(id=f"n{i + 1}", bl_idname=bl)
        for name, prop in spec.props.items():
            if prop["type"] == "ENUM" and not prop.get("flag") and prop["items"] and draw(st.booleans()):
                node.props[name] = draw(st.sampled_from(prop["items"]))
            elif prop["type"] == "BOOLEAN" and draw(st.booleans()):
                node.props[name] = draw(st.booleans())
        nodes.append(node)
    out = model.Node(id=f"n{count + 1}", bl_idname="ShaderNodeOutputMaterial")
    nodes.append(out)
    links: list[model.Link] = []
    linked: set[tuple[str, str]] = set()
    for _ in range(draw(st.integers(0, 8))):
        a, b = sorted(draw(st.lists(st.integers(0, len(nodes) - 1), min_size=2, max_size=2, unique=True)))
        src, dst = nodes[a], nodes[b]
        ss, ds = _CAT.spec(src.bl_idname), _CAT.spec(dst.bl_idname)
        outs = [s for s in ss.outputs if ss.available("outputs", s["identifier"], src.props)]
        ins = [s for s in ds.inputs if ds.available("inputs", s["identifier"], dst.props)
               and (dst.id, s["identifier"]) not in linked]
        if not outs or not ins:
            continue
        o, i = draw(st.sampled_from(outs)), draw(st.sampled_from(ins))
        if not _CAT.can_link(o["type"], i["type"]):
            continue
        linked.add((dst.id, i["identifier"]))
        links.append(model.Link(src.id, o["identifier"], dst.id, i["identifier"]))
    for node in nodes:
        spec = _CAT.spec(node.bl_idname)
        for s in spec.inputs:
            if s["type"] == "VALUE" and (node.id, s["identifier"]) not in linked and \
                    spec.available("inputs", s["identifier"], node.props) and draw(st.booleans()):
                node.inputs[s["identifier"]] = draw(_NUM)
            elif s["type"] == "RGBA" and (node.id, s["identifier"]) not in linked and \
                    spec.available("inputs", s["identifier"], node.props) and draw(st.booleans()):
                node.inputs[s["identifier"]] = (draw(_NUM), 0.5, 0.0, 1.0)
    name = draw(st.text(alphabet='ab .-_"\\1', min_size=1, max_size=10))
    return model.Graph(kind="material", name=name, nodes=nodes, links=links)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_round_trip_of_generated_graphs(graph):
    text = to_text(graph)
    back, diags = from_text(text)
    assert back is not None, (text, [str(d) for d in diags])
    assert [d for d in diags if d.severity == "error"] == []
    assert back.name == graph.name
    assert [(n.id, n.bl_idname, n.props, n.inputs) for n in back.nodes] == \
        [(n.id, n.bl_idname, n.props, n.inputs) for n in graph.nodes]
    assert set(back.links) == set(graph.links)
    assert to_text(back) == text
    assert PACK.format(text) == text


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="MATERIALNODEnk0123:=[](),.->_ \n\"#xyzSVFa", max_size=120))
def test_any_text_validates_without_raising(text):
    diags = PACK.validate(text)
    assert all(d.line >= 1 and d.column >= 1 for d in diags)


# -- grammar -----------------------------------------------------------------------------------

def test_grammar_is_accepted_by_llguidance():
    llguidance = pytest.importorskip("llguidance", reason="llguidance is not installed")
    grammar = llguidance.grammar_from("lark", grammar_text())
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    assert not is_error, messages
    # and it rejects what is not Lark llguidance understands (the check can fail)
    bad = llguidance.grammar_from("lark", grammar_text().replace("start:", "start: %import"))
    assert llguidance.LLMatcher.validate_grammar_with_warnings(bad)[0]


def test_full_grammar_accepts_the_examples():
    from lark import Lark

    parser = Lark(grammar_text(), parser="lalr", start="start")
    for text in (WOOD, GROUP, PACK.format(WOOD)):
        parser.parse(text)


# -- scorer ------------------------------------------------------------------------------------

def test_score_ignores_numbering_and_order():
    renumbered = WOOD
    for old, new in (("n1", "n9"), ("n2", "n1"), ("n9", "n2")):
        renumbered = re.sub(rf"\b{old}\b", new, renumbered)
    result = PACK.score(WOOD, renumbered)
    assert result.score == 1.0 and result.exact


def test_score_counts_params_and_links():
    worse = WOOD.replace("Roughness=0.4", "Roughness=0.5").replace("LINK n7.BSDF -> n6.Shader_001\n", "")
    result = PACK.score(WOOD, worse)
    assert 0.8 < result.score < 1.0
    assert [b["param"] for b in result.buckets["wrong_params"]] == ["in:Roughness"]
    assert [b["text"] for b in result.buckets["missing_data"]] == ["LINK n7.BSDF -> n6.Shader_001"]
    assert result.node_types["ShaderNodeBsdfPrincipled"] == 1.0


def test_score_of_a_missing_node_shows_in_node_type_shares():
    fewer = WOOD.replace("NODE n7: TransparentBSDF\n", "").replace("LINK n7.BSDF -> n6.Shader_001\n", "")
    result = PACK.score(WOOD, fewer)
    assert result.node_types["ShaderNodeBsdfTransparent"] == 0.0
    assert result.buckets["missing_nodes"][0]["type"] == "ShaderNodeBsdfTransparent"


def test_score_of_garbage_is_zero_and_does_not_raise():
    result = PACK.score(WOOD, "garbage\nmore garbage")
    assert result.score == 0.0 and result.buckets["format_errors"]


# -- pack --------------------------------------------------------------------------------------

def test_pack_is_registered_and_detects_its_header():
    assert packs.load("blender-material") is PACK
    assert PACK.detect(WOOD) and PACK.detect(GROUP)
    assert not PACK.detect("BLUEPRINT: BP_X\n")
    assert PACK.node_types(WOOD)[:3] == ["TextureCoordinate", "NoiseTexture", "ColorRamp"]


def test_vocabulary_and_highlights():
    vocab = set(PACK.vocabulary())
    assert {"MATERIAL", "LINK", "PrincipledBSDF", "Base_Color", "MULTIPLY", "blend_type", "Shader_001",
            "stops"} <= vocab
    for h in PACK.highlights:
        re.compile(h.pattern)
    header = next(h for h in PACK.highlights if h.token == "header")
    assert re.search(header.pattern, "GROUP: X", re.M).group(header.group) == "GROUP"
    assert "MaterialOutput" in PACK.system_prompt()


def test_dsl_name_rule():
    assert dsl_name("Base Color") == "Base_Color"
    assert dsl_name("IOR Level") == "IOR_Level"
    assert dsl_name("3D") == "_3D"
    spec = _CAT.spec("ShaderNodeMixShader")
    assert spec.dsl_names["inputs"] == {"Fac": "Factor", "Shader": "Shader", "Shader_001": "Shader_001"}
    mix = _CAT.spec("ShaderNodeMix")
    assert {mix.dsl_names["inputs"][i] for i in ("A_Float", "A_Vector", "A_Color")} == {"A"}


def test_languages_reports_the_material_catalog_and_commands():
    """`bpllm languages --json` counts the catalog's node types and lists the commands the pack brings."""
    import json
    import subprocess
    import sys

    from dsl.packs.blender_material.catalog import load_catalog

    r = subprocess.run([sys.executable, "-m", "engine.cli", "languages", "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    row = {x["name"]: x for x in json.loads(r.stdout)["languages"]}["blender-material"]
    assert row["provides"]["catalog_node_types"] == len(load_catalog().nodes) > 90
    assert {"import-blend", "export-blend", "render-material", "render-exam"} <= set(row["provides"]["commands"])
    assert row["provides"]["importers"] == ["import-blend"]
