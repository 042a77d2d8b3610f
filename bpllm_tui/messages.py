"""Messages the engine client posts to the app from its threads (Textual's post_message is thread-safe)."""
from __future__ import annotations

from typing import Any

from textual.message import Message


class EngineEvents(Message):
    """A batch of events read from ``events.jsonl`` (plus descriptions of unreadable lines)."""

    def __init__(self, run_dir: str, events: list[dict[str, Any]], malformed: list[str], replay: bool,
                 reset: bool = False) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.events = events
        self.malformed = malformed
        self.replay = replay  # True while catching up on an existing file (attach)
        self.reset = reset  # the file was truncated or replaced: these events start from its first line


class EngineHeartbeat(Message):
    def __init__(self, beat: dict[str, Any] | None) -> None:
        super().__init__()
        self.beat = beat


class EngineOutput(Message):
    """Lines the engine process printed that are not already in its events (tracebacks, library chatter)."""

    def __init__(self, lines: list[tuple[str, str]]) -> None:
        super().__init__()
        self.lines = lines  # (stream, text)


class EngineAttached(Message):
    def __init__(self, run_dir: str, run_id: str, live: bool) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.run_id = run_id
        self.live = live


class EngineProcess(Message):
    """What we know about the engine process: running / exited (with code) / dead (pid gone, no end event)."""

    def __init__(self, process: str, code: int | None = None, note: str = "") -> None:
        super().__init__()
        self.process = process
        self.code = code
        self.note = note


class FollowerFailed(Message):
    """A thread that follows the engine (its events, heartbeat, output) died of an unexpected error: the
    dashboard would otherwise stop changing without a word."""

    FOLLOW_LOST = ("the dashboard no longer updates from the engine (its run goes on): "
                   "restart bpllm-tui to follow it again")

    def __init__(self, what: str, error: str, consequence: str = FOLLOW_LOST) -> None:
        super().__init__()
        self.what = what  # "events follower", "stdout reader", ...
        self.error = error  # "IsADirectoryError: [Errno 21] ... events.jsonl"
        self.consequence = consequence  # what no longer happens; "" for a one-off task


class CommandFinished(Message):
    """A short `bpllm` command (stop, init) the client ran on our behalf finished."""

    def __init__(self, name: str, code: int, output: str) -> None:
        super().__init__()
        self.name = name
        self.code = code
        self.output = output


class GpuSample(Message):
    """The TUI's own NVML reading (engine.runtime.telemetry.sample_gpus, no torch): what the GPU panel shows
    whenever no engine is sampling, from the first paint on."""

    def __init__(self, available: bool, devices: list[dict[str, Any]], reason: str | None) -> None:
        super().__init__()
        self.available = available
        self.devices = devices
        self.reason = reason
