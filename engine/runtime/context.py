"""The seam between the orchestrator and the steps: StepContext and the step registry.

A step is ``fn(ctx: StepContext) -> dict | None``, registered under its canonical id
("1.5", "4.3", …).  The orchestrator runs the selected leaf steps in plan order,
emits their start/complete/error events, retries retryable failures, and persists
``ctx.state`` so ``bpllm resume`` continues from the first incomplete step.

The ML steps (3–7) live in ``engine/ml/steps.py`` which exposes
``register_steps(registry: StepRegistry) -> None``.  See docs/engine.md.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dsl.errors import StopRequested
from engine.workspace.backup import create_backup

if TYPE_CHECKING:  # pragma: no cover
    from engine.runtime.events import EventWriter, Heartbeat
    from engine.runtime.plan import Plan, Step
    from engine.workspace.history import History
    from engine.workspace.workspace import Workspace
    from dsl.config import Config, ProfileSettings


class StepSkipped(Exception):
    """Raise (or call ``ctx.skip(reason)``) to end a step as ``skip`` with a reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


StepFn = Callable[["StepContext"], "dict[str, Any] | None"]


@dataclass
class Registration:
    id: str
    fn: StepFn
    needs: tuple[str, ...] = ()
    retry: bool = True  # False: never retried, even for retryable categories
    owner: str = "engine"


class StepRegistry:
    """step id -> Registration.  ``needs`` names steps whose in-memory results this one
    uses (e.g. 4.3 needs 3.4–3.6): on resume, those are re-run first in the new process."""

    def __init__(self, plan: "Plan"):
        self.plan = plan
        self._regs: dict[str, Registration] = {}
        self.ml_status: str | None = None  # why the ML steps are absent, when they are

    def register(self, step_id: str, fn: StepFn | None = None, *, needs: tuple[str, ...] | list[str] = (),
                 retry: bool = True, owner: str = "engine") -> Any:
        if step_id not in self.plan:
            raise KeyError(f"cannot register unknown step id {step_id!r} (see data/step_plan.json)")
        if self.plan[step_id].is_group:
            raise KeyError(f"step {step_id} is a group; register its sub-steps ({step_id}.1 …)")
        for n in needs:
            if n not in self.plan:
                raise KeyError(f"step {step_id} needs unknown step {n!r}")

        def deco(f: StepFn) -> StepFn:
            self._regs[step_id] = Registration(step_id, f, tuple(needs), retry, owner)
            return f

        return deco(fn) if fn is not None else deco

    def get(self, step_id: str) -> Registration | None:
        return self._regs.get(step_id)

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._regs

    def ids(self) -> list[str]:
        return [s.id for s in self.plan.leaves if s.id in self._regs]


@dataclass
class StepContext:
    """What a step gets.  One context per run; ``step``/``attempt`` change per step."""

    workspace: "Workspace"
    config: "Config"
    profile: str
    run_id: str
    run_dir: Path
    events: "EventWriter"
    heartbeat: "Heartbeat"
    history: "History"
    plan: "Plan"
    state: dict[str, Any]  # persisted in runs/<id>/state.json (JSON-serialisable values only)
    cycle: int = 1
    cycles: int = 1
    step: "Step | None" = None
    attempt: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)  # OOM halving etc.; persisted in state
    # settings the ML code actually used (batch_size, grad_accum, max_seq_len, lora_r, lora_alpha):
    # the OOM policy halves from these when the profile table does not name them; persisted in state
    effective: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # in-memory, this process only
    _stop_check: Callable[[], bool] = field(default=lambda: False, repr=False)
    _save_state: Callable[[], None] = field(default=lambda: None, repr=False)
    _boundary: Callable[[], None] = field(default=lambda: None, repr=False)  # the watchdog backup, when due
    _progress_t0: float = field(default=0.0, repr=False)
    _progress_base: tuple[float, float, int] | None = field(default=None, repr=False)  # (step t0, since, n)
    _last_progress_emit: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- settings ---------------------------------------------------------------
    @property
    def profile_config(self) -> "ProfileSettings":
        """The ``[profiles.<profile>]`` table of bpllm.toml (may be empty; ML code merges defaults)."""
        return self.config.profile(self.profile)

    def setting(self, key: str, default: Any = None) -> Any:
        """overrides (OOM retries) > [profiles.<profile>] > default."""
        if key in self.overrides:
            return self.overrides[key]
        return self.profile_config.get(key, default)

    @property
    def step_state(self) -> dict[str, Any]:
        """Persisted state private to the current step in this cycle (e.g. last checkpoint path)."""
        key = f"{self.cycle}:{self.step.id if self.step else '-'}"
        return self.state.setdefault("steps", {}).setdefault(key, {})

    # --- reporting ----------------------------------------------------------------
    def emit(self, type: str, **payload: Any) -> dict[str, Any]:
        """Write any event of engine/runtime/events.py; marks progress for the stall detector."""
        if type in ("train", "eval", "exam_item", "checkpoint", "mastery", "exam_summary"):
            payload.setdefault("cycle", self.cycle)
        ev = self.events.emit(type, **payload)
        self.heartbeat.update(seq=ev["seq"])
        return ev

    def log(self, message: str, level: str = "info", **extra: Any) -> None:
        self.emit("log", level=level, message=message, step=self.step.id if self.step else None,
                  cycle=self.cycle, **extra)

    def progress(self, n: int, total: int | None, message: str | None = None, *, unit: str | None = None,
                 force: bool = False, eta_cap: float | None = None) -> None:
        """Report progress n/total of the current step: heartbeat always; a ``step`` progress event
        at most every 0.5 s (and always for the last item, or with force=True). ``eta_cap``: the seconds
        left before the step stops on its own time cap (the ETA never exceeds it)."""
        now = time.time()
        eta = self._eta(now, n, total)
        if eta_cap is not None:
            eta = round(max(0.0, min(eta, eta_cap) if eta is not None else eta_cap), 1)
        self.heartbeat.update(n=n, total=total, message=message)
        if force or (total is not None and n >= total) or now - self._last_progress_emit >= 0.5:
            self._last_progress_emit = now
            assert self.step is not None
            self.emit("step", id=self.step.id, name=self.step.name, parent=self.step.parent, status="progress",
                      n=n, total=total, message=message, unit=unit, eta=eta, cycle=self.cycle)

    def _eta(self, now: float, n: int, total: int | None) -> float | None:
        """Seconds left at the rate measured in this process: a fresh step reports 0 or 1 first and is
        timed from its start; a resumed one (a trainer continuing at step 100 of 300) first reports where
        it resumed, and is timed from that report, so work done before the resume never speeds it up."""
        if not total or not self._progress_t0:
            return None
        base = self._progress_base
        if base is None or base[0] != self._progress_t0:  # the first report of this step
            base = (self._progress_t0, self._progress_t0, 0) if n <= 1 else (self._progress_t0, now, n)
            self._progress_base = base
        done = n - base[2]
        if done <= 0:
            return None
        return round((now - base[1]) / done * max(0, total - n), 1)

    def phase(self, phase: str) -> None:
        """Switch the heartbeat phase (selects the stall limit): loading, training, exam, …"""
        self.heartbeat.update(phase=phase, force=True)

    def health(self, check: str, severity: str, message: str, *, key: str | None = None,
               value: float | None = None, threshold: float | None = None, scope: str | None = None,
               version: str | None = None) -> int:
        """Emit a ``health`` event and record the alert (idempotent: re-running counts it again,
        never hides it).  Returns how many times this alert has been seen."""
        key = key or check
        count = 1
        if severity != "info":
            count = self.history.record_alert(key, scope or version or self.run_id, check, severity, message,
                                              value=value, threshold=threshold, run_id=self.run_id)
        self.emit("health", check=check, severity=severity, message=message, key=key, value=value,
                  threshold=threshold, step=self.step.id if self.step else None, version=version, cycle=self.cycle)
        return count

    def artifact(self, kind: str, path: str | Path, message: str | None = None, **extra: Any) -> None:
        self.emit("artifact", kind=kind, path=str(path), message=message,
                  step=self.step.id if self.step else None, cycle=self.cycle, **extra)

    # --- control ------------------------------------------------------------------
    def check_stop(self) -> None:
        """A safe boundary: raise StopRequested if a graceful stop was requested.
        Call between exam prompts, at trainer step ends (after saving a checkpoint), etc.
        A watchdog backup that is due is taken here (files are consistent at a safe boundary)."""
        self.heartbeat.update()
        self._boundary()
        if self._stop_check():
            raise StopRequested()

    @property
    def stop_requested(self) -> bool:
        """Like check_stop() without raising: also a safe boundary (trainers poll it per step)."""
        self._boundary()
        return self._stop_check()

    def save_state(self) -> None:
        """Persist ``ctx.state`` now (the orchestrator also does it at every step boundary)."""
        self._save_state()

    def skip(self, reason: str) -> None:
        raise StepSkipped(reason)

    def resource(self, name: str, factory: Callable[[], Any]) -> Any:
        """An in-memory object shared between steps of this process (model, tokenizer …)."""
        with self._lock:
            if name not in self.cache:
                self.cache[name] = factory()
            return self.cache[name]

    def backup(self, tier: str, label: str | None = None) -> dict[str, Any]:
        """Take a verified backup of the workspace (tiers: milestone, pre_train, scheduled)."""
        return create_backup(self.workspace, tier, label=label or (self.step.id if self.step else None),
                             events=self.events, step=self.step.id if self.step else None)
