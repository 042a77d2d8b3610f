"""A bpllm workspace: one directory holding config, lessons, data, runs, models, backups
and the history store.  ``bpllm init DIR`` creates one from the project's starter data.

Layout::

    bpllm.toml            config (engine/config.py validates it)
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
from pathlib import Path
from typing import Any

from engine.config import CONFIG_FILE, ConfigError, load_config

STARTER_DIR = Path(__file__).resolve().parents[1] / "data" / "starter"
ENV_VAR = "BPLLM_WORKSPACE"


class WorkspaceError(RuntimeError):
    pass


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._config: dict[str, Any] | None = None

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
        return self.root / str(self.config["data"]["exports_dir"])

    @property
    def system_prompt_path(self) -> Path:
        return self.root / str(self.config["data"]["system_prompt"])

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    DIRS = ("lessons", "lessons/drafts", "datasets/sources", "datasets/generated", "datasets/quarantine",
            "exports", "runs", "models", "backups")

    # config ----------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = load_config(self.config_path)
            from engine.data import set_unknown_nodes

            set_unknown_nodes(self._config.get("dsl", {}).get("unknown_nodes", "error"))
        return self._config

    def reload_config(self) -> dict[str, Any]:
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
    """Create a workspace from data/starter; returns it and notes for the user."""
    from engine.atomic import atomic_write_text
    from engine.config import dump_toml, from_pipeline_config, validate

    ws = Workspace(root)
    notes: list[str] = []
    if ws.config_path.exists() and not force:
        raise WorkspaceError(f"{ws.config_path} already exists; this is a workspace already "
                             f"(use --force to rewrite its config; lessons and data are never overwritten)")
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.ensure_dirs()
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
    atomic_write_text(ws.config_path, text)
    for src, dst in (("system_prompt.txt", ws.root / "system_prompt.txt"),):
        if not dst.exists():
            shutil.copyfile(STARTER_DIR / src, dst)
    for lesson in sorted((STARTER_DIR / "lessons").glob("*.json")):
        dst = ws.lessons / lesson.name
        if not dst.exists():
            shutil.copyfile(lesson, dst)
            notes.append(f"starter lesson {lesson.name}")
    for ds in sorted((STARTER_DIR / "datasets").glob("*.jsonl")):
        dst = ws.sources / ds.name
        if not dst.exists():
            shutil.copyfile(ds, dst)
            notes.append(f"starter dataset {ds.name}")
    from engine.history import History
    History(ws.history_path).close()
    return ws, notes


def _parse_template(text: str) -> dict[str, Any]:
    import tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - our own template
        raise ConfigError(f"starter bpllm.toml: {exc}") from None
