"""``accelerate launch -m engine.ml.worker SPEC EVENTS STOP``: one rank of distributed training.

Rank 0 appends its events to EVENTS (the parent relays them into the run's stream);
every rank watches for the STOP file, and they agree at each step end. Exit 0 (done, or
stopped after saving a checkpoint — then rank 0 writes a ``_stopped`` marker: torchrun
would report a non-zero rank as a crash), 1 failed.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .train import Hooks, TrainingStopped, TrainSpec, train_adapter


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path, events_path, stop_path = (Path(a) for a in argv[:3])

    spec = TrainSpec.from_json(spec_path.read_text(encoding="utf-8"))
    rank = int(os.environ.get("RANK", "0"))
    last = [0.0]

    def write(obj: dict) -> None:
        if rank != 0:
            return
        with events_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(obj, default=float) + "\n")

    def progress(n, total, message=None):
        now = time.monotonic()
        if now - last[0] >= 0.5 or (total and n >= total):
            last[0] = now
            write({"type": "_progress", "n": n, "total": total, "message": message})

    hooks = Hooks(emit=lambda type, **p: write({"type": type, **p}), progress=progress,
                  should_stop=lambda: stop_path.exists())
    write({"type": "log", "level": "info", "message":
           f"training worker: {os.environ.get('WORLD_SIZE', '1')} process(es), rank 0 pid {os.getpid()}"})
    try:
        train_adapter(spec, hooks)
    except TrainingStopped as stop:
        # exit 0: torchrun reports any non-zero rank as a crash; the marker tells the parent instead
        write({"type": "_stopped", "checkpoint": stop.checkpoint})
        return 0
    finally:
        _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Tear the process group down before the interpreter exits: left to exit, a still-running gloo
    thread can abort the rank ("terminate called without an active exception", SIGABRT), seen once
    in CI on a loaded 2-core machine right after a stop."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
