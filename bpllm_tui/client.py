"""The engine client: launch ``bpllm`` as a child process and follow its run directory.

The engine is headless and owns the ML stack; the TUI only ever talks to it through
files (``runs/<id>/events.jsonl``, ``heartbeat.json``, ``runs/.lock``) and the
``bpllm`` command line, so attaching to an engine some other terminal started is the
same code path as following our own child.

* The child never inherits the terminal: stdin is ``/dev/null``, stdout/stderr are
  pipes drained by threads into the log, and it runs in its own session/process
  group (``start_new_session=True``) so the TUI's Ctrl+C/SIGHUP never reach it.
* One follower thread tails the events file with :class:`engine.runtime.reader.EventTail`,
  re-reads the heartbeat when it changes and watches the engine's pid; it posts
  :mod:`bpllm_tui.messages` to the app in batches (bounded, so a burst of 10,000
  events never blocks a frame).
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from engine.resources import child_pythonpath
from engine.runtime.events import EVENTS_FILE, HEARTBEAT_FILE, pid_alive, read_heartbeat
from engine.runtime.reader import EventTail

from bpllm_tui.messages import (CommandFinished, EngineAttached, EngineEvents, EngineHeartbeat, EngineOutput,
                                EngineProcess, FollowerFailed)

LOCK_FILE = ".lock"
BATCH = 500  # events per message: keeps each handler well under a frame
# console lines the engine also writes as events (shown from the events instead)
CONSOLE_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] \[(STEP \d+(\.\d+)?|[A-Z]+)\] ")  # [STEP 4.3], [INFO], [STOP], [RUN]...


# the drain a detached engine's pipes are handed to (see EngineClient.detach)
_DRAIN = r"""
import os, sys, threading
out_fd, err_fd, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
sink = open(path, "ab", buffering=0)
def pump(fd, tag):
    with os.fdopen(fd, "rb", buffering=0) as src:
        for line in iter(src.readline, b""):
            with lock:
                sink.write(tag + line)
threads = [threading.Thread(target=pump, args=(out_fd, b"")), threading.Thread(target=pump, args=(err_fd, b"stderr: "))]
for t in threads: t.start()
for t in threads: t.join()
"""


def engine_command(*args: str) -> list[str]:
    """``bpllm ARGS`` with this interpreter (works from a checkout and from an install)."""
    return [sys.executable, "-m", "engine.cli", *args]


def engine_env() -> dict[str, str]:
    env = child_pythonpath(dict(os.environ))  # the engine child imports this same code (checkout or install)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("TEXTUAL", None)
    return env


def read_lock(workspace: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((workspace / "runs" / LOCK_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def list_runs(workspace: Path) -> list[Path]:
    """Run directories, oldest first (their ids sort by start time)."""
    runs = workspace / "runs"
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_attach_target(workspace: Path) -> tuple[Path | None, bool]:
    """The run to show on start: the locked live run if any, else the latest one (not live)."""
    lock = read_lock(workspace)
    if lock and lock.get("run_id") and pid_alive(lock.get("pid")):
        run_dir = workspace / "runs" / str(lock["run_id"])
        if run_dir.is_dir():
            return run_dir, True
    runs = list_runs(workspace)
    if runs:
        hb = read_heartbeat(runs[-1])
        live = bool(hb and hb.get("status") == "running" and pid_alive(hb.get("pid")))
        return runs[-1], live
    return None, False


class EngineClient:
    """Owns at most one engine child and one follower thread."""

    def __init__(self, workspace: Path, post: Callable[[Any], Any], *, poll_interval: float = 0.1) -> None:
        self.workspace = workspace
        self.post = post
        self.poll_interval = poll_interval
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_dir: Path | None = None
        self.engine_pid: int | None = None
        self._output: deque[tuple[str, str]] = deque(maxlen=20000)
        self._stop_follow = threading.Event()
        self._follower: threading.Thread | None = None
        self._detached = threading.Event()
        self._drainers: list[threading.Thread] = []

    # --------------------------------------------------------------- queries
    @property
    def child_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def engine_alive(self) -> bool:
        if self.child_running:
            return True
        return pid_alive(self.engine_pid) if self.engine_pid and self.proc is None else False

    # ------------------------------------------------------------- launching
    def launch(self, subcommand: str, *args: str) -> None:
        """Start ``bpllm run|resume ...`` as our child and follow the run it creates."""
        if self.engine_alive():
            raise RuntimeError("an engine is already running in this workspace")
        cmd = engine_command(subcommand, "--workspace", str(self.workspace), *args)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd=str(self.workspace),
            env=engine_env(),
        )
        self.engine_pid = self.proc.pid
        self._detached = threading.Event()
        self._drainers = []
        for stream_name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            thread = threading.Thread(target=self._drain, args=(stream_name, stream), daemon=True,
                                      name=f"bpllm-tui-{stream_name}")
            thread.start()
            self._drainers.append(thread)
        self._output.append(("tui", f"$ bpllm {subcommand} --workspace {self.workspace} {' '.join(args)}".rstrip()))
        self.follow(None, live=True)

    def _drain(self, name: str, stream: Any) -> None:
        """Read one pipe of the child; an unexpected error is posted as a FollowerFailed."""
        self._reporting_failure(f"{name} reader", self._drain_pipe, name, stream)

    def _reporting_failure(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """Run a follower thread's body; if it dies, tell the app (a silent dead thread freezes the dashboard)."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported: the app shows it and the thread ends
            self.post(FollowerFailed(what, f"{type(exc).__name__}: {exc}"))

    def _drain_pipe(self, name: str, stream: Any) -> None:
        """Read one pipe of the child (select + os.read, so detach() can take the pipe over cleanly)."""
        fd = stream.fileno()
        pending = b""
        while not self._detached.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not ready or self._detached.is_set():
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._take_line(name, raw)
        if pending and not self._detached.is_set():
            self._take_line(name, pending)

    def _take_line(self, name: str, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if line and not CONSOLE_LINE.match(line):
            self._output.append((name, line))

    def run_command(self, name: str, *args: str, timeout: float = 60.0) -> None:
        """Run a short ``bpllm`` command (stop, init) in a thread; reports a CommandFinished."""

        def worker() -> None:
            try:
                done = subprocess.run(engine_command(*args), stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=timeout, cwd=str(self.workspace) if self.workspace.is_dir() else None,
                                      env=engine_env(), start_new_session=True)
                output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
                self.post(CommandFinished(name, done.returncode, output))
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.post(CommandFinished(name, 1, str(exc)))

        threading.Thread(target=self._reporting_failure, args=(f"bpllm {name}", worker), daemon=True,
                         name=f"bpllm-tui-{name}").start()

    def request_stop(self) -> None:
        """Graceful stop through ``bpllm stop`` (the engine stops at its next safe boundary)."""
        self.run_command("stop", "stop", "--workspace", str(self.workspace))

    def terminate(self) -> None:
        """SIGTERM the engine's process group: the engine treats it as a graceful stop too."""
        pid = self.proc.pid if self.child_running else self.engine_pid
        if pid and pid_alive(pid):
            try:
                os.killpg(os.getpgid(pid), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    # ------------------------------------------------------------- following
    def follow(self, run_dir: Path | None, *, live: bool) -> None:
        """Follow ``run_dir`` (or, when None, the run our child is about to create)."""
        self.stop_following()
        self._stop_follow = threading.Event()
        if run_dir is not None and self.proc is None:
            hb = read_heartbeat(run_dir)
            self.engine_pid = int(hb["pid"]) if hb and hb.get("pid") and live else None
        self._follower = threading.Thread(target=self._follow_loop, args=(run_dir, live, self._stop_follow),
                                          daemon=True, name="bpllm-tui-follow")
        self._follower.start()

    def stop_following(self) -> None:
        self._stop_follow.set()
        if self._follower is not None and self._follower is not threading.current_thread():
            self._follower.join(timeout=2)
        self._follower = None

    def _discover_child_run(self) -> Path | None:
        lock = read_lock(self.workspace)
        if lock and self.proc is not None and lock.get("pid") == self.proc.pid and lock.get("run_id"):
            path = self.workspace / "runs" / str(lock["run_id"])
            if path.is_dir():
                return path
        for path in reversed(list_runs(self.workspace)):
            hb = read_heartbeat(path)
            if hb and self.proc is not None and hb.get("pid") == self.proc.pid:
                return path
        return None

    def _flush_output(self) -> None:
        if self._output:
            lines = []
            while self._output:
                lines.append(self._output.popleft())
            self.post(EngineOutput(lines))

    def _follow_loop(self, run_dir: Path | None, live: bool, stop: threading.Event) -> None:
        self._reporting_failure("events follower", self._follow, run_dir, live, stop)

    def _follow(self, run_dir: Path | None, live: bool, stop: threading.Event) -> None:
        tail: EventTail | None = None
        hb_mtime = 0.0
        replay = True
        exited_reported = False
        ended = False  # the run's last lifecycle event was its end
        last_liveness = 0.0
        while not stop.is_set():
            self._flush_output()
            if run_dir is None:
                run_dir = self._discover_child_run()
                if run_dir is None:
                    if self.proc is not None and self.proc.poll() is not None and not exited_reported:
                        self._flush_output()
                        time.sleep(0.05)
                        self._flush_output()
                        self.post(EngineProcess("exited", self.proc.returncode,
                                                "the engine exited before it created a run"))
                        exited_reported = True
                    if exited_reported:
                        return
                    stop.wait(self.poll_interval)
                    continue
            if tail is None:
                self.run_dir = run_dir
                tail = EventTail(run_dir)
                self.post(EngineAttached(str(run_dir), run_dir.name, live))
            # events, in bounded batches
            drained = False
            while not stop.is_set():
                batch = tail.poll(max_bytes=512 * 1024)  # small bites: the UI thread gets the GIL often
                malformed = [str(m) for m in batch.malformed]
                if batch.reset:
                    malformed.append(f"events.jsonl was {batch.reset}; re-reading from the start")
                if not batch.events and not malformed:
                    drained = True
                    break
                events = batch.events
                for e in events:
                    if e.get("type") == "run":
                        ended = e.get("phase") == "end"
                for i in range(0, max(len(events), 1), BATCH):
                    self.post(EngineEvents(str(run_dir), events[i:i + BATCH], malformed if i == 0 else [], replay,
                                           reset=bool(batch.reset) and i == 0))
            if drained and replay:
                replay = False
                if not live and self.proc is None and not ended:
                    self._report_if_dead(run_dir)
            # heartbeat
            try:
                mtime = (run_dir / HEARTBEAT_FILE).stat().st_mtime
            except OSError:
                mtime = 0.0
            if mtime and mtime != hb_mtime:
                hb_mtime = mtime
                beat = read_heartbeat(run_dir)
                if beat is not None:
                    if self.proc is None and beat.get("pid") and beat.get("status") == "running":
                        self.engine_pid = int(beat["pid"])
                    self.post(EngineHeartbeat(beat))
            # the process
            now = time.time()
            if self.proc is not None:
                code = self.proc.poll()
                if code is not None and not exited_reported:
                    time.sleep(0.05)  # let the last lines land
                    self._flush_output()
                    batch = tail.read_all()
                    if batch.events:
                        self.post(EngineEvents(str(run_dir), batch.events, [str(m) for m in batch.malformed], False))
                    self.post(EngineProcess("exited", code))
                    exited_reported = True
            elif self.engine_pid and now - last_liveness > 1.0:
                last_liveness = now
                if not pid_alive(self.engine_pid):
                    beat = read_heartbeat(run_dir)
                    if beat and beat.get("status") == "running":
                        self.post(EngineProcess("dead", None, f"engine pid {self.engine_pid} is gone "
                                                              "(crashed or killed) — resume continues the run"))
                    else:
                        self.post(EngineProcess("exited", None))
                    self.engine_pid = None
            stop.wait(self.poll_interval)

    def detach(self) -> Path | None:
        """Leave our child running without us: hand its stdout/stderr pipes to a small detached drain
        process that appends them to ``runs/<id>/engine-output.log`` until the engine exits. Without it the
        engine's next print would hit a pipe with no reader (EPIPE) and could fail a long training step."""
        if not self.child_running or self.proc is None or self.proc.stdout is None or self.proc.stderr is None:
            return None
        target_dir = self.run_dir if self.run_dir is not None else self.workspace / ".bpllm"
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / "engine-output.log"
        self._detached.set()  # our readers stop first, so no line is split between two readers
        for thread in self._drainers:
            thread.join(timeout=1.0)
        out_fd, err_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        subprocess.Popen(
            [sys.executable, "-c", _DRAIN, str(out_fd), str(err_fd), str(target)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(out_fd, err_fd), start_new_session=True, close_fds=True,
        )
        return target

    def _report_if_dead(self, run_dir: Path) -> None:
        """A run we found not live: if its heartbeat still says running, its engine died without an end
        event (crash, kill -9, power cut) — say so instead of showing it as running."""
        beat = read_heartbeat(run_dir)
        if beat is None:
            self.post(EngineProcess("dead", None, f"{run_dir.name} has no heartbeat and no end event: "
                                                  "its engine is gone — r resumes the run"))
        elif beat.get("status") == "running" and not pid_alive(beat.get("pid")):
            self.post(EngineProcess("dead", None, f"engine pid {beat.get('pid')} of {run_dir.name} is gone "
                                                  "(crashed or killed) — r resumes the run"))

    def process_group_alive(self) -> bool:
        """Does any process of the child's group remain? (used by tests and the quit dialog)"""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def close(self) -> None:
        """Stop following; the engine itself keeps running (leave-running is the default)."""
        self.stop_following()


__all__ = ["EngineClient", "find_attach_target", "list_runs", "read_lock", "EVENTS_FILE"]
