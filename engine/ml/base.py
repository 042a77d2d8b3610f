"""The tiny profile's base model: tokenizer + small Llama, pretrained locally and cached.

A laptop with no network still gets a real model: a byte-level BPE tokenizer and
a few-million-parameter Llama are trained from scratch on a corpus made of the
system prompt, every catalog node/pin/param name, synthetic examples covering the
whole catalog (LoRA cannot teach a token the base never saw used) and the
workspace's own datasets. The result is cached under a key derived from the corpus
and the settings, so every later cycle (and every workspace with the same corpus)
reuses it. The directory is written beside its final name and renamed into place,
so a crash never leaves a half-written base behind.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from dsl.errors import BpllmError, StopRequested
from engine.dataset.rows import MAX_ROW_CHARS

from .placement import load_kwargs, place_for
from .profiles import Profile, get_profile
from .tokenizer import add_node_tokens, load_tokenizer, train_tokenizer

BASE_FORMAT = 2  # bump when the tokenizer, template or pretraining recipe changes


def corpus_key(documents: Sequence[str], settings: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": BASE_FORMAT, **settings}, sort_keys=True).encode())
    for doc in documents:
        h.update(doc.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def catalog_vocabulary(catalog) -> list[str]:
    """Every node type, pin, param and alias name: the tokenizer must spell them compactly.

    ``catalog``: the workspace's LanguagePack (its ``vocabulary()``) or a dsl Catalog (Blueprint's words)."""
    words: list[str] = []
    if catalog is None:
        return words
    if hasattr(catalog, "vocabulary"):  # a LanguagePack
        return list(catalog.vocabulary())
    for name, spec in catalog.nodes.items():
        words.append(name)
        words.extend(p.name for p in spec.pins)
        words.extend(p.name for p in spec.params)
    words.extend(getattr(catalog, "node_aliases", {}).keys())
    return words


def render_example(tokenizer, system: str | None, instruction: str, output: str | None = None) -> str:
    """One conversation rendered by the tokenizer's chat template (prompt only when ``output`` is None)."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": instruction})
    if output is None:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    messages.append({"role": "assistant", "content": output})
    return tokenizer.apply_chat_template(messages, tokenize=False)


def build_documents(rows: Iterable[dict], system: str, catalog) -> list[str]:
    """Pretraining documents: catalog vocabulary, then each row as a conversation."""
    docs = [system, " ".join(catalog_vocabulary(catalog))]
    for row in rows:
        docs.append(json.dumps([row.get("instruction", ""), row.get("output", "")], ensure_ascii=False))
    return docs


def tokenizer_texts(rows: Iterable[dict], system: str, vocab_words: Sequence[str]) -> list[str]:
    """What the tokenizer trains on, each text cut to MAX_ROW_CHARS: BPE training is about quadratic in
    one text's length (80 k characters 4.4 s, 320 k 94.7 s) and runs in Rust, where neither a stop nor the
    stall watchdog can interrupt it. Intake (step 1.5) already quarantines longer rows; this bounds the
    base build whatever rows it is given."""
    # the system prompt opens every example: repeat it so BPE packs it into a few tokens
    texts = [system] * 64 + [" ".join(vocab_words)] * 4
    for row in rows:
        texts.append(row.get("instruction", ""))
        texts.append(row.get("output", ""))
    return [t[:MAX_ROW_CHARS] for t in texts]


def ensure_tiny_base(
    cache_root: str | Path,
    rows: Sequence[dict],
    system: str,
    catalog,
    settings: dict[str, Any],
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Return the cached base directory for this corpus, pretraining it first if needed."""
    cache_root = Path(cache_root)
    docs = build_documents(rows, system, catalog)
    key = corpus_key(docs, settings)
    final = cache_root / f"tiny-{key}"
    if (final / "base.json").exists():
        return final
    quiet_transformers()  # saving the new base draws a "Writing model shards" bar otherwise
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".tiny-{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        meta = pretrain_tiny_base(tmp, rows, system, catalog, settings, on_progress, should_stop)
        meta["key"] = key
        (tmp / "base.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "base.json").exists():  # another process won the race with a complete base
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def tiny_tokenizer(rows: Sequence[dict], system: str, catalog, settings: dict[str, Any]):
    """The tiny profile's tokenizer for this corpus (seconds to train; `bench rig` uses it without a base)."""
    tokenizer = train_tokenizer(tokenizer_texts(rows, system, catalog_vocabulary(catalog)),
                                int(settings.get("vocab_size", 4096)), int(settings.get("max_token_length", 16)),
                                isolate_identifiers=bool(settings.get("isolate_identifiers", False)))
    if settings.get("node_tokens", False):
        add_node_tokens(tokenizer, catalog.node_names() if hasattr(catalog, "node_names") else catalog.nodes)
    return tokenizer


def pretrain_tiny_base(
    out_dir: Path,
    rows: Sequence[dict],
    system: str,
    catalog,
    settings: dict[str, Any],
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train tokenizer and model from scratch into ``out_dir``; returns metadata (losses, sizes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    started = time.perf_counter()
    seed = int(settings.get("seed", 7))
    random.seed(seed)
    torch.manual_seed(seed)

    def check_stop(where: str) -> None:
        if should_stop and should_stop():
            raise StopRequested(f"stop requested while pretraining the tiny base ({where})")

    tokenizer = tiny_tokenizer(rows, system, catalog, settings)
    check_stop("after training the tokenizer")

    # Most documents skip the system prompt: it is ~half the tokens of an example and the
    # same every time, so pretraining on it in every row would halve the throughput for
    # nothing. A share keeps it (the fine-tune and the exam always use it).
    share = float(settings.get("system_prompt_share", 0.25))
    pick = random.Random(seed + 1)
    encoded = []
    for i, r in enumerate(rows):
        if i % 256 == 0:
            check_stop("encoding the corpus")
        text = render_example(tokenizer, system if pick.random() < share else None, r["instruction"], r["output"])
        encoded.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    max_len = int(settings.get("max_position_embeddings", 1024))
    encoded = [ids[:max_len] for ids in encoded if ids]

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=int(settings.get("hidden_size", 192)),
        intermediate_size=int(settings.get("intermediate_size", 512)),
        num_hidden_layers=int(settings.get("num_hidden_layers", 4)),
        num_attention_heads=int(settings.get("num_attention_heads", 4)),
        num_key_value_heads=int(settings.get("num_attention_heads", 4)),
        max_position_embeddings=max_len,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())

    batch_size = int(settings.get("pretrain_batch_size", 16))
    epochs = float(settings.get("pretrain_epochs", 2.0))
    max_seconds = float(settings.get("pretrain_max_seconds", 150.0))
    # batches of similar length: little padding, far less compute on CPU
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    total_steps = max(1, math.ceil(len(batches) * epochs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(settings.get("pretrain_lr", 3e-3)), weight_decay=0.01)
    warmup = max(1, total_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    pad = tokenizer.pad_token_id
    rng = random.Random(seed)
    losses: list[float] = []
    step = 0
    tokens_seen = 0
    stopped_early = False
    while step < total_steps:
        rng.shuffle(batches)
        for batch in batches:
            if step >= total_steps:
                break
            check_stop(f"step {step}/{total_steps}")
            if time.perf_counter() - started > max_seconds:
                stopped_early = True
                break
            seqs = [encoded[i] for i in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
            lr_now = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += int(mask.sum())
            losses.append(loss.item())
            if on_progress:  # every step: the stall watchdog measures progress (ctx.progress throttles events)
                # the loss of the last 10 batches (like a trainer's logging_steps), and what a loss chart and
                # an ETA need: the rate, the schedule and the time cap
                on_progress({"step": step, "total": total_steps, "loss": sum(losses[-10:]) / len(losses[-10:]),
                             "tokens": tokens_seen, "elapsed": time.perf_counter() - started,
                             "max_seconds": max_seconds, "lr": lr_now, "grad_norm": grad_norm})
        if stopped_early:
            break

    check_stop("before saving")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "format": BASE_FORMAT,
        "parameters": n_params,
        "vocab_size": len(tokenizer),
        "documents": len(encoded),
        "steps": step,
        "planned_steps": total_steps,
        "time_capped": stopped_early,
        "tokens": tokens_seen,
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(losses[-10:]) / max(1, len(losses[-10:])) if losses else None,
        "seconds": round(time.perf_counter() - started, 2),
        "settings": settings,
    }


def quiet_transformers() -> None:
    """No tqdm bars or library deprecation chatter on the engine's stderr: the step's events say what is
    loading, and stray bars would garble `bpllm run -q` and the TUI's log (the warnings come from library
    code, not ours, so the user could do nothing about them)."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def load_base(path: str | Path, load_in_8bit: bool = False, dtype=None, load_in_4bit: bool = False, placement=None):
    """Model + tokenizer from a base directory, local path or hub id (offline-friendly message).

    ``placement`` (engine.ml.placement) says where the weights land and in which dtype/quantization;
    without one the model loads on the CPU as before (tests, the tiny base's own pretraining)."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()

    path_str = str(path)
    kwargs: dict[str, Any] = {}
    if placement is not None:
        kwargs = load_kwargs(placement)
    elif load_in_8bit or load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (BitsAndBytesConfig(load_in_8bit=True) if load_in_8bit
                                         else BitsAndBytesConfig(load_in_4bit=True))
    if dtype is not None and placement is None:
        kwargs["dtype"] = dtype
    try:
        tokenizer = load_tokenizer(path_str)
        model = AutoModelForCausalLM.from_pretrained(path_str, **kwargs)
    except OSError as exc:
        local = Path(path_str).exists()
        hint = (
            f"the directory {path_str} exists but holds no loadable model ({exc})"
            if local
            else f"{path_str!r} is neither a local directory nor a model in the local Hugging Face cache, and it could "
            "not be downloaded (offline?). Download it once with `huggingface-cli download "
            f"{path_str}` on a connected machine, or set the profile's base to a local path."
        )
        raise BaseUnavailable(hint) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_version(base: str | Path, adapter_dir: str | Path, profile=None):
    """A trained version for generation, placed like its profile says (engine.ml.placement): the base in
    the profile's dtype and quantization on the best device, with the adapter merged in (no LoRA matmuls
    per token) unless the base is quantized (a LoRA cannot be merged into 8-bit/4-bit weights)."""
    from peft import PeftModel

    profile = profile or get_profile("tiny")
    placement = place_for(profile, str(base))
    model, tokenizer = load_base(base, placement=placement)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    if not placement.quantization:
        model = model.merge_and_unload()
    model.eval()
    model.bpllm_placement = placement
    return model, tokenizer


def profile_of(config: dict):
    """The Profile a version was trained with (its training_config.json ``profile``), or None."""
    values = config.get("profile") if isinstance(config, dict) else None
    if not isinstance(values, dict):
        return None
    try:
        return Profile(**{**values, "target_modules": tuple(values.get("target_modules", ()))})
    except TypeError:  # written by another engine version: fall back to the default placement
        return None


class BaseUnavailable(BpllmError, RuntimeError):
    """The profile's base weights cannot be loaded here (offline, missing path)."""
