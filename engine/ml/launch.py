"""Training beyond one process: the same training under ``accelerate launch``.

The step writes the TrainSpec to the run directory and starts
``accelerate launch [--config_file F | --cpu] --num_processes N -m engine.ml.worker``
as a child (stdin closed, its own session, output to a log file). The worker's rank 0
appends its events to a side file that this side re-emits through ``ctx.emit``, so
the run's event stream looks the same as in-process training; a stop request becomes
a flag file every rank agrees on at the next step end; the worker saves a checkpoint,
writes a ``_stopped`` marker and exits 0 (torchrun treats any other code as a crash).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dsl.errors import BpllmError
from dsl.config import ConfigError

from .hooks import step_hooks
from engine.resources import checkout_root, child_pythonpath

from .train import TrainingStopped, TrainSpec, last_checkpoint


class TooManyRanks(BpllmError, RuntimeError):
    """More accelerate ranks than visible GPUs on a GPU machine (each rank needs a card of its own)."""


def check_ranks(num_processes: int, visible_gpus: int, cpu: bool = False) -> None:
    """Refuse, with the fix, a launch whose ranks would not each get a GPU (pure: the facts are arguments).

    On a GPU machine every rank takes ``cuda:<local rank>``: a second rank on a one-GPU machine dies
    with "invalid device ordinal" deep inside the worker. CPU ranks (``cpu=True``) need no card."""
    if cpu or visible_gpus == 0 or num_processes <= visible_gpus:
        return
    raise TooManyRanks(
        f"accelerate launcher: {num_processes} processes asked for but only {visible_gpus} GPU(s) visible "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); set the profile's "
        f"num_processes to at most {visible_gpus}, or accelerate_cpu = true to run the ranks on the CPU")


def accelerate_command(spec_path: Path, events_path: Path, stop_path: Path, num_processes: int,
                       config_file: str | None = None, cpu: bool | None = None) -> list[str]:
    import torch

    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file:
        cmd += ["--config_file", str(config_file)]
    else:
        on_cpu = cpu if cpu is not None else not torch.cuda.is_available()
        # accelerate 1.15's `--cpu` runs ONE process unless an MPI hostfile is given; the torchrun
        # launcher (`--multi_gpu`) spawns N ranks, and the trainer (use_cpu=True) joins them over gloo
        if num_processes > 1:
            cmd += ["--multi_gpu"]
        elif on_cpu:
            cmd += ["--cpu"]
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--num_processes", str(num_processes)]
    cmd += ["-m", "engine.ml.worker", str(spec_path), str(events_path), str(stop_path)]
    return cmd


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch(spec: TrainSpec, work_dir: Path, num_processes: int, config_file: str | None = None,
           emit=None, progress=None, should_stop=None, poll_s: float = 0.5, cpu: bool = False) -> dict[str, Any]:
    """Run the worker under accelerate; relay its events; returns the training summary.

    ``cpu``: run the ranks on the CPU even on a GPU machine (they are then hidden from CUDA)."""
    if not config_file:
        check_ranks(num_processes, _visible_gpus(), cpu)
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_path = work_dir / "train_spec.json"
    events_path = work_dir / "worker_events.jsonl"
    stop_path = work_dir / "STOP"
    log_path = work_dir / "worker.log"
    spec_path.write_text(spec.to_json(), encoding="utf-8")
    events_path.write_text("", encoding="utf-8")
    stop_path.unlink(missing_ok=True)
    env = child_pythonpath(dict(os.environ))  # the ranks import this same engine (checkout or install)
    env.setdefault("OMP_NUM_THREADS", "1")
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the ranks must not touch a card they were not given
    if cpu or not _cuda():
        env["ACCELERATE_USE_CPU"] = "true"
    cmd = accelerate_command(spec_path, events_path, stop_path, num_processes, config_file, cpu=cpu or None)
    offset = 0
    stopped: dict[str, Any] = {}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=str(checkout_root() or work_dir))
        try:
            while True:
                rc = proc.poll()
                offset = _relay(events_path, offset, emit, progress, stopped)
                if rc is not None:
                    break
                if should_stop and should_stop() and not stop_path.exists():
                    stop_path.write_text(str(time.time()), encoding="utf-8")
                time.sleep(poll_s)
        except BaseException:
            _terminate_group(proc)
            raise
    offset = _relay(events_path, offset, emit, progress, stopped)
    if rc == 0 and stopped:
        raise TrainingStopped(stopped.get("checkpoint") or last_checkpoint(spec.output_dir))
    if rc != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"accelerate training worker exited {rc}; log {log_path}:\n{tail}")
    result = Path(spec.adapter_dir) / "train_result.json"
    return json.loads(result.read_text(encoding="utf-8"))


def _terminate_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """End the launcher and every rank it spawned (they share its session, so no rank outlives the
    engine): SIGTERM, then SIGKILL after ``grace_s`` (short: a signal-stopped engine must write its
    final records before a service manager's own SIGKILL)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _relay(path: Path, offset: int, emit, progress, stopped: dict[str, Any] | None = None) -> int:
    """Forward complete lines written since ``offset``; a partial last line waits for the next poll."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return offset
    end = chunk.rfind(b"\n")
    if end < 0:
        return offset
    pos = 0
    for line in chunk[:end].split(b"\n"):
        start, pos = pos, pos + len(line) + 1
        try:
            ev = json.loads(line.decode("utf-8"))
            if not isinstance(ev, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # not UTF-8 or not JSON: skip it, say which line
            if line.strip() and emit:
                with path.open("rb") as fh:
                    line_no = fh.read(offset + start).count(b"\n") + 1
                emit("log", level="warning", source="engine",
                     message=f"{path} line {line_no}: skipped an unreadable worker event ({str(exc)[:120]})")
            continue
        kind = ev.pop("type", None)
        if kind == "_stopped":
            if stopped is not None:
                stopped.update(ev, seen=True)
        elif kind == "_progress":
            if progress:
                progress(ev.get("n", 0), ev.get("total"), ev.get("message"))
        elif kind and emit:
            emit(kind, **ev)
    return offset + end + 1


def run_accelerate(ctx, spec: TrainSpec, profile) -> dict[str, Any]:
    hooks = step_hooks(ctx)
    work = ctx.run_dir / "ml" / f"train-cycle{ctx.cycle}"
    try:
        return launch(spec, work, profile.num_processes, profile.accelerate_config, emit=hooks.emit,
                      progress=hooks.progress, should_stop=hooks.should_stop, cpu=bool(profile.accelerate_cpu))
    except TooManyRanks as exc:
        raise ConfigError(str(exc), hint="[profiles.<name>] num_processes = <GPUs> or accelerate_cpu = true "
                                           "in bpllm.toml") from exc
