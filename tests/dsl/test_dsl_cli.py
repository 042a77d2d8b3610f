"""`bpllm validate` and `bpllm score --exam` on imperfect files, through the real CLI (issue 13, item 10)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from tests.cli import bpllm as _run

ROOT = Path(__file__).resolve().parents[2]
GOOD = "BLUEPRINT: BP_X\nPARENT: Actor\n\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\n"
HALF = GOOD + "NODE n2: PrintString\nEXEC n1.Then -> n2.Execute\n"


def bpllm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run(*args, cwd=cwd, timeout=120)


def test_validate_reports_a_binary_jsonl_line_and_checks_every_other_row(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    with open(path, "wb") as fh:
        fh.write((json.dumps({"prompt_id": "p1", "output": GOOD}) + "\n").encode())
        fh.write(b"\x89PNG\x00\xff\xfe\x01 not text\n")
        fh.write((json.dumps({"prompt_id": "p3", "output": "NODE"}) + "\n").encode())
        fh.write((json.dumps({"prompt_id": "p4", "output": GOOD}) + "\n").encode())
    r = bpllm("validate", str(path), "--json", cwd=tmp_path)
    assert r.returncode == 1
    (entry,) = json.loads(r.stdout)["files"]
    assert "error" not in entry, entry.get("error")
    items = {i["id"]: i for i in entry["items"]}
    assert set(items) == {"p1 (line 1)", "line 2", "p3 (line 3)", "p4 (line 4)"}
    assert items["p1 (line 1)"]["valid"] and items["p4 (line 4)"]["valid"] and not items["p3 (line 3)"]["valid"]
    (diag,) = items["line 2"]["diagnostics"]
    assert diag["code"] == "not-utf8" and f"{path}:2:" in diag["message"] and "0x89" in diag["message"]
    r = bpllm("validate", str(path), cwd=tmp_path)
    assert f"{path}:2: not UTF-8" in r.stdout and "4 text(s) in 1 file(s): 2 valid, 2 invalid" in r.stderr


def test_score_exam_reports_a_row_without_actual_dsl_as_missing_not_zero(tmp_path: Path) -> None:
    path = tmp_path / "exam.jsonl"
    rows = [{"prompt_id": "a", "expected_dsl": GOOD, "actual_dsl": GOOD},
            {"prompt_id": "b", "expected_dsl": GOOD},
            {"prompt_id": "c", "expected_dsl": HALF, "actual_dsl": GOOD},
            {"prompt_id": "d", "expected_dsl": GOOD, "actual_dsl": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = bpllm("score", "--exam", str(path), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [rec["prompt_id"] for rec in out["records"]] == ["a", "c"]
    assert out["missing"] == [{"prompt_id": "b", "line": 2}, {"prompt_id": "d", "line": 4}] and out["scored"] == 2
    scores = [rec["score"] for rec in out["records"]]
    assert scores[0] == 1.0 and 0 < scores[1] < 1
    assert out["mean_score"] == round(sum(scores) / 2, 4)  # the missing rows are not averaged in as 0
    assert f"{path}:2: warning: b has no actual_dsl" in r.stderr and f"{path}:4: warning: d" in r.stderr
    r = bpllm("score", "--exam", str(path), cwd=tmp_path)
    assert "2 record(s)" in r.stdout and "2 missing (no actual_dsl, not in the mean)" in r.stdout
