"""A deliberately small tiny base for tests and quick checks (same code path, smaller numbers)."""
from __future__ import annotations

from pathlib import Path

from dsl.catalog import default_catalog
from dsl.packs import DEFAULT_LANGUAGE, load
from engine.dataset.synthetic import generate

from .base import ensure_tiny_base

TEST_BASE_SETTINGS = {
    "vocab_size": 1024,
    "max_token_length": 16,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 512,
    "synthetic_examples": 300,
    "synthetic_seed": 5,
    "pretrain_epochs": 1.0,
    "pretrain_batch_size": 16,
    "pretrain_lr": 3e-3,
    "pretrain_max_seconds": 25.0,
    "seed": 7,
}


def test_base(cache_dir: str | Path) -> Path:
    """Build (once per cache dir) and return a very small pretrained tiny base."""


    system = load(DEFAULT_LANGUAGE).system_prompt()
    rows = generate(TEST_BASE_SETTINGS["synthetic_examples"], seed=TEST_BASE_SETTINGS["synthetic_seed"])
    return ensure_tiny_base(cache_dir, rows, system, default_catalog(), dict(TEST_BASE_SETTINGS))


test_base.__test__ = False  # not a pytest test
