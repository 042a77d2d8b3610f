"""Leakage check: which exam prompts the model has already seen in its training data.

A prompt is ``seen`` when its normalised instruction, or its gold graph in canonical
form (BLUEPRINT name ignored), appears in the training data.  The training data is
the merged split (datasets/train.jsonl + validation.jsonl) when it exists, else
every valid row of the workspace's sources and generated datasets.  Exam summaries
report seen and unseen prompts separately, since a score on a seen prompt measures
recall, not generalisation.

Per prompt the verdict is exact (``match`` says whether the instruction, the graph or both
were found, ``where`` names the first training row); per lesson the status is ``seen``
when more than half of its prompts are seen, else ``unseen``, always with both counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.dataset.rows import (check_dsl, graph_key, load_lessons, norm_instruction, read_jsonl, source_files)


@dataclass
class TrainingIndex:
    instructions: dict[str, str]  # normalised instruction -> where
    graphs: dict[str, str]  # graph key -> where
    source: str
    rows: int


def training_index(ws: Any) -> TrainingIndex:
    if ws.train_path.exists():
        files = [ws.train_path] + ([ws.validation_path] if ws.validation_path.exists() else [])
        source = "merged split (datasets/train.jsonl + validation.jsonl)"
    else:
        files = source_files(ws)
        source = "sources + generated datasets (no merged split yet)"
    instructions: dict[str, str] = {}
    graphs: dict[str, str] = {}
    rows = 0
    for f in files:
        rel = f.name if f.parent == ws.datasets else str(f.relative_to(ws.root))
        for n, row, _err in read_jsonl(f):
            if row is None:
                continue
            rows += 1
            ins, out = row.get("instruction"), row.get("output")
            if isinstance(ins, str) and ins.strip():
                instructions.setdefault(norm_instruction(ins), f"{rel}:{n}")
            if isinstance(out, str):
                chk = check_dsl(out, ws.config.dsl.unknown_nodes, ws.language)
                if chk.canonical is not None:
                    graphs.setdefault(graph_key(chk.canonical), f"{rel}:{n}")
    return TrainingIndex(instructions, graphs, source, rows)


def leakage_report(ws: Any, lesson_paths: list[Path] | None = None) -> dict[str, Any]:
    idx = training_index(ws)
    lessons, problems = load_lessons(lesson_paths if lesson_paths is not None else ws.lesson_files())
    out_lessons = []
    total_seen = total = 0
    for lesson in lessons:
        prompts = []
        for i, p in enumerate(lesson.prompts):
            if not isinstance(p, dict):
                continue
            pid = str(p.get("id") or f"{lesson.id}_{i + 1:02d}")
            ins = p.get("instruction") or ""
            by_ins = idx.instructions.get(norm_instruction(ins)) if isinstance(ins, str) else None
            by_graph = None
            gold = p.get("expected_dsl")
            if isinstance(gold, str):
                chk = check_dsl(gold, ws.config.dsl.unknown_nodes, ws.language)
                if chk.canonical is not None:
                    by_graph = idx.graphs.get(graph_key(chk.canonical))
            seen = bool(by_ins or by_graph)
            match = [m for m, hit in (("instruction", by_ins), ("graph", by_graph)) if hit]
            prompts.append({"prompt_id": pid, "status": "seen" if seen else "unseen", "match": match,
                            "where": by_ins or by_graph})
        n_seen = sum(1 for p in prompts if p["status"] == "seen")
        # a lesson is `seen` when most of its prompts are; the counts (and each prompt) stay exact, so a
        # lesson with one graph-level match (e.g. the reference's L12_07, a 2-node graph that also
        # appears under another instruction) is reported as unseen with "1 seen"
        status = "seen" if prompts and n_seen * 2 > len(prompts) else "unseen"
        out_lessons.append({"lesson_id": lesson.id, "file": lesson.path.name, "status": status, "seen": n_seen,
                            "unseen": len(prompts) - n_seen, "total": len(prompts), "holdout": lesson.holdout,
                            "prompts": prompts})
        total_seen += n_seen
        total += len(prompts)
    return {"training_data": idx.source, "training_rows": idx.rows, "seen": total_seen, "unseen": total - total_seen,
            "total": total, "lessons": out_lessons, "problems": [str(p) for p in problems]}


def seen_map(ws: Any) -> dict[tuple[str, str], bool]:
    """(lesson_id, prompt_id) -> seen, for the exam (ML steps) to tag each record."""
    rep = leakage_report(ws)
    return {(lesson["lesson_id"], p["prompt_id"]): p["status"] == "seen"
            for lesson in rep["lessons"] for p in lesson["prompts"]}
