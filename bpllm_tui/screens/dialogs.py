"""Small modal questions. Each returns a string choice via ``dismiss`` so callers can
``push_screen(..., callback)`` or ``await push_screen_wait(...)`` from a worker."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static
from engine.resources import resource


class Choice(ModalScreen[str]):
    """A question with buttons; the first is the default (Enter), Escape answers ``cancel``."""

    CSS_PATH = resource("styles", "dialogs.tcss")
    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel", show=False)]

    def __init__(self, title: str, message: str, choices: list[tuple[str, str, str]], *, id: str | None = None) -> None:
        """``choices``: (value, label, variant) with variant in default/primary/warning/error/success."""
        super().__init__(id=id, classes="dialog")
        self.title_text = title
        self.message = message
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.message, id="dialog-message")
            with Horizontal(id="dialog-buttons"):
                for value, label, variant in self.choices:
                    yield Button(label, id=f"choice-{value}", variant=variant)  # type: ignore[arg-type]

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss((event.button.id or "choice-cancel").removeprefix("choice-"))


def quit_while_running(run_id: str) -> Choice:
    return Choice(
        "The engine is still running",
        f"Run {run_id} keeps going without the TUI if you leave it; reopen bpllm-tui on this workspace to "
        "attach again.",
        [("leave", "Leave running", "primary"), ("stop", "Stop it, then quit", "error"), ("cancel", "Cancel", "default")],
        id="quit-dialog",
    )


def confirm_stop(run_id: str, stopping: bool) -> Choice:
    if stopping:
        return Choice(
            "Already stopping",
            f"Run {run_id} stops at its next safe boundary (between steps, exam prompts or trainer steps). "
            "Send SIGTERM to its process group now? (also graceful: the engine saves a resume state)",
            [("wait", "Keep waiting", "primary"), ("terminate", "Send SIGTERM", "error")],
            id="stop-dialog",
        )
    return Choice(
        "Stop the run?",
        f"Run {run_id} will stop at its next safe boundary and can be resumed with r.",
        [("stop", "Stop", "error"), ("cancel", "Cancel", "default")],
        id="stop-dialog",
    )


def unsaved_changes(what: str) -> Choice:
    return Choice(
        "Unsaved changes",
        f"{what} has unsaved changes.",
        [("save", "Save", "primary"), ("discard", "Discard", "error"), ("cancel", "Cancel", "default")],
        id="unsaved-dialog",
    )


class Prompt(ModalScreen[str | None]):
    """Ask for one line of text (a path, a lesson id)."""

    CSS_PATH = resource("styles", "dialogs.tcss")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", show=False)]

    def __init__(self, title: str, placeholder: str = "", value: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id, classes="dialog")
        self.title_text = title
        self.placeholder = placeholder
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Input(value=self.value, placeholder=self.placeholder, id="dialog-input")
            yield Static("Enter to confirm, Esc to cancel", id="dialog-message")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)
