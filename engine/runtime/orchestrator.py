"""The headless teaching-loop orchestrator behind ``bpllm run`` and ``bpllm resume``.

It owns the run: lock, run directory, events, heartbeat, console, resume state,
stop handling, retries and the stall watchdog.  Steps only see a StepContext.

Exit codes: 0 done, 2 stopped on request, 1 failed.
"""
from __future__ import annotations

import _thread
import errno
import gc
import importlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from engine.atomic import atomic_write_json, clean_temp_files, read_json
from engine.runtime import builtin_steps as steps_builtin
from engine.runtime.context import StepContext, StepRegistry, StepSkipped, StopRequested
from engine.runtime.diskspace import DiskReserve, disk_full_message, free_space, is_disk_full, remove_stale_reserves
from engine.runtime.events import STOP_FILE, EventWriter, Heartbeat
from engine.runtime.failures import Classified, StallTimeout, backoff_delay, classify, oom_adjust
from engine.runtime.plan import Plan, Step, StepTimings, console_line_for_event, load_plan
from engine.runtime.telemetry import TelemetryThread
from engine.workspace.backup import BackupError, clean_partials, create_backup
from engine.workspace.config import ConfigError
from engine.workspace.history import History
from engine.workspace.lock import LockBusy, WorkspaceLock, stale_message
from engine.workspace.safe_paths import id_problem
from engine.workspace.workspace import Workspace

EXIT_DONE, EXIT_FAILED, EXIT_STOPPED = 0, 1, 2
STATE_FILE = "state.json"
CONSOLE_FILE = "console.log"
ML_MODULE = "engine.ml.steps"
ENV_ML_MODULE = "BPLLM_ML_MODULE"  # another module exposing register_steps (alternate ML stacks, tests)
# Test-only knobs (documented in docs/engine.md): slow a step down, or make it raise a real error.
ENV_SLOW = "BPLLM_TEST_SLOW_STEPS"      # "1.3=2.5,8.2=1"   seconds spent in the step, in 0.1 s slices
ENV_INJECT = "BPLLM_TEST_INJECT"        # "2.3=cuda_oom*2"   raise that category's real exception N times
# SIGTERM/SIGINT first ask for a graceful stop at the step's next safe boundary; a step that has not
# reached one this many seconds later is interrupted (Python code only: the watchdog's mechanism) and
# re-run by `bpllm resume`. A service manager sends SIGKILL soon after SIGTERM (docker: 10 s), and a
# signal-stopped engine must still write its final records first. `bpllm stop` waits for the boundary.
SIGNAL_STOP_GRACE_S = 10.0


class StallAbort(BaseException):
    """Raised in the main thread (via SIGUSR2) when the watchdog gives up on a stalled step, or on a step
    that outlived a signal's stop grace (a BaseException: a step's broad ``except Exception`` cannot eat it)."""


class StepFailed(Exception):
    def __init__(self, step: Step, info: Classified):
        super().__init__(f"step {step.id} failed: {info.category}: {info.message}")
        self.step = step
        self.info = info


def new_run_id() -> str:
    """Sortable by start time to the millisecond (the latest run is the last name), plus a random tail."""
    now = time.time()
    millis = int(now * 1000) % 1000
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{millis:03d}{secrets.token_hex(1)}"


def build_registry(plan: Plan) -> StepRegistry:
    """The engine's own steps, then whatever engine.ml.steps registers (if installed)."""
    reg = StepRegistry(plan)
    steps_builtin.register_steps(reg)
    name = os.environ.get(ENV_ML_MODULE) or ML_MODULE
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        parents = {name.rsplit(".", i)[0] for i in range(name.count(".") + 1)}
        if exc.name not in parents:
            reg.ml_status = f"{name} could not be imported: missing module {exc.name!r}"
        else:
            reg.ml_status = f"{name} is not installed (the ML steps 3-7); not faked"
        return reg
    except Exception as exc:  # noqa: BLE001 - a broken ML module must not kill data steps
        reg.ml_status = f"{name} failed to import: {type(exc).__name__}: {exc}"
        return reg
    register = getattr(mod, "register_steps", None)
    if register is None:
        reg.ml_status = f"{name} has no register_steps(registry)"
    else:
        register(reg)
    return reg


class Runner:
    """One engine process driving one run (fresh or resumed)."""

    def __init__(self, ws: Workspace, *, events_stdout: bool = False, console: IO[str] | None = None,
                 quiet: bool = False):
        self.ws = ws
        self.events_stdout = events_stdout
        self.console = console if console is not None else (sys.stderr if events_stdout else sys.stdout)
        self.quiet = quiet
        self.plan = load_plan()
        self._stop = threading.Event()
        self._stop_source: str | None = None
        self._stop_emitted = False
        self._stop_lock = threading.Lock()
        self._stop_message: str | None = None
        self._stop_step: str | None = None
        self._stall_abort: dict[str, Any] | None = None
        self._in_step: Step | None = None
        self._stall_warned_at: float | None = None
        self._watch_stop = threading.Event()
        self._sigint_count = 0
        self._signal_stop_at: float | None = None  # monotonic time of the SIGTERM/SIGINT that asked to stop
        self._signal_name = "a signal"
        self._forced_stop = False  # the watchdog interrupted a step that outlived SIGNAL_STOP_GRACE_S
        self._unwritten: list[str] = []  # final records a full disk kept out (reported in one line)
        self._fresh_run_dir: Path | None = None  # a new run's directory, removed if its setup fails
        self.ran_in_process: set[str] = set()
        self._next_watchdog_backup = float("inf")
        self._backing_up = False
        self._run_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ entry points
    def start(self, *, profile: str | None = None, cycles: int | None = None, only: str | None = None,
              from_step: str | None = None) -> int:
        try:
            cfg = self.ws.config
        except ConfigError as exc:
            self._print_err(str(exc))
            return EXIT_FAILED
        profile = profile or cfg.run.profile
        cycles = cycles or cfg.run.cycles
        try:
            selected = self.plan.select(only, from_step)
        except ValueError as exc:
            self._print_err(f"bpllm run: {exc}")
            return EXIT_FAILED
        if not selected:
            self._print_err("bpllm run: the step selection is empty")
            return EXIT_FAILED
        run_id = new_run_id()
        state = {"run_id": run_id, "created_at": time.time(), "profile": profile, "cycles": cycles, "only": only,
                 "from_step": from_step, "selected": [s.id for s in selected], "status": "running", "cycle": 1,
                 "done": {}, "ctx": {}, "overrides": {}, "failure": None, "attempts": 0}
        return self._execute(run_id, state, resumed=False)

    def resume(self, run_id: str | None = None) -> int:
        try:
            _ = self.ws.config  # read (and check) the config before anything else
        except ConfigError as exc:
            self._print_err(str(exc))
            return EXIT_FAILED
        if run_id is None:
            candidates = [r for r in reversed(self.ws.run_ids())
                          if (read_json(self.ws.run_dir(r) / STATE_FILE, {}) or {}).get("status") != "done"]
            if not candidates:
                self._print_err("bpllm resume: no unfinished run in this workspace (start one with `bpllm run`)")
                return EXIT_FAILED
            run_id = candidates[0]
        if id_problem(run_id, "run id"):  # it names the run folder the engine writes into
            self._print_err(f"bpllm resume: {id_problem(run_id, 'run id')} (see `bpllm runs`)")
            return EXIT_FAILED
        path = self.ws.run_dir(run_id) / STATE_FILE
        try:
            state = read_json(path)
        except ValueError as exc:
            self._print_err(f"bpllm resume: {path} is not valid JSON ({exc}); the run cannot be resumed")
            return EXIT_FAILED
        if state is None:
            self._print_err(f"bpllm resume: no run {run_id!r} in {self.ws.runs} (see `bpllm runs`)")
            return EXIT_FAILED
        if state.get("status") == "done":
            self._print_err(f"bpllm resume: run {run_id} already finished; nothing to resume")
            return EXIT_DONE
        return self._execute(run_id, state, resumed=True)

    # ------------------------------------------------------------------ the run
    def _execute(self, run_id: str, state: dict[str, Any], *, resumed: bool) -> int:
        """Run, and turn a full disk outside the steps (taking the lock, setting the run up) into one line."""
        command = "resume" if resumed else "run"
        self._lock = None
        try:
            return self._execute_run(run_id, state, resumed=resumed)
        except BaseException as exc:
            if not is_disk_full(exc):
                raise
            recorded = self._abandon(state, exc)
            fix = (f"Free space, then `bpllm resume {run_id}`." if recorded or resumed
                   else f"Free space, then run `bpllm {command}` again.")
            reserve = getattr(self, "reserve", None)
            if reserve is not None and getattr(exc, "filename", None) == str(reserve.path):
                self._print_err(f"bpllm {command}: the disk is full: no room for the {reserve.size // 1024} KiB a run "
                                f"keeps for its final records in {self.ws.runs} ({free_space(self.ws.runs)}). {fix}")
            else:
                self._print_err(disk_full_message(command, exc, fix=fix))
            return EXIT_FAILED

    def _abandon(self, state: dict[str, Any], exc: BaseException) -> bool:
        """A run that hit a full disk before its steps began: record the failure where the setup got to
        (the reserve makes room), close what was opened, release the lock. True when state.json has it."""
        recorded = False
        reserve = getattr(self, "reserve", None)
        if reserve is not None:
            reserve.release()
        if self._fresh_run_dir is None and getattr(self, "state_path", None) is not None:
            info = classify(exc)
            state.update(status="failed", ended_at=time.time(),
                         failure={"step": None, "category": info.category, "message": info.message, "at": time.time()})
            recorded = self._final_write(self._save_state)
            if getattr(self, "events", None) is not None:
                self._final_write(lambda: self.events.emit("error", category=info.category, message=info.message,
                                                           hint=info.hint, fatal=True))
                self._final_write(lambda: self.events.emit("run", phase="end", status="failed", exit_code=EXIT_FAILED,
                                                           message=f"engine error ({info.category}): {info.message}"))
        if getattr(self, "heartbeat", None) is not None:
            self.heartbeat.stop(status="failed", phase="exited", step=None)
        for closer in ("events", "history", "_console_fh"):
            obj = getattr(self, closer, None)
            if obj is not None:
                self._final_write(obj.close)
        if self._fresh_run_dir is not None:  # a new run that never began: leave nothing behind
            shutil.rmtree(self._fresh_run_dir, ignore_errors=True)
        if self._lock is not None:
            self._final_write(self._lock.release)
        self._restore_signals()
        return recorded

    def _final_write(self, fn: Any) -> bool:
        """One of the last records of a run: a full disk here is already being reported, so it is noted
        (``self._unwritten``) instead of raising a second, chained error."""
        try:
            fn()
            return True
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc):
                raise
            self._unwritten.append(str(getattr(exc, "filename", None) or exc))
            return False

    def _execute_run(self, run_id: str, state: dict[str, Any], *, resumed: bool) -> int:
        lock = WorkspaceLock(self.ws.lock_path)
        try:
            lock.acquire(run_id, command="resume" if resumed else "run")
        except LockBusy as exc:
            self._print_err(f"bpllm {'resume' if resumed else 'run'}: {exc}")
            return EXIT_FAILED
        self._lock = lock
        run_dir = self.ws.run_dir(run_id)
        self._fresh_run_dir = None if run_dir.exists() else run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.reserve = DiskReserve(run_dir)  # room for the final records, should the disk fill up
        remove_stale_reserves(self.ws.runs, keep=self.reserve.path)  # killed engines' reserves: room for ours
        self.reserve.claim()
        self.ws.ensure_dirs()
        removed = clean_temp_files(self.ws.root) if resumed or lock.stale else []
        partials = _clean_partial_backups(self.ws)
        self.state = state
        self.state_path = run_dir / STATE_FILE
        self.run_dir = run_dir
        self.run_id = run_id
        cfg = self.ws.config
        self.cfg = cfg
        self._console_fh = open(run_dir / CONSOLE_FILE, "a", encoding="utf-8", errors="replace")
        self._prepare_console()
        self.events = EventWriter(run_dir, run_id, stdout=sys.stdout if self.events_stdout else None,
                                  listeners=[self._on_event])
        self.heartbeat = Heartbeat(run_dir, run_id, interval=cfg.heartbeat.interval_s)
        self.history = History(self.ws.history_path)
        self.timings = StepTimings(self.ws.timings_path)
        stop_file = run_dir / STOP_FILE
        if stop_file.exists():  # a stop aimed at a previous (dead) engine of this run is moot
            stop_file.unlink()
        self.registry = build_registry(self.plan)
        selected = [self.plan[s] for s in state["selected"]]
        ctx = StepContext(workspace=self.ws, config=cfg, profile=state["profile"], run_id=run_id, run_dir=run_dir,
                          events=self.events, heartbeat=self.heartbeat, history=self.history, plan=self.plan,
                          state=state.setdefault("ctx", {}), cycles=int(state["cycles"]),
                          overrides=state.setdefault("overrides", {}), effective=state.setdefault("effective", {}))
        ctx.cache["registry"] = self.registry
        ctx.cache["done"] = state["done"]
        ctx._stop_check = self._stop.is_set
        ctx._save_state = self._save_state
        ctx._boundary = self._maybe_watchdog_backup
        self.ctx = ctx
        self._install_signals()
        self.heartbeat.update(phase="starting", force=True)
        self.heartbeat.start()
        t0 = time.time()
        first = self._first_pending(selected)
        plan_dicts = [self.plan[g].to_dict() for g in self._groups_of(selected)] + [s.to_dict() for s in selected]
        plan_dicts.sort(key=lambda d: tuple(int(x) for x in d["id"].split(".")))
        self.events.emit("run", phase="resume" if resumed else "start", profile=state["profile"],
                         cycles=state["cycles"], only=state.get("only"), from_step=state.get("from_step"),
                         config=cfg.to_dict(), workspace=str(self.ws.root), pid=os.getpid(), plan=plan_dicts,
                         resume_from=first, engine_version=_engine_version())
        if lock.stale:
            self._log("warning", stale_message(lock.stale))
        if removed:
            self._log("warning", f"removed {len(removed)} temp file(s) left by an interrupted write: "
                                 + ", ".join(str(p.relative_to(self.ws.root)) for p in removed[:5]))
        if isinstance(partials, str):
            self._log("warning", partials)
        elif partials:
            self._log("warning", f"removed {len(partials)} unfinished backup folder(s) a failed backup left: "
                                 + ", ".join(partials[:5]))
        if self.registry.ml_status:
            self._log("warning", self.registry.ml_status)
        self.history.run_started(run_id, profile=state["profile"], cycles=int(state["cycles"]),
                                 only=state.get("only"), from_step=state.get("from_step"), pid=os.getpid(),
                                 config=cfg.to_dict())
        state["status"] = "running"
        state["pid"] = os.getpid()
        if state.get("failure"):  # resumed: the last attempt's failure is history, not this attempt's outcome
            state.setdefault("past_failures", []).append(state["failure"])
            state["failure"] = None
        self._save_state()
        self._fresh_run_dir = None  # recorded: from here on a failure leaves a resumable run
        watcher = threading.Thread(target=self._watch, name="bpllm-watch", daemon=True)
        watcher.start()
        telemetry = self._start_telemetry()
        status, code, message = "done", EXIT_DONE, None
        self._run_thread = threading.current_thread()
        hours = cfg.backup.watchdog_hours
        self._next_watchdog_backup = t0 + hours * 3600 if hours > 0 else float("inf")
        try:
            if resumed:
                self._backup("safety", f"before-resume-{run_id}", "the safety backup before resuming")
            self._run_cycles(selected)
        except StopRequested:
            self._flush_stop_event()
            status, code, message = "stopped", EXIT_STOPPED, f"stopped on request ({self._stop_source or 'cli'})"
        except StepFailed as exc:
            status, code = "failed", EXIT_FAILED
            message = f"step {exc.step.id} failed ({exc.info.category}): {exc.info.message}"
            if exc.info.hint:
                message += f" -- {exc.info.hint}"
            state["failure"] = {"step": exc.step.id, "category": exc.info.category, "message": exc.info.message,
                                "hint": exc.info.hint, "at": time.time()}
        except KeyboardInterrupt:
            status, code, message = "stopped", EXIT_STOPPED, "aborted by a second interrupt"
        except StallAbort as exc:
            if not self._forced_stop:  # pragma: no cover - a stall abort is always caught in its step
                raise
            del exc  # a signal's forced stop that landed between a step's bookkeeping lines
            self._flush_stop_event()
            status, code, message = "stopped", EXIT_STOPPED, f"stopped on request ({self._stop_source or 'signal'})"
        except BaseException as exc:  # noqa: BLE001 - an orchestrator bug still leaves a resume state
            info = classify(exc)
            status, code, message = "failed", EXIT_FAILED, f"engine error ({info.category}): {info.message}"
            if info.hint:
                message += f" -- {info.hint}"
            state["failure"] = {"step": None, "category": info.category, "message": info.message, "at": time.time()}
            if info.category == "disk_full":
                self.reserve.release()
            self._final_write(lambda: self.events.emit(
                "error", category=info.category, message=info.message, traceback=info.traceback,
                exception=info.exception, hint=info.hint, fatal=True))
        finally:
            self._watch_stop.set()
            if telemetry is not None:
                telemetry.stop()
            self.reserve.release()  # its room is for what follows, should the disk be full
            state["status"] = status
            state["ended_at"] = time.time()
            self._final_write(self._save_state)
            if status == "stopped" and stop_file.exists():
                stop_file.unlink()
            try:
                self.history.run_ended(run_id, status, code, message)
            except Exception as exc:  # noqa: BLE001 - history.db is a copy; events.jsonl and state.json are the record
                note = f"history.db did not record the run's end ({type(exc).__name__}: {exc}); " \
                       "events.jsonl and state.json hold it"
                self._final_write(lambda: self._log("warning", note))
            self._final_write(lambda: self.events.emit("run", phase="end", status=status, exit_code=code,
                                                       duration=round(time.time() - t0, 3), message=message))
            self.heartbeat.stop(status=status, phase="exited", step=None, seq=self.events.seq)
            self.events.close()
            self.history.close()
            self._final_write(self._console_fh.close)
            self._final_write(lock.release)
            self._restore_signals()
        if self._unwritten:  # the console line of the end event may be missing: say it here, once
            self._print_err(disk_full_message(
                "resume" if resumed else "run", OSError(errno.ENOSPC, "No space left on device"),
                path=", ".join(dict.fromkeys(self._unwritten)),
                fix=f"The run ended {status}; free space, then `bpllm resume {run_id}`."))
        return code

    def _run_cycles(self, selected: list[Step]) -> None:
        state = self.state
        cycles = int(state["cycles"])
        for cycle in range(int(state.get("cycle", 1)), cycles + 1):
            state["cycle"] = cycle
            self.ctx.cycle = cycle
            for group in self._groups_of(selected):
                leaves = [s for s in selected if s.parent == group]
                pending = [s for s in leaves if state["done"].get(f"{cycle}:{s.id}") not in ("complete", "skip")]
                if not pending:
                    continue
                self._check_stop()
                self._run_group(self.plan[group], pending, cycle)
            self._log("info", f"cycle {cycle}/{cycles} complete: {self._cycle_version(cycle)}")
        self._check_stop()

    def _cycle_version(self, cycle: int) -> str:
        """What the cycle produced, for its closing log line: the version it trained (the ML steps keep it
        in the run state), else the one it examined, else that it trained none."""
        ml = (self.state.get("ctx") or {}).get("ml") or {}
        version = ml.get(f"version:{cycle}")
        if version:
            saved = (self.ws.models / str(version) / "adapter" / "adapter_config.json").exists()
            return str(version) if saved else f"{version} (assigned, no adapter saved)"
        examined = ml.get(f"exam_version:{cycle}")
        return f"no new version (examined {examined})" if examined else "no model version trained"

    def _run_group(self, group: Step, leaves: list[Step], cycle: int) -> None:
        t0 = time.time()
        self.heartbeat.update(phase=group.phase, step=group.id, step_name=group.name, cycle=cycle, force=True)
        child_etas = {leaf.id: self.timings.eta(leaf.id) for leaf in leaves}
        known = all(v is not None for v in child_etas.values())
        # the group's ETA is what its steps still to run take (a resumed group is shorter than its mean)
        self.events.emit("step", id=group.id, name=group.name, status="start", cycle=cycle,
                         eta=round(sum(child_etas.values()), 2) if known and child_etas else self.timings.eta(group.id),
                         child_etas={k: v for k, v in child_etas.items() if v is not None} or None)
        outcomes = []
        for leaf in leaves:
            self._check_stop()
            outcomes.append(self._run_leaf(leaf, cycle))
        duration = round(time.time() - t0, 3)
        if outcomes and all(o == "skip" for o in outcomes):
            reasons = sorted({self.state.get("done_reason", {}).get(f"{cycle}:{s.id}", "") for s in leaves} - {""})
            self.events.emit("step", id=group.id, name=group.name, status="skip", cycle=cycle, duration=duration,
                             reason="; ".join(reasons) or "all sub-steps skipped")
            self.history.step(self.run_id, cycle, group.id, group.name, "skip", duration=duration)
            return
        self.timings.record(group.id, duration)
        self.events.emit("step", id=group.id, name=group.name, status="complete", cycle=cycle, duration=duration)
        self.history.step(self.run_id, cycle, group.id, group.name, "complete", started_at=t0, duration=duration)
        self.events.sync()

    def _needs_closure(self, step_id: str) -> list[Step]:
        out: list[str] = []

        def visit(sid: str) -> None:
            reg = self.registry.get(sid)
            for n in reg.needs if reg else ():
                if n not in out:
                    visit(n)
                    out.append(n)

        visit(step_id)
        return sorted((self.plan[s] for s in out), key=Step.key)

    def _run_leaf(self, step: Step, cycle: int, *, rerun: bool = False) -> str:
        key = f"{cycle}:{step.id}"
        reg = self.registry.get(step.id)
        if reg is None:
            if step.owner == "ml":
                reason = self.registry.ml_status or f"{ML_MODULE} registers no function for step {step.id}"
            else:
                reason = f"step {step.id} has no implementation registered"
            return self._skip(step, cycle, reason)
        for need in self._needs_closure(step.id):
            if need.id not in self.ran_in_process:
                self._check_stop()
                self._run_leaf(need, cycle, rerun=True)
        max_attempts = self.cfg.retry.max_attempts if reg.retry else 1
        attempt = int(self.state.setdefault("attempt_of", {}).get(key, 0)) + 1
        first_attempt = attempt
        while True:
            ctx = self.ctx
            ctx.step, ctx.attempt, ctx.cycle = step, attempt, cycle
            self.heartbeat.update(phase=step.phase, step=step.id, step_name=step.name, cycle=cycle, n=None,
                                  total=None, message=None, force=True)
            t0 = time.time()
            ctx._progress_t0 = t0
            self.events.emit("step", id=step.id, name=step.name, parent=step.parent, status="start", cycle=cycle,
                             eta=self.timings.eta(step.id), attempt=attempt if attempt > 1 else None,
                             rerun=True if rerun else None)
            self.history.step(self.run_id, cycle, step.id, step.name, "running", started_at=t0, attempt=attempt)
            self._in_step, self._stall_warned_at, self._stall_abort = step, None, None
            try:
                try:
                    _test_knobs(step, ctx)
                    result = reg.fn(ctx)
                finally:
                    self._in_step = None
            except StepSkipped as s:
                return self._skip(step, cycle, s.reason, duration=round(time.time() - t0, 3))
            except Exception as exc:  # noqa: BLE001 - classified, retried or recorded as the step's failure
                if not _is_stop(exc):
                    info = classify(exc)
                    del exc
                    if not self._handle_failure(step, cycle, attempt, max_attempts, t0, info):
                        raise StepFailed(step, info) from None
                    attempt += 1
                    continue
                self._stopped_in_step(step, cycle, attempt, t0,
                                      "interrupted by a stop request; `bpllm resume` re-runs this step")
            except StallAbort as exc:
                if self._forced_stop:
                    del exc
                    self._stopped_in_step(step, cycle, attempt, t0,
                                          f"interrupted {SIGNAL_STOP_GRACE_S:.0f} s after {self._signal_name} "
                                          "(no safe boundary reached); "
                                          "`bpllm resume` re-runs this step")
                if self._stall_abort is None:  # pragma: no cover - only the watchdog raises it
                    raise
                info = classify(StallTimeout(f"no progress for {self._stall_abort['age_s']:.0f}s in phase "
                                             f"{self._stall_abort['phase']} (limit {self._stall_abort['limit_s']:.0f}s)"))
                info.traceback = ""
                self._stall_abort = None
                del exc
                if not self._handle_failure(step, cycle, attempt, max_attempts, t0, info):
                    raise StepFailed(step, info) from None
                attempt += 1
                continue
            duration = round(time.time() - t0, 3)
            self.timings.record(step.id, duration)
            small = result if isinstance(result, dict) and len(json.dumps(result, default=str)) < 4000 else None
            self.state["done"][key] = "complete"
            self.state["attempt_of"].pop(key, None)
            self.ran_in_process.add(step.id)
            self._save_state()
            self.events.emit("step", id=step.id, name=step.name, parent=step.parent, status="complete", cycle=cycle,
                             duration=duration, result=small, attempt=attempt if attempt > first_attempt else None)
            self.history.step(self.run_id, cycle, step.id, step.name, "complete", duration=duration,
                              attempt=attempt, result=small)
            return "complete"

    def _stopped_in_step(self, step: Step, cycle: int, attempt: int, t0: float, message: str) -> None:
        """Record a step ended by a stop (its work is redone on resume) and raise StopRequested."""
        self._flush_stop_event()
        self.events.emit("step", id=step.id, name=step.name, parent=step.parent, status="stopped",
                         cycle=cycle, duration=round(time.time() - t0, 3), message=message)
        self.history.step(self.run_id, cycle, step.id, step.name, "stopped",
                          duration=round(time.time() - t0, 3), attempt=attempt)
        self._save_state()
        raise StopRequested() from None

    def _handle_failure(self, step: Step, cycle: int, attempt: int, max_attempts: int, t0: float,
                        info: Classified) -> bool:
        """Report a failure; True when the step should be retried (after the backoff)."""
        duration = round(time.time() - t0, 3)
        changes: dict[str, Any] = {}
        retry = info.retryable and attempt < max_attempts
        if info.category == "disk_full":
            self.reserve.release()  # room for the error event and the state that follow
        if retry and info.category == "cuda_oom":
            current = {k: self.ctx.setting(k, self.ctx.effective.get(k))
                       for k in ("batch_size", "grad_accum", "max_seq_len", "lora_r", "lora_alpha")}
            changes = oom_adjust(current)
            if not changes:
                retry = False
                info.hint = "out of memory even at batch 1, sequence 256, LoRA rank 4: use a smaller model/profile"
        self.events.emit("error", category=info.category, message=info.message, step=step.id, retryable=retry,
                         fatal=not retry, traceback=info.traceback or None, exception=info.exception or None,
                         hint=info.hint, cycle=cycle)
        self.events.emit("step", id=step.id, name=step.name, parent=step.parent, status="error", cycle=cycle,
                         duration=duration, message=f"{info.category}: {info.message}", attempt=attempt)
        self.history.step(self.run_id, cycle, step.id, step.name, "error", duration=duration, attempt=attempt,
                          message=f"{info.category}: {info.message}")
        if not retry:
            self.state["attempt_of"].pop(f"{cycle}:{step.id}", None)  # a resume after a fix starts afresh
            self._save_state()
            return False
        for k, (_old, new) in changes.items():
            self.ctx.overrides[k] = new
        rc = self.cfg.retry
        delay = backoff_delay(attempt, rc.backoff_s, rc.backoff_factor, rc.max_backoff_s)
        self.state["attempt_of"][f"{cycle}:{step.id}"] = attempt
        self._save_state()
        self.events.emit("retry", step=step.id, attempt=attempt + 1, max_attempts=max_attempts, delay_s=delay,
                         category=info.category, changes={k: list(v) for k, v in changes.items()} or None,
                         message=info.message, cycle=cycle)
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and info.category == "cuda_oom":
            try:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception as exc:  # noqa: BLE001 - a cache not emptied only makes the retry likelier to OOM
                self._log("warning", f"could not empty the CUDA cache before the retry ({type(exc).__name__}: {exc})")
        end = time.time() + delay
        while time.time() < end:  # an interruptible backoff
            self._check_stop()
            time.sleep(min(0.1, max(0.0, end - time.time())))
        return True

    def _skip(self, step: Step, cycle: int, reason: str, duration: float | None = None) -> str:
        key = f"{cycle}:{step.id}"
        self.events.emit("step", id=step.id, name=step.name, parent=step.parent, status="skip", cycle=cycle,
                         reason=reason, duration=duration)
        self.state["done"][key] = "skip"
        self.state.setdefault("done_reason", {})[key] = reason
        self.ran_in_process.add(step.id)
        self._save_state()
        self.history.step(self.run_id, cycle, step.id, step.name, "skip", duration=duration, message=reason)
        return "skip"

    # ------------------------------------------------------------------ helpers
    def _groups_of(self, selected: list[Step]) -> list[str]:
        seen: list[str] = []
        for s in selected:
            if s.parent not in seen:
                seen.append(s.parent)  # type: ignore[arg-type]
        return seen

    def _first_pending(self, selected: list[Step]) -> str | None:
        cycle = int(self.state.get("cycle", 1))
        for s in selected:
            if self.state["done"].get(f"{cycle}:{s.id}") not in ("complete", "skip"):
                return s.id
        return None

    def _save_state(self) -> None:
        self.state["updated_at"] = time.time()
        atomic_write_json(self.state_path, self.state)  # a full disk names the file (reported once, at the end)

    def _check_stop(self) -> None:
        self._maybe_watchdog_backup()
        if self._stop.is_set():
            raise StopRequested()

    def _backup(self, tier: str, label: str, what: str) -> None:
        """Take a backup for the run itself; a failure is reported and the run goes on."""
        self._backing_up = True
        try:
            create_backup(self.ws, tier, label=label, events=self.events,
                          step=self._in_step.id if self._in_step else None)
        except (BackupError, OSError) as exc:
            self._log("warning", f"{what} failed: {exc}; the run goes on without it")
        finally:
            self._backing_up = False
            self.heartbeat.update()  # a backup is work, not a stall

    def _maybe_watchdog_backup(self) -> None:
        """Every backup.watchdog_hours of a run: a watchdog backup, taken at a safe boundary by the
        thread that runs the steps (never from a worker thread or while another backup runs)."""
        if (time.time() < self._next_watchdog_backup or self._backing_up
                or threading.current_thread() is not self._run_thread):
            return
        hours = self.cfg.backup.watchdog_hours
        self._next_watchdog_backup = time.time() + hours * 3600
        step = self._in_step.id if self._in_step else "between-steps"
        self._backup("watchdog", f"c{self.ctx.cycle}-{step}", f"the watchdog backup (every {hours:g} h)")

    def request_stop(self, source: str, message: str | None = None, *, emit: bool = True) -> None:
        """Flag a graceful stop.  From a signal handler pass emit=False: the handler may interrupt an
        emit in progress, so the event is written by the watcher thread (or at the stop boundary)."""
        if self._stop.is_set():
            return
        self._stop_source = source
        self._stop_message = message
        self._stop_step = self._in_step.id if self._in_step else None
        self._stop.set()
        if emit:
            self._flush_stop_event()

    def _flush_stop_event(self) -> None:
        with self._stop_lock:
            if self._stop_emitted or not self._stop.is_set():
                return
            self._stop_emitted = True
        self.events.emit("stop_requested", source=self._stop_source or "cli", requested_at=time.time(),
                         step=self._stop_step, message=self._stop_message)
        self.heartbeat.update(phase="stopping", progress=False, force=True)

    def _watch_report(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """An event from the watcher thread: a full disk must not end the thread (and with it stop-file
        polling and the watchdog) with a traceback; the main thread reports the full disk."""
        try:
            fn(*args, **kwargs)
        except OSError as exc:
            if not is_disk_full(exc):
                raise

    def _watch(self) -> None:
        """Stop-file poller and stall watchdog (a daemon thread)."""
        stop_file = self.run_dir / STOP_FILE
        st = self.cfg.stall
        while not self._watch_stop.wait(0.2):
            if not self._stop.is_set() and stop_file.exists():
                req = read_json_quiet(stop_file)
                self._watch_report(self.request_stop, str(req.get("source") or "cli"), req.get("message"))
            elif self._stop.is_set() and not self._stop_emitted:
                self._watch_report(self._flush_stop_event)  # requested by a signal
            step = self._in_step
            if (step is not None and self._signal_stop_at is not None and not self._forced_stop
                    and time.monotonic() - self._signal_stop_at >= SIGNAL_STOP_GRACE_S):
                self._forced_stop = True
                self._watch_report(self._log, "warning", f"step {step.id} reached no safe boundary "
                                   f"{SIGNAL_STOP_GRACE_S:.0f} s after {self._signal_name}; interrupting it")
                if signal.SIGUSR2 in self._old_handlers:
                    _thread.interrupt_main(signal.SIGUSR2)
                continue
            if step is None or not st.enabled or self._stall_abort is not None:
                continue
            phase = str(self.heartbeat.data.get("phase") or step.phase)
            kill = st.kill_after(phase)
            warn = min(st.warn_s, kill / 2)
            progress_at = float(self.heartbeat.data.get("progress_at") or time.time())
            age = time.time() - progress_at
            if age >= kill:
                self._stall_abort = {"phase": phase, "age_s": age, "limit_s": kill}
                self._watch_report(self.events.emit, "stall", phase=phase, age_s=round(age, 1), limit_s=kill,
                                   step=step.id, action="abort")
                if signal.SIGUSR2 in self._old_handlers:
                    _thread.interrupt_main(signal.SIGUSR2)
            elif age >= warn and self._stall_warned_at != progress_at:
                self._stall_warned_at = progress_at
                self._watch_report(self.events.emit, "stall", phase=phase, age_s=round(age, 1), limit_s=warn,
                                   step=step.id, action="warn")

    def _start_telemetry(self) -> Any:
        tcfg = self.cfg.telemetry
        if not tcfg.enabled:
            return None
        t = TelemetryThread(self.events, interval=tcfg.interval_s, roles=tcfg.roles)
        t.start()
        return t

    def _install_signals(self) -> None:
        self._old_handlers: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if signum == signal.SIGINT:
                self._sigint_count += 1
                if self._sigint_count > 1:
                    raise KeyboardInterrupt
            if self._signal_stop_at is None:
                self._signal_stop_at, self._signal_name = time.monotonic(), name
            self.request_stop("signal", f"{name} received", emit=False)

        def on_stall(_signum: int, _frame: Any) -> None:
            if (self._stall_abort is not None or self._forced_stop) and self._in_step is not None:
                raise StallAbort()

        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, on_signal)
        self._old_handlers[signal.SIGUSR2] = signal.signal(signal.SIGUSR2, on_stall)

    def _restore_signals(self) -> None:
        for sig, handler in getattr(self, "_old_handlers", {}).items():
            signal.signal(sig, handler)

    def _prepare_console(self) -> None:
        reconf = getattr(self.console, "reconfigure", None)
        if reconf is not None:
            try:  # the reference pipeline died printing a box character to a cp1252 console
                reconf(errors="replace")
            except (ValueError, OSError):
                pass

    def _on_event(self, ev: dict[str, Any]) -> None:
        line = console_line_for_event(ev)
        if line is None:
            return
        try:
            self._console_fh.write(line + "\n")
            self._console_fh.flush()
        except OSError:
            pass  # console.log is a copy of events.jsonl; a full disk is reported by the run itself
        if not self.quiet:
            try:
                self.console.write(line + "\n")
                self.console.flush()
            except (OSError, ValueError):
                pass
        elif ev.get("type") == "run" and ev.get("phase") == "end" and ev.get("status") != "done":
            self._print_err(line)  # quiet is no silence about a failure: its one line goes to stderr

    def _log(self, level: str, message: str) -> None:
        self.events.emit("log", level=level, message=message, source="engine")

    def _print_err(self, message: str) -> None:
        print(message, file=sys.stderr)


def _is_stop(exc: BaseException | None) -> bool:
    """A StopRequested (the runtime's, the ML core's, TrainingStopped: one family) anywhere in the chain."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, StopRequested):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _clean_partial_backups(ws: Workspace) -> list[str] | str:
    """Remove what failed backups left (``.partial`` folders) at engine start, holding the lock;
    what was removed, or why that failed (a warning either way)."""
    try:
        return clean_partials(ws)
    except OSError as exc:
        return f"could not remove a failed backup's leftovers: {exc}"


def read_json_quiet(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        return {}


def _engine_version() -> str:
    try:
        from importlib.metadata import version
        return version("bpllm")
    except Exception:  # noqa: BLE001 - a source checkout that was never installed has no metadata: its version
        return "0.1.0"


_INJECTED: dict[str, int] = {}


def _test_knobs(step: Step, ctx: StepContext) -> None:
    """BPLLM_TEST_SLOW_STEPS / BPLLM_TEST_INJECT: test-only ways to make a real step slow or fail."""
    slow = _parse_knob(os.environ.get(ENV_SLOW, ""))
    if step.id in slow:
        spec = slow[step.id]
        silent = spec.endswith("!")  # "1.3=5!": no progress reports (lets the stall watchdog fire)
        seconds = float(spec.rstrip("!"))
        t_end = time.time() + seconds
        n, total = 0, max(1, int(seconds / 0.1))
        while time.time() < t_end:
            if not silent:
                ctx.check_stop()
            time.sleep(0.1)
            n += 1
            if not silent:
                ctx.progress(min(n, total), total, "test slow-down", unit="tick")
    inject = _parse_knob(os.environ.get(ENV_INJECT, ""))
    if step.id in inject:
        spec = inject[step.id]
        cat, _, times = spec.partition("*")
        times_n = int(times or 1)
        marker = ctx.run_dir / f".inject-{step.id}"
        done = int(marker.read_text() or 0) if marker.exists() else 0
        if done < times_n:
            marker.write_text(str(done + 1))
            raise _injected_exception(cat)


def _parse_knob(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _injected_exception(category: str) -> BaseException:
    if category == "cuda_oom":
        return RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 95.59 GiB total capacity)")
    if category == "disk_full":
        return OSError(errno.ENOSPC, "No space left on device")
    if category == "encoding":
        return UnicodeEncodeError("charmap", "\u2502", 0, 1, "character maps to <undefined>")
    if category == "network":
        return ConnectionError("Connection reset by peer")
    if category == "corrupt_checkpoint":
        return RuntimeError("Error while deserializing header: HeaderTooLarge")
    if category == "timeout":
        return StallTimeout("injected timeout")
    return RuntimeError(f"injected failure ({category})")
