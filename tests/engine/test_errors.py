"""One error family (issue 15, item 4): user errors are BpllmErrors reported once by the CLI as
``bpllm <command>: message (hint)``; one StopRequested; silent failures now say so."""
from __future__ import annotations

import logging
import subprocess
import textwrap
from pathlib import Path

import pytest
from lark import Lark

import dsl.parser as parser_mod
import engine.cli as cli
from bpllm_tui.app import BpllmApp
from bpllm_tui.config import TuiConfig
from dsl.cli import InputError
from dsl.errors import BpllmError, StopRequested
from dsl.formatter import FormatError
from dsl.packs import UnknownLanguage
from engine.dataset.drafts import DraftError
from engine.ml.base import BaseUnavailable
from engine.ml.export import ExportError
from engine.ml.launch import TooManyRanks
from engine.ml.train import TrainingStopped
from engine.runtime import context
from engine.runtime.failures import CorruptCheckpoint, DataError, EngineError, StallTimeout, classify
from engine.runtime.orchestrator import StallAbort, StepFailed, _is_stop
from engine.workspace.backup import BackupError
from engine.workspace.config import ConfigError
from engine.workspace.lock import LockBusy
from engine.workspace.safe_paths import UnsafePath
from engine.workspace.workspace import WorkspaceError
from bpllm_tui.lesson import LessonError
from tests.tui_helpers import aio, wait_for
from tests.cli import bpllm as _run

ROOT = Path(__file__).resolve().parents[2]

USER_ERRORS = [InputError, FormatError, UnknownLanguage, DraftError, BaseUnavailable, ExportError, TooManyRanks,
               EngineError, DataError, CorruptCheckpoint, StallTimeout, BackupError, ConfigError,
               LockBusy, UnsafePath, WorkspaceError, LessonError, StopRequested]


@pytest.mark.parametrize("cls", USER_ERRORS, ids=lambda c: c.__name__)
def test_every_user_error_is_a_bpllm_error(cls):
    assert issubclass(cls, BpllmError)


def test_internal_control_flow_is_not_a_user_error():
    # the orchestrator's own signals must never be printed as "bpllm run: ..." and swallowed
    for cls in (StallAbort, StepFailed, context.StepSkipped):
        assert not issubclass(cls, BpllmError), cls


def test_old_base_classes_still_catch_them():
    """Callers that catch ValueError / RuntimeError / LookupError keep working."""
    assert issubclass(ConfigError, ValueError) and issubclass(UnsafePath, ValueError)
    assert issubclass(LockBusy, RuntimeError) and issubclass(WorkspaceError, RuntimeError)
    assert issubclass(UnknownLanguage, LookupError) and issubclass(FormatError, ValueError)


def test_message_and_hint():
    err = DataError("no rows", hint="add lessons")
    assert (err.message, err.hint, str(err)) == ("no rows", "add lessons", "no rows (add lessons)")
    info = classify(err)
    assert (info.category, info.message, info.hint) == ("data", "no rows", "add lessons")  # hint not doubled
    assert classify(DataError("no rows")).hint is None


def test_one_stop_requested_matched_by_isinstance():
    import engine.ml.base as base

    assert context.StopRequested is StopRequested and base.StopRequested is StopRequested
    stop = TrainingStopped("ckpt-10")
    assert isinstance(stop, StopRequested) and stop.checkpoint == "ckpt-10"
    assert _is_stop(stop)
    try:
        try:
            raise StopRequested()
        except StopRequested as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert _is_stop(outer)  # anywhere in the chain

    class StopRequested_(Exception):  # noqa: N801
        pass

    StopRequested_.__name__ = "StopRequested"  # a class that only shares the name is not a stop any more
    assert not _is_stop(StopRequested_())


# ---------------------------------------------------------------------------- the CLI reports once
def bpllm(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return _run(*args, cwd=cwd, timeout=180)


def test_mastery_on_missing_and_never_run_workspaces_is_one_line(tmp_path):
    missing = bpllm("mastery", "-w", str(tmp_path / "missing"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [missing.stderr.strip()], missing.stderr
    assert missing.stderr.startswith("bpllm mastery: ") and "not a bpllm workspace" in missing.stderr
    assert bpllm("init", str(tmp_path / "ws")).returncode == 0
    (tmp_path / "ws" / "history.db").unlink(missing_ok=True)  # a workspace that never ran
    fresh = bpllm("mastery", "-w", str(tmp_path / "ws"))
    assert fresh.returncode == 1, fresh.stderr
    assert "Traceback" not in fresh.stderr
    assert fresh.stderr.strip() == "bpllm mastery: no mastery recorded yet (`bpllm run` records it at steps 6-7)"


def test_score_of_a_missing_file_is_reported_by_main(tmp_path):
    out = bpllm("score", str(tmp_path / "a.dsl"), str(tmp_path / "b.dsl"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"bpllm score: {tmp_path / 'a.dsl'}: no such file"


def test_main_reports_user_errors_and_keeps_tracebacks_for_bugs(tmp_path, monkeypatch, capsys):
    """engine.cli.main with a real command module: a BpllmError is one line, exit 1; a bug propagates."""
    (tmp_path / "errcmd_mod.py").write_text(textwrap.dedent('''
        from dsl.errors import BpllmError, StopRequested

        def _user(args):
            raise BpllmError("the thing is broken", "fix the thing")

        def _stop(args):
            raise StopRequested()

        def _bug(args):
            raise ZeroDivisionError("a bug")

        def register(sub):
            sub.add_parser("user-err").set_defaults(func=_user)
            sub.add_parser("stop-err").set_defaults(func=_stop)
            sub.add_parser("bug-err").set_defaults(func=_bug)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("errcmd_mod",))
    assert cli.main(["user-err"]) == 1
    assert capsys.readouterr().err == "bpllm user-err: the thing is broken (fix the thing)\n"
    assert cli.main(["stop-err"]) == 2
    assert capsys.readouterr().err.startswith("bpllm stop-err: stop requested")
    with pytest.raises(ZeroDivisionError):
        cli.main(["bug-err"])


# ---------------------------------------------------------------------------- silent failures now speak
def test_parser_fast_path_failure_is_reported_once(monkeypatch, caplog):
    """A Lark object of a layout the fast path does not know (Earley has no LALR table): real failure."""
    monkeypatch.setattr(parser_mod, "_fast", None)
    monkeypatch.setattr(parser_mod, "_fast_failed", None)
    monkeypatch.setattr(parser_mod, "_lark", lambda: Lark('start: "a"', parser="earley"))
    with caplog.at_level(logging.WARNING, logger="dsl.parser"):
        assert parser_mod._fast_path() is None
        assert parser_mod._fast_path() is None
    warnings = [r for r in caplog.records if "fast path is off" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert parser_mod.fast_path_problem()


def test_accept_says_when_the_config_does_not_load(tmp_path):
    from engine.dataset.drafts import what_happens_next

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "bpllm.toml").write_text("[data]\nintegrate = 3\n[[[ not toml", encoding="utf-8")
    text = what_happens_next(ws)
    assert "by default: the config does not load" in text and "bpllm.toml" in text


@aio
async def test_a_failing_follower_is_shown_not_frozen(tmp_path):
    """The events follower dies for real (events.jsonl is a directory: open() fails); the app says so."""
    ws = tmp_path / "ws"
    run_dir = ws / "runs" / "20260301-000000-dead"
    (run_dir / "events.jsonl").mkdir(parents=True)
    (run_dir / "events.jsonl" / "x").write_text("garbage", encoding="utf-8")  # a non-empty size to read
    (ws / "lessons").mkdir()
    app = BpllmApp(ws, config=TuiConfig(), attach=False)
    async with app.run_test(size=(160, 48)) as pilot:
        app.client.follow(run_dir, live=False)

        def shown() -> bool:
            return any("Lost track of the engine" == (n.title or "") for n in app._notifications)

        assert await wait_for(pilot, shown, timeout=15), [r.text for r in app.state.log]
        note = next(n.message for n in app._notifications if n.title == "Lost track of the engine")
        assert "events follower stopped: IsADirectoryError" in note
        assert any("events follower stopped" in r.text and r.level == "error" for r in app.state.log)


@aio
async def test_a_failing_background_worker_is_shown(tmp_path):
    """A thread worker started with exit_on_error=False that raises is said, not silently lost."""
    ws = tmp_path / "ws"
    (ws / "lessons").mkdir(parents=True)
    app = BpllmApp(ws, config=TuiConfig(), attach=False)

    def broken() -> None:
        raise OSError(5, "Input/output error", str(ws / "lessons" / "x.json"))

    async with app.run_test(size=(160, 48)) as pilot:
        app.run_worker(broken, name="lesson-scan", thread=True, exit_on_error=False)

        def shown() -> bool:
            return any(n.title == "A background task failed" for n in app._notifications)

        assert await wait_for(pilot, shown, timeout=15), [r.text for r in app.state.log]
        assert any("lesson-scan worker stopped: OSError" in r.text for r in app.state.log)
