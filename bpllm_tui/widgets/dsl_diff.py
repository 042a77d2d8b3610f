"""Side-by-side expected vs actual DSL with the structural diff painted on the lines.

The marks come from :func:`dsl.scorer.score` buckets (each entry names its line in
both texts), so renumbered nodes or reordered lines are *not* shown as differences —
only what the graph comparison says is missing, extra or wrong."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from rich.style import Style
from rich.text import Text

from dsl.ast import Diagnostic
from dsl.catalog import default_catalog
from dsl.graph import build_graph
from dsl.parser import parse
from bpllm_tui.widgets._theme import themed, tint
from bpllm_tui.widgets.dsl_editor import TOKEN_STYLES, colourize

MISSING = ("missing_nodes", "missing_exec", "missing_data", "missing_vars")
EXTRA = ("extra_nodes", "extra_exec", "extra_data", "extra_vars")
BUCKET_LABEL = {
    "missing_nodes": "missing node", "extra_nodes": "extra node", "wrong_params": "wrong param",
    "missing_exec": "missing EXEC", "extra_exec": "extra EXEC", "missing_data": "missing DATA",
    "extra_data": "extra DATA", "missing_vars": "missing VAR", "extra_vars": "extra VAR",
    "header": "header", "format_errors": "format error", "rewired": "nodes differ",
}
# validator codes about the whole text rather than the line they are pinned to (1:1)
WHOLE_TEXT = {"missing-header": "(header)", "missing-graph": "whole graph", "no-event": "whole graph",
              "no-wires": "whole graph",
              "internal": "whole text"}
_NODE_REF = re.compile(r"\b(n[0-9]+)\.")
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
            elif bucket in ("wrong_params", "header", "rewired"):
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


def where_text(item: dict[str, Any], bucket: str) -> str:
    """Where a difference sits, in words when it has no line of its own (never "line 0")."""
    where = []
    if item.get("expected_line"):
        where.append(f"exp L{item['expected_line']}")
    if item.get("actual_line"):
        where.append(f"act L{item['actual_line']}")
    if where:
        return ", ".join(where)
    return "(header)" if bucket == "header" else "whole graph"


def diagnostic_where(d: Diagnostic) -> str:
    return WHOLE_TEXT.get(d.code) or f"act {d.line}:{d.column}"


def pair_rewired(buckets: dict[str, list[dict[str, Any]]], expected: str, actual: str,
                 mapping: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Buckets where a missing and an extra wire of the same text become one "rewired" entry that says why.

    ``EXEC n1.Then -> n2.Execute`` can be both missing and extra: the text matches, but the scorer
    matches nodes by type, not number, so when n2 is another node type in the answer the wire ends
    elsewhere. Listing it twice read as a scorer bug; one entry naming the differing nodes does not.
    """
    out = {k: list(v) for k, v in buckets.items()}
    out.setdefault("rewired", [])
    graphs = None
    for kind in ("exec", "data"):
        missing, extra = out.get(f"missing_{kind}", []), out.get(f"extra_{kind}", [])
        for m in list(missing):
            key = " ".join(str(m.get("text", "")).split())
            x = next((e for e in extra if " ".join(str(e.get("text", "")).split()) == key), None)
            if x is None:
                continue
            if graphs is None:
                cat = default_catalog()
                graphs = (build_graph(parse(expected), cat), build_graph(parse(actual), cat))
            missing.remove(m)
            extra.remove(x)
            out["rewired"].append({"text": m.get("text", ""), "expected_line": m.get("expected_line"),
                                   "actual_line": x.get("actual_line"),
                                   "why": _why_rewired(key, graphs[0], graphs[1], mapping)})
    return out


def _why_rewired(text: str, exp_graph, act_graph, mapping: dict[str, str]) -> str:
    reasons = []
    for nid in dict.fromkeys(_NODE_REF.findall(text)):
        en, an = exp_graph.nodes.get(nid), act_graph.nodes.get(nid)
        et, at = (en.type if en else "absent"), (an.type if an else "absent")
        if et != at:
            reasons.append(f"{nid} is {et} in expected, {at} in actual")
        elif mapping.get(nid) != nid:
            other = mapping.get(nid)
            reasons.append(f"expected {nid} ({et}) matches actual {other}" if other
                           else f"expected {nid} ({et}) matches no actual node")
    if not reasons:
        return "same text, but its ends were matched to other nodes"
    return "same text, other nodes: " + "; ".join(reasons)


def render_side(app, text: str, marks: dict[int, str], diags: list[Diagnostic] | None = None,
                highlights=None) -> Text:
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
        colourize(line, lambda k: styles.get(k, Style.null()), highlights)
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
