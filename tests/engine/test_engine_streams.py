"""A run whose console reader goes away (TUI quit, `| head`) finishes anyway."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


NOISY_PLUGIN = """
import sys, time

def chatty(ctx):
    # what tqdm bars, warnings and library prints do inside a training step
    for i in range(40):
        print(f"progress {i}", flush=True)
        print(f"warning {i}", file=sys.stderr, flush=True)
        time.sleep(0.05)
    return {"printed": 40}

def register_steps(registry):
    registry.register("3.1", chatty)
"""


def test_run_survives_closed_stdout(tmp_path):
    ws = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "engine.cli", "init", str(ws)], cwd=ROOT, check=True, capture_output=True)
    (tmp_path / "noisy_steps.py").write_text(NOISY_PLUGIN, encoding="utf-8")
    env = {**os.environ, "BPLLM_ML_MODULE": "noisy_steps",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", "-w", str(ws), "--only", "1,3.1,9"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert b"[STEP 1]" in first
    proc.stdout.close()  # the reader goes away mid-run
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    status = subprocess.run([sys.executable, "-m", "engine.cli", "status", "--json", "-w", str(ws)],
                            cwd=ROOT, check=True, capture_output=True, text=True)
    assert json.loads(status.stdout)["status"] == "done"
