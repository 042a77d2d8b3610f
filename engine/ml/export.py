"""``bpllm export-merged``: a trained version as one standard Hugging Face model folder.

The base and the version's LoRA adapter are merged (peft ``merge_and_unload``) and saved the way
``save_pretrained`` writes any causal LM: ``config.json``, ``model.safetensors`` (sharded for big
models), ``generation_config.json`` and the tokenizer files, so transformers' ``from_pretrained`` and
servers that read that layout (vLLM, TGI, llama.cpp's converter) load it without peft or bpllm.

Precision follows the version's profile: ``bf16`` profiles are merged and saved in bfloat16, the
others in float32. An 8-bit (or 4-bit) profile trained on a quantized base; a merge into quantized
weights would round the adapter away, so the base is loaded unquantized in its own dtype (the
``dtype`` of its config.json, e.g. bfloat16 for Llama 3.1 70B), the adapter merged into that, and
the result says so. The folder is written beside its destination and moved into place at the end:
an interrupted export leaves no half-written model under ``--out``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from dsl.errors import BpllmError

from .base import BaseUnavailable, load_base


class ExportError(BpllmError):
    """An export that cannot be done; the message says what to do."""


def _base_dtype_name(base: str) -> str | None:
    """The dtype a base model's config.json declares (``dtype`` or ``torch_dtype``), if it can be read."""
    cfg = Path(base) / "config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        try:
            from transformers import AutoConfig

            conf = AutoConfig.from_pretrained(base)
            value = getattr(conf, "dtype", None) or getattr(conf, "torch_dtype", None)
            return str(value).removeprefix("torch.") if value is not None else None
        except Exception:  # noqa: BLE001 - no config to read: the caller falls back to float32 and says so
            return None
    value = data.get("dtype") or data.get("torch_dtype")
    return str(value).removeprefix("torch.") if value else None


def merge_plan(profile: dict[str, Any], base: str) -> tuple[str, str | None]:
    """(dtype name, note) for merging a version trained with ``profile`` on ``base``."""
    quantized = bool(profile.get("load_in_8bit") or profile.get("load_in_4bit"))
    if quantized:
        bits = "8-bit" if profile.get("load_in_8bit") else "4-bit"
        dtype = _base_dtype_name(base) or ("bfloat16" if profile.get("bf16") else "float32")
        if dtype not in ("float32", "float16", "bfloat16"):
            dtype = "bfloat16" if profile.get("bf16") else "float32"
        return dtype, (f"the {profile.get('name', 'profile')} profile trained on a {bits} quantized base; merged "
                       f"into the base loaded unquantized in its own dtype ({dtype}): the export is dequantized, "
                       f"not {bits}")
    return ("bfloat16" if profile.get("bf16") else "float32"), None


def export_merged(models_dir: Path, version: str, out: Path, *, force: bool = False,
                  log: Callable[[str], Any] = lambda message: None) -> dict[str, Any]:
    """Merge ``version``'s adapter into its base and write a standard model folder at ``out``."""
    import torch
    from peft import PeftModel
    from transformers import GenerationConfig

    vdir = models_dir / version
    adapter = vdir / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise ExportError(f"{adapter}: no trained adapter (adapter_config.json) for {version}; "
                          f"train it with `bpllm run` (see `bpllm runs`)")
    try:
        config = json.loads((vdir / "training_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{vdir / 'training_config.json'}: missing (step 4.5 writes it); "
                          f"without it the base and precision of {version} are unknown") from None
    except ValueError as exc:
        raise ExportError(f"{vdir / 'training_config.json'}: not valid JSON ({exc})") from None
    base, profile = str(config.get("base") or ""), dict(config.get("profile") or {})
    if not base:
        raise ExportError(f"{vdir / 'training_config.json'} names no base model")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ExportError(f"{out} exists and is not empty; choose another --out or pass --force to replace it")
    dtype_name, note = merge_plan(profile, base)
    dtype = getattr(torch, dtype_name)
    t0 = time.time()
    log(f"loading base {base} ({dtype_name})")
    try:
        model, tokenizer = load_base(base, dtype=dtype)  # never quantized: the merge needs real weights
    except BaseUnavailable as exc:
        raise ExportError(f"base of {version}: {exc}") from None
    log(f"merging {adapter}")
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model = model.to(dtype)
    model.config.dtype = dtype  # config.json says what the weights are
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if not (tmp / "generation_config.json").exists():
            gen = GenerationConfig.from_model_config(model.config)
            gen.pad_token_id = tokenizer.pad_token_id
            gen.save_pretrained(tmp)
        info = {"version": version, "base": base, "adapter": str(adapter), "profile": profile.get("name"),
                "dtype": dtype_name, "note": note, "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "merged_by": "bpllm export-merged (peft merge_and_unload)"}
        (tmp / "bpllm_export.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        # mkdtemp makes the folder 0700 and safetensors writes 0600: give them the modes a plain
        # mkdir / open would (umask), since a model folder is read by servers running as other users
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p.name for p in out.iterdir())
    return {**info, "out": str(out), "files": files, "seconds": round(time.time() - t0, 1),
            "parameters": sum(p.numel() for p in model.parameters())}
