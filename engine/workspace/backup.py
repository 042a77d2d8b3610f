"""Verified workspace backups: tiers, retention, a mirror, a SHA-256 manifest, safe restore.

Tiers: ``milestone`` (kept forever; every model version), ``pre_train`` (last
``backup.keep_pre_train``), ``scheduled`` (last ``backup.keep_scheduled``), ``watchdog``
(every ``backup.watchdog_hours`` of a run, last ``backup.keep_watchdog``) and ``safety``
(taken automatically before a restore and before a resume).  A backup is a directory
``backups/<tier>/<name>/`` holding ``files/`` (copies of the configured workspace paths),
``backup_log.txt`` (what was copied, what was left out and why), ``pip_freeze.txt`` (the
installed Python distributions) and ``manifest.json`` with every file's SHA-256 and size.
The manifest is written last (atomically), so a backup without one is incomplete and
ignored; the ``.partial`` staging folder of a backup that failed is removed by the next
backup or engine start.  With ``backup.mirror`` set, the finished backup is copied to the
mirror directory too.

Nothing leaves the workspace: ``include`` entries must be workspace-relative, symbolic links
that point outside it are not followed (the backup log and the ``backup`` event list them),
and ``restore`` refuses a backup whose manifest names a path outside the workspace.
``restore`` verifies every hash first and refuses on a mismatch naming the file, takes a
safety backup of the current state, then swaps each path in.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from dsl.errors import BpllmError
from engine.atomic import atomic_write_json, atomic_write_text, read_json, sha256_file
from engine.workspace.safe_paths import is_inside, relpath_problem

MANIFEST = "manifest.json"
BACKUP_LOG = "backup_log.txt"
PIP_FREEZE = "pip_freeze.txt"
TIERS = ("milestone", "pre_train", "scheduled", "watchdog", "safety")
KEEP_KEYS = {"pre_train": "keep_pre_train", "scheduled": "keep_scheduled", "watchdog": "keep_watchdog",
             "safety": "keep_safety"}
PARTIAL = ".partial"


class BackupError(BpllmError, RuntimeError):
    """A backup that cannot be taken, found or restored; the message says which and why."""


def include_problem(root: Path, rel: Any, *, through_links: bool = True) -> str | None:
    """Why a backup ``include`` entry would reach outside the workspace (None: it is safe).
    ``through_links``: also refuse an entry that a link in the workspace leads outside (restore
    would write there); a backup being taken skips such links instead, and reports them."""
    problem = relpath_problem(rel, "include entry")
    if problem:
        return problem
    if Path(rel).parts[0] == "backups":
        return f"include entry {rel!r} is inside backups/ (a backup cannot hold backups)"
    if through_links and not is_inside(root, rel):
        return f"include entry {rel!r} resolves outside the workspace (through a link)"
    return None


def _link_skip(root: Path, path: Path, skipped: list[str]) -> bool:
    """True (and noted in ``skipped``) for a link a backup must not follow: one out of the
    workspace, a broken one, or one to a folder (it could loop); a link to a file inside the
    workspace is copied as that file."""
    if not path.is_symlink():
        return False
    rel = path.relative_to(root).as_posix()
    target = os.readlink(path)
    if not is_inside(root, path):
        skipped.append(f"{rel} -> {target}: a link out of the workspace, not followed")
    elif not path.exists():
        skipped.append(f"{rel} -> {target}: a broken link")
    elif path.is_dir():
        skipped.append(f"{rel} -> {target}: a link to a folder, not followed")
    else:
        return False
    return True


def _copy_into(ws: Any, rel: str, dest_root: Path, skipped: list[str]) -> None:
    root = Path(ws.root)
    src = root / rel
    dst = dest_root / rel
    if not src.exists() and not src.is_symlink():
        return
    parts = Path(rel).parts
    for i in range(1, len(parts) + 1):  # a link anywhere along the way, outermost first
        if _link_skip(root, root.joinpath(*parts[:i]), skipped):
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
        plain = shutil.ignore_patterns("*.tmp", ".*.tmp", "__pycache__")

        def ignore(folder: str, names: list[str]) -> set[str]:
            out = set(plain(folder, names))
            return out | {n for n in names if n not in out and _link_skip(root, Path(folder) / n, skipped)}

        shutil.copytree(src, dst, ignore=ignore)
    else:
        shutil.copy2(src, dst)


def _walk_files(root: Path) -> tuple[list[Path], list[Path]]:
    """Regular files under ``root`` and the links found there (links are not followed)."""
    files, links = [], []
    for folder, dirs, names in os.walk(root):
        for n in dirs + names:
            p = Path(folder) / n
            if p.is_symlink():
                links.append(p)
            elif n in names and p.is_file():
                files.append(p)
    return sorted(files), sorted(links)


def _manifest_for(root: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``files/`` — whatever its name (a dataset's own manifest.json included)."""
    files: dict[str, dict[str, Any]] = {}
    for p in _walk_files(root)[0]:
        rel = p.relative_to(root).as_posix()
        files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return files


def installed_distributions() -> list[str]:
    """``name==version`` of every installed distribution, like ``pip freeze`` (read with
    importlib.metadata: offline and fast, no pip subprocess)."""
    from importlib.metadata import distributions

    seen: dict[str, str] = {}
    for dist in distributions():
        name = (dist.metadata.get("Name") or "").strip()
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return sorted(seen.values(), key=str.lower)


def _write_meta(staging: Path, manifest: dict[str, Any], skipped: list[str], cleaned: list[str]) -> dict[str, Any]:
    import platform
    import sys

    freeze = installed_distributions()
    atomic_write_text(staging / PIP_FREEZE,
                      f"# installed distributions at backup time (importlib.metadata, as `pip freeze`)\n"
                      f"# python {platform.python_version()} ({sys.executable})\n" + "\n".join(freeze) + "\n")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(manifest["created_at"]))
    lines = [f"backup {manifest['name']} (tier {manifest['tier']})", f"created  {when}",
             f"workspace {manifest['workspace']}", f"label    {manifest.get('label') or '-'}",
             f"step     {manifest.get('step') or '-'}", f"include  {', '.join(manifest['include'])}",
             f"files    {len(manifest['files'])} ({manifest['bytes']} bytes); SHA-256 of each in {MANIFEST}",
             f"python   {platform.python_version()}, {len(freeze)} distributions in {PIP_FREEZE}"]
    lines += [f"not copied: {s}" for s in skipped] or ["not copied: nothing (no links out of the workspace)"]
    lines += [f"removed a failed backup's leftover: {c}" for c in cleaned]
    atomic_write_text(staging / BACKUP_LOG, "\n".join(lines) + "\n")
    return {n: {"sha256": sha256_file(staging / n), "size": (staging / n).stat().st_size}
            for n in (BACKUP_LOG, PIP_FREEZE)}


def _mirror_dir(ws: Any) -> Path | None:
    mirror = ws.config.backup.mirror
    if not mirror:
        return None
    mdir = Path(mirror).expanduser()
    return mdir if mdir.is_absolute() else ws.root / mdir


def clean_partials(ws: Any) -> list[str]:
    """Remove the ``.partial`` staging folders failed or killed backups left (here, and in the mirror
    those of this workspace's backups); returns what was removed, with sizes, for the caller to
    report. Call it holding the workspace lock."""
    removed = []
    for mirrored, base in enumerate((ws.backups, _mirror_dir(ws))):
        for tier in TIERS:
            d = base / tier if base is not None else None
            if d is None or not d.is_dir():
                continue
            for p in sorted(d.glob(f".*{PARTIAL}")):
                if mirrored and not (ws.backups / tier / p.name[1:-len(PARTIAL)]).is_dir():
                    continue  # a mirror may be shared: only this workspace's own backups' copies
                if p.is_dir() and not p.is_symlink():
                    size = sum(f.stat().st_size for f in _walk_files(p)[0])
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    size = 0
                    p.unlink(missing_ok=True)
                removed.append(f"{p} ({size} bytes)")
    return removed


def create_backup(ws: Any, tier: str, *, label: str | None = None, events: Any = None,
                  step: str | None = None) -> dict[str, Any]:
    if tier not in TIERS:
        raise BackupError(f"unknown backup tier {tier!r} (tiers: {', '.join(TIERS)})")
    cfg = ws.config.backup
    for rel in cfg.include:
        problem = include_problem(ws.root, rel, through_links=False)
        if problem:
            raise BackupError(f"{ws.config_path}: backup.include: {problem}")
    cleaned = clean_partials(ws)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe_label = "".join(c if c.isalnum() or c in "-_." else "-" for c in (label or ""))[:40]
    name = f"{tier}-{stamp}" + (f"-{safe_label}" if safe_label else "")
    base = ws.backups / tier
    base.mkdir(parents=True, exist_ok=True)
    i = 1
    while (base / name).exists():
        i += 1
        name = f"{tier}-{stamp}-{i}" + (f"-{safe_label}" if safe_label else "")
    staging = base / f".{name}{PARTIAL}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    skipped: list[str] = []
    try:
        for rel in cfg.include:
            _copy_into(ws, rel, staging / "files", skipped)
        files = _manifest_for(staging / "files")
        manifest = {"name": name, "tier": tier, "created_at": time.time(), "label": label, "step": step,
                    "workspace": str(ws.root), "include": list(cfg.include), "files": files,
                    "bytes": sum(f["size"] for f in files.values()), "skipped": skipped}
        manifest["meta"] = _write_meta(staging, manifest, skipped, cleaned)
        atomic_write_json(staging / MANIFEST, manifest)
        final = base / name
        os.replace(staging, final)
    except OSError as exc:  # a full disk above all: give the room back now (a killed backup: next start)
        shutil.rmtree(staging, ignore_errors=True)
        left = f"; its unfinished copy {staging} could not be removed" if staging.exists() else \
            "; its unfinished copy was removed"
        raise BackupError(f"backup {name} failed: {_short(exc)}{left}") from exc
    mirror = mirror_error = None
    mdir = _mirror_dir(ws)
    if mdir is not None:
        mdst = mdir / tier / name
        mtmp = mdir / tier / f".{name}{PARTIAL}"
        try:
            if mtmp.exists():
                shutil.rmtree(mtmp)
            mtmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(final, mtmp)
            os.replace(mtmp, mdst)
            mirror = str(mdst)
        except OSError as exc:  # the backup itself is complete; say the mirror is not
            shutil.rmtree(mtmp, ignore_errors=True)
            mirror_error = f"could not mirror to {mdst}: {exc.strerror or exc}"
    pruned = prune(ws, tier)
    info = {"name": name, "tier": tier, "path": str(final), "files": len(files), "bytes": manifest["bytes"],
            "mirror": mirror, "pruned": pruned, "skipped": skipped, "cleaned": cleaned}
    if mirror_error:
        info["mirror_error"] = mirror_error
    if events is not None:
        events.emit("backup", action="create", step=step, **info)
    return info


def _short(exc: OSError) -> str:
    """One line for an OSError (shutil.Error carries a list of per-file errors)."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        errs = exc.args[0]
        first = errs[0] if errs else ("?", "?", "?")
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        return f"cannot copy {first[0]}: {first[2]}{more}"
    return f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}"


def prune(ws: Any, tier: str) -> list[str]:
    key = KEEP_KEYS.get(tier)
    if key is None:
        return []  # milestones are kept
    keep = getattr(ws.config.backup, key)  # a BackupSection field (KEEP_KEYS)
    items = [b for b in list_backups(ws) if b["tier"] == tier]
    items.sort(key=lambda b: b["created_at"])
    doomed = items[:-keep] if keep > 0 else items
    removed = []
    mdir = _mirror_dir(ws)
    for b in doomed:
        shutil.rmtree(b["path"], ignore_errors=True)
        if mdir is not None:
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


def verify_backup(path: Path, workspace: Path | None = None) -> list[str]:
    """Problems with a backup's files against its manifest (empty: verified). A manifest that
    names a path outside the workspace, or a link anywhere in the backup, is a problem too."""
    try:
        m = read_json(path / MANIFEST)
    except ValueError as exc:
        return [f"{path / MANIFEST}: not valid JSON ({exc})"]
    if not m:
        return [f"{path}: no {MANIFEST} (incomplete backup)"]
    if not isinstance(m.get("files"), dict) or not isinstance(m.get("include"), list):
        return [f"{path / MANIFEST}: no 'files' table or 'include' list (not a bpllm backup manifest)"]
    problems = []
    root = path / "files"
    ws_root = Path(workspace) if workspace is not None else path.parents[2]  # backups/<tier>/<name>
    for rel in m["include"]:
        problem = include_problem(ws_root, rel)
        if problem:
            problems.append(f"{problem}: restoring it would write outside the workspace; refusing this backup")
    checks = [(rel, root / rel, info) for rel, info in m["files"].items()]
    checks += [(rel, path / rel, info) for rel, info in (m.get("meta") or {}).items()]
    for rel, p, info in checks:
        problem = relpath_problem(rel, "file")
        if problem or not isinstance(info, dict):
            problems.append(problem or f"{rel}: no sha256/size in the manifest")
            continue
        if p.is_symlink() or not p.is_file():
            problems.append(f"{rel}: {'a link (backups hold none)' if p.is_symlink() else 'missing from the backup'}")
            continue
        size = p.stat().st_size
        if size != info.get("size"):
            problems.append(f"{rel}: size {size} != {info.get('size')} in the manifest")
            continue
        digest = sha256_file(p)
        if digest != info.get("sha256"):
            problems.append(f"{rel}: SHA-256 mismatch (manifest {str(info.get('sha256'))[:12]}…, file {digest[:12]}…)")
    files, links = _walk_files(root) if root.is_dir() else ([], [])
    for p in links:
        if p.relative_to(root).as_posix() not in m["files"]:
            problems.append(f"{p.relative_to(root).as_posix()}: a link (backups hold none)")
    extra = {p.relative_to(root).as_posix() for p in files} - set(m["files"])
    for rel in sorted(extra):
        problems.append(f"{rel}: not in the manifest")
    return problems


def restore_backup(ws: Any, name: str, *, events: Any = None) -> dict[str, Any]:
    """Verify, take a safety backup, then swap the backed-up paths into the workspace."""
    b = find_backup(ws, name)
    problems = verify_backup(Path(b["path"]), ws.root)
    if problems:
        raise BackupError(f"backup {name} failed verification; nothing was restored:\n  - " + "\n  - ".join(problems))
    m = read_json(Path(b["path"]) / MANIFEST)
    safety = create_backup(ws, "safety", label=f"before-restore-{name}"[:40], events=events)
    files_root = Path(b["path"]) / "files"
    restored = []
    for rel in m["include"]:
        if include_problem(ws.root, rel):  # verified above; checked again where the path is built
            raise BackupError(f"backup {name}: {include_problem(ws.root, rel)}; nothing more was restored")
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
