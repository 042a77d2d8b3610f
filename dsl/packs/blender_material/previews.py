"""Preview renders of an exam: the gold and the model's material of every record, side by side.

For each ``exam_<lesson>.jsonl`` the expected and actual DSL of every record are rendered (a ball
in Cycles, :mod:`.render`) to ``previews/<hash>.png`` next to the exam file, the hash being of the
text and the render settings, so a re-run (or the same answer in another version) costs nothing.
The exam JSONL is left as it is: a sidecar ``previews/<exam stem>.previews.json`` says which PNG
belongs to which record (the review screen reads it)::

    {"exam": "exam_<lesson>.jsonl", "size": 160, "samples": 8,
     "records": {"<prompt_id>": {"expected": "previews/<hash>.png" | null, "actual": ... | null,
                                 "expected_error"?: "why no image", "actual_error"?: "..."}}}

Paths are relative to the exam file's folder. bpy is imported only when something must be rendered.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dsl.atomic import atomic_write_text
from dsl.errors import BpllmError

PREVIEW_DIR = "previews"
INDEX_SUFFIX = ".previews.json"
DEFAULT_SIZE = 160
DEFAULT_SAMPLES = 8


def index_path(exam_file: str | Path) -> Path:
    """The sidecar index of one exam file."""
    exam_file = Path(exam_file)
    return exam_file.parent / PREVIEW_DIR / f"{exam_file.stem}{INDEX_SUFFIX}"


def _key(text: str, size: int, samples: int) -> str:
    return hashlib.sha256(f"{size}x{samples}\n{text.strip()}".encode()).hexdigest()[:20]


@dataclass
class PreviewReport:
    exams: int = 0
    records: int = 0
    rendered: int = 0
    cached: int = 0
    failed: int = 0  # texts that do not validate or that Blender would not build
    indexes: list[str] = field(default_factory=list)


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Records of an exam file; a torn line (a crash mid-write) is skipped, as the exam does."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def render_exam_file(exam_file: str | Path, *, size: int = DEFAULT_SIZE, samples: int = DEFAULT_SAMPLES,
                     report: PreviewReport | None = None,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Render every record's expected and actual material of EXAM_FILE and write its sidecar index."""
    from .text import from_text  # noqa: PLC0415 - the text layer (lark) only when rendering

    exam_file = Path(exam_file)
    report = report if report is not None else PreviewReport()
    out_dir = exam_file.parent / PREVIEW_DIR
    entries: dict[str, dict[str, Any]] = {}
    report.exams += 1
    for rec in _read_records(exam_file):
        pid = str(rec.get("prompt_id") or rec.get("id") or "?")
        report.records += 1
        entry: dict[str, Any] = {}
        for side, field_name in (("expected", "expected_dsl"), ("actual", "actual_dsl")):
            text = str(rec.get(field_name) or "")
            entry[side] = None
            if not text.strip():
                entry[f"{side}_error"] = "no text"
                continue
            png = out_dir / f"{_key(text, size, samples)}.png"
            rel = f"{PREVIEW_DIR}/{png.name}"
            if png.is_file() and png.stat().st_size:
                entry[side] = rel
                report.cached += 1
                continue
            graph, diags = from_text(text)
            if graph is None:
                first = next((d for d in diags if d.severity == "error"), None)
                entry[f"{side}_error"] = f"does not validate: {first}" if first else "does not parse"
                report.failed += 1
                continue
            if graph.kind != "material":
                entry[f"{side}_error"] = f"a {graph.kind}, not a material: nothing to put on a ball"
                report.failed += 1
                continue
            from .render import render_material  # noqa: PLC0415 - imports bpy

            try:
                render_material([graph], png, size=size, samples=samples)
            except BpllmError as exc:  # BuildError included: Blender would not build it
                entry[f"{side}_error"] = f"Blender: {exc}"
                report.failed += 1
                continue
            entry[side] = rel
            report.rendered += 1
            if log:
                log(f"{exam_file.name} {pid} {side}: {rel}")
        entries[pid] = entry
    index = {"exam": exam_file.name, "size": size, "samples": samples, "records": entries}
    target = index_path(exam_file)
    atomic_write_text(target, json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    report.indexes.append(str(target))
    return index


def version_exam_files(workspace: str | Path, version: str | None = None) -> tuple[str, list[Path]]:
    """The exam files of VERSION (default: the newest version with exams) under ``models/<v>/exams``."""
    models = Path(workspace) / "models"
    if version is None:
        found = [p.parent.parent.name for p in models.glob("v*/exams/exam_*.jsonl")]
        if not found:
            raise BpllmError(f"{models}: no exam results (models/vN/exams/exam_*.jsonl)",
                             "run a cycle first (`bpllm run -w WS`)")
        version = max(found, key=lambda v: int(v[1:]) if v[1:].isdigit() else -1)
    files = sorted((models / version / "exams").glob("exam_*.jsonl"))
    if not files:
        raise BpllmError(f"{models / version / 'exams'}: no exam_*.jsonl files", "give a version that was examined")
    return version, files
