"""A DataTable that repaints with the right column widths.

Textual 8.2's DataTable measures new rows on idle but keeps row renders cached with the
old column widths if it painted in between, so a table filled in one go can show its
columns cut to the header's width until something else invalidates the cache."""
from __future__ import annotations

from textual.widgets import DataTable


class MeasuredTable(DataTable):
    async def _on_idle(self, event) -> None:
        measuring = self._require_update_dimensions or bool(self._updated_cells)
        await super()._on_idle(event)
        if measuring:
            self._clear_caches()
            self.refresh()
