"""Grading and health rules on real scorer output (no model needed)."""
from __future__ import annotations

import json

import pytest

from dsl.scorer import score
from dsl.validator import validate
from engine.ml import health
from engine.ml.grading import (band, classify_errors, draft_lesson, next_draft_id, node_mastery, report,
                               weakest_nodes)

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
    assert table["Delay"]["score"] == 100.0 and table["Delay"]["band"] == "mastered"
    b = records[1]["comparison"]["score"]
    assert table["DestroyActor"]["score"] == pytest.approx(b)
    assert table["Event_Tick"]["n"] == 1
    # a node used by both prompts averages them
    assert "PrintString" in table and table["PrintString"]["n"] == 1
    assert band(85) == "mastered" and band(84.9) == "learning" and band(60) == "learning" and band(59.9) == "struggling"


def test_deltas_against_previous_and_regression_alert(records):
    table = node_mastery(records, previous={"Delay": 80.0, "DestroyActor": 90.0})
    rows = {r["node"]: r for r in table}
    assert rows["Delay"]["delta"] == 20.0
    assert rows["DestroyActor"]["delta"] < -10
    assert rows["Event_Tick"]["delta"] is None
    alerts = health.mastery_alerts(table)
    assert [a["check"] for a in alerts] == ["node_regression"]
    assert alerts[0]["severity"] == "critical" and "DestroyActor" in alerts[0]["message"]


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
