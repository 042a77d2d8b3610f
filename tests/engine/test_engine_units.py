"""Small pure pieces of the runtime: error classification, the OOM ladder, config validation,
PCI bus id matching, the workspace lock."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.workspace.config import ConfigError, from_pipeline_config, load_config, validate
from engine.runtime.failures import DataError, backoff_delay, classify, oom_adjust
from engine.workspace.lock import LockBusy, WorkspaceLock, lock_holder
from engine.runtime.telemetry import _norm_bus, sample


@pytest.mark.parametrize("exc,cat,retry", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "cuda_oom", True),
    (OSError(errno.ENOSPC, "No space left on device"), "disk_full", False),
    (UnicodeEncodeError("charmap", "\u2502", 0, 1, "character maps to <undefined>"), "encoding", False),
    (ConnectionError("Connection reset by peer"), "network", True),
    (OSError("We couldn't connect to 'https://huggingface.co' ... offline mode"), "network", False),
    (RuntimeError("Error while deserializing header: HeaderTooLarge"), "corrupt_checkpoint", False),
    (TimeoutError("timed out"), "timeout", True),
    (DataError("no rows"), "data", False),
    (KeyError("x"), "unknown", False),
])
def test_classify(exc: BaseException, cat: str, retry: bool) -> None:
    c = classify(exc)
    assert (c.category, c.retryable) == (cat, retry)


def test_oom_ladder_halves_in_order() -> None:
    s = {"batch_size": 4, "grad_accum": 4, "max_seq_len": 2048, "lora_r": 64, "lora_alpha": 128}
    assert oom_adjust(s) == {"batch_size": (4, 2), "grad_accum": (4, 8)}
    s.update(batch_size=1)
    assert oom_adjust(s) == {"max_seq_len": (2048, 1024)}
    s.update(max_seq_len=256)
    assert oom_adjust(s) == {"lora_r": (64, 32), "lora_alpha": (128, 64)}
    s.update(lora_r=4)
    assert oom_adjust(s) == {}
    assert [backoff_delay(a, 10, 2, 300) for a in (1, 2, 3, 9)] == [10, 20, 40, 300]


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = validate({}, "x.toml")
    assert cfg.run.profile == "tiny" and cfg.stall.training_kill_s == 10800.0
    with pytest.raises(ConfigError) as e:
        validate({"run": {"profle": "tiny"}, "bogus": {}, "stall": {"kill_s": "soon"}}, "ws/bpllm.toml")
    msg = str(e.value)
    assert msg.startswith("ws/bpllm.toml: invalid configuration")
    assert "unknown key run.profle (did you mean 'profile'?)" in msg
    assert "unknown section [bogus]" in msg and 'stall.kill_s = "soon": expected a number > 0' in msg
    assert "\n" not in msg  # one line, however many problems
    with pytest.raises(ConfigError, match="validation_fraction = 1.5"):
        validate({"data": {"validation_fraction": 1.5}}, "f")
    with pytest.raises(ConfigError, match="expected a whole number >= 1"):
        validate({"run": {"cycles": True}}, "f")  # a bool is not an int here
    p = tmp_path / "bpllm.toml"
    p.write_bytes(b"[run]\nprofile = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)
    p.write_text("[run]\nprofile = tiny\n")
    with pytest.raises(ConfigError, match=r"TOML syntax error.*line 2"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "pipeline_config.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        from_pipeline_config(bad)


def test_pci_bus_ids_normalise() -> None:
    assert _norm_bus("00000000:01:00.0") == _norm_bus("0000:01:00.0") == "0000:01:00.0"
    assert _norm_bus(b"00000000:C1:00.0") == "0000:c1:00.0"


def test_sample_without_gpu_is_clean() -> None:
    s = sample()
    assert isinstance(s["available"], bool) and isinstance(s["devices"], list)
    if not s["available"]:
        assert s["reason"].startswith("no GPU")


def test_lock_refuses_live_holder_and_takes_over_dead_one(tmp_path: Path) -> None:
    path = tmp_path / "runs" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from engine.workspace.lock import WorkspaceLock\n"
        "WorkspaceLock(%r).acquire('run-A'); print('locked', flush=True); time.sleep(30)"
    ) % (str(Path(__file__).resolve().parents[2]), str(path))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_holder(path)["run_id"] == "run-A"
        with pytest.raises(LockBusy) as e:
            WorkspaceLock(path).acquire("run-B")
        assert f"pid {holder.pid}" in str(e.value) and "run-A" in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(path) is None  # the kernel released it with the process
    lock = WorkspaceLock(path).acquire("run-B")
    assert lock.stale and lock.stale["run_id"] == "run-A" and lock.stale["pid"] == holder.pid
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    again = WorkspaceLock(path).acquire("run-C")
    assert again.stale is None  # a clean release is not reported as stale
    again.release()


def test_run_ids_sort_by_start_time_within_one_second():
    import time

    from engine.runtime.orchestrator import new_run_id

    ids = []
    for _ in range(20):
        ids.append(new_run_id())
        time.sleep(0.003)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_workspace_unknown_nodes_policy_reaches_the_data_checks(tmp_path):
    """The policy is passed to the checks (cfg.dsl.unknown_nodes); reading the config sets nothing."""
    from engine.dataset import rows
    from engine.workspace.workspace import Workspace, init_workspace

    row = {"instruction": "Make one.", "output": (
        "BLUEPRINT: BP_A\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\n"
        "NODE n2: MyStudioNode\nEXEC n1.Then -> n2.Execute\n")}
    reason, _ = rows.check_row(row)
    assert reason and "MyStudioNode" in reason
    ws_dir = tmp_path / "ws"
    init_workspace(ws_dir)
    config = ws_dir / "bpllm.toml"
    text = config.read_text(encoding="utf-8")
    assert 'unknown_nodes = "error"' in text
    config.write_text(text.replace('unknown_nodes = "error"', 'unknown_nodes = "warning"'), encoding="utf-8")
    before = dict(vars(rows))
    policy = Workspace(ws_dir).config.dsl.unknown_nodes
    assert policy == "warning"
    assert {k: v for k, v in vars(rows).items() if before.get(k) is not v} == {}, "reading config set a global"
    assert rows.check_row(row)[0] is not None  # the default is untouched by the read
    assert rows.check_row(row, policy)[0] is None


def test_atomic_write_keeps_the_mode_a_plain_write_would_give(tmp_path: Path) -> None:
    """mkstemp makes 0o600 files; a state file or lesson must not lose group/other read."""
    import stat

    from dsl.atomic import atomic_write_text

    plain = tmp_path / "plain.json"
    plain.write_text("{}")  # what open(..., "w") gives under this process's umask
    fresh = tmp_path / "fresh.json"
    atomic_write_text(fresh, "{}")
    assert stat.S_IMODE(fresh.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    shared = tmp_path / "lesson.json"
    shared.write_text("{}")
    shared.chmod(0o664)
    atomic_write_text(shared, '{"a": 1}')  # replacing a file keeps its own mode
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664
    assert shared.read_text() == '{"a": 1}'
