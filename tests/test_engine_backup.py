"""Backups: manifest, tiers and retention, mirror, verification, restore with a safety backup."""
from __future__ import annotations

import json
import sqlite3
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
