"""Grading and health rules on real scorer output (no model needed)."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from dsl.scorer import score
from dsl.validator import validate
from engine.ml import health
from engine.ml.grading import (band, classify_errors, confusions, contrast_nodes, draft_lesson, look_alikes,
                               next_draft_id, node_mastery, paired_node_changes, report, t95, weakest_nodes)

GOLD_A = """BLUEPRINT: BP_A
PARENT: Actor
GRAPH: EventGraph
NODE n1: Event_BeginPlay
NODE n2: Delay [Duration=2.0]
NODE n3: PrintString [InString="Hi"]
EXEC n1.Then -> n2.Execute
EXEC n2.Completed -> n3.Execute"""

GOLD_B = """BLUEPRINT: BP_B
PARENT: Actor
GRAPH: EventGraph
NODE n1: Event_Tick
NODE n2: DestroyActor
EXEC n1.Then -> n2.Execute"""

# renumbered but the same graph as GOLD_A; and a wrong answer for GOLD_B
ACTUAL_A = """BLUEPRINT: BP_Other
PARENT: Actor
GRAPH: EventGraph
NODE n1: Event_BeginPlay
NODE n3: Delay [Duration=2.0]
NODE n2: PrintString [InString="Hi"]
EXEC n1.Then -> n3.Execute
EXEC n3.Completed -> n2.Execute"""
ACTUAL_B = """BLUEPRINT: BP_B
PARENT: Actor
GRAPH: EventGraph
NODE n1: Event_Tick
NODE n2: PrintString [InString="x"]
EXEC n1.Then -> n2.Execute"""


def record(pid, gold, actual):
    sc = score(gold, actual)
    comp = {"score": round(sc.score * 100, 2), "exact": sc.exact}
    comp.update({b: [i["text"] for i in items] for b, items in sc.to_dict()["buckets"].items()})
    return {"lesson_id": "L", "prompt_id": pid, "expected_dsl": gold, "actual_dsl": actual, "comparison": comp,
            "validation": {"parses": True, "valid": True}}


@pytest.fixture
def records():
    return [record("p1", GOLD_A, ACTUAL_A), record("p2", GOLD_B, ACTUAL_B)]


def test_taxonomy_counts_scorer_buckets(records):
    tax = classify_errors(records)
    assert records[0]["comparison"]["score"] == 100.0
    assert tax["perfect"] == 1
    assert tax["by_bucket"].get("missing_nodes") == 1  # DestroyActor
    assert tax["by_bucket"].get("extra_nodes") == 1  # PrintString
    assert tax["prompts"]["missing_nodes"] == ["L:p2"]


def test_mastery_is_mean_score_over_prompts_using_the_node(records):
    table = {row["node"]: row for row in node_mastery(records)}
    assert table["Delay"]["score"] == 100.0 and table["Delay"]["band"] == "production"
    b = records[1]["comparison"]["score"]
    assert table["DestroyActor"]["score"] == pytest.approx(b)
    assert table["Event_Tick"]["n"] == 1
    # a node used by both prompts averages them
    assert "PrintString" in table and table["PrintString"]["n"] == 1
    assert band(85) == "mastered" and band(84.9) == "learning" and band(60) == "learning" and band(59.9) == "struggling"
    assert band(94.9) == "mastered" and band(95) == "product" and band(96.9) == "product" and band(97) == "production"


def test_deltas_against_previous_and_regression_alert(records):
    table = node_mastery(records, previous={"Delay": 80.0, "DestroyActor": 90.0})
    rows = {r["node"]: r for r in table}
    assert rows["Delay"]["delta"] == 20.0
    assert rows["DestroyActor"]["delta"] < -10
    assert rows["Event_Tick"]["delta"] is None
    alerts = health.mastery_alerts(table)
    assert [a["check"] for a in alerts] == ["node_regression", "forgetting"]  # 90 (mastered) -> below 85
    assert alerts[0]["severity"] == "critical" and "DestroyActor" in alerts[0]["message"]
    # with the previous version's records of the same prompts, the alert carries the evidence
    before = [dict(r, comparison=dict(r["comparison"], score=90.0)) for r in records]
    evidence = paired_node_changes(before, records)
    alerts = health.mastery_alerts(table, evidence)
    assert "1 of 1 shared prompts changed" not in alerts[0]["message"]  # one prompt: no interval to give
    before2 = before + [dict(before[1], prompt_id="p2b")]
    after2 = list(records) + [dict(records[1], prompt_id="p2b")]
    alerts = health.mastery_alerts(node_mastery(after2, previous={"DestroyActor": 90.0}), paired_node_changes(before2, after2))
    assert "2 of 2 shared prompts changed; paired 95 %" in alerts[0]["message"]


def test_exam_alerts_join_the_versions_health_report(records):
    """5.4 writes the training alerts before the exam; 7.3's node regression joins them in the same
    file (it used to reach only the events), and a re-run replaces its alert instead of adding one."""
    training = [{"check": "oscillation", "severity": "warning", "message": "m", "key": "oscillation"}]
    report = health.health_report_doc("v2", training)
    assert report["status"] == "warning"
    regression = health.mastery_alerts(node_mastery(records, previous={"DestroyActor": 90.0}))
    report = health.health_report_doc("v2", regression, report)
    assert [a["check"] for a in report["alerts"]] == ["oscillation", "node_regression", "forgetting"]
    assert report["status"] == "critical"
    again = health.health_report_doc("v2", regression, report)
    assert len(again["alerts"]) == 3


def test_weakest_nodes_and_drafted_lesson_validates(tmp_path, records):
    table = node_mastery(records)
    weak = weakest_nodes(table, k=2)
    assert weak[0] in ("DestroyActor", "Event_Tick")
    assert "Delay" not in weak
    lesson = draft_lesson(weak, "drill_01", n_prompts=6, seed=1, version="v1", mastery=table)
    assert lesson["status"] == "draft" and len(lesson["prompts"]) == 6
    for p in lesson["prompts"]:
        assert not [d for d in validate(p["expected_dsl"]) if d.severity == "error"]
        assert p["focus"] in weak
    (tmp_path / "lessons" / "drafts").mkdir(parents=True)
    (tmp_path / "lessons" / "drill_01.json").write_text(json.dumps(lesson))
    assert next_draft_id(tmp_path / "lessons", tmp_path / "lessons" / "drafts") == "drill_02"


def test_confusions_pair_what_was_missed_with_what_was_written_instead(records):
    pairs = confusions(records)
    # GOLD_B wanted DestroyActor, the answer wrote PrintString (both exec nodes); Event_Tick matched
    assert pairs == {("DestroyActor", "PrintString"): 1}
    # an event missed and a function written are not a swap
    swapped_kind = record("p3", GOLD_B, ACTUAL_B.replace("Event_Tick", "Event_BeginPlay").replace("PrintString [InString=\"x\"]", "DestroyActor"))
    assert confusions([swapped_kind]) == {("Event_Tick", "Event_BeginPlay"): 1}


def test_look_alikes_stay_within_the_node_kind():
    assert "ArrayRemoveIndex" in look_alikes("ArrayRemove")
    assert "Event_PreConstruct" in look_alikes("Event_Construct")
    for name in look_alikes("Event_Construct"):
        assert name.startswith("Event_")
    assert look_alikes("NoSuchNode") == []


def test_drafted_lesson_reviews_the_nodes_a_drill_would_crowd_out(records):
    pairs = confusions(records)
    # a single swap is noise by default: only the catalog's look-alikes are reviewed
    assert "PrintString" not in contrast_nodes(["DestroyActor", "ArrayRemove"], pairs)
    assert "PrintString" in contrast_nodes(["DestroyActor", "ArrayRemove"], pairs + pairs)
    contrast = contrast_nodes(["DestroyActor", "ArrayRemove"], pairs, min_swaps=1)
    # the exam's swap partner first, then the catalog's look-alike; never a focus node
    assert contrast[0] == "PrintString" and "ArrayRemoveIndex" in contrast
    assert not {"DestroyActor", "ArrayRemove"} & set(contrast)
    lesson = draft_lesson(["DestroyActor", "ArrayRemove"], "drill_02", n_prompts=10, seed=3, version="v1",
                          contrast=contrast, contrast_share=0.3)
    roles = [p["role"] for p in lesson["prompts"]]
    assert roles.count("contrast") == 3 and roles.count("focus") == 7
    assert {p["focus"] for p in lesson["prompts"] if p["role"] == "contrast"} <= set(contrast)
    assert {p["focus"] for p in lesson["prompts"] if p["role"] == "focus"} <= {"DestroyActor", "ArrayRemove"}
    assert lesson["drafted_from"] == "v1" and lesson["contrast_nodes"] == contrast
    for p in lesson["prompts"]:
        assert not [d for d in validate(p["expected_dsl"]) if d.severity == "error"]
    # share 0: a pure drill, as before
    plain = draft_lesson(["DestroyActor"], "drill_03", n_prompts=4, seed=3, contrast=contrast, contrast_share=0.0)
    assert {p["role"] for p in plain["prompts"]} == {"focus"} and plain["contrast_nodes"] == []


def test_report_summarises(records):
    table = node_mastery(records)
    rep = report(records, table, classify_errors(records), "v2", "v1")
    assert rep["prompts"] == 2 and rep["parse_pct"] == 100.0
    assert sum(rep["bands"].values()) == len(table)


def _train(losses):
    return [{"step": i, "loss": x} for i, x in enumerate(losses)]


def test_health_training_rules_fire_and_stay_quiet():
    quiet = health.training_alerts(_train([3.0, 2.5, 2.0, 1.6, 1.3, 1.1, 1.0, 0.9, 0.85]),
                                   [{"step": 9, "eval_loss": 1.0}])
    assert quiet == []
    memo = {a["check"] for a in health.training_alerts(_train([2, 1, .5, .1, .03, .02, .02]),
                                                       [{"eval_loss": 0.5}])}
    assert {"low_train_loss", "overfitting"} <= memo
    flat = {a["check"] for a in health.training_alerts(_train([2.0, 1.99, 1.98, 1.98, 1.98, 1.98, 1.98, 1.98, 1.98]), [])}
    assert {"plateau", "slow_convergence"} <= flat
    osc = {a["check"] for a in health.training_alerts(_train([2, 1, 2.2, 0.9, 2.1, 1.0, 2.3, 0.8, 2.0]), [])}
    assert "oscillation" in osc


def test_health_data_and_stagnation_rules():
    rows = [{"instruction": f"i{i}", "output": "o", "lesson_id": "L1" if i < 50 else None} for i in range(100)]
    checks = {a["check"] for a in health.data_alerts(rows)}
    assert checks == {"lesson_share"}
    dup = [{"instruction": "same", "output": "o"}] * 10 + [{"instruction": f"x{i}", "output": "o"} for i in range(90)]
    assert {a["check"] for a in health.data_alerts(dup)} == {"duplicates"}
    assert health.stagnation_alerts([("v1", 50.0), ("v2", 50.5), ("v3", 50.2)])[0]["check"] == "stagnation"
    assert health.stagnation_alerts([("v1", 50.0), ("v2", 52.0), ("v3", 56.0)]) == []


def _scored(pid: str, gold: str, value: float) -> dict:
    return {"lesson_id": "L", "prompt_id": pid, "expected_dsl": gold, "actual_dsl": "", "comparison": {"score": value}}


def test_paired_changes_tell_a_node_that_fell_from_one_prompt_that_flipped():
    # GOLD_A's nodes (Delay, PrintString, Event_BeginPlay): every prompt a little worse
    old = [_scored(f"a{i}", GOLD_A, 80.0) for i in range(4)]
    new = [_scored(f"a{i}", GOLD_A, v) for i, v in enumerate([70.0, 72.0, 69.0, 71.0])]
    # GOLD_B's nodes (Event_Tick, DestroyActor): three unchanged, one collapses
    old += [_scored(f"b{i}", GOLD_B, 80.0) for i in range(4)]
    new += [_scored(f"b{i}", GOLD_B, v) for i, v in enumerate([80.0, 80.0, 80.0, 40.0])]
    changes = paired_node_changes(old, new)
    delay, destroy = changes["Delay"], changes["DestroyActor"]
    assert delay["delta"] == -9.5 and delay["n"] == 4 and delay["flipped"] == 4
    assert delay["significant_fall"] and delay["high"] < 0
    assert destroy["delta"] == -10.0 and destroy["flipped"] == 1
    assert not destroy["significant_fall"] and destroy["low"] < 0 < destroy["high"]
    # only prompts examined by both versions count
    assert paired_node_changes(old, new[:2])["Delay"]["n"] == 2


def test_t95_table():
    assert t95(1) == 12.706 and t95(11) == 2.228 and t95(10_000) == 1.96 and t95(0) == float("inf")


def test_mastery_compare_command_reads_exam_files_and_only_earlier_drills_are_focus(tmp_path):
    """`bpllm mastery --compare` as a user runs it, on real exam files in a real workspace."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = lambda *a: subprocess.run([sys.executable, "-m", "engine.cli", *a], cwd=root, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    ws = tmp_path / "ws"
    assert run("init", str(ws)).returncode == 0
    for version, scores in (("v1", [80.0, 80.0, 80.0, 80.0]), ("v2", [70.0, 72.0, 69.0, 71.0])):
        exams = ws / "models" / version / "exams"
        exams.mkdir(parents=True)
        rows = [_scored(f"a{i}", GOLD_A, s) for i, s in enumerate(scores)]
        rows += [_scored(f"b{i}", GOLD_B, 50.0 + 10 * (version == "v2")) for i in range(3)]
        (exams / "exam_L.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    drill = {"lesson_id": "drill_01", "drafted_from": "v1", "focus_nodes": ["DestroyActor"],
             "contrast_nodes": ["Delay"], "prompts": [], "status": "accepted"}
    (ws / "lessons" / "drill_01.json").write_text(json.dumps(drill))
    from engine.workspace.history import History

    hist = History(ws / "history.db")  # drill_01 was integrated into the training data (step 8)
    hist.integrate_lesson("drill_01", "run1", 0, 0, "h")
    hist.close()
    later = dict(drill, lesson_id="drill_02", drafted_from="v2", focus_nodes=["PrintString"], contrast_nodes=[])
    (ws / "lessons" / "drafts").mkdir(exist_ok=True)
    (ws / "lessons" / "drafts" / "drill_02.json").write_text(json.dumps(later))

    res = run("mastery", "-w", str(ws), "--compare", "v1", "v2", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["prompts"] == 7 and out["focus_nodes"] == ["DestroyActor"]  # drill_02 came after v2
    group = out["groups"]["unmarked"]  # these records carry no seen/unseen marks
    assert group["focus"]["DestroyActor"]["new"] - group["focus"]["DestroyActor"]["old"] == 10.0
    assert out["contrast"] == ["Delay"]
    assert group["others"]["PrintString"]["delta"] == -9.5 and group["others"]["PrintString"]["significant_fall"]
    text = run("mastery", "-w", str(ws), "--compare", "v1", "v2").stdout
    assert "3 fell more than 5 points" in text and "of those, 3 with the prompts agreeing" in text


def test_a_look_alike_the_exam_also_swapped_is_reviewed_first():
    """ForEachLoop is both spelled like ForEachLoopWithBreak and swapped with it: the surest neighbour,
    reviewed before a node swapped more often that only shares the exam's confusion."""
    pairs = Counter({("ForEachLoopWithBreak", "ArrayClear"): 10, ("ArrayClear", "ForEachLoopWithBreak"): 8,
                     ("ForEachLoop", "ForEachLoopWithBreak"): 3})
    assert contrast_nodes(["ForEachLoopWithBreak"], pairs, per_node=2) == ["ForEachLoop", "ArrayClear"]
