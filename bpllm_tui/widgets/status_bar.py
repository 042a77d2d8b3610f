"""One line that says whether the engine is alive: run id, profile, phase, heartbeat age
(with a stall warning), elapsed, ETA and the exit status."""
from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from bpllm_tui.state import RunState, format_duration
from bpllm_tui.widgets._theme import themed

STATUS_STYLE = {
    "idle": "dim",
    "running": "bold $success",
    "stopping": "bold $warning",
    "done": "bold $success",
    "stopped": "bold $warning",
    "failed": "bold $error",
    "dead": "bold reverse $error",
}


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; }
    """

    def __init__(self, *, stall_seconds: float = 120.0, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.stall_seconds = stall_seconds

    def sync(self, state: RunState) -> None:
        now = time.time()
        status = state.status
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" {status.upper()} ", themed(self.app, STATUS_STYLE.get(status, "")))
        if state.core.exit_code is not None and status in ("done", "stopped", "failed"):
            text.append(f"(exit {state.core.exit_code}) ", "dim")
        if self.size.width >= 100:  # at 80 columns the run id gives way to the heartbeat, elapsed and ETA
            text.append(" run ", "dim")
            text.append(state.run_id or "—")
        text.append("  profile ", "dim")
        text.append(state.core.profile or state.workspace_profile or "—")  # the run's, else the next run's
        text.append("  phase ", "dim")
        text.append(state.phase)
        age = state.heartbeat_age(now) if state.active or state.status == "dead" else None
        text.append("  ♥ ", "dim")
        if age is None:
            text.append("—")
        else:
            stalled = state.active and (age > self.stall_seconds or (state.stall is not None))
            progress = state.progress_age(now)
            label = format_duration(age)
            if state.active and progress is not None and progress > self.stall_seconds:
                stalled = True
                label += f" (no progress {format_duration(progress)})"
            text.append(label, themed(self.app, "bold $error") if stalled else "")
            if stalled:
                text.append(" STALL?", themed(self.app, "bold $error"))
        text.append("  elapsed ", "dim")
        text.append(format_duration(state.elapsed(now)))
        text.append("  ETA ", "dim")
        text.append(state.eta_text(now=now))
        if state.process == "dead":
            text.append(f"  {state.process_note}", themed(self.app, "$error"))
        self.update(text)
