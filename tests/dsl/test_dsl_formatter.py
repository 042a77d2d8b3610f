"""Canonical formatter: deterministic, idempotent, graph-preserving, renumbering-invariant."""
from __future__ import annotations

import random

import pytest

from dsl.formatter import FormatError, format_dsl
from dsl.scorer import score
from tests.conftest import load_lessons

SAMPLE = """BLUEPRINT: BP_X
PARENT: Actor
GRAPH: EventGraph
NODE n7: PrintString [InString="Done"]
NODE n3: Event_BeginPlay
NODE n9: Delay [Duration=2.50]
EXEC n9.Completed -> n7.Execute
EXEC n3.Then -> n9.Execute
"""


def _renumber_and_shuffle(text: str, seed: int) -> str:
    rng = random.Random(seed)
    lines = text.splitlines()
    head = [l for l in lines if not l.startswith(("NODE", "EXEC", "DATA"))]
    body = [l for l in lines if l.startswith(("NODE", "EXEC", "DATA"))]
    import re

    ids = sorted({m for l in body for m in re.findall(r"\bn\d+\b", l)}, key=lambda s: int(s[1:]))
    new = [f"n{i}" for i in rng.sample(range(100, 100 + len(ids)), len(ids))]
    mapping = dict(zip(ids, new))
    body = [re.sub(r"\bn\d+\b", lambda m: mapping[m.group(0)], l) for l in body]
    rng.shuffle(body)
    return "\n".join(head + body) + "\n"


def test_renumbers_in_flow_order_and_is_idempotent():
    out = format_dsl(SAMPLE)
    assert out.splitlines()[5:8] == [
        "NODE n1: Event_BeginPlay",
        "NODE n2: Delay [Duration=2.5]",
        'NODE n3: PrintString [InString="Done"]',
    ]
    assert "EXEC n1.Then -> n2.Execute" in out and "EXEC n2.Completed -> n3.Execute" in out
    assert format_dsl(out) == out


def test_refuses_text_with_syntax_errors():
    with pytest.raises(FormatError, match="line 4"):
        format_dsl(SAMPLE.replace("NODE n7:", "NODE n7"))


def test_corpus_gold_formats_idempotently_and_invariantly(corpus):
    count = 0
    for name, lesson in load_lessons(corpus).items():
        for prompt in lesson["prompts"]:
            gold = prompt["expected_dsl"]
            canon = format_dsl(gold)
            assert format_dsl(canon) == canon, prompt["id"]
            assert score(gold, canon).score == 1.0, prompt["id"]
            shuffled = _renumber_and_shuffle(gold, seed=count)
            assert format_dsl(shuffled) == canon, (name, prompt["id"])
            count += 1
    assert count >= 280


def test_pattern_pins_sort_numerically():
    body = "".join(f'NODE n{i + 3}: PrintString [InString="{i}"]\nEXEC n2.Then_{i} -> n{i + 3}.Execute\n' for i in range(12))
    text = "BLUEPRINT: A\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\nNODE n2: Sequence\n" + body
    text += "EXEC n1.Then -> n2.Execute\n"
    lines = [l for l in format_dsl(text).splitlines() if l.startswith("EXEC n2.")]
    assert [l.split()[1] for l in lines] == [f"n2.Then_{i}" for i in range(12)]
