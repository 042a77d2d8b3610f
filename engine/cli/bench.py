"""`bpllm bench dsl|exam|train|tui|rig` — speed measured side by side in one run.

Benchmarks print figures; tests never assert timings. Each target lives with
the code it measures; this module only dispatches (and owns ``bench dsl``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import statistics
import time
from pathlib import Path

from dsl import parser
from dsl.packs import DEFAULT_LANGUAGE, load
from dsl.scorer import score
from dsl.validator import validate
from engine.resources import checkout_root

# the reference corpus sits beside the checkout (../shared/corpus); from an install, beside the current folder
CORPUS = (checkout_root() or Path.cwd()).parent / "shared" / "corpus" / "blueprintllm"


def _gold_texts(corpus: Path) -> list[str]:
    texts: list[str] = []
    lesson_dirs = [corpus / "lessons", Path(str(load(DEFAULT_LANGUAGE).starter_dir() / "lessons"))]
    for folder in lesson_dirs:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                texts += [p["expected_dsl"] for p in json.loads(path.read_text(encoding="utf-8"))["prompts"]]
            except (ValueError, KeyError, TypeError):
                continue
    return texts


def build_long_text(lines: int = 200, corpus: Path = CORPUS) -> str:
    """One valid-looking graph of ``lines`` lines, stitched from gold texts with ids renumbered."""
    texts = _gold_texts(corpus)
    if not texts:
        raise SystemExit("bench dsl: no lesson texts found (corpus or the Blueprint pack's starter lessons)")
    head = ["BLUEPRINT: BP_Bench", "PARENT: Actor", "GRAPH: EventGraph"]
    body: list[str] = []
    offset = 0
    for text in texts * 50:
        ids = [int(m) for m in re.findall(r"\bn(\d+)\b", text)]
        shift = offset
        for raw in text.splitlines():
            line = raw.strip()
            if not line.startswith(("NODE", "EXEC", "DATA")):
                continue
            body.append(re.sub(r"\bn(\d+)\b", lambda m: f"n{int(m.group(1)) + shift}", line))
        offset += max(ids, default=0)
        if len(head) + len(body) >= lines:
            break
    return "\n".join((head + body)[:lines])


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench_dsl(args: argparse.Namespace) -> int:
    text = build_long_text(200)
    n_lines = text.count("\n") + 1
    validate(text)  # warm imports and the catalog

    cold, cold_cpu = [], []
    for _ in range(args.repeat):
        parser.clear_cache()
        t0, c0 = time.perf_counter(), time.process_time()
        validate(text)
        cold.append(time.perf_counter() - t0)
        cold_cpu.append(time.process_time() - c0)

    # the editor's case: one line changes between validations, the rest are memoised
    lines = text.split("\n")
    edit = []
    for i in range(args.repeat):
        k = 3 + (i * 7) % (len(lines) - 3)
        edited = lines.copy()
        edited[k] = edited[k] + " " * (1 + i % 3) + ("" if i % 2 else "x")
        candidate = "\n".join(edited)
        t0 = time.perf_counter()
        validate(candidate)
        edit.append(time.perf_counter() - t0)

    print(f"bench dsl — validation of a {n_lines}-line text, {args.repeat} runs each")
    print(f"  cold (line cache cleared)  median {_median_ms(cold):7.2f} ms   p90 {sorted(cold)[int(len(cold) * .9)] * 1000:7.2f} ms"
          f"   min {min(cold) * 1000:6.2f} ms   CPU median {_median_ms(cold_cpu):6.2f} ms")
    print(f"  editing (one line changed) median {_median_ms(edit):7.2f} ms   p90 {sorted(edit)[int(len(edit) * .9)] * 1000:7.2f} ms")
    print(f"  ratio cold / editing        {statistics.median(cold) / statistics.median(edit):7.1f}x")

    exam_dir = CORPUS / "results" / "exams"
    files = sorted(exam_dir.glob("exam_lesson_*.jsonl")) if exam_dir.is_dir() else []
    if not files:
        print("  exam rescoring: skipped — reference corpus not found at", CORPUS)
        return 0
    records = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                records.append((row["expected_dsl"], row.get("actual_dsl") or ""))
    parser.clear_cache()
    t0 = time.perf_counter()
    total = 0.0
    for expected, actual in records:
        total += score(expected, actual).score
    elapsed = time.perf_counter() - t0
    print(f"  rescoring {len(records)} exam records (cold cache): {elapsed:.2f} s "
          f"({elapsed / len(records) * 1000:.2f} ms/record), mean structural score {total / len(records):.4f}")
    return 0


_TARGETS = {
    "dsl": ("engine.cli.bench", "bench_dsl"),
    "exam": ("engine.ml.bench", "bench_exam"),
    "train": ("engine.ml.bench", "bench_train"),
    "validity": ("engine.ml.bench", "bench_validity"),
    "rig": ("engine.ml.bench_rig", "bench_rig"),
    "tui": ("bpllm_tui.bench", "bench_tui"),
}


def cmd_bench(args: argparse.Namespace) -> int:
    module_name, func_name = _TARGETS[args.target]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"bench {args.target}: not available ({exc})")
        return 1
    return int(getattr(module, func_name)(args) or 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: dsl | exam | train | tui | validity | rig (figures measured side by side)")
    p.add_argument("target", choices=sorted(_TARGETS))
    p.add_argument("--repeat", type=int, default=50, help="timed repetitions (dsl)")
    p.add_argument("--workspace", "-w", default=None, help="workspace for exam/train benches")
    p.add_argument("--quick", action="store_true", help="smaller run (exam/train/tui)")
    p.add_argument("--profile", default=None, help="rig: the profile whose shape to build (default llama-8b-bf16)")
    p.add_argument("--small", action="store_true", help="rig: every dimension shrunk (a CPU runs it in < 2 min)")
    p.add_argument("--json", action="store_true", help="exam/validity/rig: print the figures as JSON too / instead")
    p.set_defaults(func=cmd_bench)
