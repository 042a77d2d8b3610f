"""Exam previews with the real Blender: `bpllm render-exam` renders a tiny exam's expected and
actual materials to PNGs beside it, indexes them per record, and renders nothing twice."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.blender_helpers import need_bpy

pytestmark = need_bpy

ROOT = Path(__file__).resolve().parents[2]


def _material(name: str, rgb: tuple[float, float, float]) -> str:
    return (f"MATERIAL: {name}\nNODE n1: PrincipledBSDF [Base_Color=({rgb[0]}, {rgb[1]}, {rgb[2]}, 1), "
            "Roughness=0.4]\nNODE n2: MaterialOutput\nLINK n1.BSDF -> n2.Surface\n")


RED = _material("Paint", (0.8, 0.05, 0.05))
BLUE = _material("Paint", (0.05, 0.1, 0.8))


def _exam(ws: Path) -> Path:
    exams = ws / "models" / "v1" / "exams"
    exams.mkdir(parents=True)
    records = [
        {"prompt_id": "p1", "lesson_id": "paint", "instruction": "red paint", "expected_dsl": RED, "actual_dsl": BLUE},
        {"prompt_id": "p2", "lesson_id": "paint", "instruction": "red paint", "expected_dsl": RED,
         "actual_dsl": "MATERIAL: Paint\nNODE n1: Bogus\n"},
    ]
    path = exams / "exam_paint.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _render(ws: Path, *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "render-exam", "-w", str(ws), "--size", "48",
                           "--samples", "4", "--json", *extra], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _mean_rgb(path: Path) -> tuple[float, float, float, float]:
    """Mean R, G, B of the image's middle (the ball) and the spread of the whole image."""
    from PIL import Image, ImageStat

    with Image.open(path) as im:
        assert im.size == (48, 48)
        rgb = im.convert("RGB")
        spread = max(ImageStat.Stat(rgb).stddev)
        r, g, b = ImageStat.Stat(rgb.crop((16, 12, 32, 28))).mean
    return r, g, b, spread


def test_render_exam_writes_previews_and_index(tmp_path):
    exam = _exam(tmp_path)
    counts = _render(tmp_path)
    # p1: red and blue; p2: red again (cached, same text) and an actual that does not validate
    assert (counts["version"], counts["records"], counts["rendered"], counts["cached"], counts["failed"]) \
        == ("v1", 2, 2, 1, 1)
    index = json.loads((exam.parent / "previews" / "exam_paint.previews.json").read_text(encoding="utf-8"))
    assert index["size"] == 48 and index["exam"] == "exam_paint.jsonl"
    p1, p2 = index["records"]["p1"], index["records"]["p2"]
    assert p1["expected"] == p2["expected"] != p1["actual"]
    assert p2["actual"] is None and "does not validate" in p2["actual_error"]
    red = _mean_rgb(exam.parent / p1["expected"])
    blue = _mean_rgb(exam.parent / p1["actual"])
    assert red[3] > 5 and blue[3] > 5, "a blank image"
    assert red[0] > red[2] + 20, f"the gold ball is not red: {red}"
    assert blue[2] > blue[0] + 20, f"the model's ball is not blue: {blue}"
    # the exam file itself is untouched (schema unchanged)
    assert [json.loads(line)["prompt_id"] for line in exam.read_text(encoding="utf-8").splitlines()] == ["p1", "p2"]

    again = _render(tmp_path, "--version", "v1")
    assert (again["rendered"], again["cached"], again["failed"]) == (0, 3, 1)


def test_render_exam_without_exams_says_so(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "render-exam", "-w", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "no exam results" in proc.stderr and "Traceback" not in proc.stderr
