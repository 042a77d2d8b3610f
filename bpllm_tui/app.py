"""bpllm-tui: the control room for the teaching loop.

The app owns three things: the run state (:class:`~bpllm_tui.state.RunState`), the
engine client (:class:`~bpllm_tui.client.EngineClient`, a child process plus a
follower thread posting Messages) and four modes — dashboard, lesson editor, exam
review, history — each its own screen stack, so leaving the editor to glance at the
loss curve keeps every unsaved edit where it was.

It never imports the ML stack (torch, transformers, peft, trl): the engine
subprocess owns those, and the first frame paints in well under a second.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path
from typing import Iterable

from rich.markup import escape
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from bpllm_tui.client import EngineClient, find_attach_target
from bpllm_tui.config import TuiConfig, load_config, workspace_config_problem
from bpllm_tui.keys import APP_KEYS, KeySpec, bindings, effective_key, known_ids
from bpllm_tui.messages import (CommandFinished, EngineAttached, EngineEvents, EngineHeartbeat, EngineOutput,
                                EngineProcess, FollowerFailed, GpuSample)
from bpllm_tui.screens.dashboard import DashboardScreen
from bpllm_tui.screens.dialogs import confirm_stop, quit_while_running
from bpllm_tui.screens.help import HelpScreen
from bpllm_tui.state import RunState
from engine.resources import resource

IDLE_GC_S = 15.0
GPU_PROBE_S = 10.0  # the TUI's own NVML reading while no engine samples
DEFAULT_GC_THRESHOLD = gc.get_threshold()


class BpllmApp(App[int]):
    """The bpllm control room."""

    TITLE = "bpllm"
    CSS_PATH = resource("styles", "app.tcss")
    DEFAULT_MODE = "dashboard"
    BINDINGS = bindings(APP_KEYS)

    def __init__(
        self,
        workspace: Path,
        *,
        config: TuiConfig | None = None,
        exam_sources: Iterable[Path] = (),
        attach: bool = True,
        open_lesson: Path | None = None,
    ) -> None:
        super().__init__()
        self.workspace = workspace.resolve()
        self.config = config or load_config(self.workspace)
        self.exam_sources = [Path(p).resolve() for p in exam_sources]
        self.attach_on_start = attach
        self.open_lesson = open_lesson
        self.state = RunState(log_lines=self.config.log_lines)
        self.state.seed_plan()
        self.state.workspace_profile, self._config_problem = workspace_profile(self.workspace, self.config)
        self.client = EngineClient(self.workspace, self.post_message)
        self._quit_when_engine_exits = False
        self._last_event_at = 0.0
        self._launch_after_init: tuple[str, ...] | None = None
        self.add_mode("dashboard", self._make_dashboard)
        self.add_mode("editor", self._make_editor)
        self.add_mode("review", self._make_review)
        self.add_mode("history", self._make_history)

    # ------------------------------------------------------------ screens
    def _make_dashboard(self) -> Screen:
        return DashboardScreen(self.state, stall_seconds=self.config.stall_seconds,
                               loss_window=self.config.loss_window, log_lines=self.config.log_lines)

    def _make_editor(self) -> Screen:
        from bpllm_tui.screens.editor import EditorScreen

        return EditorScreen(self.workspace, initial=self.open_lesson)

    def _make_review(self) -> Screen:
        from bpllm_tui.screens.review import ReviewScreen

        return ReviewScreen(self.workspace, extra_sources=self.exam_sources)

    def _make_history(self) -> Screen:
        from bpllm_tui.screens.history import HistoryScreen

        return HistoryScreen(self.workspace, extra_sources=self.exam_sources)

    def mode_screen(self, mode: str) -> Screen | None:
        """The base screen of a mode if it was ever opened (None otherwise)."""
        stack = self._screen_stacks.get(mode)
        return stack[0] if stack else None

    # ------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        if self.config.theme in self.available_themes:
            self.theme = self.config.theme
        keymap = {k: v for k, v in self.config.keys.items() if k in known_ids()}
        unknown = sorted(set(self.config.keys) - known_ids())
        if keymap:
            self.set_keymap(keymap)
        for problem in self.config.problems + [f"unknown key id {u!r} in [keys] (see F1 for ids)" for u in unknown]:
            self.notify(problem, title="Settings", severity="warning", timeout=8)
        self.sub_title = str(self.workspace)
        if not (self.workspace / "bpllm.toml").is_file():
            self.state.add_log(f"{self.workspace} is not a bpllm workspace yet (no bpllm.toml); "
                               "press s to create it and start a cycle", "warning", "tui")
        self.set_timer(1.5, self._freeze_startup_objects)  # after the first frames, off the startup path
        if self._config_problem:
            self.state.add_log(f"profile unknown: {self._config_problem}", "warning", "tui")
        self.state.keep_mastery(*latest_mastery(self.workspace))
        self._probe_gpus()
        self.set_interval(GPU_PROBE_S, self._probe_gpus)
        self._announce_swaps()
        if self.open_lesson is not None:
            self.call_later(self.open_lesson_in_editor, self.open_lesson)
        if self.attach_on_start:
            run_dir, live = find_attach_target(self.workspace)
            if run_dir is not None:
                self.state.add_log(f"{'attaching to running' if live else 'showing last'} run {run_dir.name}",
                                   "info", "tui")
                self.client.follow(run_dir, live=live)

    def _probe_gpus(self) -> None:
        """Read NVML ourselves (in a thread: a driver can take a moment) while no engine is sampling."""
        if not self.state.active or self.state.gpu_available is None:
            self.run_worker(self._read_nvml, thread=True, exclusive=True, group="gpu-probe", exit_on_error=False)

    def _read_nvml(self) -> None:
        from engine.runtime.telemetry import sample_gpus  # NVML via nvidia-ml-py; never torch

        try:
            available, devices, reason = sample_gpus()
        except Exception as exc:  # noqa: BLE001 - a broken driver is a panel line, not a crash
            available, devices, reason = False, [], f"no GPU: NVML failed ({exc})"
        self.post_message(GpuSample(available, devices, reason))

    def on_gpu_sample(self, message: GpuSample) -> None:
        self.state.set_local_gpu({"available": message.available, "devices": message.devices,
                                  "reason": message.reason})

    def _announce_swaps(self) -> None:
        """Edits a killed session never saved are said at once, not only if that lesson is opened."""
        from bpllm_tui.lesson import pending_swaps

        for swap in pending_swaps(self.workspace)[:2]:
            at = time.strftime("%H:%M:%S", time.localtime(swap["written_at"]))
            self.notify(f"{swap['path'].name} has unsaved edits from {at} (the app was closed or killed): "
                        "press e to recover or discard them", title="Unsaved edits found", timeout=12)

    def _freeze_startup_objects(self) -> None:
        """GC policy for smooth frames: the app's startup objects (widgets, CSS, modules) are frozen out
        of the collector's reach, and full (generation 2) collections — the ones that can pause for
        50–150 ms — run only when no events arrived for a few seconds. Young generations still collect
        as usual, so garbage never piles up; cycles wait at most ``IDLE_GC_S`` for the idle pass."""
        gc.collect()
        gc.freeze()
        gen0, gen1, _ = gc.get_threshold()
        gc.set_threshold(gen0, gen1, 1_000_000)
        self.set_interval(IDLE_GC_S, self._idle_collect)

    def _idle_collect(self) -> None:
        if time.monotonic() - self._last_event_at > 3.0:
            gc.collect()

    def on_unmount(self) -> None:
        self.client.close()
        gc.set_threshold(*DEFAULT_GC_THRESHOLD)
        gc.unfreeze()

    # ------------------------------------------------------------ engine messages
    def on_engine_attached(self, message: EngineAttached) -> None:
        if self.state.run_dir != message.run_dir:
            self._fresh_state(message.run_dir)
        if message.live:
            self.state.set_process("running")

    def _fresh_state(self, run_dir: str) -> None:
        """A new fold (new run, or its events file was replaced); the log and the process state stay."""
        old = self.state
        keep, versions, process, note = list(old.log), dict(old.versions), old.process, old.process_note
        mastery = [{"node": r.node, "score": r.score, "n": r.n, "delta": r.delta, "band": r.band}
                   for r in old.mastery.values()]
        local_gpu, mastery_version, profile = old.local_gpu, old.mastery_version, old.workspace_profile
        old.__init__(log_lines=self.config.log_lines)
        old.seed_plan()
        old.local_gpu, old.workspace_profile = local_gpu, profile
        old.keep_mastery(mastery, mastery_version)  # the last table stays until the new run grades
        old.log.extend(keep)
        old.log_total = len(keep)
        old.run_dir = run_dir
        old.process, old.process_note = process, note
        for area in old.versions:  # strictly newer than anything a widget has seen
            old.versions[area] = versions.get(area, 0) + 1

    def on_engine_events(self, message: EngineEvents) -> None:
        self._last_event_at = time.monotonic()
        if message.reset:
            self._fresh_state(message.run_dir)
        for problem in message.malformed:
            self.state.note_malformed(problem)
        if message.malformed:
            more = f" (+{len(message.malformed) - 1} more, see the log)" if len(message.malformed) > 1 else ""
            first = message.malformed[0] if len(message.malformed[0]) <= 240 else message.malformed[0][:237] + "..."
            self.notify(f"{first}{more}", title="Skipped an unreadable event line",
                        severity="warning", timeout=10)
        events = message.events
        last = self.state.core.last_seq
        if last and message.run_dir == self.state.run_dir:
            # following the same run again (resume from this app re-reads its events.jsonl from the top):
            # what is already folded stays folded once, so the live log is the one a re-attach rebuilds
            events = [e for e in events if not (isinstance(e.get("seq"), int) and e["seq"] <= last)]
        for event in events:
            try:
                self.state.apply(event)
            except Exception as exc:  # noqa: BLE001 - one odd event must not take the control room down; say which
                where = f"{Path(message.run_dir) / 'events.jsonl'} seq {event.get('seq')}"
                self.state.note_malformed(f"{where}: could not be shown ({type(exc).__name__}: {exc})")
                self.notify(f"{where}: {type(exc).__name__}: {exc}", title="Skipped an event",
                            severity="warning", timeout=10)
        if not message.replay:
            for event in message.events:
                if event.get("type") == "artifact" and event.get("kind") == "lesson_draft":
                    self.notify(f"Grading drafted {event.get('path')}; press o to review it in the editor",
                                title="New lesson draft", timeout=10)

    def on_engine_heartbeat(self, message: EngineHeartbeat) -> None:
        self.state.set_heartbeat(message.beat)

    def on_engine_output(self, message: EngineOutput) -> None:
        for stream, line in message.lines:
            self.state.add_log(line, "warning" if stream == "stderr" else "info", stream)

    def on_engine_process(self, message: EngineProcess) -> None:
        if message.process == "exited" and message.code is not None and message.code < 0:
            # killed by a signal before it could write its end event: a dead engine, resumable
            message = EngineProcess("dead", message.code, f"engine killed by signal {-message.code} "
                                                          "(no end event) — r resumes the run")
        if message.process == "exited":
            self.state.set_process("exited", message.note)
            code = message.code
            if code is not None:
                self.state.add_log(f"engine exited with code {code}"
                                   + {0: " (done)", 2: " (stopped on request)", 1: " (failed)"}.get(code, ""),
                                   "error" if code not in (0, 2) else "info", "tui")
                if self.state.core.status in ("unknown", "running"):
                    # no end event: the engine died before it could write one
                    self.state.core.status = {0: "done", 2: "stopped"}.get(code, "failed")
                    self.state.core.exit_code = code
                    self.state._bump("status", "steps")
            if message.note:
                self.notify(message.note, severity="error")
        elif message.process == "dead":
            self.state.set_process("dead", message.note)
            self.state.add_log(message.note, "error", "tui")
            self.notify(message.note, title="Engine is gone", severity="error", timeout=10)
        if self._quit_when_engine_exits and message.process in ("exited", "dead"):
            self.exit(0)

    def on_follower_failed(self, message: FollowerFailed) -> None:
        """A follower thread died: say so (log and notification) instead of showing a dashboard that froze."""
        text = f"the {message.what} stopped: {message.error}" + (f"; {message.consequence}" if message.consequence else "")
        self.state.add_log(text, "error", "tui")
        title = "Lost track of the engine" if message.consequence else "A background task failed"
        self.notify(text, title=title, severity="error", timeout=15)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A background worker that died of an error (``exit_on_error=False``) is said, not lost."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.post_message(FollowerFailed(f"{event.worker.name or 'background'} worker",
                                             f"{type(error).__name__}: {error}", consequence=""))

    def on_command_finished(self, message: CommandFinished) -> None:
        level = "info" if message.code == 0 else "error"
        if message.output:
            for line in message.output.splitlines()[-20:]:
                self.state.add_log(f"bpllm {message.name}: {line}", level, "tui")
        if message.name == "init":
            if message.code == 0 and self._launch_after_init:
                args, self._launch_after_init = self._launch_after_init, None
                self._launch(*args)
            elif message.code != 0:
                self.notify(f"bpllm init failed (exit {message.code}); see the log", severity="error")
        elif message.name == "stop" and message.code not in (0, 2):
            self.notify(f"bpllm stop failed (exit {message.code}): {message.output[-200:]}", severity="error")

    # ------------------------------------------------------------ run control
    def _launch(self, subcommand: str, *args: str) -> None:
        try:
            self.client.launch(subcommand, *args)
        except (RuntimeError, OSError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.state.stopping = False
        self.state.add_log(f"started bpllm {subcommand} (pid {self.client.proc.pid if self.client.proc else '?'})",
                           "info", "tui")
        self.notify(f"bpllm {subcommand} started", timeout=3)

    def _engine_busy(self) -> bool:
        return self.client.engine_alive() or self.state.process == "running" and self.state.active

    def _run_in_progress(self) -> bool:
        """An engine is working on a run (one that has written its end event is only exiting)."""
        if self.state.core.status in ("done", "stopped", "failed"):
            return False
        return self.client.engine_alive() or (self.state.active and self.state.process == "running")

    def action_start_cycle(self) -> None:
        if self._engine_busy():
            self.notify("A run is already active in this workspace (x stops it).", severity="warning")
            return
        args: list[str] = []
        if self.config.profile:
            args += ["--profile", self.config.profile]
        args += self.config.run_args
        if not (self.workspace / "bpllm.toml").is_file():
            self._launch_after_init = ("run", *args)
            self.state.add_log(f"creating workspace {self.workspace} (bpllm init)", "info", "tui")
            self.client.run_command("init", "init", str(self.workspace))
            return
        self._launch("run", *args)

    def action_resume_run(self) -> None:
        if self._engine_busy():
            self.notify("The engine is running; nothing to resume.", severity="warning")
            return
        if not (self.workspace / "bpllm.toml").is_file():
            self.notify("No workspace here yet: press s to start a first cycle.", severity="warning")
            return
        self._launch("resume")

    @work(exclusive=True, group="stop")
    async def action_stop_run(self) -> None:
        if not self.state.active and not self.client.engine_alive():
            self.notify("No engine is running.", severity="warning")
            return
        stopping = self.state.status == "stopping"
        answer = await self.push_screen_wait(confirm_stop(self.state.run_id or "?", stopping))
        if answer == "stop":
            self.state.stopping = True
            self.state._bump("status")
            self.state.add_log("asking the engine to stop (bpllm stop)", "warning", "tui")
            self.client.request_stop()
        elif answer == "terminate":
            self.state.add_log("sending SIGTERM to the engine's process group", "warning", "tui")
            self.client.terminate()

    # ------------------------------------------------------------ screens
    def action_show_dashboard(self) -> None:
        self.switch_mode("dashboard")

    def action_show_editor(self) -> None:
        self.switch_mode("editor")

    def action_show_review(self) -> None:
        self.switch_mode("review")

    def action_show_history(self) -> None:
        self.switch_mode("history")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            keymap = dict(self.config.keys)
            self.push_screen(HelpScreen(keymap, self.config.sources))

    def action_open_latest_draft(self) -> None:
        drafts = self.workspace / "lessons" / "drafts"
        newest = max(drafts.glob("*.json"), key=lambda p: p.stat().st_mtime, default=None) if drafts.is_dir() else None
        if newest is None:
            self.notify("No drafted lessons yet (grading writes them to lessons/drafts/).", severity="warning")
            return
        self.open_lesson_in_editor(newest)

    def open_lesson_in_editor(self, path: Path) -> None:
        """Open a lesson file (e.g. a draft from grading) in the editor mode."""
        editor = self.mode_screen("editor")
        if editor is None:  # the editor opens it when it mounts
            self.open_lesson = path
            self.switch_mode("editor")
            return
        self.switch_mode("editor")
        editor.request_open(path)  # type: ignore[attr-defined]  (asks about unsaved edits first)

    # ------------------------------------------------------------ quitting
    @work(exclusive=True, group="quit")
    async def action_quit(self) -> None:
        """Every way out passes here: unsaved edits first, then a running engine."""
        editor = self.mode_screen("editor")
        if editor is not None and getattr(editor, "dirty", False):
            if self.current_mode != "editor":
                self.switch_mode("editor")
            ok = await editor.guard_unsaved("The lesson")  # type: ignore[attr-defined]
            if not ok:
                return
        if self._run_in_progress():
            answer = await self.push_screen_wait(quit_while_running(self.state.run_id or "?"))
            if answer == "cancel":
                return
            if answer == "stop":
                self._quit_when_engine_exits = True
                self.state.stopping = True
                self.client.request_stop()
                self.notify("Stopping the engine; the app quits when it has exited.", timeout=10)
                return
            self.client.detach()  # our own child keeps its output somewhere once we are gone
        self.client.close()
        self.exit(0)

    # ------------------------------------------------------------ palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers exactly the keyed actions (app-wide, then this screen's)."""
        seen: set[str] = set()
        specs: list[tuple[KeySpec, object]] = [(spec, self) for spec in APP_KEYS if spec.palette]
        for spec in getattr(screen, "KEY_SPECS", ()):
            specs.append((spec, screen))
        for spec, target in specs:
            if spec.action in seen or spec.action == "back":
                continue
            seen.add(spec.action)
            key = effective_key(spec, self.config.keys).split(",")[0].strip()
            hint = self.get_key_display(Binding(key, spec.action)) if key else ""
            # full name to find it by; the key beside the help, so the palette teaches the shortcut
            yield SystemCommand(spec.palette_title, escape(f"key {hint} · {spec.help}" if hint else spec.help),
                                _runner(target, spec.action))
        yield from (c for c in super().get_system_commands(screen) if c.title not in ("Quit", "Theme"))


def _runner(target: object, action: str):
    async def run() -> None:
        await target.run_action(action)  # type: ignore[attr-defined]

    return run


def workspace_profile(workspace: Path, config: TuiConfig) -> tuple[str | None, str | None]:
    """The profile a run started here uses: the [tui] profile, else bpllm.toml's [run] profile; and the
    config's problem when it cannot be read (shown in the log; the engine refuses the file too)."""
    if config.profile:
        return config.profile, None
    from dsl.config import CONFIG_FILE, ConfigError, load_config as load_workspace_config

    path = workspace / CONFIG_FILE
    if not path.is_file():
        return None, None
    try:
        return load_workspace_config(path).run.profile, None
    except ConfigError as exc:
        return None, " ".join(line.strip() for line in str(exc).splitlines())


def latest_mastery(workspace: Path) -> tuple[list[dict], str | None]:
    """The newest version's node mastery from the history store (read-only), for the first paint."""
    from bpllm_tui.exams import _read_history

    rows = _read_history(workspace, "SELECT version, node, score, n, band, delta FROM mastery WHERE version = "
                                    "(SELECT version FROM mastery ORDER BY created_at DESC LIMIT 1)")
    return rows, (str(rows[0]["version"]) if rows else None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bpllm-tui", description="The bpllm control room (Textual).")
    parser.add_argument("-w", "--workspace", type=Path,
                        default=Path(os.environ.get("BPLLM_WORKSPACE", ".")),
                        help="workspace directory (default: $BPLLM_WORKSPACE or the current directory)")
    parser.add_argument("--exams", type=Path, action="append", default=[], metavar="DIR",
                        help="extra directory of exam JSONL files to review (repeatable)")
    parser.add_argument("--lesson", type=Path, help="open this lesson file in the editor")
    parser.add_argument("--no-attach", action="store_true", help="do not attach to the workspace's last run")
    parser.add_argument("--serve", action="store_true",
                        help="serve the app to a browser (textual-serve) instead of this terminal")
    parser.add_argument("--host", default="127.0.0.1", help="--serve: address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="--serve: port (default 8000)")
    parser.add_argument("--no-token", action="store_true",
                        help="--serve: no access token (loopback only; any local process can then drive the "
                             "control room; Origin and Host are still checked)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = workspace_config_problem(args.workspace)
    if problem:
        print(f"bpllm-tui: {problem}", file=sys.stderr)
        return 1
    if args.serve:
        from bpllm_tui.serve import serve

        extra = [arg for path in args.exams for arg in ("--exams", str(path.resolve()))]
        return serve(args.workspace, args.host, args.port, extra, use_token=not args.no_token)
    from bpllm_tui.images import prepare

    prepare()  # textual-image asks the terminal what it can draw: only possible before the app starts
    app = BpllmApp(args.workspace, exam_sources=args.exams, attach=not args.no_attach, open_lesson=args.lesson)
    result = app.run()
    if app.return_code:  # an unhandled exception: Textual printed it and set 1; the shell must see it
        return app.return_code
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
