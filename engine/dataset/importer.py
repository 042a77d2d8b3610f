"""``bpllm import-blueprintllm PATH``: bring the reference BlueprintLLM project's lessons
and datasets into a workspace, through the same validation and quarantine as the
engine's own data steps.

* ``lessons/*.json`` → workspace ``lessons/`` (invalid prompts are removed from the
  imported copy and written to ``datasets/quarantine/import-lessons-<lesson>.jsonl``);
  ``lessons/holdout/*.json`` are imported with ``"holdout": true`` unless identical to a
  lesson already imported (the reference's holdout lesson_11 is a copy of lesson_11).
* ``datasets/*.jsonl`` → ``datasets/sources/blueprintllm_<name>.jsonl`` holding the
  rows that validate; the others go to ``datasets/quarantine/import-<name>.jsonl`` with
  their line number and diagnostics.
* ``datasets/system_prompt*.txt`` → reported (the workspace keeps its own prompt unless
  ``--system-prompt`` is given).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text
from engine.dataset.rows import (Problem, check_lesson, check_row, lesson_provenance, load_lesson, read_jsonl,
                         write_quarantine)


def import_blueprintllm(ws: Any, src: str | Path, *, system_prompt: bool = False,
                        progress: Any = None) -> dict[str, Any]:
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a directory (expected the BlueprintLLM project root with lessons/ "
                                f"and datasets/)")
    if not (src / "lessons").is_dir() and not (src / "datasets").is_dir():
        raise FileNotFoundError(f"{src}: no lessons/ or datasets/ directory; is this a BlueprintLLM checkout?")
    ws.ensure_dirs()
    report: dict[str, Any] = {"source": str(src), "lessons": [], "datasets": [], "notes": []}
    lesson_problems: list[Problem] = []
    imported_digests: dict[str, str] = {}
    lesson_files = sorted((src / "lessons").glob("*.json")) + sorted((src / "lessons" / "holdout").glob("*.json"))
    for path in lesson_files:
        holdout = path.parent.name == "holdout"
        raw = path.read_bytes()
        lesson, probs = load_lesson(path)
        lesson_problems += [p for p in probs if p.kind != "warning"]
        if lesson is None:
            report["lessons"].append({"file": str(path.relative_to(src)), "status": "unreadable",
                                      "reason": str(probs[0]) if probs else "?"})
            continue
        if holdout and imported_digests.get(path.name) == _digest(raw):
            report["notes"].append(f"{path.relative_to(src)} is identical to lessons/{path.name}; imported once")
            continue
        good, bad = check_lesson(lesson, ws.config.dsl.unknown_nodes, ws.language)
        lesson_problems += bad
        data = dict(lesson.data)
        good_ids = {p["id"] for p in good}
        data["prompts"] = [p for i, p in enumerate(lesson.prompts)
                           if isinstance(p, dict) and str(p.get("id") or f"{lesson.id}_{i + 1:02d}") in good_ids]
        if holdout:
            data["holdout"] = True
        data["imported_from"] = str(path)
        dst_name = f"{path.stem}_holdout.json" if holdout and path.name in imported_digests else path.name
        atomic_write_text(ws.lessons / dst_name, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        imported_digests[path.name] = _digest(raw)
        report["lessons"].append({"file": str(path.relative_to(src)), "lesson_id": lesson.id, "to": dst_name,
                                  "prompts": len(lesson.prompts), "imported": len(good),
                                  "quarantined": len(bad), "holdout": holdout})
        if progress:
            progress(f"lesson {lesson.id}: {len(good)}/{len(lesson.prompts)} prompts")
    if lesson_problems:
        write_quarantine(ws.quarantine, lesson_problems, prefix="import-lessons-")
    for path in sorted((src / "datasets").glob("*.jsonl")):
        good_rows, problems = [], []
        total = 0
        for n, row, err in read_jsonl(path):
            total += 1
            rel = f"{src.name}/datasets/{path.name}"
            if row is None:
                problems.append(Problem(rel, n, err or "malformed", kind="malformed"))
                continue
            reason, chk = check_row(row, ws.config.dsl.unknown_nodes, ws.language)
            if reason:
                problems.append(Problem(rel, n, reason, chk.diagnostics if chk else [], row))
                continue
            kept = dict(row) | {"source": row.get("source") or f"blueprintllm:{path.name}:{n}"}
            prov = lesson_provenance(row)  # the reference marks lesson rows by source "lesson:<lesson>:<prompt>"
            if prov and not row.get("lesson_id"):
                kept["lesson_id"] = prov[0]
                if prov[1]:
                    kept["prompt_id"] = prov[1]
            good_rows.append(kept)
        name = f"blueprintllm_{path.stem}"
        atomic_write_jsonl(ws.sources / f"{name}.jsonl", good_rows)
        qpath = ws.quarantine / f"import-{path.stem}.jsonl"
        if problems:
            atomic_write_jsonl(qpath, [p.to_dict() for p in problems])
        report["datasets"].append({"file": path.name, "to": f"datasets/sources/{name}.jsonl", "rows": total,
                                   "imported": len(good_rows), "quarantined": len(problems),
                                   "quarantine": str(qpath) if problems else None,
                                   "top_reasons": _top_reasons(problems)})
        if progress:
            progress(f"dataset {path.name}: {len(good_rows)}/{total} rows valid")
    for sp in sorted((src / "datasets").glob("system_prompt*.txt")):
        if system_prompt:
            atomic_write_text(ws.root / "system_prompt.txt", sp.read_text(encoding="utf-8"))
            report["notes"].append(f"system prompt replaced by {sp.name}")
        else:
            report["notes"].append(f"{sp.name} not imported (the workspace keeps its own; use --system-prompt)")
    atomic_write_json(ws.datasets / "import_report.json", report)
    return report


def _digest(raw: bytes) -> str:
    import hashlib
    return hashlib.sha256(raw).hexdigest()


def _top_reasons(problems: list[Problem], k: int = 3) -> list[str]:
    counts: dict[str, int] = {}
    for p in problems:
        key = p.reason.split(":")[0] if p.reason.startswith("invalid DSL") is False else \
            (p.diagnostics[0].get("code") if p.diagnostics else "invalid DSL")
        counts[key] = counts.get(key, 0) + 1
    return [f"{n}× {r}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1])[:k]]
