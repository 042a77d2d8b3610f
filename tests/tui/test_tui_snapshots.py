"""SVG snapshots of the screens (pytest-textual-snapshot): dashboard from the recorded engine events, the
editor with errors, the review diff, and a narrow terminal. Refresh with ``--snapshot-update`` after a
deliberate visual change (and look at the SVGs in tests/__snapshots__/)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from bpllm_tui.app import BpllmApp
from bpllm_tui.config import TuiConfig
from bpllm_tui.widgets.log_view import LogView
from bpllm_tui.widgets.mastery_table import MasteryTable
from bpllm_tui.widgets.step_tree import StepTree
from tests.tui_helpers import wait_for, write_run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tui" / "run" / "events.jsonl"
RUN_ID = json.loads(FIXTURE.read_text(encoding="utf-8").splitlines()[0])["run_id"]

EXPECTED = ('BLUEPRINT: BP_Door\nPARENT: Actor\n\nGRAPH: EventGraph\n\nNODE n1: Event_BeginPlay\n'
            'NODE n2: Delay [Duration=2.0]\nNODE n3: PrintString [InString="Open"]\n\n'
            'EXEC n1.Then -> n2.Execute\nEXEC n2.Completed -> n3.Execute')
ACTUAL = ('BLUEPRINT: BP_Door\nPARENT: Actor\n\nGRAPH: EventGraph\n\nNODE n1: Event_BeginPlay\n'
          'NODE n2: Delay [Duration=5.0]\nNODE n3: PrintString [InString="Open"]\nNODE n4: DestroyActor\n\n'
          'EXEC n1.Then -> n2.Execute\nEXEC n2.Then -> n3.Execute\nEXEC n3.Then -> n4.Execute')


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def fixture_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    run_dir = ws / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    shutil.copyfile(FIXTURE, run_dir / "events.jsonl")
    return ws


async def settle(app, pilot) -> None:
    """Wait until the dashboard has painted everything it was given (focus pinned: it changes borders)."""
    app.screen.query_one(StepTree).focus()
    await pilot.pause(0.3)
    log = app.screen.query_one(LogView)
    table = app.screen.query_one(MasteryTable)

    def done() -> bool:  # DataTable measures new rows on idle: wait for that too
        return (log.settled and app.screen._seen == app.state.versions
                and not table._require_update_dimensions and not table._new_rows)

    await wait_for(pilot, done, timeout=30, what="the dashboard to paint everything it was given")
    await pilot.pause(0.2)
    await wait_for(pilot, done, timeout=30, what="the dashboard to settle again")


async def follow_fixture(app, pilot, ws: Path) -> None:
    app.client.follow(ws / "runs" / RUN_ID, live=False)
    await wait_for(pilot, lambda: app.state.status == "done", timeout=30, what="the recorded run to be folded")
    await settle(app, pilot)


def test_dashboard_from_recorded_engine_events(snap_compare, tmp_path):
    ws = fixture_workspace(tmp_path)
    app = BpllmApp(ws, config=TuiConfig(), attach=False)
    assert snap_compare(app, terminal_size=(160, 48), run_before=lambda pilot: follow_fixture(app, pilot, ws))


def test_dashboard_training_with_loss_and_mastery(snap_compare, tmp_path):
    ws = tmp_path / "ws"
    run_dir = write_run(ws, finished=True, fixed_clock=1_772_323_200.0)
    hb = run_dir / "heartbeat.json"
    hb.unlink()  # its age depends on the clock
    app = BpllmApp(ws, config=TuiConfig(), attach=False)

    async def before(pilot):
        app.client.follow(run_dir, live=False)
        await wait_for(pilot, lambda: app.state.status == "done", timeout=30, what="the written run to be folded")
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=(160, 48), run_before=before)


def test_dashboard_narrow_terminal(snap_compare, tmp_path):
    ws = fixture_workspace(tmp_path)
    app = BpllmApp(ws, config=TuiConfig(), attach=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda pilot: follow_fixture(app, pilot, ws))


def test_editor_with_errors(snap_compare, tmp_path):
    ws = tmp_path / "ws"
    (ws / "lessons").mkdir(parents=True)
    broken = EXPECTED.replace("NODE n2: Delay [Duration=2.0]", "NODE n2: Dealy [Duration=2.0]") + "\nEXEC n3.Then ->"
    lesson = {"lesson_id": "lesson_doors", "lesson_name": "Doors", "prompts": [
        {"id": "D_01", "category": "delay", "instruction": "Open the door two seconds after play begins.",
         "expected_dsl": broken},
        {"id": "D_02", "category": "print", "instruction": "Print Open.", "expected_dsl": EXPECTED}]}
    (ws / "lessons" / "lesson_doors.json").write_text(json.dumps(lesson), encoding="utf-8")
    app = BpllmApp(ws, config=TuiConfig(), attach=False)

    async def before(pilot):
        await open_editor_still(app, pilot)

    assert snap_compare(app, terminal_size=(160, 40), run_before=before)


async def open_editor_still(app, pilot) -> None:
    """Open the editor on its first prompt, cursor at line 7 col 14, nothing blinking (stable snapshots)."""
    await pilot.press("e")
    await wait_for(pilot, lambda: getattr(app.screen, "lesson", None) is not None, what="the editor to open a lesson")
    editor = app.screen
    editor.dsl.cursor_blink = False
    for field in editor.query("Input"):
        field.cursor_blink = False
    editor.dsl.focus()
    editor.dsl.move_cursor((6, 13))
    await pilot.pause(0.2)


def test_review_structural_diff(snap_compare, tmp_path):
    ws = tmp_path / "ws"
    exams = ws / "runs" / "20260101-000000-abcd" / "exams" / "v2"
    exams.mkdir(parents=True)
    record = {"lesson_id": "lesson_doors", "prompt_id": "D_01", "category": "delay",
              "instruction": "Open the door two seconds after play begins.", "expected_dsl": EXPECTED,
              "actual_dsl": ACTUAL, "score": 0.62, "valid": True, "seen": False, "time_s": 3.2}
    (exams / "exam_lesson_doors_20260101_000000.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    app = BpllmApp(ws, config=TuiConfig(), attach=False)

    async def before(pilot):
        await pilot.press("v")
        await wait_for(pilot, lambda: getattr(app.screen, "current", None) is not None,
                       what="the review screen to show an answer")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(160, 40), run_before=before)


def test_editor_narrow_terminal(snap_compare, tmp_path):
    """80x24: the panes stack and the DSL field takes the width (it was ~2 columns wide, no text)."""
    ws = tmp_path / "ws"
    (ws / "lessons").mkdir(parents=True)
    lesson = {"lesson_id": "lesson_doors", "lesson_name": "Doors", "prompts": [
        {"id": "D_01", "category": "delay", "instruction": "Open the door two seconds after play begins.",
         "expected_dsl": EXPECTED.replace("NODE n2: Delay [Duration=2.0]", "NODE n2: Dealy [Duration=2.0]")}]}
    (ws / "lessons" / "lesson_doors.json").write_text(json.dumps(lesson), encoding="utf-8")
    app = BpllmApp(ws, config=TuiConfig(), attach=False)

    async def before(pilot):
        await open_editor_still(app, pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_review_narrow_terminal_comparing_versions(snap_compare, tmp_path):
    """80x24: the tree above, the two versions' answers side by side with room to read, what changed below."""
    ws = tmp_path / "ws"
    for version, actual in (("v1", ACTUAL), ("v2", EXPECTED.replace("Duration=2.0", "Duration=3.0"))):
        exams = ws / "models" / version / "exams"
        exams.mkdir(parents=True)
        record = {"lesson_id": "lesson_doors", "prompt_id": "D_01", "category": "delay",
                  "instruction": "Open the door two seconds after play begins.", "expected_dsl": EXPECTED,
                  "actual_dsl": actual, "valid": True, "seen": version == "v2",
                  "comparison": {"score": 60.0, "precision": 0.6, "recall": 0.6, "exact": False}}
        (exams / "exam_lesson_doors.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    app = BpllmApp(ws, config=TuiConfig(), attach=False)

    async def before(pilot):
        await pilot.press("v")
        await wait_for(pilot, lambda: getattr(app.screen, "current", None) is not None,
                       what="the review screen to show an answer")
        await pilot.press("p")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)
