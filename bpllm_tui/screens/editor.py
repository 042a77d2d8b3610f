"""The lesson editor: prompts, instruction, and a DSL field validated as you type.

Each key validates at once, inside the Changed handler: the ``dsl`` validator takes ~0.2 ms on
a lesson prompt (a few dozen lines), so a debounce timer only added its own delay and a trip
through a busy event loop (``bpllm bench tui`` measured a 98.6 ms worst case with a 12 ms
timer). The problems list and prompt label are rebuilt only when the diagnostics changed.
Texts that take longer than ``SYNC_VALIDATE_S`` to check fall back to a debounce, so typing
never waits on them. Every edit also rewrites a swap file (from a thread, so the key's
feedback never waits on the disk), so killing the app loses nothing; saving is atomic;
every way out (open, new, quit) asks about unsaved edits.
"""
from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import Footer, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from dsl.ast import Diagnostic
from bpllm_tui.keys import EDITOR_KEYS, bindings
from bpllm_tui.lesson import Lesson, LessonError, SwapFile, lesson_files, pending_swaps
from bpllm_tui.screens.dialogs import Choice, Prompt, unsaved_changes
from bpllm_tui.widgets.dsl_editor import DslTextArea
from engine.workspace.safe_paths import UnsafePath, id_path, safe_id
from engine.resources import resource

DEBOUNCE_S = 0.025  # only for texts slower to check than SYNC_VALIDATE_S
SYNC_VALIDATE_S = 0.008
SEVERITY_ICON = {"error": "✗", "warning": "▲", "info": "·"}


def summarize(diags: list[Diagnostic]) -> tuple[int, int]:
    errors = sum(1 for d in diags if d.severity == "error")
    warnings = sum(1 for d in diags if d.severity == "warning")
    return errors, warnings


class SwapWriteFailed(Message):
    """The swap writer thread could not write (disk full, permissions): the screen says so."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class LessonPicker(ModalScreen[Path | None]):
    """Pick a lesson of the workspace (drafts from grading included) or type a path."""

    CSS_PATH = resource("styles", "dialogs.tcss")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", show=False)]

    def __init__(self, workspace: Path) -> None:
        super().__init__(id="lesson-picker", classes="dialog")
        self.workspace = workspace
        self.files = lesson_files(workspace)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Open a lesson", id="dialog-title")
            options = []
            for i, path in enumerate(self.files):
                draft = path.parent.name == "drafts"
                label = Text()
                label.append("draft  " if draft else "lesson ", "bold" if draft else "dim")
                label.append(path.stem)
                try:
                    lesson = Lesson.load(path)
                    label.append(f"  {lesson.data.get('lesson_name', '')}  ({len(lesson.prompts)} prompts)", "dim")
                except LessonError:
                    label.append("  (unreadable)", "red")
                options.append(Option(label, id=str(i)))
            yield OptionList(*options, id="picker-list")
            yield Input(placeholder="…or a path to a lesson .json", id="picker-path")

    def on_mount(self) -> None:
        self.query_one(OptionList if self.files else Input).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.files[int(event.option.id or 0)])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        if value:
            path = Path(value).expanduser()
            self.dismiss(path if path.is_absolute() else (self.workspace / path))


def language_pack(workspace: Path):
    """The workspace's language pack and, when its config cannot say, Blueprint with the reason why."""
    from dsl import packs
    from engine.workspace.config import ConfigError
    from engine.workspace.workspace import Workspace, pack_for

    try:
        return pack_for(Workspace(workspace)), None
    except (ConfigError, OSError) as exc:
        return packs.load(packs.DEFAULT_LANGUAGE), f"{exc}; the editor checks texts as Blueprint"


class EditorScreen(Screen):
    CSS_PATH = resource("styles", "editor.tcss")
    BINDINGS = bindings(EDITOR_KEYS)
    KEY_SPECS = EDITOR_KEYS
    # below 120 columns the panes stack (styles/editor.tcss): side by side the DSL pane had no width
    NARROW = 120

    def __init__(self, workspace: Path, initial: Path | None = None) -> None:
        super().__init__(id="editor")
        self.workspace = workspace
        self.pack, self._pack_problem = language_pack(workspace)  # validation, formatting and colours
        self.initial = initial
        self.lesson: Lesson | None = None
        self.swap: SwapFile | None = None
        self.index = 0
        self.dirty = False
        self._saved_data: dict | None = None  # the lesson as its file holds it (dirty = differs from it)
        self.diagnostics: list[Diagnostic] = []
        self._loading = False
        self._timer: Timer | None = None
        self._validate_s = 0.0  # how long the last validation took: decides sync vs debounce
        self._shown: list[Diagnostic] | None = None  # what the problems list shows now
        # swap writes: keystrokes write from a thread; a sequence number keeps an older snapshot from
        # landing after a newer one, or after the swap was removed (saved or discarded)
        self._swap_lock = threading.Lock()
        self._swap_seq = 0
        self._swap_done = 0
        # for the benchmark and tests: when the last edit and the last validation happened
        self.last_edit_at = 0.0
        self.last_validated_at = 0.0
        self.validations = 0

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static("", id="editor-title")
        with Horizontal(id="editor-main"):
            with Vertical(id="prompt-pane"):
                yield OptionList(id="prompts")
            with Vertical(id="edit-pane"):
                with Horizontal(id="meta-row"):
                    yield Input(placeholder="instruction: what the user asks for", id="instruction")
                    yield Input(placeholder="category", id="category")
                area = DslTextArea("", id="dsl")
                area.highlights = self.pack.highlights
                yield area
                yield Static("", id="editor-status")
            with Vertical(id="diag-pane"):
                yield OptionList(id="diagnostics")
        yield Footer()

    @property
    def dsl(self) -> DslTextArea:
        return self.query_one("#dsl", DslTextArea)

    def on_resize(self) -> None:
        self.set_class(self.size.width < self.NARROW, "-narrow")

    def on_screen_resume(self) -> None:  # the terminal may have been resized in another mode
        self.set_class(self.app.size.width < self.NARROW, "-narrow")

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < self.NARROW, "-narrow")
        if self._pack_problem:
            self.notify(self._pack_problem, title="Language", severity="warning", timeout=8)
        self.query_one("#prompt-pane").border_title = "Prompts"
        self.query_one("#diag-pane").border_title = "Problems"
        self.query_one("#dsl").border_title = "DSL"
        target = self.initial
        if target is None:  # unsaved edits a killed session left behind come first: recovery is offered at once
            swaps = pending_swaps(self.workspace)
            files = lesson_files(self.workspace)
            target = swaps[0]["path"] if swaps and swaps[0]["path"].exists() else files[0] if files else None
        if target is not None:
            self.request_open(target)
        else:
            self._render_empty()

    def _render_empty(self) -> None:
        self.query_one("#editor-title", Static).update(
            Text("No lesson open — ctrl+n creates one, ctrl+o opens one", style="dim"))
        self.dsl.disabled = True
        self.query_one("#instruction", Input).disabled = True
        self.query_one("#category", Input).disabled = True
        self._update_status()

    # ------------------------------------------------------------------ opening
    @work(exclusive=True, group="editor-open")
    async def request_open(self, path: Path) -> None:
        if self.lesson is not None and path.resolve() == self.lesson.path.resolve():
            return
        if not await self.guard_unsaved("The open lesson"):
            return
        try:
            lesson = Lesson.load(path) if path.exists() else None
        except LessonError as exc:
            self.notify(str(exc), title="Cannot open lesson", severity="error", timeout=10)
            return
        if lesson is None:
            self.notify(f"{path} does not exist", severity="error")
            return
        swap = SwapFile(self.workspace, path)
        recovered = swap.read()
        dirty = False
        if recovered is not None and recovered["lesson"] != lesson.data:
            age = time.strftime("%H:%M:%S", time.localtime(recovered.get("written_at", 0)))
            answer = await self.app.push_screen_wait(Choice(
                "Recover unsaved edits?",
                f"{path.name} has edits from {age} that were never saved (the app was closed or killed).",
                [("recover", "Recover", "primary"), ("discard", "Discard them", "error")],
                id="recover-dialog",
            ))
            if answer == "recover":
                lesson.data = recovered["lesson"]
                dirty = True
                self.notify(f"Recovered the unsaved edits of {path.name} from {age}; ctrl+s saves them",
                            title="Swap file recovered", timeout=8)
            else:
                swap.remove()
        elif recovered is not None:
            swap.remove()
        self._show_lesson(lesson, swap, dirty, index=int(recovered.get("index", 0)) if dirty and recovered else 0)
        self.dsl.focus()  # the editor is for writing DSL: keys go there at once

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """f6 is offered (footer, key) only on a draft: on a lesson it was a dead key taking footer room.
        f8/f9 (T3D) only where the workspace's pack brings import-t3d/export-t3d (Blueprint)."""
        if action == "accept_draft":
            return self.lesson is not None and self.lesson.path.parent.name == "drafts"
        if action in ("import_t3d", "export_t3d"):
            return any(c.name == action.replace("_", "-") for c in self.pack.commands)
        return True

    def _show_lesson(self, lesson: Lesson, swap: SwapFile, dirty: bool, index: int = 0) -> None:
        self.lesson, self.swap, self.dirty = lesson, swap, dirty
        # what the file holds (None: edits recovered from a swap file, or a new lesson: unsaved until saved)
        self._saved_data = None if dirty else copy.deepcopy(lesson.data)
        self.refresh_bindings()
        for widget in (self.dsl, self.query_one("#instruction"), self.query_one("#category")):
            widget.disabled = False
        if not lesson.prompts:
            lesson.add_prompt()
        self._fill_prompt_list()
        self._select_prompt(min(index, len(lesson.prompts) - 1))
        self._update_title()

    def _fill_prompt_list(self) -> None:
        assert self.lesson is not None
        options = self.query_one("#prompts", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        for i, prompt in enumerate(self.lesson.prompts):
            options.add_option(Option(self._prompt_label(prompt), id=str(i)))
        if highlighted is not None and highlighted < len(self.lesson.prompts):
            options.highlighted = highlighted

    def _prompt_label(self, prompt: dict, diags: list[Diagnostic] | None = None) -> Text:
        if diags is None:
            diags = self.pack.validate(prompt.get("expected_dsl", "")) if prompt.get("expected_dsl") else []
        errors, warnings = summarize(diags)
        text = Text(no_wrap=True, overflow="ellipsis")
        if not prompt.get("expected_dsl"):
            text.append("○ ", "dim")
        elif errors:
            text.append("✗ ", "bold red")
        elif warnings:
            text.append("▲ ", "yellow")
        else:
            text.append("✓ ", "green")
        text.append(str(prompt.get("id", "?")), "bold")
        instruction = " ".join(str(prompt.get("instruction", "")).split())
        text.append("  " + (instruction[:19] + "…" if len(instruction) > 20 else instruction), "dim")
        return text

    def _select_prompt(self, index: int) -> None:
        assert self.lesson is not None
        self.index = index
        prompt = self.lesson.prompts[index]
        self._loading = True
        try:
            self.query_one("#instruction", Input).value = str(prompt.get("instruction", ""))
            self.query_one("#category", Input).value = str(prompt.get("category", ""))
            self.dsl.load_text(str(prompt.get("expected_dsl", "")))
        finally:
            self._loading = False
        options = self.query_one("#prompts", OptionList)
        if options.highlighted != index:
            options.highlighted = index
        self._shown = None  # another prompt: its label and problems are drawn afresh
        self._validate_now()

    def _update_title(self) -> None:
        if self.lesson is None:
            return
        title = Text()
        title.append(self.lesson.lesson_id, "bold")
        title.append(f"  {self.lesson.data.get('lesson_name', '')}  ", "")
        try:
            shown = self.lesson.path.relative_to(self.workspace)
        except ValueError:
            shown = self.lesson.path
        title.append(str(shown), "dim")
        if self.dirty:
            title.append("  ● modified", "bold yellow")
        self.query_one("#editor-title", Static).update(title)

    # ------------------------------------------------------------------ editing
    def _mark_dirty(self, swap: bool = True) -> None:
        """After an edit: modified means "differs from the file" (undoing back to it is clean again)."""
        self.last_edit_at = time.perf_counter()
        dirty = self.lesson is None or self._saved_data is None or self.lesson.data != self._saved_data
        if dirty != self.dirty:
            self.dirty = dirty
            self._update_title()
        if not dirty:
            self._drop_swap()
        elif swap:
            self._write_swap()

    def _write_swap(self, background: bool = False) -> None:
        if self.swap is None or self.lesson is None:
            return
        self._swap_seq += 1
        job = (self.swap, copy.deepcopy(self.lesson.data), self.index, self._swap_seq)
        if background:
            self._swap_in_thread(*job)
        else:
            error = self._swap_store(*job)
            if error:
                self.notify(error, severity="error")

    def _swap_store(self, swap: SwapFile, data: dict, index: int, seq: int) -> str | None:
        with self._swap_lock:
            if seq <= self._swap_done:
                return None  # a newer snapshot is on disk already, or the swap was dropped
            try:
                swap.write(data, {"index": index})
            except OSError as exc:
                return f"cannot write the swap file {swap.path}: {exc}"
            self._swap_done = seq
        return None

    @work(thread=True, group="editor-swap", exit_on_error=False)
    def _swap_in_thread(self, swap: SwapFile, data: dict, index: int, seq: int) -> None:
        error = self._swap_store(swap, data, index, seq)
        if error:
            self.post_message(SwapWriteFailed(error))

    @on(SwapWriteFailed)
    def _swap_failed(self, message: SwapWriteFailed) -> None:
        self.notify(message.text, severity="error")

    def _drop_swap(self) -> None:
        """Remove the swap file; writes still in flight for it are dropped, not written after."""
        if self.swap is None:
            return
        with self._swap_lock:
            self._swap_done = self._swap_seq
            self.swap.remove()

    @on(TextArea.Changed, "#dsl")
    def _dsl_changed(self, event: TextArea.Changed) -> None:
        if self._loading or self.lesson is None:
            return
        if self.dsl.text == self.lesson.prompts[self.index].get("expected_dsl", ""):
            return  # a load, not an edit
        self.lesson.prompts[self.index]["expected_dsl"] = self.dsl.text
        self._mark_dirty(swap=False)
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._validate_s < SYNC_VALIDATE_S:
            self._validate_now()
        else:
            self._timer = self.set_timer(DEBOUNCE_S, self._validate_now)
        self._write_swap(background=True)  # off the UI thread: the key's feedback never waits on the disk

    def _stale(self, event: Input.Changed) -> bool:
        """Messages arrive after the fact: one whose value is no longer the field's came from a load."""
        return self._loading or self.lesson is None or event.value != event.input.value

    @on(Input.Changed, "#instruction")
    def _instruction_changed(self, event: Input.Changed) -> None:
        if self._stale(event) or event.value == self.lesson.prompts[self.index].get("instruction"):
            return
        self.lesson.prompts[self.index]["instruction"] = event.value
        self._mark_dirty()
        options = self.query_one("#prompts", OptionList)
        options.replace_option_prompt_at_index(self.index, self._prompt_label(self.lesson.prompts[self.index],
                                                                              self.diagnostics))

    @on(Input.Changed, "#category")
    def _category_changed(self, event: Input.Changed) -> None:
        if self._stale(event) or event.value == self.lesson.prompts[self.index].get("category"):
            return
        self.lesson.prompts[self.index]["category"] = event.value
        self._mark_dirty()

    @on(OptionList.OptionHighlighted, "#prompts")
    def _prompt_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if self.lesson is None or self._loading:
            return
        index = int(event.option.id or 0)
        if event.option_list.highlighted != event.option_index:
            return  # stale: the list was refilled or moved since
        if index != self.index and index < len(self.lesson.prompts):
            self._select_prompt(index)

    @on(OptionList.OptionSelected, "#diagnostics")
    def _diagnostic_selected(self, event: OptionList.OptionSelected) -> None:
        d = self.diagnostics[int(event.option.id or 0)]
        self.dsl.goto(d.line, d.column)

    # ------------------------------------------------------------------ validation
    def _validate_now(self) -> None:
        self._timer = None
        started = time.perf_counter()
        text = self.dsl.text
        self.diagnostics = self.pack.validate(text) if text.strip() else []
        self._validate_s = time.perf_counter() - started
        self.dsl.set_diagnostics(self.diagnostics)
        if self.diagnostics != self._shown:  # most keys change no diagnostic: leave the lists alone
            self._show_problems()
        self._update_status()
        self.validations += 1
        self.last_validated_at = time.perf_counter()

    def _show_problems(self) -> None:
        self._shown = list(self.diagnostics)
        options = self.query_one("#diagnostics", OptionList)
        options.clear_options()
        for i, d in enumerate(self.diagnostics):
            label = Text(no_wrap=False)
            label.append(f"{SEVERITY_ICON.get(d.severity, '?')} ", "bold red" if d.severity == "error" else "yellow")
            label.append(f"{d.line}:{d.column} ", "bold")
            label.append(f"{d.message} ", "")
            label.append(f"[{d.code}]", "dim")
            options.add_option(Option(label, id=str(i)))
        if self.diagnostics:
            options.highlighted = 0
        if self.lesson is not None:
            self.query_one("#prompts", OptionList).replace_option_prompt_at_index(
                self.index, self._prompt_label(self.lesson.prompts[self.index], self.diagnostics))

    def _update_status(self) -> None:
        errors, warnings = summarize(self.diagnostics)
        status = Text()
        if self.lesson is None:
            status.append("no lesson", "dim")
        elif not self.dsl.text.strip():
            status.append("empty", "dim")
        elif errors:
            status.append(f"✗ {errors} error{'s' * (errors != 1)}", "bold red")
            if warnings:
                status.append(f"  ▲ {warnings} warning{'s' * (warnings != 1)}", "yellow")
        elif warnings:
            status.append(f"✓ valid  ▲ {warnings} warning{'s' * (warnings != 1)}", "yellow")
        else:
            status.append("✓ valid", "bold green")
        row, col = self.dsl.cursor_location
        status.append(f"    Ln {row + 1}, Col {col + 1}", "dim")
        if self.lesson is not None:
            status.append(f"    prompt {self.index + 1}/{len(self.lesson.prompts)}", "dim")
        self.query_one("#editor-status", Static).update(status)

    @on(TextArea.SelectionChanged, "#dsl")
    def _cursor_moved(self) -> None:
        self._update_status()

    # ------------------------------------------------------------------ actions
    def save(self) -> bool:
        if self.lesson is None:
            return False
        try:
            self.lesson.save()
        except OSError as exc:
            self.notify(f"Could not save {self.lesson.path}: {exc}", severity="error", timeout=10)
            return False
        self._drop_swap()
        self.dirty = False
        self._saved_data = copy.deepcopy(self.lesson.data)
        self._update_title()
        self._fill_prompt_list()
        self.notify(f"Saved {self.lesson.path.name}", timeout=2)
        return True

    def action_save(self) -> None:
        self.save()

    @work(exclusive=True, group="editor-accept")
    async def action_accept_draft(self) -> None:
        """The reviewer's yes: save, check every gold answer, move the draft into lessons/."""
        from engine.dataset.drafts import DraftError, accept_draft, what_happens_next

        if self.lesson is None or self.lesson.path.parent.name != "drafts":
            self.notify("Only a drafted lesson (lessons/drafts/) can be accepted", severity="warning")
            return
        if self.dirty and not self.save():
            return
        old = self.lesson.path
        try:
            target = accept_draft(self.workspace, str(old))
        except DraftError as exc:
            self.notify(str(exc), title="Cannot accept the draft", severity="error", timeout=15)
            return
        self._drop_swap()
        self.lesson = None  # reopen from its new home: the title, status and swap file follow the path
        self.request_open(target)
        self.notify(f"Accepted {target.name}: {what_happens_next(self.workspace)}", timeout=8)

    def action_format(self) -> None:
        text = self.dsl.text
        try:
            formatted = self.pack.format(text)
        except ValueError as exc:
            self.notify(f"Fix the syntax errors first: {exc}", title="Cannot format", severity="warning")
            return
        if not formatted.endswith("\n") and text.endswith("\n"):
            formatted += "\n"
        if formatted != text:
            self.dsl.replace(formatted, (0, 0), self.dsl.document.end)  # one undoable edit
            self.notify("Formatted", timeout=1.5)

    @work(exclusive=True, group="editor-action")
    async def action_open(self) -> None:
        path = await self.app.push_screen_wait(LessonPicker(self.workspace))
        if path is not None:
            self.request_open(path)

    @work(exclusive=True, group="editor-action")
    async def action_new_lesson(self) -> None:
        if not await self.guard_unsaved("The open lesson"):
            return
        lesson_id = await self.app.push_screen_wait(Prompt("New lesson id", "e.g. lesson_13"))
        if not lesson_id:
            return
        safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in lesson_id)
        try:
            path = id_path(self.workspace / "lessons", safe, what="lesson id", suffix=".json")
        except UnsafePath as exc:
            self.notify(str(exc), title="Cannot create the lesson", severity="error", timeout=10)
            return
        if path.exists():
            self.notify(f"{path} exists; opening it", severity="warning")
            self.lesson = None
            self.request_open(path)
            return
        lesson = Lesson.new(path, safe)
        lesson.add_prompt()
        self._show_lesson(lesson, SwapFile(self.workspace, path), dirty=True)
        self._write_swap()
        self.query_one("#instruction", Input).focus()

    def action_add_prompt(self) -> None:
        if self.lesson is None:
            return
        self.lesson.add_prompt()
        self._mark_dirty()
        self._fill_prompt_list()
        self._select_prompt(len(self.lesson.prompts) - 1)
        self.query_one("#instruction", Input).focus()

    @work(exclusive=True, group="editor-delete")
    async def action_delete_prompt(self) -> None:
        if self.lesson is None or not self.lesson.prompts:
            return
        pid = self.lesson.prompts[self.index].get("id")
        answer = await self.app.push_screen_wait(Choice(
            "Delete prompt?", f"Delete {pid} from this lesson? (nothing is written until you save)",
            [("delete", "Delete", "error"), ("cancel", "Cancel", "default")]))
        if answer != "delete":
            return
        del self.lesson.prompts[self.index]
        if not self.lesson.prompts:
            self.lesson.add_prompt()
        self._mark_dirty()
        self._fill_prompt_list()
        self._select_prompt(min(self.index, len(self.lesson.prompts) - 1))

    def action_next_problem(self) -> None:
        if not self.diagnostics:
            self.notify("No problems", timeout=1.5)
            return
        row, col = self.dsl.cursor_location
        after = [d for d in self.diagnostics if (d.line - 1, d.column - 1) > (row, col)]
        d = (after or self.diagnostics)[0]
        self.dsl.goto(d.line, d.column)

    def action_back(self) -> None:
        self.app.switch_mode("dashboard")

    @work(exclusive=True, group="editor-t3d")
    async def action_import_t3d(self) -> None:
        if self.lesson is None:
            return
        value = await self.app.push_screen_wait(Prompt("Import an Unreal clipboard file (T3D text)",
                                                       "path to a .txt copied from the Blueprint editor"))
        if value:
            self.import_t3d(Path(value).expanduser())

    def import_t3d(self, path: Path) -> bool:
        """Replace this prompt's DSL with the graph of an Unreal clipboard file (one undoable edit)."""
        from dsl.t3d import import_t3d_text

        if not path.is_absolute():
            path = self.workspace / path
        try:
            result = import_t3d_text(path.read_text(encoding="utf-8", errors="replace"), path.name)
        except OSError as exc:
            self.notify(f"{path}: {exc.strerror or exc}", title="Import failed", severity="error")
            return False
        except Exception as exc:  # noqa: BLE001 - a bad file must not take the editor down
            self.notify(f"{path}: {type(exc).__name__}: {exc}", title="Import failed", severity="error", timeout=10)
            return False
        if not result.dsl_text.strip():
            self.notify(f"{path.name}: no Blueprint graph in this file ({result.report.summary()})",
                        severity="warning", timeout=10)
            return False
        self.dsl.replace(result.dsl_text, (0, 0), self.dsl.document.end)
        report = result.report
        message = (f"{report.nodes_imported} nodes, {report.exec_wires} EXEC, {report.data_wires} DATA wires, "
                   f"{report.params} params")
        if report.unsupported:
            message += "; not supported: " + ", ".join(f"{k} ×{v}" if isinstance(v, int) else str(k)
                                                       for k, v in list(report.unsupported.items())[:4])
        for note in report.notes[:2]:
            message += f"\n{note}"
        self.notify(message, title=f"Imported {path.name}", timeout=10,
                    severity="warning" if report.unsupported else "information")
        return True

    def action_export_t3d(self) -> None:
        if self.lesson is not None:
            self.export_t3d()

    def export_t3d(self) -> Path | None:
        """Write this prompt's DSL as Unreal clipboard text to exports/ and put it on the clipboard."""
        from dsl.t3d import export_t3d
        from engine.atomic import atomic_write_text

        assert self.lesson is not None
        if any(d.severity == "error" for d in self.diagnostics):
            self.notify("Fix the errors first: Unreal would reject a broken graph", title="Cannot export",
                        severity="warning")
            return None
        try:
            text = export_t3d(self.dsl.text)
        except Exception as exc:  # noqa: BLE001 - reported: the notification names the error
            self.notify(f"{type(exc).__name__}: {exc}", title="Export failed", severity="error", timeout=10)
            return None
        prompt_id = str(self.lesson.prompts[self.index].get("id") or "prompt")
        try:  # both ids name the file: one with '/' or '..' must not write outside the workspace
            safe_id(self.lesson.lesson_id, "lesson id")
            safe_id(prompt_id, "prompt id")
            exports = id_path(self.workspace, "exports", what="exports folder")
            out = id_path(exports, f"{self.lesson.lesson_id}_{prompt_id}", what="export name", suffix=".t3d.txt")
        except UnsafePath as exc:
            self.notify(f"{exc} (in {self.lesson.path.name})", title="Cannot export", severity="error", timeout=10)
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text)
        self.app.copy_to_clipboard(text)
        self.notify(f"Wrote {out} and copied it to the clipboard: paste into the Blueprint editor", timeout=8)
        return out

    # ------------------------------------------------------------------ guard
    async def guard_unsaved(self, what: str) -> bool:
        """Ask Save / Discard / Cancel when there are unsaved edits; True when it is fine to go on."""
        if not self.dirty or self.lesson is None:
            return True
        answer = await self.app.push_screen_wait(unsaved_changes(f"{what} ({self.lesson.path.name})"))
        if answer == "save":
            return self.save()
        if answer == "discard":
            self._drop_swap()
            self.dirty = False
            return True
        return False
