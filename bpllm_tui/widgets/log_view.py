"""The engine log: bounded, filterable by level and substring, pause/follow.

Records live in :class:`~bpllm_tui.state.RunState` (a bounded deque); this widget
only shows them, so changing the filter re-renders from the buffer and pausing
never loses a line."""
from __future__ import annotations

import time
from collections import deque

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, RichLog, Static

from bpllm_tui.state import LEVELS, LogRecord, RunState
from bpllm_tui.widgets._theme import themed

_DIM = Style(dim=True)
LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "$warning", "error": "bold $error"}
SOURCE_STYLE = {"stderr": "$warning", "stdout": "", "tui": "$accent", "engine": ""}


class LogView(Vertical):
    DEFAULT_CSS = """
    LogView { height: 1fr; }
    LogView > #log-header { height: 1; }
    LogView > Input { display: none; height: 3; }
    LogView.-filtering > Input { display: block; }
    LogView > RichLog { height: 1fr; scrollbar-gutter: stable; overflow-x: hidden; }
    """

    MAX_PER_SYNC = 40
    BACKLOG = 2000  # lines painted per refresh tick (10/s): a flood never freezes a frame

    def __init__(self, *, max_lines: int = 5000, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.max_lines = max_lines
        self.min_level = "debug"
        self.needle = ""
        self.follow = True
        self._seen = 0
        self._state: RunState | None = None
        self._styles: dict = {}
        self._pending: deque[LogRecord] = deque(maxlen=self.BACKLOG)
        self._skipped = 0
        self._painted_width = 0

    def on_mount(self) -> None:
        self.set_interval(0.05, self._drain)

    def compose(self) -> ComposeResult:
        yield Static("", id="log-header")
        yield Input(placeholder="filter log (Enter/Esc to close)", id="log-filter")
        yield RichLog(max_lines=self.max_lines, wrap=True, markup=False, auto_scroll=True, id="log-lines")

    @property
    def lines(self) -> RichLog:
        return self.query_one("#log-lines", RichLog)

    def _matches(self, rec: LogRecord) -> bool:
        if LEVELS.index(rec.level) < LEVELS.index(self.min_level):
            return False
        return not self.needle or self.needle.lower() in rec.text.lower()

    def _style(self, spec: str):
        key = (self.app.theme, spec)
        style = self._styles.get(key)
        if style is None:
            style = self._styles[key] = themed(self.app, spec)
        return style

    def _format(self, rec: LogRecord) -> Table:
        """Time, then the message wrapped under itself: a long line is never cut at the panel's edge."""
        text = Text(overflow="fold")
        if rec.source != "engine":
            text.append(f"{rec.source}: ", self._style(SOURCE_STYLE.get(rec.source, "")))
        text.append(rec.text, self._style(LEVEL_STYLE.get(rec.level, "")))
        row = Table.grid()
        row.add_column(width=9, no_wrap=True)
        row.add_column(ratio=1)
        row.add_row(Text(time.strftime("%H:%M:%S ", time.localtime(rec.ts)), _DIM), text)
        return row

    def on_resize(self) -> None:
        """Lines are wrapped to the width they were painted at: repaint them at the new one."""
        if self._painted_width and self._width() != self._painted_width and self._state is not None and self.follow:
            self.sync(self._state, force=True)

    def _width(self) -> int:
        return self.lines.scrollable_content_region.width

    def sync(self, state: RunState, force: bool = False) -> None:
        self._state = state
        self._header(state)
        if not self.follow and not force:
            return
        new = state.log_total - self._seen
        if force or new > len(state.log) or new < 0:
            self.lines.clear()
            records = list(state.log)
        elif new == 0:
            return
        else:
            records = list(state.log)[-new:] if new else []
        self._seen = state.log_total
        if force:
            self._pending.clear()
            self._skipped = 0
        for rec in records:
            if self._matches(rec):
                if len(self._pending) == self._pending.maxlen:
                    self._skipped += 1
                self._pending.append(rec)
        self._drain()

    @property
    def settled(self) -> bool:
        """Every queued line is painted (tests and the benchmark wait for this): ours are written, and the
        RichLog holds none back until it knows its size (it defers writes made before its first layout)."""
        return not self._pending and not getattr(self.lines, "_deferred_renders", None)

    def _drain(self) -> None:
        """Paint at most MAX_PER_SYNC queued lines per tick, oldest first: a replayed or flooding log fills
        in over a few frames instead of freezing one. Beyond BACKLOG queued lines the oldest are skipped
        (they stay in the state's buffer; a filter change or p p re-renders them)."""
        if not self._pending or not self.follow:
            return
        log = self.lines
        if self._skipped:
            log.write(Text(f"… {self._skipped} lines skipped during a burst (kept in the buffer; "
                           "press p twice to re-render)", style="dim italic"), scroll_end=self.follow)
            self._skipped = 0
        width = self._width() or None  # None: the log has no size yet (RichLog defers the lines)
        if width:
            self._painted_width = width
        for _ in range(min(self.MAX_PER_SYNC, len(self._pending))):
            log.write(self._format(self._pending.popleft()), width=width, scroll_end=self.follow)

    def _header(self, state: RunState) -> None:
        parts = [f"log  {len(state.log)}/{self.max_lines} lines"]
        dropped = state.log_total - len(state.log)
        if dropped > 0:
            parts.append(f"({dropped} older dropped)")
        parts.append(f"level ≥ {self.min_level}")
        if self.needle:
            parts.append(f"filter “{self.needle}”")
        parts.append("FOLLOWING" if self.follow else "PAUSED (p to follow)")
        self.query_one("#log-header", Static).update(Text("  ".join(parts), style="dim" if self.follow else "bold"))

    def refilter(self) -> None:
        if self._state is not None:
            self.sync(self._state, force=True)

    def toggle_follow(self) -> None:
        self.follow = not self.follow
        self.lines.auto_scroll = self.follow
        if self._state is not None:
            if self.follow:
                self.sync(self._state, force=True)
            else:
                self._header(self._state)

    def cycle_level(self) -> None:
        order = ("debug", "info", "warning", "error")
        self.min_level = order[(order.index(self.min_level) + 1) % len(order)]
        self.refilter()

    def open_filter(self) -> None:
        self.add_class("-filtering")
        field = self.query_one(Input)
        field.value = self.needle
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.needle = event.value
        self.refilter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.close_filter()

    def close_filter(self) -> None:
        self.remove_class("-filtering")
        self.lines.focus()

    def key_escape(self) -> None:
        if self.has_class("-filtering"):
            self.close_filter()
