"""Verified workspace backups: tiers, retention, a mirror, a SHA-256 manifest, safe restore.

Tiers: ``milestone`` (kept forever; every model version), ``pre_train`` (last
``backup.keep_pre_train``), ``scheduled`` (last ``backup.keep_scheduled``) and
``safety`` (taken automatically before a restore).  A backup is a directory
``backups/<tier>/<name>/`` holding copies of the configured workspace paths and
``manifest.json`` with every file's SHA-256 and size.  The manifest is written last
(atomically), so a backup without one is incomplete and ignored.  With
``backup.mirror`` set, the finished backup is copied to the mirror directory too.

``restore`` verifies every hash first and refuses on a mismatch naming the file,
takes a safety backup of the current state, then swaps each path in.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write_json, read_json

MANIFEST = "manifest.json"
TIERS = ("milestone", "pre_train", "scheduled", "safety")
KEEP_KEYS = {"pre_train": "keep_pre_train", "scheduled": "keep_scheduled", "safety": "keep_safety"}


class BackupError(RuntimeError):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_into(ws: Any, rel: str, dest_root: Path) -> None:
    src = ws.root / rel
    dst = dest_root / rel
    if not src.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if rel == "history.db" or src.suffix == ".db":
        # a consistent snapshot of a live WAL database (the engine may be writing)
        s = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        d = sqlite3.connect(str(dst))
        try:
            s.backup(d)
            d.execute("PRAGMA journal_mode=DELETE")  # a standalone file: opening the copy creates no -wal/-shm
        finally:
            d.close()
            s.close()
        return
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.tmp", ".*.tmp", "__pycache__"))
    else:
        shutil.copy2(src, dst)


def _manifest_for(root: Path) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(root).as_posix()
            files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return files


def create_backup(ws: Any, tier: str, *, label: str | None = None, events: Any = None,
                  step: str | None = None) -> dict[str, Any]:
    if tier not in TIERS:
        raise BackupError(f"unknown backup tier {tier!r} (tiers: {', '.join(TIERS)})")
    cfg = ws.config["backup"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe_label = "".join(c if c.isalnum() or c in "-_." else "-" for c in (label or ""))[:40]
    name = f"{tier}-{stamp}" + (f"-{safe_label}" if safe_label else "")
    base = ws.backups / tier
    base.mkdir(parents=True, exist_ok=True)
    i = 1
    while (base / name).exists():
        i += 1
        name = f"{tier}-{stamp}-{i}" + (f"-{safe_label}" if safe_label else "")
    staging = base / f".{name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    for rel in cfg["include"]:
        _copy_into(ws, rel, staging / "files")
    files = _manifest_for(staging / "files")
    manifest = {"name": name, "tier": tier, "created_at": time.time(), "label": label, "step": step,
                "workspace": str(ws.root), "include": list(cfg["include"]), "files": files,
                "bytes": sum(f["size"] for f in files.values())}
    atomic_write_json(staging / MANIFEST, manifest)
    final = base / name
    os.replace(staging, final)
    mirror = None
    if cfg.get("mirror"):
        mdir = Path(cfg["mirror"]).expanduser()
        if not mdir.is_absolute():
            mdir = ws.root / mdir
        mdst = mdir / tier / name
        mtmp = mdir / tier / f".{name}.partial"
        if mtmp.exists():
            shutil.rmtree(mtmp)
        mtmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(final, mtmp)
        os.replace(mtmp, mdst)
        mirror = str(mdst)
    pruned = prune(ws, tier)
    info = {"name": name, "tier": tier, "path": str(final), "files": len(files), "bytes": manifest["bytes"],
            "mirror": mirror, "pruned": pruned}
    if events is not None:
        events.emit("backup", action="create", step=step, **info)
    return info


def prune(ws: Any, tier: str) -> list[str]:
    key = KEEP_KEYS.get(tier)
    if key is None:
        return []  # milestones are kept
    keep = int(ws.config["backup"][key])
    items = [b for b in list_backups(ws) if b["tier"] == tier]
    items.sort(key=lambda b: b["created_at"])
    doomed = items[:-keep] if keep > 0 else items
    removed = []
    mirror = ws.config["backup"].get("mirror")
    for b in doomed:
        shutil.rmtree(b["path"], ignore_errors=True)
        if mirror:
            mdir = Path(mirror).expanduser()
            mdir = mdir if mdir.is_absolute() else ws.root / mdir
            shutil.rmtree(mdir / tier / b["name"], ignore_errors=True)
        removed.append(b["name"])
    return removed


def list_backups(ws: Any) -> list[dict[str, Any]]:
    out = []
    for tier in TIERS:
        d = ws.backups / tier
        if not d.is_dir():
            continue
        for b in d.iterdir():
            if not b.is_dir() or b.name.startswith("."):
                continue
            try:
                m = read_json(b / MANIFEST)
            except ValueError:
                m = None
            if not m:
                out.append({"name": b.name, "tier": tier, "path": str(b), "created_at": b.stat().st_mtime,
                            "files": None, "bytes": None, "complete": False})
                continue
            out.append({"name": m["name"], "tier": tier, "path": str(b), "created_at": m["created_at"],
                        "files": len(m["files"]), "bytes": m["bytes"], "label": m.get("label"),
                        "step": m.get("step"), "complete": True})
    out.sort(key=lambda b: b["created_at"])
    return out


def find_backup(ws: Any, name: str) -> dict[str, Any]:
    for b in list_backups(ws):
        if b["name"] == name:
            return b
    names = [b["name"] for b in list_backups(ws)]
    raise BackupError(f"no backup named {name!r} in {ws.backups}" +
                      (f"; available: {', '.join(names[-5:])}" if names else "; there are no backups yet"))


def verify_backup(path: Path) -> list[str]:
    """Problems with a backup's files against its manifest (empty: verified)."""
    try:
        m = read_json(path / MANIFEST)
    except ValueError as exc:
        return [f"{path / MANIFEST}: not valid JSON ({exc})"]
    if not m:
        return [f"{path}: no {MANIFEST} (incomplete backup)"]
    problems = []
    root = path / "files"
    for rel, info in m["files"].items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: missing from the backup")
            continue
        size = p.stat().st_size
        if size != info["size"]:
            problems.append(f"{rel}: size {size} != {info['size']} in the manifest")
            continue
        digest = sha256_file(p)
        if digest != info["sha256"]:
            problems.append(f"{rel}: SHA-256 mismatch (manifest {info['sha256'][:12]}…, file {digest[:12]}…)")
    extra = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - set(m["files"])
    for rel in sorted(extra):
        problems.append(f"{rel}: not in the manifest")
    return problems


def restore_backup(ws: Any, name: str, *, events: Any = None) -> dict[str, Any]:
    """Verify, take a safety backup, then swap the backed-up paths into the workspace."""
    b = find_backup(ws, name)
    problems = verify_backup(Path(b["path"]))
    if problems:
        raise BackupError(f"backup {name} failed verification; nothing was restored:\n  - " + "\n  - ".join(problems))
    m = read_json(Path(b["path"]) / MANIFEST)
    safety = create_backup(ws, "safety", label=f"before-restore-{name}"[:40], events=events)
    files_root = Path(b["path"]) / "files"
    restored = []
    for rel in m["include"]:
        src = files_root / rel
        dst = ws.root / rel
        if not src.exists():
            continue
        tmp = dst.with_name(f".{dst.name}.restore-tmp")
        old = dst.with_name(f".{dst.name}.restore-old")
        for p in (tmp, old):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        if src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copy2(src, tmp)
        if rel.endswith(".db"):
            for suffix in ("-wal", "-shm"):
                side = dst.with_name(dst.name + suffix)
                if side.exists():
                    side.unlink()
        if dst.exists():
            os.replace(dst, old)
        os.replace(tmp, dst)
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        restored.append(rel)
    info = {"name": name, "tier": b["tier"], "restored": restored, "safety_backup": safety["name"]}
    if events is not None:
        events.emit("backup", action="restore", name=name, tier=b["tier"], files=len(m["files"]), path=b["path"])
    return info
