"""Atomic file writes: a reader (the TUI, a resumed engine, an editor) never sees half a file.

Every state file the engine owns goes through here: write a temp file in the same
directory, flush + fsync it, then ``os.replace`` it over the target.  A crash
leaves either the old file or the new one, plus at worst a stray ``.tmp`` file
that :func:`clean_temp_files` removes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def _target_mode(path: Path) -> int:
    """The mode the file would have had from a plain ``open(path, "w")``: an existing file keeps
    its own, a new one gets 0o666 less the umask (``mkstemp`` alone would leave 0o600, hiding
    lessons and reports from the user's group and tools)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, _target_mode(path))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write names no file: name the target
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | Path, obj: Any, *, fsync: bool = True, indent: int | None = 2) -> None:
    text = json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False, default=_json_default)
    atomic_write_text(path, text + "\n", fsync=fsync)


def atomic_write_jsonl(path: str | Path, rows: list[Any], *, fsync: bool = True) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows)
    atomic_write_text(path, text, fsync=fsync)


def read_json(path: str | Path, default: Any = None) -> Any:
    """Read a JSON state file; a missing file gives ``default`` (a corrupt one raises)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default


def clean_temp_files(directory: str | Path) -> list[Path]:
    """Remove temp files a crash left behind (``.name.XXXX.tmp``); returns what was removed."""
    removed: list[Path] = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for p in directory.rglob(f".*{TMP_SUFFIX}"):
        if p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):  # numpy / torch scalars
        try:
            return obj.item()
        except Exception:  # noqa: BLE001 - not a scalar after all (a multi-element tensor): written as str below
            pass
    return str(obj)


def sha256_file(path: str | Path) -> str:
    """A file's SHA-256, read in 1 MiB chunks (backups, .blend provenance and new-export detection share it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
