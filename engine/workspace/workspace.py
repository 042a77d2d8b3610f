"""A bpllm workspace: one directory holding config, lessons, data, runs, models, backups
and the history store.  ``bpllm init DIR [--language NAME]`` creates one from the language pack's
starter content (``[workspace] language`` in bpllm.toml names the pack; Blueprint by default).

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
import re
import shutil
import sqlite3
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from dsl import packs
from dsl.errors import BpllmError
from engine.atomic import atomic_write_text
from engine.runtime.diskspace import free_space, is_disk_full
from engine.workspace.config import (CONFIG_FILE, Config, ConfigError, dump_toml, from_pipeline_config, load_config,
                                     validate)
from engine.workspace.history import History

# the default pack's starter content; its bpllm.toml is the config template for every language
STARTER_DIR = Path(str(packs.load(packs.DEFAULT_LANGUAGE).starter_dir()))
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

    @property
    def language(self) -> str:
        """The language pack's name (``[workspace] language``, Blueprint when unset)."""
        return self.config.workspace.language or packs.DEFAULT_LANGUAGE

    @property
    def pack(self) -> packs.LanguagePack:
        """The workspace's language pack: everything language-specific the engine does goes through it."""
        try:
            return packs.load(self.language)
        except packs.UnknownLanguage as exc:
            raise ConfigError(f"{self.config_path}: [workspace] language: {exc} "
                              "(install that pack or change the key)") from None

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


def pack_for(ws: Workspace | None) -> packs.LanguagePack:
    """The language pack of a workspace (the default pack without one: tools run outside a workspace)."""
    if ws is None or not ws.config_path.exists():
        return packs.load(packs.DEFAULT_LANGUAGE)
    return ws.pack


def init_workspace(root: str | Path, *, pipeline_config: str | Path | None = None,
                   force: bool = False, language: str | None = None) -> tuple[Workspace, list[str]]:
    """Create a workspace from the language pack's starter content; returns it and notes for the user.

    All or nothing: when a write fails (a full disk), everything this call created is removed again
    and a WorkspaceError names the file and the fix. bpllm.toml is written last, so even a killed
    init leaves no directory that passes for a workspace."""
    ws = Workspace(root)
    try:
        pack = packs.load(language or packs.DEFAULT_LANGUAGE)
    except packs.UnknownLanguage as exc:
        raise WorkspaceError(f"{exc}; see `bpllm languages`") from None
    if ws.config_path.exists() and not force:
        raise WorkspaceError(f"{ws.config_path} already exists; this is a workspace already "
                             f"(use --force to rewrite its config; lessons and data are never overwritten)")
    text, notes = _config_text(ws, pipeline_config, pack)  # reads and checks only: a bad config creates nothing
    made = _init_targets(ws, pack)
    existed = {p for p in made if p.exists() or p.is_symlink()}
    writing: list[Path] = [ws.root]
    try:
        notes += _populate(ws, text, writing, pack)
    except (OSError, sqlite3.Error) as exc:
        for p in sorted(set(made) - existed, key=lambda q: len(q.parts), reverse=True):
            try:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            except OSError:
                pass
        raise WorkspaceError(_write_failure(writing[-1], exc)) from None
    return ws, notes


def _starter_files(pack: packs.LanguagePack, folder: str, suffix: str) -> list[Traversable]:
    """The pack's starter files FOLDER/*SUFFIX, sorted (a Traversable: the pack may sit in a zip)."""
    where = pack.starter_dir() / folder
    if not where.is_dir():
        return []
    return sorted((p for p in where.iterdir() if p.is_file() and p.name.endswith(suffix)), key=lambda p: p.name)


def _init_targets(ws: Workspace, pack: packs.LanguagePack) -> list[Path]:
    """Every path init may create (directories first), to remove what it made if it fails."""
    paths = [*reversed(ws.root.parents), ws.root, ws.root / "datasets"] + [ws.root / d for d in ws.DIRS]
    paths += [ws.root / "system_prompt.txt", ws.config_path]
    paths += [ws.lessons / p.name for p in _starter_files(pack, "lessons", ".json")]
    paths += [ws.sources / p.name for p in _starter_files(pack, "datasets", ".jsonl")]
    paths += [ws.history_path.with_name(ws.history_path.name + sfx) for sfx in ("", "-wal", "-shm", "-journal")]
    return list(dict.fromkeys(paths))


def _write_failure(path: Path, exc: BaseException) -> str:
    try:  # SQLite reports a full disk while creating history.db as a plain "disk I/O error"
        nearly_full = shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free < 1024 * 1024
    except (OSError, StopIteration):
        nearly_full = False
    reason = getattr(exc, "strerror", None) or str(exc)
    if is_disk_full(exc) or nearly_full:
        return (f"the disk is full: could not write {path} ({reason}; {free_space(path)}); nothing was created. "
                f"Free space, then run `bpllm init` again.")
    return f"could not write {path} ({reason}); nothing was created. Fix that, then run `bpllm init` again."


_LANGUAGE_VALUE = re.compile(r'^language\s*=\s*"[^"\n]*"', re.M)


def _with_language(template: str, language: str) -> str:
    """The template with ``[workspace] language = LANGUAGE`` (its value replaced, or the key added)."""
    line = f'language = "{language}"'
    head, sep, rest = template.partition("[workspace]\n")
    if not sep:
        return f"[workspace]\n{line}\n\n" + template
    section, nxt, tail = rest.partition("\n[")
    if _LANGUAGE_VALUE.search(section):
        section = _LANGUAGE_VALUE.sub(lambda _m: line, section, count=1)
    else:
        section = line + "\n" + section
    return head + sep + section + nxt + tail


def _config_text(ws: Workspace, pipeline_config: str | Path | None,
                 pack: packs.LanguagePack | None = None) -> tuple[str, list[str]]:
    """bpllm.toml's text: the starter template (the pack's own when it ships one), or it with the
    reference's pipeline_config.json merged in; ``[workspace] language`` names the pack."""
    notes: list[str] = []
    pack = pack or packs.load(packs.DEFAULT_LANGUAGE)
    own = pack.starter_dir() / "bpllm.toml"
    template = (own if own.is_file() else STARTER_DIR / "bpllm.toml").read_text(encoding="utf-8")
    template = _with_language(template, pack.name)
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


def _populate(ws: Workspace, text: str, writing: list[Path], pack: packs.LanguagePack) -> list[str]:
    """The workspace's directories and starter files; ``writing`` ends with the path being written."""
    notes: list[str] = []
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.ensure_dirs()
    dst = ws.root / "system_prompt.txt"
    if not dst.exists():
        writing.append(dst)
        atomic_write_text(dst, pack.system_prompt().rstrip("\n") + "\n")
    for folder, suffix, where, what in (("lessons", ".json", ws.lessons, "starter lesson"),
                                        ("datasets", ".jsonl", ws.sources, "starter dataset")):
        for src in _starter_files(pack, folder, suffix):
            dst = where / src.name
            if not dst.exists():
                writing.append(dst)
                atomic_write_text(dst, src.read_text(encoding="utf-8"))
                notes.append(f"{what} {src.name}")
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
