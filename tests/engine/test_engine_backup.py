"""Backups: manifest, tiers and retention, mirror, verification, restore with a safety backup."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from test_engine_run import bpllm


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    assert bpllm("init", str(w)).returncode == 0
    toml = (w / "bpllm.toml").read_text().replace('mirror = ""', f'mirror = "{tmp_path / "mirror"}"')
    toml = toml.replace("keep_scheduled = 5", "keep_scheduled = 2")
    (w / "bpllm.toml").write_text(toml)
    return w


def _backups(ws: Path) -> list[dict]:
    r = bpllm("backups", "-w", str(ws), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_backup_manifest_mirror_and_retention(ws: Path, tmp_path: Path) -> None:
    r = bpllm("backup", "-w", str(ws), "--label", "first", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["tier"] == "milestone" and info["files"] >= 5
    m = json.loads((Path(info["path"]) / "manifest.json").read_text())
    assert "files/lessons/starter_01.json" not in m["files"] and "lessons/starter_01.json" in m["files"]
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    assert "history.db" in m["files"]
    sqlite3.connect(Path(info["path"]) / "files" / "history.db").execute("select * from runs").fetchall()
    assert Path(info["mirror"]).is_dir() and (Path(info["mirror"]) / "manifest.json").exists()
    for i in range(3):
        assert bpllm("backup", "-w", str(ws), "--tier", "scheduled", "--label", f"s{i}").returncode == 0
    items = _backups(ws)
    sched = [b for b in items if b["tier"] == "scheduled"]
    assert len(sched) == 2 and [b["label"] for b in sched] == ["s1", "s2"]  # keep_scheduled = 2
    assert len(list((tmp_path / "mirror" / "scheduled").iterdir())) == 2
    assert all("name" in b for b in items)
    r = bpllm("backups", "-w", str(ws), "--verify", "--json")
    assert all(b["verified"] for b in json.loads(r.stdout))


def test_restore_refuses_on_one_changed_byte_naming_the_file(ws: Path) -> None:
    info = json.loads(bpllm("backup", "-w", str(ws), "--json").stdout)
    victim = Path(info["path"]) / "files" / "lessons" / "starter_02.json"
    data = bytearray(victim.read_bytes())
    data[10] ^= 0x01
    victim.write_bytes(bytes(data))
    before = (ws / "lessons" / "starter_02.json").read_bytes()
    (ws / "lessons" / "starter_02.json").write_text("{}")  # the workspace changed since
    r = bpllm("restore", info["name"], "-w", str(ws), "--yes")
    assert r.returncode == 1
    assert "lessons/starter_02.json" in r.stderr and "SHA-256 mismatch" in r.stderr
    assert "nothing was restored" in r.stderr
    assert (ws / "lessons" / "starter_02.json").read_text() == "{}"
    assert not [b for b in _backups(ws) if b["tier"] == "safety"], "no safety backup when refusing"
    assert before != b"{}"


def test_restore_roundtrip_with_safety_backup(ws: Path) -> None:
    info = json.loads(bpllm("backup", "-w", str(ws), "--json").stdout)
    original = (ws / "lessons" / "starter_01.json").read_text()
    (ws / "lessons" / "starter_01.json").write_text('{"lesson_id": "edited", "prompts": []}')
    (ws / "lessons" / "new.json").write_text('{"lesson_id": "new", "prompts": []}')
    r = bpllm("restore", info["name"], "-w", str(ws))  # stdin is not a TTY: must ask for --yes
    assert r.returncode == 1 and "--yes" in r.stderr
    r = bpllm("restore", info["name"], "-w", str(ws), "--yes")
    assert r.returncode == 0, r.stderr
    assert (ws / "lessons" / "starter_01.json").read_text() == original
    assert not (ws / "lessons" / "new.json").exists()
    safety = [b for b in _backups(ws) if b["tier"] == "safety"]
    assert len(safety) == 1
    saved = Path(safety[0]["path"]) / "files" / "lessons" / "starter_01.json"
    assert "edited" in saved.read_text()
    r = bpllm("restore", "no-such-backup", "-w", str(ws), "--yes")
    assert r.returncode == 1 and "no backup named" in r.stderr


# ------------------------------------------------------------------ issue 13 / 14: backups that restore, stay inside
def _verify(ws: Path) -> tuple[int, list[dict]]:
    r = bpllm("backups", "-w", str(ws), "--verify", "--json")
    return r.returncode, json.loads(r.stdout)


def check_every_backup_restores_and_a_tampered_one_refuses(ws: Path) -> list[dict]:
    """Every backup of every tier verifies and restores (and so does each safety backup a restore
    takes); then one changed byte makes `backups --verify` exit 1 and `restore` refuse, naming the file.
    Also used after a whole cycle (tests/test_ml_e2e.py)."""
    code, items = _verify(ws)
    assert code == 0 and items and all(b["verified"] for b in items), items
    for b in items:
        r = bpllm("restore", b["name"], "-w", str(ws), "--yes", timeout=600)
        assert r.returncode == 0, r.stderr
    code, after = _verify(ws)
    assert code == 0 and len(after) > len(items), after
    newest_safety = [b for b in after if b["tier"] == "safety"][-1]
    assert bpllm("restore", newest_safety["name"], "-w", str(ws), "--yes", timeout=600).returncode == 0
    victim_rel = sorted(json.loads((Path(items[0]["path"]) / "manifest.json").read_text())["files"])[0]
    victim = Path(items[0]["path"]) / "files" / victim_rel
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    code, _ = _verify(ws)
    r = bpllm("backups", "-w", str(ws), "--verify")
    assert code == 1 and r.returncode == 1 and "FAILED" in r.stdout and "FAILED verification" in r.stderr
    r = bpllm("restore", items[0]["name"], "-w", str(ws), "--yes")
    assert r.returncode == 1 and f"{victim_rel}: SHA-256 mismatch" in r.stderr and "nothing was restored" in r.stderr
    return items


def test_backups_restore_once_step_1_5_wrote_datasets_manifest_and_tampering_still_refuses(ws: Path) -> None:
    """Step 1.5 writes datasets/manifest.json; a backup that left every file named manifest.json out of
    its file list verified as FAILED (while `backups --verify` exited 0) and never restored."""
    r = bpllm("run", "-w", str(ws), "--only", "1", "-q")
    assert r.returncode == 0, r.stderr
    data_manifest = ws / "datasets" / "manifest.json"
    original = data_manifest.read_text()
    assert bpllm("backup", "-w", str(ws), "--label", "m").returncode == 0
    assert bpllm("backup", "-w", str(ws), "--tier", "scheduled").returncode == 0
    items = _verify(ws)[1]
    assert all("datasets/manifest.json" in json.loads((Path(b["path"]) / "manifest.json").read_text())["files"]
               for b in items)
    data_manifest.write_text("{}")
    check_every_backup_restores_and_a_tampered_one_refuses(ws)
    assert data_manifest.read_text() == original


def test_a_backup_include_outside_the_workspace_is_refused(ws: Path, tmp_path: Path) -> None:
    outside = ws.parent / "outside_target.txt"
    outside.write_text("precious")
    info = json.loads(bpllm("backup", "-w", str(ws), "--json").stdout)
    bdir = Path(info["path"])
    m = json.loads((bdir / "manifest.json").read_text())
    m["include"].append("../outside_target.txt")
    (bdir / "manifest.json").write_text(json.dumps(m))
    (bdir / "outside_target.txt").write_text("pwned")  # beside files/: files/../outside_target.txt
    code, items = _verify(ws)
    assert code == 1 and not items[0]["verified"]
    assert any("'../outside_target.txt'" in p and "outside the workspace" in p for p in items[0]["problems"])
    r = bpllm("restore", info["name"], "-w", str(ws), "--yes")
    assert r.returncode == 1 and "../outside_target.txt" in r.stderr and "nothing was restored" in r.stderr
    assert outside.read_text() == "precious"
    for bad in ('"../outside_target.txt"', f'"{outside}"'):  # the config cannot name one either
        toml = (ws / "bpllm.toml").read_text()
        (ws / "bpllm.toml").write_text(toml.replace('include = ["bpllm.toml"', f'include = [{bad}, "bpllm.toml"'))
        r = bpllm("backup", "-w", str(ws))
        assert r.returncode == 1 and "backup.include" in r.stderr and "bpllm.toml" in r.stderr, r.stderr
        (ws / "bpllm.toml").write_text(toml)


def test_backups_do_not_follow_links_out_of_the_workspace_and_report_them(ws: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:secret")
    (tmp_path / "extdir").mkdir()
    (tmp_path / "extdir" / "rows.jsonl").write_text("secret rows")
    (ws / "lessons" / "passwd.json").symlink_to(secret)
    (ws / "datasets" / "ext").symlink_to(tmp_path / "extdir")
    (ws / "lessons" / "alias.json").symlink_to(ws / "lessons" / "starter_01.json")  # inside: copied as a file
    r = bpllm("backup", "-w", str(ws), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    files = Path(info["path"]) / "files"
    assert not (files / "lessons" / "passwd.json").exists() and not (files / "datasets" / "ext").exists()
    assert (files / "lessons" / "alias.json").read_bytes() == (ws / "lessons" / "starter_01.json").read_bytes()
    copied = b"".join(p.read_bytes() for p in files.rglob("*") if p.is_file())
    assert b"secret" not in copied
    assert any(s.startswith("lessons/passwd.json ->") and "out of the workspace" in s for s in info["skipped"])
    assert any(s.startswith("datasets/ext ->") for s in info["skipped"])
    log = (Path(info["path"]) / "backup_log.txt").read_text()
    assert "lessons/passwd.json" in log and "not followed" in log
    r = bpllm("backup", "-w", str(ws))
    assert "warning: not copied: lessons/passwd.json" in r.stdout
    assert _verify(ws)[0] == 0
    (files / "lessons" / "evil.json").symlink_to(secret)  # a tampered backup holding a link is refused
    code, items = _verify(ws)
    assert code == 1 and any("lessons/evil.json: a link" in p for b in items for p in b.get("problems", []))


def test_a_failed_backup_removes_its_unfinished_copy_and_says_so(ws: Path) -> None:
    """A real failure mid-copy: a socket in lessons/ cannot be copied."""
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(ws / "lessons" / "sock.json"))
    s.close()
    r = bpllm("backup", "-w", str(ws))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "lessons/sock.json" in r.stderr and "its unfinished copy was removed" in r.stderr
    assert not [p for p in (ws / "backups" / "milestone").iterdir()]


def _kill_a_backup(ws: Path) -> None:
    """A backup killed (-9) mid-copy leaves its .partial staging folder behind."""
    import signal

    from test_engine_run import start

    p = start("backup", "-w", str(ws))
    partial: list[Path] = []
    while p.poll() is None and not partial:
        time.sleep(0.005)
        partial = list((ws / "backups" / "milestone").glob(".*.partial")) if (ws / "backups" / "milestone").is_dir() \
            else []
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert partial and partial[0].exists(), "the backup finished before it could be killed"


def test_killed_backups_partial_folders_are_cleaned_at_the_next_backup_and_engine_start(ws: Path) -> None:
    many = ws / "datasets" / "sources" / "many"  # enough files that the copy takes a while
    many.mkdir()
    for i in range(1500):
        (many / f"{i}.txt").write_text(str(i))
    _kill_a_backup(ws)
    r = bpllm("backup", "-w", str(ws), "--json")
    info = json.loads(r.stdout)
    assert len(info["cleaned"]) == 1 and ".partial" in info["cleaned"][0]
    assert not list((ws / "backups" / "milestone").glob(".*.partial"))
    assert "removed a failed backup's leftover" in (Path(info["path"]) / "backup_log.txt").read_text()
    _kill_a_backup(ws)
    r = bpllm("run", "-w", str(ws), "--only", "1.1", "-q", "--events-stdout")
    assert r.returncode == 0, r.stderr
    assert not list((ws / "backups" / "milestone").glob(".*.partial"))
    logs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert any(e["type"] == "log" and "unfinished backup folder" in e["message"] for e in logs)


def test_each_backup_holds_its_log_and_a_pip_freeze_snapshot(ws: Path) -> None:
    from importlib.metadata import version

    info = json.loads(bpllm("backup", "-w", str(ws), "--label", "meta", "--json").stdout)
    bdir = Path(info["path"])
    freeze = (bdir / "pip_freeze.txt").read_text().splitlines()
    assert f"textual=={version('textual')}" in freeze and f"lark=={version('lark')}" in freeze
    log = (bdir / "backup_log.txt").read_text()
    assert info["name"] in log and "milestone" in log and f"{info['files']} (" in log
    meta = json.loads((bdir / "manifest.json").read_text())["meta"]
    assert set(meta) == {"backup_log.txt", "pip_freeze.txt"}
    (bdir / "backup_log.txt").write_text(log + "edited\n")
    code, items = _verify(ws)
    assert code == 1 and "backup_log.txt: size" in items[0]["problems"][0]


def test_status_warns_without_a_mirror_and_init_documents_it(tmp_path: Path) -> None:
    w = tmp_path / "plain"
    r = bpllm("init", str(w))
    assert r.returncode == 0 and "[backup] mirror" in r.stdout
    assert "mirror" in (w / "bpllm.toml").read_text() and "another disk" in (w / "bpllm.toml").read_text()
    r = bpllm("status", "-w", str(w))
    assert r.returncode == 0 and "warning: no backup mirror" in r.stderr
    assert any("no backup mirror" in x for x in json.loads(bpllm("status", "-w", str(w), "--json").stdout)["warnings"])
    toml = (w / "bpllm.toml").read_text().replace('mirror = ""', f'mirror = "{tmp_path / "m"}"')
    (w / "bpllm.toml").write_text(toml)
    r = bpllm("status", "-w", str(w))
    assert r.returncode == 0 and "mirror" not in r.stderr


def _run_events(ws: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((ws / "runs").glob("*/events.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


def test_watchdog_backups_during_a_long_run_are_mirrored_and_kept(ws: Path, tmp_path: Path) -> None:
    """backup.watchdog_hours tiny (0.0002 h = 0.72 s) and a step slowed to 8 s: watchdog backups
    are taken while it runs, mirrored, pruned to keep_watchdog, and each restores."""
    toml = (ws / "bpllm.toml").read_text().replace("watchdog_hours = 6.0", "watchdog_hours = 0.0002")
    (ws / "bpllm.toml").write_text(toml.replace("keep_watchdog = 5", "keep_watchdog = 2"))
    from test_engine_run import _env

    r = bpllm("run", "-w", str(ws), "--only", "1", "-q", env=_env(BPLLM_TEST_SLOW_STEPS="1.3=8"))
    assert r.returncode == 0, r.stderr
    taken = [e for e in _run_events(ws) if e["type"] == "backup" and e["tier"] == "watchdog"]
    assert len(taken) >= 2
    assert any(e.get("step") == "1.3" for e in taken), "taken while the long step runs, not only between steps"
    kept = [b for b in _backups(ws) if b["tier"] == "watchdog"]
    assert len(kept) == 2 and len(list((tmp_path / "mirror" / "watchdog").iterdir())) == 2
    assert _verify(ws)[0] == 0
    assert bpllm("restore", kept[-1]["name"], "-w", str(ws), "--yes").returncode == 0


def test_resume_takes_a_safety_backup_first(ws: Path) -> None:
    from test_engine_run import _env

    r = bpllm("run", "-w", str(ws), "--only", "1", "-q", env=_env(BPLLM_TEST_INJECT="1.4=disk_full"))
    assert r.returncode == 1
    run_id = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)["run_id"]
    assert not [b for b in _backups(ws) if b["tier"] == "safety"]
    r = bpllm("resume", "-w", str(ws), "-q")
    assert r.returncode == 0, r.stderr
    safety = [b for b in _backups(ws) if b["tier"] == "safety"]
    assert len(safety) == 1 and safety[0]["label"] == f"before-resume-{run_id}"
    ev = [e for e in _run_events(ws) if e["type"] == "backup"]
    assert ev and ev[0]["tier"] == "safety"
    assert _verify(ws)[0] == 0
