"""A bpllm workspace: one directory holding config, lessons, data, runs, models, backups
and the history store.  ``bpllm init DIR`` creates one from the project's starter data.

Layout::

    bpllm.toml            config (engine/workspace/config.py validates it)
    system_prompt.txt     the system prompt the engine trains and examines with
    lessons/*.json        exam lessons (reference schema); lessons/drafts/ drafted by grading
    datasets/sources/     training rows you bring (JSONL: instruction, output, ...)
    datasets/generated/   rows the engine writes (synthetic.jsonl, lessons.jsonl)
    datasets/train.jsonl, datasets/validation.jsonl   the merged, validated split (step 1.5)
    datasets/quarantine/  rows and prompts that failed validation, with diagnostics
    exports/              UE5 clipboard exports for step 1.1
    runs/<run_id>/        events.jsonl, heartbeat.json, state.json, console.log
    models/               adapters per version (ML steps)
    backups/<tier>/<name>/  verified backups with a SHA-256 manifest
    history.db            SQLite (WAL) history: runs, steps, versions, exam results, mastery
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from engine.workspace.config import CONFIG_FILE, Config, ConfigError, load_config
from dsl.errors import BpllmError


STARTER_DIR = Path(__file__).resolve().parents[2] / "data" / "starter"
ENV_VAR = "BPLLM_WORKSPACE"


class WorkspaceError(BpllmError, RuntimeError):
    """No workspace where one was named (or one that cannot be created there)."""


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._config: Config | None = None

    # paths -----------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    lessons = property(lambda self: self.root / "lessons")
    drafts = property(lambda self: self.root / "lessons" / "drafts")
    datasets = property(lambda self: self.root / "datasets")
    sources = property(lambda self: self.root / "datasets" / "sources")
    generated = property(lambda self: self.root / "datasets" / "generated")
    quarantine = property(lambda self: self.root / "datasets" / "quarantine")
    train_path = property(lambda self: self.root / "datasets" / "train.jsonl")
    validation_path = property(lambda self: self.root / "datasets" / "validation.jsonl")
    runs = property(lambda self: self.root / "runs")
    models = property(lambda self: self.root / "models")
    backups = property(lambda self: self.root / "backups")
    history_path = property(lambda self: self.root / "history.db")
    timings_path = property(lambda self: self.root / "runs" / "step_timing.json")
    lock_path = property(lambda self: self.root / "runs" / ".lock")
    dashboard = property(lambda self: self.root / "dashboard")

    @property
    def exports(self) -> Path:
        return self.root / self.config.data.exports_dir

    @property
    def system_prompt_path(self) -> Path:
        return self.root / self.config.data.system_prompt

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    DIRS = ("lessons", "lessons/drafts", "datasets/sources", "datasets/generated", "datasets/quarantine",
            "exports", "runs", "models", "backups")

    # config ----------------------------------------------------------------
    @property
    def config(self) -> Config:
        """bpllm.toml, read and checked once (ConfigError names the file and the key); reading sets nothing
        elsewhere: callers pass its values on (``cfg.dsl.unknown_nodes`` to the data checks)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def reload_config(self) -> Config:
        self._config = None
        return self.config

    def ensure_dirs(self) -> None:
        for d in self.DIRS:
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def run_ids(self) -> list[str]:
        if not self.runs.is_dir():
            return []
        return sorted(p.name for p in self.runs.iterdir() if p.is_dir() and (p / "state.json").exists())

    def lesson_files(self) -> list[Path]:
        if not self.lessons.is_dir():
            return []
        return sorted(p for p in self.lessons.glob("*.json") if p.is_file())


def resolve_workspace(arg: str | None, *, must_exist: bool = True) -> Workspace:
    """--workspace/-w, else $BPLLM_WORKSPACE, else the current directory."""
    root = arg or os.environ.get(ENV_VAR) or os.getcwd()
    ws = Workspace(root)
    if must_exist and not ws.config_path.exists():
        hint = "" if arg else f" (from {'$' + ENV_VAR if os.environ.get(ENV_VAR) else 'the current directory'})"
        raise WorkspaceError(f"{ws.root}{hint} is not a bpllm workspace: no {CONFIG_FILE}. "
                             f"Create one with `bpllm init {root}` or pass --workspace DIR.")
    return ws


def init_workspace(root: str | Path, *, pipeline_config: str | Path | None = None,
                   force: bool = False) -> tuple[Workspace, list[str]]:
    """Create a workspace from data/starter; returns it and notes for the user.

    All or nothing: when a write fails (a full disk), everything this call created is removed again
    and a WorkspaceError names the file and the fix. bpllm.toml is written last, so even a killed
    init leaves no directory that passes for a workspace."""
    ws = Workspace(root)
    if ws.config_path.exists() and not force:
        raise WorkspaceError(f"{ws.config_path} already exists; this is a workspace already "
                             f"(use --force to rewrite its config; lessons and data are never overwritten)")
    text, notes = _config_text(ws, pipeline_config)  # reads and checks only: a bad config creates nothing
    made = _init_targets(ws)
    existed = {p for p in made if p.exists() or p.is_symlink()}
    writing: list[Path] = [ws.root]
    try:
        notes += _populate(ws, text, writing)
    except (OSError, sqlite3.Error) as exc:
        for p in sorted(set(made) - existed, key=lambda q: len(q.parts), reverse=True):
            try:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            except OSError:
                pass
        raise WorkspaceError(_write_failure(writing[-1], exc)) from None
    return ws, notes


def _init_targets(ws: Workspace) -> list[Path]:
    """Every path init may create (directories first), to remove what it made if it fails."""
    paths = [*reversed(ws.root.parents), ws.root, ws.root / "datasets"] + [ws.root / d for d in ws.DIRS]
    paths += [ws.root / "system_prompt.txt", ws.config_path]
    paths += [ws.lessons / p.name for p in (STARTER_DIR / "lessons").glob("*.json")]
    paths += [ws.sources / p.name for p in (STARTER_DIR / "datasets").glob("*.jsonl")]
    paths += [ws.history_path.with_name(ws.history_path.name + sfx) for sfx in ("", "-wal", "-shm", "-journal")]
    return list(dict.fromkeys(paths))


def _write_failure(path: Path, exc: BaseException) -> str:
    from engine.runtime.diskspace import free_space, is_disk_full

    try:  # SQLite reports a full disk while creating history.db as a plain "disk I/O error"
        nearly_full = shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free < 1024 * 1024
    except (OSError, StopIteration):
        nearly_full = False
    reason = getattr(exc, "strerror", None) or str(exc)
    if is_disk_full(exc) or nearly_full:
        return (f"the disk is full: could not write {path} ({reason}; {free_space(path)}); nothing was created. "
                f"Free space, then run `bpllm init` again.")
    return f"could not write {path} ({reason}); nothing was created. Fix that, then run `bpllm init` again."


def _config_text(ws: Workspace, pipeline_config: str | Path | None) -> tuple[str, list[str]]:
    """bpllm.toml's text: the starter template, or it with the reference's pipeline_config.json merged in."""
    from engine.workspace.config import dump_toml, from_pipeline_config, validate

    notes: list[str] = []
    template = (STARTER_DIR / "bpllm.toml").read_text(encoding="utf-8")
    if pipeline_config:
        raw, more = from_pipeline_config(pipeline_config)
        notes += more
        base = _parse_template(template)
        for sec, table in raw.items():
            if sec == "profiles":
                base.setdefault("profiles", {}).update(table)
            else:
                base.setdefault(sec, {}).update(table)
        validate(base, f"{pipeline_config} (imported)")
        header = "\n".join(line for line in template.splitlines() if line.startswith("#"))
        text = dump_toml(base, header=header + f"\n# imported from {Path(pipeline_config).resolve()}\n")
        notes.append(f"imported {pipeline_config} into [profiles.blueprintllm] (run.profile = \"blueprintllm\")")
    else:
        text = template
    validate(_parse_template(text), str(ws.config_path))
    return text, notes


def _populate(ws: Workspace, text: str, writing: list[Path]) -> list[str]:
    """The workspace's directories and starter files; ``writing`` ends with the path being written."""
    from engine.atomic import atomic_write_text

    notes: list[str] = []
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.ensure_dirs()
    for src, dst in (("system_prompt.txt", ws.root / "system_prompt.txt"),):
        if not dst.exists():
            writing.append(dst)
            shutil.copyfile(STARTER_DIR / src, dst)
    for lesson in sorted((STARTER_DIR / "lessons").glob("*.json")):
        dst = ws.lessons / lesson.name
        if not dst.exists():
            writing.append(dst)
            shutil.copyfile(lesson, dst)
            notes.append(f"starter lesson {lesson.name}")
    for ds in sorted((STARTER_DIR / "datasets").glob("*.jsonl")):
        dst = ws.sources / ds.name
        if not dst.exists():
            writing.append(dst)
            shutil.copyfile(ds, dst)
            notes.append(f"starter dataset {ds.name}")
    from engine.workspace.history import History
    writing.append(ws.history_path)
    History(ws.history_path).close()
    writing.append(ws.config_path)
    atomic_write_text(ws.config_path, text)  # last: only a complete workspace has a bpllm.toml
    return notes


def _parse_template(text: str) -> dict[str, Any]:
    import tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - our own template
        raise ConfigError(f"starter bpllm.toml: {exc}") from None
