"""The one error family of bpllm: a user error is a message plus a hint, reported once by the CLI.

It lives in ``dsl`` because that is the lowest layer (the engine and the TUI import it; it imports
nothing). ``bpllm <command>: message (hint)``, exit 1, no traceback: see engine/cli. Subclass where a
caller must tell errors apart; everything else raises BpllmError itself.
"""
from __future__ import annotations


class BpllmError(Exception):
    """A problem the user can fix: ``message`` says what is wrong, ``hint`` what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class StopRequested(BpllmError):
    """A graceful stop was asked for (stop file, signal): not a failure, the run is resumable."""

    def __init__(self, message: str = "stop requested", hint: str = "resume with `bpllm resume`") -> None:
        super().__init__(message, hint)
