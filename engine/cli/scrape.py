"""`bpllm scrape github` — fetch .blend files found by a GitHub code search into a folder, resumably.

The work lives in :mod:`engine.dataset.scrape`; this module parses arguments, prints the summary and turns
a :class:`~dsl.errors.BpllmError` into one line (``bpllm scrape: message (hint)``, exit 1).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dsl.errors import BpllmError
from engine.dataset.scrape import DEFAULT_API, UNAUTH_NOTICE, Options, human_bytes, scrape


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scrape", help="collect source files for a dataset (GitHub code search)")
    kinds = p.add_subparsers(dest="source", metavar="SOURCE")
    g = kinds.add_parser(
        "github", help="download .blend files found by a GitHub code search into DIR (resumable)",
        description="Search GitHub code, check each hit's size and kind, and store every .blend file once "
                    "under DIR/files/ with DIR/metadata.jsonl describing where it came from. Running the same "
                    "command again resumes from DIR/checkpoint.json. Set GITHUB_TOKEN for the higher rate limit.")
    g.add_argument("--query", "-q", required=True,
                   help="code search query, e.g. 'extension:blend' or 'extension:blend path:materials'")
    g.add_argument("--out", "-o", required=True, help="folder for files/, metadata.jsonl and the checkpoint")
    g.add_argument("--api-url", default=None,
                   help="API root (default https://api.github.com; GitHub Enterprise: https://HOST/api/v3)")
    g.add_argument("--max-files", type=int, default=None, help="stop once this many distinct files are stored")
    g.add_argument("--max-size-mb", type=float, default=None,
                   help="skip files larger than this (size from the contents API, before any download)")
    g.add_argument("--min-stars", type=int, default=0, help="skip repositories with fewer stars than this")
    g.add_argument("--per-page", type=int, default=100, help="search hits asked for per page (GitHub allows 1-100)")
    g.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    g.set_defaults(func=_cmd_github)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _cmd_github(args: argparse.Namespace) -> int:
    problems = []
    if args.max_files is not None and args.max_files < 1:
        problems.append("--max-files must be 1 or more")
    if args.max_size_mb is not None and args.max_size_mb <= 0:
        problems.append("--max-size-mb must be above 0")
    if not 1 <= args.per_page <= 100:
        problems.append("--per-page must be 1 to 100")
    if not args.query.strip():
        problems.append("--query is empty")
    api = (args.api_url or os.environ.get("BPLLM_GITHUB_API") or DEFAULT_API).rstrip("/")
    if not api.startswith(("http://", "https://")):
        problems.append(f"--api-url {api!r} is not an http(s) URL")
    if problems:
        print(f"bpllm scrape: {'; '.join(problems)}", file=sys.stderr)
        return 2
    token = os.environ.get("GITHUB_TOKEN") or None
    if not token:
        print(UNAUTH_NOTICE, file=sys.stderr)
    opts = Options(query=args.query, out=Path(args.out), api=api, max_files=args.max_files,
                   max_size_mb=args.max_size_mb, min_stars=args.min_stars, per_page=args.per_page, token=token)
    try:
        summary = scrape(opts)
    except BpllmError as exc:
        print(f"bpllm scrape: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, a folder we may not write: name it, no traceback
        print(f"bpllm scrape: {exc} (free space or fix permissions, then run again to resume)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        state = "complete" if summary["complete"] else (summary["stopped"] or f"{summary['queued']} hits left")
        print(f"scraped {summary['query']!r} into {summary['out']}: {state}\n"
              f"  pages {summary['pages']} · {summary['files']} files stored ({human_bytes(summary['bytes'])}), "
              f"{summary['duplicate']} duplicates kept once, {summary['rejected']} rejected (not .blend), "
              f"{summary['oversized']} oversized, {summary['filtered']} below --min-stars, "
              f"{summary['missing']} missing, {summary['failed']} failed (rerun to retry)\n"
              f"  this run: {summary['this_run']['requests']} requests, {summary['this_run']['downloads']} downloads,"
              f" {human_bytes(summary['this_run']['bytes'])}\n"
              f"  metadata: {summary['metadata']}")
        for line in summary["rejected_files"]:
            print(f"  rejected: {line}")
    return 0
