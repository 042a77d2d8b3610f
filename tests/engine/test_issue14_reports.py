"""Issue 14, honest reports: compiler-style diagnostics, the health monitor's reference rules,
`bpllm status/gpus/runs` wording and columns, `mastery --compare` like with like, report_to."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli import bpllm as _run

ROOT = Path(__file__).resolve().parents[2]


def bpllm(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    return _run(*args, cwd=cwd, timeout=timeout)


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


# --------------------------------------------------------------------------- item 11 (engine / CLI)
def _quick_ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    assert bpllm("init", str(ws)).returncode == 0
    toml = (ws / "bpllm.toml").read_text()
    (ws / "bpllm.toml").write_text(toml.replace("count = 500", "count = 60").replace("interval_s = 2.0", "interval_s = 0.2"))
    return ws


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("BPLLM_WORKSPACE", "BPLLM_TEST_SLOW_STEPS", "BPLLM_TEST_INJECT"):
        env.pop(k, None)
    return env | extra


def test_runs_lists_duration_version_stops_and_resumes_and_status_says_engine_once(tmp_path):
    import time

    ws = _quick_ws(tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "-w", str(ws), "--only", "1"], cwd=ROOT,
                         env=_env(BPLLM_TEST_SLOW_STEPS="1.3=30"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        hb = next(iter(sorted((ws / "runs").glob("*/heartbeat.json"))), None) if (ws / "runs").is_dir() else None
        try:
            if hb and json.loads(hb.read_text()).get("step") == "1.3":
                break
        except ValueError:
            pass
        time.sleep(0.1)
    assert bpllm("stop", "-w", str(ws), "--wait", "--timeout", "60").returncode == 0
    p.communicate(timeout=60)
    res = bpllm("resume", "-w", str(ws))
    assert res.returncode == 0, res.stderr

    runs = json.loads(bpllm("runs", "-w", str(ws), "--json").stdout)
    assert len(runs) == 1
    r = runs[0]
    assert r["stops"] == 1 and r["resumes"] == 1 and r["status"] == "done"
    assert r["duration_s"] > 0 and r["versions"] == []  # steps 1.x train no model
    table = bpllm("runs", "-w", str(ws)).stdout.splitlines()
    head = table[0].split()
    assert {"DURATION", "VERSION", "STOPPED", "RESUMED"} <= set(head), table[0]
    assert table[1].split()[-5:] == [table[1].split()[-5], "-", "1", "1", str(r["steps_complete"])], table

    status = bpllm("status", "-w", str(ws)).stdout
    assert "engine engine" not in status and "engine finished (done)" in status, status

    rd = ws / "runs" / r["run_id"]
    logs = [json.loads(l)["message"] for l in (rd / "events.jsonl").read_text().splitlines()
            if json.loads(l)["type"] == "log" and "cycle 1/1 complete" in json.loads(l).get("message", "")]
    assert logs == ["cycle 1/1 complete: no model version trained"], logs


def test_gpus_takes_a_real_cpu_sample(tmp_path):
    """psutil's first cpu_percent() in a process is 0.0 by definition; `bpllm gpus` must measure.
    A busy child keeps one core loaded while it runs."""
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"],
                            stdin=subprocess.DEVNULL)
    try:
        res = bpllm("gpus", "--json", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["cpu_percent"] > 0.0
    finally:
        busy.kill()
        busy.wait()


# --------------------------------------------------------------------------- item 2
def test_lesson_share_is_checked_on_the_total_of_all_lessons():
    from engine.ml import health

    # two lessons at 25 % each: 50 % lesson data, over the reference's 40 %
    rows = [{"instruction": f"i{i}", "output": f"o{i}", "lesson_id": "L1" if i < 25 else "L2" if i < 50 else None}
            for i in range(100)]
    alerts = [a for a in health.data_alerts(rows) if a["check"] == "lesson_share"]
    assert len(alerts) == 1 and alerts[0]["value"] == 0.5 and "L1" in alerts[0]["message"]
    # the reference's own mark (source "lesson:<lesson>:<prompt>") counts when a row has no lesson_id
    marked = [dict(r, lesson_id=None, source=f"lesson:{r['lesson_id']}:P{i}") if r["lesson_id"] else r
              for i, r in enumerate(rows)]
    assert [a["value"] for a in health.data_alerts(marked) if a["check"] == "lesson_share"] == [0.5]
    assert not [a for a in health.data_alerts(rows[:20] + rows[50:]) if a["check"] == "lesson_share"]  # 20/70


def test_imported_reference_rows_keep_their_lesson_and_the_share_alert_fires(corpus, tmp_path):
    from engine.dataset.rows import merge_rows, source_files
    from engine.dataset.importer import import_blueprintllm
    from engine.ml import health
    from engine.workspace.workspace import init_workspace

    ws, _ = init_workspace(tmp_path / "ws")
    import_blueprintllm(ws, corpus)
    rows = [json.loads(l) for l in (ws.sources / "blueprintllm_lesson_data.jsonl").read_text().splitlines()]
    assert rows and all(r["lesson_id"].startswith(("lesson_", "correction_")) and r["prompt_id"] for r in rows)
    first = rows[0]
    assert first["source"] == f"lesson:{first['lesson_id']}:{first['prompt_id']}"
    merged = merge_rows(source_files(ws), root=ws.root, near_keep=3, val_fraction=0.05, min_val=2, seed=1)
    assert sum(1 for r in merged.train if r.get("lesson_id")) > 0.4 * len(merged.train)
    assert [a["check"] for a in health.data_alerts(merged.train)].count("lesson_share") == 1


# --------------------------------------------------------------------------- item 3
def test_large_dataset_suggests_one_epoch():
    from engine.ml import health

    rows = [{"instruction": f"make thing {i}", "output": f"o{i}"} for i in range(2501)]
    alerts = [a for a in health.data_alerts(rows, epochs=2.0) if a["check"] == "epochs_for_size"]
    assert len(alerts) == 1 and "suggest 1 epoch" in alerts[0]["message"] and alerts[0]["value"] == 2501
    assert not [a for a in health.data_alerts(rows, epochs=1.0) if a["check"] == "epochs_for_size"]
    assert not [a for a in health.data_alerts(rows[:2500], epochs=3.0) if a["check"] == "epochs_for_size"]


def test_a_node_that_falls_below_mastery_after_being_mastered_is_forgetting_even_by_a_small_drop():
    from engine.ml import health
    from engine.ml.grading import band

    table = [{"node": "Delay", "score": 83.0, "n": 6, "band": band(83.0), "delta": -4.0},  # 87 -> 83: < 10 points
             {"node": "Branch", "score": 70.0, "n": 6, "band": band(70.0), "delta": -4.0}]  # never mastered
    alerts = health.mastery_alerts(table)
    assert [(a["check"], a["severity"]) for a in alerts] == [("forgetting", "critical")]
    assert "Delay" in alerts[0]["message"] and "catastrophic forgetting" in alerts[0]["message"]
    # mastered two versions ago (v1), already below in v2: still forgotten in v3
    table = [{"node": "Delay", "score": 80.0, "n": 6, "band": band(80.0), "delta": 0.0}]
    alerts = health.mastery_alerts(table, mastered_before={"Delay": "v1"})
    assert [a["check"] for a in alerts] == ["forgetting"] and "in v1" in alerts[0]["message"]
    assert health.mastery_alerts(table, mastered_before={}) == []


def test_bands_are_the_references_85_95_97():
    from engine.ml.grading import band

    assert [band(s) for s in (97.0, 96.9, 95.0, 94.9, 85.0, 84.9, 59.9)] == \
        ["production", "product", "product", "mastered", "mastered", "learning", "struggling"]


# --------------------------------------------------------------------------- item 13
def _missing_tracker() -> str | None:
    import importlib.util

    from engine.workspace.config import REPORT_BACKENDS

    for name in ("wandb", "trackio", "tensorboard", "mlflow"):
        if not any(importlib.util.find_spec(m) for m in REPORT_BACKENDS[name]):
            return name
    return None


def test_report_to_is_checked_with_the_config_one_line_no_traceback(tmp_path):
    ws = tmp_path / "ws"
    assert bpllm("init", str(ws)).returncode == 0
    toml = ws / "bpllm.toml"
    base = toml.read_text()
    toml.write_text(base + '\n[train]\nreport_to = ["tensorbord"]\n')
    res = bpllm("run", "-w", str(ws), "--only", "1")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "unknown tracker 'tensorbord'" in res.stderr and "did you mean 'tensorboard'" in res.stderr, res.stderr
    missing = _missing_tracker()
    if missing is None:
        pytest.skip("every tracker package is installed here: no missing backend to report")
    toml.write_text(base + f'\n[train]\nreport_to = ["{missing}"]\n')
    for cmd in (("run", "-w", str(ws), "--only", "1"), ("status", "-w", str(ws))):
        res = bpllm(*cmd)
        assert res.returncode != 0 and "Traceback" not in res.stderr
        assert f"'{missing}' needs the" in res.stderr and "not installed" in res.stderr, res.stderr
    assert not (ws / "runs").is_dir() or not any((ws / "runs").iterdir()), "a bad config must not start a run"
    toml.write_text(base + '\n[train]\nreport_to = "none"\n')
    assert bpllm("status", "-w", str(ws)).returncode == 0


def test_report_to_and_run_name_reach_trls_config(tmp_path):
    pytest.importorskip("trl")
    from engine.ml.profiles import get_profile
    from engine.ml.train import TrainSpec, sft_config

    prof = get_profile("tiny", max_steps=2)
    spec = TrainSpec(base="unused", profile=prof.to_dict(), train_rows=[], validation_rows=[], system_prompt="s",
                     output_dir=str(tmp_path / "ckpt"), adapter_dir=str(tmp_path / "adapter"), version="v3",
                     extra={"report_to": ["tensorboard"], "run_name": "myws/v3",
                            "logging_dir": str(tmp_path / "tensorboard")})
    args = sft_config(spec, prof, 10)
    assert args.report_to == ["tensorboard"] and args.run_name == "myws/v3"
    plain = sft_config(TrainSpec(**{**spec.__dict__, "extra": {}}), prof, 10)
    assert plain.report_to in ([], "none", ["none"])


def test_tensorboard_event_files_land_in_the_versions_folder(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pytest.skip("the `tensorboard` package is not installed here (pip install tensorboard): "
                    "no TensorBoard writer to test")
    pytest.importorskip("trl")
    from engine.ml.profiles import get_profile
    from engine.ml.testing import test_base
    from engine.ml.train import TrainSpec, train_adapter
    from engine.dataset.synthetic import generate

    base = test_base(tmp_path / "base")
    rows = generate(12, seed=3)
    prof = get_profile("tiny", batch_size=4, max_steps=2, logging_steps=1, save_steps=50)
    vdir = tmp_path / "models" / "v1"
    spec = TrainSpec(base=str(base), profile=prof.to_dict(), train_rows=rows[:10], validation_rows=rows[10:],
                     system_prompt="Write Blueprint DSL.", output_dir=str(vdir / "checkpoints"),
                     adapter_dir=str(vdir / "adapter"), version="v1",
                     extra={"report_to": ["tensorboard"], "run_name": "ws/v1", "logging_dir": str(vdir / "tensorboard")})
    train_adapter(spec)
    assert list((vdir / "tensorboard").glob("events.out.tfevents.*")), list(vdir.rglob("*"))
    assert not list((vdir / "checkpoints").rglob("events.out.tfevents.*"))


# --------------------------------------------------------------------------- item 12
GOLD_A = """BLUEPRINT: BP_A
PARENT: Actor
GRAPH: EventGraph
NODE n1: Event_BeginPlay
NODE n2: Delay [Duration=2.0]
EXEC n1.Then -> n2.Execute"""
GOLD_D = """BLUEPRINT: BP_D
PARENT: Actor
GRAPH: EventGraph
NODE n1: Event_InputAction [InputActionName="Jump"]
NODE n2: DestroyActor
EXEC n1.Pressed -> n2.Execute"""


def _rec(lesson: str, pid: str, gold: str, score: float, seen: bool | None) -> dict:
    return {"lesson_id": lesson, "prompt_id": pid, "expected_dsl": gold, "actual_dsl": "", "seen": seen,
            "comparison": {"score": score}, "validation": {"parses": True, "valid": True}}


def _compare_ws(tmp_path: Path) -> Path:
    """v1 examined the drill's prompts unseen (score 10); v2 trained on them (seen, 90). The starter
    lesson's prompts were unseen by both (50 -> 48)."""
    ws = tmp_path / "ws"
    assert bpllm("init", str(ws)).returncode == 0
    for version, drill_score, drill_seen, starter in (("v1", 10.0, False, 50.0), ("v2", 90.0, True, 48.0)):
        exams = ws / "models" / version / "exams"
        exams.mkdir(parents=True)
        (exams / "exam_drill_01.jsonl").write_text("".join(
            json.dumps(_rec("drill_01", f"D{i}", GOLD_D, drill_score, drill_seen)) + "\n" for i in range(4)))
        (exams / "exam_starter.jsonl").write_text("".join(
            json.dumps(_rec("starter", f"S{i}", GOLD_A, starter, False)) + "\n" for i in range(4)))
    drill = {"lesson_id": "drill_01", "drafted_from": "v1", "focus_nodes": ["Event_InputAction"],
             "contrast_nodes": [], "prompts": [], "status": "draft"}
    (ws / "lessons" / "drafts").mkdir(exist_ok=True)
    (ws / "lessons" / "drafts" / "drill_01.json").write_text(json.dumps(drill))
    return ws


def test_compare_never_counts_a_drill_that_was_not_accepted_and_integrated(tmp_path):
    ws = _compare_ws(tmp_path)
    out = json.loads(bpllm("mastery", "-w", str(ws), "--compare", "v1", "v2", "--json").stdout)
    assert out["focus_nodes"] == [] and out["drilled_lessons"] == []  # a draft: never a lesson of v2
    text = bpllm("mastery", "-w", str(ws), "--compare", "v1", "v2").stdout
    assert "focus (drilled) nodes:" not in text and "no accepted, integrated drill before v2" in text, text
    # accepted into lessons/ but not yet integrated into the training data: still not drilled
    accepted = json.loads((ws / "lessons" / "drafts" / "drill_01.json").read_text()) | {"status": "accepted"}
    (ws / "lessons" / "drafts" / "drill_01.json").unlink()
    (ws / "lessons" / "drill_01.json").write_text(json.dumps(accepted))
    assert json.loads(bpllm("mastery", "-w", str(ws), "--compare", "v1", "v2", "--json").stdout)["focus_nodes"] == []
    from engine.workspace.history import History

    hist = History(ws / "history.db")
    hist.integrate_lesson("drill_01", "run1", 4, 12, "h")
    hist.close()
    out = json.loads(bpllm("mastery", "-w", str(ws), "--compare", "v1", "v2", "--json").stdout)
    assert out["focus_nodes"] == ["Event_InputAction"] and out["drilled_lessons"] == ["drill_01"]


def test_compare_keeps_seen_and_unseen_apart_always(tmp_path):
    ws = _compare_ws(tmp_path)
    out = json.loads(bpllm("mastery", "-w", str(ws), "--compare", "v1", "v2", "--json").stdout)
    groups = out["groups"]
    assert set(groups) == {"unseen", "newly_seen"}
    assert (groups["unseen"]["prompts"], groups["unseen"]["avg_old"], groups["unseen"]["avg_new"]) == (4, 50.0, 48.0)
    assert (groups["newly_seen"]["avg_old"], groups["newly_seen"]["avg_new"]) == (10.0, 90.0)
    text = bpllm("mastery", "-w", str(ws), "--compare", "v1", "v2").stdout
    # no headline mixes them: the mixed average would be 30.0 -> 69.0
    assert "30.0 -> 69.0" not in text and "50.0 -> 48.0" in text and "10.0 -> 90.0" in text, text
    assert "seen by both (trained on before either): no prompts" in text


def test_history_arrows_compare_like_with_like():
    from engine.workspace.history import like_with_like

    # a lesson examined unseen by v1 and, after it was trained on, seen by v2: no arrow
    assert like_with_like({"unseen": [10.0, 20.0]}, {"seen": [90.0]}) is None
    assert like_with_like({"unseen": [10.0], "seen": [80.0]}, {"unseen": [20.0], "seen": [10.0]}) == ("unseen", 10.0)
    assert like_with_like({"seen": [80.0]}, {"seen": [70.0], "unseen": [5.0]}) == ("seen", -10.0)
    assert like_with_like({"unmarked": [40.0]}, {"unmarked": [50.0]}) == ("unmarked", 10.0)


def test_mastery_on_a_missing_workspace_is_one_line(tmp_path):
    for args in ((), ("--compare", "v1", "v2")):
        res = bpllm("mastery", "-w", str(tmp_path / "missing"), *args)
        assert res.returncode == 1 and "Traceback" not in res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "not a bpllm workspace" in lines[0], res.stderr


def test_history_screen_draws_no_arrow_between_unseen_and_seen(tmp_path):
    """The History screen (Textual Pilot): a drill examined unseen by v1 and seen by v2 gets `≠`, a
    lesson unseen by both gets its real arrow."""
    import asyncio

    from bpllm_tui.app import BpllmApp
    from bpllm_tui.screens.history import HistoryScreen
    from engine.workspace.history import History

    ws = tmp_path / "ws"
    assert bpllm("init", str(ws)).returncode == 0
    h = History(ws / "history.db")
    for version, drill, seen, starter in (("v1", 10.0, False, 50.0), ("v2", 90.0, True, 40.0)):
        h.add_exam_results(version, "run1", [
            {"lesson_id": "drill_01", "prompt_id": "D1", "score": drill, "valid": True, "seen": seen},
            {"lesson_id": "starter", "prompt_id": "S1", "score": starter, "valid": True, "seen": False}])
    h.close()

    async def run() -> dict[str, str]:
        app = BpllmApp(ws, attach=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("h")
            for _ in range(100):
                if isinstance(app.screen, HistoryScreen):
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.2)
            table = app.screen.query_one("#scores")
            return {str(table.get_row(k)[0]): str(table.get_row(k)[2]) for k in ("drill_01", "starter")}

    cells = asyncio.run(run())
    assert "≠" in cells["drill_01"] and "▲" not in cells["drill_01"], cells
    assert "▼" in cells["starter"], cells
