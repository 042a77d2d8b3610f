"""The line discipline every language's decoding constraint shares: which continuations of a text can
still become valid, asked one token piece at a time.

A text is complete lines plus the line being written. A piece without a newline only grows the open
line, which the language checks lexeme by lexeme (``_check``). A newline closes it: the line must be
whole, and the language's validator (``_line_errors``, the oracle) must not report an error on the text
so far that it did not report before. Accepted lines teach the language what they declared (``_learn``).
Pure Python: the engine's decoder calls ``allows``, ``advance`` and ``can_end``.
"""
from __future__ import annotations


class LinePrefixChecker:
    """Subclasses provide ``_check(line, closing)``, ``_learn(line)``, ``_line_errors(text)``, ``can_end()``
    and ``copy()`` (a copy whose ``done``, ``line``, ``_errors`` and facts are its own)."""

    __slots__ = ("done", "line", "_errors", "_cache")

    def __init__(self) -> None:
        self.done = ""  # complete lines, each ending in "\n"
        self.line = ""  # the line being written
        self._errors: frozenset = frozenset()  # oracle errors already in ``done`` (none, by construction)
        self._cache: dict[str, bool] = {}

    # -- the questions the decoder asks ------------------------------------------------------
    def allows(self, piece: str) -> bool:
        """Can ``done + line + piece`` still become a valid text?"""
        if not piece:
            return True
        if "\n" not in piece:
            return self._line_ok(self.line + piece)
        probe = self.copy()
        for i, part in enumerate(piece.split("\n")):
            if i and not probe._close_line():
                return False
            if part and not probe._line_ok(probe.line + part):
                return False
            probe.line += part
        return True

    def advance(self, piece: str) -> None:
        for i, part in enumerate(piece.split("\n")):
            if i:
                self._close_line(commit=True)
            self.line += part

    def can_end(self) -> bool:
        raise NotImplementedError

    def copy(self) -> LinePrefixChecker:
        raise NotImplementedError

    # -- whole lines --------------------------------------------------------------------------
    def _close_line(self, commit: bool = False) -> bool:
        """End the current line: refuse it when the oracle finds a new error (``commit``: end it anyway)."""
        line = self.line
        ok = True
        if line.strip():
            ok = self._line_ok(line, closing=True)
            if ok:
                errors = self._line_errors(self.done + line + "\n")
                ok = errors <= self._errors
                if ok and commit:
                    self._errors = errors
        if commit or ok:
            self._learn(line)  # a probe learns too: the next part of its piece is checked against this line
            self.done += line + "\n"
            self.line = ""
            self._cache = {}
        return ok

    def _line_ok(self, line: str, closing: bool = False) -> bool:
        key = line + ("\n" if closing else "")
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._check(line, closing)
        return hit

    # -- the language -------------------------------------------------------------------------
    def _check(self, line: str, closing: bool) -> bool:
        """Can LINE (open, or whole when ``closing``) still be a valid line after ``done``?"""
        raise NotImplementedError

    def _learn(self, line: str) -> None:
        """Record what an accepted line declared (ids, headers, ...)."""
        raise NotImplementedError

    def _line_errors(self, text: str) -> frozenset:
        """The oracle: the errors of TEXT the constraint answers for, as comparable items."""
        raise NotImplementedError
