"""`bpllm dataset build | export` — training rows from .blend files, and fine-tuning files from the rows.

``dataset build`` turns a folder of .blend files (``bpllm scrape github`` output, or any folder) into
rows of the workspace's language (engine/dataset/build.py); ``dataset export`` writes the rows the
engine trains on in a hosted provider's or trl's format (engine/dataset/export.py). docs/pipeline.md.
Exit codes: 0 done, 1 refused (one line on stderr naming the file and the fix).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engine.dataset.build import BuildError, build, format_report
from engine.dataset.export import FORMATS, SPLITS, ExportError, export
from engine.workspace.config import ConfigError
from engine.workspace.workspace import WorkspaceError, resolve_workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="build training rows from .blend files; export rows for fine-tuning")
    dsub = p.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    b = dsub.add_parser("build", help="turn a folder of .blend files into training rows, splits and an exam lesson")
    b.add_argument("--from", dest="source", required=True, metavar="DIR",
                   help="folder of .blend files (a `bpllm scrape github` output with metadata.jsonl, or any folder)")
    _ws_arg(b)
    b.add_argument("--seed", type=int, help="instruction phrasing and split seed (default: [data] seed)")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    b.set_defaults(func=cmd_build)

    e = dsub.add_parser("export", help="write the training rows as OpenAI / Anthropic / HF chat / Alpaca JSONL")
    _ws_arg(e)
    e.add_argument("--format", required=True, choices=FORMATS, help="row shape")
    e.add_argument("--out", required=True, metavar="FILE.jsonl", help="file to write (atomically)")
    e.add_argument("--split", default="train", choices=SPLITS,
                   help="train / val (the merged split step 1.5 trains on) or test (exam prompts not in training)")
    e.add_argument("--tokenizer", metavar="PATH_OR_VERSION",
                   help="count tokens with this tokenizer: a model version (v3, latest) or a tokenizer folder/file "
                        "(default: an approximation, characters / 4)")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=cmd_export)


def _ws_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-w", "--workspace", metavar="DIR",
                   help="workspace directory (default: $BPLLM_WORKSPACE, else the current directory)")


def _workspace(args: argparse.Namespace, what: str):
    try:
        ws = resolve_workspace(args.workspace)
        _ = ws.config
        return ws
    except (WorkspaceError, ConfigError) as exc:
        print(f"bpllm dataset {what}: {exc}", file=sys.stderr)
        return None


def _dump(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def cmd_export(args: argparse.Namespace) -> int:
    ws = _workspace(args, "export")
    if ws is None:
        return 1
    try:
        rep = export(ws, args.format, args.out, split=args.split, tokenizer=args.tokenizer)
    except (ExportError, OSError) as exc:
        print(f"bpllm dataset export: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _dump(rep)
        return 0
    t = rep["tokens"]
    print(f"wrote {rep['rows']} {rep['split']} rows as {rep['format']} to {rep['out']}")
    print(f"  rows from: {rep['from']}")
    print(f"  system prompt: {rep['system_prompt']}")
    print(f"  tokens: {t['total']:,} total, {t['mean']} mean, {t['max']:,} max per row ({t['method']})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    ws = _workspace(args, "build")
    if ws is None:
        return 1
    try:
        rep = build(ws, args.source, seed=args.seed,
                    progress=None if args.json else (lambda msg: print(f"  {msg}", file=sys.stderr)))
    except (BuildError, OSError) as exc:
        print(f"bpllm dataset build: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _dump(rep)
    else:
        print(format_report(rep))
    return 0
