"""LoRA training (step 4): trl's SFTTrainer + peft, one code path for every profile.

``train_adapter(spec, hooks)`` runs in-process or inside an ``accelerate launch``
worker (``python -m engine.ml.worker``): the spec is plain JSON, and the hooks —
emit an event, report progress, ask whether to stop — are the only link back to
the runtime. The trainer callback turns log lines into ``train``/``eval`` events,
saves a checkpoint and ends training at the first step end after a stop request,
and announces each checkpoint so a resume continues from the last one.
"""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dsl.errors import StopRequested
from engine.runtime.failures import CorruptCheckpoint

from .base import load_base, quiet_transformers
from .placement import place_for
from .profiles import Profile

TRAIN_RESULT = "train_result.json"
# test-only knob: seconds to linger at each step end, so a stop test can land mid-training on a fast machine
_TEST_STEP_S = float(os.environ.get("BPLLM_TEST_TRAIN_STEP_S", "0") or 0)


@dataclass
class Hooks:
    """How training talks to its caller (the step, a worker's side channel, a benchmark)."""

    emit: Callable[..., Any] = lambda type, **payload: None
    progress: Callable[[int, int | None, str | None], Any] = lambda n, total, message=None: None
    should_stop: Callable[[], bool] = lambda: False


@dataclass
class TrainSpec:
    """Everything one training run needs, JSON-serialisable (it crosses process boundaries)."""

    base: str  # a base directory (tiny) or a local path / hub id
    profile: dict[str, Any]
    train_rows: list[dict[str, Any]]
    validation_rows: list[dict[str, Any]]
    system_prompt: str
    output_dir: str  # checkpoints
    adapter_dir: str  # final adapter (standard PEFT layout)
    version: str = "v1"
    resume_from: str | None = None
    init_adapter: str | None = None  # warm start: continue training this adapter
    seed: int = 42
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "TrainSpec":
        return cls(**json.loads(text))


class TrainingStopped(StopRequested):
    """Training ended early on a stop request; a checkpoint was saved (``checkpoint``)."""

    def __init__(self, checkpoint: str | None):
        super().__init__(f"stopped; checkpoint {checkpoint}")
        self.checkpoint = checkpoint


def to_conversation(row: dict[str, Any], system: str) -> dict[str, Any]:
    """A dataset row as a conversational prompt/completion pair (trl masks the prompt out of the loss)."""
    instruction = row.get("instruction", "")
    if row.get("input"):
        instruction = f"{instruction}\n\n{row['input']}"
    return {
        "prompt": [{"role": "system", "content": system}, {"role": "user", "content": instruction}],
        "completion": [{"role": "assistant", "content": row["output"]}],
    }


def device_info() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": "cuda" if cuda else "cpu",
        "gpus": torch.cuda.device_count() if cuda else 0,
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "threads": torch.get_num_threads(),
    }


def load_model_for_training(base: str, profile: Profile, roles: dict[str, str] | None = None):
    """Base model + tokenizer where engine.ml.placement puts it (the GPU in the profile's dtype, 8-bit/4-bit
    when the profile says so, then prepared for k-bit training); CPU and fp32 without a GPU."""
    placement = place_for(profile, base, roles)  # roles: the run's [telemetry] roles (None: the workspace's)
    model, tokenizer = load_base(base, placement=placement)
    model.bpllm_placement = placement
    if placement.quantization:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(profile.gradient_checkpointing and placement.on_cuda)
        )
    return model, tokenizer


def attach_lora(model, profile: Profile, init_adapter: str | None = None, seed: int = 42):
    """A fresh LoRA from the profile, or (warm start) the given adapter, trainable."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(seed)  # LoRA's A matrices: the same run twice trains the same adapter
    if init_adapter:
        return PeftModel.from_pretrained(model, init_adapter, is_trainable=True)

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in profile.target_modules if t in names] or "all-linear"
    config = LoraConfig(
        r=profile.lora_r,
        lora_alpha=profile.lora_alpha,
        lora_dropout=profile.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def liger_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


def micro_batch(cfg, seq_len: int, free_bytes: int, effective: int, dtype_bytes: int = 2,
                gradient_checkpointing: bool = True, cap: int = 64) -> int:
    """Rows per micro-batch that fit ``free_bytes`` (pure), as a divisor of the ``effective`` batch so that
    batch x grad_accum stays what the profile says. Per token: the float32 logits and their gradient,
    the layers' saved inputs (all of them with gradient checkpointing, one layer's full activations
    on top), 70 % of the free memory spent."""
    h = int(cfg.hidden_size)
    layers = int(getattr(cfg, "num_hidden_layers", 1))
    inter = int(getattr(cfg, "intermediate_size", 4 * h))
    vocab = int(getattr(cfg, "vocab_size", 32000))
    layer_act = (16 * h + 6 * inter) * dtype_bytes
    per_token = vocab * 4 * 3 + (layers * h * dtype_bytes * 2 + layer_act if gradient_checkpointing
                                 else layers * layer_act)
    rows = int(0.7 * free_bytes // max(1, per_token * seq_len))
    rows = max(1, min(rows, cap, effective))
    return max(d for d in range(1, rows + 1) if effective % d == 0)


def sft_config(spec: TrainSpec, profile: Profile, n_train: int, callbacks_on: bool = True, model=None):
    from trl import SFTConfig

    info = device_info()
    placement = getattr(model, "bpllm_placement", None)
    # a placement that kept every card free (roles) trains on the CPU: the Trainer must not move it to cuda:0
    on_gpu = info["device"] == "cuda" and (placement is None or placement.on_cuda)
    if not on_gpu:
        info = {**info, "bf16": False}
    kwargs: dict[str, Any] = dict(
        output_dir=spec.output_dir,
        num_train_epochs=profile.epochs,
        max_steps=profile.max_steps if profile.max_steps and profile.max_steps > 0 else -1,
        per_device_train_batch_size=profile.batch_size,
        per_device_eval_batch_size=max(1, profile.batch_size),
        gradient_accumulation_steps=profile.grad_accum,
        learning_rate=profile.learning_rate,
        warmup_steps=0,
        weight_decay=profile.weight_decay,
        lr_scheduler_type="cosine",
        logging_steps=profile.logging_steps,
        save_strategy="steps",
        save_steps=profile.save_steps,
        save_total_limit=profile.save_total_limit,
        eval_strategy="steps" if profile.eval_steps else "epoch",
        report_to=list(spec.extra.get("report_to") or []) or "none",  # [train] report_to, checked with the config
        run_name=spec.extra.get("run_name"),
        disable_tqdm=True,
        seed=spec.seed,
        data_seed=spec.seed,
        max_length=profile.max_seq_len,
        packing=False,
        completion_only_loss=True,
        # trl 1.16 turns both on by default; on a CPU they are slow or unsupported
        bf16=bool(profile.bf16 and info["bf16"]),
        gradient_checkpointing=bool(profile.gradient_checkpointing and on_gpu),
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        dataset_num_proc=None,
        save_only_model=False,
    )
    if profile.eval_steps:
        kwargs["eval_steps"] = profile.eval_steps
    if on_gpu:
        kwargs.update(gpu_training_kwargs(profile, model))
    import warnings
    steps_per_epoch = max(1, -(-n_train // (profile.batch_size * profile.grad_accum)))
    kwargs["warmup_steps"] = profile.warmup_steps or int(profile.warmup_ratio * steps_per_epoch * max(1.0, profile.epochs))
    kwargs["max_grad_norm"] = profile.max_grad_norm
    with warnings.catch_warnings():  # transformers 5 renames gradient_checkpointing; trl still takes it
        warnings.simplefilter("ignore", FutureWarning)
        return SFTConfig(**kwargs)


def gpu_training_kwargs(profile: Profile, model=None) -> dict[str, Any]:
    """SFTConfig settings for a CUDA run: TF32, padding-free batches, liger, a micro-batch from free memory."""
    import torch

    out: dict[str, Any] = {}
    major = torch.cuda.get_device_capability()[0]
    if major >= 8:
        out["tf32"] = True  # fp32 matmuls left (LoRA in fp32, norms) on tensor cores
    attn = str(getattr(getattr(model, "config", None), "_attn_implementation", "") or "")
    # transformers builds a block-diagonal mask from position_ids for sdpa/eager, flash uses varlen kernels
    if profile.padding_free and attn in ("sdpa", "eager", "flash_attention_2", "flash_attention_3"):
        out["padding_free"] = True
    if profile.liger_kernel and liger_available():
        out["use_liger_kernel"] = True
    if profile.auto_micro_batch and model is not None and hasattr(model, "config"):
        free = int(torch.cuda.mem_get_info()[0])
        effective = profile.batch_size * profile.grad_accum
        dtype_bytes = 2 if profile.bf16 else 4
        rows = micro_batch(model.config, profile.max_seq_len, free, effective, dtype_bytes,
                           bool(profile.gradient_checkpointing))
        out["per_device_train_batch_size"] = rows
        out["per_device_eval_batch_size"] = rows
        out["gradient_accumulation_steps"] = effective // rows
    return out


def peak_memory() -> dict[str, Any]:
    """The run's peak memory: CUDA's allocator peak on a GPU (no device sync), the process's max RSS on a CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated()), "memory_device": "cuda"}
    try:
        import resource

        return {"peak_memory_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
                "memory_device": "cpu"}
    except (ImportError, OSError):  # pragma: no cover - not on Linux
        return {}


def make_callback(hooks: Hooks, version: str):
    """The engine's TrainerCallback: events, heartbeat, stop at step ends."""
    from transformers import TrainerCallback

    class EngineCallback(TrainerCallback):
        def __init__(self):
            self.stopped = False
            self.last_checkpoint: str | None = None
            self._t0 = time.perf_counter()
            self._tokens0 = 0
            self._last_t = self._t0

        def on_train_begin(self, args, state, control, **kw):
            self._t0 = self._last_t = time.perf_counter()
            self._tokens0 = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            if state.is_world_process_zero:
                hooks.progress(state.global_step, state.max_steps, "training")

        def on_step_end(self, args, state, control, **kw):
            if _TEST_STEP_S:
                time.sleep(_TEST_STEP_S)
            if state.is_world_process_zero:
                hooks.progress(state.global_step, state.max_steps, f"epoch {state.epoch:.2f}" if state.epoch else None)
            if _agree(hooks.should_stop()):
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs:
                return
            now = time.perf_counter()
            tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            elapsed = max(1e-9, now - self._t0)
            if "eval_loss" in logs:
                hooks.emit("eval", step=state.global_step, epoch=round(state.epoch or 0, 4),
                           eval_loss=float(logs["eval_loss"]), version=version,
                           metrics={k: v for k, v in logs.items() if isinstance(v, (int, float))})
            elif "loss" in logs:
                hooks.emit("train", step=state.global_step, max_steps=state.max_steps,
                           epoch=round(state.epoch or 0, 4), loss=float(logs["loss"]),
                           lr=float(logs.get("learning_rate", 0.0)),
                           grad_norm=float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
                           tokens_per_s=round((tokens - self._tokens0) / elapsed, 1) if tokens else None,
                           version=version, **peak_memory(),
                           **({"retain_kl": float(logs["retain_kl"])} if "retain_kl" in logs else {}))
            self._last_t = now

        def on_save(self, args, state, control, **kw):
            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            self.last_checkpoint = path
            if state.is_world_process_zero:
                hooks.emit("checkpoint", path=path, step=state.global_step, epoch=round(state.epoch or 0, 4),
                           kind="trainer", version=version)

    return EngineCallback()


def _agree(flag: bool) -> bool:
    """Every rank stops at the same step end (one rank stopping alone would hang the others)."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return flag
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        # a CPU tensor over a gloo group: agreeing must not wait for the GPU's queue (no device sync per step)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_cpu_group())
        return bool(t.item())
    return flag


@functools.cache
def _cpu_group():
    """A gloo process group beside the trainer's (NCCL on GPUs): the default group where it is gloo already."""
    import torch.distributed as dist

    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete ``checkpoint-N`` in ``output_dir`` (one with trainer_state.json)."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for p in out.glob("checkpoint-*"):
        try:
            n = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if (p / "trainer_state.json").exists() and (best is None or n > best[0]):
            best = (n, p)
    return str(best[1]) if best else None


def build_trainer(spec: TrainSpec, hooks: Hooks | None = None, model=None, tokenizer=None, with_callback: bool = True):
    """Model (+LoRA), datasets and SFTTrainer for ``spec``; returns (trainer, callback or None)."""
    import datasets
    from datasets import Dataset
    from trl import SFTTrainer

    datasets.disable_progress_bars()  # the step's progress events say it; bars would garble the console

    profile = Profile(**{**spec.profile, "target_modules": tuple(spec.profile.get("target_modules", ()))})
    if model is None or tokenizer is None:
        model, tokenizer = load_model_for_training(spec.base, profile)
    if not hasattr(model, "peft_config"):
        model = attach_lora(model, profile, spec.init_adapter, spec.seed)
    train_ds = Dataset.from_list([to_conversation(r, spec.system_prompt) for r in spec.train_rows])
    eval_ds = (Dataset.from_list([to_conversation(r, spec.system_prompt) for r in spec.validation_rows])
               if spec.validation_rows else None)
    args = sft_config(spec, profile, len(spec.train_rows), model=model)
    _pin_trainer_device(args, getattr(model, "bpllm_placement", None))
    if args.padding_free:
        model.config.use_cache = False  # a cache object in training would hide the packed rows from the mask
    if eval_ds is None:
        args.eval_strategy = "no"
    callback = make_callback(hooks or Hooks(), spec.version) if with_callback else None

    quiet_transformers()
    trainer_class, extra = SFTTrainer, {}
    if profile.retain_weight > 0 and spec.init_adapter:  # a previous version to keep: the warm start's
        trainer_class = retaining_trainer_class()
        extra = {"teacher": frozen_copy(model), "retain_weight": profile.retain_weight}
    trainer = trainer_class(
        **extra,
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[callback] if callback else None,
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for noisy in (PrinterCallback, ProgressCallback):  # events replace console dumps of the log dict
        trainer.remove_callback(noisy)
    _tensorboard_into(trainer, spec.extra.get("logging_dir"))
    return trainer, callback


def _tensorboard_into(trainer, logging_dir: str | None) -> None:
    """TensorBoard event files go to the version's folder (transformers 5 dropped ``logging_dir``: its
    callback writes under the checkpoints' output_dir unless told, and reads an environment variable
    otherwise, which would leak into every later run of the process)."""
    if not logging_dir:
        return
    for cb in trainer.callback_handler.callbacks:
        if type(cb).__name__ == "TensorBoardCallback" and getattr(cb, "tb_writer", None) is None:
            cb.logging_dir = str(logging_dir)


def _pin_trainer_device(args, placement) -> None:
    """Train on the card the placement chose, alone. transformers picks cuda:0 and, in one process with several
    GPUs visible, nn.DataParallel over all of them (which trl refuses, and which would use a display card)."""
    if placement is None or not placement.device.startswith("cuda:") or os.environ.get("WORLD_SIZE", "1") != "1":
        return
    import torch

    device = torch.device(placement.device)
    _ = args.device  # the library's own setup first (accelerate state), then the card is replaced
    args.__dict__["_setup_devices"] = device  # TrainingArguments.device is this cached property
    args._n_gpu = 1
    torch.cuda.set_device(device)


def frozen_copy(model):
    """The warm-start model as it is before training (the previous version), frozen: the teacher."""
    import copy

    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@functools.cache
def retaining_trainer_class():
    """SFTTrainer whose training loss adds ``retain_weight`` x KL(teacher || student) on the completion
    tokens the teacher (the previous version) already predicts right.

    Why: a lesson aimed at weak nodes moves weights every node shares, and the replayed rows' plain
    loss only pulls back their gold tokens, so other nodes drift (docs/ml.md "Two cycles"). Matching
    the previous version's whole distribution where it was right holds what it knew (learning without
    forgetting), while the tokens it got wrong, the drill's weak nodes among them, learn from the
    plain loss alone. Evaluation keeps the plain loss, so eval curves stay comparable across versions.
    """
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class RetainingSFTTrainer(SFTTrainer):
        def __init__(self, *args, teacher, retain_weight: float, **kwargs):
            super().__init__(*args, **kwargs)
            device = next(self.model.parameters()).device  # where the Trainer put the model
            if next(teacher.parameters()).device != device and not getattr(teacher, "is_quantized", False):
                teacher = teacher.to(device)  # quantized weights stay where they were loaded (and refuse .to)
            self.teacher = teacher
            self.retain_weight = float(retain_weight)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not model.training or return_outputs:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            labels = inputs["labels"]
            forward = {k: v for k, v in inputs.items() if k != "labels"}
            forward["use_cache"] = False
            logits = model(**forward).logits[:, :-1].float()
            with torch.no_grad():
                teacher_logp = F.log_softmax(self.teacher(**forward).logits[:, :-1].float(), dim=-1)
            target = labels[:, 1:]
            mask = target != -100
            logp = F.log_softmax(logits, dim=-1)
            gold = target.clamp(min=0).unsqueeze(-1)
            nll = -logp.gather(-1, gold).squeeze(-1)
            known = mask & (teacher_logp.argmax(-1) == target)
            kl = (teacher_logp.exp() * (teacher_logp - logp)).sum(-1)
            count = mask.sum() if num_items_in_batch is None else num_items_in_batch
            count = torch.as_tensor(count, device=logits.device).clamp(min=1)
            nll_sum, kl_sum = (nll * mask).sum(), (kl * known).sum()
            loss = (nll_sum + self.retain_weight * kl_sum) / count
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            valid = mask.sum()
            correct = ((logits.argmax(-1) == target) & mask).sum()
            if valid > 0:
                metrics = self._metrics["train"]
                metrics["mean_token_accuracy"].append((correct / valid).item())
                metrics["retain_kl"].append((kl_sum / known.sum().clamp(min=1)).item())
                metrics["retained_share"].append((known.sum() / valid).item())
            return loss

    return RetainingSFTTrainer


def train_adapter(spec: TrainSpec, hooks: Hooks | None = None, trainer=None, callback=None) -> dict[str, Any]:
    """Train (or resume) and save the adapter; raises TrainingStopped after a stop request."""
    hooks = hooks or Hooks()
    if trainer is None:
        trainer, callback = build_trainer(spec, hooks)
    resume = spec.resume_from or last_checkpoint(spec.output_dir)
    if resume and not Path(resume, "trainer_state.json").exists():
        raise CorruptCheckpoint(f"checkpoint {resume} has no trainer_state.json",
                                hint=f"delete {resume} to restart training from the previous checkpoint")
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - t0
    if callback is not None and callback.stopped:
        ckpt = last_checkpoint(spec.output_dir)
        raise TrainingStopped(ckpt)
    is_main = trainer.is_world_process_zero()
    metrics = dict(result.metrics)
    eval_metrics: dict[str, Any] = {}
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if evals and evals[-1].get("step") == trainer.state.global_step:
        eval_metrics = dict(evals[-1])  # the epoch-end evaluation already ran on the final weights
    elif trainer.eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        if is_main:
            hooks.emit("eval", step=trainer.state.global_step, epoch=round(trainer.state.epoch or 0, 4),
                       eval_loss=float(eval_metrics.get("eval_loss", float("nan"))), version=spec.version,
                       metrics={k: v for k, v in eval_metrics.items() if isinstance(v, (int, float))})
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {
        "version": spec.version,
        "global_step": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_loss": metrics.get("train_loss"),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "eval_loss": eval_metrics.get("eval_loss"),
        "seconds": round(seconds, 2),
        "tokens": int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
        "resumed_from": resume,
        "train_rows": len(spec.train_rows),
        "validation_rows": len(spec.validation_rows),
    }
    summary["tokens_per_s"] = round(summary["tokens"] / seconds, 1) if seconds > 0 and summary["tokens"] else None
    summary.update(peak_memory())
    if is_main:
        save_adapter(trainer, spec.adapter_dir)
        Path(spec.adapter_dir, TRAIN_RESULT).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        hooks.emit("checkpoint", path=spec.adapter_dir, step=trainer.state.global_step, kind="adapter",
                   version=spec.version)
    return summary


def save_adapter(trainer, adapter_dir: str | Path) -> None:
    """Standard PEFT layout (adapter_config.json + adapter_model.safetensors) plus the tokenizer."""
    adapter_dir = Path(adapter_dir)
    tmp = adapter_dir.with_name(adapter_dir.name + ".tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    model = trainer.model
    unwrap = getattr(trainer, "accelerator", None)
    if unwrap is not None:
        model = unwrap.unwrap_model(model)
    model.save_pretrained(tmp)
    trainer.processing_class.save_pretrained(tmp)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    os.replace(tmp, adapter_dir)
