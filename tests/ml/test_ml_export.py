"""`bpllm export-merged`: a trained version as a standard Hugging Face folder, loaded back by plain
transformers (no peft, no bpllm) and checked against the adapter model on the real tiny base."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from engine.ml.profiles import get_profile  # noqa: E402
from engine.ml.testing import test_base  # noqa: E402
from engine.ml.train import TrainSpec, train_adapter  # noqa: E402
from engine.dataset.synthetic import generate  # noqa: E402
from tests.cli import bpllm as _run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def bpllm(*args: str) -> subprocess.CompletedProcess:
    return _run(*args, timeout=600)


@pytest.fixture(scope="module")
def trained_ws(tmp_path_factory):
    """A workspace whose v1 is a real (short) LoRA training of the tiny test base, laid out as 4.x writes it."""
    tmp = tmp_path_factory.mktemp("export")
    ws = tmp / "ws"
    assert bpllm("init", str(ws)).returncode == 0
    base = test_base(tmp / "base")
    rows = generate(24, seed=5)
    prof = get_profile("tiny", batch_size=4, max_steps=3, logging_steps=1, save_steps=50)
    vdir = ws / "models" / "v1"
    spec = TrainSpec(base=str(base), profile=prof.to_dict(), train_rows=rows[:20], validation_rows=rows[20:],
                     system_prompt="Write Blueprint DSL.", output_dir=str(vdir / "checkpoints"),
                     adapter_dir=str(vdir / "adapter"), version="v1", seed=3)
    train_adapter(spec)
    (vdir / "training_config.json").write_text(json.dumps({"version": "v1", "profile": prof.to_dict(),
                                                           "base": str(base)}))
    return ws, base


def test_export_merged_loads_in_plain_transformers_with_the_adapters_logits(trained_ws, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.ml.base import load_base, render_example

    ws, base = trained_ws
    out = tmp_path / "merged"
    res = bpllm("export-merged", "-w", str(ws), "v1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "v1 merged into" in res.stdout and "float32" in res.stdout
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= names, names
    assert not any(n.startswith("adapter") for n in names), "merged: no adapter files"
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"

    merged = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ref, ref_tok = load_base(base)
    ref = PeftModel.from_pretrained(ref, str(ws / "models" / "v1" / "adapter"))  # unmerged adapter model
    merged.eval()
    ref.eval()
    text = render_example(ref_tok, "Write Blueprint DSL.", "Print Hello when the game starts.")
    ids = tok(text, return_tensors="pt")
    assert ids["input_ids"].tolist() == ref_tok(text, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        got = merged(**ids).logits
        want = ref(**ids).logits
        plain = load_base(base)[0](**ids).logits
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert not torch.allclose(got, plain, atol=1e-4), "the adapter must change the base's logits"


def test_export_merged_refuses_clearly(trained_ws, tmp_path):
    ws, _ = trained_ws
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    res = bpllm("export-merged", "-w", str(ws), "--out", str(busy))
    assert res.returncode == 1 and "not empty" in res.stderr and "Traceback" not in res.stderr
    assert (busy / "keep.txt").exists()
    res = bpllm("export-merged", "-w", str(ws), "v9", "--out", str(tmp_path / "x"))
    assert res.returncode == 1 and "no trained adapter" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()


def test_eight_bit_profiles_merge_dequantized_in_the_bases_dtype(tmp_path):
    from engine.ml.export import merge_plan

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    dtype, note = merge_plan(get_profile("llama-70b-8bit").to_dict(), str(base))
    assert dtype == "bfloat16" and "dequantized" in note and "8-bit" in note
    assert merge_plan(get_profile("llama-8b-bf16").to_dict(), str(base)) == ("bfloat16", None)
    assert merge_plan(get_profile("tiny").to_dict(), str(base)) == ("float32", None)
