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

    rd = next((ws / "runs").iterdir())
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
    from engine.data import merge_rows, source_files
    from engine.importer import import_blueprintllm
    from engine.ml import health
    from engine.workspace import init_workspace

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

    from engine.config import REPORT_BACKENDS

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
    from engine.synthetic import generate

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
