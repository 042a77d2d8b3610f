"""The lesson editor: live validation, jump to problems, format, atomic save, swap recovery, unsaved guard."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bpllm_tui.app import BpllmApp
from bpllm_tui.lesson import Lesson, LessonError, SwapFile
from bpllm_tui.screens.dialogs import Choice
from bpllm_tui.screens.editor import EditorScreen
from tests.tui_helpers import aio, wait_for

ROOT = Path(__file__).resolve().parents[2]
SIZE = (160, 48)
GOOD = 'BLUEPRINT: BP_Hello\nPARENT: Actor\n\nGRAPH: EventGraph\n\nNODE n1: Event_BeginPlay\nNODE n2: PrintString [InString="Hi"]\n\nEXEC n1.Then -> n2.Execute'


def make_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "lessons").mkdir(parents=True)
    lesson = {"lesson_id": "lesson_t", "lesson_name": "Test", "description": "", "created": "2026-01-01",
              "prompts": [{"id": "T_01", "category": "hello", "instruction": "Print Hi at start.", "expected_dsl": GOOD},
                          {"id": "T_02", "category": "delay", "instruction": "Wait.", "expected_dsl": ""}],
              "extra_key": {"kept": True}}
    (ws / "lessons" / "lesson_t.json").write_text(json.dumps(lesson, indent=2), encoding="utf-8")
    return ws


def write_draft(ws: Path, draft: dict) -> Path:
    """A lesson drafted by grading: ``lessons/drafts/<lesson_id>.json``."""
    drafts = ws / "lessons" / "drafts"
    drafts.mkdir(exist_ok=True)
    path = drafts / f"{draft['lesson_id']}.json"
    path.write_text(json.dumps(draft), encoding="utf-8")
    return path


async def open_latest_draft(app, pilot, lesson_id: str) -> EditorScreen:
    """Press o (the newest draft) and wait until the editor shows ``lesson_id``."""
    await pilot.press("o")
    editor = app.mode_screen("editor")
    assert await wait_for(pilot, lambda: editor is not None and editor.lesson is not None
                          and editor.lesson.lesson_id == lesson_id)
    return editor


async def open_editor(app, pilot) -> EditorScreen:
    await pilot.press("e")
    assert await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen) and app.screen.lesson is not None)
    return app.screen


@aio
async def test_typing_an_error_underlines_and_lists_it_then_fixing_clears_it(tmp_path):
    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        assert editor.diagnostics == []
        editor.dsl.focus()
        editor.dsl.move_cursor((5, 21))  # end of "NODE n1: Event_BeginPlay"
        before = editor.validations
        await pilot.press(*"X")  # Event_BeginPlayX: an unknown node type
        assert await wait_for(pilot, lambda: editor.validations > before)
        assert editor.diagnostics, "the unknown type is reported"
        d = editor.diagnostics[0]
        assert d.line == 6 and d.severity == "error"
        # underlined in the rendered line (get_line is what TextArea paints)
        line = editor.dsl.get_line(5)
        assert any(span.style and "underline" in str(span.style) for span in line.spans)
        # listed, and the status line says so
        assert editor.query_one("#diagnostics").option_count >= 1
        assert "error" in str(editor.query_one("#editor-status").render())
        # jump: move away, select the problem, the cursor lands on it
        editor.dsl.move_cursor((0, 0))
        editor.query_one("#diagnostics").focus()
        await pilot.press("enter")
        assert editor.dsl.cursor_location[0] == 5
        # fix it
        editor.dsl.move_cursor((5, 22))
        editor.dsl.focus()
        before = editor.validations
        await pilot.press("backspace")
        assert await wait_for(pilot, lambda: editor.validations > before)
        assert editor.diagnostics == []
        assert not any(span.style and "underline" in str(span.style) for span in editor.dsl.get_line(5).spans)
        assert "valid" in str(editor.query_one("#editor-status").render())


@aio
async def test_format_rewrites_canonically_and_save_is_atomic_and_keeps_unknown_keys(tmp_path):
    from dsl.formatter import format_dsl

    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        messy = GOOD.replace("NODE n1: Event_BeginPlay", "NODE   n1 :  Event_BeginPlay")
        editor.dsl.replace(messy, (0, 0), editor.dsl.document.end)
        await pilot.pause(0.1)
        assert editor.dirty
        await pilot.press("ctrl+l")
        await pilot.pause(0.1)
        assert editor.dsl.text.rstrip("\n") == format_dsl(messy).rstrip("\n")
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert not editor.dirty
    saved = json.loads((ws / "lessons" / "lesson_t.json").read_text(encoding="utf-8"))
    assert saved["prompts"][0]["expected_dsl"].rstrip("\n") == format_dsl(messy).rstrip("\n")
    assert saved["extra_key"] == {"kept": True}
    assert not list((ws / "lessons").glob("*.tmp*")), "no temp files left behind"
    assert not SwapFile(ws, ws / "lessons" / "lesson_t.json").path.exists(), "saving removes the swap"


@aio
async def test_format_refuses_text_with_syntax_errors(tmp_path):
    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        broken = GOOD + "\nEXEC n1.Then ->"
        editor.dsl.replace(broken, (0, 0), editor.dsl.document.end)
        await pilot.press("ctrl+l")
        await pilot.pause(0.1)
        assert editor.dsl.text == broken
        assert any("Cannot format" in (n.title or "") for n in app._notifications)


@aio
async def test_quit_with_unsaved_edits_asks_and_cancel_keeps_them(tmp_path):
    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        editor.query_one("#instruction").focus()
        await pilot.press("end", *" now")
        await pilot.pause(0.05)
        assert editor.dirty
        await pilot.press("escape")  # back to the dashboard: edits are kept
        assert app.current_mode == "dashboard"
        await pilot.press("ctrl+q")
        assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
        assert app.current_mode == "editor"  # the guard shows where the edits are
        await pilot.click("#choice-cancel")
        await pilot.pause(0.1)
        assert app.is_running and editor.dirty
        await pilot.press("ctrl+q")
        assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
        await pilot.click("#choice-save")
        await pilot.pause(0.3)
    saved = json.loads((ws / "lessons" / "lesson_t.json").read_text(encoding="utf-8"))
    assert saved["prompts"][0]["instruction"] == "Print Hi at start. now"


@aio
async def test_new_lesson_add_prompt_and_switching_prompts(tmp_path):
    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        await pilot.press("f4")
        await pilot.pause(0.1)
        assert len(editor.lesson.prompts) == 3 and editor.index == 2
        assert editor.lesson.prompts[2]["id"] == "T_03"
        await pilot.press(*"Say bye")
        editor.dsl.focus()
        await pilot.press(*"BLUEPRINT: BP_Bye")
        await pilot.pause(0.1)
        assert editor.lesson.prompts[2]["instruction"] == "Say bye"
        assert editor.lesson.prompts[2]["expected_dsl"] == "BLUEPRINT: BP_Bye"
        # a new lesson: the guard asks first (discard), then the id prompt
        await pilot.press("ctrl+n")
        assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
        await pilot.click("#choice-discard")
        await pilot.pause(0.2)
        await pilot.press(*"lesson_new", "enter")
        assert await wait_for(pilot, lambda: editor.lesson is not None and editor.lesson.lesson_id == "lesson_new")
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
    assert (ws / "lessons" / "lesson_new.json").is_file()
    original = json.loads((ws / "lessons" / "lesson_t.json").read_text(encoding="utf-8"))
    assert len(original["prompts"]) == 2, "discarded edits were not written"


def test_unreadable_lesson_names_file_and_fix(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(LessonError, match="bad.json: not valid JSON"):
        Lesson.load(bad)


def test_killed_app_loses_no_edits(tmp_path):
    """Type into a real bpllm-tui process, SIGKILL it, reopen: the edits come back from the swap file."""
    ws = make_workspace(tmp_path)
    script = tmp_path / "drive.py"
    script.write_text(
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from bpllm_tui.app import BpllmApp\n"
        "async def main():\n"
        "    app = BpllmApp(Path(sys.argv[1]), attach=False)\n"
        "    async with app.run_test(size=(160, 48)) as pilot:\n"
        "        await pilot.press('e')\n"
        "        for _ in range(600):  # 30 s at most, then the test reads no TYPED line and fails\n"
        "            if getattr(app.screen, 'lesson', None) is not None:\n"
        "                break\n"
        "            await pilot.pause(0.05)\n"
        "        else:\n"
        "            sys.exit('the editor never opened a lesson')\n"
        "        app.screen.query_one('#instruction').focus()\n"
        "        await pilot.press('end', *' UNSAVED')\n"
        "        await pilot.pause(0.05)\n"
        "        print('TYPED', flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "asyncio.run(main())\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([sys.executable, str(script), str(ws)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert "TYPED" in line, proc.stderr.read() if proc.poll() is not None else line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    on_disk = json.loads((ws / "lessons" / "lesson_t.json").read_text(encoding="utf-8"))
    assert "UNSAVED" not in on_disk["prompts"][0]["instruction"]
    swap = SwapFile(ws, ws / "lessons" / "lesson_t.json").read()
    assert swap is not None and swap["lesson"]["prompts"][0]["instruction"].endswith("UNSAVED")

    async def reopen() -> str:
        app = BpllmApp(ws, attach=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("e")
            assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
            await pilot.pause(0.2)  # one layout pass: a click before it can miss the button
            await pilot.click("#choice-recover")
            editor = app.mode_screen("editor")
            assert await wait_for(pilot, lambda: editor.lesson is not None)
            assert editor.dirty
            return editor.query_one("#instruction").value

    import asyncio

    assert asyncio.run(reopen()).endswith("UNSAVED")


@aio
async def test_export_to_clipboard_file_and_import_it_back(tmp_path):
    """f9 writes Unreal clipboard text; f8 on that file gives back the same graph (structural score 1.0)."""
    from dsl.scorer import score

    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        await pilot.press("f9")
        await pilot.pause(0.1)
        out = ws / "exports" / "lesson_t_T_01.t3d.txt"
        assert out.is_file() and "Begin Object" in out.read_text(encoding="utf-8")
        await pilot.press("f4")  # a fresh prompt, then import the file into it through the dialog
        await pilot.pause(0.1)
        await pilot.press("f8")
        await pilot.pause(0.2)
        await pilot.press(*str(out), "enter")
        assert await wait_for(pilot, lambda: "PrintString" in editor.dsl.text)
        assert score(GOOD, editor.dsl.text).score == 1.0
        assert editor.lesson.prompts[2]["expected_dsl"] == editor.dsl.text


@aio
async def test_export_refuses_a_prompt_id_that_leaves_the_workspace(tmp_path):
    """A prompt id of ../../../../outside/x plus f9 must not write outside the workspace (issue 13)."""
    ws = make_workspace(tmp_path)
    path = ws / "lessons" / "lesson_t.json"
    path.write_text(path.read_text().replace('"T_01"', '"../../../../outside/x"'), encoding="utf-8")
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        assert editor.lesson.prompts[0]["id"] == "../../../../outside/x"
        await pilot.press("f9")
        await pilot.pause(0.2)
        assert editor.export_t3d() is None
        shown = [n.message for n in app._notifications]
        assert any("prompt id '../../../../outside/x' cannot name a file" in m and "lesson_t.json" in m
                   for m in shown), shown
    assert not list(tmp_path.rglob("*.t3d.txt")) and not (tmp_path / "outside").exists()


@aio
async def test_import_a_real_unreal_clipboard_export(tmp_path):
    from tests.conftest import CORPUS, CORPUS_MISSING

    hello = CORPUS / "raw-data" / "clipboard-exports" / "processed" / "hello_world.txt"
    if not hello.is_file():
        pytest.skip(CORPUS_MISSING)
    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        assert editor.import_t3d(hello)
        await pilot.pause(0.1)
        text = editor.dsl.text
        assert "NODE n1: Event_Tick" in text and 'PrintString [InString="Hello World"]' in text
        assert "EXEC n1.Then -> n2.Execute" in text
        assert editor.dirty


@aio
async def test_latest_draft_opens_in_the_editor(tmp_path):
    ws = make_workspace(tmp_path)
    write_draft(ws, {"lesson_id": "draft_13", "lesson_name": "Weak nodes: Branch", "prompts": [
        {"id": "D13_01", "category": "branch", "instruction": "Branch on a bool.", "expected_dsl": GOOD}]})
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_latest_draft(app, pilot, "draft_13")
        assert app.current_mode == "editor"
        assert editor.query_one("#instruction").value == "Branch on a bool."


@aio
async def test_accepting_a_draft_refuses_errors_then_moves_it_into_lessons(tmp_path):
    ws = make_workspace(tmp_path)
    drafts = ws / "lessons" / "drafts"
    broken = GOOD.replace("EXEC n1.Then -> n2.Execute", "EXEC n1.Then -> n9.Execute")
    write_draft(ws, {"lesson_id": "drill_01", "lesson_name": "Drill", "status": "draft", "focus_nodes": ["PrintString"],
                     "prompts": [{"id": "D_01", "category": "print", "instruction": "Print Hi.", "expected_dsl": broken}]})
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_latest_draft(app, pilot, "drill_01")
        await pilot.press("f6")  # a gold answer wires to a node that does not exist: refused, nothing moves
        await pilot.pause(0.3)
        assert (drafts / "drill_01.json").exists() and not (ws / "lessons" / "drill_01.json").exists()
        editor.dsl.text = GOOD  # the reviewer fixes it
        assert await wait_for(pilot, lambda: editor.dirty)
        await pilot.press("f6")  # saved, checked, moved
        assert await wait_for(pilot, lambda: (ws / "lessons" / "drill_01.json").exists())
        assert not (drafts / "drill_01.json").exists()
        accepted = json.loads((ws / "lessons" / "drill_01.json").read_text())
        assert accepted["status"] == "accepted" and accepted["prompts"][0]["expected_dsl"] == GOOD
        assert accepted["focus_nodes"] == ["PrintString"]  # unknown keys survive
        assert await wait_for(pilot, lambda: editor.lesson is not None
                              and editor.lesson.path == ws / "lessons" / "drill_01.json")
        await pilot.press("f6")  # no longer a draft
        await pilot.pause(0.2)
        assert (ws / "lessons" / "drill_01.json").exists()


def test_bpllm_accept_command(tmp_path):
    """`bpllm accept` as a user runs it: a clear refusal naming file, prompt and line; then the move."""
    ws = tmp_path / "ws"
    run = lambda *a: subprocess.run([sys.executable, "-m", "engine.cli", *a], cwd=ROOT, capture_output=True,  # noqa: E731
                                    text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert run("init", str(ws)).returncode == 0
    drafts = ws / "lessons" / "drafts"
    bad = {"lesson_id": "drill_01", "prompts": [{"id": "D_01", "instruction": "x", "expected_dsl": "NODE n1: Nope"}]}
    write_draft(ws, bad)
    res = run("accept", "drill_01", "-w", str(ws))
    assert res.returncode == 1 and "drill_01.json: prompt D_01 line" in res.stderr and "bpllm-tui --lesson" in res.stderr
    write_draft(ws, dict(bad, prompts=[dict(bad["prompts"][0], expected_dsl=GOOD)]))
    res = run("accept", "drill_01", "-w", str(ws))
    assert res.returncode == 0, res.stderr
    assert (ws / "lessons" / "drill_01.json").exists() and not (drafts / "drill_01.json").exists()
    assert "the next cycle examines it" in res.stdout  # the starter policy: data.integrate = "examined"
    res = run("accept", "drill_01", "-w", str(ws))
    assert res.returncode == 1 and "no draft 'drill_01'" in res.stderr


@aio
async def test_open_picker_delete_prompt_and_next_problem(tmp_path):
    ws = make_workspace(tmp_path)
    other = {"lesson_id": "lesson_u", "lesson_name": "Other", "prompts": [
        {"id": "U_01", "category": "", "instruction": "Broken.", "expected_dsl": GOOD + "\nNODE n3: Nope\nNODE n4: Nada"}]}
    (ws / "lessons" / "lesson_u.json").write_text(json.dumps(other), encoding="utf-8")
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        assert editor.lesson.lesson_id == "lesson_t"
        await pilot.press("f5")  # delete T_01 (asks first)
        assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
        await pilot.click("#choice-delete")
        assert await wait_for(pilot, lambda: len(editor.lesson.prompts) == 1)
        assert editor.lesson.prompts[0]["id"] == "T_02" and editor.dirty
        await pilot.press("ctrl+o")  # the picker, then the guard (discard), then lesson_u
        assert await wait_for(pilot, lambda: app.screen.id == "lesson-picker")
        await pilot.press("down", "enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, Choice) and app.screen.id == "unsaved-dialog")
        await pilot.click("#choice-discard")
        assert await wait_for(pilot, lambda: editor.lesson is not None and editor.lesson.lesson_id == "lesson_u")
        assert await wait_for(pilot, lambda: len(editor.diagnostics) >= 2)
        lines = sorted({d.line for d in editor.diagnostics if d.severity == "error"})
        editor.dsl.move_cursor((0, 0))
        await pilot.press("ctrl+g")
        assert editor.dsl.cursor_location[0] == lines[0] - 1
        positions = []
        for _ in range(len(editor.diagnostics)):
            await pilot.press("ctrl+g")
            positions.append(editor.dsl.cursor_location)
        assert lines[1] - 1 in [row for row, _ in positions]
        assert positions == sorted(positions[:-1]) + positions[-1:], "in order, then wraps to the first"
    saved = json.loads((ws / "lessons" / "lesson_t.json").read_text(encoding="utf-8"))
    assert len(saved["prompts"]) == 2, "the discarded delete never reached the file"


@aio
async def test_lesson_option_opens_the_editor_on_that_file(tmp_path):
    ws = make_workspace(tmp_path)
    from bpllm_tui.app import parse_args

    args = parse_args(["-w", str(ws), "--lesson", str(ws / "lessons" / "lesson_t.json"), "--no-attach"])
    app = BpllmApp(args.workspace, attach=not args.no_attach, open_lesson=args.lesson)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.current_mode == "editor")
        editor = app.screen
        assert await wait_for(pilot, lambda: editor.lesson is not None and editor.lesson.lesson_id == "lesson_t")


@aio
async def test_editor_at_80x24_stacks_the_panes_and_shows_dsl_text(tmp_path):
    """Side by side at 80 columns the DSL pane was ~2 columns wide and showed no text."""
    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(app, pilot)
        await pilot.pause(0.2)
        assert editor.dsl.size.width >= 70 and editor.dsl.size.height >= 5, editor.dsl.size
        lines = [str(editor.dsl.get_line(i)) for i in range(3)]
        assert lines[0] == "BLUEPRINT: BP_Hello"
        # the rendered region holds the text, not just the widget's line buffer
        strips = [editor.dsl.render_line(y).text for y in range(editor.dsl.size.height)]
        assert any("BLUEPRINT: BP_Hello" in s for s in strips), strips
        assert editor.query_one("#diag-pane").size.height >= 3


@aio
async def test_unsaved_edits_are_announced_on_open_and_recovered_into_the_dsl(tmp_path):
    """A killed session left edits to lesson_z (not the first lesson): the app says so when it opens,
    the editor offers them at once, and the cursor lands in the DSL."""
    ws = make_workspace(tmp_path)
    z = ws / "lessons" / "lesson_z.json"
    lesson = {"lesson_id": "lesson_z", "lesson_name": "Z", "prompts": [
        {"id": "Z_01", "category": "", "instruction": "Print Hi.", "expected_dsl": GOOD}]}
    z.write_text(json.dumps(lesson), encoding="utf-8")
    edited = json.loads(json.dumps(lesson))
    edited["prompts"][0]["expected_dsl"] = GOOD.replace('"Hi"', '"Recovered"')
    SwapFile(ws, z).write(edited, {"index": 0})
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        notes = [n.message for n in app._notifications]
        assert any("lesson_z.json has unsaved edits" in m and "press e" in m for m in notes), notes
        await pilot.press("e")
        assert await wait_for(pilot, lambda: isinstance(app.screen, Choice))
        await pilot.pause(0.2)
        await pilot.click("#choice-recover")
        editor = app.mode_screen("editor")
        assert await wait_for(pilot, lambda: editor.lesson is not None and editor.lesson.lesson_id == "lesson_z")
        await pilot.pause(0.1)
        assert '"Recovered"' in editor.dsl.text and editor.dirty
        assert app.focused is editor.dsl
        assert any("Recovered the unsaved edits of lesson_z.json" in n.message for n in app._notifications)


@aio
async def test_swap_written_off_the_ui_thread_never_outlives_a_save(tmp_path):
    """Keys write the swap from a thread; a save right after them leaves no swap behind (no stale write lands)."""
    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    swap = SwapFile(ws, ws / "lessons" / "lesson_t.json")
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        assert app.focused is editor.dsl  # the editor opens in the DSL
        editor.dsl.move_cursor(editor.dsl.document.end)
        await pilot.press(*"\nNODE n3: Delay")
        assert await wait_for(pilot, lambda: swap.path.exists())
        assert "NODE n3: Delay" in swap.read()["lesson"]["prompts"][0]["expected_dsl"]
        await pilot.press(*" [Duration=1.0]", "ctrl+s")
        await pilot.pause(0.5)
        assert not swap.path.exists()
        assert not editor.dirty
    saved = json.loads((ws / "lessons" / "lesson_t.json").read_text(encoding="utf-8"))
    assert saved["prompts"][0]["expected_dsl"].endswith("NODE n3: Delay [Duration=1.0]")


MATERIAL = ("MATERIAL: Red\nNODE n1: PrincipledBSDF [Base_Color=(0.8, 0.1, 0.1, 1)]\nNODE n2: MaterialOutput\n"
            "LINK n1.BSDF -> n2.Surface")


@aio
async def test_material_workspace_checks_material_text_and_offers_no_t3d_keys(tmp_path):
    """On a blender-material workspace the editor validates with that pack, and f8/f9 (Unreal T3D, the
    Blueprint pack's) are neither in the footer nor live."""
    ws = tmp_path / "ws"
    (ws / "lessons").mkdir(parents=True)
    (ws / "bpllm.toml").write_text('[workspace]\nlanguage = "blender-material"\n', encoding="utf-8")
    lesson = {"lesson_id": "mat", "lesson_name": "Materials", "description": "", "created": "2026-01-01",
              "prompts": [{"id": "M_01", "category": "red", "instruction": "A red material.", "expected_dsl": MATERIAL}]}
    (ws / "lessons" / "mat.json").write_text(json.dumps(lesson), encoding="utf-8")
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        assert editor.pack.name == "blender-material"
        assert await wait_for(pilot, lambda: editor.dsl.text.startswith("MATERIAL: Red"))
        assert not [d for d in editor.diagnostics if d.severity == "error"], editor.diagnostics
        keys = {b.action for (_, b, enabled, _) in app.screen.active_bindings.values() if enabled}
        assert "import_t3d" not in keys and "export_t3d" not in keys
        await pilot.press("f8")
        await pilot.pause(0.2)
        assert isinstance(app.screen, EditorScreen)  # no T3D import dialog opened
        editor.dsl.text = MATERIAL.replace("PrincipledBSDF", "PrincipledBSDFX")
        assert await wait_for(pilot, lambda: any(d.severity == "error" for d in editor.diagnostics))


@aio
async def test_undoing_back_to_the_saved_text_is_not_a_modification(tmp_path):
    """Modified means "differs from the file": typing marks it, undoing every keystroke clears it (no guard
    on quit, no swap file left), and a save makes the new text the reference."""
    ws = make_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(app, pilot)
        editor.query_one("#instruction").focus()
        await pilot.press("end", *"!!")
        assert await wait_for(pilot, lambda: editor.dirty)
        assert await wait_for(pilot, lambda: editor.swap.path.exists())  # crash insurance while modified
        await pilot.press("backspace", "backspace")
        assert await wait_for(pilot, lambda: not editor.dirty)
        assert await wait_for(pilot, lambda: not editor.swap.path.exists())  # nothing left to recover
        await pilot.press(*"?")
        assert await wait_for(pilot, lambda: editor.dirty)
        await pilot.press("ctrl+s")
        assert await wait_for(pilot, lambda: not editor.dirty)
        await pilot.press("backspace")
        assert await wait_for(pilot, lambda: editor.dirty)  # now the saved text has the "?"
        await pilot.press(*"?")
        assert await wait_for(pilot, lambda: not editor.dirty)
