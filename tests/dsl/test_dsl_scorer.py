"""Structural scorer: invariant to numbering/order/whitespace/name; sensitive to every real difference."""
from __future__ import annotations

import random
import re

import pytest

from dsl.scorer import line_score, score
from tests.conftest import load_exam_records, load_lessons
from tests.dsl.test_dsl_formatter import _renumber_and_shuffle

GOLD = """BLUEPRINT: BP_Health
PARENT: Actor

VAR Health: Float = 100.0

GRAPH: EventGraph

NODE n1: Event_AnyDamage
NODE n2: VariableGet [VarName=Health]
NODE n3: SubtractFloat
NODE n4: VariableSet [VarName=Health]
NODE n5: PrintString [InString="Hit"]
NODE n6: PrintString [InString="Ouch"]

EXEC n1.Then -> n4.Execute
EXEC n4.Then -> n5.Execute
EXEC n5.Then -> n6.Execute

DATA n2.Health -> n3.A [Float]
DATA n1.Damage -> n3.B [Float]
DATA n3.ReturnValue -> n4.Health [Float]
DATA 1.0 -> n5.Duration [Float]
"""


@pytest.mark.parametrize("seed", range(5))
def test_renumbered_reordered_renamed_respaced_is_perfect(seed):
    variant = _renumber_and_shuffle(GOLD, seed).replace("BP_Health", "BP_Other")
    variant = re.sub(r" -> ", "  ->\t", variant).replace("\n", "  \r\n")
    result = score(GOLD, variant)
    assert result.score == 1.0 and result.exact, result.buckets


@pytest.mark.parametrize(
    "change, bucket",
    [
        (('InString="Ouch"', 'InString="Ow"'), "wrong_params"),
        (("n4.Then -> n5.Execute", "n4.Then -> n6.Execute"), "missing_exec"),
        (("DATA n1.Damage -> n3.B [Float]", "DATA n1.Damage -> n3.A [Float]"), "missing_data"),
        (("[Float]\nDATA 1.0", "[Int]\nDATA 1.0"), "missing_data"),
        (("DATA 1.0 ->", "DATA 2.0 ->"), "wrong_params"),  # a literal into a pin is that pin's value
        (("NODE n3: SubtractFloat", "NODE n3: AddFloat"), "missing_nodes"),
        (("VAR Health: Float = 100.0", "VAR Health: Float = 50.0"), "missing_vars"),
        (("PARENT: Actor", "PARENT: Character"), "header"),
        (("EXEC n5.Then -> n6.Execute\n", ""), "missing_exec"),
        (("EXEC n5.Then -> n6.Execute\n", "EXEC n5.Then -> n6.Execute\nEXEC n6.Then -> n5.Execute\n"), "extra_exec"),
        (("NODE n6:", "NODE n6: Junk ]] NODE n7:"), "missing_nodes"),
    ],
)
def test_one_real_difference_costs(change, bucket):
    old, new = change
    assert old in GOLD
    actual = GOLD.replace(old, new, 1)
    result = score(GOLD, actual)
    assert result.score < 1.0, change
    assert result.buckets[bucket], (bucket, result.buckets)
    entry = result.buckets[bucket][0]
    assert entry["expected_line"] or entry["actual_line"]


def test_a_literal_wired_into_a_pin_equals_the_pin_param():
    """Unreal keeps both as the pin's default value: the two spellings are one graph."""
    as_param = GOLD.replace('[InString="Hit"]', '[InString="Hit", Duration=1.0]').replace("DATA 1.0 -> n5.Duration [Float]\n", "")
    assert as_param != GOLD
    assert score(GOLD, as_param).exact and score(as_param, GOLD).exact
    wrong = as_param.replace("Duration=1.0", "Duration=3.0")
    assert score(GOLD, wrong).buckets["wrong_params"]
    # both at once: the param is the node's value, the wire is one line too many
    both = GOLD.replace('[InString="Hit"]', '[InString="Hit", Duration=1.0]')
    result = score(as_param, both)
    assert not result.exact and result.buckets["extra_data"]


def test_entries_point_at_lines_in_both_texts():
    actual = _renumber_and_shuffle(GOLD, 3).replace('"Ouch"', '"Ow"')
    result = score(GOLD, actual)
    [entry] = result.buckets["wrong_params"]
    assert GOLD.splitlines()[entry["expected_line"] - 1].endswith('[InString="Ouch"]')
    assert actual.splitlines()[entry["actual_line"] - 1].endswith('[InString="Ow"]')


def test_invalid_actual_scores_what_parsed():
    broken = GOLD.replace("NODE n6: PrintString", "NODE n6 PrintString")
    result = score(GOLD, broken)
    assert 0.5 < result.score < 1.0
    assert result.actual_syntax_errors == 1 and result.buckets["format_errors"]
    assert score(GOLD, "").score == 0.0


def test_precision_recall():
    extra = GOLD + 'NODE n9: PrintString [InString="More"]\n'
    result = score(GOLD, extra)
    assert result.recall == 1.0 and result.precision < 1.0


def test_line_score_matches_reference_formula():
    assert line_score("A\nB\n C \nD", "C\nA\nX") == 0.5


def test_named_renumbered_records_score_one(corpus):
    wanted = {
        ("exam_lesson_03_20260227_111856.jsonl", "L03_10"),
        ("exam_lesson_10_20260228_232052.jsonl", "L10_06"),
        ("exam_lesson_04_20260228_211223.jsonl", "L04_10"),
    }
    found = 0
    for name, rec in load_exam_records(corpus):
        if (name, rec["prompt_id"]) in wanted:
            found += 1
            result = score(rec["expected_dsl"], rec["actual_dsl"])
            assert result.score == 1.0, (name, rec["prompt_id"], result.buckets)
            assert rec["comparison"]["score"] < 0.7  # the line score punished the numbering
    assert found == 3


def test_line_scores_reproduce_reference_numbers(corpus):
    records = load_exam_records(corpus)
    assert len(records) == 1135
    for name, rec in records:
        assert abs(score(rec["expected_dsl"], rec.get("actual_dsl") or "").line_score - rec["comparison"]["score"]) < 0.002


def test_gold_against_renumbered_gold(corpus):
    rng = random.Random(7)
    for lesson in load_lessons(corpus).values():
        for prompt in lesson["prompts"]:
            gold = prompt["expected_dsl"]
            assert score(gold, _renumber_and_shuffle(gold, rng.randrange(1000))).score == 1.0, prompt["id"]


def test_variable_named_pin_equals_generic_value_pin():
    text = (
        "BLUEPRINT: A\nPARENT: Actor\nVAR Health: Float\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\n"
        "NODE n2: VariableGet [VarName=Health]\nNODE n3: PrintString\nEXEC n1.Then -> n3.Execute\n"
        "DATA n2.Health -> n3.InString [String]\n"
    )
    assert score(text, text.replace("n2.Health", "n2.Value")).score == 1.0
    assert score(text, text.replace("n2.Health", "n2.Other")).score < 1.0
