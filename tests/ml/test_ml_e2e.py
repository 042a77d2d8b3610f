"""A whole teaching cycle through the real CLI: train -> stop -> resume -> exam -> grade -> drafted lesson.

Real subprocesses, a real (small) tiny profile, real files; only the sizes are shrunk
through bpllm.toml so the test fits the suite's budget.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from dsl.constraint import WHOLE_TEXT  # noqa: E402
from engine.ml.testing import TEST_BASE_SETTINGS  # noqa: E402
from tests.cli import bpllm as _run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def bpllm(*args: str, **kw) -> subprocess.CompletedProcess:
    return _run(*args, timeout=900, **kw)


def events(ws: Path) -> list[dict]:
    out = []
    for path in sorted((ws / "runs").glob("*/events.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def small_config(ws: Path) -> None:
    tiny = ", ".join(f"{k} = {json.dumps(v)}" for k, v in TEST_BASE_SETTINGS.items())
    cfg = (ws / "bpllm.toml").read_text()
    cfg = cfg.replace("count = 500", "count = 80")
    cfg += f"""
[profiles.tiny]
max_steps = 14
batch_size = 4
save_steps = 1000
logging_steps = 1
learning_rate = 0.004
tiny = {{ {tiny} }}

[exam]
max_new_tokens = 96
batch_size = 8
time_budget_s = 60

[grading]
draft_prompts = 6
"""
    (ws / "bpllm.toml").write_text(cfg)


def test_cycle_with_stop_and_resume(tmp_path):
    ws = tmp_path / "ws"
    r = bpllm("init", str(ws))
    assert r.returncode == 0, r.stderr
    small_config(ws)

    env = {**os.environ, "BPLLM_TEST_TRAIN_STEP_S": "0.4"}  # training lasts long enough to be stopped mid-way
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "-w", str(ws), "-q"], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        # the adapter's trainer, not the tiny base's own pretraining (phase "base", step 3.4)
        if any(e["type"] == "train" and e.get("phase") != "base" and e.get("step", 0) >= 3 for e in events(ws)):
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read()
    stop = bpllm("stop", "-w", str(ws))
    assert stop.returncode == 0, stop.stdout + stop.stderr
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 2, out

    evs = events(ws)
    assert any(e["type"] == "stop_requested" for e in evs)
    ckpts = [e for e in evs if e["type"] == "checkpoint" and e.get("kind") == "trainer"]
    assert ckpts, "stopping mid-training must save a checkpoint"
    stopped_at = ckpts[-1]["step"]
    assert Path(ckpts[-1]["path"], "trainer_state.json").exists()
    assert stopped_at < 14

    res = bpllm("resume", "-w", str(ws), "-q")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    evs = events(ws)

    # training resumed from the checkpoint (no step trained twice) and the loss fell
    train = [e for e in evs if e["type"] == "train" and e.get("phase") != "base"]
    steps = [e["step"] for e in train]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == 14
    losses = [e["loss"] for e in train]
    assert min(losses[len(losses) // 2:]) < losses[0]
    assert any(e["type"] == "eval" for e in evs)

    version = ws / "models" / "v1"
    assert (version / "adapter" / "adapter_config.json").exists()
    assert json.loads((version / "training_config.json").read_text())["profile"]["name"] == "tiny"

    # exam: a JSONL per lesson, every answer parses (constrained decoding), structural scores present
    files = sorted((version / "exams").glob("exam_*.jsonl"))
    assert len(files) == 3
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(records) == 15
    for rec in records:
        assert rec["validation"]["parses"], rec["actual_dsl"]
        assert {"score", "precision", "recall", "line_score"} <= set(rec["comparison"])
        assert rec["status"] in ("complete", "max_tokens", "repetition", "time_budget", "constraint")
        # catalog-constrained by default: no error the constraint prevents, none at all when it ended itself
        assert rec["constraint"] == "catalog"
        errors = [d["code"] for d in rec["validation"]["diagnostics"] if d["severity"] == "error"]
        assert not [c for c in errors if c not in WHOLE_TEXT], (errors, rec["actual_dsl"])
        if rec["status"] == "complete":
            assert errors == [], (errors, rec["actual_dsl"])
    assert len([e for e in evs if e["type"] == "exam_item"]) == 15
    summaries = [e for e in evs if e["type"] == "exam_summary"]
    assert {s["lesson_id"] for s in summaries} == {"starter_01", "starter_02", "starter_03"}

    # grading: mastery table and a drafted lesson aimed at the weakest nodes, all gold valid
    mastery = [e for e in evs if e["type"] == "mastery"][-1]
    assert mastery["nodes"] and all(n["band"] in ("production", "product", "mastered", "learning", "struggling")
                                    for n in mastery["nodes"])
    drafts = list((ws / "lessons" / "drafts").glob("drill_*.json"))
    assert len(drafts) == 1
    lesson = json.loads(drafts[0].read_text())
    assert lesson["focus_nodes"] == mastery["weakest"]
    from dsl.validator import validate

    for p in lesson["prompts"]:
        assert not [d for d in validate(p["expected_dsl"]) if d.severity == "error"]
    assert (version / "health_report.json").exists() and (version / "grading_report.json").exists()
    assert any(e["type"] == "health" for e in evs)
    status = [e for e in evs if e["type"] == "run" and e.get("phase") == "end"][-1]
    assert status["status"] == "done" and status["exit_code"] == 0
    # the cycle's closing line names the version it trained; `bpllm runs` lists it with the stop and resume
    assert [e["message"] for e in evs if e["type"] == "log" and "complete:" in e.get("message", "")] == \
        ["cycle 1/1 complete: v1"]
    runs = json.loads(bpllm("runs", "-w", str(ws), "--json").stdout)
    assert runs[0]["versions"] == ["v1"] and runs[0]["stops"] == 1 and runs[0]["resumes"] == 1

    # after the whole cycle every backup of every tier restores, and a tampered one still refuses
    from test_engine_backup import check_every_backup_restores_and_a_tampered_one_refuses

    backups = check_every_backup_restores_and_a_tampered_one_refuses(ws)
    assert {"pre_train", "milestone", "scheduled", "safety"} <= {b["tier"] for b in backups}
    assert any(b["tier"] == "safety" and (b.get("label") or "").startswith("before-resume-") for b in backups)


def test_oom_retry_rebuilds_the_trainer_with_the_halved_batch(tmp_path):
    """The runtime's OOM policy halves batch_size; step 4.3 must train with it, not with a stale trainer."""
    ws = tmp_path / "ws"
    assert bpllm("init", str(ws)).returncode == 0
    small_config(ws)
    cfg = (ws / "bpllm.toml").read_text().replace("backoff_s = 10.0", "backoff_s = 0.2")
    (ws / "bpllm.toml").write_text(cfg.replace("max_steps = 14", "max_steps = 3"))
    env = {**os.environ, "BPLLM_TEST_INJECT": "4.3=cuda_oom*1"}
    r = bpllm("run", "-w", str(ws), "--only", "1,2,3,4", "-q", env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    retries = [e for e in events(ws) if e["type"] == "retry"]
    assert retries and retries[0]["changes"]["batch_size"] == [4, 2]
    cfg = json.loads((ws / "models" / "v1" / "training_config.json").read_text())
    assert cfg["profile"]["batch_size"] == 2
