"""Node mastery: node, score, n, band colour, delta vs the previous version; weakest first.

Rows are updated in place (``update_cell``) so the cursor stays on the node the
user is looking at while new grades arrive."""
from __future__ import annotations

from rich.text import Text
from bpllm_tui.widgets.table import MeasuredTable

from bpllm_tui.state import RunState
from bpllm_tui.widgets._theme import themed

BAND_STYLE = {"production": "$success", "product": "$success", "mastered": "$success", "learning": "$warning",
              "struggling": "$error"}
COLUMNS = ("node", "score", "n", "Δ", "band")


class MasteryTable(MeasuredTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for col in COLUMNS:
            self.add_column(col, key=col)

    def sync(self, state: RunState) -> None:
        """Same nodes in the same order: cells change in place. New nodes or a new order: rebuild in
        sorted order (DataTable.sort before its idle re-measure leaves stale column widths), keeping the
        cursor on the node it was on."""
        rows = sorted(state.mastery.values(), key=lambda r: (r.score, r.node))
        if not rows:
            self.border_subtitle = "empty: step 7.3 grades nodes after the exam"
        elif state.mastery_kept:
            self.border_subtitle = f"{state.mastery_version or 'last version'}: kept until this run grades"
        elif state.mastery_version:
            self.border_subtitle = f"version {state.mastery_version}"
        order = [row.node for row in rows]
        current = [str(key.value) for key in self.rows]
        if order == current:
            for row in rows:
                for col, value in zip(COLUMNS, self._values(row)):
                    self.update_cell(row.node, col, value, update_width=True)
            return
        keep = None
        if self.row_count and 0 <= self.cursor_row < self.row_count:
            keep = current[self.cursor_row] if self.cursor_row < len(current) else None
        self.clear()
        for row in rows:
            self.add_row(*self._values(row), key=row.node)
        if keep in order:
            self.move_cursor(row=order.index(keep), animate=False)

    def _values(self, row) -> tuple:
        style = themed(self.app, BAND_STYLE.get(row.band, ""))
        delta = "" if row.delta is None else f"{row.delta:+.1f}"
        delta_style = "" if row.delta is None else themed(
            self.app, "$success" if row.delta > 0 else "$error" if row.delta < 0 else "")
        return (
            row.node,
            Text(f"{row.score:5.1f}", style=style, justify="right"),
            Text(str(row.n), justify="right"),
            Text(delta, style=delta_style, justify="right"),
            Text(row.band, style=style),  # last: on a narrow panel the colour of the score says it
        )
