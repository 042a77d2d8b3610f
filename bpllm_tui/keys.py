"""Every key of the app in one table, each with a stable id.

The id is what users rebind (``[keys]`` in the config, see :mod:`bpllm_tui.config`);
the same table feeds the footer, the help screen and the command palette, so the
three can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class KeySpec:
    id: str
    key: str  # default key(s), comma separated
    action: str
    description: str  # footer label
    help: str  # one line for the help screen and the palette
    show: bool = True
    priority: bool = False
    palette: bool = True  # offered in the command palette

    @property
    def palette_title(self) -> str:
        """The palette's full name ("Log y" alone says little there); the footer label when none is set."""
        return PALETTE_TITLES.get(self.id, self.description)

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action,
            self.description,
            show=self.show,
            priority=self.priority,
            id=self.id,
            tooltip=self.help,
        )


APP_KEYS: tuple[KeySpec, ...] = (
    KeySpec("run.start", "s", "start_cycle", "Start", "Start a teaching cycle (bpllm run) in this workspace"),
    KeySpec("run.stop", "x", "stop_run", "Stop", "Stop the running engine gracefully (asks first; never ctrl+c)"),
    KeySpec("run.resume", "r", "resume_run", "Resume", "Resume the last stopped or failed run (bpllm resume)"),
    KeySpec("screen.dashboard", "d", "show_dashboard", "Dashboard", "Show the dashboard: steps, GPUs, loss, mastery, log"),
    KeySpec("screen.editor", "e", "show_editor", "Editor", "Open the lesson editor"),
    KeySpec("screen.review", "v", "show_review", "Review", "Review exam results: expected vs actual"),
    KeySpec("screen.history", "h", "show_history", "History", "Scores per lesson and model version, mastery trends"),
    KeySpec("lesson.latest_draft", "o", "open_latest_draft", "Latest draft",
            "Open the newest lesson drafted by grading in the editor", show=False),
    KeySpec("app.theme", "t", "change_theme", "Theme", "Pick a colour theme", show=False),
    KeySpec("app.help", "f1,question_mark", "help", "Help", "Show every key and how to rebind it"),
    KeySpec("app.quit", "ctrl+q", "quit", "Quit", "Quit (asks about unsaved edits and a running engine)", priority=True),
)

DASHBOARD_KEYS: tuple[KeySpec, ...] = (
    KeySpec("loss.log_scale", "l", "toggle_log_scale", "Log y", "Loss chart: toggle logarithmic y axis"),
    KeySpec("loss.window", "w", "toggle_window", "Window", "Loss chart: show all steps / the last N"),
    KeySpec("log.follow", "p", "toggle_follow", "Pause log", "Log: pause / follow new lines"),
    KeySpec("log.filter", "slash", "focus_filter", "Filter", "Log: filter by text (Esc returns)"),
    KeySpec("log.level", "L", "cycle_level", "Level", "Log: cycle the minimum level (all/info/warning/error)"),
)

EDITOR_KEYS: tuple[KeySpec, ...] = (
    KeySpec("editor.save", "ctrl+s", "save", "Save", "Save the lesson (atomic)"),
    KeySpec("editor.format", "ctrl+l", "format", "Format", "Rewrite the DSL in canonical form"),
    KeySpec("editor.open", "ctrl+o", "open", "Open", "Open a lesson from the workspace"),
    KeySpec("editor.new", "ctrl+n", "new_lesson", "New", "Create a new lesson"),
    KeySpec("editor.add_prompt", "f4", "add_prompt", "Add prompt", "Add a prompt to this lesson"),
    KeySpec("editor.delete_prompt", "f5", "delete_prompt", "Del prompt", "Delete the selected prompt", show=False),
    KeySpec("editor.next_problem", "ctrl+g", "next_problem", "Next error", "Jump to the next diagnostic"),
    KeySpec("editor.accept_draft", "f6", "accept_draft", "Accept draft",
            "Accept this drafted lesson: move it into lessons/ so the teaching loop integrates it",
            priority=True),  # the DSL field (TextArea) binds f6 to select-line
    KeySpec("editor.import_t3d", "f8", "import_t3d", "Import T3D", "Import an Unreal clipboard file as this prompt's DSL"),
    KeySpec("editor.export_t3d", "f9", "export_t3d", "Export T3D", "Export this prompt's DSL as an Unreal clipboard file"),
    KeySpec("editor.back", "escape", "back", "Back", "Back to the dashboard (edits are kept)"),
)

REVIEW_KEYS: tuple[KeySpec, ...] = (
    KeySpec("review.failures", "f", "toggle_failures", "Failures only", "Show only prompts that failed"),
    KeySpec("review.correct", "c", "copy_to_correction", "To correction", "Copy prompt + gold answer into a correction lesson"),
    KeySpec("review.reload", "ctrl+r", "reload", "Reload",
            "Read the exam files again (new exams also appear by themselves within seconds)"),
    KeySpec("review.compare", "p", "compare_versions", "Versions",
            "Show this prompt's answers of two model versions side by side (again: the pair before, then off)"),
    KeySpec("review.back", "escape", "back", "Back", "Back to the dashboard"),
)

HISTORY_KEYS: tuple[KeySpec, ...] = (
    KeySpec("history.reload", "ctrl+r", "reload", "Reload", "Read the history store again"),
    KeySpec("history.back", "escape", "back", "Back", "Back to the dashboard"),
)

# full names for the command palette, where the footer's short labels lose their context
PALETTE_TITLES: dict[str, str] = {
    "run.start": "Start a teaching cycle",
    "run.stop": "Stop the running engine",
    "run.resume": "Resume the last run",
    "screen.dashboard": "Show the dashboard",
    "screen.editor": "Open the lesson editor",
    "screen.review": "Open the exam review",
    "screen.history": "Open the score history",
    "lesson.latest_draft": "Open the latest lesson draft",
    "app.theme": "Change the colour theme",
    "app.help": "Show every key (help)",
    "app.quit": "Quit bpllm",
    "loss.log_scale": "Loss chart: logarithmic y axis on/off",
    "loss.window": "Loss chart: all steps / the last N",
    "log.follow": "Log: pause / follow new lines",
    "log.filter": "Log: filter by text",
    "log.level": "Log: cycle the minimum level",
    "editor.save": "Save the lesson",
    "editor.format": "Format the DSL",
    "editor.open": "Open a lesson",
    "editor.new": "Create a new lesson",
    "editor.add_prompt": "Add a prompt",
    "editor.delete_prompt": "Delete the selected prompt",
    "editor.next_problem": "Jump to the next problem",
    "editor.accept_draft": "Accept this lesson draft",
    "editor.import_t3d": "Import an Unreal T3D clipboard file",
    "editor.export_t3d": "Export as Unreal T3D clipboard text",
    "review.failures": "Review: failures only / all prompts",
    "review.correct": "Review: copy to a correction lesson",
    "review.reload": "Review: reload the exam files",
    "review.compare": "Review: compare this prompt across model versions",
    "history.reload": "History: reload",
}

ALL_KEY_GROUPS: tuple[tuple[str, tuple[KeySpec, ...]], ...] = (
    ("Everywhere", APP_KEYS),
    ("Dashboard", DASHBOARD_KEYS),
    ("Lesson editor", EDITOR_KEYS),
    ("Exam review", REVIEW_KEYS),
    ("History", HISTORY_KEYS),
)


def bindings(specs: tuple[KeySpec, ...]) -> list[Binding]:
    return [spec.binding() for spec in specs]


def effective_key(spec: KeySpec, keymap: dict[str, str]) -> str:
    return keymap.get(spec.id, spec.key)


def known_ids() -> set[str]:
    return {spec.id for _, group in ALL_KEY_GROUPS for spec in group}
