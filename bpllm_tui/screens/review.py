"""Exam review: pick source/version → lesson → prompt and see expected vs actual with the
structural diff (missing/extra nodes, EXEC, DATA, wrong params) and the actual text's
diagnostics; filter to failures; compare one prompt's answers of two model versions; send a
prompt with its gold answer to a correction lesson for the next cycle.

The screen follows the workspace: a worker polls the exam files' (path, mtime, size) every
couple of seconds and posts :class:`ExamFilesChanged`, so the exams of a cycle that finishes
while the review is open appear without a restart (ctrl+r reads them at once)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static, Tree
from textual.widgets.option_list import Option

from bpllm_tui import exams
from bpllm_tui.keys import REVIEW_KEYS, bindings
from bpllm_tui.lesson import Lesson, LessonError
from bpllm_tui.widgets.dsl_diff import (BUCKET_LABEL, diagnostic_where, line_marks, pair_rewired, render_side,
                                         where_text)
from bpllm_tui.widgets._theme import themed
from engine.resources import resource


POLL_S = 2.0  # exam files are written once per lesson and version: a cheap stat every 2 s is plenty


def _score_text(value: float | None) -> str:
    return "—" if value is None else f"{value:5.1f}"


class ExamFilesChanged(Message):
    """The poll worker saw exam files appear, grow or go (or failed to look, with ``error``)."""

    def __init__(self, signature: tuple, error: str | None = None) -> None:
        super().__init__()
        self.signature = signature
        self.error = error


class ReviewScreen(Screen):
    CSS_PATH = resource("styles", "review.tcss")
    BINDINGS = bindings(REVIEW_KEYS)
    KEY_SPECS = REVIEW_KEYS
    # below 120 columns the tree goes above the diff (styles/review.tcss): beside it the panes were 2 lines high
    NARROW = 120

    def __init__(self, workspace: Path, extra_sources: list[Path] = ()) -> None:
        super().__init__(id="review")
        self.workspace = workspace
        from bpllm_tui.screens.editor import language_pack

        self.pack, _problem = language_pack(workspace)  # the editor says why when it falls back
        self.extra_sources = list(extra_sources)
        self.failures_only = False
        self.files: list[exams.ExamFile] = []
        self.current: exams.ExamRecord | None = None
        self.current_file: exams.ExamFile | None = None
        self.comparing = False  # p: this prompt's answers of two versions side by side
        self.compare_pair: tuple[str, str] | None = None  # the two versions shown
        self._signature: tuple = ()
        self._watch_error: str | None = None

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

    def on_resize(self) -> None:
        self.set_class(self.size.width < self.NARROW, "-narrow")

    def on_screen_resume(self) -> None:  # the terminal may have been resized in another mode
        self.set_class(self.app.size.width < self.NARROW, "-narrow")

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < self.NARROW, "-narrow")
        self.query_one("#exam-tree").border_title = "Run → lesson → prompt"
        self.query_one("#expected-pane").border_title = "Expected (gold)"
        self.query_one("#actual-pane").border_title = "Actual (model)"
        self.query_one("#differences").border_title = "Differences"
        self._signature = exams.signature(self.workspace, self.extra_sources)
        self.reload()
        self.set_interval(POLL_S, self._poll)

    # ------------------------------------------------------------------ following the workspace
    def _poll(self) -> None:
        self._look_for_exams()

    @work(thread=True, exclusive=True, group="exam-watch", exit_on_error=False)
    def _look_for_exams(self) -> None:
        try:
            sig = exams.signature(self.workspace, self.extra_sources)
        except Exception as exc:  # noqa: BLE001 - reported on screen (once), and the poll goes on
            self.post_message(ExamFilesChanged(self._signature, error=f"{type(exc).__name__}: {exc}"))
            return
        if sig != self._signature:
            self.post_message(ExamFilesChanged(sig))

    @on(ExamFilesChanged)
    def _exam_files_changed(self, message: ExamFilesChanged) -> None:
        if message.error:
            if message.error != self._watch_error:
                self._watch_error = message.error
                self.notify(f"cannot look for new exams: {message.error}", severity="warning")
            return
        self._watch_error = None
        if message.signature == self._signature:
            return
        old_paths = {p for p, _, _ in self._signature}
        self._signature = message.signature
        old_versions = {f.version for f in self.files}
        self.reload(keep=True)
        new_files = [f for f in self.files if str(f.path) not in old_paths]
        new_versions = sorted({f.version for f in new_files} - old_versions, key=exams._version_key)
        if new_files:
            what = f"version {', '.join(new_versions)}" if new_versions else f"{len(new_files)} file(s)"
            self.notify(f"New exam results: {what} ({', '.join(sorted({f.lesson_id for f in new_files}))})",
                        title="Exam review", timeout=6)

    def action_reload(self) -> None:
        self._signature = exams.signature(self.workspace, self.extra_sources)
        self.reload(keep=True)
        self.notify(f"Read {len(self.files)} exam files", timeout=2)

    def reload(self, keep: bool = False) -> None:
        """Rebuild the tree from the files on disk; ``keep`` stays on the prompt shown unless a newer
        version arrived (then the newest version opens, as on first open)."""
        old_newest = max((f.version for f in self.files), key=exams._version_key, default=None)
        shown = (self.current_file.path, self.current.prompt_id) if keep and self.current and self.current_file else None
        self.files = exams.discover(self.workspace, self.extra_sources)
        newest = max((f.version for f in self.files), key=exams._version_key, default=None)
        if newest != old_newest:
            shown = None
        self.current = self.current_file = None
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
        if shown is not None:  # back to the prompt the user was reading
            for node in self._file_nodes(tree.root):
                if node.data[1].path == shown[0]:
                    node.parent.expand()
                    self._expand_file(node, select=shown[1])
                    if self.current is not None:
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
    def _expand_file(self, node, select: str | None = None) -> None:
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
            first = next((c for c in node.children if select and c.data[2].prompt_id == select), None)
            first = first or next((c for c in node.children if c.data[2].failed), node.children[0])
            # the tree numbers its lines on the next refresh: move there then (a short tree at 80x24 scrolls)
            tree.call_after_refresh(self._cursor_to, first)
            self.show_record(f, first.data[2])

    def _cursor_to(self, node) -> None:
        tree = self.query_one("#exam-tree", Tree)
        tree.move_cursor(node, animate=False)
        tree.call_after_refresh(tree.scroll_to_node, node, animate=False)

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
        if self.comparing and self._show_versions(f, record):
            return
        self._set_pane_titles("Expected (gold)", "Actual (model)")
        result = self.pack.score(record.expected, record.actual)
        diags = self.pack.validate(record.actual) if record.actual.strip() else []
        buckets = pair_rewired(result.buckets, record.expected, record.actual, result.mapping)
        exp_marks, act_marks = line_marks(buckets, diags)
        info = Text()
        info.append(f"{record.lesson_id} / {record.prompt_id}", "bold")
        if record.category:
            info.append(f"  {record.category}", "dim")
        info.append("   structural ")
        info.append(f"{result.score * 100:.1f}", themed(self.app, "bold $success" if result.exact else "bold $warning"))
        info.append(f" (P {result.precision * 100:.0f} R {result.recall * 100:.0f})", "dim")
        # the reference project's recall-only line overlap, said in words ("line 0" read as a line number)
        info.append(f"   recorded {_score_text(record.score)}   lines in common {result.line_score * 100:.0f} %", "dim")
        info.append("   valid " + ("?" if record.valid is None else "yes" if record.valid else "NO"),
                    themed(self.app, "$error") if record.valid is False else "")
        info.append("   " + ("seen" if record.seen else "unseen" if record.seen is not None else "seen ?"), "dim")
        if record.time_s is not None:
            info.append(f"   {float(record.time_s):.1f}s", "dim")
        info.append("\n" + record.instruction, "italic")
        self.query_one("#prompt-info", Static).update(info)
        self.query_one("#expected", Static).update(render_side(self.app, record.expected, exp_marks,
            highlights=self.pack.highlights))
        self.query_one("#actual", Static).update(render_side(self.app, record.actual, act_marks, diags,
            highlights=self.pack.highlights))
        options = self.query_one("#differences", OptionList)
        options.clear_options()
        count = 0
        for bucket, items in buckets.items():
            for item in items:
                options.add_option(Option(self._difference_line(bucket, item)))
                count += 1
        for d in diags:
            line = Text()
            line.append(f"{'diagnostic':<13}", themed(self.app, "$error" if d.severity == "error" else "$warning"))
            line.append(f" {diagnostic_where(d)}".ljust(20), "dim")
            line.append(f"{d.message} [{d.code}]")
            options.add_option(Option(line))
            count += 1
        if not count:
            options.add_option(Option(Text("no differences: the same graph", style="green")))

    def _difference_line(self, bucket: str, item: dict[str, Any]) -> Text:
        line = Text()
        line.append(f"{BUCKET_LABEL.get(bucket, bucket):<13}", themed(self.app, "$error" if bucket.startswith("missing")
                                                                    else "$warning" if bucket.startswith("extra")
                                                                    else "$secondary"))
        line.append(f" {where_text(item, bucket):<18} ", "dim")
        line.append(str(item.get("text", "")))
        if item.get("why"):
            line.append(f"  {item['why']}", "italic")
        return line

    def _set_pane_titles(self, left: str, right: str) -> None:
        self.query_one("#expected-pane").border_title = left
        self.query_one("#actual-pane").border_title = right

    # ------------------------------------------------------------------ versions
    def _show_versions(self, f: exams.ExamFile, record: exams.ExamRecord) -> bool:
        """This prompt's answers of two model versions, each marked against the gold answer, and what
        changed between them. False when only one version examined it."""
        found = exams.same_prompt(self.files, record)
        by_version = {ff.version: (ff, r) for ff, r in found}
        by_version[f.version] = (f, record)
        versions = sorted(by_version, key=exams._version_key)
        if len(versions) < 2:
            self.compare_pair = None
            return False
        pair = self.compare_pair if self.compare_pair and set(self.compare_pair) <= set(versions) else None
        if pair is None:  # the shown version beside the one before it (or after, for the oldest)
            i = versions.index(f.version)
            pair = (versions[i - 1], versions[i]) if i > 0 else (versions[0], versions[1])
        self.compare_pair = pair
        (_, a), (_, b) = by_version[pair[0]], by_version[pair[1]]
        ra, rb = self.pack.score(a.expected, a.actual), self.pack.score(b.expected, b.actual)
        ba = pair_rewired(ra.buckets, a.expected, a.actual, ra.mapping)
        bb = pair_rewired(rb.buckets, b.expected, b.actual, rb.mapping)
        da = self.pack.validate(a.actual) if a.actual.strip() else []
        db = self.pack.validate(b.actual) if b.actual.strip() else []
        info = Text()
        info.append(f"{record.lesson_id} / {record.prompt_id}", "bold")
        info.append(f"   {pair[0]} vs {pair[1]}", "bold")
        for version, r, res in ((pair[0], a, ra), (pair[1], b, rb)):
            info.append(f"   {version} ", "dim")
            info.append(f"{res.score * 100:.1f}", themed(self.app, "bold $success" if res.exact else "bold $warning"))
            info.append(" " + ("seen" if r.seen else "unseen" if r.seen is not None else "seen ?"), "dim")
        info.append(f"   ({len(versions)} versions: {', '.join(versions)}; p again: the pair before)", "dim")
        info.append("\n" + record.instruction, "italic")
        self.query_one("#prompt-info", Static).update(info)
        self._set_pane_titles(f"{pair[0]} answer  {ra.score * 100:.1f}", f"{pair[1]} answer  {rb.score * 100:.1f}")
        self.query_one("#expected", Static).update(render_side(self.app, a.actual, line_marks(ba, da)[1], da,
            highlights=self.pack.highlights))
        self.query_one("#actual", Static).update(render_side(self.app, b.actual, line_marks(bb, db)[1], db,
            highlights=self.pack.highlights))
        before = {(k, " ".join(str(i.get("text", "")).split())): i for k, items in ba.items() for i in items}
        after = {(k, " ".join(str(i.get("text", "")).split())): i for k, items in bb.items() for i in items}
        options = self.query_one("#differences", OptionList)
        options.clear_options()
        for label, keys, source, style in ((f"fixed in {pair[1]}", before.keys() - after.keys(), before, "$success"),
                                           (f"new in {pair[1]}", after.keys() - before.keys(), after, "$error"),
                                           ("still wrong", before.keys() & after.keys(), after, "$warning")):
            for key in sorted(keys):
                line = Text()
                line.append(f"{label:<16}", themed(self.app, style))
                line.append(f"{BUCKET_LABEL.get(key[0], key[0]):<13} ", "dim")
                line.append(key[1])
                options.add_option(Option(line))
        if not options.option_count:
            options.add_option(Option(Text(f"{pair[0]} and {pair[1]} are both the gold graph", style="green")))
        return True

    def action_compare_versions(self) -> None:
        record, f = self.current, self.current_file
        if record is None or f is None:
            self.notify("Select a prompt first", severity="warning")
            return
        versions = sorted({ff.version for ff, _ in exams.same_prompt(self.files, record)} | {f.version},
                          key=exams._version_key)
        if len(versions) < 2:
            self.comparing, self.compare_pair = False, None
            self.notify(f"Only {f.version} examined {record.prompt_id}: nothing to compare yet", severity="warning")
            return
        pairs = list(zip(versions, versions[1:]))
        if not self.comparing:
            self.comparing, self.compare_pair = True, None
        elif self.compare_pair in pairs and pairs.index(self.compare_pair) > 0:  # one pair older
            self.compare_pair = pairs[pairs.index(self.compare_pair) - 1]
        else:  # past the oldest pair: back to expected vs actual
            self.comparing, self.compare_pair = False, None
        self.show_record(f, record)

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
