"""`bpllm status` shows the latest attempt's real outcome, not a failure a resume has since got past
(issue 13, item 10)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from tests.cli import bpllm as _run, bpllm_env

ROOT = Path(__file__).resolve().parents[2]


def bpllm(*args: str, **extra: str) -> subprocess.CompletedProcess:
    return _run(*args, env=bpllm_env(**extra), timeout=180)


def test_status_after_a_failed_run_was_resumed_to_the_end(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert bpllm("init", str(ws)).returncode == 0
    toml = (ws / "bpllm.toml").read_text().replace("count = 500", "count = 40")
    (ws / "bpllm.toml").write_text(toml)
    inject = {"BPLLM_TEST_INJECT": "2.4=disk_full*1"}  # the step's real exception, once
    r = bpllm("run", "-w", str(ws), "--only", "1,2", **inject)
    assert r.returncode == 1, r.stderr
    r = bpllm("status", "-w", str(ws))
    assert "failed at step 2.4: disk_full" in r.stdout, r.stdout  # while it is the outcome, it is shown
    r = bpllm("resume", "-w", str(ws), **inject)
    assert r.returncode == 0, r.stderr

    r = bpllm("status", "-w", str(ws))
    assert r.returncode == 0 and r.stdout.splitlines()[0].endswith(": done (exit 0)"), r.stdout
    assert "failed" not in r.stdout and "resume with" not in r.stdout, r.stdout
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["status"] == "done" and st["failure"] is None and not st["resumable"]
    (past,) = st["past_failures"]
    assert past["step"] == "2.4" and past["category"] == "disk_full"  # kept as history, not as the outcome
    state = json.loads(next((ws / "runs").glob("*/state.json")).read_text())
    assert state["status"] == "done" and state["failure"] is None
