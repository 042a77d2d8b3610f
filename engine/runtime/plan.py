"""The canonical step plan (data/step_plan.json), step selection, ETAs and console lines.

Step numbers are data: the plan file names every group (1 … 9) and sub-step
(1.1 … 9.5) with its phase (which heartbeat phase / stall limit applies) and its
owner (engine or ml).  This module turns ``--only`` / ``--from`` into the list of
leaf steps to run, keeps the last 10 durations of every step for ETAs, and
formats the human console lines ``[HH:MM:SS] [STEP X.Y] STARTING: …``.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from engine.atomic import atomic_write_json, read_json
from engine.resources import resource

PLAN_PATH = resource("data", "step_plan.json")
TIMING_KEEP = 10


@dataclass(frozen=True)
class Step:
    id: str
    name: str
    parent: str | None
    phase: str
    owner: str

    @property
    def is_group(self) -> bool:
        return self.parent is None

    @property
    def group(self) -> str:
        return self.parent or self.id

    def key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.id.split("."))

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "parent": self.parent, "phase": self.phase, "owner": self.owner}


class Plan:
    """The ordered plan; ``plan[id]`` → Step."""

    def __init__(self, steps: Iterable[Step]):
        self.steps: list[Step] = sorted(steps, key=Step.key)
        self.by_id = {s.id: s for s in self.steps}

    def __getitem__(self, sid: str) -> Step:
        return self.by_id[sid]

    def __contains__(self, sid: object) -> bool:
        return sid in self.by_id

    @property
    def groups(self) -> list[Step]:
        return [s for s in self.steps if s.is_group]

    def children(self, gid: str) -> list[Step]:
        return [s for s in self.steps if s.parent == gid]

    @property
    def leaves(self) -> list[Step]:
        return [s for s in self.steps if not s.is_group]

    def select(self, only: str | Iterable[str] | None = None, from_step: str | None = None) -> list[Step]:
        """Leaf steps to run, in canonical order.

        ``only``: comma-separated group or step ids (``"1,2,8,9"``, ``"4.3"``);
        ``from_step``: skip every leaf before this id (a group id means its first leaf).
        Unknown ids raise ValueError naming them and the valid ones.
        """
        leaves = self.leaves
        if only:
            ids = [x.strip() for x in (only.split(",") if isinstance(only, str) else only) if x.strip()]
            bad = [x for x in ids if x not in self.by_id]
            if bad:
                raise ValueError(f"unknown step id(s) {', '.join(bad)} in --only; valid: groups 1-9 "
                                 f"or sub-steps like 1.1 … 9.5 (see `bpllm run --list-steps`)")
            wanted = set(ids)
            leaves = [s for s in leaves if s.id in wanted or s.parent in wanted]
        if from_step:
            if from_step not in self.by_id:
                raise ValueError(f"unknown step id {from_step!r} in --from (valid: 1 … 9.5)")
            start = self.by_id[from_step]
            first = self.children(start.id)[0] if start.is_group else start
            leaves = [s for s in leaves if s.key() >= first.key()]
        return leaves


@lru_cache(maxsize=4)
def load_plan(path: str | None = None) -> Plan:
    p = Path(path) if path else PLAN_PATH
    data = json.loads(p.read_text(encoding="utf-8"))
    steps = [Step(s["id"], s["name"], s.get("parent"), s.get("phase", "data"), s.get("owner", "engine"))
             for s in data["steps"]]
    plan = Plan(steps)
    for s in plan.steps:  # the plan is data; a typo in it must not pass silently
        if s.parent is not None and s.parent not in plan:
            raise ValueError(f"{p}: step {s.id} names unknown parent {s.parent}")
    return plan


class StepTimings:
    """Last :data:`TIMING_KEEP` durations per step id, persisted atomically (workspace-wide)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            data = read_json(self.path, {}) or {}
        except ValueError:
            data = {}  # a corrupt timing file only costs ETAs; it is rewritten on the next step
        self.data: dict[str, list[float]] = {k: [float(x) for x in v][-TIMING_KEEP:]
                                             for k, v in data.items() if isinstance(v, list)}

    def eta(self, step_id: str) -> float | None:
        durations = self.data.get(step_id)
        if not durations:
            return None
        return round(sum(durations) / len(durations), 2)

    def record(self, step_id: str, duration: float) -> None:
        with self._lock:
            hist = self.data.setdefault(step_id, [])
            hist.append(round(float(duration), 3))
            del hist[:-TIMING_KEEP]
            atomic_write_json(self.path, self.data, fsync=False)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {sec}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def console_line(kind: str, step_id: str | None, text: str, ts: float | None = None) -> str:
    """``[HH:MM:SS] [STEP X.Y] KIND: text`` (kind STARTING|COMPLETE|PROGRESS|ERROR|RETRY|SKIPPED),
    or ``[HH:MM:SS] [LEVEL] text`` for plain log lines (step_id None)."""
    clock = time.strftime("%H:%M:%S", time.localtime(ts if ts is not None else time.time()))
    if step_id is None:
        return f"[{clock}] [{kind}] {text}"
    return f"[{clock}] [STEP {step_id}] {kind}: {text}"


def console_line_for_event(ev: dict) -> str | None:
    """The console line an event prints, or None for events that print nothing."""
    t, ts = ev.get("type"), ev.get("ts")
    if t == "step":
        st, sid, name = ev.get("status"), ev.get("id"), ev.get("name", "")
        if st == "start":
            eta = ev.get("eta")
            suffix = f" | ETA: {format_duration(eta)}" if eta is not None else ""
            rerun = " (re-run for resume)" if ev.get("rerun") else ""
            return console_line("STARTING", sid, f"{name}{rerun}{suffix}", ts)
        if st == "progress":
            unit = f" {ev['unit']}s" if ev.get("unit") else ""
            msg = f" {ev['message']}" if ev.get("message") else ""
            eta = f" | ETA: {format_duration(ev['eta'])}" if ev.get("eta") is not None else ""
            return console_line("PROGRESS", sid, f"{ev.get('n')}/{ev.get('total')}{unit}{msg}{eta}", ts)
        if st == "complete":
            return console_line("COMPLETE", sid, f"{name} ({format_duration(ev.get('duration'))})", ts)
        if st == "error":
            return console_line("ERROR", sid, f"{name}: {ev.get('message', '')}", ts)
        if st == "skip":
            return console_line("SKIPPED", sid, f"{name}: {ev.get('reason', '')}", ts)
        if st == "stopped":
            return console_line("STOPPED", sid, f"{name}: {ev.get('message', '')}", ts)
    if t == "retry":
        changes = ev.get("changes") or {}
        ch = ", ".join(f"{k} {v[0]} -> {v[1]}" if isinstance(v, (list, tuple)) and len(v) == 2 else f"{k}={v}"
                       for k, v in changes.items())
        delay = ev.get("delay_s")
        text = f"attempt {ev.get('attempt')}/{ev.get('max_attempts')}"
        text += f" in {format_duration(delay)}" if delay else ""
        text += f" ({ch})" if ch else ""
        text += f" after {ev['category']}" if ev.get("category") else ""
        return console_line("RETRY", ev.get("step"), text, ts)
    if t == "log":
        return console_line(str(ev.get("level", "info")).upper(), None, str(ev.get("message", "")), ts)
    if t == "error" and not ev.get("step"):
        return console_line("ERROR", None, f"{ev.get('category')}: {ev.get('message')}", ts)
    if t == "stop_requested":
        return console_line("STOP", None, f"stop requested ({ev.get('source')}); stopping at the next safe boundary", ts)
    if t == "stall":
        return console_line("STALL", None, f"no progress in {ev.get('phase')} for {format_duration(ev.get('age_s'))}"
                                            f" (limit {format_duration(ev.get('limit_s'))}, {ev.get('action')})", ts)
    if t == "health" and ev.get("severity") != "info":
        return console_line("HEALTH", None, f"{ev.get('severity')}: {ev.get('check')}: {ev.get('message')}", ts)
    if t == "backup":
        notes = []
        if ev.get("skipped"):
            notes.append(f"{len(ev['skipped'])} link(s) not followed")
        if ev.get("cleaned"):
            notes.append(f"removed {len(ev['cleaned'])} failed backup leftover(s)")
        if ev.get("mirror_error"):
            notes.append(str(ev["mirror_error"]))
        return console_line("BACKUP", None, f"{ev.get('action', 'create')} {ev.get('tier')} {ev.get('name')}"
                                             f" ({ev.get('files')} files)" + "".join(f"; {n}" for n in notes), ts)
    if t == "run" and ev.get("phase") == "end":
        return console_line("RUN", None, f"{ev.get('status')} (exit {ev.get('exit_code')})"
                                          f"{': ' + ev['message'] if ev.get('message') else ''}", ts)
    return None
