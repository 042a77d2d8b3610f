"""Helpers shared by the TUI tests (not a test module)."""
from __future__ import annotations

import asyncio
import inspect
import math
import time
from pathlib import Path

from engine.runtime.events import EventWriter, Heartbeat

RUN_ID = "20260301-002143-4a5a"


async def wait_for(pilot, predicate, timeout: float = 10.0, step: float = 0.05, what: str = "") -> bool:
    """Pump the app until ``predicate()`` is true; fail the test on timeout (a wait never hangs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(step)
    if predicate():
        return True
    if not what:
        try:
            what = inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            what = repr(predicate)
    raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")


def write_run(workspace: Path, *, finished: bool = True, run_id: str = RUN_ID, pid: int | None = None,
              train_steps: int = 120, fixed_clock: float | None = None) -> Path:
    """A run directory written with the engine's real EventWriter/Heartbeat (deterministic values)."""
    run_dir = workspace / "runs" / run_id
    writer = EventWriter(run_dir, run_id)
    plan = [{"id": "1", "name": "Data Foundation", "parent": None},
            {"id": "1.1", "name": "Analyze new exports", "parent": "1"},
            {"id": "1.2", "name": "Auto-translate to DSL", "parent": "1"},
            {"id": "4", "name": "Training", "parent": None},
            {"id": "4.1", "name": "Pre-train backup", "parent": "4"},
            {"id": "4.2", "name": "Training loop", "parent": "4"},
            {"id": "5", "name": "Exam", "parent": None},
            {"id": "5.1", "name": "Load adapter", "parent": "5"}]
    writer.emit("run", phase="start", profile="tiny", plan=plan, pid=pid or 1)
    writer.emit("step", id="1", name="Data Foundation", status="start")
    writer.emit("step", id="1.1", name="Analyze new exports", status="start", eta=2.0)
    writer.emit("log", level="info", message="analyzing 3 exports")
    writer.emit("step", id="1.1", name="Analyze new exports", status="complete", duration=1.5)
    writer.emit("step", id="1.2", name="Auto-translate to DSL", status="skip", reason="no new exports")
    writer.emit("step", id="1", name="Data Foundation", status="complete", duration=1.6)
    writer.emit("step", id="4", name="Training", status="start")
    writer.emit("step", id="4.1", name="Pre-train backup", status="complete", duration=0.4)
    writer.emit("step", id="4.2", name="Training loop", status="start", eta=60.0)
    for s in range(1, train_steps + 1):
        loss = 2.5 * math.exp(-s / 40) + 0.4 + 0.15 * math.sin(s * 1.7)
        writer.emit("train", step=s, loss=round(loss, 4), lr=5e-5, max_steps=train_steps)
        if s % 40 == 0:
            writer.emit("eval", step=s, eval_loss=round(2.5 * math.exp(-s / 40) + 0.55, 4))
            writer.emit("step", id="4.2", name="Training loop", status="progress", n=s, total=train_steps, eta=30.0)
    writer.emit("gpu", available=False, devices=[], reason="no GPU: NVML Shared Library Not Found",
                cpu_percent=93.5, ram_used=6 * 2**30, ram_total=24 * 2**30)
    writer.emit("mastery", version="v1", nodes=[
        {"node": "Branch", "score": 45.0, "n": 12, "band": "struggling", "delta": -5.0},
        {"node": "PrintString", "score": 96.0, "n": 40, "band": "mastered", "delta": 2.0},
        {"node": "Delay", "score": 70.0, "n": 9, "band": "learning"},
    ])
    writer.emit("log", level="warning", message="grad_norm spiked to 12.5")
    writer.emit("error", category="data", message="row 17 of lessons.jsonl: unknown node type Foo",
                hint="fix the row or let quarantine keep it")
    if finished:
        writer.emit("step", id="4.2", name="Training loop", status="complete", duration=42.0)
        writer.emit("step", id="4", name="Training", status="complete", duration=42.5)
        writer.emit("run", phase="end", status="done", exit_code=0, duration=50.0)
    writer.close()
    if fixed_clock is not None:  # snapshots: the same timestamps on every run (1 event = 0.25 s)
        import json

        path = run_dir / "events.jsonl"
        events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for e in events:
            e["ts"] = fixed_clock + e["seq"] * 0.25
        path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    hb = Heartbeat(run_dir, run_id)
    hb.data["pid"] = pid or 999_999_999
    hb.update(force=True, phase="exited" if finished else "training", step="4.2",
              status="done" if finished else "running")
    return run_dir


def aio(fn):
    """Run an async test with asyncio.run (no async pytest plugin needed)."""
    import functools
    import inspect

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    wrapper.__signature__ = inspect.signature(fn)
    return wrapper
