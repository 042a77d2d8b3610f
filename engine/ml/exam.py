"""Exams (step 6): lesson prompts through batched constrained generation, scored as graphs.

Each finished prompt becomes one record in the reference project's exam format
(``prompt_id, category, instruction, expected_dsl, actual_dsl, raw_output,
validation, comparison{score, ...}, time_seconds, status``), extended with the
structural scores, the validator's diagnostics and ``seen``/``unseen``. Records are
appended (and flushed) to ``exam_<lesson_id>.jsonl`` the moment they complete, so
a stopped or killed exam keeps every answer it finished and a resume skips them.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from dsl.constraint import CatalogRules, rules_for
from dsl.parser import parse
from dsl.scorer import score
from dsl.validator import validate
from engine.workspace.safe_paths import UnsafePath, id_path, id_problem

from .base import render_example
from .generate import GenConfig, GenResult, GrammarConstraint, _vocab_size, generate


@dataclass
class ExamPrompt:
    lesson_id: str
    prompt_id: str
    category: str
    instruction: str
    expected_dsl: str
    seen: bool | None = None


@dataclass
class ExamOutcome:
    records: list[dict[str, Any]] = field(default_factory=list)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    stopped: bool = False
    seconds: float = 0.0


def load_lessons(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Lesson files (reference schema); the lesson id comes from the file when absent."""
    lessons = []
    for path in paths:
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        data.setdefault("lesson_id", path.stem)
        problem = id_problem(str(data["lesson_id"]), "lesson_id")
        if problem:  # it names the exam files: refuse before any generation
            raise UnsafePath(f"{path}: {problem}")
        data["_path"] = str(path)
        lessons.append(data)
    return lessons


def exam_prompts(lessons: list[dict[str, Any]], seen: dict[tuple[str, str], bool] | None = None) -> list[ExamPrompt]:
    out = []
    for lesson in lessons:
        lid = str(lesson["lesson_id"])
        for p in lesson.get("prompts", []):
            pid = str(p.get("id") or p.get("prompt_id"))
            out.append(ExamPrompt(lid, pid, p.get("category", ""), p["instruction"], p["expected_dsl"],
                                  (seen or {}).get((lid, pid))))
    return out


def exam_path(out_dir: str | Path, lesson_id: str) -> Path:
    """``exam_<lesson_id>.jsonl``; an id with '/' or '..' is refused (engine.workspace.safe_paths), never written."""
    return id_path(out_dir, str(lesson_id), what="lesson_id", prefix="exam_", suffix=".jsonl")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of an exam file; a torn last line (crash mid-write) is ignored, never fatal."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def version_records(exams_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of one model version's exam files (``models/vN/exams/exam_*.jsonl``)."""
    return [r for path in sorted(Path(exams_dir).glob("exam_*.jsonl")) for r in read_records(path)]


def version_number(version: str | None) -> int:
    """``v12`` -> 12; anything else -> -1, so it sorts first and is older than every version."""
    return int(version[1:]) if version and version[:1] == "v" and version[1:].isdigit() else -1


def trained_versions(models_dir: str | Path) -> list[str]:
    """Versions under ``models/`` with a saved adapter, oldest first."""
    found = [p.name for p in Path(models_dir).glob("v*") if (p / "adapter" / "adapter_config.json").exists()]
    return sorted(found, key=version_number)


def score_record(prompt: ExamPrompt, result: GenResult, version: str, catalog=None, *, pack=None,
                 unknown_nodes: str = "error") -> dict[str, Any]:
    """One exam record in the reference format plus structural scores and diagnostics.

    ``pack``: the workspace's language pack judges the answer (validate, score, node types); without
    one, Blueprint's dsl machinery with ``catalog`` does (a custom catalog in benches and tests)."""
    actual = result.text.strip()
    if pack is not None:
        diags = pack.validate(actual, unknown_nodes=unknown_nodes)
        sc = pack.score(prompt.expected_dsl, actual)
        syntax_errors = sc.actual_syntax_errors
        counts = {"node_count": len(pack.node_types(actual))}
    else:
        doc = parse(actual)
        diags = validate(doc, catalog)
        syntax_errors = len(doc.errors)
        sc = score(prompt.expected_dsl, doc, catalog)
        counts = {"node_count": len(doc.nodes), "exec_count": len(doc.execs), "data_count": len(doc.datas)}
    errors = [d for d in diags if d.severity == "error"]
    comp = sc.to_dict()
    buckets = comp.pop("buckets")
    comparison = {
        "score": round(sc.score * 100, 2),  # percent, like the reference
        "precision": round(sc.precision * 100, 2),
        "recall": round(sc.recall * 100, 2),
        "line_score": round(sc.line_score * 100, 2),
        "exact": sc.exact,
        "matched": sc.matched,
        "expected_total": sc.expected_total,
        "actual_total": sc.actual_total,
        "node_types": comp.get("node_types", {}),
        **{b: [i.get("text") for i in items] for b, items in buckets.items()},
    }
    parsed = syntax_errors == 0 and bool(actual)
    return {
        "prompt_id": prompt.prompt_id,
        "lesson_id": prompt.lesson_id,
        "category": prompt.category,
        "instruction": prompt.instruction,
        "expected_dsl": prompt.expected_dsl,
        "actual_dsl": actual,
        "raw_output": result.raw_text,
        "validation": {
            "valid": parsed and not errors,
            "parses": parsed,
            "syntax_errors": syntax_errors,
            "errors": len(errors),
            "warnings": sum(1 for d in diags if d.severity == "warning"),
            "diagnostics": [d.to_dict() for d in diags[:50]],
            **counts,
        },
        "comparison": comparison,
        "diff": buckets,
        "time_seconds": round(result.time_seconds, 3),
        "tokens": result.n_tokens,
        "stop_reason": result.stop_reason,
        "constrained": result.constrained,
        "constraint": result.constraint,  # free | syntax | catalog: what produced this answer
        "status": "complete" if result.stop_reason in ("eos", "grammar") else result.stop_reason,
        "seen": prompt.seen,
        "version": version,
    }


def run_exam(
    model,
    tokenizer,
    system_prompt: str,
    prompts: list[ExamPrompt],
    out_dir: str | Path,
    version: str,
    config: GenConfig | None = None,
    *,
    catalog=None,
    unknown_nodes: str = "error",
    constraint: GrammarConstraint | None = None,
    pack=None,
    on_record: Callable[[dict[str, Any], int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ExamOutcome:
    """Examine ``prompts``; records already in ``out_dir`` (an earlier, stopped attempt) are kept and skipped."""
    config = config or GenConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome = ExamOutcome()
    t0 = time.perf_counter()
    done: dict[tuple[str, str], dict[str, Any]] = {}
    for lesson_id in dict.fromkeys(p.lesson_id for p in prompts):
        path = exam_path(out_dir, lesson_id)
        records = read_records(path)
        _rewrite_clean(path, records)  # drop a torn last line before appending
        for r in records:
            done[(lesson_id, str(r.get("prompt_id")))] = r
        outcome.paths[lesson_id] = str(path)
    todo = [p for p in prompts if (p.lesson_id, p.prompt_id) not in done]
    total = len(prompts)
    finished = len(prompts) - len(todo)
    outcome.records.extend(done[(p.lesson_id, p.prompt_id)] for p in prompts if (p.lesson_id, p.prompt_id) in done)
    if config.constrained and constraint is None and todo:
        rules = None
        if config.constraint == "catalog" and pack is None:
            rules = rules_for(None, unknown_nodes) if catalog is None else CatalogRules(catalog, unknown_nodes)
        constraint = GrammarConstraint(tokenizer, _vocab_size(model, tokenizer), level=config.constraint, rules=rules,
                                       pack=pack, unknown_nodes=unknown_nodes)
    rendered = [render_example(tokenizer, system_prompt, p.instruction) for p in todo]
    handles: dict[str, Any] = {}

    def deliver(res: GenResult) -> None:
        nonlocal finished
        prompt = todo[res.index]
        record = score_record(prompt, res, version, catalog, pack=pack, unknown_nodes=unknown_nodes)
        fh = handles.get(prompt.lesson_id)
        if fh is None:
            fh = handles[prompt.lesson_id] = open(exam_path(out_dir, prompt.lesson_id), "a", encoding="utf-8")
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        finished += 1
        outcome.records.append(record)
        if on_record:
            on_record(record, finished, total)

    try:
        generate(model, tokenizer, rendered, config, constraint, on_result=deliver, should_stop=should_stop)
    finally:
        for fh in handles.values():
            fh.close()
    outcome.stopped = finished < total
    outcome.seconds = time.perf_counter() - t0
    by_lesson: dict[str, list[dict[str, Any]]] = {}
    for r in outcome.records:
        by_lesson.setdefault(r["lesson_id"], []).append(r)
    for lesson_id, records in by_lesson.items():
        outcome.summaries[lesson_id] = summarize(lesson_id, records, version)
    return outcome


def _rewrite_clean(path: Path, records: list[dict[str, Any]]) -> None:
    if not path.exists():
        return
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def summarize(lesson_id: str, records: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """Per-lesson summary; seen and unseen prompts reported separately."""

    def block(rs: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(rs)
        if not n:
            return {"n": 0}
        return {
            "n": n,
            "avg_score": round(sum(r["comparison"]["score"] for r in rs) / n, 2),
            "avg_line_score": round(sum(r["comparison"].get("line_score", 0) for r in rs) / n, 2),
            "parse_pct": round(100 * sum(1 for r in rs if r["validation"].get("parses")) / n, 1),
            "valid_pct": round(100 * sum(1 for r in rs if r["validation"].get("valid")) / n, 1),
            "exact": sum(1 for r in rs if r["comparison"].get("exact")),
            "avg_time_s": round(sum(r.get("time_seconds", 0) for r in rs) / n, 3),
        }

    return {
        "lesson_id": lesson_id,
        "version": version,
        **block(records),
        "seen": block([r for r in records if r.get("seen") is True]),
        "unseen": block([r for r in records if r.get("seen") is not True]),
        "statuses": _count(r.get("status") for r in records),
    }


def _count(values: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out
