"""The ML seam exercised for real: a small plugin module (real code, loaded through the documented
BPLLM_ML_MODULE knob) registers steps 3.4 and 4.3 and uses the StepContext the way engine/ml does --
progress, train/checkpoint events, check_stop at step ends, ctx.step_state for resume, ctx.setting
with OOM overrides, `needs` re-run on resume.  Also: without an ML module, steps 3-7 skip honestly."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from test_engine_run import _env, bpllm, events, heartbeat, run_dirs, start, wait_for  # noqa: F401

PLUGIN = textwrap.dedent('''
    import json, time
    from pathlib import Path

    def load_base(ctx):
        ctx.phase("loading")
        ctx.cache["model"] = {"loaded_at": time.time()}
        return {"model": "toy"}

    def train(ctx):
        assert "model" in ctx.cache, "3.4 must have run in this process (needs)"
        ctx.phase("training")
        st = ctx.step_state
        start = st.get("checkpoint_step", 0)
        total = 30
        bs = ctx.setting("batch_size", 8)
        ctx.effective.update(batch_size=bs)
        if ctx.attempt == 1 and ctx.config["train"].get("oom_once") and not st.get("oomed"):
            st["oomed"] = True
            ctx.save_state()
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB")
        for step in range(start + 1, total + 1):
            time.sleep(0.05)
            ctx.emit("train", step=step, max_steps=total, loss=2.0 / step, lr=5e-5, epoch=step / total)
            ctx.progress(step, total, unit="step")
            if step % 5 == 0:
                ck = ctx.run_dir / f"ckpt-{step}"
                ck.mkdir(exist_ok=True)
                st["checkpoint_step"] = step
                ctx.save_state()
                ctx.emit("checkpoint", path=str(ck), step=step)
                ctx.check_stop()
        return {"steps": total, "resumed_from": start, "batch_size": bs}

    def register_steps(registry):
        registry.register("3.4", load_base)
        registry.register("4.3", train, needs=("3.4",))
''')


@pytest.fixture
def plug(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "plug"
    d.mkdir()
    (d / "toy_ml.py").write_text(PLUGIN)
    env = _env(BPLLM_ML_MODULE="toy_ml")
    env["PYTHONPATH"] = str(d) + ":" + env["PYTHONPATH"]
    return env


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    assert bpllm("init", str(w)).returncode == 0
    t = (w / "bpllm.toml").read_text().replace("backoff_s = 10.0", "backoff_s = 0.1")
    (w / "bpllm.toml").write_text(t + "\n[profiles.tiny]\nbatch_size = 8\n")
    return w


def test_stop_at_trainer_step_end_then_resume_from_checkpoint(ws: Path, plug: dict[str, str]) -> None:
    p = start("run", "-w", str(ws), "--only", "3.4,4.3", env=plug)
    wait_for(lambda: (h := heartbeat(ws)) and h.get("step") == "4.3" and (h.get("n") or 0) >= 7, 30, "training")
    assert bpllm("stop", "-w", str(ws)).returncode == 0
    p.communicate(timeout=30)
    assert p.returncode == 2
    rd = run_dirs(ws)[-1]
    evs = events(rd)
    ck = [e for e in evs if e["type"] == "checkpoint"]
    assert ck and ck[-1]["step"] % 5 == 0
    stopped_at = ck[-1]["step"]
    assert any(e["type"] == "step" and e["id"] == "4.3" and e["status"] == "stopped" for e in evs)
    hb = json.loads((rd / "heartbeat.json").read_text())
    assert hb["status"] == "stopped"

    r = bpllm("resume", "-w", str(ws), env=plug)
    assert r.returncode == 0, r.stderr
    evs2 = events(rd)[len(evs):]
    rerun = [e for e in evs2 if e["type"] == "step" and e["id"] == "3.4" and e["status"] == "start"]
    assert rerun and rerun[0]["rerun"] is True, "3.4 is a `need` of 4.3 and must re-run in the new process"
    done = next(e for e in evs2 if e["type"] == "step" and e["id"] == "4.3" and e["status"] == "complete")
    assert done["result"]["resumed_from"] == stopped_at
    train_steps = [e["step"] for e in evs2 if e["type"] == "train"]
    assert train_steps[0] == stopped_at + 1 and train_steps[-1] == 30
    assert "(re-run for resume)" in r.stdout


def test_oom_in_ml_step_retries_with_halved_batch(ws: Path, plug: dict[str, str]) -> None:
    with open(ws / "bpllm.toml", "a") as fh:
        fh.write("\n[train]\noom_once = true\n")
    r = bpllm("run", "-w", str(ws), "--only", "3.4,4.3", env=plug)
    assert r.returncode == 0, r.stderr
    evs = events(run_dirs(ws)[-1])
    retry = next(e for e in evs if e["type"] == "retry")
    assert retry["step"] == "4.3" and retry["changes"]["batch_size"] == [8, 4]
    done = next(e for e in evs if e["type"] == "step" and e["id"] == "4.3" and e["status"] == "complete")
    assert done["result"]["batch_size"] == 4 and done["attempt"] == 2


def test_without_ml_module_steps_3_to_7_skip_with_reason(ws: Path) -> None:
    r = bpllm("run", "-w", str(ws), "--only", "3,4,5,6,7", env=_env(BPLLM_ML_MODULE="no_such_ml_module"))
    assert r.returncode == 0, r.stderr
    evs = events(run_dirs(ws)[-1])
    steps = [e for e in evs if e["type"] == "step"]
    leaves = [e for e in steps if "." in e["id"]]
    assert leaves and all(e["status"] in ("start", "skip") for e in leaves)
    skips = [e for e in leaves if e["status"] == "skip"]
    assert len(skips) == 6 + 7 + 6 + 7 + 5
    ml = [e for e in skips if e["id"] not in ("4.1", "4.7", "6.7")]
    assert all("no_such_ml_module is not installed" in e["reason"] for e in ml)
    assert not any(e["status"] == "complete" and "." in e["id"] for e in steps), "nothing is faked"
    groups = [e for e in steps if "." not in e["id"] and e["status"] != "start"]
    assert [g["status"] for g in groups] == ["skip"] * 5
    assert "SKIPPED: Training loop: no_such_ml_module is not installed" in r.stdout
