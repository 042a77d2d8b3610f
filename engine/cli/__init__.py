"""`bpllm` — the headless command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; the
table below names them so ``bpllm --help`` stays fast (modules import lazily only
what their own command needs: ``bpllm validate`` never loads torch).

Errors are reported here, once: a command raises a :class:`~dsl.errors.BpllmError` and ``main``
prints ``bpllm <command>: message (hint)`` on stderr and exits 1, without a traceback. Anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from dsl import packs
from dsl.errors import BpllmError, StopRequested
from engine.runtime.streams import guard_std_streams

# module path -> subcommands it registers. Add a module here, never edit others.
COMMAND_MODULES: tuple[str, ...] = (
    "dsl.cli",              # validate, score, fmt
    "engine.cli.run",  # init, run, stop, resume, status, runs, leakage, import-blueprintllm, backup(s), restore, gpus
    "engine.cli.ml",   # (training/exam helpers, bench train/exam)
    "engine.dataset.drafts",        # accept (a drafted lesson into lessons/)
    "engine.cli.bench",         # bench dsl|exam|train|tui
    "engine.cli.scrape",        # scrape github
    "engine.cli.dataset",       # dataset build|export
    "engine.cli.languages",     # languages
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpllm",
        description="Teaching loop for LLMs that write Unreal Engine 5 Blueprint DSL.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet: skip, keep the rest usable
                continue
            raise
        module.register(sub)
    _register_pack_commands(sub)
    return parser


def _register_pack_commands(sub: argparse._SubParsersAction) -> None:
    """Commands the language packs bring (Blueprint: import-t3d, export-t3d), each module once."""

    done: set[str] = set()
    for pack in packs.all_packs():  # a pack that fails to load is listed by `bpllm languages`
        for command in pack.commands:
            if command.module in done or command.name in sub.choices:
                continue
            done.add(command.module)
            importlib.import_module(command.module).register(sub)


def main(argv: list[str] | None = None) -> int:
    guard_std_streams()  # `bpllm run | head`, or a TUI that quit, must not kill a run
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except StopRequested as exc:  # a graceful stop, as `bpllm run` reports it: exit 2, resumable
        print(f"bpllm {args.command}: {exc}", file=sys.stderr)
        return 2
    except BpllmError as exc:  # a user error: one line, no traceback
        print(f"bpllm {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
