"""Bounded work and stops that stop (issue 13, item 6), on real `bpllm` subprocesses.

A 5 MB dataset row used to pass step 1.5 and then hang the tiny tokenizer's training for hours
(about quadratic in one text's length), deaf to `bpllm stop`, the stall watchdog and SIGTERM. Intake
now quarantines rows over ``engine.dataset.rows.MAX_ROW_CHARS``, the base build bounds its tokenizer texts
and checks for a stop between its phases, and a signal's stop interrupts a step that reaches no safe
boundary within ``SIGNAL_STOP_GRACE_S``. The base-build tests use a fresh workspace (its base cache,
``models/base``, is empty) holding the 5 MB row, so on the old code they hang in the tokenizer.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.dataset.rows import MAX_ROW_CHARS, Lesson, check_lesson, check_row
from tests.engine.test_engine_run import _env, bpllm, events, heartbeat, run_dirs, start, wait_for

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "dsl" / "packs" / "blueprint" / "starter" / "datasets" / "starter.jsonl"
FIVE_MB = 5 * 1024 * 1024
STOP_BOUND_S = 60  # generous on a loaded 2-core machine; the stop lands within seconds


def _valid_output() -> str:
    return json.loads(STARTER.read_text(encoding="utf-8").splitlines()[0])["output"]


def _big_row() -> dict:
    """Valid DSL, and a 5 MB instruction on one line: the old intake accepted it."""
    return {"instruction": "Make a Blueprint that prints " + "ab cd " * (FIVE_MB // 6), "output": _valid_output()}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    r = bpllm("init", str(w))
    assert r.returncode == 0, r.stderr
    toml = (w / "bpllm.toml").read_text()
    (w / "bpllm.toml").write_text(toml.replace("count = 500", "count = 60").replace("interval_s = 2.0", "interval_s = 0.2"))
    (w / "datasets" / "sources" / "big.jsonl").write_text(json.dumps(_big_row()) + "\n", encoding="utf-8")
    return w


def test_a_5mb_row_is_quarantined_at_step_1_5_with_its_reason(ws: Path) -> None:
    r = bpllm("run", "-w", str(ws), "--only", "1", timeout=300)
    assert r.returncode == 0, r.stderr
    quarantined = [json.loads(line) for line in
                   (ws / "datasets" / "quarantine" / "merge-big.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(quarantined) == 1
    q = quarantined[0]
    assert q["source"] == "datasets/sources/big.jsonl" and q["line"] == 1 and q["kind"] == "invalid"
    assert q["reason"].startswith("row too long: ") and f"limit {MAX_ROW_CHARS:,}" in q["reason"]
    assert len(q["row"]["instruction"]) > FIVE_MB  # nothing lost: the row is kept with its reason
    train = (ws / "datasets" / "train.jsonl").read_text(encoding="utf-8")
    assert "ab cd ab cd" not in train and len(train) < 1_000_000
    assert "quarantined datasets/sources/big.jsonl:1: row too long" in r.stdout


def test_import_quarantines_a_row_over_the_limit(tmp_path: Path) -> None:
    w = tmp_path / "ws"
    assert bpllm("init", str(w)).returncode == 0
    src = tmp_path / "BlueprintLLM"
    (src / "datasets").mkdir(parents=True)
    ok = {"instruction": "Print hello", "output": _valid_output()}
    (src / "datasets" / "rows.jsonl").write_text(json.dumps(ok) + "\n" + json.dumps(_big_row()) + "\n",
                                                 encoding="utf-8")
    r = bpllm("import-blueprintllm", str(src), "-w", str(w), "--json")
    assert r.returncode == 0, r.stderr
    imported = (w / "datasets" / "sources" / "blueprintllm_rows.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(imported) == 1 and json.loads(imported[0])["instruction"] == "Print hello"
    q = [json.loads(line) for line in (w / "datasets" / "quarantine" / "import-rows.jsonl").read_text().splitlines()]
    assert [p["line"] for p in q] == [2] and q[0]["reason"].startswith("row too long")


def test_the_limit_is_inclusive_and_counts_every_field() -> None:
    out = _valid_output()
    at_limit = {"instruction": "x" * (MAX_ROW_CHARS - len(out)), "output": out}
    assert check_row(at_limit)[0] is None
    over = at_limit | {"input": "y"}
    assert check_row(over)[0].startswith(f"row too long: {MAX_ROW_CHARS + 1:,} characters")
    lesson = Lesson(Path("lessons/big.json"), {"lesson_id": "big", "prompts": [
        {"id": "p1", "instruction": "x" * MAX_ROW_CHARS, "expected_dsl": out}]})
    good, bad = check_lesson(lesson)
    assert not good and "prompt p1: row too long" in bad[0].reason


def test_the_base_bounds_what_its_tokenizer_trains_on() -> None:
    from engine.ml.base import tokenizer_texts

    texts = tokenizer_texts([_big_row(), {"instruction": "short", "output": "BLUEPRINT: x"}], "system", ["Print"])
    assert max(len(t) for t in texts) == MAX_ROW_CHARS
    assert "short" in texts and "BLUEPRINT: x" in texts


def _base_build(ws: Path) -> subprocess.Popen:
    """A run that reaches step 3.4 on a workspace whose base cache is empty (the base gets built)."""
    assert not (ws / "models" / "base").exists() or not any((ws / "models" / "base").iterdir())
    p = start("run", "-w", str(ws), "--only", "1,2,3")
    wait_for(lambda: (h := heartbeat(ws)) and h.get("step") == "3.4", 300, "step 3.4 (base build)")
    return p


def _assert_stopped_resumably(ws: Path, p: subprocess.Popen) -> None:
    try:
        out, err = p.communicate(timeout=STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail(f"the engine did not end within {STOP_BOUND_S} s of the stop")
    assert p.returncode == 2, err[-2000:]
    assert "Traceback" not in err
    rd = run_dirs(ws)[-1]
    evs = events(rd)
    assert any(e["type"] == "step" and e["id"] == "3.4" and e["status"] == "stopped" for e in evs)
    assert evs[-1]["type"] == "run" and evs[-1]["status"] == "stopped" and evs[-1]["exit_code"] == 2
    state = json.loads((rd / "state.json").read_text(encoding="utf-8"))
    assert state["status"] == "stopped" and "1:3.4" not in state["done"] and state["done"]["1:3.3"] == "complete"
    assert json.loads((rd / "heartbeat.json").read_text())["status"] == "stopped"
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["status"] == "stopped" and st["resumable"] and not st["active"]
    base = ws / "models" / "base"
    assert not list(base.glob(".tiny-*.tmp")) and not (base / "PINNED.json").exists()


def test_bpllm_stop_ends_a_base_build_within_seconds(ws: Path) -> None:
    p = _base_build(ws)
    try:
        # once pretraining reports progress (on the old code the tokenizer never got this far)
        wait_for(lambda: "pretraining" in str((heartbeat(ws) or {}).get("message")), 120, "pretraining progress")
        r = bpllm("stop", "-w", str(ws))
        assert r.returncode == 0, r.stderr
        _assert_stopped_resumably(ws, p)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_sigterm_ends_a_base_build_within_seconds(ws: Path) -> None:
    p = _base_build(ws)
    try:
        time.sleep(1.0)  # inside the base build: synthetic rows, tokenizer or pretraining
        p.send_signal(signal.SIGTERM)
        _assert_stopped_resumably(ws, p)
        evs = events(run_dirs(ws)[-1])
        stop = next(e for e in evs if e["type"] == "stop_requested")
        assert stop["source"] == "signal" and stop["message"] == "SIGTERM received" and stop["step"] == "3.4"
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_sigterm_interrupts_a_step_that_never_reaches_a_safe_boundary(tmp_path: Path) -> None:
    """`1.3=300!` spends 300 s without a stop check (like native code would): SIGTERM still ends the run
    soon after the grace period, stopped and resumable (the old engine waited out the step)."""
    from engine.runtime.orchestrator import SIGNAL_STOP_GRACE_S

    w = tmp_path / "ws"
    assert bpllm("init", str(w)).returncode == 0
    p = start("run", "-w", str(w), "--only", "1", env=_env(BPLLM_TEST_SLOW_STEPS="1.3=300!"))
    try:
        wait_for(lambda: (h := heartbeat(w)) and h.get("step") == "1.3", 60, "step 1.3")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=STOP_BOUND_S + SIGNAL_STOP_GRACE_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 2, err[-2000:]
    assert "Traceback" not in err
    rd = run_dirs(w)[-1]
    evs = events(rd)
    assert any(e["type"] == "log" and "step 1.3 reached no safe boundary" in e["message"] for e in evs)
    stopped = next(e for e in evs if e["type"] == "step" and e["id"] == "1.3" and e["status"] == "stopped")
    assert "SIGTERM" in stopped["message"] and "bpllm resume" in stopped["message"]
    assert evs[-1]["status"] == "stopped" and evs[-1]["exit_code"] == 2
    state = json.loads((rd / "state.json").read_text(encoding="utf-8"))
    assert state["status"] == "stopped" and "1:1.3" not in state["done"] and state["done"]["1:1.2"] == "complete"
    r = bpllm("resume", "-w", str(w), timeout=300)
    assert r.returncode == 0, r.stderr
    assert events(rd)[-1]["status"] == "done"


def test_a_training_child_is_ended_with_all_its_ranks(tmp_path: Path) -> None:
    """An interrupted `accelerate launch` child: the launcher and the ranks it spawned (its process group)
    all end, so no rank outlives a stopped engine."""
    import sys

    from engine.runtime.events import pid_alive
    from engine.ml.launch import _terminate_group

    pid_file = tmp_path / "rank.pid"
    launcher = ("import subprocess, sys, time\n"
                "rank = subprocess.Popen(['sleep', '300'])\n"
                f"open({str(pid_file)!r}, 'w').write(str(rank.pid))\n"
                "time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", launcher], stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the rank to start")
        rank = int(pid_file.read_text())
        _terminate_group(proc, grace_s=5.0)
        assert proc.poll() is not None
        wait_for(lambda: not pid_alive(rank), 10, "the rank to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
