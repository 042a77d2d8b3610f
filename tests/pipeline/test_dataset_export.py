"""`bpllm dataset export` as a user runs it: real subprocesses on a fresh workspace."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.cli import bpllm as _run

ROOT = Path(__file__).resolve().parents[2]


def bpllm(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return _run(*args, timeout=timeout)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export") / "ws"
    r = bpllm("init", str(root))
    assert r.returncode == 0, r.stderr
    return root


def export(ws: Path, out: Path, *extra: str) -> tuple[list[dict], dict]:
    r = bpllm("dataset", "export", "-w", str(ws), "--out", str(out), "--json", *extra)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rep["rows"] == len(rows)
    return rows, rep


def system_prompt(ws: Path) -> str:
    return (ws / "system_prompt.txt").read_text(encoding="utf-8").strip()


def test_openai_shape(ws, tmp_path):
    rows, rep = export(ws, tmp_path / "o.jsonl", "--format", "openai")
    assert rows and rep["split"] == "train"
    for row in rows:
        assert list(row) == ["messages"]
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][0]["content"] == system_prompt(ws)
        assert row["messages"][2]["content"].startswith("BLUEPRINT:")
    assert "approximation" in rep["tokens"]["method"]
    chars = [sum(len(m["content"]) for m in r["messages"]) for r in rows]
    assert rep["tokens"]["total"] == sum(-(-c // 4) for c in chars)


def test_anthropic_shape(ws, tmp_path):
    rows, _ = export(ws, tmp_path / "a.jsonl", "--format", "anthropic")
    assert rows
    for row in rows:
        assert set(row) == {"system", "messages"} and row["system"] == system_prompt(ws)
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in row["messages"])


def test_hf_chat_shape_is_what_training_feeds_trl(ws, tmp_path):
    rows, _ = export(ws, tmp_path / "h.jsonl", "--format", "hf-chat")
    ours, _ = export(ws, tmp_path / "o.jsonl", "--format", "openai")
    from engine.ml.train import to_conversation  # the training side's own conversion

    assert len(rows) == len(ours)
    for row in rows:
        assert set(row) == {"prompt", "completion"}
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert [m["role"] for m in row["completion"]] == ["assistant"]
    for row, o in zip(rows, ours):  # the same rows in the same order, as training would feed them
        assert row == to_conversation({"instruction": o["messages"][1]["content"],
                                       "output": o["messages"][2]["content"]}, system_prompt(ws))


def test_alpaca_shape(ws, tmp_path):
    rows, _ = export(ws, tmp_path / "al.jsonl", "--format", "alpaca")
    assert rows
    for row in rows:
        assert set(row) == {"instruction", "input", "output"}
        assert row["instruction"] and row["output"].startswith("BLUEPRINT:")


def test_splits_are_disjoint_and_test_is_the_exam(ws, tmp_path):
    train, _ = export(ws, tmp_path / "t.jsonl", "--format", "alpaca", "--split", "train")
    val, _ = export(ws, tmp_path / "v.jsonl", "--format", "alpaca", "--split", "val")
    test, rep = export(ws, tmp_path / "x.jsonl", "--format", "alpaca", "--split", "test")
    assert train and val and test
    assert not {r["output"] for r in train} & {r["output"] for r in val}
    starter = [json.loads((ws / "lessons" / f).read_text()) for f in sorted(os.listdir(ws / "lessons"))
               if f.endswith(".json")]
    assert {r["instruction"] for r in test} == {p["instruction"] for les in starter for p in les["prompts"]}
    assert "lessons not in training" in rep["from"]


def test_merged_split_is_read_when_built(ws, tmp_path):
    """After step 1.5 the export reads datasets/train.jsonl, not a merge of its own."""
    (ws / "datasets" / "train.jsonl").write_text(json.dumps(
        {"instruction": "Only row", "input": "extra", "output": "BLUEPRINT: BP_X\nPARENT: Actor"}) + "\n")
    try:
        rows, rep = export(ws, tmp_path / "o.jsonl", "--format", "openai")
    finally:
        (ws / "datasets" / "train.jsonl").unlink()
    assert len(rows) == 1 and rows[0]["messages"][1]["content"] == "Only row\n\nextra"
    assert "train.jsonl" in rep["from"]


@pytest.fixture(scope="module")
def tokenizer_dir(ws) -> Path:
    """A tiny BPE tokenizer saved as a model version's adapter, as training saves it."""
    from engine.ml.tokenizer import train_tokenizer

    texts = [line for line in (ws / "datasets" / "sources" / "starter.jsonl").read_text().splitlines()]
    tok = train_tokenizer(texts * 4 + [system_prompt(ws)], vocab_size=600)
    out = ws / "models" / "v1" / "adapter"
    tok.save_pretrained(str(out))
    return out


def test_token_counts_with_the_models_tokenizer(ws, tmp_path, tokenizer_dir):
    rows, rep = export(ws, tmp_path / "o.jsonl", "--format", "anthropic", "--tokenizer", "v1")
    assert "chat template" in rep["tokens"]["method"]
    from engine.ml.base import render_example
    from engine.ml.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    want = [len(tok(render_example(tok, r["system"], r["messages"][0]["content"], r["messages"][1]["content"]),
                    add_special_tokens=False)["input_ids"]) for r in rows]
    assert rep["tokens"]["total"] == sum(want) and rep["tokens"]["max"] == max(want)
    _, latest = export(ws, tmp_path / "o.jsonl", "--format", "openai", "--tokenizer", "latest")
    assert latest["tokens"]["total"] == sum(want)
    _, by_file = export(ws, tmp_path / "o.jsonl", "--format", "openai", "--tokenizer",
                        str(tokenizer_dir / "tokenizer.json"))
    assert "tokenizer.json" in by_file["tokens"]["method"] and 0 < by_file["tokens"]["total"] < sum(want)


def test_refusals_are_one_line(ws, tmp_path):
    r = bpllm("dataset", "export", "-w", str(ws), "--format", "openai", "--out", str(tmp_path / "o.jsonl"),
              "--tokenizer", "v9")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "v9" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()
    prompt = ws / "system_prompt.txt"
    saved = prompt.read_text()
    prompt.write_text("  \n")
    try:
        r = bpllm("dataset", "export", "-w", str(ws), "--format", "openai", "--out", str(tmp_path / "o.jsonl"))
    finally:
        prompt.write_text(saved)
    assert r.returncode == 1 and "empty" in r.stderr and str(prompt) in r.stderr
