"""Issue 14, honest reports: compiler-style diagnostics, the health monitor's reference rules,
`bpllm status/gpus/runs` wording and columns, `mastery --compare` like with like, report_to."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bpllm(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------- item 14
BAD = """BLUEPRINT: BP_A
PARENT: Actor
GRAPH: EventGraph
NODE n1: Event_BeginPlay
NODE n2: NoSuchNodeType
EXEC n1.Then -> n2.Execute
"""


def test_validate_prints_path_line_col_for_dsl_files_and_item_only_for_multi_item_files(tmp_path):
    dsl = tmp_path / "F.dsl"
    dsl.write_text(BAD)
    res = bpllm("validate", str(dsl))
    assert res.returncode == 1
    lines = [l for l in res.stdout.splitlines() if l.strip()]
    assert lines, res.stderr
    for line in lines:
        head, _, rest = line.partition(": ")
        path, ln, col = head.rsplit(":", 2)
        assert path == str(dsl), line  # not F.dsl:F.dsl:…
        assert ln.isdigit() and col.isdigit() and rest.startswith("error ["), line
    jsonl = tmp_path / "D.jsonl"
    jsonl.write_text(json.dumps({"instruction": "x", "output": BAD}) + "\n")
    out = bpllm("validate", str(jsonl)).stdout.splitlines()
    assert out and all(l.startswith(f"{jsonl}:line 1:") for l in out), out
