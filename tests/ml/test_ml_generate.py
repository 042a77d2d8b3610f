"""Batched, bounded, grammar-constrained generation on a real (small) model."""
from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llguidance")

from dsl.parser import parse  # noqa: E402
from engine.ml.base import load_base, render_example  # noqa: E402
from engine.ml.generate import (GenConfig, GrammarConstraint, apply_bitmask, cut_last_line,  # noqa: E402
                                generate)
from engine.ml.testing import test_base  # noqa: E402
from engine.dataset.synthetic import generate as synth  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_tok(tmp_path_factory):
    base = test_base(tmp_path_factory.getbasetemp() / "ml-test-base")
    model, tok = load_base(base)
    model.eval()
    return model, tok


@pytest.fixture(scope="module")
def prompts(model_tok):
    _, tok = model_tok
    return [render_example(tok, "Write Blueprint DSL.", r["instruction"]) for r in synth(6, seed=99)]


@pytest.fixture(scope="module")
def constraint(model_tok):
    model, tok = model_tok
    return GrammarConstraint(tok, model.config.vocab_size)


def test_constrained_outputs_always_parse(model_tok, prompts, constraint):
    model, tok = model_tok
    results = generate(model, tok, prompts, GenConfig(max_new_tokens=96, batch_size=3), constraint)
    assert [r.index for r in results] == list(range(len(prompts)))
    for r in results:
        assert r.constrained
        assert parse(r.text).errors == [], (r.stop_reason, r.text)
        assert r.n_tokens <= 96


def test_batched_equals_one_by_one(model_tok, prompts, constraint):
    """Left padding + KV cache + dropping finished rows must not change greedy answers."""
    model, tok = model_tok
    cfg = dict(max_new_tokens=48, constrained=True)
    batched = generate(model, tok, prompts, GenConfig(batch_size=len(prompts), **cfg), constraint)
    single = [generate(model, tok, [p], GenConfig(batch_size=1, **cfg), constraint)[0] for p in prompts]
    assert [r.raw_text for r in batched] == [r.raw_text for r in single]


def test_time_budget_really_bounds_work(model_tok, prompts):
    model, tok = model_tok
    t0 = time.perf_counter()
    res = generate(model, tok, prompts[:2], GenConfig(max_new_tokens=100_000, batch_size=2, constrained=False,
                                                       time_budget_s=0.5, max_repeat_lines=10**6))
    elapsed = time.perf_counter() - t0
    assert {r.stop_reason for r in res} <= {"time_budget", "eos", "repetition"}
    assert elapsed < 30  # 100k tokens would take minutes; the budget stopped it
    for r in res:
        if r.stop_reason == "time_budget":
            assert r.text == cut_last_line(r.text)


def test_results_arrive_as_they_complete_and_stop_between_batches(model_tok, prompts, constraint):
    model, tok = model_tok
    seen = []
    res = generate(model, tok, prompts, GenConfig(max_new_tokens=16, batch_size=2), constraint,
                   on_result=lambda r: seen.append(r.index), should_stop=lambda: len(seen) >= 2)
    assert len(res) == 2 and sorted(seen) == [0, 1]


def test_apply_bitmask_keeps_exactly_the_allowed_tokens():
    vocab = 70
    allowed = {0, 5, 31, 32, 63, 69}
    mask = torch.zeros((1, (vocab + 31) // 32), dtype=torch.int32)
    for t in allowed:
        word, bit = divmod(t, 32)
        value = int(mask[0, word]) | (1 << bit)
        mask[0, word] = value - (1 << 32) if value >= 1 << 31 else value
    logits = torch.zeros((1, vocab))
    apply_bitmask(logits, mask)
    assert {i for i in range(vocab) if logits[0, i] != float("-inf")} == allowed


def test_cut_last_line_and_repetition_guard(model_tok):
    assert cut_last_line("NODE n1: A\nNODE n2: B") == "NODE n1: A\n"
    assert cut_last_line("NODE n1: A\n") == "NODE n1: A\n"
    assert cut_last_line("partial") == ""
    from engine.ml.generate import _drop_repeated_lines

    assert _drop_repeated_lines("A\nB\nA\n") == "A\nB\n"


def test_stopped_exam_keeps_its_records_and_resume_skips_them(model_tok, constraint, tmp_path):
    from engine.ml.exam import ExamPrompt, read_records, run_exam

    model, tok = model_tok
    rows = synth(5, seed=31)
    prompts = [ExamPrompt("L1", f"P{i}", "c", r["instruction"], r["output"], seen=(i % 2 == 0))
               for i, r in enumerate(rows)]
    cfg = GenConfig(max_new_tokens=48, batch_size=2)
    got = []
    first = run_exam(model, tok, "Write Blueprint DSL.", prompts, tmp_path, "v1", cfg, constraint=constraint,
                     on_record=lambda rec, n, total: got.append((rec["prompt_id"], n, total)),
                     should_stop=lambda: len(got) >= 2)
    assert first.stopped and len(first.records) == 2
    on_disk = read_records(tmp_path / "exam_L1.jsonl")
    assert [r["prompt_id"] for r in on_disk] == ["P0", "P1"]
    # a torn last line (kill -9 mid-write) is dropped, not fatal
    with open(tmp_path / "exam_L1.jsonl", "a") as fh:
        fh.write('{"prompt_id": "P9", "trunc')
    second = run_exam(model, tok, "Write Blueprint DSL.", prompts, tmp_path, "v1", cfg, constraint=constraint)
    assert not second.stopped
    recs = read_records(tmp_path / "exam_L1.jsonl")
    assert sorted(r["prompt_id"] for r in recs) == [f"P{i}" for i in range(5)]
    rec = recs[0]
    for key in ("prompt_id", "category", "instruction", "expected_dsl", "actual_dsl", "raw_output", "validation",
                "comparison", "time_seconds", "status", "seen"):
        assert key in rec
    assert {"score", "precision", "recall", "line_score", "missing_nodes"} <= set(rec["comparison"])
    summary = second.summaries["L1"]
    assert summary["n"] == 5 and summary["seen"]["n"] == 3 and summary["unseen"]["n"] == 2
