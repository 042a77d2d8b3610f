"""Profiles are values only, and bpllm.toml / OOM overrides land on them."""
from __future__ import annotations

import pytest

from engine.ml.profiles import PROFILES, get_profile


def test_reference_configuration_is_the_70b_profile():
    p = get_profile("llama-70b-8bit")
    assert (p.lora_r, p.lora_alpha, p.learning_rate, p.epochs, p.grad_accum, p.max_seq_len) == (64, 128, 5e-5, 2.0, 4, 2048)
    assert p.load_in_8bit and not p.is_tiny


def test_tiny_is_default_cpu_friendly():
    p = get_profile()
    assert p.is_tiny and not p.bf16 and not p.gradient_checkpointing and not p.load_in_8bit
    assert p.tiny["hidden_size"] * p.tiny["num_hidden_layers"] < 2048  # a few million parameters


def test_overrides_are_checked():
    assert get_profile("tiny", lora_r=4).lora_r == 4
    with pytest.raises(KeyError, match="unknown profile setting"):
        get_profile("tiny", lora_rank=4)
    with pytest.raises(KeyError, match="unknown profile"):
        get_profile("llama-3-405b")
    assert set(PROFILES) == {"tiny", "llama-8b-bf16", "llama-70b-8bit"}


class _Ctx:
    """The two StepContext members resolve_profile reads, plus what it logs to."""

    def __init__(self, profile, table, overrides=None, train=None):
        from dsl.config import validate

        self.profile = profile
        self.config = validate({"profiles": {profile: table}, "train": train or {}, "run": {"profile": profile}},
                               "test")
        self.overrides = overrides or {}
        self.state = {}
        self.logs = []

    @property
    def profile_config(self):
        return self.config.profile(self.profile)

    def log(self, message, level="info"):
        self.logs.append((level, message))


def test_resolve_profile_from_toml_table_and_oom_overrides():
    from engine.ml.steps import resolve_profile

    ctx = _Ctx("blueprintllm", {"base": "llama-70b-8bit", "model": "/models/llama70b", "max_seq_len": 1024,
                                "lora_r": 32, "max_grad_norm": 0.3, "load_in_4bit": False, "bogus": 1},
               overrides={"batch_size": 1, "max_seq_len": 512})
    p = resolve_profile(ctx)
    assert p.name == "llama-70b-8bit" and p.base == "/models/llama70b"
    assert p.lora_r == 32 and p.max_grad_norm == 0.3
    assert p.max_seq_len == 512 and p.batch_size == 1  # the OOM policy wins over the table
    assert any("bogus" in m for _, m in ctx.logs)
    tiny = resolve_profile(_Ctx("tiny", {"tiny": {"hidden_size": 64}, "max_steps": 3}))
    assert tiny.tiny["hidden_size"] == 64 and tiny.tiny["num_hidden_layers"] == get_profile().tiny["num_hidden_layers"]
    assert tiny.max_steps == 3
