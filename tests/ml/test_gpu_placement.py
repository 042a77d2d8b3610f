"""GPU readiness on any machine: the placement decision, CUDA's device numbering and the rank check are
pure functions of device facts (given here as plain values, as a GPU box would report them); loading a
version and the decode strategies run on the real tiny model wherever the tests run."""
from __future__ import annotations

import pytest

from engine.ml.launch import TooManyRanks, check_ranks
from engine.ml.placement import GpuFacts, Placement, config_params, plan_placement
from engine.runtime.telemetry import default_role, resolve_torch_indices

GiB = 2**30
H200 = dict(total_bytes=141 * GiB, bf16=True, name="H200")


def test_no_gpu_places_on_the_cpu_in_fp32_and_keeps_the_quantization():
    p = plan_placement([], bf16=True, load_in_8bit=True, n_params=8_000_000_000)
    assert (p.device, p.dtype, p.quantization, p.device_map) == ("cpu", "float32", "8bit", None)
    assert not p.on_cuda and "no GPU" in p.reason


def test_an_8b_in_bf16_lands_on_the_one_card_in_bf16():
    p = plan_placement([GpuFacts(0, free_bytes=139 * GiB, **H200)], bf16=True, n_params=8_030_000_000)
    assert (p.device, p.dtype, p.device_map, p.gpus, p.fits) == ("cuda:0", "bfloat16", {"": 0}, (0,), True)
    assert p.model_bytes == 2 * 8_030_000_000


def test_bf16_is_dropped_only_where_a_card_cannot_do_it():
    old = GpuFacts(0, total_bytes=16 * GiB, free_bytes=15 * GiB, bf16=False, name="T4")
    assert plan_placement([old], bf16=True, n_params=1_000_000_000).dtype == "float32"
    assert plan_placement([old], bf16=False, n_params=1_000_000_000).dtype == "float32"


def test_a_70b_in_bf16_is_split_across_two_80gb_cards_with_per_card_caps():
    cards = [GpuFacts(i, total_bytes=80 * GiB, free_bytes=79 * GiB, name="A100-80GB") for i in (0, 1)]
    p = plan_placement(cards, bf16=True, n_params=70_000_000_000)
    assert p.device == "auto" and p.device_map == "auto" and p.fits
    assert p.max_memory == {0: int(79 * GiB * 0.9), 1: int(79 * GiB * 0.9)}
    assert p.gpus == (0, 1)


def test_the_70b_8bit_profile_keeps_8bit_on_the_big_card_and_the_display_card_stays_free():
    """The reference rig: a 96 GB card for training and a 16 GB display card."""
    cards = [GpuFacts(0, total_bytes=16 * GiB, free_bytes=15 * GiB, name="display", role="display"),
             GpuFacts(1, total_bytes=96 * GiB, free_bytes=94 * GiB, name="Blackwell")]
    p = plan_placement(cards, bf16=True, load_in_8bit=True, n_params=70_600_000_000)
    assert (p.device, p.quantization, p.device_map, p.gpus) == ("cuda:1", "8bit", {"": 1}, (1,))
    # without the role the bigger card still wins, but an oversized model would spill onto the display card
    both = plan_placement([GpuFacts(0, total_bytes=16 * GiB, free_bytes=15 * GiB),
                           GpuFacts(1, total_bytes=96 * GiB, free_bytes=94 * GiB)], bf16=True, n_params=45_000_000_000)
    assert both.device == "auto" and set(both.max_memory) == {0, 1}
    kept = plan_placement(cards, bf16=True, n_params=45_000_000_000)
    assert 0 not in kept.max_memory and not kept.fits and kept.max_memory["cpu"]


def test_a_training_role_narrows_the_choice_and_all_cards_kept_free_means_cpu():
    cards = [GpuFacts(0, free_bytes=139 * GiB, **H200), GpuFacts(1, free_bytes=100 * GiB, role="training", **H200)]
    assert plan_placement(cards, bf16=True, n_params=8_000_000_000).device == "cuda:1"
    free = [GpuFacts(0, free_bytes=139 * GiB, role="display", **H200)]
    p = plan_placement(free, bf16=True, n_params=8_000_000_000)
    assert p.device == "cpu" and "0=display" in p.reason


def test_a_model_no_card_set_can_hold_is_reported_as_not_fitting():
    p = plan_placement([GpuFacts(0, total_bytes=16 * GiB, free_bytes=15 * GiB)], bf16=True, n_params=70_000_000_000)
    assert not p.fits and "does not fit" in p.reason and p.to_dict()["max_memory"]["cpu"]


def test_parameter_count_from_a_llama_8b_config():
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256)
    assert abs(config_params(cfg) - 8_030_261_248) < 1_000_000  # Llama-3.1-8B's published size


CARDS = [  # NVML order = PCI bus order
    {"index": 0, "pci_bus_id": "0000:01:00.0", "uuid": "GPU-aaaa-1111", "cc": (8, 6), "sm": 10752},  # display card
    {"index": 1, "pci_bus_id": "0000:41:00.0", "uuid": "GPU-bbbb-2222", "cc": (12, 0), "sm": 24064},  # Blackwell
]


def test_torch_indices_follow_cuda_device_order():
    assert resolve_torch_indices(CARDS, None, "PCI_BUS_ID") == {0: 0, 1: 1}
    assert resolve_torch_indices(CARDS, None, None) == {1: 0, 0: 1}  # FASTEST_FIRST, CUDA's default
    assert resolve_torch_indices(CARDS, None, "FASTEST_FIRST") == {1: 0, 0: 1}


def test_torch_indices_follow_cuda_visible_devices():
    assert resolve_torch_indices(CARDS, "1", "PCI_BUS_ID") == {1: 0}
    assert resolve_torch_indices(CARDS, "1,0", "PCI_BUS_ID") == {1: 0, 0: 1}
    assert resolve_torch_indices(CARDS, "0", None) == {1: 0}  # index 0 of the fastest-first list
    assert resolve_torch_indices(CARDS, "GPU-aaaa", None) == {0: 0}  # a UUID prefix
    assert resolve_torch_indices(CARDS, "", None) == {}
    assert resolve_torch_indices(CARDS, "0,7,1", "PCI_BUS_ID") == {0: 0}  # CUDA stops at an invalid entry
    assert resolve_torch_indices(CARDS, "-1", None) == {}


def test_a_single_gpu_trains_by_default():
    assert default_role(1, True, False) == "training"
    assert default_role(2, True, False) == "compute" and default_role(2, False, False) == "other"
    assert default_role(2, True, True) == "engine"


def test_more_ranks_than_visible_gpus_is_refused_with_the_fix():
    with pytest.raises(TooManyRanks, match="2 processes asked for but only 1 GPU"):
        check_ranks(2, 1)
    check_ranks(2, 1, cpu=True)  # the user asked for CPU ranks
    check_ranks(2, 0)  # a CPU machine: gloo ranks
    check_ranks(2, 2)


def test_placement_round_trips_to_json():
    import json

    p = plan_placement([GpuFacts(i, total_bytes=80 * GiB, free_bytes=79 * GiB) for i in (0, 1)],
                       bf16=True, n_params=70_000_000_000)
    d = json.loads(json.dumps(p.to_dict()))
    assert d["max_memory"] == {"0": int(79 * GiB * 0.9), "1": int(79 * GiB * 0.9)} and d["gpus"] == [0, 1]
    assert isinstance(Placement("cpu", "float32", None).to_dict(), dict)


# ---------------------------------------------------------------- the real tiny model, any device
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("peft")
    from engine.ml.testing import test_base

    return test_base(tmp_path_factory.getbasetemp() / "ml-test-base")


def _adapter(base, out):
    """A fresh (untrained) LoRA on ``base`` saved in the standard PEFT layout: enough to load a version."""
    from peft import LoraConfig, get_peft_model

    from engine.ml.base import load_base

    model, tok = load_base(base)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(out)
    return out


@pytest.mark.slow
def test_load_version_keeps_the_profiles_dtype_where_placement_puts_it(tiny, tmp_path):
    """A base stored in bf16 loads in the dtype the placement chose for the profile (fp32 on a CPU, bf16 on a
    bf16 card for a bf16 profile), on the placement's device, adapter merged."""
    import torch

    from engine.ml.base import load_base, load_version
    from engine.ml.profiles import get_profile

    model, tok = load_base(tiny)
    bf16_base = tmp_path / "bf16-base"
    model.to(torch.bfloat16).save_pretrained(bf16_base)
    tok.save_pretrained(bf16_base)
    for import_name in ("base.json",):
        src = tiny / import_name
        if src.exists():
            (bf16_base / import_name).write_bytes(src.read_bytes())
    adapter = _adapter(bf16_base, tmp_path / "adapter")
    profile = get_profile("llama-8b-bf16", base=str(bf16_base))
    loaded, _tok = load_version(bf16_base, adapter, profile)
    placement = loaded.bpllm_placement
    assert next(loaded.parameters()).dtype == getattr(torch, placement.dtype)
    assert next(loaded.parameters()).device.type == ("cuda" if placement.on_cuda else "cpu")
    assert placement.dtype == ("bfloat16" if placement.on_cuda and torch.cuda.is_bf16_supported() else "float32")
    assert not hasattr(loaded, "peft_config")  # merged: no LoRA matmuls per token


@pytest.mark.slow
def test_load_version_keeps_the_profiles_8bit(tiny, tmp_path):
    pytest.importorskip("bitsandbytes")
    from engine.ml.base import load_version
    from engine.ml.profiles import get_profile

    adapter = _adapter(tiny, tmp_path / "adapter")
    try:
        model, _tok = load_version(tiny, adapter, get_profile("llama-70b-8bit", base=str(tiny)))
    except (RuntimeError, ImportError, ValueError) as exc:
        pytest.skip(f"bitsandbytes cannot load 8-bit weights on this machine: {exc}")
    assert model.bpllm_placement.quantization == "8bit"
    kinds = {type(m).__name__ for m in model.modules()}
    assert any("8bit" in k for k in kinds), kinds  # the quantized linears are still there, LoRA kept beside them
    assert hasattr(model, "peft_config")  # a LoRA cannot be merged into int8 weights


@pytest.mark.slow
def test_every_decode_strategy_gives_the_same_greedy_answers(tiny):
    """compact (CPU), overlap and static (GPU, here run eagerly on whatever device the tests have): same texts."""
    from engine.ml.base import load_base, render_example
    from engine.ml.generate import GenConfig, GrammarConstraint, generate
    from engine.dataset.synthetic import generate as synth

    model, tok = load_base(tiny)
    model.eval()
    prompts = [render_example(tok, "Write Blueprint DSL.", r["instruction"]) for r in synth(5, seed=99)]
    constraint = GrammarConstraint(tok, model.config.vocab_size)
    answers = {}
    for mode in ("compact", "overlap", "static"):
        res = generate(model, tok, prompts, GenConfig(max_new_tokens=24, batch_size=3, mode=mode,
                                                       time_budget_s=3600), constraint)
        assert [r.index for r in res] == list(range(len(prompts)))
        answers[mode] = [(r.raw_text, r.stop_reason, r.n_tokens) for r in res]
        if mode != "compact":
            assert {r.extra["mode"] for r in res} == {mode}
    assert answers["overlap"] == answers["compact"] and answers["static"] == answers["compact"]
    assert any(text for text, _, _ in answers["compact"])


def test_exam_batch_rows_grow_with_free_memory_and_shrink_with_length():
    from transformers import LlamaConfig

    from engine.ml.generate import batch_rows

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256)
    h200_free = 120 * GiB  # an H200 after the 8B's 16 GB of weights
    assert batch_rows(cfg, 1024, h200_free) > 16  # the issue: an H200 holds far more than 16 rows of an 8B
    assert batch_rows(cfg, 1024, 8 * GiB) < batch_rows(cfg, 1024, h200_free)
    assert batch_rows(cfg, 4096, h200_free) < batch_rows(cfg, 1024, h200_free)
    assert batch_rows(cfg, 1024, 1) == 1 and batch_rows(cfg, 16, 10**15) == 256


def test_training_micro_batch_divides_the_effective_batch_and_follows_free_memory():
    from transformers import LlamaConfig

    from engine.ml.train import micro_batch

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256)
    big = micro_batch(cfg, 2048, 120 * GiB, effective=8)
    assert big == 8  # the llama-8b-bf16 profile's 2 x 4 fits in one micro-batch on an H200
    small = micro_batch(cfg, 2048, 12 * GiB, effective=8)
    assert 1 <= small < big and 8 % small == 0
    assert micro_batch(cfg, 2048, 120 * GiB, effective=6) in (1, 2, 3, 6)
    assert micro_batch(cfg, 2048, 1, effective=8) == 1


@pytest.mark.slow
def test_train_events_and_the_summary_report_tokens_per_s_and_peak_memory(tiny, tmp_path):
    from engine.ml.profiles import get_profile
    from engine.ml.train import Hooks, TrainSpec, train_adapter
    from engine.dataset.synthetic import generate as synth

    rows = synth(12, seed=3)
    prof = get_profile("tiny", batch_size=4, save_steps=100, logging_steps=1, max_steps=2)
    spec = TrainSpec(base=str(tiny), profile=prof.to_dict(), train_rows=rows[:8], validation_rows=[],
                     system_prompt="Write Blueprint DSL.", output_dir=str(tmp_path / "ckpt"),
                     adapter_dir=str(tmp_path / "adapter"))
    events = []
    summary = train_adapter(spec, Hooks(emit=lambda type, **p: events.append((type, p))))
    train = [p for t, p in events if t == "train"]
    assert train and all(e["peak_memory_bytes"] > 0 and e["memory_device"] in ("cpu", "cuda") for e in train)
    assert all(e["tokens_per_s"] > 0 for e in train)
    assert summary["peak_memory_bytes"] >= train[-1]["peak_memory_bytes"] > 0 and summary["tokens_per_s"] > 0
    from engine.runtime.events import EVENT_TYPES  # the schema (and docs/events.md) know the new fields

    assert {"peak_memory_bytes", "memory_device"} <= set(EVENT_TYPES["train"].optional)


def test_an_accelerate_rank_places_on_its_own_card(monkeypatch):
    """place_for under WORLD_SIZE > 1 keeps the rank's card only (two ranks must not pick the same 'best' card)."""
    import engine.ml.placement as placement
    from engine.ml.profiles import get_profile

    cards = [GpuFacts(0, free_bytes=100 * GiB, **H200), GpuFacts(1, free_bytes=139 * GiB, **H200)]
    monkeypatch.setattr(placement, "device_facts", lambda roles=None: list(cards))  # the facts a 2-GPU box reports
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert placement.place_for(get_profile("llama-8b-bf16"), roles={}, n_params=8_000_000_000).device == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert placement.place_for(get_profile("llama-8b-bf16"), roles={}, n_params=8_000_000_000).device == "cuda:1"
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert placement.place_for(get_profile("llama-8b-bf16"), roles={}, n_params=8_000_000_000).device == "cuda:1"
