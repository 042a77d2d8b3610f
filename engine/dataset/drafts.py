"""Accepting a drafted lesson: the reviewer's "yes" that puts a draft into the teaching loop.

Step 7.5 writes the next lesson to ``lessons/drafts/`` for review; step 8 integrates only
``lessons/*.json``. Accepting moves a draft across — after checking that every gold answer still
validates (a reviewer may have edited it) — so the next cycle trains on it. The TUI's editor and
``bpllm accept`` both call :func:`accept_draft`.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dsl.config import Config
from dsl.errors import BpllmError
from engine.atomic import atomic_write_json
from engine.dataset.rows import Lesson, check_lesson, load_lesson
from engine.workspace.safe_paths import UnsafePath, id_path, is_inside
from engine.workspace.workspace import Workspace, resolve_workspace


class DraftError(BpllmError, ValueError):
    """A draft that cannot be accepted, with what to do about it."""


def find_draft(workspace: Path, name: str) -> Path:
    """A draft by lesson id (``drill_01``), file name or path — always a file in the workspace's
    ``lessons/drafts/`` once links are resolved (a folder elsewhere merely called ``drafts`` is not)."""
    drafts = Path(workspace) / "lessons" / "drafts"
    if not is_inside(workspace, drafts):
        raise DraftError(f"{drafts} leads outside the workspace (a link); make it a plain folder")
    candidate = Path(name)
    if candidate.suffix == ".json" and (candidate.exists() or len(candidate.parts) > 1):
        path = candidate
    else:
        try:
            path = id_path(drafts, candidate.stem if candidate.suffix == ".json" else name, what="draft name",
                           suffix=".json")
        except UnsafePath as exc:
            raise DraftError(str(exc)) from None
    if path.exists():
        if path.resolve().parent != drafts.resolve() or not path.is_file():
            raise DraftError(f"{path} is not a draft of this workspace (in {drafts}): only its drafts are accepted; "
                             f"copy the file into {drafts} to review it there")
        return path
    known = sorted(p.stem for p in drafts.glob("*.json")) if drafts.is_dir() else []
    raise DraftError(f"no draft {name!r} in {drafts}" + (f"; drafts: {', '.join(known)}" if known else "; there are no drafts"))


def draft_problems(lesson: Lesson, unknown_nodes: str = "error", language: str | None = None) -> list[str]:
    """Every error that would keep the draft out of training — step 8's own lesson check
    (``engine.dataset.rows.check_lesson``, under the workspace's ``[dsl] unknown_nodes``), worded per
    prompt and line for the reviewer."""
    if not lesson.prompts:
        return [f"{lesson.path}: the lesson has no prompts"]
    out = []
    for problem in check_lesson(lesson, unknown_nodes, language)[1]:
        pid = problem.row.get("id") if isinstance(problem.row, dict) else None
        errors = [d for d in problem.diagnostics if d.get("severity") == "error"]
        if pid and errors:
            out += [f"{lesson.path}: prompt {pid} line {d.get('line')}: [{d.get('code')}] {d.get('message')}"
                    for d in errors]
        else:
            out.append(f"{lesson.path}: {problem.reason}")
    return out


def accept_draft(workspace: Path, name: str) -> Path:
    """Move draft ``name`` into ``lessons/`` (status ``accepted``); returns the new path.

    Refuses, naming each problem, when a gold answer has validation errors or a lesson of that
    id already exists — nothing is moved then. The lesson is written atomically before the draft
    is removed, so a crash in between leaves both copies, never neither.
    """
    workspace = Path(workspace)
    path = find_draft(workspace, name)
    config = _workspace_config(workspace)[0]  # a bad config: what_happens_next says so
    unknown_nodes, language = config.dsl.unknown_nodes, config.workspace.language
    lesson, load_problems = load_lesson(path)
    if lesson is None:
        raise DraftError(f"{load_problems[0]}; open it in the editor to fix it")
    problems = draft_problems(lesson, unknown_nodes, language)
    if problems:
        shown = problems[:10] + ([f"… and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise DraftError("the draft has errors; fix them in the editor (bpllm-tui --lesson "
                         f"{path}) and accept again:\n  " + "\n  ".join(shown))
    try:
        target = id_path(workspace / "lessons", lesson.id, what="lesson_id", suffix=".json")
    except UnsafePath as exc:
        raise DraftError(f"{path}: {exc}") from None
    if target.exists():
        raise DraftError(f"{target} already exists; rename the draft's lesson_id or remove the old lesson")
    data = dict(lesson.data, status="accepted", accepted=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_json(target, data)
    os.remove(path)
    return target


def _workspace_config(workspace: Path) -> tuple[Config, str | None]:
    """The workspace's validated config and None; when it does not load, the defaults and why (the user is
    told the defaults apply)."""
    try:
        return Workspace(workspace).config, None
    except (BpllmError, OSError) as exc:
        return Config(), str(exc)


def what_happens_next(workspace: Path) -> str:
    """When the teaching loop trains on an accepted lesson, by the workspace's ``data.integrate``."""
    config, problem = _workspace_config(workspace)
    policy = config.data.integrate
    if policy == "all":
        return "the next cycle trains on it"
    if policy == "none":
        return "data.integrate = \"none\": it is not trained on until that changes"
    default = "the next cycle examines it, then integrates it; the cycle after trains on it"
    return default if problem is None else f"{default}, by default: the config does not load ({problem})"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accept", help="accept a drafted lesson: move it from lessons/drafts/ into lessons/ "
                                      "(validated) so the next cycle trains on it")
    p.add_argument("draft", help="draft lesson id (drill_01), file name or path")
    p.add_argument("-w", "--workspace", help="workspace (default: $BPLLM_WORKSPACE or the current directory)")
    p.set_defaults(func=_cmd_accept)


def _cmd_accept(args: argparse.Namespace) -> int:
    target = accept_draft(resolve_workspace(args.workspace).root, args.draft)  # errors: engine.cli.main
    print(f"accepted: {target} ({what_happens_next(target.parents[1])})")
    return 0
