"""export-t3d: structure against real UE5 exports, LinkedTo symmetry, layout, round trip DSL → T3D → DSL."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path


from dsl.parser import parse
from dsl.scorer import score
from dsl.t3d.exporter import export_coverage, export_t3d, export_t3d_result
from dsl.t3d.importer import import_t3d_text, map_objects
from dsl.t3d.mapping import default_mapping, object_short_name
from dsl.t3d.parser import Struct, T3DObject, parse_t3d
from tests.conftest import corpus_files

REPO = Path(__file__).resolve().parents[2]
EXPORTS = "raw-data/clipboard-exports/processed"
N_EXPORTS = 47  # the real UE5 clipboard exports of the reference corpus

SAMPLE = """BLUEPRINT: BP_Door
PARENT: Actor
VAR IsOpen: Bool
VAR Targets: Array<Actor>
GRAPH: EventGraph
NODE n1: Event_BeginPlay
NODE n2: VariableGet [VarName=Targets]
NODE n3: ForEachLoop
NODE n4: GetDistanceTo
NODE n5: LessThan [B=500.0]
NODE n6: Branch
NODE n7: Sequence
NODE n8: PrintString [InString="near"]
NODE n9: VariableSet [VarName=IsOpen]
NODE n10: Delay [Duration=1.5]
EXEC n1.Then -> n3.Execute
DATA n2.Value -> n3.Array [Array]
EXEC n3.LoopBody -> n6.Execute
DATA n3.ArrayElement -> n4.OtherActor [Actor]
DATA n4.ReturnValue -> n5.A [Float]
DATA n5.ReturnValue -> n6.Condition [Bool]
EXEC n6.True -> n7.Execute
EXEC n7.Then_0 -> n8.Execute
EXEC n7.Then_1 -> n9.Execute
DATA true -> n9.Value [Bool]
EXEC n3.Completed -> n10.Execute
"""


def _objects(text: str) -> dict[str, T3DObject]:
    doc = parse_t3d(text)
    assert doc.issues == [], doc.issues
    return {o.name: o for o in doc.objects}


def test_linked_to_is_written_on_both_ends():
    objs = _objects(export_t3d(SAMPLE, seed=1))
    pins = {(name, p.pin_id): p for name, o in objs.items() for p in o.pins}
    links = 0
    for name, obj in objs.items():
        for pin in obj.pins:
            for other, pid in pin.linked_to:
                back = pins[(other, pid)]
                assert (name, pin.pin_id) in back.linked_to
                assert back.direction != pin.direction
                links += 1
    assert links == 2 * 10  # 10 wires (the literal DATA becomes a pin default)


def test_guids_are_fresh_unique_and_seedable():
    a, b, c = export_t3d(SAMPLE, seed=3), export_t3d(SAMPLE, seed=3), export_t3d(SAMPLE)
    assert a == b and a != c
    ids = [p.pin_id for o in parse_t3d(a).objects for p in o.pins] + [str(o.props["NodeGuid"]) for o in parse_t3d(a).objects]
    assert len(ids) == len(set(ids)) and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_layout_runs_left_to_right_along_exec_flow():
    objs = _objects(export_t3d(SAMPLE, seed=1))
    by_type: dict[str, tuple[int, int]] = {}
    for o in objs.values():
        by_type.setdefault(o.short_class, (int(o.props["NodePosX"]), int(o.props["NodePosY"])))
    x = lambda cls: by_type[cls][0]  # noqa: E731
    assert x("K2Node_Event") < x("K2Node_MacroInstance") < x("K2Node_IfThenElse") < x("K2Node_ExecutionSequence")
    positions = [(int(o.props["NodePosX"]), int(o.props["NodePosY"])) for o in objs.values()]
    assert len(set(positions)) == len(positions), "two nodes on the same spot"
    assert all(v % 16 == 0 for p in positions for v in p)


def test_sample_round_trips_exactly():
    text = export_t3d(SAMPLE, seed=5)
    back = import_t3d_text(text, context=SAMPLE)
    assert score(SAMPLE, back.dsl_text).score == 1.0, back.dsl_text
    assert back.report.unsupported == {}


def test_coverage_of_catalog_types():
    cov = export_coverage()
    print(f"\nexport coverage: {cov['exported']}/{cov['catalog_types']} catalog node types; missing: {cov['missing']}")
    assert cov["catalog_types"] > 0 and cov["exported"] / cov["catalog_types"] >= 0.9


def test_roundtrip_every_lesson_gold(corpus: Path):
    """DSL → T3D → DSL is the same graph for every gold text whose every element exports.

    Clipboard text carries no PARENT or VAR declarations, so the import is given the gold
    text as context for those (what the lesson editor does when re-importing).
    """
    eligible = exact = 0
    skipped: Counter = Counter()
    failures = []
    for path in corpus_files(corpus, "lessons", "*.json", recursive=True):
        for prompt in json.loads(path.read_text(encoding="utf-8"))["prompts"]:
            gold = prompt["expected_dsl"]
            result = export_t3d_result(gold, seed=0)
            if result.diagnostics or result.report.dropped:
                skipped.update(result.report.dropped or {"syntax errors": 1})
                continue
            eligible += 1
            back = import_t3d_text(result.text, context=gold)
            s = score(gold, back.dsl_text)
            if s.score == 1.0:
                exact += 1
            else:
                failures.append((path.name, prompt["id"], round(s.score, 3)))
    print(f"\nround trip: {exact}/{eligible} gold texts exact; not eligible: {dict(skipped)}")
    assert eligible >= 280
    assert failures == []


# ------------------------------------------------------------------ against real exports


def _params_for(obj: T3DObject, dsl_type: str) -> str:
    ref = obj.props.get("VariableReference")
    if isinstance(ref, Struct):
        return f' [VarName="{ref.get("MemberName")}"]'
    if dsl_type == "Event_Custom" and obj.props.get("CustomFunctionName"):
        return f' [EventName="{obj.props["CustomFunctionName"]}"]'
    if dsl_type in ("CallFunction", "CallEvent"):
        ref = obj.props.get("FunctionReference")
        key = "FunctionName" if dsl_type == "CallFunction" else "EventName"
        return f' [{key}="{ref.get("MemberName")}"]'
    return ""


def _identity(obj: T3DObject) -> tuple:
    """What makes a node that node in Unreal: class plus its reference."""
    sc = obj.short_class
    if sc == "K2Node_PromotableOperator":
        return (obj.cls, str(obj.props.get("OperationName")))
    for key in ("FunctionReference", "EventReference"):
        ref = obj.props.get(key)
        if isinstance(ref, Struct):
            return (obj.cls, str(ref.get("MemberName")))
    ref = obj.props.get("MacroGraphReference")
    if isinstance(ref, Struct):
        return (obj.cls, str(ref.get("MacroGraph")))
    if obj.props.get("TargetType"):
        return (obj.cls, object_short_name(str(obj.props["TargetType"])))
    return (obj.cls,)


def test_exported_structure_matches_real_exports_node_for_node(corpus: Path):
    """For every node type found in the real exports: same class and reference, and every
    exported pin exists on the real node with the same name, direction and category."""
    real: dict[str, T3DObject] = {}
    for path in corpus_files(corpus, EXPORTS, "*.txt", expected=N_EXPORTS):
        for obj, dsl_type in map_objects(path.read_text(encoding="utf-8")):
            if dsl_type in ("CallFunction", "CallEvent"):
                continue  # user functions: pins are the function's own
            real.setdefault(dsl_type, obj)
    assert len(real) >= 25, sorted(real)
    mapping = default_mapping()
    checked_pins = 0
    mismatches = []
    for dsl_type, robj in sorted(real.items()):
        if mapping.entry(dsl_type) is None:
            continue
        text = f"BLUEPRINT: BP_T\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: {dsl_type}{_params_for(robj, dsl_type)}\n"
        (eobj,) = parse_t3d(export_t3d(text, seed=0)).objects
        if _identity(eobj) != _identity(robj):
            mismatches.append(f"{dsl_type}: {_identity(eobj)} != {_identity(robj)}")
            continue
        real_pins = {(p.name, p.direction): p for p in robj.pins}
        for pin in eobj.pins:
            rp = real_pins.get((pin.name, pin.direction))
            if rp is None:
                mismatches.append(f"{dsl_type}: exported pin {pin.name!r} ({pin.direction}) not on the real node")
                continue
            checked_pins += 1
            generic = {"wildcard", ""}
            if pin.category not in generic and rp.category not in generic and pin.category != rp.category:
                mismatches.append(f"{dsl_type}.{pin.name}: category {pin.category} != real {rp.category}")
    print(f"\nstructure: {len(real)} node types from real exports, {checked_pins} pins compared")
    assert checked_pins > 0 and mismatches == []


def test_real_exports_link_symmetry_matches_ours(corpus: Path):
    """Unreal writes each link on both ends; check the real files say so (our exporter does the same)."""
    asymmetric = 0
    total = 0
    for path in corpus_files(corpus, EXPORTS, "*.txt", expected=N_EXPORTS):
        if path.name == "Demo120.txt":
            continue  # two copies concatenated: names repeat
        doc = parse_t3d(path.read_text(encoding="utf-8"))
        pins = {(o.name, p.pin_id): p for o in doc.objects for p in o.pins}
        for o in doc.objects:
            for p in o.pins:
                for other, pid in p.linked_to:
                    back = pins.get((other, pid))
                    if back is None:
                        continue
                    total += 1
                    asymmetric += (o.name, p.pin_id) not in back.linked_to
    assert total > 500 and asymmetric == 0


def test_cli_export_and_coverage(tmp_path: Path):
    src = tmp_path / "door.dsl"
    src.write_text(SAMPLE, encoding="utf-8")
    out = tmp_path / "door.t3d"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "export-t3d", str(src), "--out", str(out), "--seed", "1"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == export_t3d(SAMPLE, seed=1)
    assert "exported 10/10 nodes" in proc.stderr
    cov = subprocess.run(
        [sys.executable, "-m", "engine.cli", "export-t3d", "--coverage", "--json"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert cov.returncode == 0 and json.loads(cov.stdout)["exported"] == export_coverage()["exported"]


def test_spawn_actor_is_two_unreal_nodes_and_one_dsl_node():
    text = (
        "BLUEPRINT: BP_Spawner\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\nNODE n2: GetActorLocation\n"
        "NODE n3: SpawnActor [ActorClass=BP_Enemy, SpawnRotation=(Pitch=0,Yaw=90,Roll=0)]\n"
        "EXEC n1.Then -> n3.Execute\nDATA n2.ReturnValue -> n3.SpawnLocation [Vector]\n"
    )
    objs = _objects(export_t3d(text, seed=2))
    classes = sorted(o.short_class for o in objs.values())
    assert classes == ["K2Node_CallFunction", "K2Node_CallFunction", "K2Node_Event", "K2Node_SpawnActorFromClass"]
    make = next(o for o in objs.values() if "MakeTransform" in str(o.props.get("FunctionReference", "")))
    spawn = next(o for o in objs.values() if o.short_class == "K2Node_SpawnActorFromClass")
    out = next(p for p in make.pins if p.name == "ReturnValue")
    assert out.linked_to == [(spawn.name, next(p.pin_id for p in spawn.pins if p.name == "SpawnTransform"))]
    back = import_t3d_text(export_t3d(text, seed=2), context=text)
    assert score(text, back.dsl_text).score == 1.0 and back.report.nodes_folded == 1


def test_unexportable_parts_are_reported():
    text = SAMPLE + "NODE n11: NoSuchNode\nEXEC n10.Completed -> n11.Execute\n"
    result = export_t3d_result(text, seed=0)
    assert result.report.dropped["node type has no Unreal mapping"] == 1
    assert result.report.dropped["wire to a node that was not exported"] == 1
    assert parse(text).errors == []


def test_real_exports_survive_export_and_reimport(corpus: Path):
    """import(real) → export → import is the same graph: the exporter writes back all the importer read."""
    known = {"DemoFPSUIThumbstick.txt": "a Vector2D literal on a promotable Divide has no DSL type"}
    failures = {}
    files = corpus_files(corpus, EXPORTS, "*.txt", expected=N_EXPORTS)
    for path in files:
        first = import_t3d_text(path.read_text(encoding="utf-8"), validate_output=False)
        text = export_t3d(first.dsl_text, seed=0)
        again = import_t3d_text(text, context=first.dsl_text, validate_output=False)
        s = score(first.dsl_text, again.dsl_text).score
        if s != 1.0:
            failures[path.name] = round(s, 3)
    print(f"\nreal exports re-exported: {len(files) - len(failures)}/{len(files)} identical; differing: {failures}")
    assert set(failures) <= set(known), failures
