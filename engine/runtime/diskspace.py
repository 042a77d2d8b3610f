"""A full disk: recognise it, say it in one line, and keep room for the run's last records.

On a 30 MB tmpfs that filled up, the engine's own error event was torn (half a line),
its heartbeat stayed "running" and the user got three chained ``OSError: [Errno 28]``
tracebacks. A run therefore claims a small reserve file in its run directory when it
starts (``RESERVE_BYTES``, allocated for real: ``posix_fallocate``, else written) and
deletes it before writing its final records (error event, run end, state, heartbeat),
which then fit even when the step that failed had used every last byte.
"""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

RESERVE_NAME = ".disk_reserve"
# the final records: an error event (its traceback is clipped to 20 k characters), the run's end
# event, state.json (a few KB), heartbeat.json and the history row; 1 MiB leaves ample headroom
RESERVE_BYTES = 1024 * 1024
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException | None) -> bool:
    """An out-of-space error: ENOSPC/EDQUOT, or SQLite's "database or disk is full" (history.db)."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
        return True
    return "no space left on device" in str(exc).lower()


def free_space(path: str | Path) -> str:
    """'12.0 KiB free on /mnt/x' for the filesystem holding ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "free space unknown"
    mount = p
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return f"{_size(free)} free on {mount}"


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def disk_full_message(command: str, exc: BaseException, *, path: str | Path | None = None, fix: str) -> str:
    """One line: what could not be written, how much room is left, and what to do."""
    target = path or getattr(exc, "filename", None) or "a file"
    return f"bpllm {command}: the disk is full: could not write {target} ({free_space(target)}). {fix}"


class DiskReserve:
    """``RESERVE_BYTES`` claimed in a directory while a run lasts, released to write its last records."""

    def __init__(self, directory: str | Path, size: int = RESERVE_BYTES):
        self.path = Path(directory) / RESERVE_NAME
        self.size = size
        self.held = False

    def claim(self) -> None:
        """Allocate the reserve (raises OSError ENOSPC when even that does not fit)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:
                if exc.errno in FULL_ERRNOS:
                    raise
                # no fallocate on this filesystem: write the bytes (random: a compressing
                # filesystem would store zeros in no space at all)
                os.lseek(fd, 0, os.SEEK_SET)
                left = self.size
                while left > 0:
                    left -= os.write(fd, os.urandom(min(left, 65536)))
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
            raise
        os.close(fd)
        self.held = True

    def release(self) -> None:
        """Give the room back (idempotent)."""
        self.held = False
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def remove_stale_reserves(runs_dir: str | Path, keep: Path | None = None) -> None:
    """Reserves left by engines that were killed (the caller holds the workspace lock, so no other
    engine of this workspace is running)."""
    for p in Path(runs_dir).glob(f"*/{RESERVE_NAME}"):
        if keep is None or p != keep:
            try:
                p.unlink()
            except OSError:
                pass
