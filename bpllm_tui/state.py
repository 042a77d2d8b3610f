"""What the dashboard knows about a run, folded from the engine's events.

Pure Python (no Textual). Steps, status and exit code come from the engine's own
fold (:class:`engine.runtime.reader.RunState`) so the TUI and ``bpllm status`` can never
disagree; this class adds what only a dashboard needs: the loss series, node
mastery, GPU history and a bounded log. The same fold rebuilds the picture when the
app attaches to a running engine (replaying ``events.jsonl``) and absorbs live
events. Widgets read it on a refresh tick, never per event, so a burst of thousands
of events costs one repaint (``versions`` tells each widget whether its area changed).
"""
from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from engine.resources import resource
from engine.runtime.reader import RunState as EngineRunState

LEVELS = ("debug", "info", "warning", "error")
# engine step status -> icon
STEP_ICONS = {
    "pending": "○",
    "running": "●",
    "complete": "✓",
    "error": "✗",
    "skip": "⏭",
    "stopped": "■",
}


@dataclass
class LogRecord:
    ts: float
    level: str  # debug | info | warning | error
    source: str  # engine | stdout | stderr | tui
    text: str


@dataclass
class GpuInfo:
    index: int
    name: str = ""
    role: str = ""
    torch_index: int | None = None
    used: float = 0.0  # bytes
    total: float = 0.0
    util: deque[float] = field(default_factory=lambda: deque(maxlen=120))
    temperature: float | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MasteryRow:
    node: str
    score: float  # 0..100
    n: int
    delta: float | None = None
    band: str = ""

    def __post_init__(self) -> None:
        if not self.band:
            # the engine's bands (engine/ml/grading.py), for rows that arrive without one
            self.band = ("production" if self.score >= 97 else "product" if self.score >= 95
                         else "mastered" if self.score >= 85 else "learning" if self.score >= 60 else "struggling")


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def step_sort_key(step_id: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in str(step_id).split("."))


class RunState:
    """The fold of one run's events plus the engine process's own output."""

    def __init__(self, log_lines: int = 5000) -> None:
        self.core = EngineRunState()
        self.run_dir: str | None = None
        self.process: str = "none"  # none | running | exited | dead (what we know of the engine process)
        self.process_note: str = ""
        self.stopping = False
        self.train: list[tuple[float, float]] = []  # (trainer step, loss)
        self.train_phase: str | None = None  # "base" (the tiny base's pretraining) | "sft" (the adapter's trainer)
        self.evals: list[tuple[float, float]] = []
        self.max_steps: int | None = None
        self.version: str | None = None
        self.mastery: dict[str, MasteryRow] = {}
        self.mastery_version: str | None = None
        self.mastery_kept = False  # the table is an earlier version's, kept until this run grades nodes
        self.gpus: dict[int, GpuInfo] = {}
        self.gpu_available: bool | None = None  # None: no sample yet
        self.gpu_reason: str = ""
        self.local_gpu: dict[str, Any] | None = None  # the TUI's own NVML sample (no engine needed)
        self.workspace_profile: str | None = None  # what the next run uses (bpllm.toml [run] or [tui] profile)
        self.host: dict[str, Any] = {}
        self.log: deque[LogRecord] = deque(maxlen=log_lines)
        self.log_total = 0
        self.exam_items: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self.eta_at: dict[str, tuple[float, float]] = {}  # step id -> (eta seconds, when reported)
        self.child_etas: dict[str, dict[str, float | None]] = {}  # group id -> {step to run: mean seconds}
        self._seeded: set[str] = set()
        self.stall: dict[str, Any] | None = None
        self.heartbeat: dict[str, Any] | None = None
        self.events = 0
        self.malformed = 0
        self.versions: dict[str, int] = {k: 0 for k in ("steps", "loss", "mastery", "gpu", "log", "status")}

    def seed_plan(self) -> None:
        """Show the canonical plan (all pending) until a run's own plan arrives."""
        if not self.core.plan:
            from engine.runtime.reader import StepState

            self.core.plan = load_plan()
            self._seeded = {p["id"] for p in self.core.plan}
            for p in self.core.plan:
                self.core.steps.setdefault(p["id"], StepState(p["id"], p["name"], parent=p.get("parent")))
            self._bump("steps")

    # ------------------------------------------------------------------ reading
    @property
    def run_id(self) -> str | None:
        return self.core.run_id

    @property
    def status(self) -> str:
        """idle | running | stopping | done | stopped | failed | dead."""
        core = self.core.status
        if core == "unknown":
            return "idle" if self.process != "running" else "running"
        if core == "running":
            if self.process == "dead":
                return "dead"
            return "stopping" if (self.stopping or self.core.stop_requested) else "running"
        return core

    @property
    def active(self) -> bool:
        return self.status in ("running", "stopping")

    @property
    def phase(self) -> str:
        if self.heartbeat and self.heartbeat.get("phase"):
            return str(self.heartbeat["phase"])
        return self.status

    def heartbeat_age(self, now: float | None = None) -> float | None:
        if not self.heartbeat:
            return None
        stamp = _num(self.heartbeat.get("updated_at"))
        if stamp is None:
            return None
        return max(0.0, (time.time() if now is None else now) - stamp)

    def progress_age(self, now: float | None = None) -> float | None:
        if not self.heartbeat:
            return None
        stamp = _num(self.heartbeat.get("progress_at"))
        return None if stamp is None else max(0.0, (time.time() if now is None else now) - stamp)

    def elapsed(self, now: float | None = None) -> float | None:
        start = _num(self.core.started_at)
        if start is None:
            return None
        end = _num(self.core.ended_at)
        if end is None:
            end = time.time() if now is None else now
        return max(0.0, end - start)

    def eta(self, step_id: str | None = None, now: float | None = None) -> float | None:
        """Seconds left in a step (default: the current one). A step: the engine's last ETA for it (measured
        progress, or the mean of its last 10 durations) minus the time since the engine said so. A group:
        its running step's ETA plus the means of its steps still to come, so a parent never promises less
        than its running child (or, without those means, the larger of its own estimate and its child's)."""
        sid = step_id or self.core.current_step or ""
        if self.status not in ("running", "stopping") or self.step_status(sid) != "running":
            return None
        now = time.time() if now is None else now
        if sid in self.child_etas or any(s.parent == sid for s in self.core.steps.values()):
            return self._group_eta(sid, now)
        return self._reported_eta(sid, now)

    def _reported_eta(self, sid: str, now: float) -> float | None:
        reported = self.eta_at.get(sid)
        if reported is None:
            return None
        eta, at = reported
        return eta - (now - at)  # negative: running longer than usual

    def _group_eta(self, gid: str, now: float) -> float | None:
        own = self._reported_eta(gid, now)
        group = self.core.steps.get(gid)
        since = _num(group.started_at) if group else None
        plan = self.child_etas.get(gid)
        children = plan if plan is not None else {s.id: None for s in self.core.steps.values() if s.parent == gid}
        total, known, running = 0.0, plan is not None, None
        for cid, mean in children.items():
            child = self.core.steps.get(cid)
            status = self.step_status(cid)
            started = _num(child.started_at) if child else None
            this_time = started is not None and (since is None or started >= since)
            if status == "running" and this_time:
                left = self._reported_eta(cid, now)
                if left is None:
                    known = False
                else:
                    running = max(0.0, left)
                    total += running
            elif this_time and status in ("complete", "skip", "error", "stopped"):
                continue
            elif mean is None:
                known = False
            else:
                total += float(mean)
        if known:
            return total
        if own is None:
            return running
        return own if running is None else max(own, running)

    def eta_text(self, step_id: str | None = None, now: float | None = None) -> str:
        eta = self.eta(step_id, now)
        if eta is None:
            return "—"
        return format_duration(eta) if eta >= 0 else f"+{format_duration(-eta)} over"

    def step_status(self, step_id: str) -> str:
        step = self.core.steps.get(step_id)
        if step is None:
            return "pending"
        if step.status == "running" and not self.active:
            return "stopped"
        return step.status

    # ------------------------------------------------------------------ writing
    def _bump(self, *areas: str) -> None:
        for area in areas:
            self.versions[area] += 1

    def add_log(self, text: str, level: str = "info", source: str = "engine", ts: float | None = None) -> None:
        level = (level or "info").lower()
        level = {"warn": "warning", "critical": "error", "fatal": "error"}.get(level, level)
        if level not in LEVELS:
            level = "info"
        self.log.append(LogRecord(ts if ts is not None else time.time(), level, source, str(text).rstrip("\n")))
        self.log_total += 1
        self._bump("log")

    def set_heartbeat(self, beat: dict[str, Any] | None) -> None:
        if beat != self.heartbeat:
            self.heartbeat = beat
            self._bump("status")

    def set_process(self, process: str, note: str = "") -> None:
        if (process, note) != (self.process, self.process_note):
            self.process, self.process_note = process, note
            self._bump("status", "steps")

    def apply_many(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, e: dict[str, Any]) -> None:
        self.events += 1
        self.core.apply(e)
        kind = e.get("type")
        ts = _num(e.get("ts")) or time.time()
        if kind == "step":
            self._bump("steps", "status")
            if e.get("eta") is not None and _num(e.get("eta")) is not None:
                self.eta_at[str(e.get("id"))] = (float(e["eta"]), ts)
            if e.get("status") == "start" and isinstance(e.get("child_etas"), dict):
                self.child_etas[str(e.get("id"))] = {str(k): _num(v) for k, v in e["child_etas"].items()}
            line = _step_line(e)
            if line is not None:
                self.add_log(line[1], line[0], "engine", ts)
        elif kind == "run":
            for p in e.get("plan") or ():  # names/parents as this run defines them
                if isinstance(p, dict) and p.get("id") in self.core.steps:
                    self.core.steps[p["id"]].name = str(p.get("name") or self.core.steps[p["id"]].name)
                    self.core.steps[p["id"]].parent = p.get("parent")
            if e.get("plan") and self._seeded:  # the run's own plan replaces the shipped one
                keep = {p.get("id") for p in e["plan"] if isinstance(p, dict)}
                for sid in self._seeded - keep:
                    if self.core.steps.get(sid) is not None and self.core.steps[sid].status == "pending":
                        del self.core.steps[sid]
                self._seeded = set()
            if e.get("phase") in ("start", "resume"):
                self.stopping = False
                self.stall = None
            line = _run_line(e)
            if line is not None:  # the run's lifecycle is in the log a re-attach rebuilds, not only live
                self.add_log(line[1], line[0], "engine", ts)
            self._bump("steps", "status")
        elif kind == "log":
            self.add_log(str(e.get("message", "")), str(e.get("level", "info")), str(e.get("source") or "engine"), ts)
        elif kind == "train":
            loss = _num(e.get("loss"))
            step = _num(e.get("step"))
            if e.get("max_steps"):
                self.max_steps = int(e["max_steps"])
            if e.get("version"):
                self.version = str(e["version"])
            phase = "base" if e.get("phase") == "base" else "sft"
            if loss is not None and step is not None:
                if self.train and (step < self.train[-1][0] or phase != self.train_phase):
                    self.train.clear()  # a new training run (the adapter after the base, the next version)
                    self.evals.clear()
                self.train_phase = phase
                self.train.append((step, loss))
                self._bump("loss")
            self._bump("status")
        elif kind == "eval":
            loss = _num(e.get("eval_loss"))
            step = _num(e.get("step"))
            if loss is not None and step is not None:
                self.evals.append((step, loss))
                self._bump("loss")
        elif kind == "mastery":
            self._apply_mastery(e)
        elif kind == "gpu":
            self._apply_gpu(e)
        elif kind == "exam_item":
            self.exam_items.append(e)
        elif kind == "artifact":
            self.artifacts.append(e)
            if e.get("kind") in ("lesson_draft", "exam"):
                self.add_log(f"{e.get('kind')} written: {e.get('path')}", "info", "engine", ts)
        elif kind == "error":
            hint = f" — {e['hint']}" if e.get("hint") else ""
            self.add_log(f"[{e.get('category')}] {e.get('message')}{hint}", "error", "engine", ts)
        elif kind == "retry":
            self.add_log(f"retry {e.get('step')} attempt {e.get('attempt')}/{e.get('max_attempts')}"
                         f" {e.get('message') or ''} {e.get('changes') or ''}".rstrip(), "warning", "engine", ts)
        elif kind == "stop_requested":
            self.stopping = True
            self.add_log(f"stop requested ({e.get('source')}); the engine stops at the next safe boundary",
                         "warning", "engine", ts)
            self._bump("status")
        elif kind == "stall":
            self.stall = e
            self.add_log(f"stall: no progress in {e.get('phase')} for {_num(e.get('age_s')) or 0:.0f}s "
                         f"(limit {_num(e.get('limit_s')) or 0:.0f}s, {e.get('action', 'warn')})", "warning", "engine", ts)
            self._bump("status")
        elif kind == "health":
            if e.get("severity") in ("warning", "critical"):
                self.add_log(f"health {e.get('check')}: {e.get('message')}",
                             "error" if e.get("severity") == "critical" else "warning", "engine", ts)
        elif kind == "checkpoint":
            self.add_log(f"checkpoint saved: {e.get('path')}", "info", "engine", ts)
        elif kind == "backup":
            self.add_log(f"backup {e.get('action') or 'create'} {e.get('name')} ({e.get('tier')})", "info", "engine", ts)

    def note_malformed(self, description: str) -> None:
        self.malformed += 1
        self.add_log(f"unreadable event line: {description}", "warning", "tui")

    def _apply_mastery(self, e: dict[str, Any]) -> None:
        nodes = e.get("nodes")
        if isinstance(nodes, dict):  # tolerate {name: score}
            nodes = [{"node": k, "score": v} for k, v in nodes.items()]
        if not isinstance(nodes, list):
            return
        self.mastery_version = str(e.get("version")) if e.get("version") else self.mastery_version
        previous = self.mastery
        if self.mastery_kept:  # this run's first table replaces the kept one (its nodes may differ)
            self.mastery, self.mastery_kept = {}, False
        for item in nodes:
            if not isinstance(item, dict) or not item.get("node"):
                continue
            score = _num(item.get("score"))
            if score is None:
                continue
            if score <= 1.0 and all(
                (_num(i.get("score")) or 0) <= 1.0 for i in nodes if isinstance(i, dict)
            ):
                score *= 100.0  # fractions: show as percent like the engine's bands
            name = str(item["node"])
            old = previous.get(name)
            delta = _num(item.get("delta"))
            if delta is None and old is not None and old.score != score:
                delta = score - old.score
            self.mastery[name] = MasteryRow(name, score, int(_num(item.get("n")) or 0), delta, str(item.get("band") or ""))
        self._bump("mastery")

    def keep_mastery(self, rows: Iterable[dict[str, Any]], version: str | None) -> None:
        """Show an earlier version's table (the history store's latest, or the previous run's) until this
        run's grading sends its own."""
        table = {}
        for r in rows:
            score = _num(r.get("score"))
            if r.get("node") and score is not None:
                table[str(r["node"])] = MasteryRow(str(r["node"]), score, int(_num(r.get("n")) or 0),
                                                   _num(r.get("delta")), str(r.get("band") or ""))
        if table and not self.mastery:
            self.mastery, self.mastery_version, self.mastery_kept = table, version, True
            self._bump("mastery")

    def set_local_gpu(self, sample: dict[str, Any]) -> None:
        """The TUI's own NVML reading (shown whenever no engine is sampling)."""
        if sample != self.local_gpu:
            self.local_gpu = sample
            self._bump("gpu")

    def _apply_gpu(self, e: dict[str, Any]) -> None:
        for key in ("cpu_percent", "ram_used", "ram_total", "load_avg"):
            if key in e:
                self.host[key] = e[key]
        devices = e.get("devices") or []
        self.gpu_available = bool(e.get("available")) and bool(devices)
        self.gpu_reason = str(e.get("reason") or "")
        for d in devices:
            if not isinstance(d, dict):
                continue
            idx = int(_num(d.get("index")) or 0)
            gpu = self.gpus.setdefault(idx, GpuInfo(idx))
            gpu.name = str(d.get("name") or gpu.name)
            gpu.role = str(d.get("role") or gpu.role)
            ti = d.get("torch_index")
            gpu.torch_index = int(ti) if isinstance(ti, int) and not isinstance(ti, bool) else None
            gpu.used = _num(d.get("mem_used")) or 0.0
            gpu.total = _num(d.get("mem_total")) or gpu.total
            util = _num(d.get("util"))
            if util is not None:
                gpu.util.append(util)
            gpu.temperature = _num(d.get("temp"))
            procs = d.get("processes")
            gpu.processes = [p for p in procs if isinstance(p, dict)] if isinstance(procs, list) else []
        self._bump("gpu")


_STEP_WORD = {"start": "STARTING", "complete": "COMPLETE", "error": "ERROR", "skip": "SKIPPED"}


def _step_line(e: dict[str, Any]) -> tuple[str, str] | None:
    """The console line of a step event (progress events are shown in the tree, not the log)."""
    word = _STEP_WORD.get(str(e.get("status")))
    if word is None:
        return None
    text = f"[STEP {e.get('id')}] {word}: {e.get('name', '')}"
    if word == "COMPLETE" and e.get("duration") is not None:
        text += f" ({float(e['duration']):.1f}s)"
    elif word == "ERROR" and e.get("message"):
        text += f" — {e['message']}"
    elif word == "SKIPPED" and e.get("reason"):
        text += f" — {e['reason']}"
    level = "error" if word == "ERROR" else "debug" if word == "SKIPPED" else "info"
    return level, text


def _run_line(e: dict[str, Any]) -> tuple[str, str] | None:
    """The log line of a run lifecycle event (start, resume, end)."""
    phase = e.get("phase")
    if phase == "start":
        return "info", f"run {e.get('run_id')} started (profile {e.get('profile') or '?'})"
    if phase == "resume":
        where = f" from step {e['resume_from']}" if e.get("resume_from") else ""
        return "info", f"run {e.get('run_id')} resumed{where}"
    if phase == "end":
        status = str(e.get("status") or "failed")
        message = f": {e['message']}" if e.get("message") else ""
        return ("error" if status == "failed" else "info"), f"run {status} (exit {e.get('exit_code')}){message}"
    return None


def load_plan() -> list[dict[str, Any]]:
    """The canonical step plan shipped as data (shown before any run exists)."""
    path = resource("data", "step_plan.json")
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("steps", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [{"id": str(s["id"]), "name": str(s.get("name", "")), "parent": s.get("parent")}
            for s in steps if isinstance(s, dict) and s.get("id")]


def ema_debiased(values: list[float], beta: float = 0.9) -> list[float]:
    """TensorBoard-style smoothing: the EMA divided by (1 - beta^t) so early points are not pulled to 0."""
    out: list[float] = []
    avg = 0.0
    for t, v in enumerate(values, start=1):
        avg = beta * avg + (1.0 - beta) * v
        out.append(avg / (1.0 - beta**t))
    return out


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def format_bytes(n: float | None) -> str:
    if not n:
        return "0"
    gib = n / 2**30
    return f"{gib:.1f} GiB" if gib >= 1 else f"{n / 2**20:.0f} MiB"
