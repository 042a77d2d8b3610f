"""The teaching loop on the second language: `bpllm init --language blender-material` then `bpllm run`,
through the real CLI in subprocesses with the real tiny model (sizes shrunk through bpllm.toml as the
Blueprint cycle test does). Exam answers must all parse and carry the material validator's verdict;
grading's mastery and drafted lesson speak the material catalog; with bpy, exam previews exist."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from dsl.packs import load  # noqa: E402
from tests.blender_helpers import HAVE_BPY  # noqa: E402
from tests.ml.test_ml_e2e import bpllm, events, small_config  # noqa: E402

pytestmark = pytest.mark.slow
PACK = load("blender-material")


def test_material_workspace_runs_a_whole_cycle(tmp_path: Path) -> None:
    ws = tmp_path / "mat"
    r = bpllm("init", str(ws), "--language", "blender-material")
    assert r.returncode == 0, r.stderr
    assert re.search(r'^language = "blender-material"', (ws / "bpllm.toml").read_text(), re.M)
    assert sorted(p.name for p in (ws / "lessons").glob("*.json")) == [
        "starter_01.json", "starter_02.json", "starter_03.json"]
    assert "MATERIAL" in (ws / "system_prompt.txt").read_text()
    small_config(ws)

    run = bpllm("run", "-w", str(ws), "-q")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    evs = events(ws)

    # step 1.3 made material rows with the pack's generator, and they went into training
    generated = [json.loads(line) for f in (ws / "datasets" / "generated").glob("*.jsonl")
                 for line in f.read_text().splitlines() if line.strip()]
    assert generated and all(row["output"].startswith(("MATERIAL:", "GROUP:")) for row in generated)

    records = [json.loads(line) for f in sorted((ws / "models" / "v1" / "exams").glob("exam_*.jsonl"))
               for line in f.read_text().splitlines()]
    assert len(records) == 15
    for rec in records:
        assert rec["validation"]["parses"], rec["actual_dsl"]  # decoding kept to the material grammar
        assert rec["constraint"] == "catalog"  # and to the material catalog (the pack's prefix checker)
        # the verdict recorded is the material validator's own
        errors = sorted(d.code for d in PACK.validate(rec["actual_dsl"]) if d.severity == "error")
        assert sorted(d["code"] for d in rec["validation"]["diagnostics"] if d["severity"] == "error") == errors
        assert rec["validation"]["valid"] == (errors == [])
        # the constraint refuses every line-level error; an answer that ended on its own has none at all
        assert set(errors) <= {"missing-output"}, (errors, rec["actual_dsl"])
        if rec["status"] == "complete":
            assert errors == [], (errors, rec["actual_dsl"])

    mastery = [e for e in evs if e["type"] == "mastery"][-1]
    names = set(PACK.node_names())
    assert mastery["nodes"] and {n["node"] for n in mastery["nodes"]} <= names
    drafts = list((ws / "lessons" / "drafts").glob("drill_*.json"))
    assert len(drafts) == 1
    lesson = json.loads(drafts[0].read_text())
    assert lesson["prompts"]
    for p in lesson["prompts"]:
        assert not [d for d in PACK.validate(p["expected_dsl"]) if d.severity == "error"], p["expected_dsl"]
    status = [e for e in evs if e["type"] == "run" and e.get("phase") == "end"][-1]
    assert status["status"] == "done" and status["exit_code"] == 0

    if not HAVE_BPY:  # previews need Blender; everything above does not
        return
    index = json.loads((ws / "models" / "v1" / "exams" / "previews" / "exam_starter_01.previews.json").read_text())
    expected = [v["expected"] for v in index["records"].values()]
    assert len(expected) == 5 and all((ws / "models" / "v1" / "exams" / e).stat().st_size > 1000 for e in expected)
