"""Exam results as the review and history screens read them (no Textual).

Sources: exam JSONL files anywhere under the workspace's ``runs/`` and ``results/``
(the engine writes one per lesson and version and announces it with an ``artifact``
event), any extra directory given on the command line (e.g. the reference project's
``results/exams``), and the history store's ``exam_results`` table. Records of both
shapes are normalised: the engine's (``score``, ``valid``, ``seen``, ``time_s``) and
the reference project's (``comparison.score``, ``validation.valid``, ``time_seconds``).
"""
from __future__ import annotations

import ast as pyast
import json
import re
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

VERSION_RE = re.compile(r"lora[-_](v\d+)|\b(v\d+)\b")
LESSON_RE = re.compile(r"exam_(.+?)_(\d{8}_\d{6})")


@dataclass
class ExamRecord:
    lesson_id: str
    prompt_id: str
    instruction: str
    expected: str
    actual: str
    score: float | None  # 0..100 as recorded
    valid: bool | None
    seen: bool | None
    time_s: float | None
    category: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return (self.score is not None and self.score < 100.0 - 1e-9) or self.valid is False


@dataclass
class ExamFile:
    path: Path
    lesson_id: str
    version: str
    stamp: str
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.lesson_id}  {self.stamp}".strip()


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            try:  # the reference project wrote Python reprs
                parsed = pyast.literal_eval(value)
                return parsed if isinstance(parsed, dict) else {}
            except (ValueError, SyntaxError):
                return {}
    return {}


def _pct(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v * 100.0 if v <= 1.0 else v


def normalise(raw: dict[str, Any], lesson_id: str = "") -> ExamRecord:
    comparison = _as_dict(raw.get("comparison"))
    validation = _as_dict(raw.get("validation"))
    if raw.get("score") is not None:
        score = _pct(raw.get("score"))
    elif "exact" in comparison or "precision" in comparison:  # bpllm's exam: structural score in percent
        score = float(comparison["score"]) if comparison.get("score") is not None else None
    else:  # the reference project's: a 0..1 fraction
        score = _pct(comparison.get("score"))
    valid = raw.get("valid")
    if valid is None:
        valid = validation.get("valid")
    seen = raw.get("seen")
    return ExamRecord(
        lesson_id=str(raw.get("lesson_id") or lesson_id),
        prompt_id=str(raw.get("prompt_id") or raw.get("id") or "?"),
        instruction=str(raw.get("instruction") or ""),
        expected=str(raw.get("expected_dsl") or raw.get("expected") or ""),
        actual=str(raw.get("actual_dsl") or raw.get("actual") or raw.get("output") or ""),
        score=score,
        valid=None if valid is None else bool(valid),
        seen=None if seen is None else bool(seen),
        time_s=raw.get("time_s") if raw.get("time_s") is not None else raw.get("time_seconds"),
        category=str(raw.get("category") or ""),
        raw=raw,
    )


def _version_of(summary: dict[str, Any], records_head: dict[str, Any] | None) -> str:
    for source in (summary, records_head or {}):
        if source.get("version"):
            return str(source["version"])
        model = str(source.get("model") or "")
        m = VERSION_RE.search(model.replace("\\", "/"))
        if m:
            return m.group(1) or m.group(2)
    return "?"


def describe(path: Path) -> ExamFile:
    summary_path = path.with_name(path.stem + "_summary.json")
    summary: dict[str, Any] = {}
    if summary_path.is_file():
        try:
            loaded = json.loads(summary_path.read_text(encoding="utf-8"))
            summary = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            summary = {}
    head = None
    if not summary:
        try:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
            head = json.loads(first) if first.strip() else None
            head = head if isinstance(head, dict) else None
        except (OSError, ValueError):
            head = None
    m = LESSON_RE.search(path.stem)
    lesson = str(summary.get("lesson_id") or (head or {}).get("lesson_id") or (m.group(1) if m else path.stem))
    stamp = str(summary.get("timestamp") or (m.group(2) if m else ""))
    version = _version_of(summary, head)
    if version == "?":  # engine layout: models/<version>/exams/exam_<lesson>.jsonl
        parts = path.parts
        if len(parts) >= 3 and parts[-2] == "exams":
            version = parts[-3]
        else:
            for part in reversed(parts[:-1]):
                if re.fullmatch(r"v\d+", part):
                    version = part
                    break
    return ExamFile(path, lesson, version, stamp, summary)


def _exam_paths(workspace: Path | None, extra: list[Path] = ()) -> list[Path]:
    roots: list[Path] = []
    if workspace is not None:
        roots += [workspace / "models", workspace / "runs", workspace / "results", workspace / "exams"]
    roots += list(extra)
    seen: set[Path] = set()
    paths: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("exam*.jsonl")):
            if path not in seen:
                seen.add(path)
                paths.append(path)
    return paths


def discover(workspace: Path | None, extra: list[Path] = ()) -> list[ExamFile]:
    """Every exam JSONL file we can find, newest version last."""
    files = [describe(path) for path in _exam_paths(workspace, extra)]
    return sorted(files, key=lambda f: (_version_key(f.version), f.lesson_id, f.stamp))


def signature(workspace: Path | None, extra: list[Path] = ()) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of every exam file: what the review polls to notice new or grown exams."""
    out = []
    for path in _exam_paths(workspace, extra):
        try:
            st = path.stat()
        except OSError:  # removed between the listing and the stat
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def same_prompt(files: list[ExamFile], record: ExamRecord) -> list[tuple[ExamFile, ExamRecord]]:
    """This prompt's record in every version that examined it (by lesson and prompt id), oldest version first."""
    found: dict[str, tuple[ExamFile, ExamRecord]] = {}
    for f in files:
        if f.lesson_id != record.lesson_id:
            continue
        try:
            records, _ = load(f)
        except OSError:
            continue
        for r in records:
            if r.prompt_id == record.prompt_id:
                found[f.version] = (f, r)  # files are sorted by stamp: the newest exam of a version wins
    return [found[v] for v in sorted(found, key=_version_key)]


def _version_key(version: str) -> tuple:
    m = re.search(r"(\d+)", version)
    return (0, int(m.group(1)), version) if m else (1, 0, version)


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime: float, size: int) -> tuple[tuple[ExamRecord, ...], tuple[str, ...]]:
    records: list[ExamRecord] = []
    problems: list[str] = []
    lesson = describe(Path(path)).lesson_id
    with open(path, encoding="utf-8", errors="replace") as fh:
        for no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except ValueError as exc:
                problems.append(f"{path}:{no}: not JSON ({exc})")
                continue
            if isinstance(raw, dict):
                records.append(normalise(raw, lesson))
    return tuple(records), tuple(problems)


def load(exam: ExamFile) -> tuple[list[ExamRecord], list[str]]:
    st = exam.path.stat()
    records, problems = _load_cached(str(exam.path), st.st_mtime, st.st_size)
    return list(records), list(problems)


def _read_history(workspace: Path, query: str, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of ``query`` on the workspace history store, opened read-only ([] when absent or busy;
    an unreadable store -- not a database, text that is not UTF-8 -- is added to ``problems``).

    The engine writes this SQLite (WAL) file while the app reads it; read-only
    mode can never block or damage the writer.
    """
    db = workspace / "history.db"
    if not db.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(query)]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if problems is not None and "locked" not in str(exc):
            problems.append(f"{db}: unreadable ({type(exc).__name__}: {exc})")
        return []


def history_rows(workspace: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """``exam_results`` rows from the workspace history store (rows whose score is not a number are
    skipped and added to ``problems`` by table and key)."""
    rows = _read_history(
        workspace, "SELECT version, lesson_id, prompt_id, score, valid, seen, time_s, record_json FROM exam_results",
        problems)
    return [r for r in rows if _number_or_none(r, "score", "exam_results", ("version", "lesson_id", "prompt_id"),
                                               workspace, problems)]


def mastery_rows(workspace: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Node mastery rows of every version, oldest first (same skipping as :func:`history_rows`)."""
    rows = _read_history(workspace, "SELECT m.version, m.node, m.score, m.n, m.created_at FROM mastery m "
                                    "ORDER BY m.created_at", problems)
    return [r for r in rows if _number_or_none(r, "score", "mastery", ("version", "node"), workspace, problems)]


def _number_or_none(row: dict[str, Any], key: str, table: str, ids: tuple[str, ...], workspace: Path,
                    problems: list[str] | None) -> bool:
    value = row.get(key)
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return True
    if problems is not None:
        where = ", ".join(f"{k}={row.get(k)!r}" for k in ids)
        problems.append(f"{workspace / 'history.db'} {table} row ({where}): {key} {value!r} is not a number; skipped")
    return False


@dataclass
class Previews:
    """A record's material renders (``bpllm render-exam``): PNG paths, or why a side has none."""

    expected: Path | None
    actual: Path | None
    expected_error: str = ""
    actual_error: str = ""


def previews(f: ExamFile, record: ExamRecord) -> Previews | None:
    """The renders indexed for RECORD beside its exam file, or None when its exam has no previews."""
    from dsl.packs.blender_material.previews import index_path  # noqa: PLC0415 - stdlib-only module, no bpy

    path = index_path(f.path)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = index.get("records", {}).get(record.prompt_id) if isinstance(index, dict) else None
    if not isinstance(entry, dict):
        return None

    def png(side: str) -> Path | None:
        rel = entry.get(side)
        if not isinstance(rel, str):
            return None
        p = (f.path.parent / rel).resolve()
        return p if p.is_file() else None

    exp, act = png("expected"), png("actual")
    return Previews(exp, act,
                    str(entry.get("expected_error") or ("" if exp else "image missing: run bpllm render-exam")),
                    str(entry.get("actual_error") or ("" if act else "image missing: run bpllm render-exam")))
