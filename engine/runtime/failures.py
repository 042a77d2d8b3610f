"""Error classification and the retry policy.

A retry only happens where it can help: a CUDA OOM is retried with a smaller
batch / sequence / LoRA rank (the reference project's policy), a network error
or a timeout with exponential backoff.  Deterministic failures (encoding, data,
config, corrupt checkpoint, unknown bugs) and a full disk are never retried
blindly: they stop the run with a message and a resume state.
"""
from __future__ import annotations

import errno
import traceback as tb
from dataclasses import dataclass, field
from typing import Any

from dsl.config import ConfigError

from dsl.errors import BpllmError


class EngineError(BpllmError, RuntimeError):
    """An error a step raises on purpose, with its category (what the retry policy and the events
    report) and a hint for the user."""

    category = "unknown"

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message, hint or "")


class DataError(EngineError):
    category = "data"


class CorruptCheckpoint(EngineError):
    category = "corrupt_checkpoint"


class StallTimeout(EngineError):
    category = "timeout"


@dataclass
class Classified:
    category: str
    retryable: bool
    message: str
    hint: str | None = None
    exception: str = ""
    traceback: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_OOM = ("cuda out of memory", "outofmemoryerror", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
        "hip out of memory", "mps backend out of memory", "cuda error: out of memory")
_NETWORK = ("connection reset", "connection refused", "connection aborted", "temporary failure in name resolution",
            "name or service not known", "read timed out", "max retries exceeded", "remote end closed connection",
            "502 bad gateway", "503 service unavailable", "504 gateway", "network is unreachable")
_OFFLINE = ("localentrynotfounderror", "offline mode", "hf_hub_offline", "cannot find the requested files in the",
            "we couldn't connect to", "is not a local folder and is not a valid model identifier")
_CORRUPT = ("error while deserializing header", "headertoolarge", "invalid load key", "pytorchstreamreader failed",
            "unexpected eof", "badzipfile", "file is not a zip file", "safetensors_rust.safetensorerror",
            "incomplete metadata", "corrupt", "unpickling")


def classify(exc: BaseException) -> Classified:
    """Category and retryability of an exception (message text is used where types are not importable)."""
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    name = type(exc).__name__

    def out(cat: str, retry: bool, hint: str | None = None) -> Classified:
        message = exc.message if isinstance(exc, BpllmError) else str(exc)  # the hint goes in its own field
        return Classified(cat, retry, message or name, hint or getattr(exc, "hint", None) or None, name, trace)

    if isinstance(exc, EngineError):
        return out(exc.category, exc.category == "timeout")
    if isinstance(exc, ConfigError):  # a setting a step cannot work with: fix bpllm.toml, then resume
        return Classified("config", False, exc.message, exc.hint or None, name, trace)
    if name == "OutOfMemoryError" or any(s in low for s in _OOM):
        return out("cuda_oom", True, "halving batch size, then sequence length, then LoRA rank")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or "no space left on device" in low:
        return out("disk_full", False, "free disk space (old checkpoints under models/, backups/), then `bpllm resume`")
    if isinstance(exc, (UnicodeError,)):
        return out("encoding", False, "a file is not UTF-8 or the console cannot print a character; "
                                      "set PYTHONIOENCODING=utf-8 or fix the file, then `bpllm resume`")
    if any(s in low for s in _OFFLINE):
        return out("network", False, "the model is not available offline: download it first or point the "
                                     "profile's `model` at a local directory")
    if isinstance(exc, (ConnectionError, TimeoutError)) and not isinstance(exc, StallTimeout) \
            or any(s in low for s in _NETWORK) or name in ("ConnectTimeout", "ReadTimeout", "HTTPError"):
        if isinstance(exc, TimeoutError) and not any(s in low for s in _NETWORK):
            return out("timeout", True)
        return out("network", True)
    if any(s in low for s in _CORRUPT):
        return out("corrupt_checkpoint", False, "a checkpoint or model file is damaged: remove it or "
                                                "`bpllm restore` a backup, then `bpllm resume`")
    if isinstance(exc, (ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError)):
        return out("unknown", False)
    return out("unknown", False)


# settings an OOM retry shrinks, in order, with their floors (grad_accum grows to keep the effective batch)
OOM_LADDER = (("batch_size", 1), ("max_seq_len", 256), ("lora_r", 4))


def oom_adjust(settings: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Halve the first setting above its floor; returns {key: (old, new)} (empty: nothing left to shrink)."""
    for key, floor in OOM_LADDER:
        cur = settings.get(key)
        if isinstance(cur, int) and cur > floor:
            new = max(floor, cur // 2)
            changes: dict[str, tuple[Any, Any]] = {key: (cur, new)}
            if key == "batch_size":
                ga = settings.get("grad_accum")
                if isinstance(ga, int) and ga > 0:
                    changes["grad_accum"] = (ga, ga * (cur // new))
            if key == "lora_r":
                alpha = settings.get("lora_alpha")
                if isinstance(alpha, (int, float)) and alpha:
                    changes["lora_alpha"] = (alpha, type(alpha)(alpha * new / cur))
            return changes
    return {}


def backoff_delay(attempt: int, base: float, factor: float, cap: float) -> float:
    """Delay before retry number ``attempt`` (1 = first retry)."""
    return float(min(cap, base * (factor ** max(0, attempt - 1))))
