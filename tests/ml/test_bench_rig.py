"""`bpllm bench rig`: the real command in a subprocess, every field of its JSON (figures are never asserted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("llguidance")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def rig(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "rig", *args, "--json"], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def test_bench_rig_small_reports_every_field():
    r = rig("--profile", "llama-8b-bf16", "--small")
    assert r["profile"] == "llama-8b-bf16" and r["small"] is True and r["fits"] is True
    dev = r["device"]
    assert dev["type"] in ("cpu", "cuda") and dev["placement"] and dev["dtype"] in ("float32", "bfloat16")
    assert isinstance(dev["gpus"], list) and dev["torch"] and number(dev["total_bytes"]) and number(dev["free_bytes"])
    shape = r["shape"]
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "vocab_size", "parameters", "weights_bytes"):
        assert number(shape[key]) and shape[key] > 0, key
    assert shape["hidden_size"] < 4096 and shape["num_hidden_layers"] < 32  # --small shrank the 8B's shape
    dec = r["decode"]
    for mode in ("batched", "single"):
        for key in ("prompts", "batch_size", "seconds", "tokens", "prompts_per_s", "ms_per_token", "ms_per_step",
                    "mask_ms_per_token"):
            assert number(dec[mode][key]), (mode, key)
        assert dec[mode]["prompts"] > 0 and dec[mode]["tokens"] > 0
    assert dec["single"]["batch_size"] == 1 and dec["batched"]["batch_size"] > 1
    for key in ("batched_over_single", "constrained_overhead_pct", "hf_generate_ms_per_step", "bare_forward_ms",
                "engine_ms_per_step"):
        assert number(dec[key]), key
    assert dec["hf_generate_ms_per_step"] > 0 and dec["bare_forward_ms"] > 0
    tr = r["train"]
    for key in ("tokens_per_s", "bare_peft_tokens_per_s", "peak_memory_bytes", "steps"):
        assert number(tr[key]) and tr[key] > 0, key
    assert r["eight_bit"] is None  # a bf16 profile


def test_bench_rig_reports_a_shape_that_cannot_fit_instead_of_crashing():
    """The 70B profile's full shape on a machine that cannot hold it: a report, exit 0, nothing measured."""
    r = rig("--profile", "llama-70b-8bit")
    if r["fits"]:
        pytest.skip(f"this machine holds a 70B in 8-bit ({r['device']['name']}): nothing to refuse")
    assert r["reason"] and r["decode"] is None and r["train"] is None
    assert r["shape"]["num_hidden_layers"] == 80 and r["shape"]["parameters"] > 60e9
