"""The stale-lock warning tells a dead holder from a reused pid and from another host (issue 13, item 10)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.workspace.lock import WorkspaceLock, holder_state, process_identity, stale_message

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("BPLLM_WORKSPACE", "BPLLM_TEST_SLOW_STEPS", "BPLLM_TEST_INJECT"):
        env.pop(key, None)
    return env


def _write_lock(path: Path, **holder) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": "old-run", "command": "run", "started_at": 1.0, "active": True, **holder}))


def test_run_over_a_lock_naming_live_pid_1_does_not_say_it_died(tmp_path: Path) -> None:
    assert os.path.exists("/proc/1"), "pid 1 runs on every Linux system"
    ws = tmp_path / "ws"
    r = subprocess.run([sys.executable, "-m", "engine.cli", "init", str(ws)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _write_lock(ws / "runs" / ".lock", pid=1)  # a lock as an engine that was pid 1 in a container left it
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "-w", str(ws), "--only", "2.3"], cwd=ROOT,
                       env=_env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    (warning,) = [line for line in r.stdout.splitlines() if "workspace lock" in line]
    assert "died" not in warning and "run old-run ended without releasing it" in warning, warning
    assert "pid 1 now belongs to another process" in warning, warning


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_holder_state_tells_alive_reused_dead_and_elsewhere(sleeper) -> None:
    ident = process_identity(sleeper.pid)
    assert ident["pid_start"] is not None
    assert holder_state({"pid": sleeper.pid, **ident}) == "alive"
    assert holder_state({"pid": sleeper.pid, **ident, "pid_start": ident["pid_start"] - 1}) == "reused"
    assert holder_state({"pid": sleeper.pid}) == "reused"  # an older lock: the pid runs, but not as the holder
    assert holder_state({"pid": os.getpid(), **process_identity(os.getpid())}) == "reused"  # that is us now
    assert holder_state({"pid": sleeper.pid, **ident, "host": "some-other-host"}) == "elsewhere"
    assert holder_state({"pid": sleeper.pid, **ident, "boot_id": "0-before-a-reboot"}) == "dead"
    sleeper.kill()
    sleeper.wait()
    assert holder_state({"pid": sleeper.pid, **ident}) == "dead"


def test_takeover_messages(tmp_path: Path, sleeper) -> None:
    path = tmp_path / "runs" / ".lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(path, pid=dead.pid, **process_identity(os.getpid()))
    lock = WorkspaceLock(path).acquire("new-run")
    lock.release()
    assert lock.stale["holder"] == "dead"
    assert stale_message(lock.stale) == (f"took over a stale workspace lock: run old-run (pid {dead.pid}) ended "
                                         "without releasing it (crash or kill -9)")
    assert json.loads(path.read_text())["pid_start"] == process_identity(os.getpid())["pid_start"]
    _write_lock(path, pid=sleeper.pid, **process_identity(sleeper.pid) | {"host": "build-box-7"})
    lock = WorkspaceLock(path).acquire("new-run")
    lock.release()
    msg = stale_message(lock.stale)
    assert lock.stale["holder"] == "elsewhere" and "host build-box-7" in msg and "cannot be checked" in msg
