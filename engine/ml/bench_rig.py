"""`bpllm bench rig [--profile P] [--small] [--json]`: will this machine run this profile, and how fast?

Builds a model with the profile's real shape and random weights on the device engine.ml.placement
picks (no download; the tiny tokenizer, trained in seconds on synthetic rows), then measures in one
run, each figure next to its baseline:

* decode: the engine batched (auto batch size) vs one prompt at a time (prompts/s); constrained vs
  free (ms/token, one prompt at a time); the engine's ms/step next to plain ``model.generate()`` and a
  bare forward loop over a KV cache at the same batch;
* train: the engine's LoRA training (build_trainer, its callback; tokens/s after warm-up, peak memory)
  next to a bare peft loop (same LoRA, batch and sequence length);
* for 8-bit profiles, the model goes through the engine's 8-bit load path (bitsandbytes) first.

``--small`` shrinks every dimension (a CPU runs it in well under two minutes; CI does). A shape whose
weights cannot fit the device's memory is reported as such (``"fits": false``), not crashed. Figures
are printed, never asserted. docs/gpu.md explains the fields.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from dsl.catalog import default_catalog
from engine.dataset.synthetic import generate as synthetic_rows
from engine.ml.base import load_base, quiet_transformers, render_example, tiny_tokenizer
from engine.ml.bench import _system_prompt
from engine.ml.generate import GenConfig, GrammarConstraint, _vocab_size, generate
from engine.ml.placement import config_params, config_roles, device_facts, input_device, plan_placement
from engine.ml.profiles import PROFILES, TINY_BASE_DEFAULTS, get_profile
from engine.ml.train import Hooks, TrainSpec, build_trainer, peak_memory

# the real shapes (Llama 3.1) each profile trains; tiny's comes from TINY_BASE_DEFAULTS
SHAPES: dict[str, dict[str, int]] = {
    "llama-8b-bf16": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                          num_key_value_heads=8, vocab_size=128256),
    "llama-70b-8bit": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                           num_key_value_heads=8, vocab_size=128256),
}


def profile_shape(profile, small: bool, tokenizer_vocab: int) -> dict[str, int]:
    """The model shape for ``profile`` (--small: every dimension shrunk, the vocabulary the tokenizer's)."""
    if profile.name in SHAPES:
        shape = dict(SHAPES[profile.name])
    else:
        t = profile.tiny
        shape = dict(hidden_size=t.get("hidden_size", 128), intermediate_size=t.get("intermediate_size", 384),
                     num_hidden_layers=t.get("num_hidden_layers", 3), num_attention_heads=t.get("num_attention_heads", 4),
                     num_key_value_heads=t.get("num_attention_heads", 4), vocab_size=tokenizer_vocab)
    if small:
        heads = max(2, shape["num_attention_heads"] // 8)
        kv = max(1, min(heads, shape["num_key_value_heads"] // 4))
        while heads % kv:
            kv -= 1
        shape = dict(hidden_size=max(64, shape["hidden_size"] // 32) // heads * heads,
                     intermediate_size=max(128, shape["intermediate_size"] // 32),
                     num_hidden_layers=max(2, shape["num_hidden_layers"] // 16), num_attention_heads=heads,
                     num_key_value_heads=kv, vocab_size=tokenizer_vocab)
    shape["vocab_size"] = max(shape["vocab_size"], tokenizer_vocab)
    return shape


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device) -> int | None:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))

    return peak_memory().get("peak_memory_bytes")


def device_report(facts, placement) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"type": "cuda" if placement.on_cuda else "cpu", "placement": placement.device,
                           "dtype": placement.dtype, "quantization": placement.quantization,
                           "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "gpus": [{"index": g.index, "name": g.name, "total_bytes": g.total_bytes,
                                     "free_bytes": g.free_bytes, "bf16": g.bf16, "role": g.role} for g in facts]}
    if placement.on_cuda and placement.gpus:
        g = next(f for f in facts if f.index == placement.gpus[0])
        out.update(name=g.name, total_bytes=g.total_bytes, free_bytes=g.free_bytes)
    else:
        try:
            import psutil

            vm = psutil.virtual_memory()
            out.update(name="cpu", total_bytes=int(vm.total), free_bytes=int(vm.available))
        except ImportError:  # pragma: no cover
            out.update(name="cpu", total_bytes=None, free_bytes=None)
    return out


def build_model(shape: dict[str, int], placement, tokenizer, workdir: Path):
    """Random weights of ``shape`` on the placement's device; 8-bit profiles through the engine's load path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**shape, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      tie_word_embeddings=False)
    dtype = getattr(torch, placement.dtype)
    torch.manual_seed(0)
    if placement.quantization:  # save bf16/fp32 random weights, then load them the way the engine does

        model = LlamaForCausalLM(cfg).to(dtype)
        model.save_pretrained(workdir / "base")
        tokenizer.save_pretrained(workdir / "base")
        del model
        model, _tok = load_base(workdir / "base", placement=placement)
        return model
    device = "cuda" if placement.on_cuda else "cpu"
    if placement.device.startswith("cuda:"):
        device = placement.device
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # no fp32 copy of an 8B on the way to bf16
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model


def _rows(n: int, seed: int = 4242) -> list[dict[str, Any]]:
    return synthetic_rows(n, seed=seed)


def measure_decode(model, tokenizer, prompts: list[str], max_new: int, single_n: int) -> dict[str, Any]:

    device = input_device(model)
    # "constrained" is the grammar (syntax level); the catalog level is measured beside it (issue 16)
    constraints = {level: GrammarConstraint(tokenizer, _vocab_size(model, tokenizer), level=level)
                   for level in ("syntax", "catalog")}
    constraint = constraints["syntax"]
    model.eval()

    def run(batch_size: int, constrained: bool, subset: list[str], level: str = "syntax") -> dict[str, Any]:
        cfg = GenConfig(max_new_tokens=max_new, batch_size=batch_size, constrained=constrained, time_budget_s=3600,
                        constraint=level)
        used = constraints[level] if constrained else None
        if device.type == "cuda":  # an untimed pass first: CUDA graphs are captured once per shape
            generate(model, tokenizer, subset, cfg, used)
        _sync(device)
        t0 = time.perf_counter()
        res = generate(model, tokenizer, subset, cfg, used)
        _sync(device)
        seconds = time.perf_counter() - t0
        tokens = sum(r.n_tokens for r in res)
        batches = sorted({r.extra.get("batch", batch_size) for r in res})
        steps = max(1, _decode_steps(res, batch_size))
        return {"prompts": len(res), "batch_size": batches[-1] if batches and batches[-1] else batch_size,
                "seconds": round(seconds, 4), "tokens": tokens, "prompts_per_s": round(len(res) / seconds, 3),
                "ms_per_token": round(1000 * seconds / max(1, tokens), 3),
                "ms_per_step": round(1000 * seconds / steps, 3),
                "mask_ms_per_token": round(1000 * sum(r.mask_seconds for r in res) / max(1, tokens), 4),
                "mode": (res[0].extra.get("mode") if res and res[0].extra else "compact"),
                "stop_reasons": _count(r.stop_reason for r in res)}

    generate(model, tokenizer, prompts[:2], GenConfig(max_new_tokens=4, batch_size=2, time_budget_s=3600), constraint)
    batched = run(0, True, prompts)  # 0: the batch size from free memory
    single_prompts = prompts[:single_n]
    single = run(1, True, single_prompts)
    single_catalog = run(1, True, single_prompts, "catalog")
    single_free = run(1, False, single_prompts)
    batch = max(1, min(len(prompts), batched["batch_size"]))
    batched_free = run(batch, False, prompts[:batch])
    hf_ms = hf_generate_ms_per_step(model, tokenizer, prompts[:batch], max_new)
    bare_ms = bare_forward_ms(model, batch, max_new)
    return {
        "batched": batched, "single": single, "single_free": single_free, "batched_free": batched_free,
        "single_catalog": single_catalog,
        "batched_over_single": round(batched["prompts_per_s"] / single["prompts_per_s"], 3),
        "constrained_overhead_pct": round(100 * (single["ms_per_token"] / single_free["ms_per_token"] - 1), 2),
        "catalog_overhead_pct": round(100 * (single_catalog["ms_per_token"] / single["ms_per_token"] - 1), 2),
        "engine_ms_per_step": batched_free["ms_per_step"],
        "hf_generate_ms_per_step": hf_ms,
        "bare_forward_ms": bare_ms,
        "batch_size": batch,
        "max_new_tokens": max_new,
    }


def _decode_steps(results, batch_size: int) -> int:
    """Decode steps a run took: per batch, its longest row (rows of a batch step together)."""
    by_batch: dict[Any, int] = {}
    for r in results:
        key = r.extra.get("batch_id", r.index)
        by_batch[key] = max(by_batch.get(key, 0), max(1, r.n_tokens))
    return sum(by_batch.values())


def hf_generate_ms_per_step(model, tokenizer, prompts: list[str], max_new: int) -> float:
    """Plain ``model.generate()`` greedy, the same batch, exactly ``max_new`` new tokens: ms per step."""
    import torch

    device = input_device(model)
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    finally:
        tokenizer.padding_side = old
    kw = dict(do_sample=False, max_new_tokens=max_new, min_new_tokens=max_new, pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode():
        model.generate(**enc, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        model.generate(**enc, **kw)
        _sync(device)
    return round(1000 * (time.perf_counter() - t0) / max_new, 3)


def bare_forward_ms(model, batch: int, steps: int, prompt_len: int = 64) -> float:
    """A bare loop of one-token forwards over a DynamicCache at ``batch`` rows: ms per forward."""
    import torch
    from transformers import DynamicCache

    device = input_device(model)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, prompt_len), device=device)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        tok = out.logits[:, -1:].argmax(-1)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=tok, past_key_values=out.past_key_values, use_cache=True)
            tok = out.logits[:, -1:].argmax(-1)
        _sync(device)
    return round(1000 * (time.perf_counter() - t0) / max(1, steps), 3)


def measure_train(model, tokenizer, profile, rows: list[dict[str, Any]], workdir: Path, warmup: int,
                  steps: int) -> dict[str, Any]:
    """The engine's LoRA training (tokens/s after ``warmup`` steps, peak memory) next to a bare peft loop."""
    from transformers import TrainerCallback

    device = input_device(model)
    # a log line reads the loss back from the device: every 5th step, as a real run's profile does
    prof = profile.with_overrides(max_steps=warmup + steps, save_steps=10**6, logging_steps=1 if steps < 5 else 5,
                                  eval_steps=0,
                                  warm_start=False, retain_weight=0.0, lora_dropout=0.0)
    spec = TrainSpec(base="(in memory)", profile=prof.to_dict(), train_rows=rows, validation_rows=[],
                     system_prompt="Write Blueprint DSL.", output_dir=str(workdir / "train"),
                     adapter_dir=str(workdir / "train" / "adapter"))

    marks: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        """Two marks only (after the warm-up, at the end): the bare loop is not synced in between either."""

        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (warmup, warmup + steps):
                _sync(device)
                marks.append((time.perf_counter(), int(state.num_input_tokens_seen or 0)))

    events: list[dict[str, Any]] = []
    trainer, _cb = build_trainer(spec, Hooks(emit=lambda type, **p: events.append({"type": type, **p})),
                                 model=model, tokenizer=tokenizer)
    trainer.add_callback(Clock())
    _reset_peak(device)
    trainer.train()
    engine_peak = _peak(device)
    (t_a, n_a), (t_b, n_b) = marks[0], marks[-1]
    engine_tps = (n_b - n_a) / max(1e-9, t_b - t_a)
    micro = trainer.args.per_device_train_batch_size
    accum = trainer.args.gradient_accumulation_steps
    padding_free = bool(getattr(trainer.args, "padding_free", False))
    liger, tf32 = bool(trainer.args.use_liger_kernel), bool(trainer.args.tf32)
    seq = max(8, int((n_b - n_a) / max(1, steps * micro * accum)))
    lora_model = trainer.model
    base = lora_model.unload() if hasattr(lora_model, "unload") else lora_model
    del trainer
    bare_tps, bare_peak = bare_peft_loop(base, prof, micro * accum, seq, warmup, steps)
    return {"tokens_per_s": round(engine_tps, 1), "bare_peft_tokens_per_s": round(bare_tps, 1),
            "engine_over_bare": round(engine_tps / bare_tps, 3) if bare_tps else None,
            "peak_memory_bytes": engine_peak, "bare_peft_peak_memory_bytes": bare_peak,
            "steps": steps, "warmup_steps": warmup, "micro_batch": micro, "grad_accum": accum,
            "bare_batch": micro * accum, "bare_seq_len": seq,
            "padding_free": padding_free, "liger": liger, "tf32": tf32,
            "train_events": len([e for e in events if e["type"] == "train"])}


def bare_peft_loop(model, profile, batch: int, seq_len: int, warmup: int, steps: int) -> tuple[float, int | None]:
    """LoRA (the profile's r, alpha, targets) + AdamW on random tokens, nothing else: tokens/s and peak memory."""
    import torch
    from peft import LoraConfig, get_peft_model

    device = input_device(model)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in profile.target_modules if t in names] or "all-linear"
    lora = get_peft_model(model, LoraConfig(r=profile.lora_r, lora_alpha=profile.lora_alpha, lora_dropout=0.0,
                                            target_modules=targets, task_type="CAUSAL_LM"))
    on_cuda = device.type == "cuda"
    if profile.gradient_checkpointing and on_cuda:
        lora.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lora.enable_input_require_grads()
    lora.train()
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda and profile.bf16 else None
    _reset_peak(device)
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        if autocast is not None:
            with autocast:
                loss = lora(input_ids=ids, labels=ids).loss
        else:
            loss = lora(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    seconds = time.perf_counter() - (t0 or time.perf_counter())
    peak = _peak(device)
    lora.unload()
    return batch * seq_len * steps / max(1e-9, seconds), peak


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def run_rig(profile_name: str = "llama-8b-bf16", small: bool = False) -> dict[str, Any]:
    """Everything ``bench rig`` reports, as one JSON-ready dict."""
    import torch

    t_start = time.perf_counter()
    profile = get_profile(profile_name)
    settings = dict(TINY_BASE_DEFAULTS)
    system = _system_prompt(None)
    tokenizer = tiny_tokenizer(_rows(400, seed=settings["synthetic_seed"]), system, default_catalog(), settings)
    shape = profile_shape(profile, small, len(tokenizer))
    from transformers import LlamaConfig

    n_params = config_params(LlamaConfig(**shape, tie_word_embeddings=False))
    facts = device_facts(config_roles())
    placement = plan_placement(facts, bf16=profile.bf16, load_in_8bit=profile.load_in_8bit,
                               load_in_4bit=profile.load_in_4bit, n_params=n_params)
    report: dict[str, Any] = {
        "device": device_report(facts, placement), "profile": profile.name, "small": small,
        "shape": {**shape, "parameters": n_params, "weights_bytes": placement.model_bytes
                  or int(n_params * (2 if placement.dtype == "bfloat16" else 4))},
        "placement": placement.to_dict(), "fits": True, "reason": None, "decode": None, "train": None,
        "eight_bit": None,
    }
    weights = report["shape"]["weights_bytes"]
    free = report["device"].get("free_bytes")
    if not placement.fits or (not placement.on_cuda and free and weights * 1.3 > free):
        report["fits"] = False
        report["reason"] = (placement.reason if not placement.fits else
                            f"does not fit: {weights / 2**30:.1f} GiB of weights, {free / 2**30:.1f} GiB free on the CPU")
        report["seconds"] = round(time.perf_counter() - t_start, 2)
        return report
    if not placement.on_cuda and not small and n_params > 1_000_000_000:
        report["fits"] = False
        report["reason"] = (f"no GPU here: {n_params / 1e9:.1f} B parameters on the CPU would take hours; "
                            "run `bpllm bench rig --small` to check the code path")
        report["seconds"] = round(time.perf_counter() - t_start, 2)
        return report
    if placement.device == "auto":
        report["reason"] = placement.reason
    tmp = Path(tempfile.mkdtemp(prefix="bpllm-rig-"))
    if placement.quantization:  # the engine's 8-bit path loads a checkpoint: it is written first, unquantized
        ckpt = int(n_params * (2 if placement.dtype == "bfloat16" else 4))
        ram = _available_ram()
        disk = shutil.disk_usage(tmp).free
        if ckpt * 1.2 > min(disk, ram or disk):
            shutil.rmtree(tmp, ignore_errors=True)
            report["fits"] = False
            report["reason"] = (f"the {placement.quantization} path needs the unquantized checkpoint first "
                                f"({ckpt / 2**30:.0f} GiB) in RAM and on disk: {_fmt_bytes(ram)} RAM and "
                                f"{_fmt_bytes(disk)} disk available here; try --small")
            report["seconds"] = round(time.perf_counter() - t_start, 2)
            return report
    try:
        try:
            t0 = time.perf_counter()
            model = build_model(shape, placement, tokenizer, tmp)
            report["build_seconds"] = round(time.perf_counter() - t0, 2)
            if placement.quantization:
                kinds = {type(m).__name__ for m in model.modules()}
                report["eight_bit"] = {"quantization": placement.quantization,
                                       "quantized_linears": sum(1 for m in model.modules()
                                                                if "8bit" in type(m).__name__ or "4bit" in type(m).__name__),
                                       "module_kinds": sorted(k for k in kinds if "bit" in k.lower())}
            n_prompts, max_new, single_n = (8, 12, 2) if small else (64, 64, 8)
            rows = _rows(max(n_prompts, 64), seed=4242)
            prompts = [render_example(tokenizer, system, r["instruction"]) for r in rows[:n_prompts]]
            report["decode"] = measure_decode(model, tokenizer, prompts, max_new, single_n)
            warmup, steps = (1, 2) if small else (5, 20)
            train_profile = profile.with_overrides(max_seq_len=128) if small else profile.with_overrides(max_seq_len=512)
            report["train"] = measure_train(model, tokenizer, train_profile, rows, tmp, warmup, steps)
        except torch.cuda.OutOfMemoryError as exc:
            report["fits"] = False
            report["reason"] = f"out of GPU memory while measuring: {str(exc).splitlines()[0]}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - t_start, 2)
    return report


def _available_ram() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        return None


def _fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def print_table(r: dict[str, Any]) -> None:
    d, s = r["device"], r["shape"]
    print(f"bench rig — profile {r['profile']}{' (--small)' if r['small'] else ''} on {d['name']} "
          f"({d['type']}, {d['placement']}, {d['dtype']}{', ' + d['quantization'] if d['quantization'] else ''})")
    print(f"  shape        {s['num_hidden_layers']} layers x {s['hidden_size']} hidden, {s['intermediate_size']} MLP, "
          f"{s['num_attention_heads']}/{s['num_key_value_heads']} heads, vocab {s['vocab_size']}: "
          f"{s['parameters'] / 1e9:.3f} B parameters, {_fmt_bytes(s['weights_bytes'])} of weights; "
          f"{_fmt_bytes(d.get('free_bytes'))} free")
    if not r["fits"]:
        print(f"  does not fit: {r['reason'].removeprefix('does not fit: ')}")
        return
    if r.get("eight_bit"):
        e = r["eight_bit"]
        print(f"  {e['quantization']} path  {e['quantized_linears']} quantized linear layers ({', '.join(e['module_kinds'])})")
    dec = r["decode"]
    if dec:
        b, one = dec["batched"], dec["single"]
        print(f"  decode       batched ({b['batch_size']} rows, {b['mode']})  {b['prompts_per_s']:9.2f} prompts/s  "
              f"vs one-by-one {one['prompts_per_s']:.2f}  = {dec['batched_over_single']:.2f}x")
        print(f"               constrained {one['ms_per_token']:.2f} vs free {dec['single_free']['ms_per_token']:.2f} "
              f"ms/token (batch 1) = {dec['constrained_overhead_pct']:+.1f}%  "
              f"(grammar work {one['mask_ms_per_token']:.3f} ms/token)")
        cat = dec["single_catalog"]
        print(f"               catalog {cat['ms_per_token']:.2f} vs syntax {one['ms_per_token']:.2f} ms/token (batch 1) "
              f"= {dec['catalog_overhead_pct']:+.1f}%  (grammar + catalog work {cat['mask_ms_per_token']:.3f} ms/token)")
        print(f"               engine {dec['engine_ms_per_step']:.2f} ms/step vs model.generate() "
              f"{dec['hf_generate_ms_per_step']:.2f} vs bare forward {dec['bare_forward_ms']:.2f} "
              f"(batch {dec['batch_size']}, free decoding)")
    tr = r["train"]
    if tr:
        print(f"  train        engine {tr['tokens_per_s']:.0f} tokens/s (micro-batch {tr['micro_batch']} x "
              f"{tr['grad_accum']}, peak {_fmt_bytes(tr['peak_memory_bytes'])}) vs bare peft loop "
              f"{tr['bare_peft_tokens_per_s']:.0f} tokens/s (peak {_fmt_bytes(tr['bare_peft_peak_memory_bytes'])}) "
              f"= {tr['engine_over_bare']:.2f}x, {tr['steps']} steps after {tr['warmup_steps']} warm-up")
    print(f"  {r['seconds']:.1f} s in all")


def bench_rig(args: argparse.Namespace) -> int:
    name = getattr(args, "profile", None) or "llama-8b-bf16"
    if name not in PROFILES:
        print(f"bench rig: unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
        return 2
    quiet_transformers()
    report = run_rig(name, small=bool(getattr(args, "small", False)))
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, default=str))
    else:
        print_table(report)
    return 0
