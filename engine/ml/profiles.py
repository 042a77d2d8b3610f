"""Training profiles: values only. Every profile runs the same code path.

``tiny`` builds its base locally (tokenizer + small Llama pretrained on the DSL
corpus); the Llama profiles load a base from a local path or a hub id. A profile
never changes *what* runs, only sizes, precision and where the base comes from.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    base: str  # "tiny" (built locally) or a local path / hub id
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # optimisation
    learning_rate: float = 2e-3
    epochs: float = 2.0
    max_steps: int = -1  # > 0 caps the run (tests, benchmarks)
    batch_size: int = 8
    grad_accum: int = 1
    max_seq_len: int = 512
    warmup_ratio: float = 0.05
    warmup_steps: int = 0  # > 0 wins over warmup_ratio
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    eval_steps: int = 0  # 0: evaluate once per epoch
    save_steps: int = 25
    logging_steps: int = 2
    save_total_limit: int = 2
    # precision / memory
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    bf16: bool = False  # forced off on CPU
    gradient_checkpointing: bool = False  # forced off on CPU
    # GPU throughput (docs/gpu.md; all ignored on a CPU): rows of a micro-batch concatenated without pad
    # tokens (trl padding_free; the attention sees each row apart through position_ids), liger-kernel's
    # fused losses when the package is installed, and the micro-batch sized from free GPU memory (the
    # effective batch, batch_size x grad_accum, is kept)
    padding_free: bool = True
    liger_kernel: bool = True
    auto_micro_batch: bool = True
    # continue from the previous version's adapter (same base) instead of a fresh LoRA: a lesson
    # then adds to what the model knew rather than re-rolling everything it had learned
    warm_start: bool = False
    warm_start_epochs: float = 1.0
    warm_start_lr_scale: float = 0.5
    # with a warm start, keep what the previous version knew: on the completion tokens the previous
    # version already predicts right, add retain_weight x KL(previous || new) to the loss. Tokens it
    # got wrong (the drill's weak nodes) are left to the plain loss. 0 = off. Needs a frozen copy of
    # the model in memory (cheap for tiny bases; for a 70B it doubles the weights)
    retain_weight: float = 0.0
    # distribution: run training under `accelerate launch` instead of in-process
    launcher: str = "inprocess"  # inprocess | accelerate
    num_processes: int = 1
    accelerate_config: str | None = None  # a user-supplied accelerate config file (FSDP / DeepSpeed)
    accelerate_cpu: bool = False  # run the accelerate ranks on the CPU even where GPUs are visible
    # exam
    exam_batch_size: int = 16  # 0: from free GPU memory and the prompts' lengths (16 on a CPU)
    exam_max_new_tokens: int = 384
    exam_time_budget_s: float = 30.0
    constrained: bool = True
    # tiny base (ignored by hub bases)
    tiny: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **overrides: Any) -> "Profile":
        known = {f.name for f in fields(self)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise KeyError(f"unknown profile setting(s): {', '.join(bad)}; known: {', '.join(sorted(known))}")
        if "target_modules" in overrides and isinstance(overrides["target_modules"], list):
            overrides["target_modules"] = tuple(overrides["target_modules"])
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d

    @property
    def is_tiny(self) -> bool:
        return self.base == "tiny"


TINY_BASE_DEFAULTS: dict[str, Any] = {
    "vocab_size": 4096,
    "max_token_length": 16,
    # node names tokenize alike in prompt and DSL, so the model can copy the name it is given:
    # measured on a 1,015-prompt holdout exam, mean structural score 63.3 -> 72.2 (docs/ml.md)
    "isolate_identifiers": True,
    # every catalog node name is one token: a drill on ForLoopWithBreak no longer teaches "…Loop" to
    # go on with "WithBreak" (measured: exam 72.6 -> 74.2, other nodes falling > 5 points 7 -> 6 / 3)
    "node_tokens": True,
    # small enough for ~2 optimizer steps a second on 2 busy cores: on CPU the number of
    # steps in the time cap matters more than width (measured: 128x3 reached loss 1.7 where
    # 192x4 reached 3.4 in the same 100 s)
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 1024,
    # pretraining the base (cached by corpus hash)
    "synthetic_examples": 1600,
    "synthetic_seed": 1234,
    "pretrain_epochs": 6.0,  # measured: 2 epochs -> loss 1.18, unseen synthetic score 25; 6 -> 0.51, 60
    "pretrain_batch_size": 8,
    "pretrain_lr": 5e-3,
    "pretrain_max_seconds": 180.0,  # a cap for slow or busy machines (keeps a cycle near 5 minutes)
    "system_prompt_share": 0.25,
    "seed": 7,
}

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        base="tiny",
        lora_r=16,
        lora_alpha=32,
        learning_rate=2e-3,
        epochs=2.0,
        batch_size=8,
        max_seq_len=512,
        save_steps=20,
        # measured on two cycles with a drill lesson: warm start kept the other nodes steady
        # (mean -0.5, 3 of 41 fell > 5 points) where a fresh LoRA re-rolled them (mean -1.5, 9 of 41)
        warm_start=True,
        # cycle 2+ replays the whole training set (every integrated lesson + synthetic rows) around the
        # new lesson for 3 epochs (2 left drilled nodes short on the earlier, smaller exam), at a quarter
        # of the lr: measured on a 4,015-prompt exam (docs/ml.md "Two cycles"), the drill still raises all
        # its nodes (15 of 15 over three seeds, +4.4 to +8.3 mean) and fewer other nodes fall > 5 points
        # (1 / 1 / 0 of 142, against 4 / 2 / 0 at half the lr)
        warm_start_epochs=3.0,
        warm_start_lr_scale=0.25,
        # and holds what v1 knew: KL to v1 on the tokens v1 got right, weighted 2 (docs/ml.md "Two
        # cycles": the other nodes' changes spread less on all four seeds, sd 1.8 -> 1.4, and their
        # falls > 5 points went from 1 / 0 / 1 / 1 to 1 / 0 / 0 / 0; the drilled nodes still all rise)
        retain_weight=2.0,
        tiny=dict(TINY_BASE_DEFAULTS),
    ),
    "llama-8b-bf16": Profile(
        name="llama-8b-bf16",
        base="meta-llama/Llama-3.1-8B-Instruct",
        lora_r=32,
        lora_alpha=64,
        lora_dropout=0.05,
        learning_rate=1e-4,
        epochs=2.0,
        batch_size=2,
        grad_accum=4,
        max_seq_len=2048,
        bf16=True,
        gradient_checkpointing=True,
        save_steps=100,
        logging_steps=5,
        exam_batch_size=0,  # from free GPU memory (an H200 holds far more than 8 rows of an 8B)
        exam_max_new_tokens=768,
        exam_time_budget_s=120.0,
    ),
    "llama-70b-8bit": Profile(
        name="llama-70b-8bit",
        base="meta-llama/Llama-3.1-70B-Instruct",
        lora_r=64,
        lora_alpha=128,
        lora_dropout=0.05,
        learning_rate=5e-5,
        epochs=2.0,
        batch_size=1,
        grad_accum=4,
        max_seq_len=2048,
        load_in_8bit=True,
        bf16=True,
        gradient_checkpointing=True,
        save_steps=50,
        logging_steps=5,
        exam_batch_size=0,  # from free GPU memory
        exam_max_new_tokens=768,
        exam_time_budget_s=180.0,
    ),
}


def get_profile(name: str = "tiny", **overrides: Any) -> Profile:
    """The named profile with ``overrides`` applied (unknown keys are an error, not ignored)."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
    return profile.with_overrides(**overrides) if overrides else profile
