"""Steps 3–7 of the teaching loop, plugged into the runtime's registry.

3.x model setup (tiny base built/cached or a real base loaded, LoRA attached, SFT
trainer configured) → 4.x training (in-process, or under ``accelerate launch`` when
the profile says so) → 5.x post-training checks and health → 6.x exam → 7.x grading,
mastery and the drafted next lesson. Heavy objects travel between steps through
``ctx.cache``; everything a resume needs is in ``ctx.state["ml"]`` and on disk.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from dsl.errors import StopRequested
from engine.atomic import atomic_write_json, read_json
from engine.dataset.leakage import seen_map
from engine.resources import run_engine
from engine.runtime.context import StepContext, StepRegistry
from dsl.config import ConfigError
from engine.runtime.failures import CorruptCheckpoint, DataError
from engine.runtime.reader import describe_skipped, read_events
from engine.workspace.config import report_to_list
from engine.workspace.safe_paths import id_path

from .base import BASE_FORMAT, BaseUnavailable, ensure_tiny_base, render_example
from .exam import exam_prompts, load_lessons, run_exam, summarize, version_records
from .generate import GenConfig, generate
from .grading import (
    MASTERED,
    confusions,
    contrast_nodes,
    draft_lesson,
    next_draft_id,
    node_mastery,
    paired_node_changes,
    report,
    weakest_nodes,
)
from .grading import classify_errors as classify
from .health import data_alerts, health_report_doc, mastery_alerts, stagnation_alerts, training_alerts
from .hooks import step_hooks
from .launch import run_accelerate
from .profiles import PROFILES, get_profile
from .train import (
    TRAIN_RESULT,
    TrainingStopped,
    TrainSpec,
    attach_lora,
    build_trainer,
    device_info,
    last_checkpoint,
    load_model_for_training,
    train_adapter,
)

STATE = "ml"


def register_steps(registry: StepRegistry) -> None:
    for sid, fn, needs in (
        ("3.1", load_system_prompt, ()),
        ("3.2", load_dataset, ()),
        ("3.3", detect_device, ()),
        ("3.4", load_base_model, ("3.1", "3.2")),
        ("3.5", attach_adapter, ("3.4",)),
        ("3.6", configure_trainer, ("3.5",)),
        ("4.2", initialize_training, ()),
        ("4.3", training_loop, ("3.6", "4.2")),
        ("4.4", save_weights, ("4.2",)),
        ("4.5", save_training_config, ("4.2",)),
        ("4.6", save_system_prompt, ("3.1", "4.2")),
        ("5.1", verify_output, ("3.1", "4.2")),
        ("5.2", training_summary, ("4.2",)),
        ("5.3", health_checks, ("3.2", "4.2")),
        ("5.4", health_report, ("4.2",)),
        ("5.5", update_training_history, ("4.2",)),
        ("5.6", archive_logs, ("4.2",)),
        ("6.1", load_exam_lessons, ()),
        ("6.2", load_exam_model, ("3.1",)),
        ("6.3", run_prompts, ("3.1", "6.1", "6.2")),
        ("6.4", validate_responses, ("6.1",)),
        ("6.5", compare_and_score, ("6.1",)),
        ("6.6", save_exam_results, ("6.1",)),
        ("7.1", load_exam_results, ()),
        ("7.2", classify_errors, ("7.1",)),
        ("7.3", score_mastery, ("7.1",)),
        ("7.4", grading_report, ("7.1", "7.2", "7.3")),
        ("7.5", draft_next_lesson, ("7.3",)),
    ):
        registry.register(sid, fn, needs=needs, owner="ml")


# ---------------------------------------------------------------------------- helpers
def _ck(ctx: StepContext, name: str) -> str:
    """Cache key for per-cycle data: a second cycle in the same process must re-read what step 8 changed."""
    return f"{name}:{ctx.cycle}"


def ml_state(ctx: StepContext) -> dict[str, Any]:
    return ctx.state.setdefault(STATE, {})


def resolve_profile(ctx: StepContext):
    """Built-in profile named by ``--profile`` / ``[profiles.X] base = ...``, then bpllm.toml and OOM overrides."""


    table = ctx.profile_config
    values: dict[str, Any] = {}
    name = ctx.profile if ctx.profile in PROFILES else (table.base or "tiny")
    if ctx.profile in PROFILES and table.base is not None:
        values["base"] = table.base
    if name not in PROFILES:  # [profiles.X] base = "/path/to/model": a real model on the 8b path
        values["base"], name = name, "llama-8b-bf16"
    profile = get_profile(name)
    known = set(profile.to_dict())
    values.update(table.overrides())
    if table.tiny is not None:
        values["tiny"] = {**profile.tiny, **table.tiny}
    if table.extra and not ml_state(ctx).get("warned_ignored"):
        ml_state(ctx)["warned_ignored"] = True
        ctx.log(f"[profiles.{ctx.profile}] keys not used by the ML profile: {', '.join(sorted(table.extra))} "
                f"(known: {', '.join(sorted(known))})", level="warning")
    for key in ("batch_size", "grad_accum", "max_seq_len", "lora_r", "lora_alpha"):
        if key in ctx.overrides:
            values[key] = ctx.overrides[key]
    if "max_seq_length" in ctx.overrides and "max_seq_len" not in ctx.overrides:
        values["max_seq_len"] = ctx.overrides["max_seq_length"]  # state.json of a run started before the rename
    for key, value in ctx.config.train.overrides().items():
        if key not in values:
            values[key] = {**profile.tiny, **value} if key == "tiny" else value
    return profile.with_overrides(**values) if values else profile


def version_of(ctx: StepContext) -> str:
    """This cycle's model version (assigned once by 4.2, reused on resume)."""
    st = ml_state(ctx)
    key = f"version:{ctx.cycle}"
    if key not in st:
        existing = {v["version"] for v in ctx.history.versions()}
        existing |= {p.name for p in ctx.workspace.models.glob("v*") if p.is_dir()}
        n = 1
        while f"v{n}" in existing:
            n += 1
        st[key] = f"v{n}"
        ctx.save_state()
    return st[key]


def version_dir(ctx: StepContext, version: str | None = None) -> Path:
    return ctx.workspace.models / (version or version_of(ctx))


def latest_adapter_version(ctx: StepContext) -> str | None:
    """The version examined by 6.x: this cycle's when it trained, else the newest on disk."""
    key = f"version:{ctx.cycle}"
    st = ml_state(ctx)
    if key in st and (version_dir(ctx, st[key]) / "adapter" / "adapter_config.json").exists():
        return st[key]
    for row in reversed(ctx.history.versions()):
        if (version_dir(ctx, row["version"]) / "adapter" / "adapter_config.json").exists():
            return row["version"]
    return None


def _system_prompt(ctx: StepContext) -> str:
    def read() -> str:
        for path in (ctx.workspace.datasets / "system_prompt.txt", ctx.workspace.system_prompt_path):
            if path.exists():
                return path.read_text(encoding="utf-8").strip()

        raise DataError(f"no system prompt: {ctx.workspace.system_prompt_path} is missing",
                        hint="restore it or run `bpllm init` again")

    return ctx.resource(_ck(ctx, "ml.system"), read)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    if not path.exists():
        return rows
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{i}: not JSON ({exc.msg})", hint="re-run step 1.5 to rebuild it") from exc
    return rows


def _data(ctx: StepContext) -> dict[str, list[dict[str, Any]]]:
    def read() -> dict[str, list[dict[str, Any]]]:
        ws = ctx.workspace
        if not ws.train_path.exists():
            raise DataError(f"{ws.train_path} does not exist", hint="run steps 1-2 first (`bpllm run --only 1,2`)")
        return {"train": _read_jsonl(ws.train_path), "validation": _read_jsonl(ws.validation_path)}

    return ctx.resource(_ck(ctx, "ml.data"), read)


BASE_LOG_EVERY_S = 15.0  # a log line while the base pretrains (its loss is a train event every 10 steps)


def _base_progress(ctx: StepContext):
    """Pretraining the tiny base is real training: its loss goes out as ``train`` events marked
    ``phase: "base"`` (the TUI's loss chart shows them), a log line every BASE_LOG_EVERY_S says how far
    it is, and the ETA never exceeds what is left of its time cap (``pretrain_max_seconds``)."""
    last_log = [0.0]

    def report(d: dict[str, Any]) -> None:
        elapsed, cap = float(d.get("elapsed") or 0.0), d.get("max_seconds")
        tokens_per_s = round(d["tokens"] / elapsed, 1) if d.get("tokens") and elapsed > 0 else None
        if d["step"] % 10 == 0 or d["step"] >= d["total"]:  # reported every step (the stall watchdog), charted every 10
            ctx.emit("train", step=d["step"], max_steps=d["total"], loss=round(float(d["loss"]), 4),
                     lr=d.get("lr"), grad_norm=d.get("grad_norm"), tokens_per_s=tokens_per_s, phase="base")
        ctx.progress(d["step"], d["total"], f"pretraining tiny base, loss {d['loss']:.3f}", unit="step",
                     eta_cap=float(cap) - elapsed if cap is not None else None)
        now = time.monotonic()
        if now - last_log[0] >= BASE_LOG_EVERY_S or d["step"] >= d["total"]:
            last_log[0] = now
            capped = f", {elapsed:.0f}s of its {float(cap):.0f}s cap" if cap is not None else ""
            ctx.log(f"pretraining the tiny base: step {d['step']}/{d['total']}, loss {d['loss']:.3f}{capped}")

    return report


def tiny_base(ctx: StepContext, profile) -> Path:
    """The workspace's pinned tiny base, built (and pinned) on first use."""
    root = ctx.workspace.models / "base"
    pin = root / "PINNED.json"
    settings = dict(profile.tiny)
    if pin.exists():
        pinned = json.loads(pin.read_text(encoding="utf-8"))
        path = Path(pinned.get("path", ""))
        if not path.is_absolute():
            path = root / path
        if (path / "base.json").exists() and pinned.get("settings") == settings and pinned.get("format") == BASE_FORMAT:
            return path
    pack = ctx.workspace.pack  # the language's generator and vocabulary
    rows = pack.synthesize(int(settings.get("synthetic_examples", 1600)), int(settings.get("synthetic_seed", 1234)))
    data = _data(ctx)
    rows = rows + [r for r in data["train"] if r.get("instruction") and r.get("output")]
    ctx.log(f"building the tiny base: tokenizer + {settings.get('hidden_size')}-wide Llama on {len(rows)} examples "
            "(cached for later cycles)")

    try:
        path = ensure_tiny_base(root, rows, _system_prompt(ctx), pack, settings,
                                on_progress=_base_progress(ctx), should_stop=lambda: ctx.stop_requested)
    except StopRequested:
        ctx.check_stop()  # the runtime's StopRequested: exit 2; the base is rebuilt on resume
        raise
    atomic_write_json(pin, {"path": path.name, "settings": settings, "format": BASE_FORMAT, "created": time.time()})
    meta = read_json(path / "base.json", {}) or {}
    if meta.get("steps") is not None:  # how the pretraining ended, in the log beside its progress lines
        capped = " (stopped at its time cap)" if meta.get("time_capped") else ""
        loss = f", loss {float(meta['final_loss']):.3f}" if meta.get("final_loss") is not None else ""
        ctx.log(f"tiny base built: {meta['steps']}/{meta.get('planned_steps')} steps{capped}{loss} "
                f"in {float(meta.get('seconds') or 0):.0f}s")
    return path


def _base_ref(ctx: StepContext, profile) -> str:
    return str(tiny_base(ctx, profile)) if profile.is_tiny else profile.base


# ---------------------------------------------------------------------------- 3.x
def load_system_prompt(ctx: StepContext) -> dict[str, Any]:
    text = _system_prompt(ctx)
    return {"chars": len(text)}


def load_dataset(ctx: StepContext) -> dict[str, Any]:
    data = _data(ctx)
    if not data["train"]:
        raise DataError(f"{ctx.workspace.train_path} has no rows", hint="add lessons or datasets, then re-run step 1")
    return {"train": len(data["train"]), "validation": len(data["validation"])}


def detect_device(ctx: StepContext) -> dict[str, Any]:
    info = device_info()
    profile = resolve_profile(ctx)
    info["profile"] = profile.name
    info["precision"] = "8-bit" if profile.load_in_8bit else ("bf16" if profile.bf16 and info["bf16"] else "fp32")
    if info["device"] == "cpu" and not profile.is_tiny:
        ctx.log(f"profile {profile.name} on a CPU: expect it to be very slow", level="warning")
    ml_state(ctx)["device"] = info
    return info


def _gpu_roles(ctx: StepContext) -> dict[str, str]:
    """The config's GPU roles (nvidia-smi index -> role): placement keeps a display card free."""
    return dict(ctx.config.telemetry.roles)


def load_base_model(ctx: StepContext) -> dict[str, Any]:
    profile = resolve_profile(ctx)
    ctx.phase("loading")
    base = _base_ref(ctx, profile)
    ml_state(ctx)[f"base:{ctx.cycle}"] = base
    if profile.launcher == "accelerate":
        return {"base": base, "launcher": "accelerate", "loaded": False}

    try:
        model, tokenizer = load_model_for_training(base, profile, _gpu_roles(ctx))
    except BaseUnavailable as exc:


        raise ConfigError(str(exc), hint="set [profiles.<name>] model = \"/path/to/weights\" in bpllm.toml") from exc
    ctx.cache["ml.model"], ctx.cache["ml.tokenizer"] = model, tokenizer
    ctx.cache.pop("ml.trainer", None)
    params = sum(p.numel() for p in model.parameters())
    placement = getattr(model, "bpllm_placement", None)
    return {"base": base, "parameters": params, "8bit": profile.load_in_8bit,
            **({"device": placement.device, "dtype": placement.dtype, "placement": placement.reason}
               if placement is not None else {})}


def attach_adapter(ctx: StepContext) -> dict[str, Any]:
    profile = resolve_profile(ctx)
    if profile.launcher == "accelerate":
        return {"launcher": "accelerate", "lora_r": profile.lora_r}

    init = _warm_start_adapter(ctx, profile)
    model = attach_lora(ctx.cache["ml.model"], profile, init, ctx.config.data.seed)
    ctx.cache["ml.model"] = model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"lora_r": profile.lora_r, "lora_alpha": profile.lora_alpha, "warm_start_from": init, "trainable": trainable,
            "trainable_pct": round(100 * trainable / max(1, total), 3)}


def _warm_start_adapter(ctx: StepContext, profile) -> str | None:
    """The newest earlier version's adapter trained on the same base (warm start), if the profile wants one."""
    if not profile.warm_start:
        return None
    key = f"warm:{ctx.cycle}"
    st = ml_state(ctx)
    if key in st:
        return st[key]
    current = version_of(ctx)
    base = ml_state(ctx).get(f"base:{ctx.cycle}")
    found = None
    for row in reversed(ctx.history.versions()):
        adapter = version_dir(ctx, row["version"]) / "adapter"
        if row["version"] != current and (adapter / "adapter_config.json").exists() and row.get("base") == base:
            found = str(adapter)
            break
    st[key] = found
    return found


def _spec(ctx: StepContext, profile):
    version = version_of(ctx)
    vdir = version_dir(ctx, version)
    data = _data(ctx)
    base = ml_state(ctx).get(f"base:{ctx.cycle}") or _base_ref(ctx, profile)
    init = _warm_start_adapter(ctx, profile)
    if init:
        profile = profile.with_overrides(epochs=profile.warm_start_epochs,
                                         learning_rate=profile.learning_rate * profile.warm_start_lr_scale)
    return TrainSpec(
        base=base, profile=profile.to_dict(), train_rows=data["train"], validation_rows=data["validation"],
        system_prompt=_system_prompt(ctx), output_dir=str(vdir / "checkpoints"), adapter_dir=str(vdir / "adapter"),
        version=version, seed=ctx.config.data.seed, init_adapter=init,
        extra=_tracking(ctx, version, vdir),
    )


def _tracking(ctx: StepContext, version: str, vdir: Path) -> dict[str, Any]:
    """``[train] report_to`` for trl (validated with the config), the run named workspace/version, and
    TensorBoard's event files in the version's folder (``models/vN/tensorboard``)."""


    report_to = report_to_list(ctx.config.train.report_to)
    if not report_to:
        return {}
    label = ctx.config.workspace.name
    name = ctx.workspace.root.name if label in ("", "bpllm") else label  # the default label names nothing
    return {"report_to": report_to, "run_name": f"{name}/{version}", "logging_dir": str(vdir / "tensorboard")}


def configure_trainer(ctx: StepContext) -> dict[str, Any]:
    profile = resolve_profile(ctx)
    spec = _spec(ctx, profile)
    if profile.launcher == "accelerate":
        return {"launcher": "accelerate", "num_processes": profile.num_processes}

    trainer, callback = build_trainer(spec, step_hooks(ctx), ctx.cache["ml.model"], ctx.cache["ml.tokenizer"])
    ctx.cache["ml.trainer"] = (trainer, callback, json.dumps(profile.to_dict(), sort_keys=True))
    args = trainer.args
    return {"epochs": args.num_train_epochs, "batch_size": args.per_device_train_batch_size,
            "grad_accum": args.gradient_accumulation_steps, "lr": args.learning_rate, "max_length": args.max_length,
            "bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing, "packing": args.packing,
            "padding_free": bool(getattr(args, "padding_free", False)), "liger": bool(args.use_liger_kernel)}


# ---------------------------------------------------------------------------- 4.x
def initialize_training(ctx: StepContext) -> dict[str, Any]:
    version = version_of(ctx)
    vdir = version_dir(ctx, version)
    (vdir / "checkpoints").mkdir(parents=True, exist_ok=True)

    ckpt = last_checkpoint(vdir / "checkpoints")
    return {"version": version, "path": str(vdir), "resume_from": ckpt}


def training_loop(ctx: StepContext) -> dict[str, Any]:
    profile = resolve_profile(ctx)
    ctx.phase("training")
    spec = _spec(ctx, profile)
    spec.resume_from = ctx.step_state.get("checkpoint") or last_checkpoint(spec.output_dir)
    if spec.resume_from and not Path(spec.resume_from).exists():
        spec.resume_from = last_checkpoint(spec.output_dir)
    if spec.resume_from:
        ctx.log(f"resuming training from {spec.resume_from}")
    try:
        if profile.launcher == "accelerate":
            summary = run_accelerate(ctx, spec, profile)
        else:
            cached = ctx.cache.get("ml.trainer")
            key = json.dumps(profile.to_dict(), sort_keys=True)
            if cached is None or cached[2] != key:  # settings changed (OOM retry halved batch/seq/rank)
                for rebuild in REBUILD_TRAINER:  # steps 3.4-3.6 again, with the new settings
                    rebuild(ctx)
                cached = ctx.cache["ml.trainer"]
            trainer, callback = cached[0], cached[1]
            summary = train_adapter(spec, step_hooks(ctx), trainer, callback)
    except TrainingStopped as stop:
        ctx.step_state["checkpoint"] = stop.checkpoint
        ctx.save_state()
        ctx.cache.pop("ml.trainer", None)
        ctx.check_stop()
        raise RuntimeError("training stopped without a stop request")  # pragma: no cover
    ctx.step_state.pop("checkpoint", None)
    ml_state(ctx)[f"train:{ctx.cycle}"] = summary
    ctx.save_state()
    _release_training(ctx, profile, spec.version)
    return {k: summary.get(k) for k in ("version", "global_step", "first_loss", "final_loss", "eval_loss",
                                        "seconds", "tokens_per_s", "peak_memory_bytes", "resumed_from")}


def _release_training(ctx: StepContext, profile, version: str) -> None:
    """Free the trainer. A big base is kept (with its adapter) for the exam instead of loading a second copy;
    the tiny one is reloaded and merged, which makes generation faster."""
    import gc

    cached = ctx.cache.pop("ml.trainer", None)
    model = ctx.cache.pop("ml.model", None)
    tokenizer = ctx.cache.get("ml.tokenizer")
    if cached is not None and not profile.is_tiny and model is not None:
        model.eval()
        ctx.cache[f"ml.exam_model:{version}"] = (model, tokenizer)
    del cached, model
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


# what an OOM retry of 4.3 re-runs in-process when the settings changed (steps 3.4, 3.5, 3.6)
REBUILD_TRAINER = (load_base_model, attach_adapter, configure_trainer)


def save_weights(ctx: StepContext) -> dict[str, Any]:
    adapter = version_dir(ctx) / "adapter"
    files = {p.name: p.stat().st_size for p in adapter.glob("*") if p.is_file()} if adapter.is_dir() else {}
    if "adapter_config.json" not in files:
        raise CorruptCheckpoint(f"{adapter} has no adapter_config.json", hint="re-run step 4.3 (`bpllm run --from 4.3`)")
    ctx.artifact("adapter", adapter, f"LoRA adapter {version_of(ctx)}", version=version_of(ctx))
    return {"path": str(adapter), "files": len(files), "bytes": sum(files.values())}


def save_training_config(ctx: StepContext) -> dict[str, Any]:
    profile = resolve_profile(ctx)
    version = version_of(ctx)
    summary = ml_state(ctx).get(f"train:{ctx.cycle}") or _read_train_result(ctx, version)
    data_hash = ctx.state.get("data_hash")
    base = ml_state(ctx).get(f"base:{ctx.cycle}") or profile.base
    config = {"version": version, "profile": profile.to_dict(), "base": base, "data_hash": data_hash,
              "metrics": summary, "run_id": ctx.run_id, "cycle": ctx.cycle, "created": time.time()}
    path = version_dir(ctx, version) / "training_config.json"
    atomic_write_json(path, config)
    ctx.history.add_version(version, run_id=ctx.run_id, cycle=ctx.cycle, profile=profile.name,
                            path=str(version_dir(ctx, version) / "adapter"), base=base, data_hash=data_hash,
                            metrics=summary)
    ctx.emit("version", version=version, path=str(version_dir(ctx, version) / "adapter"), profile=profile.name,
             data_hash=data_hash, metrics=summary, base=base)
    return {"path": str(path), "version": version}


def _read_train_result(ctx: StepContext, version: str) -> dict[str, Any]:
    p = version_dir(ctx, version) / "adapter" / TRAIN_RESULT
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}


def save_system_prompt(ctx: StepContext) -> dict[str, Any]:
    path = version_dir(ctx) / "system_prompt.txt"
    path.write_text(_system_prompt(ctx) + "\n", encoding="utf-8")
    return {"path": str(path)}


# ---------------------------------------------------------------------------- 5.x
def _exam_model(ctx: StepContext, version: str):
    """Base + this version's adapter, for generation (merged on the tiny profile)."""
    key = f"ml.exam_model:{version}"
    if key in ctx.cache:
        return ctx.cache[key]
    profile = resolve_profile(ctx)
    from peft import PeftModel

    base = ml_state(ctx).get(f"base:{ctx.cycle}") or _base_ref(ctx, profile)
    model, tokenizer = load_model_for_training(base, profile.with_overrides(gradient_checkpointing=False),
                                               _gpu_roles(ctx))
    model = PeftModel.from_pretrained(model, str(version_dir(ctx, version) / "adapter"))
    if not (profile.load_in_8bit or profile.load_in_4bit):
        model = model.merge_and_unload()  # plain weights: no LoRA matmuls per generated token
    model.eval()
    for k in [k for k in ctx.cache if k.startswith("ml.exam_model:")]:
        ctx.cache.pop(k)
    ctx.cache[key] = (model, tokenizer)
    return model, tokenizer


def _gen_config(ctx: StepContext, **changes: Any):
    profile = resolve_profile(ctx)
    exam = ctx.config.exam  # an unset key: the profile's value
    values = dict(
        max_new_tokens=profile.exam_max_new_tokens if exam.max_new_tokens is None else exam.max_new_tokens,
        batch_size=profile.exam_batch_size if exam.batch_size is None else exam.batch_size,
        constrained=profile.constrained if exam.constrained is None else exam.constrained,
        time_budget_s=profile.exam_time_budget_s if exam.time_budget_s is None else exam.time_budget_s,
        constraint=exam.constraint,
    )
    values.update(changes)
    return GenConfig(**values)


# diagnostic codes that mean "does not parse" (dsl.parser's; a pack's own parser uses "syntax" too)
SYNTAX_CODES = frozenset({"syntax", "unknown-directive", "trailing-junk", "unterminated-string", "incomplete",
                          "missing-colon"})


def verify_output(ctx: StepContext) -> dict[str, Any]:
    version = version_of(ctx)
    if not (version_dir(ctx, version) / "adapter" / "adapter_config.json").exists():
        ctx.skip(f"no trained adapter for {version} to verify (run step 4 first)")
    model, tokenizer = _exam_model(ctx, version)
    rows = (_data(ctx)["validation"] or _data(ctx)["train"])[:2]
    prompts = [render_example(tokenizer, _system_prompt(ctx), r["instruction"]) for r in rows]
    results = generate(model, tokenizer, prompts, _gen_config(ctx, batch_size=2))
    pack = ctx.workspace.pack
    parsed = sum(1 for r in results if r.text.strip()
                 and not any(d.code in SYNTAX_CODES for d in pack.validate(r.text)))
    return {"prompts": len(results), "parsed": parsed, "tokens": sum(r.n_tokens for r in results),
            "sample": results[0].text[:300] if results else ""}


def _events(ctx: StepContext, types: tuple[str, ...]) -> list[dict[str, Any]]:
    """This run's events of ``types``; unreadable lines (not UTF-8, not JSON, off the schema) are skipped
    and reported in one warning naming file and line."""
    batch = read_events(ctx.run_dir)
    skipped = describe_skipped(batch.malformed)
    if skipped:
        ctx.log(skipped, level="warning")
    return [ev for ev in batch.events if ev.get("type") in types]


def _train_events(ctx: StepContext, version: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    evs = [e for e in _events(ctx, ("train", "eval")) if e.get("version") == version]
    return [e for e in evs if e["type"] == "train"], [e for e in evs if e["type"] == "eval"]


def training_summary(ctx: StepContext) -> dict[str, Any]:
    version = version_of(ctx)
    train, evals = _train_events(ctx, version)
    summary = ml_state(ctx).get(f"train:{ctx.cycle}") or _read_train_result(ctx, version)
    losses = [e["loss"] for e in train if e.get("loss") is not None]
    out = {"version": version, "logs": len(train), "first_loss": losses[0] if losses else summary.get("first_loss"),
           "final_loss": losses[-1] if losses else summary.get("final_loss"),
           "eval_loss": evals[-1]["eval_loss"] if evals else summary.get("eval_loss"),
           "steps": summary.get("global_step"), "seconds": summary.get("seconds")}
    if out["first_loss"] is not None and out["final_loss"] is not None:
        ctx.log(f"{version}: loss {out['first_loss']:.3f} -> {out['final_loss']:.3f}"
                + (f", eval {out['eval_loss']:.3f}" if out["eval_loss"] is not None else ""))
    return out


def _emit_alerts(ctx: StepContext, alerts: list[dict[str, Any]], version: str,
                 join_report: bool = False) -> list[dict[str, Any]]:
    """Emit ``alerts`` as health events; ``join_report``: alerts raised after 5.4 (the exam's) also join
    the version's ``health_report.json``."""
    for a in alerts:
        a["count"] = ctx.health(a["check"], a["severity"], a["message"], key=a["key"], value=a["value"],
                                threshold=a["threshold"], scope=version, version=version)
    if alerts and join_report:
        _write_health_report(ctx, version, alerts)
    return alerts


def health_checks(ctx: StepContext) -> dict[str, Any]:
    version = version_of(ctx)
    train, evals = _train_events(ctx, version)
    alerts = training_alerts(train, evals) + data_alerts(_data(ctx)["train"], epochs=resolve_profile(ctx).epochs)
    _emit_alerts(ctx, alerts, version)
    if not alerts:
        ctx.health("training", "info", f"{version}: no health alerts", version=version)
    ml_state(ctx)[f"health:{ctx.cycle}"] = alerts
    return {"alerts": len(alerts), "checks": sorted({a["check"] for a in alerts})}


def health_report(ctx: StepContext) -> dict[str, Any]:
    version = version_of(ctx)
    alerts = ml_state(ctx).get(f"health:{ctx.cycle}", [])
    path = _write_health_report(ctx, version, alerts, replace=True)
    ctx.artifact("report", path, f"health report {version}", version=version)
    return {"path": str(path), "alerts": len(alerts)}


def _write_health_report(ctx: StepContext, version: str, alerts: list[dict[str, Any]], replace: bool = False) -> Path:
    """The version's health report: 5.4 writes the training alerts; the exam's alerts (node regression,
    stagnation: steps 7.3 / 7.4) join it by key, so the one file holds every alert of the version."""
    path = version_dir(ctx, version) / "health_report.json"
    previous = None if replace else read_json(path)
    atomic_write_json(path, health_report_doc(version, alerts, previous))
    return path


def update_training_history(ctx: StepContext) -> dict[str, Any]:
    path = ctx.workspace.models / "training_history.json"
    history = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    version = version_of(ctx)
    summary = ml_state(ctx).get(f"train:{ctx.cycle}") or _read_train_result(ctx, version)
    history = [h for h in history if h.get("version") != version] + [
        {"version": version, "run_id": ctx.run_id, "cycle": ctx.cycle, "profile": resolve_profile(ctx).name,
         "data_hash": ctx.state.get("data_hash"), **{k: summary.get(k) for k in
                                                     ("global_step", "first_loss", "final_loss", "eval_loss",
                                                      "seconds", "tokens", "train_rows")}}]
    atomic_write_json(path, history)
    return {"path": str(path), "versions": len(history)}


def archive_logs(ctx: StepContext) -> dict[str, Any]:
    src = ctx.run_dir / "events.jsonl"
    dst = version_dir(ctx) / "logs" / f"{ctx.run_id}.events.jsonl"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.exists():
        tmp = dst.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    return {"path": str(dst)}


# ---------------------------------------------------------------------------- 6.x
def load_exam_lessons(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    lessons = [l for l in load_lessons(ws.lesson_files()) if l.get("status") != "draft"]
    if not lessons:
        ctx.skip(f"no lessons in {ws.lessons}")
    try:
        seen = seen_map(ws)
    except Exception as exc:  # noqa: BLE001 - leakage is a report; the exam still runs without it
        ctx.log(f"leakage check unavailable ({type(exc).__name__}: {exc}); seen/unseen left unknown", level="warning")
        seen = {}
    prompts = exam_prompts(lessons, seen)
    ctx.cache[_ck(ctx, "ml.exam_prompts")] = prompts
    return {"lessons": len(lessons), "prompts": len(prompts),
            "seen": sum(1 for p in prompts if p.seen), "unseen": sum(1 for p in prompts if p.seen is False)}


def _exam_version(ctx: StepContext) -> str:
    version = latest_adapter_version(ctx)
    if version is None:
        ctx.skip("no trained adapter to examine (run step 4 first)")
    ml_state(ctx)[f"exam_version:{ctx.cycle}"] = version
    return version


def exam_dir(ctx: StepContext, version: str) -> Path:
    return version_dir(ctx, version) / "exams"


def load_exam_model(ctx: StepContext) -> dict[str, Any]:
    ctx.phase("loading")
    version = _exam_version(ctx)
    model, tokenizer = _exam_model(ctx, version)
    return {"version": version, "constrained": _gen_config(ctx).constrained}


def run_prompts(ctx: StepContext) -> dict[str, Any]:
    version = _exam_version(ctx)
    model, tokenizer = _exam_model(ctx, version)
    prompts = ctx.cache.get(_ck(ctx, "ml.exam_prompts")) or []
    ctx.phase("exam")
    ctx.progress(0, len(prompts), "examining", unit="prompt", force=True)

    def on_record(rec: dict[str, Any], n: int, total: int) -> None:
        ctx.emit("exam_item", lesson_id=rec["lesson_id"], prompt_id=rec["prompt_id"], n=n, total=total,
                 score=rec["comparison"]["score"], valid=rec["validation"]["valid"], seen=rec.get("seen"),
                 time_s=rec["time_seconds"], status=rec["status"], version=version, category=rec.get("category"),
                 errors=rec["validation"]["errors"], path=str(exam_dir(ctx, version) / f"exam_{rec['lesson_id']}.jsonl"))
        ctx.progress(n, total, f"{rec['lesson_id']} {rec['prompt_id']}", unit="prompt")

    outcome = run_exam(model, tokenizer, _system_prompt(ctx), prompts, exam_dir(ctx, version), version,
                       _gen_config(ctx), unknown_nodes=ctx.config.dsl.unknown_nodes, pack=ctx.workspace.pack,
                       on_record=on_record, should_stop=lambda: ctx.stop_requested)
    if outcome.stopped:
        ctx.check_stop()
    ml_state(ctx)[f"exam:{ctx.cycle}"] = {"version": version, "paths": outcome.paths}
    recs = outcome.records
    n = max(1, len(recs))
    return {"version": version, "prompts": len(recs), "seconds": round(outcome.seconds, 2),
            "avg_score": round(sum(r["comparison"]["score"] for r in recs) / n, 2),
            "parse_pct": round(100 * sum(1 for r in recs if r["validation"]["parses"]) / n, 1)}


def _exam_records(ctx: StepContext, version: str | None = None) -> list[dict[str, Any]]:
    version = version or ml_state(ctx).get(f"exam_version:{ctx.cycle}") or latest_adapter_version(ctx)
    return version_records(exam_dir(ctx, version)) if version else []


def validate_responses(ctx: StepContext) -> dict[str, Any]:
    recs = _exam_records(ctx)
    n = max(1, len(recs))
    stats = {"records": len(recs),
             "parse_pct": round(100 * sum(1 for r in recs if r["validation"]["parses"]) / n, 1),
             "valid_pct": round(100 * sum(1 for r in recs if r["validation"]["valid"]) / n, 1),
             "syntax_errors": sum(r["validation"]["syntax_errors"] for r in recs),
             "semantic_errors": sum(r["validation"]["errors"] for r in recs),
             "stops": {}}
    for r in recs:
        stats["stops"][r.get("stop_reason", "?")] = stats["stops"].get(r.get("stop_reason", "?"), 0) + 1
    return stats


def compare_and_score(ctx: StepContext) -> dict[str, Any]:
    version = ml_state(ctx).get(f"exam_version:{ctx.cycle}") or latest_adapter_version(ctx)
    recs = _exam_records(ctx, version)
    by_lesson: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_lesson.setdefault(r["lesson_id"], []).append(r)
    out = {}
    for lesson_id, rs in by_lesson.items():
        s = summarize(lesson_id, rs, version)
        path = id_path(exam_dir(ctx, version), lesson_id, what="lesson_id", prefix="exam_", suffix="_summary.json")
        atomic_write_json(path, s)
        ctx.emit("exam_summary", lesson_id=lesson_id, version=version, n=s["n"], avg_score=s.get("avg_score"),
                 valid_pct=s.get("valid_pct"), seen=s["seen"], unseen=s["unseen"], path=str(path))
        out[lesson_id] = s.get("avg_score")
    return {"version": version, "lessons": out}


def save_exam_results(ctx: StepContext) -> dict[str, Any]:
    version = ml_state(ctx).get(f"exam_version:{ctx.cycle}") or latest_adapter_version(ctx)
    recs = _exam_records(ctx, version)
    rows = [{**r, "score": r["comparison"]["score"], "valid": r["validation"]["valid"],
             "time_s": r.get("time_seconds")} for r in recs]
    ctx.history.add_exam_results(version, ctx.run_id, rows)
    for path in sorted(exam_dir(ctx, version).glob("exam_*.jsonl")):
        ctx.artifact("exam", path, f"exam {path.stem} ({version})", version=version)
    out: dict[str, Any] = {"version": version, "records": len(rows)}
    previews = _render_previews(ctx, version) if rows else None
    if previews is not None:
        out["previews"] = previews
    return out


def _render_previews(ctx: StepContext, version: str) -> dict[str, Any] | None:
    """Pictures of each record's expected and actual answer for the exam review, when the workspace's pack
    can make them here (Blender materials with bpy installed: ``bpllm render-exam``), in a child process so
    the pack's tool never shares this one with torch. A failure is a warning: the exam results stand."""
    args = ctx.workspace.pack.exam_preview_args(str(ctx.workspace.root), version)
    if not args:
        return None
    try:
        proc = run_engine(*args, cwd=ctx.workspace.root, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        ctx.log(f"exam previews not rendered: {exc}", level="warning")
        return {"error": str(exc)}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        ctx.log(f"exam previews not rendered: {tail}", level="warning")
        return {"error": tail}
    try:
        counts = json.loads(proc.stdout)
    except ValueError:
        return {"error": f"{args[0]} printed no JSON"}
    ctx.log(f"exam previews: rendered {counts.get('rendered')}, cached {counts.get('cached')}, "
            f"no image {counts.get('failed')}")
    return {k: counts.get(k) for k in ("rendered", "cached", "failed")}


# ---------------------------------------------------------------------------- 7.x
def _previous_version(ctx: StepContext, version: str) -> str | None:
    examined = [row["version"] for row in ctx.history.query(
        "SELECT version, MIN(created_at) AS t FROM exam_results GROUP BY version ORDER BY t")]
    earlier = [v for v in examined if v != version]
    if version in examined:
        earlier = examined[: examined.index(version)]
    return earlier[-1] if earlier else None


def load_exam_results(ctx: StepContext) -> dict[str, Any]:
    version = ml_state(ctx).get(f"exam_version:{ctx.cycle}") or latest_adapter_version(ctx)
    if version is None:
        ctx.skip("no exam results to grade")
    recs = _exam_records(ctx, version)
    if not recs:
        ctx.skip(f"no exam records for {version}")
    ctx.cache[_ck(ctx, "ml.grade_records")] = (version, recs)
    return {"version": version, "records": len(recs), "previous_version": _previous_version(ctx, version)}


def _grade_records(ctx: StepContext) -> tuple[str, list[dict[str, Any]]]:
    if _ck(ctx, "ml.grade_records") not in ctx.cache:
        load_exam_results(ctx)
    return ctx.cache[_ck(ctx, "ml.grade_records")]


def classify_errors(ctx: StepContext) -> dict[str, Any]:
    version, recs = _grade_records(ctx)
    tax = classify(recs)
    ctx.cache[_ck(ctx, "ml.taxonomy")] = tax
    return {"version": version, "totals": tax["totals"], "perfect": tax["perfect"], "extra_lines": tax["extra_lines"]}


def score_mastery(ctx: StepContext) -> dict[str, Any]:
    version, recs = _grade_records(ctx)
    prev = _previous_version(ctx, version)
    previous = {m["node"]: m["score"] for m in ctx.history.mastery(prev)} if prev else {}
    table = node_mastery(recs, previous, catalog=ctx.workspace.pack)
    ctx.history.set_mastery(version, table)
    grading = ctx.config.grading
    k = grading.weakest
    # prefer node types seen in several prompts (one prompt is a noisy verdict); fall back when few are
    weakest = weakest_nodes(table, k=k, min_n=grading.min_prompts)
    if len(weakest) < k:
        weakest += [n for n in weakest_nodes(table, k=k) if n not in weakest][: k - len(weakest)]
    ctx.emit("mastery", nodes=table, version=version, previous_version=prev, weakest=weakest)
    paired = paired_node_changes(_exam_records(ctx, prev), recs, ctx.workspace.pack) if prev else None
    _emit_alerts(ctx, mastery_alerts(table, paired, _mastered_before(ctx, version)), version, join_report=True)
    ctx.cache[_ck(ctx, "ml.mastery")] = (table, weakest, prev)
    bands: dict[str, int] = {}
    for row in table:
        bands[row["band"]] = bands.get(row["band"], 0) + 1
    return {"version": version, "nodes": len(table), "bands": bands, "weakest": weakest, "previous_version": prev}


def _mastered_before(ctx: StepContext, version: str) -> dict[str, str]:
    """Node -> the last version examined before ``version`` that mastered it (for the forgetting rule)."""
    examined = [row["version"] for row in ctx.history.query(
        "SELECT version, MIN(created_at) AS t FROM exam_results GROUP BY version ORDER BY t")]
    earlier = examined[: examined.index(version)] if version in examined else examined
    out: dict[str, str] = {}
    for v in earlier:
        for m in ctx.history.mastery(v):
            if m["score"] is not None and m["score"] >= MASTERED:
                out[m["node"]] = v
    return out


def grading_report(ctx: StepContext) -> dict[str, Any]:
    version, recs = _grade_records(ctx)
    if _ck(ctx, "ml.mastery") not in ctx.cache:
        score_mastery(ctx)
    if _ck(ctx, "ml.taxonomy") not in ctx.cache:
        classify_errors(ctx)
    table, weakest, prev = ctx.cache[_ck(ctx, "ml.mastery")]
    rep = report(recs, table, ctx.cache[_ck(ctx, "ml.taxonomy")], version, prev)
    rep["weakest"] = weakest
    path = version_dir(ctx, version) / "grading_report.json"
    atomic_write_json(path, rep)
    ctx.artifact("report", path, f"grading report {version}", version=version)
    averages = [(row["version"], row["avg"]) for row in ctx.history.query(
        "SELECT version, AVG(score) AS avg, MIN(created_at) AS t FROM exam_results GROUP BY version ORDER BY t")]
    _emit_alerts(ctx, stagnation_alerts(averages), version, join_report=True)
    return {"path": str(path), "avg_score": rep["avg_score"], "parse_pct": rep["parse_pct"],
            "valid_pct": rep["valid_pct"], "bands": rep["bands"]}


def draft_next_lesson(ctx: StepContext) -> dict[str, Any]:
    version, recs = _grade_records(ctx)
    if _ck(ctx, "ml.mastery") not in ctx.cache:
        score_mastery(ctx)
    table, weakest, _prev = ctx.cache[_ck(ctx, "ml.mastery")]
    if not weakest:
        ctx.skip("every examined node type is mastered: no drill needed")
    grading = ctx.config.grading
    ws = ctx.workspace
    existing = ml_state(ctx).get(f"draft:{ctx.cycle}")
    if existing and Path(existing).exists():
        return {"path": existing, "reused": True}
    lesson_id = next_draft_id(ws.lessons, ws.drafts)
    share = grading.contrast_share
    contrast = contrast_nodes(weakest, confusions(recs, ws.pack), ws.pack, per_node=grading.contrast_per_node,
                              limit=grading.contrast_nodes, min_swaps=grading.contrast_min_swaps) \
        if share > 0 else []
    lesson = draft_lesson(weakest, lesson_id, n_prompts=grading.draft_prompts,
                          seed=grading.seed + ctx.cycle, version=version, mastery=table,
                          contrast=contrast, contrast_share=share, catalog=ws.pack)
    auto = grading.auto_accept
    if auto:
        lesson["status"] = "accepted"
    path = id_path(ws.lessons if auto else ws.drafts, lesson_id, what="lesson_id", suffix=".json")
    atomic_write_json(path, lesson)
    ml_state(ctx)[f"draft:{ctx.cycle}"] = str(path)
    ctx.artifact("lesson_draft", path, f"drafted lesson {lesson_id} for {', '.join(weakest)}", version=version,
                 lesson_id=lesson_id)
    return {"path": str(path), "lesson_id": lesson_id, "focus": weakest, "contrast": lesson["contrast_nodes"],
            "prompts": len(lesson["prompts"]),
            "accepted": auto}
