"""Console streams that survive their reader going away.

The TUI may quit and leave the engine running; a shell may pipe ``bpllm run``
into ``head``. Either way the engine's stdout/stderr lose their reader, and the
next write raises ``BrokenPipeError`` — from our console lines, but also from
tqdm bars, ``warnings`` and library prints deep inside a training step. A
days-long run must not die of that: the events file and the heartbeat are the
record, the console is a courtesy. So once a stream's pipe breaks, it goes quiet.
"""
from __future__ import annotations

import errno
import sys
from typing import Any, TextIO


class QuietOnBrokenPipe:
    """Wraps a text stream; after EPIPE every write and flush is a silent no-op."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.broken = False

    def _guard(self, fn: Any, *args: Any) -> Any:
        if self.broken:
            return None
        try:
            return fn(*args)
        except BrokenPipeError:
            self.broken = True
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EINVAL):
                raise
            self.broken = True
        return None

    def write(self, text: str) -> int:
        self._guard(self._stream.write, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_std_streams() -> None:
    """Replace sys.stdout/sys.stderr with broken-pipe-tolerant wrappers (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, QuietOnBrokenPipe):
            setattr(sys, name, QuietOnBrokenPipe(stream))
