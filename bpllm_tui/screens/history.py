"""History: structural score and valid % per lesson × model version, seen/unseen split,
and the mastery trend of each node across versions.

Reads the workspace history store (the engine writes it in WAL mode; we open it
read-only, so a running engine is never blocked) and any exam JSONL sources given
on the command line (the reference project's results have no store)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from bpllm_tui import exams
from engine.workspace.history import like_with_like
from bpllm_tui.keys import HISTORY_KEYS, bindings
from bpllm_tui.widgets._theme import themed
from bpllm_tui.widgets.gpu_panel import sparkline
from bpllm_tui.widgets.table import MeasuredTable
from engine.resources import resource


class Cell:
    """Running totals for one lesson × version."""

    __slots__ = ("n", "score", "valid", "valid_n", "seen", "unseen", "unmarked")

    def __init__(self) -> None:
        self.n = 0
        self.score = 0.0
        self.valid = 0
        self.valid_n = 0
        self.seen: list[float] = []
        self.unseen: list[float] = []
        self.unmarked: list[float] = []

    def add(self, score: float | None, valid: bool | None, seen: bool | None) -> None:
        if score is not None:
            self.n += 1
            self.score += score
            if seen is True:
                self.seen.append(score)
            elif seen is False:
                self.unseen.append(score)
            else:
                self.unmarked.append(score)
        if valid is not None:
            self.valid_n += 1
            self.valid += int(valid)

    @property
    def avg(self) -> float | None:
        return self.score / self.n if self.n else None

    @property
    def groups(self) -> dict[str, list[float]]:
        return {"unseen": self.unseen, "seen": self.seen, "unmarked": self.unmarked}

    @property
    def valid_pct(self) -> float | None:
        return 100.0 * self.valid / self.valid_n if self.valid_n else None


def collect(workspace: Path, extra: list[Path],
            problems: list[str] | None = None) -> tuple[dict[tuple[str, str], Cell], list[str]]:
    """(lesson, version) -> Cell from the history store and the exam files (latest file per pair);
    unreadable rows and lines are skipped and added to ``problems``."""
    cells: dict[tuple[str, str], Cell] = defaultdict(Cell)
    for row in exams.history_rows(workspace, problems):
        score = row.get("score")
        if score is not None and float(score) <= 1.0:
            score = float(score) * 100.0
        cells[(str(row["lesson_id"]), str(row["version"]))].add(
            score, None if row.get("valid") is None else bool(row["valid"]),
            None if row.get("seen") is None else bool(row["seen"]))
    in_store = set(cells)
    latest: dict[tuple[str, str], exams.ExamFile] = {}
    for f in exams.discover(workspace, extra):
        key = (f.lesson_id, f.version)
        if key in in_store:
            continue
        if key not in latest or f.stamp > latest[key].stamp:
            latest[key] = f
    for key, f in latest.items():
        try:
            records, skipped = exams.load(f)
        except OSError as exc:
            if problems is not None:
                problems.append(f"{f.path}: unreadable ({exc})")
            continue
        if problems is not None:
            problems.extend(skipped)
        for r in records:
            cells[key].add(r.score, r.valid, r.seen)
    versions = sorted({v for _, v in cells}, key=exams._version_key)
    return dict(cells), versions


class HistoryScreen(Screen):
    CSS_PATH = resource("styles", "history.tcss")
    BINDINGS = bindings(HISTORY_KEYS)
    KEY_SPECS = HISTORY_KEYS

    def __init__(self, workspace: Path, extra_sources: list[Path] = ()) -> None:
        super().__init__(id="history")
        self.workspace = workspace
        self.extra_sources = list(extra_sources)

    def compose(self) -> ComposeResult:
        yield Static("", id="history-title")
        with Vertical(id="history-main"):
            yield MeasuredTable(id="scores", zebra_stripes=True, cursor_type="row")
            yield Static("", id="seen-split")
            yield MeasuredTable(id="trends", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#scores").border_title = "Exam score (as recorded: structural for bpllm runs) / valid % per lesson × version"
        self.query_one("#trends").border_title = "Node mastery across versions"
        self.query_one("#scores").border_subtitle = "▲▼ unseen vs unseen, else seen vs seen · ≠ seen/unseen changed"
        self.action_reload()

    def action_reload(self) -> None:
        problems: list[str] = []
        cells, versions = collect(self.workspace, self.extra_sources, problems)
        self._fill_scores(cells, versions)
        self._fill_split(cells, versions)
        self._fill_trends(problems)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            self.notify(problems[0][:240] + more, title="History: skipped unreadable data", severity="warning",
                        timeout=10)
        title = Text()
        title.append("History", "bold")
        title.append(f"  {len({k[0] for k in cells})} lessons × {len(versions)} versions", "dim")
        self.query_one("#history-title", Static).update(title)

    def _fill_scores(self, cells: dict[tuple[str, str], Cell], versions: list[str]) -> None:
        table = self.query_one("#scores", DataTable)
        table.clear(columns=True)
        table.add_column("lesson", key="lesson")
        for v in versions:
            table.add_column(v, key=v)
        lessons = sorted({k[0] for k in cells})
        for lesson in lessons:
            row: list[Any] = [lesson]
            prev = None
            for v in versions:
                cell = cells.get((lesson, v))
                if cell is None or cell.avg is None:
                    row.append(Text("—", style="dim", justify="center"))
                    continue
                style = "$success" if cell.avg >= 85 else "$warning" if cell.avg >= 60 else "$error"
                text = Text(justify="right")
                text.append(f"{cell.avg:5.1f}", themed(self.app, style))
                if cell.valid_pct is not None:
                    text.append(f" / {cell.valid_pct:3.0f}%", "dim")
                if prev is not None:  # like with like: unseen vs unseen, else seen vs seen (engine.workspace.history)
                    change = like_with_like(prev.groups, cell.groups)
                    if change is None:
                        text.append(" ≠", "dim")  # examined unseen before, seen now: no honest arrow
                    else:
                        delta = change[1]
                        text.append(" ▲" if delta > 0.5 else " ▼" if delta < -0.5 else "  ",
                                    themed(self.app, "$success" if delta > 0 else "$error"))
                prev = cell
                row.append(text)
            table.add_row(*row, key=lesson)
        if not lessons:
            table.add_row("no exam results yet", *["" for _ in versions])

    def _fill_split(self, cells: dict[tuple[str, str], Cell], versions: list[str]) -> None:
        text = Text()
        text.append("seen / unseen prompts (leakage check): ", "bold")
        parts = 0
        for v in versions:
            seen = [s for (l, ver), c in cells.items() if ver == v for s in c.seen]
            unseen = [s for (l, ver), c in cells.items() if ver == v for s in c.unseen]
            if not seen and not unseen:
                continue
            parts += 1
            text.append(f"  {v}: ")
            text.append(f"seen {sum(seen) / len(seen):.1f} (n={len(seen)})" if seen else "seen —")
            text.append(" · ")
            text.append(f"unseen {sum(unseen) / len(unseen):.1f} (n={len(unseen)})" if unseen else "unseen —",
                        "bold")
        if not parts:
            text.append("no seen/unseen marks in these results (the engine's exam step records them)", "dim")
        self.query_one("#seen-split", Static).update(text)

    def _fill_trends(self, problems: list[str] | None = None) -> None:
        rows = exams.mastery_rows(self.workspace, problems)
        table = self.query_one("#trends", DataTable)
        table.clear(columns=True)
        versions: list[str] = []
        by_node: dict[str, dict[str, float]] = defaultdict(dict)
        for r in rows:
            if r["version"] not in versions:
                versions.append(r["version"])
            by_node[r["node"]][r["version"]] = float(r["score"] or 0.0)
        table.add_column("node", key="node")
        for v in versions:
            table.add_column(v, key=v)
        table.add_column("trend", key="trend")
        if not by_node:
            table.add_row("no mastery recorded yet (grading step 7.x)", *["" for _ in versions], "")
            return
        scale = 100.0 if any(s > 1.0 for d in by_node.values() for s in d.values()) else 1.0
        for node in sorted(by_node, key=lambda n: by_node[n].get(versions[-1], 0.0)):
            scores = [by_node[node].get(v) for v in versions]
            cells = [Text("—", style="dim") if s is None else Text(f"{s * 100 / scale:5.1f}", justify="right")
                     for s in scores]
            known = [s * 100 / scale for s in scores if s is not None]
            table.add_row(node, *cells, Text(sparkline(known, 16), style=themed(self.app, "$accent")), key=node)

    def action_back(self) -> None:
        self.app.switch_mode("dashboard")
