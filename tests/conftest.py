"""Shared fixtures. The reference corpus is read in place and never copied."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = (REPO_ROOT.parent / "shared" / "corpus" / "blueprintllm").resolve()
CORPUS_MISSING = (
    f"reference corpus not found at {CORPUS} (expected ../shared/corpus/blueprintllm beside the repo; CI has it)"
)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """Path of the reference corpus, or skip the test with a clear reason."""
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_MISSING)
    return CORPUS


def load_lessons(root: Path) -> dict[str, dict]:
    """lesson file path (relative) -> lesson JSON, for lessons/*.json and lessons/holdout/*.json."""
    out = {}
    for path in sorted((root / "lessons").rglob("*.json")):
        out[str(path.relative_to(root))] = json.loads(path.read_text(encoding="utf-8"))
    return out


def load_exam_records(root: Path) -> list[tuple[str, dict]]:
    records = []
    for path in sorted((root / "results" / "exams").glob("exam_lesson_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append((path.name, json.loads(line)))
    return records
