"""The app drives the REAL engine subprocess: start from the keyboard, see steps arrive, stop gracefully
(the process group is gone), resume to the end; quit leaving it running and re-attach."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


from bpllm_tui.app import BpllmApp
from bpllm_tui.config import TuiConfig
from bpllm_tui.client import engine_command, engine_env, read_lock
from bpllm_tui.screens.dialogs import Choice
from tests.tui_helpers import aio, wait_for

ROOT = Path(__file__).resolve().parents[2]
SIZE = (160, 48)
SLOW = "BPLLM_TEST_SLOW_STEPS"  # the engine's test knob: stay in a real step, checking for stop every 0.1 s


def init_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    out = subprocess.run(engine_command("init", str(ws)), cwd=ROOT, env=engine_env(), capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return ws


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@aio
async def test_start_stop_resume_the_real_engine_from_the_keyboard(tmp_path, monkeypatch):
    ws = init_workspace(tmp_path)
    monkeypatch.setenv(SLOW, "1.3=60")
    # the data, integration and finalize steps: real, and quick enough for a test (training has its own)
    app = BpllmApp(ws, config=TuiConfig(run_args=["--only", "1,2,8,9"]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        assert await wait_for(pilot, lambda: app.client.proc is not None, timeout=10)
        pgid = app.client.proc.pid
        assert os.getpgid(pgid) == pgid, "the engine runs in its own process group"
        assert os.getpgid(pgid) != os.getpgrp()
        # steps arrive from the real engine's events file
        assert await wait_for(pilot, lambda: app.state.step_status("1.3") == "running", timeout=60), \
            [r.text for r in app.state.log]
        assert app.state.step_status("1.1") == "complete"
        assert app.state.status == "running" and app.state.run_id
        assert await wait_for(pilot, lambda: app.state.heartbeat is not None, timeout=10)
        # stop: asks first, then `bpllm stop` (graceful)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
        await pilot.click("#choice-stop")
        assert await wait_for(pilot, lambda: app.state.status == "stopped", timeout=60), app.state.status
        assert await wait_for(pilot, lambda: app.state.process == "exited", timeout=30)
        assert app.client.proc.returncode == 2
        assert app.state.core.stop_requested is not None
        assert await wait_for(pilot, lambda: group_gone(pgid), timeout=10), "no process of the group survives"
        # resume finishes the run
        monkeypatch.delenv(SLOW)
        await pilot.press("r")
        assert await wait_for(pilot, lambda: app.client.proc is not None and app.client.proc.pid != pgid, timeout=10)
        assert await wait_for(pilot, lambda: app.state.status == "done", timeout=120), \
            [r.text for r in list(app.state.log)[-15:]]
        assert app.state.step_status("9.5") == "complete"
        assert app.state.core.exit_code == 0
        await pilot.press("ctrl+q")  # nothing running: quits without asking
        await wait_for(pilot, lambda: app.return_value is not None, timeout=5)
    assert app.return_value == 0


@aio
async def test_quit_leaves_the_engine_running_and_a_new_app_reattaches(tmp_path, monkeypatch):
    ws = init_workspace(tmp_path)
    env = engine_env()
    env[SLOW] = "1.3=90"
    engine = subprocess.Popen(engine_command("run", "-w", str(ws), "--quiet", "--only", "1,2,8,9"), cwd=ws, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (read_lock(ws) or {}).get("run_id"):
            time.sleep(0.1)
        app = BpllmApp(ws)
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: app.state.step_status("1.3") == "running", timeout=60)
            assert app.state.process == "running" and app.state.status == "running"
            first_run = app.state.run_id
            await pilot.press("ctrl+q")
            assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
            assert app.screen.id == "quit-dialog"
            await pilot.press("enter")  # the default: leave it running
            await pilot.pause(0.2)
        assert engine.poll() is None, "the engine keeps running after the TUI quits"
        # reopen: attaches to the same run and rebuilds the steps from the events file
        app2 = BpllmApp(ws)
        async with app2.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: app2.state.step_status("1.3") == "running", timeout=30)
            assert app2.state.run_id == first_run
            assert app2.state.step_status("1.1") == "complete"
            # quitting with "stop" stops the engine, then the app exits by itself
            await pilot.press("ctrl+q")
            assert await wait_for(pilot, lambda: isinstance(app2.screen, Choice))
            await pilot.click("#choice-stop")
            assert await wait_for(pilot, lambda: not app2.is_running, timeout=60)
        assert engine.wait(timeout=30) == 2
    finally:
        if engine.poll() is None:
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()


@aio
async def test_an_engine_left_running_by_the_app_keeps_its_output_and_finishes(tmp_path, monkeypatch):
    """The app's own child outlives the app: its pipes go to a drain, so its prints never hit a dead pipe."""
    ws = init_workspace(tmp_path)
    monkeypatch.setenv(SLOW, "1.3=4")
    app = BpllmApp(ws, config=TuiConfig(run_args=["--only", "1,2,8,9"]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        assert await wait_for(pilot, lambda: app.state.step_status("1.3") == "running", timeout=60)
        proc = app.client.proc
        run_dir = Path(app.state.run_dir)
        await pilot.press("ctrl+q")
        assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
        await pilot.press("enter")  # leave running
        await wait_for(pilot, lambda: app.return_value is not None, timeout=5)
    assert proc.poll() is None, "still running after the app quit"
    assert proc.wait(timeout=120) == 0, "finished normally (no broken pipe)"
    output = (run_dir / "engine-output.log").read_text(encoding="utf-8")
    assert "[STEP 9.5] COMPLETE" in output, output[-2000:]
    events = (run_dir / "events.jsonl").read_text(encoding="utf-8")
    assert "Broken pipe" not in events


@aio
async def test_a_killed_engine_is_shown_dead_and_resume_finishes_the_run(tmp_path, monkeypatch):
    ws = init_workspace(tmp_path)
    monkeypatch.setenv(SLOW, "1.3=60")
    app = BpllmApp(ws, config=TuiConfig(run_args=["--only", "1,2,8,9"]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        assert await wait_for(pilot, lambda: app.state.step_status("1.3") == "running", timeout=60)
        run_id = app.state.run_id
        os.killpg(app.client.proc.pid, signal.SIGKILL)
        assert await wait_for(pilot, lambda: app.state.status == "dead", timeout=30), app.state.status
        assert await wait_for(pilot, lambda: "DEAD" in str(app.screen.query_one("StatusBar").render()))
        assert app.state.step_status("1.3") == "stopped"
        monkeypatch.delenv(SLOW)
        await pilot.press("r")
        assert await wait_for(pilot, lambda: app.state.status == "done", timeout=120)
        assert app.state.run_id == run_id


@aio
async def test_a_second_engine_refuses_and_the_app_says_why(tmp_path):
    ws = init_workspace(tmp_path)
    env = engine_env()
    env[SLOW] = "1.3=60"
    engine = subprocess.Popen(engine_command("run", "-w", str(ws), "--quiet", "--only", "1,2,8,9"), cwd=ws, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (read_lock(ws) or {}).get("run_id"):
            time.sleep(0.1)
        app = BpllmApp(ws, attach=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("s")
            assert await wait_for(pilot, lambda: app.state.process == "exited", timeout=60)
            assert app.client.proc.returncode == 1
            lines = [r.text for r in app.state.log]
            assert any(f"pid {engine.pid}" in line for line in lines), lines  # the lock holder, named
        assert engine.poll() is None, "the running engine was not disturbed"
    finally:
        os.killpg(engine.pid, signal.SIGTERM)
        engine.wait(timeout=30)
