"""A braille line chart of the training loss, drawn by hand (no plotting library).

Each terminal cell holds a 2×4 braille dot matrix, so a 60×12 widget plots a
120×48 dot canvas. Three layers, painted in order so the most important wins a
cell: raw loss (dim), the de-biased EMA (bright) and eval points (accent).
"""
from __future__ import annotations

import math

from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from bpllm_tui.state import ema_debiased

# dot bit for (x in 0..1, y in 0..3) inside a braille cell
_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
LEFT_AXIS = 8  # columns for y labels
EVAL_MARK = "◆"


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


class LossChart(Widget):
    """Training loss (raw + smoothed) and eval loss against trainer step."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 6; }
    """
    COMPONENT_CLASSES = {"loss-chart--raw", "loss-chart--smooth", "loss-chart--eval", "loss-chart--axis"}

    log_scale: reactive[bool] = reactive(False)
    window: reactive[int] = reactive(0)  # 0 = all, else the last N trainer points

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.train: list[tuple[float, float]] = []
        self.evals: list[tuple[float, float]] = []
        self.beta = 0.9
        self._cache: list[Strip] | None = None
        self._cache_styles: tuple = ()

    def set_data(self, train: list[tuple[float, float]], evals: list[tuple[float, float]]) -> None:
        self.train = list(train)
        self.evals = list(evals)
        self._cache = None
        self.refresh()

    def watch_log_scale(self) -> None:
        self._cache = None
        self.refresh()

    def watch_window(self) -> None:
        self._cache = None
        self.refresh()

    def on_resize(self) -> None:
        self._cache = None

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache = None

    # -------------------------------------------------------------- geometry
    def _visible(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        train = self.train[-self.window:] if self.window and len(self.train) > self.window else self.train
        if not train:
            return [], self.evals
        lo = train[0][0]
        return train, [p for p in self.evals if p[0] >= lo]

    def _ty(self, v: float) -> float:
        return math.log10(max(v, 1e-8)) if self.log_scale else v

    def _style_signature(self) -> tuple:
        return (self.rich_style, *(self.get_component_rich_style(name, partial=True)
                                   for name in sorted(self.COMPONENT_CLASSES)))

    def render_line(self, y: int) -> Strip:
        if y == 0 and self._cache is not None and self._cache_styles != self._style_signature():
            self._cache = None  # a theme switch or late CSS: repaint with the styles in force now
        if self._cache is None or len(self._cache) != self.size.height:
            self._cache_styles = self._style_signature()
            self._cache = self._render_all()
        return self._cache[y] if 0 <= y < len(self._cache) else Strip.blank(self.size.width)

    def _render_all(self) -> list[Strip]:
        width, height = self.size.width, self.size.height
        base = self.rich_style
        axis_style = base + self.get_component_rich_style("loss-chart--axis", partial=True)
        train, evals = self._visible()
        if width < LEFT_AXIS + 4 or height < 3:
            return [Strip.blank(width, base) for _ in range(height)]
        if not train and not evals:
            lines = [Strip.blank(width, base) for _ in range(height)]
            msg = "no training steps yet"
            lines[height // 2] = Strip([Segment(" " * max(0, (width - len(msg)) // 2) + msg, axis_style)]).adjust_cell_length(width, base)
            return lines
        plot_w, plot_h = width - LEFT_AXIS, height - 1  # last row: x axis
        dots_w, dots_h = plot_w * 2, plot_h * 4
        raw = [v for _, v in train]
        smooth = ema_debiased(raw, self.beta) if raw else []
        xs = [x for x, _ in train] + [x for x, _ in evals]
        log = self.log_scale  # reactive reads are slow: once per repaint, not per point
        ys = [math.log10(max(v, 1e-8)) if log else v for v in raw + smooth + [v for _, v in evals]]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if x1 == x0:
            x1 = x0 + 1
        if y1 == y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

        sx = (dots_w - 1) / (x1 - x0)
        sy = (dots_h - 1) / (y1 - y0)
        max_x, max_y = dots_w - 1, dots_h - 1
        log10 = math.log10

        def to_dots(points: list[tuple[float, float]]) -> list[tuple[int, int]]:
            out = []
            for x, v in points:
                yv = log10(v if v > 1e-8 else 1e-8) if log else v
                dx = int((x - x0) * sx + 0.5)
                dy = int((y1 - yv) * sy + 0.5)
                out.append((0 if dx < 0 else max_x if dx > max_x else dx, 0 if dy < 0 else max_y if dy > max_y else dy))
            return out

        # layer per cell: 0 none, 1 raw, 2 smooth
        bits = [[0] * plot_w for _ in range(plot_h)]
        layer = [[0] * plot_w for _ in range(plot_h)]

        def dot(dx: int, dy: int, level: int) -> None:
            cx, cy = dx >> 1, dy >> 2
            bits[cy][cx] |= _BITS[dy & 3][dx & 1]
            if layer[cy][cx] < level:
                layer[cy][cx] = level

        def plot_series(points: list[tuple[float, float]], level: int) -> None:
            """Decimate to one (first, lo, hi, last) span per dot column, then draw columns and joins:
            O(points + width × height) however long the run is."""
            columns: dict[int, list[int]] = {}
            order: list[int] = []
            for dx, dy in to_dots(points):
                span = columns.get(dx)
                if span is None:
                    columns[dx] = [dy, dy, dy, dy]
                    order.append(dx)
                else:
                    if dy < span[1]:
                        span[1] = dy
                    if dy > span[2]:
                        span[2] = dy
                    span[3] = dy
            prev: tuple[int, int] | None = None
            for dx in order:
                first, lo, hi, last = columns[dx]
                for dy in range(lo, hi + 1):
                    dot(dx, dy, level)
                if prev is not None:
                    px, py = prev
                    n = max(abs(dx - px), abs(first - py), 1)
                    for i in range(1, n):
                        dot(px + (dx - px) * i // n, py + (first - py) * i // n, level)
                prev = (dx, last)

        plot_series(train, 1)
        plot_series(list(zip([x for x, _ in train], smooth)), 2)
        eval_cells = {(dy >> 2, dx >> 1) for dx, dy in to_dots(evals)}

        styles = {
            1: base + self.get_component_rich_style("loss-chart--raw", partial=True),
            2: base + self.get_component_rich_style("loss-chart--smooth", partial=True),
        }
        eval_style = base + self.get_component_rich_style("loss-chart--eval", partial=True)
        lines: list[Strip] = []
        for row in range(plot_h):
            if row == 0:
                label = _fmt(10**y1 if self.log_scale else y1)
            elif row == plot_h - 1:
                label = _fmt(10**y0 if self.log_scale else y0)
            elif row == plot_h // 2 and plot_h > 4:
                mid = (y0 + y1) / 2
                label = _fmt(10**mid if self.log_scale else mid)
            else:
                label = ""
            segments = [Segment(label.rjust(LEFT_AXIS - 2)[: LEFT_AXIS - 2] + " ┤", axis_style)]
            run_style: Style | None = None
            run_text: list[str] = []
            for col in range(plot_w):
                if (row, col) in eval_cells:
                    ch, st = EVAL_MARK, eval_style
                elif bits[row][col]:
                    ch, st = chr(0x2800 + bits[row][col]), styles[layer[row][col]]
                else:
                    ch, st = " ", base
                if st is not run_style and run_text:
                    segments.append(Segment("".join(run_text), run_style))
                    run_text = []
                run_style = st
                run_text.append(ch)
            if run_text:
                segments.append(Segment("".join(run_text), run_style))
            lines.append(Strip(segments).adjust_cell_length(width, base))
        left = f"step {x0:.0f}"
        right = f"{x1:.0f}"
        mode = ("log " if self.log_scale else "") + (f"last {self.window}" if self.window else "all")
        middle = f"─ {mode} ─"
        gap = max(1, plot_w - len(left) - len(right) - len(middle))
        axis = " " * (LEFT_AXIS - 1) + "└" + left + "─" * (gap // 2) + middle + "─" * (gap - gap // 2) + right
        lines.append(Strip([Segment(axis[:width], axis_style)]).adjust_cell_length(width, base))
        return lines
