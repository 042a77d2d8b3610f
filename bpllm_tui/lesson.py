"""Lesson files as the editor sees them, with atomic saves and a crash swap file.

Schema (the reference project's, which the engine reads too)::

    {lesson_id, lesson_name, description, created,
     prompts: [{id, category, instruction, expected_dsl}]}

Unknown keys are kept as they were, so the editor never strips what another tool
wrote. The swap file (``<workspace>/.bpllm/swap/<name>.<hash>.json``) holds the whole
in-memory lesson after every edit; it is removed on save or on an explicit discard,
so a swap that is still there after a crash means edits to recover.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsl.errors import BpllmError
from engine.atomic import atomic_write_json

PROMPT_KEYS = ("id", "category", "instruction", "expected_dsl")


class LessonError(BpllmError, ValueError):
    """A lesson file that cannot be opened, with the file and the fix in the message."""


@dataclass
class Lesson:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, path: Path, lesson_id: str, name: str = "") -> "Lesson":
        return cls(path, {
            "lesson_id": lesson_id,
            "lesson_name": name or lesson_id.replace("_", " ").title(),
            "description": "",
            "created": time.strftime("%Y-%m-%d"),
            "prompts": [],
        })

    @classmethod
    def load(cls, path: Path) -> "Lesson":
        try:
            raw = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise LessonError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise LessonError(f"{path}: not valid JSON ({exc}); fix the file or restore it from a backup") from exc
        if not isinstance(data, dict) or not isinstance(data.get("prompts", []), list):
            raise LessonError(f"{path}: expected an object with a 'prompts' list "
                              "({lesson_id, lesson_name, prompts: [{id, instruction, expected_dsl}]})")
        data.setdefault("prompts", [])
        for i, prompt in enumerate(data["prompts"]):
            if not isinstance(prompt, dict):
                raise LessonError(f"{path}: prompts[{i}] is not an object")
            for key in PROMPT_KEYS:
                prompt.setdefault(key, "")
        data.setdefault("lesson_id", path.stem)
        return cls(path, data)

    @property
    def prompts(self) -> list[dict[str, Any]]:
        return self.data["prompts"]

    @property
    def lesson_id(self) -> str:
        return str(self.data.get("lesson_id") or self.path.stem)

    def next_prompt_id(self) -> str:
        ids = {str(p.get("id")) for p in self.prompts}
        prefix = self.prompts[-1]["id"].rsplit("_", 1)[0] if self.prompts and "_" in str(self.prompts[-1]["id"]) \
            else self.lesson_id.upper()
        n = len(self.prompts) + 1
        while f"{prefix}_{n:02d}" in ids:
            n += 1
        return f"{prefix}_{n:02d}"

    def add_prompt(self, instruction: str = "", dsl: str = "", category: str = "") -> dict[str, Any]:
        prompt = {"id": self.next_prompt_id(), "category": category, "instruction": instruction, "expected_dsl": dsl}
        self.prompts.append(prompt)
        return prompt

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    def save(self) -> None:
        """Atomic: temp file, fsync, os.replace — a crash leaves the old or the new file, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.data, indent=2)


class SwapFile:
    """The editor's crash insurance for one lesson path."""

    def __init__(self, workspace: Path, lesson_path: Path) -> None:
        digest = hashlib.sha1(str(lesson_path.resolve()).encode()).hexdigest()[:10]
        self.path = workspace / ".bpllm" / "swap" / f"{lesson_path.stem}.{digest}.json"
        self.lesson_path = lesson_path

    def write(self, data: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        payload = {"path": str(self.lesson_path), "written_at": time.time(), "lesson": data, **(extra or {})}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # no fsync per keystroke: os.replace is atomic; a power cut may lose the last second, a crash loses nothing
        atomic_write_json(self.path, payload, fsync=False, indent=None)

    def read(self) -> dict[str, Any] | None:
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return payload if isinstance(payload, dict) and isinstance(payload.get("lesson"), dict) else None

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def pending_swaps(workspace: Path) -> list[dict[str, Any]]:
    """Swap files whose edits never reached their lesson (a killed or crashed session), newest first.

    The app announces them when it opens and the editor opens their lesson first, so recovery is
    offered where the user looks instead of only if they happen to open that lesson."""
    found: list[dict[str, Any]] = []
    swap_dir = workspace / ".bpllm" / "swap"
    for path in sorted(swap_dir.glob("*.json")) if swap_dir.is_dir() else ():
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(payload, dict) or not isinstance(payload.get("lesson"), dict) or not payload.get("path"):
            continue
        lesson_path = Path(payload["path"])
        try:
            on_disk = json.loads(lesson_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            on_disk = None
        if on_disk != payload["lesson"]:
            found.append({"path": lesson_path, "written_at": float(payload.get("written_at") or 0.0)})
    return sorted(found, key=lambda s: s["written_at"], reverse=True)


def lesson_files(workspace: Path) -> list[Path]:
    """Lessons of the workspace, drafts from grading included (newest drafts first)."""
    lessons = workspace / "lessons"
    if not lessons.is_dir():
        return []
    main = sorted(p for p in lessons.glob("*.json") if p.is_file())
    drafts = sorted((p for p in (lessons / "drafts").glob("*.json") if p.is_file()),
                    key=lambda p: p.stat().st_mtime, reverse=True) if (lessons / "drafts").is_dir() else []
    return main + drafts
