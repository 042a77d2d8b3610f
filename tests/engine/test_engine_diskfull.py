"""A full disk (issue 13, item 8), on a real filesystem that fills up: a 30 MB tmpfs.

Mounting needs root (CAP_SYS_ADMIN); where the mount is refused those tests skip and say so, and the
tests at the end hit a real ENOSPC from the kernel another way (/dev/full) on the same code paths:
an event is written whole or not at all, and a run with no room for its reserve says so in one line.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from engine.runtime.diskspace import RESERVE_NAME, DiskReserve
from engine.runtime.events import EventWriter
from tests.engine.test_engine_run import _env, bpllm, heartbeat, run_dirs, start, wait_for

MOUNT_SKIP = "cannot mount a 30 MB tmpfs here ({}): needs root with CAP_SYS_ADMIN; the /dev/full tests below cover the same paths"


@pytest.fixture
def disk(tmp_path: Path):
    """A fresh 30 MB tmpfs (the issue's repro), unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mnt)], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(MOUNT_SKIP.format(exc))
    if r.returncode != 0:
        pytest.skip(MOUNT_SKIP.format(r.stderr.strip() or f"mount exited {r.returncode}"))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(mnt: Path, leave: int = 0) -> Path:
    """Fill the filesystem (a real ENOSPC ends the write), then give ``leave`` bytes back."""
    filler = mnt / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "ab", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(chunk[:size])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def quick_ws(path: Path) -> Path:
    r = bpllm("init", str(path))
    assert r.returncode == 0, r.stderr
    toml = (path / "bpllm.toml").read_text()
    (path / "bpllm.toml").write_text(toml.replace("count = 500", "count = 60").replace("interval_s = 2.0", "interval_s = 0.2"))
    return path


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def all_events(run_dir: Path) -> list[dict]:
    """Every line of events.jsonl parses (none torn) and seq has no gap."""
    evs = [json.loads(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    return evs


def test_init_on_a_full_disk_creates_nothing_and_says_so_in_one_line(disk: Path) -> None:
    filler = fill(disk, leave=40 * 1024)
    r = bpllm("init", str(disk / "a" / "ws"))
    assert r.returncode == 1
    msg = one_line(r.stderr)
    assert msg.startswith("bpllm init: the disk is full: could not write ") and "nothing was created" in msg
    assert f"free on {disk}" in msg and "run `bpllm init` again" in msg
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # all or nothing
    (disk / "empty").mkdir()
    r = bpllm("init", str(disk / "empty"))
    assert r.returncode == 1 and "the disk is full" in one_line(r.stderr)
    assert not list((disk / "empty").iterdir())
    filler.unlink()
    assert bpllm("init", str(disk / "empty")).returncode == 0
    assert (disk / "empty" / "bpllm.toml").is_file() and (disk / "empty" / "history.db").is_file()


def test_a_disk_that_fills_mid_run_ends_it_with_a_whole_error_event_a_final_heartbeat_and_resumes(disk: Path) -> None:
    ws = quick_ws(disk / "ws")
    p = start("run", "-w", str(ws), "--only", "1,2", env=_env(BPLLM_TEST_SLOW_STEPS="1.3=60"))
    try:
        wait_for(lambda: (h := heartbeat(ws)) and h.get("step") == "1.3", 60, "step 1.3")
        filler = fill(disk)  # another process takes the last byte while the step runs
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 1, err
    assert "Traceback" not in out + err
    rd = run_dirs(ws)[-1]
    evs = all_events(rd)
    errors = [e for e in evs if e["type"] == "error"]
    assert [e["category"] for e in errors] == ["disk_full"] and errors[0]["step"] == "1.3"
    assert "No space left on device" in errors[0]["message"] and str(rd / "events.jsonl") in errors[0]["message"]
    end = evs[-1]
    assert end["type"] == "run" and end["phase"] == "end" and end["status"] == "failed" and end["exit_code"] == 1
    assert "bpllm resume" in end["message"] and "[RUN] failed (exit 1): step 1.3 failed (disk_full)" in out
    hb = json.loads((rd / "heartbeat.json").read_text())
    assert hb["status"] == "failed" and hb["phase"] == "exited"
    state = json.loads((rd / "state.json").read_text())
    assert state["status"] == "failed" and state["failure"]["category"] == "disk_full" and "1:1.3" not in state["done"]
    assert not (rd / RESERVE_NAME).exists()
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["status"] == "failed" and st["resumable"] and not st["active"]

    filler.unlink()
    r = bpllm("resume", "-w", str(ws), timeout=300)
    assert r.returncode == 0, r.stderr
    evs = all_events(rd)
    assert evs[-1]["status"] == "done"
    assert next(e for e in evs if e["type"] == "run" and e["phase"] == "resume")["resume_from"] == "1.3"
    assert not (rd / RESERVE_NAME).exists()


def test_run_and_resume_on_a_full_disk_say_so_in_one_line_and_change_nothing(disk: Path) -> None:
    ws = quick_ws(disk / "ws")
    r = bpllm("run", "-w", str(ws), "--only", "1,2", env=_env(BPLLM_TEST_INJECT="1.3=disk_full*1"))
    assert r.returncode == 1
    rd = run_dirs(ws)[-1]
    state_before = (rd / "state.json").read_bytes()
    events_before = (rd / "events.jsonl").read_bytes()
    filler = fill(disk, leave=40 * 1024)

    r = bpllm("resume", "-w", str(ws))
    assert r.returncode == 1
    msg = one_line(r.stderr)
    assert msg.startswith("bpllm resume: the disk is full: ") and f"free on {disk}" in msg
    assert msg.endswith(f"Free space, then `bpllm resume {rd.name}`.")
    assert (rd / "state.json").read_bytes() == state_before and (rd / "events.jsonl").read_bytes() == events_before

    r = bpllm("run", "-w", str(ws), "--only", "1,2")
    assert r.returncode == 1
    msg = one_line(r.stderr)
    assert msg.startswith("bpllm run: the disk is full: ") and "run `bpllm run` again" in msg
    assert run_dirs(ws) == [rd]  # the refused run left no directory behind
    assert json.loads((ws / "runs" / ".lock").read_text())["active"] is False

    filler.unlink()
    r = bpllm("resume", "-w", str(ws), timeout=300)
    assert r.returncode == 0, r.stderr
    assert all_events(rd)[-1]["status"] == "done"


# ---------------------------------------------------------------- a real ENOSPC without mounting: /dev/full
needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")


@needs_dev_full
def test_an_event_is_written_whole_or_not_at_all_at_a_real_enospc(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, "r1")
    w.emit("log", level="info", message="before")
    fd = w._fh.fileno()
    saved = os.dup(fd)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, fd)  # the kernel now answers every write of the events file with ENOSPC
    try:
        with pytest.raises(OSError) as info:
            w.emit("error", category="disk_full", message="x" * 50_000)
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(w.path)
        assert w.seq == 1
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(full)
    w.emit("log", level="info", message="after")
    w.close()
    evs = all_events(tmp_path)
    assert [e.get("message") for e in evs] == ["before", "after"]


@needs_dev_full
def test_a_resume_with_no_room_for_its_reserve_says_so_in_one_line(tmp_path: Path) -> None:
    ws = quick_ws(tmp_path / "ws")
    r = bpllm("run", "-w", str(ws), "--only", "1", env=_env(BPLLM_TEST_INJECT="1.3=disk_full*1"))
    assert r.returncode == 1
    rd = run_dirs(ws)[-1]
    state_before = (rd / "state.json").read_bytes()
    (rd / RESERVE_NAME).symlink_to("/dev/full")  # claiming the reserve meets a real ENOSPC
    r = bpllm("resume", "-w", str(ws))
    assert r.returncode == 1
    msg = one_line(r.stderr)
    assert msg.startswith("bpllm resume: the disk is full: no room for the 1024 KiB a run keeps for its final records")
    assert msg.endswith(f"Free space, then `bpllm resume {rd.name}`.")
    assert (rd / "state.json").read_bytes() == state_before
    assert not (rd / RESERVE_NAME).is_symlink()
    r = bpllm("resume", "-w", str(ws), timeout=300)
    assert r.returncode == 0, r.stderr


@needs_dev_full
def test_the_reserve_is_claimed_for_real_and_refused_at_enospc(tmp_path: Path) -> None:
    res = DiskReserve(tmp_path, size=256 * 1024)
    res.claim()
    assert res.path.stat().st_size == 256 * 1024 and res.path.stat().st_blocks * 512 >= 256 * 1024
    res.release()
    assert not res.path.exists()
    res.path.symlink_to("/dev/full")
    with pytest.raises(OSError) as info:
        res.claim()
    assert info.value.errno == errno.ENOSPC and not res.held


def test_a_run_leaves_no_reserve_behind_and_frees_those_of_killed_engines(tmp_path: Path) -> None:
    ws = quick_ws(tmp_path / "ws")
    killed = ws / "runs" / "20000101-000000-000aa" / RESERVE_NAME  # an engine killed with -9 left it
    killed.parent.mkdir(parents=True)
    killed.write_bytes(b"\0" * 4096)
    r = bpllm("run", "-w", str(ws), "--only", "1.1")
    assert r.returncode == 0, r.stderr
    assert not killed.exists()
    assert not list((ws / "runs").glob(f"*/{RESERVE_NAME}"))
