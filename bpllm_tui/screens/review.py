"""Exam review: pick source/version → lesson → prompt and see expected vs actual with the
structural diff (missing/extra nodes, EXEC, DATA, wrong params) and the actual text's
diagnostics; filter to failures; send a prompt with its gold answer to a correction
lesson for the next cycle."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static, Tree
from textual.widgets.option_list import Option

from dsl.scorer import score as structural_score
from dsl.validator import validate
from bpllm_tui import exams
from bpllm_tui.keys import REVIEW_KEYS, bindings
from bpllm_tui.lesson import Lesson, LessonError
from bpllm_tui.widgets.dsl_diff import BUCKET_LABEL, line_marks, render_side
from bpllm_tui.widgets._theme import themed


def _score_text(value: float | None) -> str:
    return "—" if value is None else f"{value:5.1f}"


class ReviewScreen(Screen):
    CSS_PATH = "../../styles/review.tcss"
    BINDINGS = bindings(REVIEW_KEYS)
    KEY_SPECS = REVIEW_KEYS

    def __init__(self, workspace: Path, extra_sources: list[Path] = ()) -> None:
        super().__init__(id="review")
        self.workspace = workspace
        self.extra_sources = list(extra_sources)
        self.failures_only = False
        self.files: list[exams.ExamFile] = []
        self.current: exams.ExamRecord | None = None
        self.current_file: exams.ExamFile | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="review-title")
        with Horizontal(id="review-main"):
            yield Tree("exams", id="exam-tree")
            with Vertical(id="review-detail"):
                yield Static("", id="prompt-info")
                with Horizontal(id="diff"):
                    with VerticalScroll(id="expected-pane"):
                        yield Static("", id="expected")
                    with VerticalScroll(id="actual-pane"):
                        yield Static("", id="actual")
                yield OptionList(id="differences")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#exam-tree").border_title = "Run → lesson → prompt"
        self.query_one("#expected-pane").border_title = "Expected (gold)"
        self.query_one("#actual-pane").border_title = "Actual (model)"
        self.query_one("#differences").border_title = "Differences"
        self.reload()

    def reload(self) -> None:
        self.files = exams.discover(self.workspace, self.extra_sources)
        tree = self.query_one("#exam-tree", Tree)
        tree.clear()
        tree.show_root = False
        groups: dict[tuple[str, str], Any] = {}
        roots: dict[str, Any] = {}
        for f in self.files:
            source = self._source_label(f.path)
            root = roots.get(source)
            if root is None:
                root = roots[source] = tree.root.add(source, expand=True)
            key = (source, f.version)
            group = groups.get(key)
            if group is None:
                group = groups[key] = root.add(f"version {f.version}", expand=False)
            avg = f.summary.get("avg_similarity_score", f.summary.get("avg_score"))
            label = Text(f.lesson_id)
            if avg is not None:
                label.append(f"  {float(avg):.1f}", "dim")
            label.append(f"  {f.stamp}", "dim")
            group.add(label, data=("file", f), allow_expand=True)
        self._update_title()
        if not self.files:
            self.query_one("#prompt-info", Static).update(Text(
                "No exam results yet. They appear after a cycle's exam step (5.x), or open the reference "
                "project's with: bpllm-tui --exams ../shared/corpus/blueprintllm/results/exams", style="dim"))
            return
        # open the newest file so the screen is useful at once
        last = groups[max(groups, key=lambda k: exams._version_key(k[1]))] if groups else None
        if last is not None:
            last.expand()
            if last.children:
                self._expand_file(last.children[-1])

    def _source_label(self, path: Path) -> str:
        for base, label in ((self.workspace, "workspace"),):
            try:
                rel = path.parent.relative_to(base)
                return f"{label}/{rel}"
            except ValueError:
                pass
        for extra in self.extra_sources:
            try:
                path.relative_to(extra)
                return str(extra)
            except ValueError:
                pass
        return str(path.parent)

    def _update_title(self) -> None:
        text = Text()
        text.append("Exam review", "bold")
        text.append(f"  {len(self.files)} exam files", "dim")
        text.append("  showing failures only" if self.failures_only else "  showing all prompts", "")
        self.query_one("#review-title", Static).update(text)

    # ------------------------------------------------------------------ tree
    def _expand_file(self, node) -> None:
        kind, f = node.data
        node.remove_children()
        try:
            records, problems = exams.load(f)
        except OSError as exc:
            self.notify(f"{f.path}: {exc}", severity="error")
            return
        for problem in problems[:3]:
            self.notify(problem, severity="warning")
        shown = sorted((r for r in records if r.failed or not self.failures_only), key=lambda r: r.prompt_id)
        for record in shown:
            label = Text()
            style = "green" if not record.failed else ("bold red" if record.valid is False else "yellow")
            label.append("✓ " if not record.failed else "✗ ", style)
            label.append(record.prompt_id)
            label.append(f"  {_score_text(record.score)}", style)
            if record.seen is not None:
                label.append("  seen" if record.seen else "  unseen", "dim")
            node.add_leaf(label, data=("prompt", f, record))
        node.expand()
        if shown and self.current is None:
            tree = self.query_one("#exam-tree", Tree)
            first = next((c for c in node.children if c.data[2].failed), node.children[0])
            tree.move_cursor(first)
            self.show_record(f, first.data[2])

    @on(Tree.NodeExpanded, "#exam-tree")
    def _expanded(self, event: Tree.NodeExpanded) -> None:
        if event.node.data and event.node.data[0] == "file" and not event.node.children:
            self._expand_file(event.node)

    @on(Tree.NodeHighlighted, "#exam-tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data and event.node.data[0] == "prompt":
            self.show_record(event.node.data[1], event.node.data[2])

    # ------------------------------------------------------------------ detail
    def show_record(self, f: exams.ExamFile, record: exams.ExamRecord) -> None:
        self.current, self.current_file = record, f
        result = structural_score(record.expected, record.actual)
        diags = validate(record.actual) if record.actual.strip() else []
        exp_marks, act_marks = line_marks(result.buckets, diags)
        info = Text()
        info.append(f"{record.lesson_id} / {record.prompt_id}", "bold")
        if record.category:
            info.append(f"  {record.category}", "dim")
        info.append("   structural ")
        info.append(f"{result.score * 100:.1f}", themed(self.app, "bold $success" if result.exact else "bold $warning"))
        info.append(f" (P {result.precision * 100:.0f} R {result.recall * 100:.0f})", "dim")
        info.append(f"   recorded {_score_text(record.score)}   line {result.line_score * 100:.0f}", "dim")
        info.append("   valid " + ("?" if record.valid is None else "yes" if record.valid else "NO"),
                    themed(self.app, "$error") if record.valid is False else "")
        info.append("   " + ("seen" if record.seen else "unseen" if record.seen is not None else "seen ?"), "dim")
        if record.time_s is not None:
            info.append(f"   {float(record.time_s):.1f}s", "dim")
        info.append("\n" + record.instruction, "italic")
        self.query_one("#prompt-info", Static).update(info)
        self.query_one("#expected", Static).update(render_side(self.app, record.expected, exp_marks))
        self.query_one("#actual", Static).update(render_side(self.app, record.actual, act_marks, diags))
        options = self.query_one("#differences", OptionList)
        options.clear_options()
        count = 0
        for bucket, items in result.buckets.items():
            for item in items:
                line = Text()
                line.append(f"{BUCKET_LABEL.get(bucket, bucket):<13}", themed(self.app, "$error" if bucket.startswith("missing")
                                                                            else "$warning" if bucket.startswith("extra")
                                                                            else "$secondary"))
                where = []
                if item.get("expected_line"):
                    where.append(f"exp L{item['expected_line']}")
                if item.get("actual_line"):
                    where.append(f"act L{item['actual_line']}")
                line.append(f" {', '.join(where):<18} ", "dim")
                line.append(str(item.get("text", "")))
                options.add_option(Option(line))
                count += 1
        for d in diags:
            line = Text()
            line.append(f"{'diagnostic':<13}", themed(self.app, "$error" if d.severity == "error" else "$warning"))
            line.append(f" act {d.line}:{d.column}".ljust(20), "dim")
            line.append(f"{d.message} [{d.code}]")
            options.add_option(Option(line))
            count += 1
        if not count:
            options.add_option(Option(Text("no differences: the same graph", style="green")))

    # ------------------------------------------------------------------ actions
    def action_toggle_failures(self) -> None:
        self.failures_only = not self.failures_only
        self._update_title()
        tree = self.query_one("#exam-tree", Tree)
        for node in list(self._file_nodes(tree.root)):
            if node.is_expanded:
                self.current = None if self.current and self.current_file is node.data[1] else self.current
                self._expand_file(node)

    def _file_nodes(self, node):
        for child in node.children:
            if child.data and child.data[0] == "file":
                yield child
            else:
                yield from self._file_nodes(child)

    def action_copy_to_correction(self) -> None:
        record = self.current
        if record is None:
            self.notify("Select a prompt first", severity="warning")
            return
        if not record.expected.strip():
            self.notify("This record has no gold answer to copy", severity="warning")
            return
        path = self.workspace / "lessons" / f"correction_{time.strftime('%Y%m%d')}.json"
        try:
            lesson = Lesson.load(path) if path.exists() else Lesson.new(path, path.stem, "Corrections from exam review")
        except LessonError as exc:
            self.notify(str(exc), severity="error")
            return
        if any(p.get("instruction") == record.instruction and p.get("expected_dsl") == record.expected
               for p in lesson.prompts):
            self.notify(f"Already in {path.name}", severity="warning")
            return
        prompt = lesson.add_prompt(record.instruction, record.expected, record.category)
        prompt["source"] = f"{record.lesson_id}/{record.prompt_id}"
        lesson.save()
        self.notify(f"Added {prompt['id']} to {path.relative_to(self.workspace)} (open it with e, ctrl+o)",
                    timeout=6)

    def action_back(self) -> None:
        self.app.switch_mode("dashboard")
