"""The engine's output contract: JSON-lines events and the heartbeat file.

This is the ONE module that defines what the engine tells the outside world.
The TUI, ``bpllm status`` and the tests read what is written here; docs/events.md
documents the same schema for humans (keep both in step; a test checks that every
type in :data:`EVENT_TYPES` is documented).

A run directory ``runs/<run_id>/`` holds:

* ``events.jsonl`` -- one JSON object per line, appended and flushed per event.
  Every event has the envelope ``v`` (schema version), ``seq`` (1, 2, 3 ... per run,
  continuous across resumes), ``ts`` (Unix seconds, float), ``run_id``, ``type``,
  followed by the payload fields of its type (see :data:`EVENT_TYPES`).
* ``heartbeat.json`` -- rewritten atomically: ``pid``, ``phase``, ``step``,
  ``updated_at`` (Unix seconds) and a few more; the TUI and the engine's own
  stall detector read its age.

Unknown extra payload fields are allowed (readers must ignore what they do not
know); missing required fields, a field of the wrong JSON type (``EventType.types``)
or an unknown type raise ``ValueError`` at the writer, so a producer bug surfaces in
tests rather than in the TUI; readers skip such lines and report them by file and line.
"""
from __future__ import annotations

import json
import numbers
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Mapping

from engine.atomic import _json_default, atomic_write_json

SCHEMA_VERSION = 1
EVENTS_FILE = "events.jsonl"
HEARTBEAT_FILE = "heartbeat.json"
STOP_FILE = "stop_request.json"
ENVELOPE = ("v", "seq", "ts", "run_id", "type")
ENVELOPE_TYPES = {"v": "int", "seq": "int", "ts": "number", "run_id": "str", "type": "str"}
# events.jsonl lines the engine writes itself stay below this size; larger payloads
# (full tracebacks, exam outputs) are truncated with a marker.
MAX_FIELD_CHARS = 20_000


@dataclass(frozen=True)
class EventType:
    """Payload schema of one event type: required and optional field names, their JSON kinds
    (``types``: a field -> a key of :data:`FIELD_KINDS`; fields not listed may hold anything), one
    line of doc."""

    name: str
    doc: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    types: Mapping[str, str] = field(default_factory=dict)

    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional


STEP_STATUSES = ("start", "progress", "complete", "error", "skip", "stopped")
RUN_PHASES = ("start", "resume", "end")
RUN_STATUSES = ("running", "done", "stopped", "failed")
LOG_LEVELS = ("debug", "info", "warning", "error")
SEVERITIES = ("info", "warning", "critical")
ERROR_CATEGORIES = ("cuda_oom", "disk_full", "network", "corrupt_checkpoint", "encoding", "timeout", "data", "config", "unknown")
TRAIN_PHASES = ("base", "sft")  # absent means sft (the adapter's trainer)
BACKUP_TIERS = ("milestone", "pre_train", "scheduled", "watchdog", "safety")

_TYPES: tuple[EventType, ...] = (
    EventType(
        "run", "Run lifecycle: start/resume (with resolved config) and end (status, exit code).",
        required=("phase",),
        optional=("status", "exit_code", "profile", "cycles", "only", "from_step", "config", "workspace",
                  "pid", "duration", "message", "plan", "engine_version", "resume_from"),
        enums={"phase": RUN_PHASES, "status": RUN_STATUSES},
        types={"phase": "str", "status": "str", "exit_code": "int", "profile": "str", "cycles": "int", "config": "dict",
               "pid": "int", "duration": "number", "message": "str", "plan": "plan", "resume_from": "str"},
    ),
    EventType(
        "step", "A step of the canonical plan changed state (ids like '4.3', names from engine/runtime/plan.py).",
        required=("id", "name", "status"),
        optional=("parent", "cycle", "n", "total", "message", "duration", "eta", "reason", "attempt", "rerun",
                  "unit", "lesson_id", "result", "child_etas"),
        enums={"status": STEP_STATUSES},
        types={"id": "str", "name": "str", "status": "str", "parent": "str", "cycle": "int", "n": "number",
               "total": "number", "message": "str", "duration": "number", "eta": "number", "reason": "str",
               "attempt": "int", "unit": "str"},
    ),
    EventType(
        "log", "A human log line (also printed on the console).",
        required=("level", "message"),
        optional=("step", "source", "cycle"),
        enums={"level": LOG_LEVELS},
        types={"level": "str", "message": "str", "step": "str", "source": "str", "cycle": "int"},
    ),
    EventType(
        "train", "One trainer logging step (phase 'base': the tiny base's own pretraining, before any version).",
        required=("step",),
        optional=("max_steps", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "samples_per_s", "retain_kl",
                  "peak_memory_bytes", "memory_device", "version", "cycle", "phase"),
        enums={"phase": TRAIN_PHASES},
        types={"step": "number", "max_steps": "number", "epoch": "number", "loss": "number", "lr": "number",
               "grad_norm": "number", "tokens_per_s": "number", "samples_per_s": "number", "retain_kl": "number",
               "peak_memory_bytes": "number", "memory_device": "str", "version": "str", "cycle": "int",
               "phase": "str"},
    ),
    EventType(
        "eval", "Evaluation on the held-out split.",
        required=("step",),
        optional=("epoch", "eval_loss", "metrics", "version", "cycle"),
        types={"step": "number", "epoch": "number", "eval_loss": "number", "metrics": "dict", "version": "str", "cycle": "int"},
    ),
    EventType(
        "exam_item", "One exam prompt finished (written as it completes).",
        required=("lesson_id", "prompt_id"),
        optional=("n", "total", "score", "valid", "seen", "time_s", "status", "version", "category",
                  "errors", "path", "cycle"),
        types={"n": "number", "total": "number", "score": "number", "time_s": "number", "version": "str", "cycle": "int"},
    ),
    EventType(
        "exam_summary", "Per-lesson exam summary, seen and unseen prompts reported separately.",
        required=("lesson_id",),
        optional=("version", "n", "avg_score", "valid_pct", "seen", "unseen", "path", "time_s", "cycle"),
        types={"n": "number", "avg_score": "number", "valid_pct": "number", "seen": "dict", "unseen": "dict",
               "time_s": "number", "version": "str", "cycle": "int"},
    ),
    EventType(
        "mastery", "Node mastery table of a model version: nodes=[{node, score, n, band, delta}].",
        required=("nodes",),
        optional=("version", "previous_version", "weakest", "cycle"),
        types={"nodes": "nodes", "version": "str"},
    ),
    EventType(
        "gpu", "Telemetry sample: devices=[{index, torch_index, pci_bus_id, name, role, mem_used, mem_total, util,"
               " temp, processes}] (bytes, %, deg C); available=false with reason when there is no GPU.",
        required=("available", "devices"),
        optional=("reason", "cpu_percent", "ram_used", "ram_total", "load_avg"),
        types={"available": "bool", "devices": "list", "reason": "str", "cpu_percent": "number", "ram_used": "number",
               "ram_total": "number", "load_avg": "list"},
    ),
    EventType(
        "health", "A health check result (idempotent: the same alert is re-emitted, never hidden).",
        required=("check", "severity", "message"),
        optional=("value", "threshold", "step", "version", "key", "cycle"),
        enums={"severity": SEVERITIES},
        types={"check": "str", "severity": "str", "message": "str", "value": "number", "threshold": "number",
               "version": "str", "cycle": "int"},
    ),
    EventType(
        "checkpoint", "A trainer checkpoint or adapter was saved (stop/resume continue from it).",
        required=("path",),
        optional=("step", "epoch", "kind", "version", "cycle"),
        types={"path": "str", "step": "number", "epoch": "number", "version": "str", "cycle": "int"},
    ),
    EventType(
        "backup", "A verified backup was written (tier, files, bytes) or restored.",
        required=("name", "tier"),
        optional=("action", "files", "bytes", "path", "mirror", "step", "pruned", "skipped", "cleaned",
                  "mirror_error"),
        enums={"tier": BACKUP_TIERS},
        types={"name": "str", "tier": "str", "action": "str", "files": "int", "bytes": "number", "path": "str"},
    ),
    EventType(
        "error", "A classified failure (category decides the retry policy).",
        required=("category", "message"),
        optional=("step", "retryable", "fatal", "traceback", "exception", "hint", "cycle"),
        enums={"category": ERROR_CATEGORIES},
        types={"category": "str", "message": "str", "step": "str", "traceback": "str", "exception": "str", "hint": "str",
               "cycle": "int"},
    ),
    EventType(
        "retry", "A step is retried after a retryable error; changes shows adjusted settings (OOM halving).",
        required=("step", "attempt", "max_attempts"),
        optional=("delay_s", "category", "changes", "message", "cycle"),
        types={"step": "str", "attempt": "number", "max_attempts": "number", "delay_s": "number", "message": "str",
               "cycle": "int"},
    ),
    EventType(
        "stop_requested", "A graceful stop was requested; the engine stops at the next safe boundary.",
        required=("source",),
        optional=("requested_at", "step", "pid", "message"),
        types={"source": "str", "requested_at": "number", "message": "str"},
    ),
    EventType(
        "stall", "No progress for longer than the phase's limit (warn) or the kill limit (action=abort).",
        required=("phase", "age_s", "limit_s"),
        optional=("step", "action"),
        types={"phase": "str", "age_s": "number", "limit_s": "number", "step": "str", "action": "str"},
    ),
    EventType(
        "data", "Dataset statistics after a data step (rows, valid, quarantined, duplicates, split, hash). "
                "name: merged, blend_build, scrape (step 1.1: files, pages, bytes, downloads, rejected, complete), "
                "export (step 1.5: files = {format/split: rows}), ...",
        required=("name",),
        optional=("rows", "valid", "invalid", "quarantined", "duplicates", "near_duplicates", "train", "validation",
                  "hash", "path", "quarantine_path", "sources", "step", "lessons", "prompts", "changed",
                  "files", "pages", "bytes", "downloads", "rejected", "complete"),
        types={"name": "str", "step": "str", "pages": "int", "bytes": "int", "downloads": "int", "rejected": "int"},
    ),
    EventType(
        "leakage", "Leakage check: per lesson seen/unseen prompt counts.",
        required=("lessons",),
        optional=("seen", "unseen", "path", "step"),
        types={"lessons": "list"},
    ),
    EventType(
        "version", "A model version was recorded (adapter path, data hash, metrics).",
        required=("version",),
        optional=("path", "profile", "data_hash", "metrics", "base", "cycle"),
        types={"version": "str", "path": "str", "metrics": "dict", "cycle": "int"},
    ),
    EventType(
        "artifact", "A file a user may want to open was written (exam JSONL, drafted lesson, dashboard, report).",
        required=("kind", "path"),
        optional=("step", "message", "version", "lesson_id", "cycle", "format", "split", "rows"),
        types={"kind": "str", "path": "str", "message": "str", "step": "str", "version": "str", "lesson_id": "str",
               "cycle": "int", "format": "str", "split": "str", "rows": "int"},
    ),
)

EVENT_TYPES: dict[str, EventType] = {t.name: t for t in _TYPES}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_plan(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("name"), str)
        and (p.get("parent") is None or isinstance(p.get("parent"), str)) for p in value)


# JSON kinds a field may be declared as (numbers.* so numpy scalars pass at the writer)
FIELD_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", _is_int),
    "number": ("a number", _is_number),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "list": ("a list", lambda v: isinstance(v, (list, tuple))),
    "dict": ("an object", lambda v: isinstance(v, dict)),
    "nodes": ("a list or an object", lambda v: isinstance(v, (list, dict))),
    "plan": ("a list of {id, name, parent} objects with string values", _is_plan),
}


HEARTBEAT_TYPES = {"pid": "int", "status": "str", "phase": "str", "step": "str", "started_at": "number",
                   "updated_at": "number", "progress_at": "number", "seq": "int", "n": "number", "total": "number"}


def _type_problem(where: str, key: str, kind: str, value: Any, required: bool) -> str | None:
    if value is None:
        return f"{where}field {key!r} must not be null" if required else None
    what, ok = FIELD_KINDS[kind]
    if ok(value):
        return None
    shown = repr(value)
    return f"{where}field {key!r} must be {what}, not {type(value).__name__} {shown[:40]}"


def validate_event(event: Mapping[str, Any]) -> list[str]:
    """Problems with one event dict (envelope + payload); empty when it conforms."""
    problems: list[str] = []
    for key in ENVELOPE:
        if key not in event:
            problems.append(f"missing envelope field {key!r}")
        elif (p := _type_problem("envelope ", key, ENVELOPE_TYPES[key], event[key], True)) is not None:
            problems.append(p)
    etype = event.get("type")
    spec = EVENT_TYPES.get(etype) if isinstance(etype, str) else None
    if spec is None:
        problems.append(f"unknown event type {etype!r} (known: {', '.join(EVENT_TYPES)})")
        return problems
    for key in spec.required:
        if key not in event:
            problems.append(f"{etype}: missing required field {key!r}")
    for key, kind in spec.types.items():
        if key in event:
            p = _type_problem(f"{etype}: ", key, kind, event[key], key in spec.required)
            if p is not None:
                problems.append(p)
    for key, allowed in spec.enums.items():
        value = event.get(key)
        if value is not None and isinstance(value, str) and value not in allowed:
            problems.append(f"{etype}: {key}={value!r} not one of {', '.join(allowed)}")
    return problems


def types_line(spec: EventType) -> str:
    """The ``- types:`` line of an event type's section in docs/events.md (a test keeps both in step)."""
    return "- types: " + ", ".join(f"`{k}` {v}" for k, v in spec.types.items())


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[: MAX_FIELD_CHARS - 40] + f"... [truncated {len(value) - MAX_FIELD_CHARS + 40} chars]"
    return value


class EventWriter:
    """Appends events to ``<run_dir>/events.jsonl``; thread-safe; flushes every event.

    Reopening an existing file (resume) continues ``seq`` after the last complete
    line.  A partial last line (the engine was killed mid-write) is cut off and
    reported as a ``log`` warning with the bytes it dropped, so nothing vanishes
    silently and readers never see a torn record followed by valid ones.
    """

    def __init__(self, run_dir: str | Path, run_id: str, *, stdout: IO[str] | None = None,
                 listeners: list[Callable[[dict[str, Any]], None]] | None = None, strict: bool = True):
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.path = self.run_dir / EVENTS_FILE
        self.strict = strict
        self._stdout = stdout
        self._listeners = list(listeners or [])
        self._lock = threading.RLock()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._unreadable: list[str] = []
        self.seq, repaired = self._recover()
        # unbuffered bytes: each event is one write that lands whole or is cut back (see _append)
        self._fh = open(self.path, "ab", buffering=0)
        self.last_event: dict[str, Any] | None = None
        if repaired:
            self.emit("log", level="warning", source="engine",
                      message=f"events.jsonl ended in a partial line (engine was killed mid-write); "
                              f"removed {len(repaired)} bytes: {repaired[:200]!r}")
        if self._unreadable:
            self.emit("log", level="warning", source="engine",
                      message=f"{self.path}: skipped {len(self._unreadable)} unreadable line(s) while finding "
                              f"the last seq ({'; '.join(self._unreadable[:3])}"
                              f"{' …' if len(self._unreadable) > 3 else ''}); seq continues after {self.seq}")

    def _recover(self) -> tuple[int, bytes]:
        """Last seq in an existing file, cutting a torn last line off; unreadable last lines are
        noted in ``_unreadable`` (by line number) and reported once the file is open."""
        if not self.path.exists():
            return 0, b""
        with open(self.path, "rb+") as fh:
            data = fh.read()
            dropped = b""
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                dropped = data[cut:]
                fh.truncate(cut)
                data = data[:cut]
        seq = 0
        lines = data.split(b"\n")[:-1] if data else []
        for line_no in range(len(lines), 0, -1):
            line = lines[line_no - 1]
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                value = obj["seq"]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"seq is {type(value).__name__}")
                seq = value
                break
            except (ValueError, KeyError, AttributeError, TypeError) as exc:  # not UTF-8/JSON, no int seq
                self._unreadable.append(f"line {line_no}: {type(exc).__name__}: {str(exc)[:80]}")
        return seq, dropped

    def add_listener(self, fn: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def emit(self, type: str, **payload: Any) -> dict[str, Any]:
        """Write one event and return it (envelope included)."""
        spec = EVENT_TYPES.get(type)
        with self._lock:
            event: dict[str, Any] = {"v": SCHEMA_VERSION, "seq": self.seq + 1, "ts": round(time.time(), 3),
                                     "run_id": self.run_id, "type": type}
            for key, value in payload.items():
                if value is not None or (spec and key in spec.required):
                    event[key] = _clip(value)
            problems = validate_event(event)
            if problems and self.strict:
                raise ValueError("invalid event: " + "; ".join(problems))
            line = json.dumps(event, ensure_ascii=False, default=_json_default, separators=(",", ":"))
            # seq moves first: an async exception (the stall watchdog's signal) between the two
            # statements can leave a gap in seq, never a duplicate
            self.seq += 1
            try:
                self._append((line + "\n").encode("utf-8"))
            except OSError:
                self.seq -= 1  # not written: the next event (after room is made) takes this seq
                raise
            self.last_event = event
            if self._stdout is not None:
                try:
                    self._stdout.write(line + "\n")
                    self._stdout.flush()
                except (BrokenPipeError, ValueError, OSError):
                    self._stdout = None  # parent went away: keep running, keep the file
            listeners = list(self._listeners)
        for fn in listeners:
            fn(event)
        return event

    def _append(self, data: bytes) -> None:
        """Append one whole line, or nothing: a full disk (ENOSPC) mid-line cuts the file back to where
        it was, so a reader never sees a torn record and a retry after freeing room writes it whole."""
        fd = self._fh.fileno()
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
            raise

    def sync(self) -> None:
        """fsync the events file (at run/step boundaries; flush alone survives kill -9)."""
        with self._lock:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self.sync()
                self._fh.close()


class Heartbeat:
    """``heartbeat.json``: written atomically on phase/step changes and by a ticker thread.

    ``updated_at`` says the process is alive (the ticker refreshes it);
    ``progress_at`` only moves when the work reports progress, which is what the
    stall detector measures against the per-phase limit.
    """

    def __init__(self, run_dir: str | Path, run_id: str, *, interval: float = 2.0):
        self.path = Path(run_dir) / HEARTBEAT_FILE
        self.interval = interval
        self._lock = threading.Lock()
        now = time.time()
        self.data: dict[str, Any] = {
            "v": SCHEMA_VERSION, "run_id": run_id, "pid": os.getpid(), "status": "running", "phase": "starting",
            "step": None, "step_name": None, "cycle": None, "n": None, "total": None, "message": None,
            "started_at": now, "updated_at": now, "progress_at": now, "seq": 0,
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_write = 0.0

    def update(self, *, progress: bool = True, force: bool = False, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
            now = time.time()
            self.data["updated_at"] = now
            if progress:
                self.data["progress_at"] = now
            # throttle the progress flood (trainer steps, exam items) to ~4 writes/s
            if force or now - self._last_write >= 0.25:
                self._write()

    def _write(self) -> None:
        self._last_write = time.time()
        try:
            atomic_write_json(self.path, self.data, fsync=False, indent=None)
        except OSError:
            pass  # a full disk must not kill the run from the heartbeat; the error path reports it

    def tick(self) -> None:
        with self._lock:
            self.data["updated_at"] = time.time()
            self._write()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bpllm-heartbeat", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def stop(self, **final: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self.data.update(final)
            self.data["updated_at"] = time.time()
            self._write()

    def age(self) -> float:
        return time.time() - float(self.data.get("updated_at") or 0)


def read_heartbeat(run_dir: str | Path) -> dict[str, Any] | None:
    """The heartbeat of a run, or None when there is none (yet) or it is unreadable (not UTF-8/JSON, or a
    field of the wrong type: readers do arithmetic on them)."""
    try:
        with open(Path(run_dir) / HEARTBEAT_FILE, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for key, kind in HEARTBEAT_TYPES.items():
        if data.get(key) is not None and not FIELD_KINDS[kind][1](data[key]):
            return None
    return data


def pid_alive(pid: int | None) -> bool:
    """Is a process with this pid running (and not a zombie)?"""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie answers kill(0) but is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def write_stop_request(run_dir: str | Path, *, source: str = "cli", message: str | None = None) -> Path:
    """Ask a running engine to stop gracefully (it polls this file at safe boundaries)."""
    path = Path(run_dir) / STOP_FILE
    atomic_write_json(path, {"requested_at": time.time(), "source": source, "pid": os.getpid(), "message": message})
    return path


def dump_line(event: Mapping[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, default=_json_default, separators=(",", ":"))


def stdout_mirror(enabled: bool) -> IO[str] | None:
    return sys.stdout if enabled else None
