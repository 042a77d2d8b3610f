"""Exam review and history screens: real records (the reference corpus, read in place) and engine-shaped ones."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bpllm_tui import exams
from bpllm_tui.app import BpllmApp
from bpllm_tui.screens.history import HistoryScreen, collect
from bpllm_tui.screens.review import ReviewScreen
from tests.conftest import CORPUS, CORPUS_MISSING
from tests.tui_helpers import aio, wait_for

SIZE = (160, 48)
GOLD = ('BLUEPRINT: BP_A\nPARENT: Actor\n\nGRAPH: EventGraph\n\nNODE n1: Event_BeginPlay\n'
        'NODE n2: PrintString [InString="A"]\n\nEXEC n1.Then -> n2.Execute')
# same graph, renumbered: the structural scorer must see no difference
RENUMBERED = GOLD.replace("n1", "n9").replace("n2", "n1").replace("n9", "n2")
WRONG = GOLD.replace('InString="A"', 'InString="B"')


def engine_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    exams_dir = ws / "runs" / "20260101-000000-abcd" / "exams" / "v3"
    exams_dir.mkdir(parents=True)
    (ws / "lessons").mkdir()
    rows = [
        {"lesson_id": "lesson_x", "prompt_id": "X_01", "instruction": "Print A", "expected_dsl": GOLD,
         "actual_dsl": RENUMBERED, "score": 1.0, "valid": True, "seen": True, "time_s": 1.0, "category": "print"},
        {"lesson_id": "lesson_x", "prompt_id": "X_02", "instruction": "Print A again", "expected_dsl": GOLD,
         "actual_dsl": WRONG, "score": 0.8, "valid": True, "seen": False, "time_s": 1.2, "category": "print"},
    ]
    (exams_dir / "exam_lesson_x_20260101_000000.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return ws


def test_records_of_both_shapes_normalise():
    ref = exams.normalise({"prompt_id": "L01_01", "expected_dsl": GOLD, "actual_dsl": GOLD,
                           "validation": {"valid": False}, "comparison": "{'score': 0.5, 'missing_lines': []}",
                           "time_seconds": 7.2}, "lesson_01")
    assert (ref.score, ref.valid, ref.time_s, ref.lesson_id) == (50.0, False, 7.2, "lesson_01")
    eng = exams.normalise({"lesson_id": "l", "prompt_id": "p", "score": 0.25, "valid": True, "seen": False})
    assert (eng.score, eng.valid, eng.seen) == (25.0, True, False)


@aio
async def test_review_shows_structural_diff_filters_failures_and_copies_to_correction(tmp_path):
    ws = engine_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen) and app.screen.current is not None)
        review = app.screen
        # the first failing prompt is selected: X_02 with a wrong parameter
        assert review.current.prompt_id == "X_02"
        diffs = review.query_one("#differences")
        texts = [str(diffs.get_option_at_index(i).prompt) for i in range(diffs.option_count)]
        assert any("wrong param" in t and "InString" in t for t in texts), texts
        assert "~" in str(review.query_one("#actual").render())
        # failures only hides the renumbered-but-identical X_01
        tree = review.query_one("#exam-tree")
        await pilot.press("f")
        await pilot.pause(0.1)
        labels = [str(n.label) for n in tree.root.children[0].children[0].children[0].children]
        assert any("X_02" in l for l in labels) and not any("X_01" in l for l in labels)
        await pilot.press("c")
        await pilot.pause(0.1)
    corrections = list((ws / "lessons").glob("correction_*.json"))
    assert len(corrections) == 1
    lesson = json.loads(corrections[0].read_text(encoding="utf-8"))
    assert lesson["prompts"][0]["instruction"] == "Print A again"
    assert lesson["prompts"][0]["expected_dsl"] == GOLD
    assert lesson["prompts"][0]["source"] == "lesson_x/X_02"


@aio
async def test_renumbered_identical_graph_shows_no_difference(tmp_path):
    ws = engine_workspace(tmp_path)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        assert await wait_for(pilot, lambda: getattr(app.screen, "current", None) is not None)
        review = app.screen
        f = review.current_file
        record = next(r for r in exams.load(f)[0] if r.prompt_id == "X_01")
        review.show_record(f, record)
        diffs = review.query_one("#differences")
        assert diffs.option_count == 1
        assert "same graph" in str(diffs.get_option_at_index(0).prompt)


@aio
async def test_review_shows_a_real_reference_exam_record(tmp_path):
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_MISSING)
    ws = tmp_path / "ws"
    ws.mkdir()
    app = BpllmApp(ws, attach=False, exam_sources=[CORPUS / "results" / "exams"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        assert await wait_for(pilot, lambda: getattr(app.screen, "current", None) is not None, timeout=20)
        review = app.screen
        assert len(review.files) == 56
        # L03_10 of exam_lesson_03_20260227_111856: renumbered nodes, the same graph (scored 0.33-0.65 by the
        # reference project's line overlap); the structural view shows no missing or extra nodes
        f = next(x for x in review.files if x.path.name == "exam_lesson_03_20260227_111856.jsonl")
        record = next(r for r in exams.load(f)[0] if r.prompt_id == "L03_10")
        review.show_record(f, record)
        info = str(review.query_one("#prompt-info").render())
        assert "structural 100.0" in info, info
        assert record.score is not None and record.score < 70


def test_history_collects_lesson_by_version_from_the_store_and_files(tmp_path):
    ws = engine_workspace(tmp_path)
    db = ws / "history.db"
    from engine.workspace.history import History

    h = History(db)
    h.add_exam_results("v4", "run1", [
        {"lesson_id": "lesson_x", "prompt_id": "X_01", "score": 100.0, "valid": True, "seen": True},
        {"lesson_id": "lesson_x", "prompt_id": "X_02", "score": 50.0, "valid": False, "seen": False},
    ])
    h.set_mastery("v4", [{"node": "Branch", "score": 40.0, "n": 3, "band": "struggling"}])
    h.close()
    cells, versions = collect(ws, [])
    assert versions == ["v3", "v4"]
    v3, v4 = cells[("lesson_x", "v3")], cells[("lesson_x", "v4")]
    assert v3.avg == pytest.approx(90.0) and v3.valid_pct == 100.0
    assert v4.avg == pytest.approx(75.0) and v4.valid_pct == 50.0
    assert v4.seen == [100.0] and v4.unseen == [50.0]


@aio
async def test_history_screen_renders_scores_split_and_trends(tmp_path):
    ws = engine_workspace(tmp_path)
    from engine.workspace.history import History

    h = History(ws / "history.db")
    h.add_exam_results("v4", "run1", [{"lesson_id": "lesson_x", "prompt_id": "X_01", "score": 100.0,
                                       "valid": True, "seen": False}])
    h.set_mastery("v3", [{"node": "Branch", "score": 40.0, "n": 3}])
    h.set_mastery("v4", [{"node": "Branch", "score": 80.0, "n": 5}])
    h.close()
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        await pilot.pause(0.2)
        screen = app.screen
        scores = screen.query_one("#scores")
        assert scores.row_count == 1 and len(scores.columns) == 3  # lesson, v3, v4
        trends = screen.query_one("#trends")
        assert trends.row_count == 1
        row = [str(c) for c in trends.get_row_at(0)]
        assert row[0] == "Branch" and "40.0" in row[1] and "80.0" in row[2]
        assert "unseen 100.0" in str(screen.query_one("#seen-split").render())


def test_engine_exam_layout_and_percent_scores_are_understood(tmp_path):
    """bpllm's exam step writes models/<version>/exams/exam_<lesson>.jsonl with comparison.score in percent."""
    ws = tmp_path / "ws"
    path = ws / "models" / "v2" / "exams" / "exam_lesson_x.jsonl"
    path.parent.mkdir(parents=True)
    row = {"prompt_id": "X_01", "lesson_id": "lesson_x", "instruction": "Print A", "expected_dsl": GOLD,
           "actual_dsl": WRONG, "validation": {"valid": True, "parses": True},
           "comparison": {"score": 0.9, "precision": 1.0, "recall": 0.8, "exact": False}}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    [found] = exams.discover(ws)
    assert (found.version, found.lesson_id) == ("v2", "lesson_x")
    [record] = exams.load(found)[0]
    assert record.score == pytest.approx(0.9)  # percent already: not 90


@aio
async def test_history_skips_unreadable_rows_and_a_broken_store_with_a_notice(tmp_path):
    """issue 13 item 9: the history store is a reader of state too. A score that is not a number used to
    crash the screen (float('abc')); a store that is not a database showed an empty history without a word."""
    import sqlite3

    ws = engine_workspace(tmp_path)
    from engine.workspace.history import History

    db = ws / "history.db"
    h = History(db)
    h.add_exam_results("v4", "run1", [{"lesson_id": "lesson_x", "prompt_id": "X_01", "score": 100.0,
                                       "valid": True, "seen": False}])
    h.set_mastery("v4", [{"node": "Branch", "score": 80.0, "n": 5}, {"node": "Delay", "score": 70.0, "n": 2}])
    h.close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO exam_results (version, lesson_id, prompt_id, score) VALUES ('v4','lesson_x','X_02','abc')")
    conn.execute("UPDATE mastery SET score = 'high' WHERE node = 'Delay'")
    conn.commit()
    conn.close()
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        await pilot.pause(0.2)
        assert app.is_running
        trends = app.screen.query_one("#trends")
        assert trends.row_count == 1 and str(trends.get_row_at(0)[0]) == "Branch"
        notices = " ".join(n.message for n in app._notifications)
        assert f"{db} exam_results row (version='v4', lesson_id='lesson_x', prompt_id='X_02')" in notices
        assert "'abc' is not a number" in notices and "+1 more" in notices
    problems: list[str] = []
    db.write_bytes(b"this is not a database" * 100)
    cells, _ = collect(ws, [], problems)
    assert any(str(db) in p and "unreadable" in p for p in problems), problems


def write_exam(ws: Path, version: str, actual: str, *, prompt_id: str = "X_01", seen: bool = False,
               expected: str = GOLD) -> Path:
    """An exam file where the engine writes it: models/<version>/exams/exam_<lesson>.jsonl."""
    path = ws / "models" / version / "exams" / "exam_lesson_x.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"lesson_id": "lesson_x", "prompt_id": prompt_id, "instruction": "Print A", "expected_dsl": expected,
           "actual_dsl": actual, "valid": True, "seen": seen,
           "comparison": {"score": 50.0, "precision": 0.5, "recall": 0.5, "exact": False}}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    return path


def differences(review) -> list[str]:
    diffs = review.query_one("#differences")
    return [str(diffs.get_option_at_index(i).prompt) for i in range(diffs.option_count)]


async def open_review(app, pilot):
    await pilot.press("v")
    assert await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen) and app.screen.current is not None)
    return app.screen


@aio
async def test_review_follows_new_exam_files_and_ctrl_r_reloads(tmp_path):
    """Opened during cycle 2, the review shows v2's exam when it lands (no restart), and ctrl+r reads at once."""
    ws = tmp_path / "ws"
    write_exam(ws, "v1", WRONG)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        review = await open_review(app, pilot)
        assert [f.version for f in review.files] == ["v1"]
        write_exam(ws, "v2", GOLD)  # the engine's exam step of cycle 2 finishes
        assert await wait_for(pilot, lambda: review.current_file is not None and review.current_file.version == "v2",
                              timeout=15), "the review never noticed v2's exam"
        assert "2 exam files" in str(review.query_one("#review-title").render())
        write_exam(ws, "v3", WRONG)
        await pilot.press("ctrl+r")
        await pilot.pause(0.05)
        assert [f.version for f in review.files] == ["v1", "v2", "v3"]
        assert review.current_file.version == "v3"


@aio
async def test_same_text_wire_between_other_nodes_is_explained_once(tmp_path):
    """EXEC n1.Then -> n2.Execute in both texts, but n2 is PrintString in one and Delay in the other."""
    ws = tmp_path / "ws"
    write_exam(ws, "v1", GOLD.replace('PrintString [InString="A"]', "Delay [Duration=1.0]"))
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        review = await open_review(app, pilot)
        texts = differences(review)
        wires = [t for t in texts if "EXEC n1.Then -> n2.Execute" in t]
        assert len(wires) == 1, texts
        assert "nodes differ" in wires[0] and "n2 is PrintString in expected, Delay in actual" in wires[0]
        assert not any("missing EXEC" in t or "extra EXEC" in t for t in texts), texts
        assert any("missing node" in t and "PrintString" in t for t in texts)  # the node itself still is


@aio
async def test_scores_and_places_are_said_in_words_not_line_zero(tmp_path):
    ws = tmp_path / "ws"
    # no PARENT header and nothing in common line by line: the header difference has no actual line
    write_exam(ws, "v1", "BLUEPRINT: BP_B\n\nGRAPH: Other\n\nNODE n1: Event_Tick")
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        review = await open_review(app, pilot)
        info = str(review.query_one("#prompt-info").render())
        assert "lines in common 0 %" in info and not re.search(r"\bline \d", info), info
        texts = differences(review)
        header = next(t for t in texts if t.startswith("header"))
        assert "exp L2" in header
        missing_parent = next(t for t in texts if "missing PARENT header" in t)
        assert "(header)" in missing_parent and "1:1" not in missing_parent, missing_parent


@aio
async def test_compare_one_prompt_across_versions(tmp_path):
    ws = tmp_path / "ws"
    write_exam(ws, "v1", GOLD.replace('PrintString [InString="A"]', "Delay [Duration=1.0]"))
    write_exam(ws, "v2", WRONG, seen=True)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        review = await open_review(app, pilot)
        assert review.current_file.version == "v2"
        await pilot.press("p")
        await pilot.pause(0.1)
        assert review.query_one("#expected-pane").border_title.startswith("v1 answer")
        assert review.query_one("#actual-pane").border_title.startswith("v2 answer")
        assert "Delay" in str(review.query_one("#expected").render())
        assert 'InString="B"' in str(review.query_one("#actual").render())
        texts = differences(review)
        assert any(t.startswith("fixed in v2") and "Delay" in t for t in texts), texts
        assert any(t.startswith("new in v2") and "InString" in t for t in texts), texts
        info = str(review.query_one("#prompt-info").render())
        assert "v1 vs v2" in info and "unseen" in info and "seen" in info
        await pilot.press("p")  # the only pair: back to expected vs actual
        await pilot.pause(0.1)
        assert review.query_one("#expected-pane").border_title == "Expected (gold)"


@aio
async def test_review_at_80x24_keeps_the_answers_readable(tmp_path):
    ws = tmp_path / "ws"
    write_exam(ws, "v1", WRONG)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        review = await open_review(app, pilot)
        await pilot.pause(0.2)
        for pane in ("#expected-pane", "#actual-pane"):
            assert review.query_one(pane).size.height >= 5, (pane, review.query_one(pane).size)
        tree = review.query_one("#exam-tree")
        assert tree.cursor_node is not None and tree.cursor_node.data[0] == "prompt"
        assert "BLUEPRINT: BP_A" in str(review.query_one("#actual").render())


# -- material previews (bpllm render-exam's index beside the exam file) ---------------------------------
MAT_GOLD = ("MATERIAL: Paint\nNODE n1: PrincipledBSDF [Base_Color=(0.8, 0.05, 0.05, 1)]\nNODE n2: MaterialOutput\n"
            "LINK n1.BSDF -> n2.Surface\n")
MAT_WRONG = MAT_GOLD.replace("0.8, 0.05, 0.05", "0.05, 0.1, 0.8")


def material_workspace(tmp_path: Path, previews: bool) -> Path:
    """A material exam in the engine's layout; with PREVIEWS, real PNGs and render-exam's index."""
    from PIL import Image

    ws = tmp_path / "ws"
    exams_dir = ws / "models" / "v1" / "exams"
    exams_dir.mkdir(parents=True)
    rows = [{"lesson_id": "paint", "prompt_id": "M_01", "instruction": "Red paint", "expected_dsl": MAT_GOLD,
             "actual_dsl": MAT_WRONG, "score": 0.5, "valid": True, "seen": False},
            {"lesson_id": "paint", "prompt_id": "M_02", "instruction": "Red paint again", "expected_dsl": MAT_GOLD,
             "actual_dsl": "MATERIAL: Paint\nNODE n1: Bogus\n", "score": 0.0, "valid": False, "seen": False}]
    (exams_dir / "exam_paint.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if previews:
        out = exams_dir / "previews"
        out.mkdir()
        Image.new("RGB", (32, 32), (200, 20, 20)).save(out / "gold.png")
        Image.new("RGB", (32, 32), (20, 30, 200)).save(out / "wrong.png")
        index = {"exam": "exam_paint.jsonl", "size": 32, "samples": 4, "records": {
            "M_01": {"expected": "previews/gold.png", "actual": "previews/wrong.png"},
            "M_02": {"expected": "previews/gold.png", "actual": None,
                     "actual_error": "does not validate: 2:10: error [unknown-node] Bogus"}}}
        (out / "exam_paint.previews.json").write_text(json.dumps(index), encoding="utf-8")
    return ws


async def _open_material_record(pilot, app, prompt_id: str):
    await pilot.press("v")
    assert await wait_for(pilot, lambda: getattr(app.screen, "current", None) is not None)
    review = app.screen
    f = review.current_file
    review.show_record(f, next(r for r in exams.load(f)[0] if r.prompt_id == prompt_id))
    await pilot.pause(0.1)
    return review


def _preview_texts(review, side: str) -> list[str]:
    from textual.widgets import Static

    return [str(s.render()) for s in review.query_one(f"#{side}-preview").query(Static)
            if "preview-path" in s.classes]


@aio
async def test_review_shows_material_renders_side_by_side(tmp_path, monkeypatch):
    from textual_image.widget import Image as ImageWidget

    monkeypatch.delenv("BPLLM_TUI_IMAGES", raising=False)
    ws = material_workspace(tmp_path, previews=True)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        review = await _open_material_record(pilot, app, "M_01")
        assert review.query_one("#previews").display
        shown = {side: [Path(w.image).name for w in review.query_one(f"#{side}-preview").query(ImageWidget)]
                 for side in ("expected", "actual")}
        assert shown == {"expected": ["gold.png"], "actual": ["wrong.png"]}
        assert review.query_one("#expected-preview").border_title == "Expected render"
        # a record whose answer did not validate: its side says why, the gold still shows
        review = await _open_material_record(pilot, app, "M_02")
        assert len(review.query_one("#expected-preview").query(ImageWidget)) == 1
        assert not review.query_one("#actual-preview").query(ImageWidget)
        assert any("no image" in t and "unknown-node" in t for t in _preview_texts(review, "actual"))


@aio
async def test_review_shows_preview_paths_when_pictures_are_off(tmp_path, monkeypatch):
    """The browser mode (serve sets BPLLM_TUI_IMAGES=0 for the app it launches): PNG paths as text."""
    from textual_image.widget import Image as ImageWidget

    monkeypatch.setenv("BPLLM_TUI_IMAGES", "0")
    ws = material_workspace(tmp_path, previews=True)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        review = await _open_material_record(pilot, app, "M_01")
        assert review.query_one("#previews").display
        assert not review.query(ImageWidget)
        exp, act = _preview_texts(review, "expected"), _preview_texts(review, "actual")
        assert exp == [str((ws / "models/v1/exams/previews/gold.png").resolve())]
        assert act == [str((ws / "models/v1/exams/previews/wrong.png").resolve())]


@aio
async def test_review_without_previews_hides_the_row(tmp_path):
    ws = material_workspace(tmp_path, previews=False)
    app = BpllmApp(ws, attach=False)
    async with app.run_test(size=SIZE) as pilot:
        review = await _open_material_record(pilot, app, "M_01")
        assert not review.query_one("#previews").display
        assert not review.query_one("#expected-preview").children
