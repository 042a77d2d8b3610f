"""ML helper commands: ``bpllm synth``, ``bpllm generate``, ``bpllm mastery``, ``bpllm export-merged``.

Small tools around the ML core for debugging a workspace by hand: what the synthetic
generator writes (and its template distribution), what a model version answers to a
prompt (constrained or not), and a version's node-mastery table. Heavy imports happen
inside the handlers so ``bpllm --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from dsl.errors import BpllmError
from engine.dataset.synthetic import coverage_report
from engine.dataset.synthetic import generate as synthetic_rows
from engine.ml.base import load_version, profile_of, render_example
from engine.ml.exam import trained_versions, version_records
from engine.ml.exam import version_number as number
from engine.ml.export import export_merged
from engine.ml.generate import GenConfig, generate
from engine.ml.grading import SEEN_GROUPS, compare_like_with_like
from engine.workspace.history import History
from engine.workspace.workspace import resolve_workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic instruction/DSL rows covering the node catalog")
    p.add_argument("-n", "--count", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--focus", default="", help="comma-separated node types to focus on")
    p.add_argument("--report", action="store_true", help="print the template / node coverage report instead")
    p.add_argument("-o", "--output", help="JSONL file to write (default: stdout)")
    p.add_argument("--lesson", metavar="ID", help="write an exam lesson (reference schema) with this id instead of rows")
    p.add_argument("--holdout", action="store_true", help="with --lesson: mark it holdout (never trained on)")
    p.set_defaults(func=cmd_synth)

    g = sub.add_parser("generate", help="answer one instruction with a model version of a workspace")
    g.add_argument("instruction")
    g.add_argument("-w", "--workspace", default=None)
    g.add_argument("--version", default=None, help="model version (default: newest)")
    g.add_argument("--unconstrained", action="store_true", help="turn grammar-constrained decoding off")
    g.add_argument("--max-new-tokens", type=int, default=384)
    g.set_defaults(func=cmd_generate)

    m = sub.add_parser("mastery", help="node mastery table of a model version")
    m.add_argument("-w", "--workspace", default=None)
    m.add_argument("--version", default=None)
    m.add_argument("--json", action="store_true")
    m.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                   help="recompute mastery of two versions from their exam files on the same prompts")
    m.add_argument("--lessons", default="", help="with --compare: only these lesson ids (comma-separated)")
    m.add_argument("--focus", default="", help="with --compare: node types to summarise (default: the drill's focus)")
    m.set_defaults(func=cmd_mastery)

    e = sub.add_parser("export-merged", help="write a version's base + adapter merged as a standard Hugging Face "
                                              "model folder (transformers, vLLM)")
    e.add_argument("version", nargs="?", default=None, help="model version (default: newest trained)")
    e.add_argument("-w", "--workspace", default=None)
    e.add_argument("--out", required=True, metavar="DIR", help="folder to write (config.json, safetensors, tokenizer)")
    e.add_argument("--force", action="store_true", help="replace a non-empty --out")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_export_merged)


def cmd_synth(args: argparse.Namespace) -> int:
    focus = [f.strip() for f in args.focus.split(",") if f.strip()] or None
    rows = synthetic_rows(args.count, seed=args.seed, focus_nodes=focus)
    if args.report:
        rep = coverage_report(rows)
        print(f"{rep['rows']} rows, {rep['node_types_covered']}/{rep['node_types_total']} node types covered, "
              f"largest template share {rep['max_template_share']:.0%}")
        for name, count in rep["templates"].items():
            print(f"  {name:<12} {count:5d}  {count / max(1, rep['rows']):6.1%}")
        if rep["missing_node_types"]:
            print("  not covered:", ", ".join(rep["missing_node_types"]))
        return 0
    if args.lesson:
        import time

        lesson = {"lesson_id": args.lesson, "lesson_name": f"Synthetic exam {args.lesson}",
                  "description": f"{len(rows)} generated prompts (seed {args.seed}) over the node catalog",
                  "created": time.strftime("%Y-%m-%d"), "holdout": bool(args.holdout),
                  "prompts": [{"id": f"{args.lesson.upper()}_{i:03d}", "category": str(r.get("pattern", "synthetic")).replace(":", "_"),
                               "instruction": r["instruction"], "expected_dsl": r["output"]}
                              for i, r in enumerate(rows, 1)]}
        text = json.dumps(lesson, indent=2, ensure_ascii=False) + "\n"
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            out.close()
    return 0


def _workspace(arg: str | None):
    """The workspace, its config validated (a missing or broken one: a BpllmError engine.cli.main reports)."""

    ws = resolve_workspace(arg)
    ws.config  # noqa: B018 - validate now, as every engine command does
    return ws


def _version_or_latest(ws, version: str | None) -> str:
    """The version asked for, else the newest trained one."""

    if version:
        return version
    versions = trained_versions(ws.models)
    if not versions:
        raise BpllmError(f"no trained version in {ws.models}", "run `bpllm run` first")
    return versions[-1]


def cmd_generate(args: argparse.Namespace) -> int:
    ws = _workspace(args.workspace)
    version = _version_or_latest(ws, args.version)
    cfg = json.loads((ws.models / version / "training_config.json").read_text(encoding="utf-8"))
    model, tok = load_version(cfg["base"], ws.models / version / "adapter", profile_of(cfg))
    system = (ws.models / version / "system_prompt.txt")
    system_text = system.read_text(encoding="utf-8").strip() if system.exists() else ws.system_prompt_path.read_text()
    res = generate(model, tok, [render_example(tok, system_text, args.instruction)],
                   GenConfig(max_new_tokens=args.max_new_tokens, batch_size=1, constrained=not args.unconstrained))[0]
    print(res.text.rstrip())
    print(f"# {version}: {res.n_tokens} tokens, {res.time_seconds:.2f} s, stop={res.stop_reason}", file=sys.stderr)
    return 0


def cmd_export_merged(args: argparse.Namespace) -> int:
    ws = _workspace(args.workspace)
    version = _version_or_latest(ws, args.version)

    info = export_merged(ws.models, version, Path(args.out), force=args.force,
                         log=lambda m: print(f"  {m}", file=sys.stderr))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{version} merged into {info['out']} ({info['dtype']}, {info['parameters']:,} parameters, "
          f"{info['seconds']:.1f} s): {', '.join(info['files'])}")
    if info["note"]:
        print(f"note: {info['note']}")
    print(f"load it with AutoModelForCausalLM.from_pretrained({str(info['out'])!r}) or `vllm serve {info['out']}`")
    return 0


def _exam_records(ws, version: str, lessons: set[str]) -> list[dict]:
    return [r for r in version_records(ws.models / version / "exams") if not lessons or r.get("lesson_id") in lessons]


def _drilled_before(ws, version: str) -> tuple[list[str], list[str], list[str]]:
    """Focus and contrast nodes of the drills ``version`` trained on, and their lesson ids: lessons in
    ``lessons/`` with status ``accepted``, integrated into the training data (``lesson_integrations``)
    before ``version`` was trained, and drafted from an older version. A draft never accepted, or
    accepted but not yet integrated, was not a lesson of ``version``; nor is a drill drafted *after* it
    (that is its verdict)."""

    integrated: dict[str, dict] = {}
    trained_at = None
    if ws.history_path.exists():
        hist = History(ws.history_path, readonly=True)
        try:
            integrated = hist.integrated_lessons()
            row = [v for v in hist.versions() if v["version"] == version]
            trained_at = row[0]["created_at"] if row else None
        finally:
            hist.close()
    focus: list[str] = []
    contrast: list[str] = []
    lessons: list[str] = []
    for path in sorted(ws.lessons.glob("*.json")):
        try:
            lesson = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if not isinstance(lesson, dict) or not lesson.get("focus_nodes") or lesson.get("status") != "accepted":
            continue
        lesson_id = str(lesson.get("lesson_id") or path.stem)
        done = integrated.get(lesson_id)
        if done is None or (trained_at is not None and (done.get("integrated_at") or 0) > trained_at):
            continue
        source = lesson.get("drafted_from")
        if source is None:  # drafts written before "drafted_from" existed say it in their description
            m = re.search(r"exam of (v\d+)", lesson.get("description", ""))
            source = m.group(1) if m else None
        if 0 <= number(source) < number(version):
            focus += lesson["focus_nodes"]
            contrast += lesson.get("contrast_nodes", [])
            lessons.append(lesson_id)
    return focus, contrast, lessons


def cmd_compare(ws, args: argparse.Namespace) -> int:
    """Mastery of OLD vs NEW on the prompts both examined (optionally a lesson subset), like with like:
    prompts unseen by both, seen by both and trained on in between are compared apart, always."""

    old, new = args.compare
    lessons = {x.strip() for x in args.lessons.split(",") if x.strip()}
    a, b = _exam_records(ws, old, lessons), _exam_records(ws, new, lessons)
    for version, recs in ((old, a), (new, b)):
        if not recs:
            print(f"bpllm mastery: no exam records of {version} in {ws.models / version / 'exams'}"
                  + (f" for lessons {', '.join(sorted(lessons))}" if lessons else "")
                  + " (examined versions have models/vN/exams/exam_*.jsonl)", file=sys.stderr)
            return 1
    groups = compare_like_with_like(a, b)
    focus = [x.strip() for x in args.focus.split(",") if x.strip()]
    contrast: list[str] = []
    drilled: list[str] = []
    if not focus:
        focus, contrast, drilled = _drilled_before(ws, new)
    focus = list(dict.fromkeys(focus))
    contrast = [n for n in dict.fromkeys(contrast) if n not in focus]
    result = {"old": old, "new": new, "prompts": sum(g["prompts"] for g in groups.values()),
              "focus_nodes": focus, "contrast": contrast, "drilled_lessons": drilled, "groups": {}}
    for name, g in groups.items():
        paired = g["nodes"]
        result["groups"][name] = {
            "prompts": g["prompts"], "avg_old": g["avg_old"], "avg_new": g["avg_new"],
            "focus": {n: paired.get(n, {"old": None, "new": None, "n": None}) for n in focus},
            "others": {n: row for n, row in paired.items() if n not in focus}}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"mastery {old} -> {new} on {result['prompts']} common prompts"
          + (f" of {', '.join(sorted(lessons))}" if lessons else "")
          + ", like with like (never one version's unseen prompts against the other's seen ones)")
    if args.focus:
        print(f"  focus nodes (given): {', '.join(focus)}")
    elif drilled:
        print(f"  drills {new} trained on (accepted and integrated): {', '.join(drilled)}")
    else:
        print(f"  no accepted, integrated drill before {new}: no focus (drilled) nodes")
    for name in ("unseen", "seen"):
        if name not in result["groups"]:
            print(f"  {SEEN_GROUPS[name]}: no prompts")
    for name, g in result["groups"].items():
        print(f"  {SEEN_GROUPS[name]}: {g['prompts']} prompts, exam average {g['avg_old']:.1f} -> {g['avg_new']:.1f}")
        _print_group(g, focus, contrast)
    return 0


def _print_group(g: dict, focus: list[str], contrast: list[str]) -> None:
    if focus:
        print("    focus (drilled) nodes:")
        for n, row in g["focus"].items():
            o, w = row["old"], row["new"]
            txt = "not examined" if o is None or w is None else f"{o:6.1f} -> {w:6.1f}  ({w - o:+.1f}, n={row['n']})"
            print(f"      {n:<28} {txt}")
    others = g["others"]
    if others:
        mean = sum(r["delta"] for r in others.values()) / len(others)
        solid = {n: r for n, r in others.items() if r["n"] >= 3}
        falls = sorted((n for n, r in solid.items() if r["delta"] < -5), key=lambda n: solid[n]["delta"])
        print(f"    other nodes: {len(others)}, mean change {mean:+.1f}; of {len(solid)} examined in >= 3 prompts, "
              f"{len(falls)} fell more than 5 points" + (" (" + ", ".join(f"{n} {solid[n]['delta']:+.1f}" for n in falls) + ")"
                                                       if falls else ""))
        real = [n for n in falls if solid[n].get("significant_fall")]
        if falls:
            print(f"      of those, {len(real)} with the prompts agreeing (paired 95 % interval below 0)"
                  + (": " + ", ".join(f"{n} {solid[n]['delta']:+.1f} [{solid[n]['low']:+.1f}, {solid[n]['high']:+.1f}]"
                                      for n in real) if real else "; for each, its prompts disagree (the interval includes 0)"))
    if contrast:
        print("    reviewed beside the drill (contrast nodes, counted among the others):")
        for n in contrast:
            row = others.get(n)
            txt = "not examined" if row is None else f"{row['old']:6.1f} -> {row['new']:6.1f}  ({row['delta']:+.1f}, n={row['n']})"
            print(f"      {n:<28} {txt}")
    worst = sorted(others.items(), key=lambda kv: kv[1]["delta"])[:5]
    if worst:
        print("    other nodes, largest falls:")
    for n, row in worst:
        band = f", 95 % [{row['low']:+.1f}, {row['high']:+.1f}], {row['flipped']} prompts changed" \
            if row.get("low") is not None else ""
        print(f"      {n:<28} {row['old']:6.1f} -> {row['new']:6.1f}  ({row['delta']:+.1f}, n={row['n']}{band})")


def cmd_mastery(args: argparse.Namespace) -> int:
    ws = _workspace(args.workspace)
    if args.compare:
        return cmd_compare(ws, args)
    no_mastery = BpllmError("no mastery recorded yet", "`bpllm run` records it at steps 6-7")
    if not ws.history_path.exists():  # a workspace that never ran: no history.db to open read-only
        raise no_mastery
    hist = History(ws.history_path, readonly=True)
    version = args.version
    if version is None:
        rows = hist.query("SELECT version, MAX(created_at) AS t FROM mastery GROUP BY version ORDER BY t DESC LIMIT 1")
        version = rows[0]["version"] if rows else None
    if version is None:
        raise no_mastery
    table = hist.mastery(version)
    if args.json:
        print(json.dumps({"version": version, "nodes": table}, indent=2))
        return 0
    print(f"node mastery of {version} ({len(table)} node types)")
    print(f"  {'node':<28} {'score':>6} {'n':>4}  {'band':<10} {'delta':>6}")
    for row in table:
        delta = "" if row["delta"] is None else f"{row['delta']:+.1f}"
        print(f"  {row['node']:<28} {row['score']:6.1f} {row['n']:4d}  {row['band']:<10} {delta:>6}")
    return 0
