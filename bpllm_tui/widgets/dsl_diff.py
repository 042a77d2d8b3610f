"""Side-by-side expected vs actual DSL with the structural diff painted on the lines.

The marks come from :func:`dsl.scorer.score` buckets (each entry names its line in
both texts), so renumbered nodes or reordered lines are *not* shown as differences —
only what the graph comparison says is missing, extra or wrong."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.style import Style
from rich.text import Text

from dsl.ast import Diagnostic
from bpllm_tui.widgets._theme import themed, tint
from bpllm_tui.widgets.dsl_editor import TOKEN_STYLES, colourize

MISSING = ("missing_nodes", "missing_exec", "missing_data", "missing_vars")
EXTRA = ("extra_nodes", "extra_exec", "extra_data", "extra_vars")
BUCKET_LABEL = {
    "missing_nodes": "missing node", "extra_nodes": "extra node", "wrong_params": "wrong param",
    "missing_exec": "missing EXEC", "extra_exec": "extra EXEC", "missing_data": "missing DATA",
    "extra_data": "extra DATA", "missing_vars": "missing VAR", "extra_vars": "extra VAR",
    "header": "header", "format_errors": "format error",
}
# gutter mark and theme colour per kind of mark
MARKS = {"missing": ("-", "error"), "extra": ("+", "warning"), "param": ("~", "secondary"), "error": ("!", "error")}


def line_marks(buckets: dict[str, list[dict[str, Any]]], diags: list[Diagnostic] | None = None
               ) -> tuple[dict[int, str], dict[int, str]]:
    """Line number -> mark kind, for the expected and the actual text."""
    expected: dict[int, str] = {}
    actual: dict[int, str] = {}
    for bucket, items in buckets.items():
        for item in items:
            e, a = item.get("expected_line"), item.get("actual_line")
            if bucket in MISSING and e:
                expected[e] = "missing"
            elif bucket in EXTRA and a:
                actual[a] = "extra"
            elif bucket in ("wrong_params", "header"):
                if e:
                    expected.setdefault(e, "param")
                if a:
                    actual.setdefault(a, "param")
            elif bucket == "format_errors" and a:
                actual[a] = "error"
    for d in diags or []:
        if d.severity == "error":
            actual.setdefault(d.line, "error")
    return expected, actual


def render_side(app, text: str, marks: dict[int, str], diags: list[Diagnostic] | None = None) -> Text:
    styles = {k: themed(app, v) for k, v in TOKEN_STYLES.items()}
    under: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for d in diags or []:
        under[d.line].append((d.column - 1, max(d.column, d.end_column - 1) if d.end_line == d.line else 10_000))
    out = Text(no_wrap=True)
    lines = text.split("\n") if text else []
    width = len(str(len(lines)))
    for no, raw in enumerate(lines, start=1):
        kind = marks.get(no)
        mark, colour = MARKS.get(kind, (" ", ""))
        line = Text(raw)
        colourize(line, lambda k: styles.get(k, Style.null()))
        for start, end in under.get(no, ()):
            line.stylize(themed(app, "underline $error"), start, min(end, len(raw)) if raw else None)
        row = Text()
        row.append(f"{no:>{width}} ", "dim")
        row.append(mark + " ", themed(app, f"bold ${colour}") if colour else "")
        row.append_text(line)
        if kind:
            row.stylize(Style(bgcolor=tint(app, colour, 0.25)))
        out.append_text(row)
        out.append("\n")
    if not lines:
        out.append("(empty)", "dim italic")
    return out
