"""Tail a run directory: events.jsonl + heartbeat.json, without Textual.

The TUI (and ``bpllm status``) build on this.  :class:`EventTail` is poll-based
and never blocks, so it can run from a timer, a watchdog callback or a thread:

* a partial last line (the engine is mid-write) is held back until its newline;
* truncation (file shorter than our offset) or rotation (a new inode) restarts from
  byte 0 and says so in ``ReadBatch.reset``;
* ``EventTail(path, offset=N)`` re-attaches from a byte offset a previous reader
  stored (``tail.offset`` is always at a line boundary);
* a line that is not JSON or breaks the schema is returned in ``ReadBatch.malformed``
  with its line number, byte offset and reason -- never dropped silently.

:class:`RunState` folds events into the current picture (steps, progress, last
train/eval metrics, exit status) so a re-attaching client rebuilds state from the
file alone.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from engine.runtime.events import EVENTS_FILE, HEARTBEAT_FILE, pid_alive, read_heartbeat, validate_event
from engine.workspace.lock import lock_holder

# a line longer than this without a newline is reported as malformed and skipped
MAX_LINE_BYTES = 4 * 1024 * 1024


@dataclass
class Malformed:
    line_no: int
    offset: int
    raw: str
    error: str
    path: str = EVENTS_FILE  # the file, as the reader opened it (reports name it)

    def __str__(self) -> str:
        raw = self.raw if len(self.raw) <= 80 else self.raw[:77] + "..."
        return f"{self.path} line {self.line_no} (byte {self.offset}): {self.error}: {raw!r}"


@dataclass
class ReadBatch:
    events: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    reset: str | None = None  # "truncated" | "rotated" when the reader restarted from byte 0

    def __bool__(self) -> bool:
        return bool(self.events or self.malformed or self.reset)


class EventTail:
    """Incremental reader of one events.jsonl file (may not exist yet)."""

    def __init__(self, path: str | Path, *, offset: int = 0, line_no: int = 0, validate: bool = True):
        path = Path(path)
        self.path = path / EVENTS_FILE if path.is_dir() else path
        self.offset = offset
        self.line_no = line_no
        self.validate = validate
        self._ino: int | None = None
        self._pending = b""
        self.last_seq = 0

    def poll(self, max_bytes: int = 16 * 1024 * 1024) -> ReadBatch:
        batch = ReadBatch()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return batch
        if self._ino is not None and st.st_ino != self._ino:
            self._restart(batch, "rotated")
        elif st.st_size < self.offset:
            self._restart(batch, "truncated")
        self._ino = st.st_ino
        # re-read from the last line boundary every time: a torn tail may be rewritten
        # (the engine cuts it off on restart), so held-back bytes are never trusted
        if st.st_size <= self.offset + len(self._pending):
            return batch
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(min(max_bytes, st.st_size - self.offset))
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            raw = data[pos:nl]
            self.line_no += 1
            self._parse(raw, self.offset + pos, batch)
            pos = nl + 1
        self.offset += pos
        self._pending = data[pos:]
        if len(self._pending) > MAX_LINE_BYTES:
            self.line_no += 1
            batch.malformed.append(Malformed(self.line_no, self.offset, self._pending[:200].decode("utf-8", "replace"),
                                             f"line longer than {MAX_LINE_BYTES} bytes without a newline",
                                             str(self.path)))
            self.offset += len(self._pending)
            self._pending = b""
        return batch

    def _restart(self, batch: ReadBatch, why: str) -> None:
        batch.reset = why
        self.offset = 0
        self.line_no = 0
        self._pending = b""
        self.last_seq = 0

    def _parse(self, raw: bytes, offset: int, batch: ReadBatch) -> None:
        if not raw.strip():
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            batch.malformed.append(Malformed(self.line_no, offset, raw[:200].decode("utf-8", "replace"),
                                             f"not UTF-8 ({exc.reason} at byte {exc.start})", str(self.path)))
            return
        try:
            obj = json.loads(text)
        except ValueError as exc:
            batch.malformed.append(Malformed(self.line_no, offset, text, f"not JSON ({exc})", str(self.path)))
            return
        if not isinstance(obj, dict):
            batch.malformed.append(Malformed(self.line_no, offset, text, "not a JSON object", str(self.path)))
            return
        if self.validate:
            problems = validate_event(obj)
            if problems:
                batch.malformed.append(Malformed(self.line_no, offset, text, "; ".join(problems), str(self.path)))
                return
        seq = obj.get("seq")
        if isinstance(seq, int):
            self.last_seq = seq
        batch.events.append(obj)

    def read_all(self) -> ReadBatch:
        """Everything from the current offset to the last complete line."""
        total = ReadBatch()
        while True:
            b = self.poll()
            total.events += b.events
            total.malformed += b.malformed
            total.reset = total.reset or b.reset
            if not b.events and not b.malformed:
                return total


def read_events(run_dir: str | Path) -> ReadBatch:
    """All complete events of a run (and the malformed lines among them)."""
    return EventTail(run_dir).read_all()


def describe_skipped(malformed: list[Malformed], limit: int = 3) -> str | None:
    """One line for a reader that skipped lines: how many, and the first few by file, line and reason."""
    if not malformed:
        return None
    shown = "; ".join(str(m) for m in malformed[:limit])
    more = f" (and {len(malformed) - limit} more)" if len(malformed) > limit else ""
    return f"skipped {len(malformed)} unreadable event line(s): {shown}{more}"


def follow(run_dir: str | Path, *, interval: float = 0.2, offset: int = 0,
           until_exit: bool = True) -> Iterator[ReadBatch]:
    """Yield batches as they arrive; ends after a run ``end`` event (when until_exit)."""
    tail = EventTail(run_dir, offset=offset)
    while True:
        batch = tail.poll()
        if batch:
            yield batch
            if until_exit and any(e.get("type") == "run" and e.get("phase") == "end" for e in batch.events):
                return
        else:
            time.sleep(interval)


@dataclass
class StepState:
    id: str
    name: str
    status: str = "pending"  # pending | running | complete | error | skip
    parent: str | None = None
    started_at: float | None = None
    duration: float | None = None
    n: int | None = None
    total: int | None = None
    eta: float | None = None
    message: str | None = None


class RunState:
    """The picture a client rebuilds from a run's events (apply them in order)."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.status: str = "unknown"  # running | done | stopped | failed
        self.exit_code: int | None = None
        self.profile: str | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.plan: list[dict[str, Any]] = []
        self.steps: dict[str, StepState] = {}
        self.current_step: str | None = None
        self.cycle: int | None = None
        self.last_train: dict[str, Any] | None = None
        self.last_eval: dict[str, Any] | None = None
        self.last_gpu: dict[str, Any] | None = None
        self.errors: list[dict[str, Any]] = []
        self.stop_requested: dict[str, Any] | None = None
        self.last_seq = 0
        self.counts: dict[str, int] = {}
        # for `bpllm runs`: engine time summed over the run's processes, how often it was stopped / resumed
        self.active_s = 0.0
        self.segment_start: float | None = None
        self.stops = 0
        self.resumes = 0

    def apply(self, ev: dict[str, Any]) -> None:
        t = ev.get("type")
        self.last_seq = max(self.last_seq, int(ev.get("seq") or 0))
        self.counts[t] = self.counts.get(t, 0) + 1
        self.run_id = ev.get("run_id", self.run_id)
        if t == "run":
            phase = ev.get("phase")
            if phase in ("start", "resume"):
                self.resumes += phase == "resume"
                self.segment_start = ev.get("ts")
                self.status = "running"
                self.exit_code = None
                self.ended_at = None
                self.stop_requested = None
                self.profile = ev.get("profile", self.profile)
                if self.started_at is None:
                    self.started_at = ev.get("ts")
                if ev.get("plan"):
                    self.plan = ev["plan"]
                    for p in self.plan:
                        self.steps.setdefault(p["id"], StepState(p["id"], p["name"], parent=p.get("parent")))
            elif phase == "end":
                self.stops += ev.get("status") == "stopped"
                if ev.get("duration") is not None:
                    self.active_s += float(ev["duration"])
                elif self.segment_start is not None and ev.get("ts") is not None:
                    self.active_s += float(ev["ts"]) - float(self.segment_start)
                self.segment_start = None
                self.status = ev.get("status", "failed")
                self.exit_code = ev.get("exit_code")
                self.ended_at = ev.get("ts")
                self.current_step = None
        elif t == "step":
            sid = str(ev.get("id"))
            st = self.steps.get(sid)
            if st is None:
                st = self.steps[sid] = StepState(sid, ev.get("name", sid), parent=ev.get("parent"))
            status = ev.get("status")
            if ev.get("cycle") is not None:
                self.cycle = ev.get("cycle")
            if status == "start":
                if st.status != "running":
                    st.started_at = ev.get("ts")
                st.status, st.n, st.total, st.duration = "running", None, None, None
                st.eta = ev.get("eta")
                self.current_step = sid
            elif status == "progress":
                st.status = "running"
                st.n, st.total = ev.get("n"), ev.get("total")
                st.eta = ev.get("eta", st.eta)
                self.current_step = sid
            elif status in ("complete", "error", "skip", "stopped"):
                st.status = status
                st.duration = ev.get("duration")
                if self.current_step == sid:
                    self.current_step = st.parent
            if ev.get("message") is not None:
                st.message = ev.get("message")
            if status == "skip" and ev.get("reason"):
                st.message = ev.get("reason")
        elif t == "train":
            self.last_train = ev
        elif t == "eval":
            self.last_eval = ev
        elif t == "gpu":
            self.last_gpu = ev
        elif t == "error":
            self.errors.append(ev)
        elif t == "stop_requested":
            self.stop_requested = ev

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "status": self.status, "exit_code": self.exit_code, "profile": self.profile,
            "current_step": self.current_step, "cycle": self.cycle, "started_at": self.started_at,
            "ended_at": self.ended_at, "last_seq": self.last_seq,
            "steps": {k: {"name": s.name, "status": s.status, "duration": s.duration, "n": s.n, "total": s.total}
                      for k, s in self.steps.items() if s.status != "pending"},
            "last_train": self.last_train, "last_eval": self.last_eval,
            "errors": [{"category": e.get("category"), "message": e.get("message"), "step": e.get("step")}
                       for e in self.errors],
            "stop_requested": self.stop_requested is not None,
        }


def load_run_state(run_dir: str | Path) -> tuple[RunState, list[Malformed]]:
    state = RunState()
    batch = read_events(run_dir)
    for ev in batch.events:
        state.apply(ev)
    return state, batch.malformed


def engine_liveness(run_dir: str | Path, *, stale_after: float = 30.0) -> dict[str, Any]:
    """Is the engine behind this run alive? Combines heartbeat age and its pid."""
    hb = read_heartbeat(run_dir)
    if hb is None:
        return {"alive": False, "reason": f"no {HEARTBEAT_FILE}", "heartbeat": None}
    age = time.time() - float(hb.get("updated_at") or 0)
    alive = pid_alive(hb.get("pid")) and hb.get("status") == "running"
    reason = None
    if hb.get("status") != "running":
        reason = f"engine finished ({hb.get('status')})"
    elif not pid_alive(hb.get("pid")):
        reason = f"engine pid {hb.get('pid')} is gone (crashed or killed)"
    elif age > stale_after:
        reason = f"heartbeat is {age:.0f}s old"
    return {"alive": alive, "stale": age > stale_after, "age_s": round(age, 3), "reason": reason, "heartbeat": hb}


def find_run(workspace_root: str | Path, run_id: str | None = None) -> tuple[Path | None, dict[str, Any] | None]:
    """(run directory, lock holder) of a workspace: the given run, else the active one (its engine holds
    ``runs/.lock``), else the latest.  The holder dict (pid, run_id, command, started_at) is None when no
    engine is running -- how a client tells "attach to a live engine" from "show a finished run"."""
    runs = Path(workspace_root) / "runs"
    holder = lock_holder(runs / ".lock")
    if holder is not None and not holder.get("run_id"):
        holder = None
    rid = run_id or (holder or {}).get("run_id")
    if rid is None and runs.is_dir():
        dirs = sorted(p.name for p in runs.iterdir() if p.is_dir() and (p / "events.jsonl").exists())
        rid = dirs[-1] if dirs else None
    if rid is None:
        return None, holder
    return runs / rid, holder if holder and holder.get("run_id") == rid else None
