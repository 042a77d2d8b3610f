"""A TextArea for a pack's DSL text: syntax colours (the pack's highlights) and diagnostic underlines.

TextArea has no diagnostics API and no tree-sitter grammar for our DSL, so this
subclass overrides :meth:`get_line` (the hook TextArea renders every line through)
to colour tokens and underline the spans of ``dsl`` diagnostics. TextArea caches
rendered lines keyed on cursor/scroll/theme — not on our diagnostics — so
:meth:`set_diagnostics` clears that cache; otherwise a fixed error would stay
underlined until the line scrolled.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Callable

from rich.style import Style
from rich.text import Text
from textual.widgets import TextArea

from dsl.ast import Diagnostic
from bpllm_tui.widgets._theme import themed

# the colour rules come from the language pack (LanguagePack.highlights); Blueprint's by default
_COMPILED: dict[tuple, list[tuple[re.Pattern, str, int]]] = {}


def _rules(highlights) -> list[tuple[re.Pattern, str, int]]:
    if highlights is None:
        from dsl.packs import DEFAULT_LANGUAGE, load

        highlights = load(DEFAULT_LANGUAGE).highlights
    key = tuple(highlights)
    if key not in _COMPILED:
        _COMPILED[key] = [(re.compile(h.pattern), h.token, h.group) for h in highlights]
    return _COMPILED[key]


TOKEN_STYLES = {
    "keyword": "bold $primary",
    "string": "$success",
    "arrow": "bold $foreground",
    "node": "$secondary",
    "number": "$warning",
    "const": "$warning",
    "param": "$text-muted",
    "pin": "italic $accent",
    "punct": "$text-muted",
    "type": "bold $accent",
    "dtype": "italic $secondary",
}
SEVERITY_STYLES = {"error": "underline bold $error", "warning": "underline $warning", "info": "underline $text-muted"}


def colourize(line: Text, style: Callable[[str], Style], highlights=None) -> Text:
    """Colour one line in place by token class (shared by the editor and the exam diff).

    ``highlights``: the language pack's rules, laid on in order (a later rule wins where two overlap);
    a rule whose token is "" takes the name of the regex group that matched."""
    plain = line.plain
    for pattern, token, group in _rules(highlights):
        for match in pattern.finditer(plain):
            kind = token or match.lastgroup or ""
            at = group if token else (match.lastgroup or 0)
            start, end = match.start(at), match.end(at)
            if start >= 0 and end > start:
                line.stylize(style(kind), start, end)
    return line


class DslTextArea(TextArea):
    """The lesson editor's DSL field."""

    def __init__(self, text: str = "", **kwargs) -> None:
        kwargs.setdefault("show_line_numbers", True)
        kwargs.setdefault("tab_behavior", "indent")
        kwargs.setdefault("soft_wrap", False)
        super().__init__(text, **kwargs)
        self.highlights = None  # the language pack's colour rules (None: Blueprint's)
        self.diagnostics: list[Diagnostic] = []
        self._by_line: dict[int, list[tuple[int, int, str]]] = {}
        self._styles: dict[str, Style] = {}
        self._styles_theme: str | None = None

    async def _on_key(self, event) -> None:
        if event.key == "escape":
            return  # TextArea would only move focus; the editor opens in the DSL, so Esc is the screen's Back
        await super()._on_key(event)

    # ---------------------------------------------------------------- diagnostics
    def set_diagnostics(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        by_line: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        lines = self.document.lines
        for d in self.diagnostics:
            for line_no in range(d.line, max(d.line, d.end_line) + 1):
                idx = line_no - 1
                if not 0 <= idx < len(lines):
                    continue
                length = len(lines[idx])
                start = d.column - 1 if line_no == d.line else 0
                end = d.end_column - 1 if line_no == d.end_line else length
                start = max(0, min(start, length))
                end = max(start + 1, min(end, length + 1))  # at least one cell (the end-of-line space)
                by_line[idx].append((start, end, d.severity))
        if by_line == self._by_line:
            return  # the same marks on the same lines: TextArea's own cache stays valid
        self._by_line = dict(by_line)
        self._line_cache.clear()
        self.refresh()

    def problem_lines(self) -> set[int]:
        return set(self._by_line)

    # ---------------------------------------------------------------- rendering
    def _style(self, name: str) -> Style:
        theme = self.app.theme
        if theme != self._styles_theme:
            self._styles = {k: themed(self.app, v) for k, v in {**TOKEN_STYLES, **SEVERITY_STYLES}.items()}
            self._styles_theme = theme
        return self._styles.get(name, Style.null())

    def get_line(self, line_index: int) -> Text:
        line = super().get_line(line_index)
        plain = line.plain
        if not plain and line_index not in self._by_line:
            return line
        colourize(line, self._style, self.highlights)
        # underlines last, so they sit on top of the colours; errors over warnings
        for start, end, severity in sorted(self._by_line.get(line_index, ()), key=lambda s: s[2] == "error"):
            if start >= len(plain):  # "expected …" at the end of the line: mark the cell after it
                line.append(" ", self._style(severity))
            else:
                line.stylize(self._style(severity), start, end)
        return line

    def goto(self, line: int, column: int) -> None:
        """Move the cursor to a 1-based position and make it visible."""
        row = max(0, min(line - 1, self.document.line_count - 1))
        col = max(0, min(column - 1, len(self.document.get_line(row))))
        self.move_cursor((row, col), center=True)
        self.focus()
