"""`bpllm bench exam` and `bpllm bench train`: ML speed, measured side by side in one run.

exam:  the same model and prompts, (a) batched vs one prompt at a time (prompts/s ratio) and
       (b) free vs syntax-constrained vs catalog-constrained decoding (ms per generated token,
       parse and valid rates; the catalog level's cost over syntax-only).
validity: the same model and prompts with gold answers under free, syntax and catalog decoding:
       parse %, valid %, mean structural score and the error codes that remain.
train: tokens/s of the engine's training (its callback writing real events) vs a bare
       SFTTrainer on the same data and model, interleaved so machine load hits both alike.

The model is the workspace's newest adapter when there is one (``-w``), else a tiny base
built once into ``~/.cache/bpllm/bench``. Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dsl.catalog import default_catalog
from dsl.parser import parse
from dsl.validator import validate
from engine.dataset.synthetic import generate as synthetic_rows
from engine.ml.base import (
    build_documents,
    corpus_key,
    ensure_tiny_base,
    load_base,
    load_version,
    profile_of,
    render_example,
)
from engine.ml.exam import trained_versions
from engine.ml.generate import GenConfig, GrammarConstraint, _vocab_size, generate
from engine.ml.placement import place_for
from engine.ml.steps import SYNTAX_CODES
from engine.ml.profiles import TINY_BASE_DEFAULTS, get_profile
from engine.ml.train import Hooks, TrainSpec, build_trainer
from engine.runtime.events import EventWriter
from engine.workspace.workspace import Workspace, pack_for

CACHE = Path(os.environ.get("BPLLM_CACHE", Path.home() / ".cache" / "bpllm")) / "bench"


def _system_prompt(ws_root: Path | None) -> str:
    for p in ([ws_root / "datasets" / "system_prompt.txt", ws_root / "system_prompt.txt"] if ws_root else []):
        if p.exists():
            return p.read_text(encoding="utf-8").strip()

    return pack_for(Workspace(ws_root) if ws_root else None).system_prompt()


def _bench_base(quick: bool) -> Path:
    """The tiny profile's base (default settings, synthetic corpus only), built once into the cache."""
    settings = dict(TINY_BASE_DEFAULTS)
    rows = synthetic_rows(settings["synthetic_examples"], seed=settings["synthetic_seed"])
    system = _system_prompt(None)
    key = corpus_key(build_documents(rows, system, default_catalog()), settings)
    if not (CACHE / f"tiny-{key}" / "base.json").exists():
        print(f"  (building the tiny base once into {CACHE}: about 2 minutes on 2 cores)")
    return ensure_tiny_base(CACHE, rows, system, default_catalog(), settings)


def _load_model(args: argparse.Namespace):
    """(model, tokenizer, label, workspace root or None)."""
    ws_root = Path(args.workspace).resolve() if getattr(args, "workspace", None) else None
    if ws_root is not None:
        versions = trained_versions(ws_root / "models")
        pin = ws_root / "models" / "base" / "PINNED.json"
        if versions and pin.exists():
            base = ws_root / "models" / "base" / json.loads(pin.read_text())["path"]
            cfg_path = ws_root / "models" / versions[-1] / "training_config.json"
            cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
            model, tok = load_version(base, ws_root / "models" / versions[-1] / "adapter", profile_of(cfg))
            return model, tok, f"{ws_root.name} {versions[-1]}", ws_root
    base = _bench_base(bool(getattr(args, "quick", False)))
    model, tok = load_base(base, placement=place_for(get_profile("tiny"), str(base)))
    model.eval()
    return model, tok, f"tiny base {base.name}", ws_root


def _prompts(ws_root: Path | None, n: int) -> list[str]:
    instructions: list[str] = []
    if ws_root is not None:
        for path in sorted((ws_root / "lessons").glob("*.json")):
            try:
                instructions += [p["instruction"] for p in json.loads(path.read_text(encoding="utf-8"))["prompts"]]
            except (ValueError, KeyError):
                continue
    if len(instructions) < n:
        instructions += [r["instruction"] for r in synthetic_rows(n, seed=4242)]
    return instructions[:n]


def bench_exam(args: argparse.Namespace) -> int:
    import torch

    quick = bool(getattr(args, "quick", False))
    model, tok, label, ws_root = _load_model(args)
    n = 16 if quick else 32
    system = _system_prompt(ws_root)
    prompts = [render_example(tok, system, i) for i in _prompts(ws_root, n)]
    max_new = 160 if quick else 256
    constraints = {level: GrammarConstraint(tok, _vocab_size(model, tok), level=level) for level in ("syntax", "catalog")}
    print(f"bench exam — {label}, {len(prompts)} prompts, greedy, max {max_new} new tokens, "
          f"{torch.get_num_threads()} torch threads")

    # warm up kernels and the grammar once, outside the timings
    generate(model, tok, prompts[:2], GenConfig(max_new_tokens=8, batch_size=2), constraints["catalog"])

    def cfg(**kw) -> GenConfig:
        return GenConfig(max_new_tokens=max_new, time_budget_s=600.0, **kw)

    def run(config: GenConfig) -> dict[str, Any]:
        t0 = time.perf_counter()
        results = generate(model, tok, prompts, config, constraints[config.constraint] if config.constrained else None)
        seconds = time.perf_counter() - t0
        tokens = sum(r.n_tokens for r in results)
        parsed = sum(1 for r in results if r.text.strip() and not parse(r.text).errors)
        valid = sum(1 for r in results if r.text.strip() and not any(d.severity == "error" for d in validate(r.text)))
        return {"seconds": seconds, "tokens": tokens, "prompts_per_s": len(results) / seconds,
                "ms_per_token": 1000 * seconds / max(1, tokens), "parse_rate": parsed / max(1, len(results)),
                "valid_rate": valid / max(1, len(results)),
                "mask_ms_per_token": 1000 * sum(r.mask_seconds for r in results) / max(1, tokens)}

    # one untimed pass fills the per-token caches; then each mode runs `rounds` times, interleaved,
    # so machine load drifts hit every mode alike; medians are reported
    run(cfg(batch_size=16, constrained=True))
    rounds = 2 if quick else 3
    modes = {
        "batched": dict(batch_size=16, constrained=True, constraint="syntax"),
        "batched_catalog": dict(batch_size=16, constrained=True, constraint="catalog"),
        "unconstrained": dict(batch_size=16, constrained=False),
        "single": dict(batch_size=1, constrained=True, constraint="syntax"),
        "single_catalog": dict(batch_size=1, constrained=True, constraint="catalog"),
        "single_unconstrained": dict(batch_size=1, constrained=False),
    }
    samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, kw in modes.items():
            samples[mode].append(run(cfg(**kw)))

    def med(mode: str) -> dict[str, Any]:
        rs = samples[mode]
        return {k: statistics.median(r[k] for r in rs) for k in rs[0]}

    batched, single, unconstrained = med("batched"), med("single"), med("unconstrained")
    single_free = med("single_unconstrained")
    single_cat, batched_cat = med("single_catalog"), med("batched_catalog")
    overhead = 100 * (single["ms_per_token"] / single_free["ms_per_token"] - 1)
    cat_single = 100 * (single_cat["ms_per_token"] / single["ms_per_token"] - 1)
    cat_batched = 100 * (batched_cat["ms_per_token"] / batched["ms_per_token"] - 1)
    share = 100 * batched["mask_ms_per_token"] / batched["ms_per_token"]
    print(f"  batched (16, constrained)   {batched['prompts_per_s']:7.2f} prompts/s  {batched['seconds']:6.2f} s  "
          f"{batched['tokens']:.0f} tokens")
    print(f"  one-by-one (constrained)    {single['prompts_per_s']:7.2f} prompts/s  {single['seconds']:6.2f} s  "
          f"{single['tokens']:.0f} tokens")
    print(f"  batched / one-by-one        {batched['prompts_per_s'] / single['prompts_per_s']:7.2f}x prompts/s")
    for name, r in (("catalog", single_cat), ("syntax", single), ("free", single_free)):
        print(f"  one at a time: {name:<9}  {r['ms_per_token']:7.3f} ms/token  parse rate {100 * r['parse_rate']:.0f}%  "
              f"valid {100 * r['valid_rate']:.0f}%  ({r['tokens']:.0f} tokens)")
    print(f"  constrained overhead        {overhead:+7.1f}% per token, syntax vs free (one prompt at a time: "
          "no batch-occupancy effect)")
    print(f"  catalog over syntax         {cat_single:+7.1f}% per token one at a time, {cat_batched:+.1f}% batched "
          f"(catalog work {batched_cat['mask_ms_per_token']:.3f} vs grammar {batched['mask_ms_per_token']:.3f} ms/token)")
    # the wall-clock ratios compare different answers (the catalog level changes what is written, and a shorter
    # answer carries more of its prompt's prefill per token); the extra check work itself, per token:
    extra_work = 100 * (single_cat["mask_ms_per_token"] - single["mask_ms_per_token"]) / single["ms_per_token"]
    print(f"  catalog check work          {extra_work:+7.1f}% of syntax-only's per-token time, one at a time "
          f"({single_cat['mask_ms_per_token']:.3f} vs {single['mask_ms_per_token']:.3f} ms/token of constraint work)")
    print(f"  batched: constrained {batched['ms_per_token']:.3f} vs free {unconstrained['ms_per_token']:.3f} ms/token; "
          f"grammar work {batched['mask_ms_per_token']:.3f} ms/token = {share:.1f}% of the batched time")
    if abs(batched["tokens"] - unconstrained["tokens"]) > 0.2 * max(1, batched["tokens"]):
        print("  note: constrained and free answers differ in length (the grammar changed what the model wrote)")
    if getattr(args, "json", False):
        print(json.dumps({"batched": batched, "single": single, "unconstrained": unconstrained,
                          "single_unconstrained": single_free, "overhead_pct": overhead,
                          "batched_catalog": batched_cat, "single_catalog": single_cat,
                          "catalog_over_syntax_pct": {"single": cat_single, "batched": cat_batched},
                          "catalog_check_work_pct": extra_work,
                          "rounds": rounds}))
    return 0


def _gold_prompts(ws_root: Path | None, n: int) -> list[tuple[str, str]]:
    """(instruction, gold DSL): the workspace's lessons, topped up with synthetic rows."""
    pairs: list[tuple[str, str]] = []
    if ws_root is not None:
        for path in sorted((ws_root / "lessons").glob("*.json")):
            try:
                pairs += [(p["instruction"], p["expected_dsl"])
                          for p in json.loads(path.read_text(encoding="utf-8"))["prompts"] if p.get("expected_dsl")]
            except (ValueError, KeyError, TypeError) as exc:
                print(f"  skipped {path}: {exc}")
    if len(pairs) < n:
        pack = pack_for(Workspace(ws_root) if ws_root else None)
        pairs += [(r["instruction"], r["output"]) for r in pack.synthesize(n - len(pairs), 4243)]
    return pairs[:n]


def bench_validity(args: argparse.Namespace) -> int:
    """What each level of constraint guarantees, on one model and the same prompts."""
    from collections import Counter

    quick = bool(getattr(args, "quick", False))
    model, tok, label, ws_root = _load_model(args)
    pack = pack_for(Workspace(ws_root) if ws_root else None)  # the workspace's language judges its answers
    pairs = _gold_prompts(ws_root, 16 if quick else 48)
    system = _system_prompt(ws_root)
    prompts = [render_example(tok, system, i) for i, _ in pairs]
    max_new = 256 if quick else 384
    print(f"bench validity — {label} ({pack.name}), {len(prompts)} prompts with gold answers, greedy, "
          f"max {max_new} new tokens")
    report: dict[str, Any] = {}
    for level in ("free", "syntax", "catalog"):
        constraint = None if level == "free" else GrammarConstraint(tok, _vocab_size(model, tok), level=level,
                                                                     pack=pack)
        cfg = GenConfig(max_new_tokens=max_new, batch_size=16, constrained=level != "free",
                        constraint="syntax" if level == "free" else level, time_budget_s=600.0)
        t0 = time.perf_counter()
        results = generate(model, tok, prompts, cfg, constraint)
        seconds = time.perf_counter() - t0
        codes: Counter[str] = Counter()
        parsed = valid = 0
        scores = []
        for r, (_, gold) in zip(results, pairs):
            errs = [d.code for d in pack.validate(r.text) if d.severity == "error"] if r.text.strip() else ["empty"]
            parsed += bool(r.text.strip()) and not any(c in SYNTAX_CODES for c in errs)
            codes.update(errs)
            valid += not errs
            scores.append(pack.score(gold, r.text).score)
        n = max(1, len(results))
        report[level] = {"parse_pct": 100 * parsed / n, "valid_pct": 100 * valid / n,
                         "mean_score": statistics.mean(scores) if scores else 0.0, "errors": dict(codes.most_common()),
                         "tokens": sum(r.n_tokens for r in results), "seconds": seconds,
                         "stop_reasons": dict(Counter(r.stop_reason for r in results))}
    print(f"  {'level':<8} {'parse':>6} {'valid':>6} {'score':>6}  errors that remain")
    for level, r in report.items():
        errs = ", ".join(f"{c} x{k}" for c, k in r["errors"].items()) or "none"
        print(f"  {level:<8} {r['parse_pct']:5.0f}% {r['valid_pct']:5.0f}% {r['mean_score']:6.3f}  {errs}")
    if getattr(args, "json", False):
        print(json.dumps(report))
    return 0


def bench_train(args: argparse.Namespace) -> int:
    quick = bool(getattr(args, "quick", False))
    ws_root = Path(args.workspace).resolve() if getattr(args, "workspace", None) else None
    base = _bench_base(quick)
    rows = synthetic_rows(160, seed=77)
    steps = 8 if quick else 16
    rounds = 2 if quick else 3
    profile = get_profile("tiny", max_steps=steps, save_steps=10_000, logging_steps=1, eval_steps=0)
    system = _system_prompt(ws_root)
    print(f"bench train — tiny base {base.name}, {len(rows)} rows, {steps} steps x {rounds} rounds each, "
          "engine callback (events to a real run dir) vs bare SFTTrainer")
    results: dict[str, list[float]] = {"engine": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        writer = EventWriter(Path(tmp) / "run", "bench")
        hooks = Hooks(emit=lambda type, **p: writer.emit(type, **p),
                      progress=lambda n, total, message=None: None, should_stop=lambda: False)
        for r in range(rounds):
            for mode in ("bare", "engine") if r % 2 == 0 else ("engine", "bare"):
                spec = TrainSpec(base=str(base), profile=profile.to_dict(), train_rows=rows, validation_rows=[],
                                 system_prompt=system, output_dir=f"{tmp}/{mode}{r}", adapter_dir=f"{tmp}/{mode}{r}/a")
                trainer, _cb = build_trainer(spec, hooks, with_callback=(mode == "engine"))
                out = trainer.train()
                tokens = int(trainer.state.num_input_tokens_seen or 0)
                results[mode].append(tokens / out.metrics["train_runtime"])
        writer.close()
    eng, bare = statistics.median(results["engine"]), statistics.median(results["bare"])
    print(f"  bare SFTTrainer     {bare:9.1f} tokens/s  (runs: {', '.join(f'{x:.0f}' for x in results['bare'])})")
    print(f"  engine callbacks    {eng:9.1f} tokens/s  (runs: {', '.join(f'{x:.0f}' for x in results['engine'])})")
    print(f"  overhead            {100 * (bare / eng - 1):+9.1f}%")
    return 0
