"""Pilot tests of the app shell and the dashboard, on run directories written by the engine's own writer."""
from __future__ import annotations

from pathlib import Path

import pytest

from bpllm_tui.app import BpllmApp
from bpllm_tui.config import TuiConfig, load_config
from bpllm_tui.keys import APP_KEYS, known_ids
from bpllm_tui.screens.dashboard import DashboardScreen
from bpllm_tui.screens.help import HelpScreen
from bpllm_tui.widgets.log_view import LogView
from bpllm_tui.widgets.loss_chart import LossChart
from bpllm_tui.widgets.mastery_table import MasteryTable
from bpllm_tui.widgets.status_bar import StatusBar
from tests.tui_helpers import RUN_ID, aio, wait_for, write_run

SIZE = (160, 48)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "runs").mkdir(parents=True)
    (ws / "lessons").mkdir()
    return ws


@aio
async def test_dashboard_rebuilds_state_from_a_finished_run(workspace):
    write_run(workspace, finished=True)
    app = BpllmApp(workspace, config=TuiConfig())
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.state.status == "done")
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert app.state.run_id == RUN_ID
        assert app.state.core.exit_code == 0
        assert len(app.state.train) == 120 and len(app.state.evals) == 3
        assert screen.query_one(LossChart).train == app.state.train
        assert app.state.gpu_available is False and "NVML" in app.state.gpu_reason
        table = screen.query_one(MasteryTable)
        assert table.row_count == 3
        # weakest first
        assert str(table.get_row_at(0)[0]) == "Branch"
        status = str(screen.query_one(StatusBar).render())
        assert "DONE" in status and RUN_ID in status and "tiny" in status
        texts = [r.text for r in app.state.log]
        assert any("grad_norm spiked" in t for t in texts)
        assert any("unknown node type Foo" in t for t in texts)


@aio
async def test_dead_engine_is_shown_as_dead(workspace):
    # heartbeat says running, but its pid does not exist: the engine crashed or was killed
    write_run(workspace, finished=False, pid=999_999_999)
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.state.status == "dead"), app.state.status
        assert app.state.core.steps["4.2"].status == "running"  # as the events left it ...
        assert app.state.step_status("4.2") == "stopped"  # ... shown as interrupted
        assert await wait_for(pilot, lambda: "DEAD" in str(app.screen.query_one(StatusBar).render()))
        assert any("is gone" in r.text for r in app.state.log)


@aio
async def test_keys_switch_screens_and_help_lists_every_binding_id(workspace):
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause(0.1)
        shown = app.export_screenshot()
        for spec in APP_KEYS:
            assert spec.id in shown, spec.id
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("v")
        assert app.current_mode == "review"
        await pilot.press("h")
        assert app.current_mode == "history"
        await pilot.press("d")
        assert app.current_mode == "dashboard"
        await pilot.press("e")
        assert app.current_mode == "editor"
        await pilot.press("escape")
        assert app.current_mode == "dashboard"


@aio
async def test_keys_are_rebindable_from_the_workspace_config(workspace):
    (workspace / "bpllm.toml").write_text('[tui]\ntheme = "nord"\n[tui.keys]\n"screen.history" = "f7"\n',
                                          encoding="utf-8")
    config = load_config(workspace)
    assert config.keys == {"screen.history": "f7"} and config.theme == "nord"
    app = BpllmApp(workspace, config=config)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "nord"
        await pilot.press("h")  # the old key no longer opens history
        assert app.current_mode == "dashboard"
        await pilot.press("f7")
        assert app.current_mode == "history"


def test_every_key_has_a_unique_id():
    from bpllm_tui.keys import ALL_KEY_GROUPS

    ids = [spec.id for _, group in ALL_KEY_GROUPS for spec in group]
    assert len(ids) == len(set(ids)) == len(known_ids())
    # stop must never be ctrl+c (that copies in Textual)
    stop = next(spec for spec in APP_KEYS if spec.id == "run.stop")
    assert "ctrl+c" not in stop.key


@aio
async def test_command_palette_offers_the_same_actions(workspace):
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        commands = {c.title: c.help for c in app.get_system_commands(app.screen)}
        for spec in APP_KEYS:  # full names, each with its key
            assert spec.palette_title in commands
            assert commands[spec.palette_title].startswith("key "), commands[spec.palette_title]
        assert commands["Open the score history"].startswith("key h ·")
        assert commands["Quit bpllm"].startswith("key ^q ·")
        # dashboard-specific actions are offered on the dashboard, named in full
        assert "Loss chart: logarithmic y axis on/off" in commands and "Log y" not in commands
        # and running one from the palette does what the key does
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"History")
        await pilot.pause(0.3)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.current_mode == "history", timeout=5)


@aio
async def test_log_filter_level_and_pause(workspace):
    write_run(workspace, finished=True)
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.state.status == "done")
        await pilot.pause(0.2)
        log = app.screen.query_one(LogView)
        total = len(log.lines.lines)
        await pilot.press("slash")
        await pilot.press(*"grad_norm")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert len(log.lines.lines) == 1
        await pilot.press("slash")
        await pilot.press(*["backspace"] * 9, "enter")
        await pilot.press("L", "L", "L")  # debug -> info -> warning -> error
        await pilot.pause(0.1)
        assert log.min_level == "error"
        assert 0 < len(log.lines.lines) < total
        await pilot.press("p")
        assert log.follow is False
        app.state.add_log("arrives while paused", "error", "tui")
        await pilot.pause(0.3)
        assert not any("arrives while paused" in str(line.text) for line in log.lines.lines)
        await pilot.press("p")
        await pilot.pause(0.2)
        assert any("arrives while paused" in str(line.text) for line in log.lines.lines)


@aio
async def test_loss_chart_toggles(workspace):
    write_run(workspace, finished=True)
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.state.status == "done")
        chart = app.screen.query_one(LossChart)
        await pilot.press("l")
        assert chart.log_scale is True
        await pilot.press("w")
        assert chart.window == app.config.loss_window
        await pilot.press("w", "l")
        assert chart.window == 0 and chart.log_scale is False


@aio
async def test_stop_and_resume_with_no_engine_say_so(workspace):
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("x")
        await pilot.pause(0.1)
        assert any("No engine is running" in n.message for n in app._notifications)
        await pilot.press("r")
        await pilot.pause(0.1)
        assert any("No workspace here yet" in n.message for n in app._notifications)


@aio
async def test_quit_with_nothing_running_exits(workspace):
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause(0.2)
    assert app.return_value == 0


@aio
async def test_theme_key_opens_the_picker_and_back_keys_return(workspace):
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "CommandPalette"
        await pilot.press("escape")
        await pilot.pause(0.1)
        for key in ("v", "h"):
            await pilot.press(key)
            assert app.current_mode != "dashboard"
            if key == "h":
                await pilot.press("ctrl+r")  # reload the history store: no crash on an empty workspace
            await pilot.press("escape")
            assert app.current_mode == "dashboard"


@aio
async def test_bad_settings_are_reported_not_ignored(workspace, tmp_path, monkeypatch):
    user = tmp_path / "tui.toml"
    user.write_text('stall_seconds = -3\n[keys]\n"no.such.key" = "f2"\n"run.start" = "f5"\n', encoding="utf-8")
    monkeypatch.setenv("BPLLM_TUI_CONFIG", str(user))
    config = load_config(workspace)
    assert config.keys["run.start"] == "f5" and config.stall_seconds == 120.0
    assert any("stall_seconds" in p for p in config.problems)
    app = BpllmApp(workspace, config=config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        messages = " ".join(n.message for n in app._notifications)
        assert "no.such.key" in messages and "stall_seconds" in messages


@aio
async def test_malformed_lines_are_reported_and_a_replaced_events_file_is_refolded(workspace):
    run_dir = write_run(workspace, finished=True, train_steps=40)
    events = run_dir / "events.jsonl"
    with open(events, "a", encoding="utf-8") as fh:
        fh.write("{this is not json\n")
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.state.status == "done")
        assert await wait_for(pilot, lambda: app.state.malformed == 1)
        assert any("not JSON" in r.text and "events.jsonl line" in r.text for r in app.state.log)
        assert len(app.state.train) == 40
        # the file is replaced by a shorter one (e.g. restored from a backup): the fold starts over
        lines = events.read_text(encoding="utf-8").splitlines()[:5]
        tmp = events.with_suffix(".new")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(events)
        assert await wait_for(pilot, lambda: app.state.events == 5, timeout=10), app.state.events
        assert app.state.train == [] and app.state.status in ("running", "dead")


@aio
async def test_wrong_typed_event_is_skipped_with_a_notice_not_a_crash(workspace):
    """issue 13: `"id": {...}, "name": []` used to pass the schema and crash the step tree (TypeError), the app
    then exiting 0. Now the reader rejects it by file and line, the log and a notice say so, the app lives on."""
    import json

    run_dir = write_run(workspace, finished=True, train_steps=40)
    events = run_dir / "events.jsonl"
    n = len(events.read_bytes().splitlines())
    bad = {"v": 1, "seq": 601, "ts": 1, "run_id": "r", "type": "step", "id": {"a": 1}, "name": [],
           "status": "progress"}
    with open(events, "ab") as fh:
        fh.write(json.dumps(bad).encode() + b"\n")
        fh.write(b'{"v":1,"seq":602,"type":"log","message":"\xff"}\n')
    app = BpllmApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.state.status == "done")
        assert await wait_for(pilot, lambda: app.state.malformed == 2)
        notices = " ".join(note.message for note in app._notifications)
        assert f"{events} line {n + 1} (byte" in notices and "'name' must be a string" in notices
        logged = [r.text for r in app.state.log if r.source == "tui"]
        assert any(f"{events} line {n + 2}" in t and "not UTF-8" in t for t in logged)
        # the same event arriving live, while the app follows the file
        with open(events, "ab") as fh:
            fh.write(json.dumps(bad | {"seq": 603}).encode() + b"\n")
        assert await wait_for(pilot, lambda: app.state.malformed == 3)
        await pilot.pause(0.5)  # several refresh ticks of the step tree
        assert app.return_code is None and app.is_running
        assert "{'a': 1}" not in app.state.core.steps


def test_a_crashing_app_exits_non_zero(workspace):
    """An unhandled exception in the app must reach the shell as a failure (Textual prints it and sets
    return_code 1; main() used to return 0). The fault is injected into a widget on purpose."""
    import subprocess
    import sys

    script = ("import sys\n"
              "from bpllm_tui import app\n"
              "from bpllm_tui.widgets import step_tree\n"
              "def boom(self, state):\n"
              "    raise RuntimeError('injected widget fault')\n"
              "step_tree.StepTree.sync = boom\n"
              "sys.exit(app.main(['-w', sys.argv[1], '--no-attach']))\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script, str(workspace)], cwd=root, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, start_new_session=True)
    assert "injected widget fault" in done.stderr
    assert done.returncode == 1, done.returncode


@aio
async def test_dashboard_at_80x24_keeps_run_keys_and_status_essentials(workspace):
    """At 80 columns the footer showed the chart keys and cut Stop; the status bar cut the ETA."""
    from textual.widgets._footer import FooterKey

    write_run(workspace, finished=True)
    app = BpllmApp(workspace, config=TuiConfig())
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.state.status == "done")
        footer_keys = lambda: [k for k in app.screen.query(FooterKey) if "-command-palette" not in k.classes]  # noqa: E731
        first = ["start_cycle", "stop_run", "resume_run", "quit"]
        # the footer recomposes when bindings change: wait for a settled one
        assert await wait_for(pilot, lambda: [k.action for k in footer_keys()[:4]] == first), \
            [k.action for k in footer_keys()]
        assert await wait_for(pilot, lambda: all(0 < k.region.width and k.region.right <= 80
                                                 for k in footer_keys()[:4]) and len(footer_keys()) >= 4)
        status = lambda: str(app.screen.query_one(StatusBar).render())  # noqa: E731
        assert await wait_for(pilot, lambda: "DONE" in status()), status()  # the bar repaints on its tick
        assert "ETA" in status() and "elapsed" in status(), status()


@aio
async def test_skipped_step_shows_the_engines_reason_on_its_row(workspace):
    from bpllm_tui.widgets.step_tree import StepTree

    write_run(workspace, finished=True)  # step 1.2 is skipped with reason "no new exports"
    app = BpllmApp(workspace, config=TuiConfig())
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.state.status == "done")
        await pilot.pause(0.2)
        tree = app.screen.query_one(StepTree)
        label = str(tree._step_nodes["1.2"].label)
        assert "no new exports" in label, label
