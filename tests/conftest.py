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


def corpus_files(corpus: Path, sub: str, pattern: str, *, expected: int | None = None,
                 recursive: bool = False) -> list[Path]:
    """Files of one corpus folder: skip when the folder is absent, fail when it holds none, so a loop
    over them can never pass vacuously; ``expected`` pins the count the tests were written against."""
    folder = corpus / sub
    if not folder.is_dir():
        pytest.skip(f"corpus folder {folder} not found (the reference corpus is absent or incomplete; "
                    f"expected ../shared/corpus/blueprintllm beside the repo)")
    files = sorted(folder.rglob(pattern) if recursive else folder.glob(pattern))
    assert files, f"no {pattern} files in {folder}: the corpus is incomplete"
    if expected is not None:
        assert len(files) == expected, f"expected {expected} {pattern} files in {folder}, found {len(files)}"
    return files


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
