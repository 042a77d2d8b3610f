"""Where a model lands: one decision for every model the engine loads.

``plan_placement`` is a pure function of device facts (the GPUs torch sees, their free memory,
bf16 support and the roles the config gives them) and the profile's precision; ``device_facts``
reads those facts from torch (and NVML for the roles), ``load_kwargs`` turns a plan into
``from_pretrained`` arguments. Training, exams, ``verify_output``, ``bpllm generate`` and the
benches all load through ``engine.ml.base.load_base(..., placement=...)``, so a profile's 8-bit/4-bit
and bf16 are never dropped, and a display card the config keeps free is never used.

Rules (docs/gpu.md):
* no usable GPU -> CPU, fp32 (bf16 on a CPU is slow; quantization is kept: bitsandbytes decides);
* the model (plus headroom for activations and the KV cache) fits on one usable card -> that card
  (the one with most free memory), bf16 when the profile asks for it and the card supports it;
* else it fits across the usable cards -> ``device_map="auto"`` with per-card ``max_memory`` caps;
* else -> ``device_map="auto"`` with the rest on the CPU, and the plan says so (``fits=False``).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

from engine.runtime.telemetry import sample_gpus
from engine.workspace.workspace import resolve_workspace

# roles (engine/workspace/config.py [telemetry] roles, `bpllm gpus`) whose card the engine never loads onto
EXCLUDED_ROLES = frozenset({"display", "reserved", "off", "none"})
# a card is filled to this share of its free memory at most (the CUDA context, fragmentation)
MEMORY_SHARE = 0.90
# weights x this must fit on one card: room for activations, an exam batch's KV cache, LoRA optimizer state
HEADROOM = 1.25
# split across cards, the weights x this must fit under the caps (accelerate balances the layers, and
# each card's cap already leaves 1 - MEMORY_SHARE free): a 70B in bf16 on two 80 GB cards fits
SPLIT_HEADROOM = 1.05


@dataclass(frozen=True)
class GpuFacts:
    """One CUDA device as torch numbers it (``index``), with the NVML role the config gives it."""

    index: int
    total_bytes: int
    free_bytes: int
    bf16: bool = True
    name: str = ""
    role: str | None = None


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu", "cuda:N", or "auto" (split across cards by accelerate)
    dtype: str  # "float32" | "bfloat16"
    quantization: str | None  # "8bit" | "4bit" | None
    device_map: Any = None  # None (CPU), {"": N} or "auto"
    max_memory: dict | None = None
    gpus: tuple[int, ...] = ()
    fits: bool = True
    reason: str = ""
    model_bytes: int | None = None

    @property
    def on_cuda(self) -> bool:
        return self.device != "cpu"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gpus"] = list(self.gpus)
        if self.max_memory:
            d["max_memory"] = {str(k): v for k, v in self.max_memory.items()}
        return d


def bytes_per_param(dtype: str, quantization: str | None) -> float:
    if quantization == "8bit":
        return 1.0
    if quantization == "4bit":
        return 0.5
    return 2.0 if dtype in ("bfloat16", "float16") else 4.0


def plan_placement(
    gpus: Sequence[GpuFacts],
    *,
    bf16: bool = False,
    load_in_8bit: bool = False,
    load_in_4bit: bool = False,
    n_params: int | None = None,
    headroom: float = HEADROOM,
    share: float = MEMORY_SHARE,
) -> Placement:
    """The placement for a model of ``n_params`` parameters (None: unknown, assume it fits one card)."""
    quant = "8bit" if load_in_8bit else ("4bit" if load_in_4bit else None)
    usable = [g for g in gpus if (g.role or "").lower() not in EXCLUDED_ROLES]
    training = [g for g in usable if (g.role or "").lower() == "training"]
    if training:  # the config names the training card(s): use those only
        usable = training
    if not usable:
        why = "no GPU" if not gpus else "every GPU is kept free by its role (" + ", ".join(
            f"{g.index}={g.role}" for g in gpus) + ")"
        return Placement("cpu", "float32", quant, None, None, (), True, f"CPU: {why}")
    dtype = "bfloat16" if bf16 and all(g.bf16 for g in usable) else "float32"
    size = int(n_params * bytes_per_param(dtype, quant)) if n_params else None
    need = int(size * headroom) if size else 0
    best = max(usable, key=lambda g: (g.free_bytes, -g.index))
    if not size or need <= best.free_bytes * share:
        return Placement(f"cuda:{best.index}", dtype, quant, {"": best.index}, None, (best.index,), True,
                         f"one card: cuda:{best.index} ({best.name or 'GPU'}, {best.free_bytes / 2**30:.1f} GiB free)",
                         size)
    caps = {g.index: int(g.free_bytes * share) for g in sorted(usable, key=lambda g: g.index)}
    fits = int(size * SPLIT_HEADROOM) <= sum(caps.values())
    reason = (f"split across {len(caps)} cards (device_map=auto, {size / 2**30:.1f} GiB of weights)" if fits else
              f"does not fit: {size * SPLIT_HEADROOM / 2**30:.1f} GiB needed, {sum(caps.values()) / 2**30:.1f} GiB usable on "
              f"{len(caps)} card(s); the rest is offloaded to the CPU")
    if not fits:
        caps = {**caps, "cpu": "1TiB"}  # accelerate offloads what the cards cannot hold
    return Placement("auto", dtype, quant, "auto", caps, tuple(k for k in caps if isinstance(k, int)), fits, reason,
                     size)


def nvml_roles_by_torch_index(roles: dict[str, str] | None) -> dict[int, str]:
    """Config roles (keyed by nvidia-smi index) re-keyed by torch index, via ``bpllm gpus``' mapping."""
    if not roles:
        return {}
    try:
        ok, devices, _reason = sample_gpus({})
    except Exception:  # noqa: BLE001 - no NVML: roles cannot be matched; report nothing rather than guess
        return {}
    out: dict[int, str] = {}
    for d in devices if ok else []:
        role = roles.get(str(d["index"]))
        if role and d.get("torch_index") is not None:
            out[int(d["torch_index"])] = role
    return out


def device_facts(roles: dict[str, str] | None = None) -> list[GpuFacts]:
    """The CUDA devices torch sees (empty on a CPU box), with their free memory and config roles."""
    import torch

    if not torch.cuda.is_available():
        return []
    by_torch = nvml_roles_by_torch_index(roles)
    facts = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        props = torch.cuda.get_device_properties(i)
        facts.append(GpuFacts(index=i, total_bytes=int(total), free_bytes=int(free),
                              bf16=props.major >= 8, name=props.name, role=by_torch.get(i)))
    return facts


def count_params(path: str) -> int | None:
    """Parameters of the model at ``path`` from its config (no weights read); None when unknown."""
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(str(path))
    except Exception:  # noqa: BLE001 - a hub id offline, an odd layout: placement assumes one card
        return None
    return config_params(cfg)


def config_params(cfg) -> int | None:
    """Llama-style parameter count from a config (embeddings, attention, MLP, norms)."""
    h = getattr(cfg, "hidden_size", None)
    layers = getattr(cfg, "num_hidden_layers", None)
    if not h or not layers:
        return None
    heads = getattr(cfg, "num_attention_heads", 1) or 1
    kv = getattr(cfg, "num_key_value_heads", heads) or heads
    head_dim = getattr(cfg, "head_dim", None) or h // heads
    inter = getattr(cfg, "intermediate_size", 4 * h)
    vocab = getattr(cfg, "vocab_size", 0)
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    mlp = 3 * h * inter
    embed = vocab * h * (1 if getattr(cfg, "tie_word_embeddings", False) else 2)
    return int(layers * (attn + mlp + 2 * h) + embed + h)


def place_for(profile, path: str | None = None, roles: dict[str, str] | None = None,
              n_params: int | None = None) -> Placement:
    """The placement of ``profile``'s model (at ``path``) on this machine."""
    if roles is None:
        roles = config_roles()
    if n_params is None and path is not None:
        n_params = count_params(path)
    facts = device_facts(roles)
    if facts and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # an accelerate rank: its own card only
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        facts = [replace(g, role="training") for g in facts if g.index == local] or facts
    return plan_placement(facts, bf16=bool(profile.bf16), load_in_8bit=bool(profile.load_in_8bit),
                          load_in_4bit=bool(profile.load_in_4bit), n_params=n_params)


def config_roles() -> dict[str, str]:
    """The workspace config's GPU roles, when there is a workspace here (else none)."""
    try:
        ws = resolve_workspace(os.environ.get("BPLLM_WORKSPACE"))
        return dict(ws.config.telemetry.roles)
    except Exception:  # noqa: BLE001 - outside a workspace there are no roles
        return {}


def load_kwargs(placement: Placement) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for ``placement``."""
    import torch

    kwargs: dict[str, Any] = {"dtype": getattr(torch, placement.dtype)}
    if placement.quantization:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (BitsAndBytesConfig(load_in_8bit=True) if placement.quantization == "8bit"
                                         else BitsAndBytesConfig(load_in_4bit=True,
                                                                 bnb_4bit_compute_dtype=kwargs["dtype"]))
    if placement.device_map is not None:
        kwargs["device_map"] = placement.device_map
        if placement.max_memory:
            kwargs["max_memory"] = dict(placement.max_memory)
    if placement.on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls that remain (norms, logits) on tensor cores
        torch.backends.cudnn.allow_tf32 = True
        if placement.device.startswith("cuda:"):
            torch.cuda.set_device(int(placement.device.split(":")[1]))  # the Trainer's "cuda" is this card
    return kwargs


def input_device(model):
    """Where a (possibly split) model wants its input ids: its embedding's device."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device
