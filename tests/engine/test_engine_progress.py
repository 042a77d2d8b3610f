"""Progress the engine reports: ETAs measured since a resume and bounded by a step's time cap, group ETAs
built from their steps, and the tiny base's pretraining reported as training (issue 14, items 4 and 5).

A real StepContext writes through the engine's real EventWriter and Heartbeat into a run directory; the
events are read back with the engine's own reader (which validates them against engine/runtime/events.py)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from dsl.config import Config
from engine.runtime.context import StepContext
from engine.runtime.events import EventWriter, Heartbeat
from engine.workspace.history import History
from engine.runtime.reader import read_events
from engine.runtime.plan import load_plan
from engine.workspace.workspace import Workspace
from tests.cli import bpllm as _run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ctx(tmp_path: Path):
    run_dir = tmp_path / "ws" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    plan = load_plan()
    events = EventWriter(run_dir, "r1")
    history = History(tmp_path / "ws" / "history.db")
    c = StepContext(workspace=Workspace(tmp_path / "ws"), config=Config(), profile="tiny", run_id="r1", run_dir=run_dir,
                    events=events, heartbeat=Heartbeat(run_dir, "r1"), history=history, plan=plan, state={})
    yield c
    events.close()
    history.close()


def start_step(c: StepContext, sid: str, started_ago: float) -> None:
    """What the orchestrator does when a step starts: the step and its start time."""
    c.step = c.plan[sid]
    c._progress_t0 = time.time() - started_ago


def progress_events(c: StepContext, sid: str) -> list[dict]:
    c.events.sync()
    batch = read_events(c.run_dir)
    assert not batch.malformed, batch.malformed
    return [e for e in batch.events if e["type"] == "step" and e["id"] == sid and e["status"] == "progress"]


def test_a_resumed_trainer_is_timed_from_the_resume_not_from_the_step_start(ctx):
    """4.3 resumes at trainer step 100 of 300 after 1000 s of loading: the old ETA divided those 1000 s by
    100 steps (so 17 s, then 55 s for 7 minutes of training); the ETA must come from steps since the resume."""
    start_step(ctx, "4.3", started_ago=1000.0)
    before = time.time()
    ctx.progress(100, 300, "training", unit="step", force=True)  # the trainer's first report: where it resumed
    time.sleep(0.3)
    ctx.progress(102, 300, "epoch 0.68", unit="step", force=True)
    after = time.time()
    first, second = progress_events(ctx, "4.3")
    assert first.get("eta") is None  # nothing measured since the resume yet
    # 2 steps since the resume in 0.3 s or a little more, 198 to go (the old formula: 1000 s / 102 x 198)
    assert 0.3 / 2 * 198 - 0.1 <= second["eta"] <= (after - before) / 2 * 198 + 0.1


def test_a_fresh_step_is_timed_from_its_start(ctx):
    start_step(ctx, "6.3", started_ago=20.0)
    ctx.progress(1, 5, unit="prompt", force=True)
    (ev,) = progress_events(ctx, "6.3")
    assert ev["eta"] == pytest.approx(20.0 * 4, rel=0.05)  # 20 s for the first of five prompts


def test_a_time_capped_step_never_promises_more_than_its_cap_leaves(ctx):
    """The base build stops at pretrain_max_seconds: 150 of 1572 steps in 40 s would say ~6 min more,
    but only 140 s of the 180 s cap are left."""
    start_step(ctx, "3.4", started_ago=40.0)
    ctx.progress(150, 1572, unit="step", force=True, eta_cap=140.0)
    (ev,) = progress_events(ctx, "3.4")
    assert ev["eta"] == pytest.approx(140.0)
    assert ev["n"] == 150 and ev["total"] == 1572


def test_base_pretraining_reports_its_loss_as_train_events_progress_and_a_log_line(ctx):
    """What engine/ml/base.py hands its on_progress callback every 10 steps, through the ML step's
    reporter: a `train` event marked phase "base", a progress event whose ETA respects the cap, a log line."""
    from engine.ml.steps import _base_progress

    start_step(ctx, "3.4", started_ago=45.0)
    report = _base_progress(ctx)
    report({"step": 150, "total": 1572, "loss": 3.21, "tokens": 90_000, "elapsed": 40.0, "max_seconds": 180.0,
            "lr": 2.9e-3, "grad_norm": 0.84})
    report({"step": 160, "total": 1572, "loss": 3.11, "tokens": 96_000, "elapsed": 42.0, "max_seconds": 180.0,
            "lr": 2.8e-3, "grad_norm": 0.80})
    ctx.events.sync()
    evs = read_events(ctx.run_dir).events
    train = [e for e in evs if e["type"] == "train"]
    assert [(e["step"], e["loss"], e["phase"], e["max_steps"]) for e in train] == [
        (150, 3.21, "base", 1572), (160, 3.11, "base", 1572)]
    assert train[0]["lr"] == pytest.approx(2.9e-3) and train[0]["grad_norm"] == pytest.approx(0.84)
    assert train[0]["tokens_per_s"] == pytest.approx(90_000 / 40.0)
    assert "version" not in train[0]  # no adapter version exists while the base pretrains
    progress = progress_events(ctx, "3.4")
    assert progress and all(e["eta"] <= 180.0 - 40.0 for e in progress)
    logs = [e["message"] for e in evs if e["type"] == "log"]
    assert logs == ["pretraining the tiny base: step 150/1572, loss 3.210, 40s of its 180s cap"]


def test_base_pretraining_hands_its_reporter_the_cap_lr_and_grad_norm(tmp_path):
    """The real tiny pretraining loop (a few steps of a tiny Llama) passes what the reporter needs."""
    pytest.importorskip("torch")
    from dsl.catalog import default_catalog
    from engine.ml.base import pretrain_tiny_base
    from engine.dataset.synthetic import generate

    seen: list[dict] = []
    settings = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "pretrain_epochs": 1.0, "pretrain_batch_size": 8, "pretrain_max_seconds": 120.0,
                "vocab_size": 600, "max_position_embeddings": 256}
    rows = generate(80, seed=3)
    pretrain_tiny_base(tmp_path / "base", rows, "system", default_catalog(), settings, seen.append, None)
    assert seen, "the loop reported no progress"
    last = seen[-1]
    assert last["max_seconds"] == 120.0 and last["lr"] > 0 and last["grad_norm"] >= 0
    assert last["step"] == last["total"]


def _bpllm(*args: str) -> subprocess.CompletedProcess:
    return _run(*args)


def test_a_group_start_carries_its_steps_estimates_and_their_sum(tmp_path):
    """The TUI builds a parent's ETA from these: a group's ETA is what its steps still to run take."""
    ws = tmp_path / "ws"
    assert _bpllm("init", str(ws)).returncode == 0
    toml = (ws / "bpllm.toml").read_text().replace("count = 500", "count = 40")
    (ws / "bpllm.toml").write_text(toml)
    for _ in range(2):  # the second run has timings for every step
        r = _bpllm("run", "-w", str(ws), "--only", "1,2")
        assert r.returncode == 0, r.stderr
    run_dir = sorted(p for p in (ws / "runs").iterdir() if p.is_dir())[-1]
    evs = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    (group,) = [e for e in evs if e["type"] == "step" and e["id"] == "2" and e["status"] == "start"]
    leaves = [e["id"] for e in evs if e["type"] == "step" and e.get("parent") == "2" and e["status"] == "start"]
    timings = json.loads((ws / "runs" / "step_timing.json").read_text())
    assert sorted(group["child_etas"]) == sorted(leaves) == ["2.1", "2.2", "2.3", "2.4"]
    assert group["eta"] == pytest.approx(sum(group["child_etas"].values()), abs=0.02)
    assert group["child_etas"]["2.1"] == pytest.approx(timings["2.1"][0], abs=0.01)  # the one earlier run
