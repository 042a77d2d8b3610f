"""The control room: step tree, GPUs, loss chart, node mastery, log and a status bar.

Widgets never see events: the app folds them into :class:`RunState` and this screen
repaints the areas whose version changed, at most ten times a second."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from rich.text import Text
from textual.widgets import Footer, Static

from bpllm_tui.keys import DASHBOARD_KEYS, bindings
from bpllm_tui.state import RunState
from bpllm_tui.widgets.gpu_panel import GpuPanel
from bpllm_tui.widgets.log_view import LogView
from bpllm_tui.widgets.loss_chart import LossChart
from bpllm_tui.widgets.mastery_table import MasteryTable
from bpllm_tui.widgets.status_bar import StatusBar
from bpllm_tui.widgets.step_tree import StepTree
from engine.resources import resource

AREAS = ("steps", "loss", "mastery", "gpu", "log", "status")


def pack(parts: list[str], width: int, gap: str = "   ") -> list[str]:
    """Figures on as few lines as fit ``width``, each whole (a figure wider than a line gets its own)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(gap) + len(part) <= width:
            lines[-1] += gap + part
        else:
            lines.append(part)
    return lines


class FigureLine(Static):
    """A row of labelled figures that wraps between figures, never inside one (nothing is cut)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.parts: list[str] = []

    def set_parts(self, parts: list[str]) -> None:
        if parts != self.parts:
            self.parts = list(parts)
            self.refresh(layout=True)

    def render(self) -> Text:
        return Text("\n".join(pack(self.parts, self.content_region.width or 80)))

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(pack(self.parts, width)))


class DashboardScreen(Screen):
    CSS_PATH = resource("styles", "dashboard.tcss")
    BINDINGS = bindings(DASHBOARD_KEYS)
    KEY_SPECS = DASHBOARD_KEYS

    def __init__(self, state: RunState, *, stall_seconds: float = 120.0, loss_window: int = 200,
                 log_lines: int = 5000) -> None:
        super().__init__(id="dashboard")
        self.state = state
        self.stall_seconds = stall_seconds
        self.loss_window = loss_window
        self.log_lines = log_lines
        self._seen: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield StatusBar(stall_seconds=self.stall_seconds, id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield StepTree(id="steps")
                yield GpuPanel(id="gpus")
            with Vertical(id="right"):
                with Horizontal(id="top"):
                    with Vertical(id="loss-box"):
                        yield FigureLine(id="loss-title", classes="box-title")
                        yield LossChart(id="loss")
                    yield MasteryTable(id="mastery")
                yield LogView(max_lines=self.log_lines, id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#steps").border_title = "Steps"
        self.query_one("#gpus").border_title = "GPUs"
        self.query_one("#loss-box").border_title = "Loss"
        self.query_one("#mastery").border_title = "Node mastery"
        self.query_one("#log").border_title = "Log"
        self.set_interval(0.1, self.sync)
        self.set_interval(1.0, self._tick_status)
        self.sync(force=True)

    def on_resize(self) -> None:
        self.set_class(self.size.width < 120, "-narrow")
        self.set_class(self.size.width >= 150, "-wide")  # room for the mastery table's longest names
        self.refresh_bindings()  # the footer's order depends on the width (active_bindings)

    # at 80 columns the footer shows ~7 keys: start/stop/resume/quit first, so they are never the ones cut
    FOOTER_FIRST = ("run.start", "run.stop", "run.resume", "app.quit")

    @property
    def active_bindings(self):
        bindings = super().active_bindings
        if not self.has_class("-narrow"):
            return bindings
        first = {k: v for k, v in bindings.items() if v.binding.id in self.FOOTER_FIRST}
        first = dict(sorted(first.items(), key=lambda kv: self.FOOTER_FIRST.index(kv[1].binding.id)))
        return {**first, **{k: v for k, v in bindings.items() if k not in first}}

    def on_screen_resume(self) -> None:
        self.sync(force=True)

    def _tick_status(self) -> None:
        if self.is_current:
            self.query_one(StatusBar).sync(self.state)
            if self.state.active:  # the tree's ETAs count down with the status bar's, between events
                self.query_one(StepTree).relabel(self.state)

    def sync(self, force: bool = False) -> None:
        """Repaint the widgets whose area changed since the last call."""
        if not self.is_mounted or (not force and not self.is_current):
            return
        state = self.state
        changed = {a for a in AREAS if force or state.versions[a] != self._seen.get(a)}
        if not changed:
            return
        self._seen = dict(state.versions)
        if "status" in changed:
            self.query_one(StatusBar).sync(state)
        if "steps" in changed:
            self.query_one(StepTree).sync(state)
        if "loss" in changed:
            self.query_one(LossChart).set_data(state.train, state.evals)
        if "loss" in changed or "status" in changed:
            self.query_one("#loss-title", FigureLine).set_parts(self._train_line(state))
        if "mastery" in changed:
            self.query_one(MasteryTable).sync(state)
        if "gpu" in changed or "status" in changed or force:  # a run ending hands the panel to NVML
            self.query_one(GpuPanel).sync(state)
        if "log" in changed:
            self.query_one(LogView).sync(state)

    @staticmethod
    def _train_line(state: RunState) -> list[str]:
        """The trainer's latest figures above the chart (what trains, step, epoch, loss, eval, lr, grad norm,
        speed, version); the base's own pretraining is named as such."""
        t = state.core.last_train or {}
        if not t:
            return ["training loss", "raw · smoothed · ◆ eval"]
        base = t.get("phase") == "base"
        parts = ["base pretraining" if base else "adapter training"]
        parts.append(f"step {t.get('step')}" + (f"/{t['max_steps']}" if t.get("max_steps") else ""))
        if t.get("epoch") is not None:
            parts.append(f"epoch {float(t['epoch']):.2f}")
        if t.get("loss") is not None:
            parts.append(f"loss {float(t['loss']):.4f}")
        if state.evals and not base:
            parts.append(f"eval {state.evals[-1][1]:.4f}")
        if t.get("lr") is not None:
            parts.append(f"lr {float(t['lr']):.2e}")
        if t.get("grad_norm") is not None:
            parts.append(f"‖g‖ {float(t['grad_norm']):.2f}")
        if t.get("tokens_per_s") is not None:
            parts.append(f"{float(t['tokens_per_s']):,.0f} tok/s")
        if state.version and not base:
            parts.append(state.version)
        return parts

    # ------------------------------------------------------------ actions
    def action_toggle_log_scale(self) -> None:
        chart = self.query_one(LossChart)
        chart.log_scale = not chart.log_scale

    def action_toggle_window(self) -> None:
        chart = self.query_one(LossChart)
        chart.window = 0 if chart.window else self.loss_window

    def action_toggle_follow(self) -> None:
        self.query_one(LogView).toggle_follow()

    def action_focus_filter(self) -> None:
        self.query_one(LogView).open_filter()

    def action_cycle_level(self) -> None:
        self.query_one(LogView).cycle_level()
