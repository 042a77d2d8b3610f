"""One run per workspace: ``runs/.lock`` held with flock for the engine's lifetime.

flock is released by the kernel when the holder dies (even by kill -9), so a
stale lock can never block a new run; the pid written inside tells the user who
holds a live one and lets us say when a previous holder died without cleaning up.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from engine.events import pid_alive


class LockBusy(RuntimeError):
    def __init__(self, message: str, holder: dict[str, Any]):
        super().__init__(message)
        self.holder = holder


class WorkspaceLock:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None
        self.stale: dict[str, Any] | None = None  # previous holder that died without releasing

    def acquire(self, run_id: str, *, command: str = "run") -> "WorkspaceLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + 1.0  # a status probe holds the lock for microseconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
            holder = _read(fd)
            os.close(fd)
            since = holder.get("started_at")
            when = time.strftime("%H:%M:%S", time.localtime(since)) if since else "?"
            raise LockBusy(
                f"another bpllm engine is running in this workspace: run {holder.get('run_id', '?')} "
                f"(pid {holder.get('pid', '?')}, `{holder.get('command', 'run')}` since {when}). "
                f"Only one run per workspace: wait for it, watch it with `bpllm status`, or stop it with `bpllm stop`.",
                holder) from None
        previous = _read(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid() and previous.get("active"):
            # flock was free, so its holder is gone: a crash or kill -9
            self.stale = previous | {"alive": pid_alive(previous.get("pid"))}
        info = {"pid": os.getpid(), "run_id": run_id, "command": command, "started_at": time.time(), "active": True}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            info = _read(self._fd) | {"active": False, "released_at": time.time()}
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(info).encode(), 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


def _read(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        obj = json.loads(data.decode() or "{}")
        return obj if isinstance(obj, dict) else {}
    except (ValueError, OSError):
        return {}


def lock_holder(path: str | Path) -> dict[str, Any] | None:
    """Who holds the workspace lock right now (None when nobody does)."""
    path = Path(path)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
