"""One run per workspace: ``runs/.lock`` held with flock for the engine's lifetime.

flock is released by the kernel when the holder dies (even by kill -9), so a
stale lock can never block a new run; the pid written inside tells the user who
holds a live one and lets us say when a previous holder died without cleaning up.

A pid alone does not say that: after a crash the number may belong to another
process (pid reuse, or pid 1 of a container), or the lock may come from another
host or container sharing the workspace. So the lock also records the host, the
kernel's boot id and the process start time, and ``stale_message`` says which case
it is instead of "pid 1 ... died" while pid 1 runs.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from dsl.errors import BpllmError
from engine.runtime.events import pid_alive


class LockBusy(BpllmError, RuntimeError):
    """Another live process holds the workspace; the message names it."""

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
            self.stale = previous | {"holder": holder_state(previous)}
        info = {"pid": os.getpid(), "run_id": run_id, "command": command, "started_at": time.time(), "active": True,
                **process_identity(os.getpid())}
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


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): a reused pid has another start time."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_identity(pid: int) -> dict[str, Any]:
    """What tells this process apart from a later one with the same pid, or one on another host."""
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid_start": _start_ticks(pid)}


def holder_state(holder: dict[str, Any]) -> str:
    """A lock holder's process, seen from here: ``alive``, ``dead``, ``reused`` (its pid now names another
    process) or ``elsewhere`` (another host or container: its processes cannot be checked from here).

    ``pid_alive`` counts a PermissionError from kill(pid, 0) as alive (a process of another user).
    """
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return "dead"
    host = holder.get("host")
    if host and host != socket.gethostname():
        return "elsewhere"
    boot = holder.get("boot_id")
    if boot and _boot_id() and boot != _boot_id():
        return "dead"  # the machine restarted since
    if not pid_alive(pid):
        return "dead"
    if pid == os.getpid():
        return "reused"  # this very process, so not the holder
    started = holder.get("pid_start")
    if started is None:
        # an older lock without the start time: the pid runs, but the lock was free, so whatever
        # runs under that pid is not its holder (a holder keeps its flock until it exits)
        return "reused"
    return "alive" if _start_ticks(pid) == started else "reused"


def stale_message(stale: dict[str, Any]) -> str:
    """The warning when a run takes over a lock its previous holder did not release."""
    run, pid = stale.get("run_id", "?"), stale.get("pid", "?")
    state = stale.get("holder") or holder_state(stale)
    if state == "elsewhere":
        return (f"took over the workspace lock of run {run} (pid {pid} on host {stale.get('host')}): that "
                f"process cannot be checked from here; if it still runs there, stop it (one engine per workspace)")
    if state == "reused":
        return (f"took over a stale workspace lock: run {run} ended without releasing it (crash or kill -9); "
                f"its pid {pid} now belongs to another process")
    if state == "alive":
        return (f"took over the workspace lock of run {run}: pid {pid} still runs but no longer holds the lock "
                f"(is the workspace on a network filesystem without locks?)")
    return f"took over a stale workspace lock: run {run} (pid {pid}) ended without releasing it (crash or kill -9)"
