"""ML helper commands: ``bpllm synth``, ``bpllm generate``, ``bpllm mastery``.

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


def cmd_synth(args: argparse.Namespace) -> int:
    from engine.synthetic import coverage_report, generate

    focus = [f.strip() for f in args.focus.split(",") if f.strip()] or None
    rows = generate(args.count, seed=args.seed, focus_nodes=focus)
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
                  "prompts": [{"id": f"{args.lesson.upper()}_{i:03d}", "category": r["pattern"].replace(":", "_"),
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
    from engine.workspace import resolve_workspace

    return resolve_workspace(arg)


def cmd_generate(args: argparse.Namespace) -> int:
    from engine.ml.base import load_version, profile_of, render_example
    from engine.ml.exam import trained_versions
    from engine.ml.generate import GenConfig, generate

    ws = _workspace(args.workspace)
    versions = trained_versions(ws.models)
    version = args.version or (versions[-1] if versions else None)
    if version is None:
        print(f"no trained version in {ws.models}; run `bpllm run` first", file=sys.stderr)
        return 1
    cfg = json.loads((ws.models / version / "training_config.json").read_text(encoding="utf-8"))
    model, tok = load_version(cfg["base"], ws.models / version / "adapter", profile_of(cfg))
    system = (ws.models / version / "system_prompt.txt")
    system_text = system.read_text(encoding="utf-8").strip() if system.exists() else ws.system_prompt_path.read_text()
    res = generate(model, tok, [render_example(tok, system_text, args.instruction)],
                   GenConfig(max_new_tokens=args.max_new_tokens, batch_size=1, constrained=not args.unconstrained))[0]
    print(res.text.rstrip())
    print(f"# {version}: {res.n_tokens} tokens, {res.time_seconds:.2f} s, stop={res.stop_reason}", file=sys.stderr)
    return 0


def _exam_records(ws, version: str, lessons: set[str]) -> list[dict]:
    from engine.ml.exam import version_records

    return [r for r in version_records(ws.models / version / "exams") if not lessons or r.get("lesson_id") in lessons]


def _drilled_before(ws, version: str) -> tuple[list[str], list[str]]:
    """Focus and contrast nodes of the drills drafted from exams of versions older than ``version``:
    the drills that version could have trained on (a drill drafted *after* it is its verdict, not its lesson)."""
    from engine.ml.exam import version_number as number

    focus: list[str] = []
    contrast: list[str] = []
    for path in sorted(list(ws.drafts.glob("*.json")) + list(ws.lessons.glob("*.json"))):
        try:
            lesson = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if not isinstance(lesson, dict) or not lesson.get("focus_nodes"):
            continue
        source = lesson.get("drafted_from")
        if source is None:  # drafts written before "drafted_from" existed say it in their description
            m = re.search(r"exam of (v\d+)", lesson.get("description", ""))
            source = m.group(1) if m else None
        if 0 <= number(source) < number(version):
            focus += lesson["focus_nodes"]
            contrast += lesson.get("contrast_nodes", [])
    return focus, contrast


def cmd_compare(ws, args: argparse.Namespace) -> int:
    """Mastery of OLD vs NEW on the prompts both examined (optionally a lesson subset)."""
    from engine.ml.grading import paired_node_changes

    old, new = args.compare
    lessons = {x.strip() for x in args.lessons.split(",") if x.strip()}
    a, b = _exam_records(ws, old, lessons), _exam_records(ws, new, lessons)
    common = {(r["lesson_id"], r["prompt_id"]) for r in a} & {(r["lesson_id"], r["prompt_id"]) for r in b}
    a = [r for r in a if (r["lesson_id"], r["prompt_id"]) in common]
    b = [r for r in b if (r["lesson_id"], r["prompt_id"]) in common]
    paired = paired_node_changes(a, b)  # per node: old/new mastery on the common prompts, change, interval
    focus = [x.strip() for x in args.focus.split(",") if x.strip()]
    contrast: list[str] = []
    if not focus:
        focus, contrast = _drilled_before(ws, new)
    focus = list(dict.fromkeys(focus))
    contrast = [n for n in dict.fromkeys(contrast) if n not in focus]
    avg = lambda rs: sum(r["comparison"]["score"] for r in rs) / max(1, len(rs))  # noqa: E731
    result = {"old": old, "new": new, "prompts": len(common), "avg_old": round(avg(a), 2), "avg_new": round(avg(b), 2),
              "focus": {n: paired.get(n, {"old": None, "new": None, "n": None}) for n in focus},
              "contrast": contrast,
              "others": {n: row for n, row in paired.items() if n not in focus}}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"mastery {old} -> {new} on {len(common)} common prompts"
          + (f" of {', '.join(sorted(lessons))}" if lessons else "")
          + f"; exam average {result['avg_old']:.1f} -> {result['avg_new']:.1f}")
    print("  focus (drilled) nodes:")
    for n, row in result["focus"].items():
        o, w = row["old"], row["new"]
        txt = "not examined" if o is None or w is None else f"{o:6.1f} -> {w:6.1f}  ({w - o:+.1f}, n={row['n']})"
        print(f"    {n:<28} {txt}")
    others = result["others"]
    if others:
        mean = sum(r["delta"] for r in others.values()) / len(others)
        solid = {n: r for n, r in others.items() if r["n"] >= 3}
        falls = sorted((n for n, r in solid.items() if r["delta"] < -5), key=lambda n: solid[n]["delta"])
        print(f"  other nodes: {len(others)}, mean change {mean:+.1f}; of {len(solid)} examined in >= 3 prompts, "
              f"{len(falls)} fell more than 5 points" + (" (" + ", ".join(f"{n} {solid[n]['delta']:+.1f}" for n in falls) + ")"
                                                       if falls else ""))
        real = [n for n in falls if solid[n].get("significant_fall")]
        if falls:
            print(f"    of those, {len(real)} with the prompts agreeing (paired 95 % interval below 0)"
                  + (": " + ", ".join(f"{n} {solid[n]['delta']:+.1f} [{solid[n]['low']:+.1f}, {solid[n]['high']:+.1f}]"
                                      for n in real) if real else "; for each, its prompts disagree (the interval includes 0)"))
    if contrast:
        print("  reviewed beside the drill (contrast nodes, counted among the others):")
        for n in contrast:
            row = others.get(n)
            txt = "not examined" if row is None else f"{row['old']:6.1f} -> {row['new']:6.1f}  ({row['delta']:+.1f}, n={row['n']})"
            print(f"    {n:<28} {txt}")
    worst = sorted(result["others"].items(), key=lambda kv: kv[1]["delta"])[:5]
    print("  other nodes, largest falls:")
    for n, row in worst:
        band = f", 95 % [{row['low']:+.1f}, {row['high']:+.1f}], {row['flipped']} prompts changed" \
            if row.get("low") is not None else ""
        print(f"    {n:<28} {row['old']:6.1f} -> {row['new']:6.1f}  ({row['delta']:+.1f}, n={row['n']}{band})")
    return 0


def cmd_mastery(args: argparse.Namespace) -> int:
    from engine.history import History

    ws = _workspace(args.workspace)
    if args.compare:
        return cmd_compare(ws, args)
    hist = History(ws.history_path, readonly=True)
    version = args.version
    if version is None:
        rows = hist.query("SELECT version, MAX(created_at) AS t FROM mastery GROUP BY version ORDER BY t DESC LIMIT 1")
        version = rows[0]["version"] if rows else None
    if version is None:
        print("no mastery recorded yet (run steps 6-7)", file=sys.stderr)
        return 1
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
