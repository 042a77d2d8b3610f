"""The dashboard tells the truth (issue 14, items 4, 5, 6, 9 and 10): ETAs that agree, the base's own
pretraining on the loss chart, a first screen with all nine phases, NVML's state and the workspace's
profile, nothing cut at 160 columns, and a re-attached log rebuilt completely from the events.

Runs are written with the engine's real EventWriter, workspaces by the real `bpllm init`, history by the
engine's real History store; the app is driven with Textual's Pilot."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bpllm_tui.app import BpllmApp
from bpllm_tui.config import TuiConfig
from bpllm_tui.state import RunState, load_plan
from bpllm_tui.widgets.gpu_panel import GpuPanel
from bpllm_tui.widgets.log_view import LogView
from bpllm_tui.widgets.mastery_table import MasteryTable
from bpllm_tui.widgets.status_bar import StatusBar
from bpllm_tui.widgets.step_tree import StepTree
from engine.workspace.history import History
from tests.tui_helpers import aio, wait_for

ROOT = Path(__file__).resolve().parents[2]
SIZE = (160, 48)
PLAN = load_plan()
NAMES = {p["id"]: p["name"] for p in PLAN}


def lines(widget) -> str:
    return "\n".join(strip.text for strip in widget.render_lines(widget.region.reset_offset))


class Events:
    """Events as the engine writes them (envelope and all), stamped from ``t0`` one second apart."""

    def __init__(self, t0: float) -> None:
        self.t = t0
        self.seq = 0
        self.out: list[dict] = []

    def __call__(self, type_: str, dt: float = 1.0, **payload) -> dict:
        self.seq += 1
        self.t += dt
        event = {"v": 1, "seq": self.seq, "ts": self.t, "run_id": "r1", "type": type_, **payload}
        self.out.append(event)
        return event

    def end_now(self) -> list[dict]:
        """Shift every stamp so the last event happened just now (a live run's countdowns start full)."""
        shift = time.time() - self.t
        for e in self.out:
            e["ts"] += shift
        self.t += shift
        return self.out

    def step(self, sid: str, status: str, dt: float = 1.0, **payload) -> dict:
        parent = sid.split(".")[0] if "." in sid else None
        return self(type_="step", dt=dt, id=sid, name=NAMES[sid], status=status, parent=parent, **payload)


def run_through(ev: Events, groups: list[str], *, profile: str = "tiny") -> None:
    """A run start, then the given groups complete with all their steps."""
    ev("run", phase="start", profile=profile, plan=PLAN)
    for g in groups:
        ev.step(g, "start")
        for p in PLAN:
            if p.get("parent") == g:
                ev.step(p["id"], "start")
                ev.step(p["id"], "complete", duration=1.0)
        ev.step(g, "complete", duration=5.0)


# ------------------------------------------------------------------ item 4: ETAs
def test_a_parent_eta_is_its_running_step_plus_the_steps_still_to_come():
    """`4 Training ETA 4m09s` beside `4.3 … 48s`: the group's own mean said 249 s; its steps say 48 s for
    the running loop plus the means of 4.4-4.7 still to come."""
    now = time.time()
    ev = Events(now - 100)
    run_through(ev, ["1", "2", "3"])
    ev.step("4", "start", eta=249.0, child_etas={"4.1": 3.0, "4.2": 1.0, "4.3": 300.0, "4.4": 2.0, "4.5": 0.5,
                                                 "4.6": 0.5, "4.7": 4.0})
    for sid in ("4.1", "4.2"):
        ev.step(sid, "start", eta=1.0)
        ev.step(sid, "complete", duration=1.0)
    ev.step("4.3", "start", eta=300.0)
    ev.step("4.3", "progress", dt=0.0, n=60, total=124, eta=48.0)
    state = RunState()
    state.apply_many(ev.out)
    at = ev.t  # the moment of the last report
    assert state.eta("4.3", now=at) == pytest.approx(48.0)
    assert state.eta("4", now=at) == pytest.approx(48.0 + 2.0 + 0.5 + 0.5 + 4.0)
    assert state.eta("4", now=at + 10) == pytest.approx(38.0 + 7.0)  # both count down together
    assert state.eta("4", now=at + 100) == pytest.approx(7.0)  # the loop overran: only what is left after it


def test_a_parent_without_estimates_for_its_steps_never_promises_less_than_its_running_step():
    """Runs written before groups carried child_etas, or steps never timed: at least the running child's."""
    ev = Events(time.time() - 50)
    ev("run", phase="start", profile="tiny", plan=PLAN)
    ev.step("4", "start", eta=20.0)
    ev.step("4.3", "start")
    ev.step("4.3", "progress", dt=0.0, n=10, total=124, eta=48.0)
    state = RunState()
    state.apply_many(ev.out)
    assert state.eta("4", now=ev.t) == pytest.approx(48.0)
    assert state.eta("4", now=ev.t) >= state.eta("4.3", now=ev.t)


# ------------------------------------------------------------------ item 5: visible work
def base_pretraining(ev: Events, steps: int = 150, total: int = 1572) -> None:
    run_through(ev, ["1", "2"])
    ev.step("3", "start")
    for sid in ("3.1", "3.2", "3.3"):
        ev.step(sid, "start")
        ev.step(sid, "complete", duration=0.5)
    ev.step("3.4", "start")
    for s in range(10, steps + 1, 10):
        ev("train", dt=0.5, step=s, max_steps=total, loss=round(8.0 - s / 40, 4), lr=2.9e-3, grad_norm=0.84,
           tokens_per_s=2250.0, phase="base", cycle=1)
        ev.step("3.4", "progress", dt=0.0, n=s, total=total, unit="step", eta=140.0,
                message=f"pretraining tiny base, loss {8.0 - s / 40:.3f}")


def test_base_pretraining_is_charted_then_replaced_by_the_adapters_training():
    ev = Events(time.time() - 500)
    base_pretraining(ev)
    state = RunState()
    state.apply_many(ev.out)
    assert state.train_phase == "base" and len(state.train) == 15 and state.train[-1] == (150.0, 4.25)
    ev.step("3.4", "complete", duration=170.0)
    ev("train", step=1, max_steps=124, loss=2.9, lr=2e-3, version="v1", cycle=1)
    state.apply_many(ev.out[-2:])
    assert state.train_phase == "sft" and state.train == [(1.0, 2.9)]  # the adapter's own curve, from step 1


@aio
async def test_base_pretraining_shows_its_loss_figures_and_an_uncut_counter(tmp_path):
    """`150/15`: the tree cut the counter of 3.4; the chart stood still for ~3 minutes of pretraining."""
    ev = Events(time.time() - 300)
    base_pretraining(ev)
    app = BpllmApp(tmp_path, config=TuiConfig(), attach=False)
    async with app.run_test(size=SIZE) as pilot:
        app.state.apply_many(ev.end_now())
        app.state.set_process("running")
        tree = app.screen.query_one(StepTree)
        assert await wait_for(pilot, lambda: "150/1572" in lines(tree))
        row = next(line for line in lines(tree).splitlines() if "3.4" in line)
        assert "150/1572 ETA 2m" in row and "…" in row  # the name gives way, not the counter or its ETA
        title = app.screen.query_one("#loss-title")
        figures = ("base pretraining", "step 150/1572", "loss 4.2500", "lr 2.90e-03", "‖g‖ 0.84", "2,250 tok/s")
        await wait_for(pilot, lambda: all(f in lines(title) for f in figures))  # the header's height settles
        text = lines(title)
        for figure in figures:
            assert figure in text, (figure, text)
        chart = app.screen.query_one("#loss")
        assert "no training steps yet" not in lines(chart) and "step 10" in lines(chart)


# ------------------------------------------------------------------ item 6: the first screen
def bpllm_init(path: Path) -> Path:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(path.parent)}
    done = subprocess.run([sys.executable, "-m", "engine.cli", "init", str(path)], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return path


@aio
async def test_first_screen_shows_nine_phases_the_gpu_state_the_profile_and_the_last_mastery(tmp_path):
    ws = bpllm_init(tmp_path / "ws")
    toml = ws / "bpllm.toml"
    toml.write_text(toml.read_text().replace('profile = "tiny"', 'profile = "llama-8b-bf16"'))
    history = History(ws / "history.db")
    history.set_mastery("v3", [{"node": "Branch", "score": 45.0, "n": 12, "band": "struggling", "delta": -5.0},
                               {"node": "PrintString", "score": 96.0, "n": 40, "band": "mastered", "delta": 2.0}])
    history.close()
    app = BpllmApp(ws, config=TuiConfig())
    async with app.run_test(size=SIZE) as pilot:
        gpus = app.screen.query_one(GpuPanel)
        assert await wait_for(pilot, lambda: "reading NVML" not in lines(gpus))
        text = lines(gpus)
        assert "no telemetry yet" not in text
        assert "no GPU — CPU run" in text or "VRAM" in text, text  # NVML's answer on this machine
        status = lines(app.screen.query_one(StatusBar))
        assert "profile llama-8b-bf16" in status and "profile —" not in status
        tree = lines(app.screen.query_one(StepTree))
        for g in map(str, range(1, 10)):
            assert f"{g}    {NAMES[g]}" in tree, (g, tree)
        table = app.screen.query_one(MasteryTable)
        assert await wait_for(pilot, lambda: table.row_count == 2)
        assert "v3: kept until this run grades" in str(table.border_subtitle)


@aio
async def test_while_a_run_trains_every_phase_is_in_view_and_only_the_running_one_unfolds(tmp_path):
    ev = Events(time.time() - 600)
    run_through(ev, ["1", "2", "3"])
    ev.step("4", "start")
    ev.step("4.1", "start")
    ev.step("4.1", "complete", duration=2.0)
    ev.step("4.2", "start")
    ev.step("4.2", "complete", duration=1.0)
    ev.step("4.3", "start")
    ev.step("4.3", "progress", dt=0.0, n=40, total=124, eta=60.0)
    app = BpllmApp(tmp_path, config=TuiConfig(), attach=False)
    async with app.run_test(size=SIZE) as pilot:
        app.state.apply_many(ev.end_now())
        app.state.set_process("running")
        tree = app.screen.query_one(StepTree)
        assert await wait_for(pilot, lambda: "4.3" in lines(tree))
        text = lines(tree)
        for g in map(str, range(1, 10)):
            assert f"{g}    {NAMES[g]}" in text, (g, text)
        assert "1.1" not in text and "3.6" not in text  # finished groups fold away
        assert all(f"4.{i}" in text for i in range(1, 8))  # the running group unfolds
        assert "Training loop  40/124 ETA" in text


@aio
async def test_mastery_says_so_when_empty_and_keeps_the_last_table_until_the_new_run_grades(tmp_path):
    ws = tmp_path / "ws"
    ev = Events(time.time() - 100)
    run_through(ev, ["1"])
    ev("mastery", version="v1", nodes=[{"node": "Branch", "score": 45.0, "n": 12, "band": "struggling"}])
    ev("run", phase="end", status="done", exit_code=0)
    app = BpllmApp(ws, config=TuiConfig(), attach=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(MasteryTable)
        assert await wait_for(pilot, lambda: "empty" in str(table.border_subtitle))
        app.state.apply_many(ev.out)
        assert await wait_for(pilot, lambda: table.row_count == 1)
        app._fresh_state(str(ws / "runs" / "r2"))  # the next run is attached: nothing graded yet
        app.state.apply({"v": 1, "seq": 1, "ts": time.time(), "run_id": "r2", "type": "run", "phase": "start",
                         "profile": "tiny", "plan": PLAN})
        await pilot.pause(0.3)
        assert table.row_count == 1 and "v1: kept until this run grades" in str(table.border_subtitle)
        app.state.apply({"v": 1, "seq": 2, "ts": time.time(), "run_id": "r2", "type": "mastery", "version": "v2",
                         "nodes": [{"node": "Delay", "score": 90.0, "n": 4, "band": "mastered"}]})
        assert await wait_for(pilot, lambda: str(table.border_subtitle) == "version v2")
        assert [str(k.value) for k in table.rows] == ["Delay"]  # the new table replaces the kept one


# ------------------------------------------------------------------ item 9: nothing cut at 160 columns
@aio
async def test_nothing_is_cut_at_160_columns(tmp_path):
    long = ("row 17 of lessons/lesson_doors.json: unknown node type Event_EnhancedInputActoin — did you mean "
            "Event_EnhancedInputAction? Fix the row or let quarantine keep it (datasets/quarantine/lessons.jsonl)")
    ev = Events(time.time() - 100)
    run_through(ev, ["1", "2", "3"])
    for s in range(1, 41):
        ev("train", dt=0.1, step=s, max_steps=124, epoch=round(s / 62, 4), loss=2.0 - s / 100, lr=1.5e-4,
           grad_norm=0.73, tokens_per_s=1234.5, version="v2", cycle=1)
    ev("eval", step=40, eval_loss=1.7, version="v2")
    ev("log", level="warning", message=long)
    ev("mastery", version="v2", nodes=[
        {"node": "Event_EnhancedInputAction", "score": 12.5, "n": 8, "band": "struggling", "delta": -3.5},
        {"node": "ClearTimerByFunctionName", "score": 70.0, "n": 3, "band": "learning", "delta": 10.0},
        {"node": "PrintString", "score": 96.0, "n": 40, "band": "mastered", "delta": 0.5}])
    ev("run", phase="end", status="done", exit_code=0)
    app = BpllmApp(tmp_path, config=TuiConfig(), attach=False)
    async with app.run_test(size=SIZE) as pilot:
        app.state.apply_many(ev.out)
        table = app.screen.query_one(MasteryTable)
        log = app.screen.query_one(LogView)
        assert await wait_for(pilot, lambda: table.row_count == 3 and log.settled)
        await pilot.pause(0.3)
        mastery = lines(table)
        assert "Event_EnhancedInputAction" in mastery and "struggling" in mastery and "-3.5" in mastery
        title = app.screen.query_one("#loss-title")
        figures = ("step 40/124", "epoch 0.65", "loss 1.6000", "eval 1.7000", "lr 1.50e-04", "‖g‖ 0.73",
                   "1,234 tok/s", "v2")
        await wait_for(pilot, lambda: all(f in lines(title) for f in figures))
        header = lines(title)
        for figure in figures:
            assert figure in header, (figure, header)
        shown = " ".join(lines(log.lines).split())
        assert " ".join(long.split()) in shown


# ------------------------------------------------------------------ item 10: re-attach rebuilds the log
def engine_lines(state: RunState) -> list[tuple[str, str]]:
    return [(r.level, r.text) for r in state.log if r.source == "engine"]


@aio
async def test_a_reattached_app_rebuilds_the_same_log_the_live_one_showed(tmp_path, monkeypatch):
    """Start, stop and resume the real engine from one app, then open a second app on the finished run:
    its log, rebuilt from events.jsonl, is the live one (the live app used to fold the whole file again on
    resume, so the two disagreed: 66 lines against 264)."""
    from bpllm_tui.screens.dialogs import Choice

    ws = bpllm_init(tmp_path / "ws")
    toml = ws / "bpllm.toml"
    toml.write_text(toml.read_text().replace("count = 500", "count = 40"))
    monkeypatch.setenv("BPLLM_TEST_SLOW_STEPS", "2.2=60")  # the engine's test knob: a slow real step
    live = BpllmApp(ws, config=TuiConfig(run_args=["--only", "1,2,9"]))
    async with live.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        assert await wait_for(pilot, lambda: live.state.step_status("2.2") == "running", timeout=90)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: isinstance(live.screen, Choice))
        await pilot.click("#choice-stop")
        assert await wait_for(pilot, lambda: live.state.process == "exited", timeout=60)
        monkeypatch.delenv("BPLLM_TEST_SLOW_STEPS")
        await pilot.press("r")
        assert await wait_for(pilot, lambda: live.state.status == "done" and live.state.process == "exited",
                              timeout=120), [r.text for r in list(live.state.log)[-10:]]
        shown = engine_lines(live.state)
    starts = [t for _, t in shown if t == "[STEP 1.1] STARTING: Analyze new exports"]
    assert len(starts) == 1, "the resume folded the run's events a second time"
    assert any("resumed from step 2.2" in t for _, t in shown) and any("run stopped (exit 2)" in t for _, t in shown)

    again = BpllmApp(ws, config=TuiConfig())
    async with again.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: again.state.status == "done", timeout=30)
        log = again.screen.query_one(LogView)
        assert await wait_for(pilot, lambda: log.settled and again.state.log_total > len(shown))
        assert engine_lines(again.state) == shown
        painted = sum(1 for line in log.lines.lines if line.text.strip())
        assert painted >= again.state.log_total  # every line is on the widget (wrapped ones take more)
