"""The engine as a user runs it: real `bpllm` subprocesses on real workspaces.

Covers the issue's checks: ordered canonical step events, a live heartbeat, the console format and
`status --json` agreeing; stop → exit 2 → resume; kill -9 → resume with nothing half-written; two runs
at once; retries (OOM halving) and non-retryable failures; stall abort; malformed input messages.
Slow steps use the documented test knob BPLLM_TEST_SLOW_STEPS (docs/engine.md).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from tests.cli import bpllm as _run, bpllm_env


ROOT = Path(__file__).resolve().parents[2]
CONSOLE_RE = re.compile(r"^\[\d\d:\d\d:\d\d\] \[STEP (\d+(?:\.\d+)?)\] (STARTING|COMPLETE|PROGRESS|ERROR|RETRY|SKIPPED"
                        r"|STOPPED): ")
ENGINE_GROUPS = "1,2,8,9"


def _env(**extra: str) -> dict[str, str]:
    return bpllm_env(**extra)


def bpllm(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return _run(*args, env=env or _env(), timeout=timeout)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env or _env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def wait_for(pred: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        out.append(json.loads(line))
    return out


def run_dirs(ws: Path) -> list[Path]:
    return sorted(p for p in (ws / "runs").iterdir() if p.is_dir())


def heartbeat(ws: Path) -> dict[str, Any] | None:
    dirs = run_dirs(ws) if (ws / "runs").is_dir() else []
    if not dirs:
        return None
    try:
        return json.loads((dirs[-1] / "heartbeat.json").read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    r = bpllm("init", str(w))
    assert r.returncode == 0, r.stderr
    # keep tests quick: a smaller synthetic set and fast retries
    toml = (w / "bpllm.toml").read_text()
    toml = toml.replace("count = 500", "count = 60").replace("backoff_s = 10.0", "backoff_s = 0.1")
    toml = toml.replace("interval_s = 2.0", "interval_s = 0.2")
    (w / "bpllm.toml").write_text(toml)
    return w


def assert_steps_in_order(evs: list[dict[str, Any]], groups: list[str]) -> list[str]:
    """Every step starts then ends, in canonical order; returns the leaf ids seen."""
    from engine.runtime.plan import load_plan
    plan = load_plan()
    steps = [e for e in evs if e["type"] == "step" and e["status"] in ("start", "complete", "skip")]
    open_: list[str] = []
    order: list[str] = []
    for e in steps:
        sid = e["id"]
        assert sid in plan, sid
        assert e["name"] == plan[sid].name
        if e["status"] == "start":
            open_.append(sid)
            order.append(sid)
        else:
            assert open_ and open_[-1] == sid, f"{sid} ended while {open_} open"
            open_.pop()
    assert not open_
    keys = [plan[s].key() for s in order]
    assert keys == sorted(keys), "steps must start in canonical order"
    got_groups = [s for s in order if "." not in s]
    assert got_groups == groups
    return [s for s in order if "." in s]


def test_run_engine_groups_events_heartbeat_console_status(ws: Path) -> None:
    env = _env(BPLLM_TEST_SLOW_STEPS="1.1=1.2")
    p = start("run", "-w", str(ws), "--only", ENGINE_GROUPS, env=env)
    hb1 = wait_for(lambda: (h := heartbeat(ws)) and h.get("step") == "1.1" and h, 20, "heartbeat at 1.1")
    time.sleep(0.6)
    hb2 = heartbeat(ws)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert hb2["updated_at"] > hb1["updated_at"], "heartbeat must keep updating during a step"
    assert hb1["pid"] == p.pid and hb1["phase"] == "data"

    rd = run_dirs(ws)[-1]
    evs = events(rd)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert evs[0]["type"] == "run" and evs[0]["phase"] == "start" and evs[-1]["phase"] == "end"
    assert evs[-1]["status"] == "done" and evs[-1]["exit_code"] == 0
    leaves = assert_steps_in_order(evs, ["1", "2", "8", "9"])
    assert leaves == ["1.1", "1.2", "1.3", "1.4", "1.5", "2.1", "2.2", "2.3", "2.4", "8.1", "8.2", "8.3", "8.4",
                      "8.5", "9.1", "9.2", "9.3", "9.4", "9.5"]
    assert any(e["type"] == "step" and e["id"] == "1.1" and e["status"] == "progress" for e in evs)
    assert any(e["type"] == "gpu" for e in evs)
    final_hb = json.loads((rd / "heartbeat.json").read_text())
    assert final_hb["status"] == "done"

    step_lines = [ln for ln in out.splitlines() if "[STEP " in ln]
    assert step_lines and all(CONSOLE_RE.match(ln) for ln in step_lines), step_lines[:5]
    assert any(ln.endswith("STARTING: Merge + Deduplicate") or "STARTING: Merge + Deduplicate" in ln
               for ln in step_lines)
    assert (rd / "console.log").read_text().splitlines()[-1] == out.splitlines()[-1]

    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    complete = {e["id"] for e in evs if e["type"] == "step" and e["status"] == "complete" and "." in e["id"]}
    assert st["run_id"] == rd.name and st["status"] == "done" and st["exit_code"] == 0 and not st["active"]
    assert {k.split(":")[1] for k in st["steps_complete"]} == complete
    assert st["last_seq"] == evs[-1]["seq"]
    runs = json.loads(bpllm("runs", "-w", str(ws), "--json").stdout)
    assert runs[0]["run_id"] == rd.name and runs[0]["status"] == "done"

    # data really went through dsl/: split written, hash recorded
    manifest = json.loads((ws / "datasets" / "manifest.json").read_text())
    assert manifest["train"] > 0 and manifest["train"] + manifest["validation"] == manifest["valid"]
    assert (ws / "dashboard" / "index.html").exists()
    # ETA: a second run knows the last durations
    r2 = bpllm("run", "-w", str(ws), "--only", "1")
    assert r2.returncode == 0
    assert re.search(r"\[STEP 1\.5\] STARTING: Merge \+ Deduplicate \| ETA: ", r2.stdout)


def test_events_stdout_is_pure_json(ws: Path) -> None:
    r = bpllm("run", "-w", str(ws), "--only", "1,2", "--events-stdout")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    evs = [json.loads(ln) for ln in lines]
    assert evs[0]["type"] == "run" and evs[-1]["type"] == "run" and evs[-1]["exit_code"] == 0
    assert "[STEP 2.1] STARTING" in r.stderr
    rd = run_dirs(ws)[-1]
    assert events(rd) == evs


def test_stop_then_resume(ws: Path) -> None:
    env = _env(BPLLM_TEST_SLOW_STEPS="1.3=30")
    p = start("run", "-w", str(ws), "--only", ENGINE_GROUPS, env=env)
    wait_for(lambda: (h := heartbeat(ws)) and h.get("step") == "1.3", 30, "step 1.3")
    r = bpllm("stop", "-w", str(ws), "--wait", "--timeout", "30")
    assert r.returncode == 0, r.stderr
    p.communicate(timeout=60)
    assert p.returncode == 2
    rd = run_dirs(ws)[-1]
    evs = events(rd)
    stops = [e for e in evs if e["type"] == "stop_requested"]
    assert len(stops) == 1 and stops[0]["source"] == "cli" and stops[0]["step"] == "1.3"
    assert any(e["type"] == "step" and e["id"] == "1.3" and e["status"] == "stopped" for e in evs)
    assert evs[-1] == evs[-1] | {"type": "run", "phase": "end", "status": "stopped", "exit_code": 2}
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["status"] == "stopped" and st["resumable"] and st["stop_requested"]

    r = bpllm("resume", "-w", str(ws), env=_env())
    assert r.returncode == 0, r.stderr
    evs2 = events(rd)[len(evs):]
    assert evs2[0]["type"] == "run" and evs2[0]["phase"] == "resume" and evs2[0]["resume_from"] == "1.3"
    started = [e["id"] for e in evs2 if e["type"] == "step" and e["status"] == "start" and "." in e["id"]]
    assert started[0] == "1.3" and "1.1" not in started and started[-1] == "9.5"
    assert evs2[-1]["status"] == "done"
    assert [e["seq"] for e in events(rd)] == list(range(1, len(events(rd)) + 1))


def _all_state_parses(ws: Path) -> None:
    parsed = 0
    for p in ws.rglob("*"):
        if not p.is_file() or "backups" in p.parts:
            continue
        assert not p.name.endswith(".tmp"), f"temp file left behind: {p}"
        if p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
            parsed += 1
        elif p.suffix == ".jsonl":
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    json.loads(line)
                except ValueError as exc:
                    raise AssertionError(f"{p}:{n} is not JSON (half-written?): {exc}") from None
            parsed += 1
    assert parsed, f"no state files at all under {ws}"


def test_kill9_then_resume_nothing_half_written(ws: Path) -> None:
    env = _env(BPLLM_TEST_SLOW_STEPS="2.2=30")
    p = start("run", "-w", str(ws), "--only", ENGINE_GROUPS, env=env)
    wait_for(lambda: (h := heartbeat(ws)) and h.get("step") == "2.2", 30, "step 2.2")
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=10)
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["status"] == "crashed" and st["resumable"] and not st["active"]
    _all_state_parses(ws)
    r = bpllm("resume", "-w", str(ws))
    assert r.returncode == 0, r.stderr
    rd = run_dirs(ws)[-1]
    evs = events(rd)
    resume = next(e for e in evs if e["type"] == "run" and e["phase"] == "resume")
    assert resume["resume_from"] == "2.2"
    assert evs[-1]["status"] == "done"
    assert any(e["type"] == "log" and "stale workspace lock" in e["message"] for e in evs)
    _all_state_parses(ws)
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["status"] == "done"


def test_second_run_refuses_clearly(ws: Path) -> None:
    env = _env(BPLLM_TEST_SLOW_STEPS="1.1=30")
    p = start("run", "-w", str(ws), "--only", "1", env=env)
    try:
        wait_for(lambda: (h := heartbeat(ws)) and h.get("step") == "1.1", 30, "first run")
        r = bpllm("run", "-w", str(ws), "--only", "2")
        assert r.returncode == 1
        assert "another bpllm engine is running in this workspace" in r.stderr
        assert f"pid {p.pid}" in r.stderr and "bpllm stop" in r.stderr
        st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
        assert st["active"] and st["step"] == "1.1" and st["pid"] == p.pid
    finally:
        os.killpg(p.pid, signal.SIGTERM)  # SIGTERM is a graceful stop too
        p.communicate(timeout=30)
    assert p.returncode == 2


def test_oom_retry_halves_batch_then_succeeds(ws: Path) -> None:
    with open(ws / "bpllm.toml", "a") as fh:
        fh.write("\n[profiles.tiny]\nbatch_size = 8\ngrad_accum = 2\n")
    r = bpllm("run", "-w", str(ws), "--only", "1,2", env=_env(BPLLM_TEST_INJECT="2.3=cuda_oom*1"))
    assert r.returncode == 0, r.stderr
    rd = run_dirs(ws)[-1]
    evs = events(rd)
    err = next(e for e in evs if e["type"] == "error")
    assert err["category"] == "cuda_oom" and err["retryable"] and err["step"] == "2.3"
    retry = next(e for e in evs if e["type"] == "retry")
    assert retry["changes"] == {"batch_size": [8, 4], "grad_accum": [2, 4]} and retry["attempt"] == 2
    assert re.search(r"\[STEP 2\.3\] RETRY: attempt 2/3 .*batch_size 8 -> 4", r.stdout)
    state = json.loads((rd / "state.json").read_text())
    assert state["overrides"] == {"batch_size": 4, "grad_accum": 4}


def test_disk_full_is_not_retried_and_resume_recovers(ws: Path) -> None:
    r = bpllm("run", "-w", str(ws), "--only", "1,2", env=_env(BPLLM_TEST_INJECT="2.4=disk_full*1"))
    assert r.returncode == 1
    rd = run_dirs(ws)[-1]
    evs = events(rd)
    assert not [e for e in evs if e["type"] == "retry"]
    err = next(e for e in evs if e["type"] == "error")
    assert err["category"] == "disk_full" and not err["retryable"] and "free disk space" in err["hint"]
    assert evs[-1]["status"] == "failed" and "2.4" in evs[-1]["message"]
    assert "[STEP 2.4] ERROR" in r.stdout
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["failure"]["category"] == "disk_full" and st["resumable"]
    r = bpllm("resume", "-w", str(ws), env=_env(BPLLM_TEST_INJECT="2.4=disk_full*1"))
    assert r.returncode == 0, r.stderr  # the injected failure happened once; the step now succeeds


def test_stall_watchdog_aborts_and_fails_with_timeout(ws: Path) -> None:
    toml = (ws / "bpllm.toml").read_text()
    toml = toml.replace("warn_s = 300.0", "warn_s = 0.3").replace("kill_s = 600.0", "kill_s = 0.8")
    toml = toml.replace("max_attempts = 3", "max_attempts = 2")
    (ws / "bpllm.toml").write_text(toml)
    r = bpllm("run", "-w", str(ws), "--only", "2.3", env=_env(BPLLM_TEST_SLOW_STEPS="2.3=4!"))
    assert r.returncode == 1, r.stdout + r.stderr
    evs = events(run_dirs(ws)[-1])
    stalls = [e for e in evs if e["type"] == "stall"]
    assert {"warn", "abort"} <= {e["action"] for e in stalls}
    errs = [e for e in evs if e["type"] == "error"]
    assert [e["category"] for e in errs] == ["timeout", "timeout"]
    assert len([e for e in evs if e["type"] == "retry"]) == 1


def test_malformed_config_names_file_and_key(ws: Path) -> None:
    cfg = ws / "bpllm.toml"
    good = cfg.read_text()
    cfg.write_text(good.replace("[stall]\n", "[stall]\nkil_s = 5\n"))
    r = bpllm("run", "-w", str(ws))
    assert r.returncode == 1
    assert str(cfg) in r.stderr and "unknown key stall.kil_s" in r.stderr and "did you mean 'kill_s'" in r.stderr
    cfg.write_text(good.replace("cycles = 1", "cycles = \"two\""))
    r = bpllm("status", "-w", str(ws))
    assert r.returncode == 1 and 'run.cycles = "two": expected a whole number >= 1' in r.stderr
    cfg.write_text(good.replace("[run]", "[run"))
    r = bpllm("run", "-w", str(ws))
    assert r.returncode == 1 and "TOML syntax error" in r.stderr and "line" in r.stderr
    r = bpllm("run", "-w", str(ws.parent / "nowhere"))
    assert r.returncode == 1 and "not a bpllm workspace" in r.stderr and "bpllm init" in r.stderr


def test_malformed_lesson_and_dataset_lines_are_reported_and_quarantined(ws: Path) -> None:
    (ws / "lessons" / "broken.json").write_text('{"lesson_id": "broken",\n "prompts": [\n  {"id": 1,,}\n]}\n')
    lesson = json.loads((ws / "lessons" / "starter_01.json").read_text())
    lesson["prompts"][0]["expected_dsl"] = "BLUEPRINT: X\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: NoSuchNode\n"
    (ws / "lessons" / "starter_01.json").write_text(json.dumps(lesson))
    src = ws / "datasets" / "sources" / "mine.jsonl"
    src.write_text("\n".join([
        json.dumps({"instruction": "Print Yo at begin play.", "output": "BLUEPRINT: BP_Yo\nPARENT: Actor\n\n"
                    "GRAPH: EventGraph\n\nNODE n1: Event_BeginPlay\nNODE n2: PrintString [InString=\"Yo\"]\n\n"
                    "EXEC n1.Then -> n2.Execute"}),
        '{"instruction": "half a line',
        json.dumps({"instruction": "no output here"}),
        json.dumps({"instruction": "bad dsl", "output": "NODE n1 Event_BeginPlay"}),
        json.dumps(["not", "an", "object"]),
    ]) + "\n")
    r = bpllm("run", "-w", str(ws), "--only", "1,2")
    assert r.returncode == 0, r.stderr
    assert "broken.json" in r.stdout and "line 3" in r.stdout
    q = ws / "datasets" / "quarantine"
    mine = [json.loads(x) for x in (q / "merge-mine.jsonl").read_text().splitlines()]
    assert [m["line"] for m in mine] == [2, 3, 4, 5]
    assert "not valid JSON" in mine[0]["reason"] and "'output'" in mine[1]["reason"]
    assert "invalid DSL" in mine[2]["reason"] and mine[2]["diagnostics"]
    lessons_q = [json.loads(x) for x in (q / "lessons.jsonl").read_text().splitlines()]
    reasons = " | ".join(x["reason"] for x in lessons_q)
    assert "not valid JSON" in reasons and "S01_01: invalid expected_dsl" in reasons
    evs = events(run_dirs(ws)[-1])
    merged = next(e for e in evs if e["type"] == "data" and e["name"] == "merged")
    assert merged["quarantined"] == 4
    assert merged["sources"]["datasets/sources/mine.jsonl"] == {"rows": 5, "valid": 1, "invalid": 4, "duplicates": 0}
    train = (ws / "datasets" / "train.jsonl").read_text() + (ws / "datasets" / "validation.jsonl").read_text()
    assert "BP_Yo" in train


def test_malformed_event_lines_show_in_status(ws: Path) -> None:
    assert bpllm("run", "-w", str(ws), "--only", "2.3").returncode == 0
    rd = run_dirs(ws)[-1]
    with open(rd / "events.jsonl", "a") as fh:
        fh.write("garbage line\n")
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["malformed_events"] and "garbage line" in st["malformed_events"][0]
    r = bpllm("status", "-w", str(ws))
    assert f"warning: {rd / 'events.jsonl'} line" in r.stdout  # names the file, not just its base name


def test_non_utf8_event_line_resume_and_readers_report_file_and_line(ws: Path) -> None:
    """A non-UTF-8 line in events.jsonl: resume still works, and every reader on the way (the reopening
    writer, step 9.1, `bpllm status`) skips it and names file and line."""
    r = bpllm("run", "-w", str(ws), "--only", "1,2,9", env=_env(BPLLM_TEST_INJECT="2.4=disk_full*1"))
    assert r.returncode == 1
    rd = run_dirs(ws)[-1]
    path = rd / "events.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"v":1,"seq":9999,"message":"caf\xe9 \xff"}\n')
    bad_line = path.read_bytes().count(b"\n")
    r = bpllm("resume", "-w", str(ws))
    assert r.returncode == 0, r.stdout + r.stderr
    from engine.runtime.reader import read_events

    batch = read_events(rd)
    assert [m.line_no for m in batch.malformed] == [bad_line] and "not UTF-8" in batch.malformed[0].error
    where = f"{path} line {bad_line}"
    assert where in str(batch.malformed[0])
    logs = [e for e in batch.events if e["type"] == "log" and e["level"] == "warning"]
    assert any(f"{path}: skipped 1 unreadable line(s)" in e["message"] and f"line {bad_line}" in e["message"]
               for e in logs), "the reopening writer must report the line it skipped"
    assert any(e.get("step") == "9.1" and where in e["message"] for e in logs), "step 9.1 must report the line"
    seqs = [e["seq"] for e in batch.events]
    assert seqs == list(range(1, len(seqs) + 1))
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["status"] == "done" and any(where in m for m in st["malformed_events"])


def test_gpus_reports_no_gpu_cleanly(ws: Path) -> None:
    r = bpllm("gpus", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert "ram_total" in s and s["ram_total"] > 0
    if not s["available"]:
        assert s["reason"].startswith("no GPU") and s["devices"] == []
    else:  # pragma: no cover - on a GPU box
        assert all(d["mem_total"] > 0 for d in s["devices"])


def test_step_selection_errors_and_listing(ws: Path) -> None:
    r = bpllm("run", "-w", str(ws), "--only", "1,42")
    assert r.returncode == 1 and "unknown step id(s) 42" in r.stderr
    r = bpllm("run", "-w", str(ws), "--from", "10.1")
    assert r.returncode == 1 and "unknown step id '10.1'" in r.stderr
    assert not (ws / "runs").exists() or not run_dirs(ws), "a refused run leaves no run directory"
    r = bpllm("run", "--list-steps")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 59 and lines[0].startswith("1 ") and "Dashboard & Finalize" in r.stdout
    r = bpllm("run", "-w", str(ws), "--only", "9", "--from", "9.4", "-q")
    assert r.returncode == 0, r.stderr
    started = [e["id"] for e in events(run_dirs(ws)[-1]) if e["type"] == "step" and e["status"] == "start"]
    assert started == ["9", "9.4", "9.5"]


def test_step_5_without_a_trained_version_skips_with_its_reason(ws: Path) -> None:
    """`--only 1,5` on a fresh workspace: 5.1 has no adapter to load; it skips (it used to fail with
    peft's "Can't find 'adapter_config.json'")."""
    r = bpllm("run", "-w", str(ws), "--only", "1,5", timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    evs = events(run_dirs(ws)[-1])
    skip = [e for e in evs if e["type"] == "step" and e["id"] == "5.1" and e["status"] == "skip"]
    assert skip and "no trained adapter" in skip[0]["reason"], [e for e in evs if e.get("id") == "5.1"]
