"""LoRA training through the real trl/peft path: events, stop -> checkpoint, resume, 8-bit, accelerate."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from engine.ml.profiles import get_profile  # noqa: E402
from engine.ml.testing import test_base  # noqa: E402
from engine.ml.train import Hooks, TrainingStopped, TrainSpec, last_checkpoint, train_adapter  # noqa: E402
from engine.dataset.synthetic import generate  # noqa: E402

pytestmark = pytest.mark.slow
SYSTEM = "Write Blueprint DSL."


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return test_base(tmp_path_factory.getbasetemp() / "ml-test-base")


@pytest.fixture(scope="module")
def rows():
    return generate(40, seed=21)


def spec_for(base, rows, out: Path, **profile) -> TrainSpec:
    prof = get_profile("tiny", batch_size=4, save_steps=2, logging_steps=1, **profile)
    return TrainSpec(base=str(base), profile=prof.to_dict(), train_rows=rows[:32], validation_rows=rows[32:],
                     system_prompt=SYSTEM, output_dir=str(out / "ckpt"), adapter_dir=str(out / "adapter"))


class Recorder:
    def __init__(self, stop_after: int | None = None):
        self.events: list[tuple[str, dict]] = []
        self.steps: list[int] = []
        self.stop_after = stop_after

    def hooks(self) -> Hooks:
        return Hooks(emit=lambda type, **p: self.events.append((type, p)),
                     progress=lambda n, total, message=None: self.steps.append(n),
                     should_stop=lambda: self.stop_after is not None and len(self.steps) > self.stop_after)

    def of(self, kind):
        return [p for t, p in self.events if t == kind]


def test_train_emits_events_and_saves_a_peft_adapter(base, rows, tmp_path):
    rec = Recorder()
    summary = train_adapter(spec_for(base, rows, tmp_path, max_steps=4), rec.hooks())
    train = rec.of("train")
    assert [e["step"] for e in train] == [1, 2, 3, 4]
    assert all(e["loss"] > 0 and e["lr"] >= 0 for e in train)
    assert rec.of("eval") and rec.of("eval")[-1]["eval_loss"] > 0
    kinds = [e.get("kind") for e in rec.of("checkpoint")]
    assert "trainer" in kinds and kinds[-1] == "adapter"
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["r"] == 16 and cfg["peft_type"] == "LORA"
    assert summary["global_step"] == 4 and summary["eval_loss"] is not None


def test_stop_saves_a_checkpoint_and_resume_continues_from_it(base, rows, tmp_path):
    rec = Recorder(stop_after=2)
    with pytest.raises(TrainingStopped) as stopped:
        train_adapter(spec_for(base, rows, tmp_path, max_steps=6), rec.hooks())
    ckpt = stopped.value.checkpoint
    assert ckpt and Path(ckpt, "trainer_state.json").exists()
    step_at_stop = int(Path(ckpt).name.rsplit("-", 1)[1])
    assert 2 <= step_at_stop < 6
    assert last_checkpoint(tmp_path / "ckpt") == ckpt
    assert not (tmp_path / "adapter").exists()

    rec2 = Recorder()
    summary = train_adapter(spec_for(base, rows, tmp_path, max_steps=6), rec2.hooks())
    assert summary["resumed_from"] == ckpt
    assert summary["global_step"] == 6
    assert min(e["step"] for e in rec2.of("train")) > step_at_stop  # no step was trained twice
    assert (tmp_path / "adapter" / "adapter_config.json").exists()


def eight_bit_spec(base, rows, out: Path, init_adapter: str | None = None, **profile) -> TrainSpec:
    """The llama-70b-8bit profile's values on the tiny base, 2 steps."""
    prof = get_profile("llama-70b-8bit").with_overrides(base=str(base), max_steps=2, save_steps=100, logging_steps=1,
                                                        max_seq_len=256, bf16=False, **profile)
    return TrainSpec(base=str(base), profile=prof.to_dict(), train_rows=rows, validation_rows=[], system_prompt=SYSTEM,
                     output_dir=str(out / "ckpt"), adapter_dir=str(out / "adapter"), init_adapter=init_adapter)


def train_8bit_or_skip(spec: TrainSpec, rec: "Recorder") -> dict:
    try:
        return train_adapter(spec, rec.hooks())
    except (RuntimeError, NotImplementedError, ImportError) as exc:  # pragma: no cover - platform dependent
        pytest.skip(f"bitsandbytes cannot run 8-bit training on this machine: {exc}")


def test_real_profile_path_8bit_lora_r64_on_cpu(base, rows, tmp_path):
    """The llama-70b-8bit values (8-bit base, prepare_model_for_kbit_training, r=64, a=128) on the tiny base."""
    pytest.importorskip("bitsandbytes")
    rec = Recorder()
    summary = train_8bit_or_skip(eight_bit_spec(base, rows[:8], tmp_path), rec)
    assert summary["global_step"] == 2
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 64 and cfg["lora_alpha"] == 128
    assert len(rec.of("train")) == 2


def test_accelerate_launch_two_cpu_processes(base, rows, tmp_path):
    """The profile's launcher=accelerate path: 2 CPU ranks, events relayed, adapter saved by rank 0."""
    if shutil.which("accelerate") is None and subprocess.run([sys.executable, "-c", "import accelerate"]).returncode:
        pytest.skip("accelerate is not installed")
    from engine.ml.launch import launch

    spec = spec_for(base, rows, tmp_path, max_steps=3, launcher="accelerate", num_processes=2)
    rec = Recorder()
    summary = launch(spec, tmp_path / "work", 2, emit=lambda type, **p: rec.events.append((type, p)),
                     progress=lambda n, total, message=None: rec.steps.append(n), poll_s=0.2, cpu=True)
    assert summary["global_step"] == 3
    assert [e["step"] for e in rec.of("train")] == [1, 2, 3]
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    logs = [e["message"] for e in rec.of("log")]
    assert any("2 process(es)" in m for m in logs), logs


def test_accelerate_stop_is_agreed_by_both_ranks_and_resumes(base, rows, tmp_path, monkeypatch):
    from engine.ml.launch import launch

    monkeypatch.setenv("BPLLM_TEST_TRAIN_STEP_S", "0.5")  # inherited by the workers: time to land the stop
    spec = spec_for(base, rows, tmp_path, max_steps=8, launcher="accelerate", num_processes=2)
    rec = Recorder()
    with pytest.raises(TrainingStopped) as stopped:
        launch(spec, tmp_path / "work", 2, emit=lambda type, **p: rec.events.append((type, p)),
               progress=lambda n, total, message=None: rec.steps.append(n),
               should_stop=lambda: any(t == "train" for t, _ in rec.events), poll_s=0.2, cpu=True)
    ckpt = stopped.value.checkpoint
    assert ckpt and Path(ckpt, "trainer_state.json").exists()
    monkeypatch.delenv("BPLLM_TEST_TRAIN_STEP_S")
    rec2 = Recorder()
    summary = launch(spec, tmp_path / "work", 2, emit=lambda type, **p: rec2.events.append((type, p)), poll_s=0.2,
                     cpu=True)
    assert summary["resumed_from"] == ckpt and summary["global_step"] == 8


def test_retaining_loss_is_the_plain_loss_plus_kl_where_the_previous_version_was_right(base, rows, tmp_path):
    """retain_weight > 0 with a warm start: at the start (student = teacher) the loss is trl's own;
    once the student moves, the loss grows by exactly weight x KL(teacher || student) summed over the
    completion tokens the teacher predicts right, per completion token."""
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    from engine.ml.train import build_trainer

    train_adapter(spec_for(base, rows, tmp_path / "v1", max_steps=4, learning_rate=1e-2,
                            lora_dropout=0.0), Recorder().hooks())
    weight = 3.0
    spec = spec_for(base, rows, tmp_path / "v2", max_steps=4, retain_weight=weight, lora_dropout=0.0)
    spec.init_adapter = str(tmp_path / "v1" / "adapter")
    trainer, _ = build_trainer(spec, with_callback=False)
    assert type(trainer).__name__ == "RetainingSFTTrainer"
    model = trainer.model
    model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with torch.no_grad():
        plain = SFTTrainer.compute_loss(trainer, model, dict(batch)).item()
        assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(plain, rel=1e-5)

        gen = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn(p.shape, generator=gen).to(p.device, p.dtype) * 0.05)  # the model's device
        plain = SFTTrainer.compute_loss(trainer, model, dict(batch)).item()
        retaining = trainer.compute_loss(model, dict(batch)).item()

        forward = {k: v for k, v in batch.items() if k != "labels"}
        student = F.log_softmax(model(**forward).logits[:, :-1].float(), -1)
        teacher = F.log_softmax(trainer.teacher(**forward).logits[:, :-1].float(), -1)
        target = batch["labels"][:, 1:]
        completion = target != -100
        known = completion & (teacher.argmax(-1) == target)
        kl = (teacher.exp() * (teacher - student)).sum(-1)
    assert 0 < known.sum() < completion.sum()  # some tokens kept, some left to the plain loss
    expected = weight * (kl * known).sum().item() / completion.sum().item()
    assert expected > 1e-4
    assert retaining - plain == pytest.approx(expected, rel=1e-3)


def test_retain_weight_trains_and_reports_the_kl_in_train_events(base, rows, tmp_path):
    train_adapter(spec_for(base, rows, tmp_path / "v1", max_steps=2), Recorder().hooks())
    spec = spec_for(base, rows, tmp_path / "v2", max_steps=3, retain_weight=1.0)
    spec.init_adapter = str(tmp_path / "v1" / "adapter")
    rec = Recorder()
    assert train_adapter(spec, rec.hooks())["global_step"] == 3
    assert [e["step"] for e in rec.of("train")] == [1, 2, 3]
    kls = [e["retain_kl"] for e in rec.of("train")]
    assert min(kls) >= 0 and kls[-1] > 0, kls  # the teacher is a copy: once the student moves, they differ
    # without a warm start there is no previous version to keep: plain SFT, no KL in the events
    rec = Recorder()
    train_adapter(spec_for(base, rows, tmp_path / "fresh", max_steps=2, retain_weight=1.0), rec.hooks())
    assert not any("retain_kl" in e for e in rec.of("train"))


def test_retain_weight_on_the_8bit_path(base, rows, tmp_path):
    """The 70B profile's 8-bit values with a warm start and retain_weight: the frozen copy of an 8-bit
    model trains beside it (bitsandbytes on CPU)."""
    pytest.importorskip("bitsandbytes")
    train_8bit_or_skip(eight_bit_spec(base, rows[:8], tmp_path / "v1"), Recorder())
    rec = Recorder()
    spec = eight_bit_spec(base, rows[8:16], tmp_path / "v2", init_adapter=str(tmp_path / "v1" / "adapter"),
                          retain_weight=1.0)
    assert train_adapter(spec, rec.hooks())["global_step"] == 2
    kls = [e["retain_kl"] for e in rec.of("train")]
    assert len(kls) == 2 and min(kls) >= 0, kls
