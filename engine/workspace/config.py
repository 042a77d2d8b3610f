"""bpllm.toml on the engine side: the names engine code imports, writing a config, and the import of
the reference project's ``pipeline_config.json``.

The schema and the one reader live in :mod:`dsl.config` (the lowest layer, so the DSL command line and
the TUI read the file the same way without importing the engine); this module re-exports them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsl.config import (BUILTIN_PROFILES, CONFIG_FILE, REPORT_BACKENDS, SECTIONS, TINY_RULES, Config,
                        ConfigDeprecationWarning, ConfigError, ProfileSettings, Rule, Section, TrainSection,
                        defaults, load_config, profile_problem, report_to_list, report_to_problem, toml_value,
                        validate)

__all__ = ["BUILTIN_PROFILES", "CONFIG_FILE", "REPORT_BACKENDS", "SECTIONS", "TINY_RULES", "Config",
           "ConfigDeprecationWarning", "ConfigError", "ProfileSettings", "Rule", "Section", "TrainSection",
           "defaults", "dump_toml", "from_pipeline_config", "load_config", "profile_problem", "report_to_list",
           "report_to_problem", "validate"]

# --- writing TOML (tomllib reads only; the config is small and flat enough for this) ---

def dump_toml(cfg: dict[str, Any], header: str = "") -> str:
    out = [header.rstrip() + "\n"] if header else []
    for sec, table in cfg.items():
        if not isinstance(table, dict):
            continue
        nested = {k: v for k, v in table.items() if isinstance(v, dict) and (sec == "profiles" or SECTIONS.get(sec, Section).OPEN)}
        flat = {k: v for k, v in table.items() if k not in nested}
        if flat or not nested:
            out.append(f"[{sec}]")
            for k, v in flat.items():
                out.append(f"{k} = {toml_value(v)}")
            out.append("")
        for name, sub in nested.items():
            out.append(f"[{sec}.{name}]")
            for k, v in sub.items():
                out.append(f"{k} = {toml_value(v)}")
            out.append("")
    return "\n".join(out)


def from_pipeline_config(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """Map the reference project's pipeline_config.json onto bpllm.toml sections.

    Returns (partial raw config, notes). The model/LoRA/training values become a
    ``[profiles.blueprintllm]`` table based on ``llama-70b-8bit``; the stall and
    synthetic values map onto ours; hardware facts are reported, not configured.
    """
    path = Path(path)
    try:
        ref = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})", "fix the JSON syntax there") from None
    notes: list[str] = []
    prof: dict[str, Any] = {"base": "llama-70b-8bit"}
    model = ref.get("model", {})
    quant = ref.get("quantization", {})
    lora = ref.get("lora", {})
    train = ref.get("training", {})
    mapping = [
        (model, "base_model", "model"), (model, "max_seq_length", "max_seq_len"),
        (quant, "use_8bit", "load_in_8bit"), (quant, "use_4bit", "load_in_4bit"),
        (lora, "lora_r", "lora_r"), (lora, "lora_alpha", "lora_alpha"), (lora, "lora_dropout", "lora_dropout"),
        (train, "epochs", "epochs"), (train, "batch_size", "batch_size"),
        (train, "gradient_accumulation_steps", "grad_accum"), (train, "learning_rate", "learning_rate"),
        (train, "warmup_steps", "warmup_steps"), (train, "weight_decay", "weight_decay"),
        (train, "max_grad_norm", "max_grad_norm"), (train, "logging_steps", "logging_steps"),
        (train, "save_steps", "save_steps"), (train, "eval_steps", "eval_steps"),
    ]
    for table, src, dst in mapping:
        if src in table:
            prof[dst] = table[src]
    raw: dict[str, Any] = {"run": {"profile": "blueprintllm"}, "profiles": {"blueprintllm": prof}}
    stall = ref.get("stall_detection", {})
    if stall:
        raw["stall"] = {}
        if "stall_warn_seconds" in stall:
            raw["stall"]["warn_s"] = float(stall["stall_warn_seconds"])
        if "stall_kill_seconds" in stall:
            raw["stall"]["kill_s"] = float(stall["stall_kill_seconds"])
        if "stall_kill_seconds_training" in stall:
            raw["stall"]["training_kill_s"] = float(stall["stall_kill_seconds_training"])
    syn = ref.get("synthetic", {})
    if "synthetic_count" in syn:
        raw["synthetic"] = {"count": int(syn["synthetic_count"])}
    hw = ref.get("hardware", {})
    if hw:
        notes.append(f"hardware (not configured, reported only): {hw.get('gpu_name')} {hw.get('gpu_vram_gb')} GB,"
                     f" CUDA_VISIBLE_DEVICES={hw.get('cuda_visible_devices')}")
    known = {"hardware", "model", "quantization", "lora", "training", "stall_detection", "synthetic"}
    for sec in ref:
        if sec not in known:
            notes.append(f"{path.name}: section {sec!r} has no bpllm equivalent; ignored")
    return raw, notes
