"""No id, draft or lesson writes outside the workspace (issue 13 item 3): ids are checked where they
enter and every path built from one goes through engine.workspace.safe_paths.id_path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.workspace.safe_paths import UnsafePath, id_path, id_problem, is_inside
from test_engine_run import bpllm

HOSTILE = ["../../../outside/pwned", "a/b", "..", "../x", "/etc/passwd", "a\\b", ".hidden", "-rf", "", "x" * 129]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_ids_are_refused_with_the_fix(tmp_path: Path, bad: str) -> None:
    assert id_problem(bad, "lesson_id")
    with pytest.raises(UnsafePath, match="lesson_id"):
        id_path(tmp_path, bad, what="lesson_id", suffix=".json")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_an_accepted_id_never_leaves_its_root(tmp_path_factory, text: str) -> None:
    root = tmp_path_factory.getbasetemp() / "root"
    try:
        path = id_path(root, text, prefix="exam_", suffix=".jsonl")
    except UnsafePath:
        assert id_problem(text) is not None
        return
    assert path.parent == root and is_inside(root, path)


def test_a_link_named_like_the_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "x.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UnsafePath, match="outside"):
        id_path(tmp_path / "root", "x", suffix=".json")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "deep" / "ws"
    assert bpllm("init", str(w)).returncode == 0
    return w


def _draft(ws: Path, name: str, lesson_id: str) -> Path:
    data = json.loads((ws / "lessons" / "starter_01.json").read_text())
    path = ws / "lessons" / "drafts" / f"{name}.json"
    path.write_text(json.dumps(dict(data, lesson_id=lesson_id)))
    return path


def test_accept_refuses_a_draft_whose_lesson_id_leaves_the_workspace(ws: Path, tmp_path: Path) -> None:
    draft = _draft(ws, "evil", "../../../outside/pwned")
    r = bpllm("accept", "evil", "-w", str(ws))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert str(draft) in r.stderr and "lesson_id '../../../outside/pwned' cannot name a file" in r.stderr
    assert draft.exists() and not (tmp_path / "outside").exists() and not (ws.parent / "outside").exists()
    r = bpllm("accept", "../../../outside/pwned", "-w", str(ws))
    assert r.returncode == 1 and "cannot name a file" in r.stderr


def test_accept_refuses_a_file_outside_the_workspace_and_keeps_it(ws: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "drafts"
    elsewhere.mkdir(parents=True)
    foreign = elsewhere / "x.json"
    shutil.copy(ws / "lessons" / "starter_01.json", foreign)
    (ws / "lessons" / "drafts" / "linked.json").symlink_to(foreign)
    for arg in (str(foreign), "linked"):
        r = bpllm("accept", arg, "-w", str(ws))
        assert r.returncode == 1 and ("is not a draft of this workspace" in r.stderr
                                      or "outside" in r.stderr and "remove that link" in r.stderr), r.stderr
    assert foreign.exists()
    assert not (ws / "lessons" / "x.json").exists()
    ok = _draft(ws, "fine", "fine_01")  # the workspace's own drafts still go through
    r = bpllm("accept", str(ok), "-w", str(ws))
    assert r.returncode == 0 and (ws / "lessons" / "fine_01.json").exists()


def test_step_2_1_refuses_a_lesson_id_with_a_slash_naming_file_and_fix(ws: Path) -> None:
    path = ws / "lessons" / "starter_02.json"
    path.write_text(path.read_text().replace('"lesson_id": "starter_02"', '"lesson_id": "sub/starter_02"'))
    r = bpllm("run", "-w", str(ws), "--only", "2.1")
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert f"{path}:2: lesson_id 'sub/starter_02' cannot name a file" in out and "'sub_starter_02'" in out, out
    assert "Traceback" not in out
    st_ = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st_["failure"]["step"] == "2.1" and st_["failure"]["category"] == "data"


def test_exam_files_are_built_from_checked_ids(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from engine.ml.exam import exam_path, load_lessons

    assert exam_path(tmp_path, "lesson_01") == tmp_path / "exam_lesson_01.jsonl"
    with pytest.raises(UnsafePath):
        exam_path(tmp_path, "../../x")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lesson_id": "a/b", "prompts": []}))
    with pytest.raises(UnsafePath, match=str(bad)):
        load_lessons([bad])


def test_resume_refuses_a_run_id_that_leaves_the_runs_folder(ws: Path, tmp_path: Path) -> None:
    assert bpllm("run", "-w", str(ws), "--only", "1.1", "-q").returncode == 0
    state = json.loads(next((ws / "runs").glob("*/state.json")).read_text())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "state.json").write_text(json.dumps(dict(state, status="failed", done={})))
    r = bpllm("resume", "../../../outside", "-w", str(ws), "-q")
    assert r.returncode == 1 and "run id '../../../outside' cannot name a file" in r.stderr, r.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["state.json"]
