"""The node catalog: data integrity, alias resolution, pin lookup and the type rules."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.catalog import DEFAULT_CATALOG_PATH, Catalog, default_catalog, load_catalog_file

RAW = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog_file(DEFAULT_CATALOG_PATH)


# --------------------------------------------------------------------------- data integrity

def test_size_and_shape(cat: Catalog):
    assert RAW["version"] == 1
    assert len(cat) >= 100
    for name, spec in cat.nodes.items():
        assert spec.description, name
        assert spec.category, name
        for p in spec.pins:
            assert p.direction in ("in", "out") and p.kind in ("exec", "data"), (name, p)
            if p.kind == "data":
                assert p.type and cat.known_type(p.type), (name, p)
            else:
                assert p.type is None and not p.required, (name, p)
        for p in spec.params:
            assert cat.known_type(p.type), (name, p)


def test_conventions_exec_pins(cat: Catalog):
    """Impure non-event nodes take Execute (or a flow-control macro input); events have no inputs."""
    for name, spec in cat.nodes.items():
        if spec.is_event:
            assert not [p for p in spec.pins if p.direction == "in"], name
            assert spec.pins_where("out", "exec"), name
        elif spec.pure:
            assert not spec.pins_where("in", "exec") and not spec.pins_where("out", "exec"), name
        else:
            assert spec.pins_where("in", "exec"), name
    assert [p.name for p in cat.get("PrintString").pins_where("in", "exec")] == ["Execute"]
    assert [p.name for p in cat.get("Delay").pins_where("out", "exec")] == ["Completed"]


def test_pin_names_unique_per_direction(cat: Catalog):
    for name, spec in cat.nodes.items():
        seen = [(p.name, p.direction) for p in spec.pins]
        assert len(seen) == len(set(seen)), name


def test_aliases_point_at_real_things(cat: Catalog):
    for alias, target in cat.node_aliases.items():
        assert target in cat.nodes and alias not in cat.nodes, alias
    for node, table in cat.pin_aliases.items():
        for alias, target in table.items():
            if node != "*":
                assert cat.nodes[node].pins_named(target), (node, alias, target)
    for node, table in cat.param_aliases.items():
        for alias, target in table.items():
            if node != "*":
                assert cat.nodes[node].param(target) is not None, (node, alias, target)
    for kind, table in cat.alias_warnings.items():
        aliases = {"pins": cat.pin_aliases, "params": cat.param_aliases, "nodes": {"*": cat.node_aliases}}[kind]
        for node, names in table.items():
            for name in names:
                assert name in aliases.get(node, {}), (kind, node, name)
    for alias, target in cat.type_aliases.items():
        assert target in cat.types, alias


def test_quirks_are_documented_decisions(cat: Catalog):
    assert len(cat.quirks) >= 8
    for q in cat.quirks:
        assert {"where", "what", "decision", "why"} <= set(q), q
        assert q["decision"] in ("alias", "warning", "type")
        if q["decision"] == "warning":
            from dsl.validator import CODES

            assert CODES[q["code"]][0] == "warning", q
    assert any("L01_04" in q["where"] for q in cat.quirks)


def test_unreal_mapping_covers_the_catalog():
    """Every node the Unreal importer maps exists here, so imported text validates."""
    ue_path = DEFAULT_CATALOG_PATH.with_name("catalog_ue.json")
    if not ue_path.exists():
        pytest.skip("dsl/packs/blueprint/catalog_ue.json not present")
    ue = json.loads(ue_path.read_text(encoding="utf-8"))["nodes"]
    cat = default_catalog()
    assert set(ue) <= set(cat.nodes)
    assert cat.get("Delay").ue  # merged into NodeSpec.ue
    assert cat.get("Delay").pin("Completed") is not None  # lookups survive the merge


# --------------------------------------------------------------------------- aliases (the list)

@pytest.mark.parametrize(
    "kind, node, written, canonical",
    [
        ("node", "", "Event_CustomEvent", "Event_Custom"),
        ("node", "", "GetVar", "VariableGet"),
        ("node", "", "SetVar", "VariableSet"),
        ("node", "", "GetVariable", "VariableGet"),
        ("param", "GetVar", "Variable", "VarName"),
        ("param", "SetTimerByFunctionName", "bLooping", "Looping"),
        ("param", "SetActorHiddenInGame", "bNewHidden", "NewHidden"),
        ("param", "MakeRotator", "Z", "Yaw"),
        ("pin", "MakeRotator", "X", "Roll"),
        ("pin", "IsValid", "Object", "Input"),
        ("pin", "CastToPawn", "AsCharacter", "AsPawn"),
        ("type", "", "Integer", "Int"),
    ],
)
def test_alias_resolution(cat: Catalog, kind: str, node: str, written: str, canonical: str):
    resolve = {
        "node": lambda: cat.canonical_node_type(written),
        "param": lambda: cat.canonical_param(node, written),
        "pin": lambda: cat.canonical_pin(node, written),
        "type": lambda: cat.canonical_type(written),
    }[kind]
    assert resolve() == canonical


def test_unaliased_names_pass_through(cat: Catalog):
    assert cat.canonical_node_type("Branch") == "Branch"
    assert cat.canonical_param("Delay", "Duration") == "Duration"
    assert cat.canonical_pin("Delay", "Completed") == "Completed"
    assert cat.canonical_param("Delay", "X") == "X"  # MakeRotator's X alias does not leak


def test_alias_warning_lookup(cat: Catalog):
    assert "AsPawn" in cat.alias_warning("pins", "CastToPawn", "AsCharacter")
    assert cat.alias_warning("pins", "MakeRotator", "X") is None


# --------------------------------------------------------------------------- lookups

def test_pattern_pins(cat: Catalog):
    seq = cat.get("Sequence")
    assert seq.pin("Then_0").kind == "exec"
    assert seq.pin("Then_17", "out").name == "Then_17"
    assert seq.pin("Then_x") is None
    assert cat.get("SwitchOnString").pin("Case_Attack", "out") is not None
    assert cat.get("SwitchOnInt").pin("Default").direction == "out"
    assert cat.get("Sequence").pin_names("out", "exec") == ["Then_0, Then_1, ..."]


def test_same_name_in_and_out(cat: Catalog):
    vs = cat.get("VariableSet")
    assert {p.direction for p in vs.pins_named("Value")} == {"in", "out"}
    assert vs.pin("Value", "out").direction == "out"
    assert cat.pin("SetVar", "Value", "in").direction == "in"


def test_params_include_data_inputs(cat: Catalog):
    delay = cat.get("Delay")
    assert delay.param("Duration").type == "Float"  # a data input doubles as a param (pin default)
    assert delay.param("Completed") is None  # exec pins do not
    assert cat.get("VariableGet").param("VarName").required
    assert cat.get("Event_Custom").dynamic_pins and cat.get("CallFunction").dynamic_pins
    assert cat.get("Branch").pin("Condition").required


# --------------------------------------------------------------------------- type rules (docs/catalog.md table)

@pytest.mark.parametrize(
    "src, dst, ok",
    [
        ("Float", "Float", True),
        ("Actor", "Object", True),  # subtype into parent
        ("Widget", "Object", True),
        ("Object", "Actor", False),  # downcast needs a Cast node
        ("Widget", "Actor", False),
        ("Int", "Float", True),  # Unreal autocasts
        ("Float", "Int", False),
        ("Vector", "String", True),
        ("Actor", "String", True),
        ("Vector", "Transform", True),
        ("Bool", "Vector", False),
        ("String", "Float", False),
        ("Vector", "Numeric", True),
        ("Numeric", "Float", True),
        ("Bool", "Numeric", True),  # Bool -> Int/Float conversions exist
        ("String", "Numeric", False),
        ("Array", "Array", True),
        ("Float", "Array", False),
        ("Anything", "Float", True),  # unknown names are reported elsewhere, not judged
        ("Float", "Wildcard", True),
        ("Integer", "Float", True),  # aliases resolved
    ],
)
def test_assignable(cat: Catalog, src: str, dst: str, ok: bool):
    assert cat.assignable(src, dst) is ok


@pytest.mark.parametrize(
    "type_, kind, ok",
    [
        ("Bool", "bool", True), ("Bool", "int", False), ("Int", "int", True), ("Int", "float", False),
        ("Float", "int", True), ("String", "ident", False), ("Name", "ident", True), ("Name", "string", True),
        ("Actor", "none", True), ("Class", "ident", True), ("Vector", "struct", True), ("Vector", "int", False),
        ("Array", "none", True), ("TimerHandle", "struct", True), ("Wildcard", "ident", True), ("Delegate", "none", False),
    ],
)
def test_literals(cat: Catalog, type_: str, kind: str, ok: bool):
    assert cat.accepts_literal(type_, kind) is ok


def test_base_type(cat: Catalog):
    assert cat.base_type("Array<Vector>") == "Array"
    assert cat.base_type("Integer") == "Int"


def test_empty_catalog_is_usable():
    c = Catalog({})
    assert len(c) == 0 and c.get("Branch") is None and c.pin("Branch", "Then") is None
    assert c.assignable("Float", "Bool")  # nothing known: nothing judged


def test_loads_from_a_file(tmp_path: Path):
    path = tmp_path / "cat.json"
    path.write_text(json.dumps({"nodes": {"Foo": {"pins": [{"name": "Execute", "dir": "in", "kind": "exec"}]}}}))
    c = load_catalog_file(path)
    assert c.source == str(path) and c.get("Foo").pin("Execute").kind == "exec"
