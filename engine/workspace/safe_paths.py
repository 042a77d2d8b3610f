"""Ids that become file names, and paths that must stay inside the workspace.

Lesson ids, prompt ids, draft files and backup entries reach the file system
(``lessons/<id>.json``, ``exam_<id>.jsonl``, ``exports/<lesson>_<prompt>.t3d.txt``, a backup's
``include``). One holding ``/`` or ``..`` would read or write outside the workspace, so every such
path is built here: from a checked id, then resolved and checked to lie inside its root.
Standard library only: the TUI and the engine both use it.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from dsl.errors import BpllmError

SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
ID_RULE = "letters, digits, '_', '-' and '.', not starting with '.' or '-', at most 128 characters"


class UnsafePath(BpllmError, ValueError):
    """An id or path that would leave its root; the message names it and the fix."""


def suggest_id(value: Any) -> str:
    """A safe id close to ``value`` (for the fix in a message)."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value)).replace("..", "_").strip("._-")
    return text[:128] or "lesson_01"


def id_problem(value: Any, what: str = "id") -> str | None:
    """Why ``value`` cannot name a file (None: it can)."""
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string, got {value!r}"
    if not SAFE_ID.fullmatch(value) or ".." in value:
        return (f"{what} {value!r} cannot name a file ({ID_RULE}; no '/', '\\' or '..'); "
                f"rename it, e.g. {suggest_id(value)!r}")
    return None


def safe_id(value: Any, what: str = "id") -> str:
    """``value`` when it is a safe id, else UnsafePath naming it and the fix."""
    problem = id_problem(value, what)
    if problem:
        raise UnsafePath(problem)
    return value


def is_inside(root: str | Path, path: str | Path) -> bool:
    """Does ``path`` (relative to ``root`` unless absolute) resolve to ``root`` or below it?"""
    root_r = Path(root).resolve()
    return (root_r / path).resolve().is_relative_to(root_r)


def inside(root: str | Path, *parts: str | Path) -> Path:
    """``root/parts`` resolved (links followed); UnsafePath when that lies outside ``root``."""
    root_r = Path(root).resolve()
    path = root_r.joinpath(*parts).resolve()
    if not path.is_relative_to(root_r):
        raise UnsafePath(f"{Path(*parts)} resolves to {path}, outside {root_r}")
    return path


def id_path(root: str | Path, value: Any, *, what: str = "id", prefix: str = "", suffix: str = "") -> Path:
    """``root/<prefix><value><suffix>`` for a checked id, checked to resolve inside ``root`` (a link
    named like the file could still lead out); UnsafePath otherwise. The one way ids become paths."""
    name = f"{prefix}{safe_id(value, what)}{suffix}"
    path = Path(root) / name
    if not is_inside(root, name):
        raise UnsafePath(f"{path} resolves to {path.resolve()}, outside {Path(root).resolve()}; remove that link")
    return path


def relpath_problem(rel: Any, what: str = "path") -> str | None:
    """Why ``rel`` is not a plain workspace-relative path (absolute, ``..``, empty) — None when it is."""
    if not isinstance(rel, str) or not rel.strip() or "\x00" in rel:
        return f"{what} {rel!r} must be a non-empty relative path"
    posix, win = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or win.is_absolute() or win.drive or rel.startswith(("/", "\\")):
        return f"{what} {rel!r} is absolute; list paths relative to the workspace"
    if ".." in posix.parts or ".." in win.parts:
        return f"{what} {rel!r} leaves the workspace ('..'); list paths inside it"
    if all(p in ("", ".") for p in posix.parts):
        return f"{what} {rel!r} names the workspace itself; list the folders and files inside it"
    return None
