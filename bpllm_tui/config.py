"""User settings for the TUI: key rebinding, theme, limits.

Read from ``$BPLLM_TUI_CONFIG`` or ``~/.config/bpllm/tui.toml`` and then from the
workspace's ``bpllm.toml`` ``[tui]`` table (the workspace wins), so a team can
ship defaults with a workspace and a user can still keep their own keys::

    theme = "nord"
    stall_seconds = 180
    [keys]            # binding id = "key[,key...]"  (see the help screen, F1)
    "run.start" = "f5"
    "run.stop" = "f6"

Both files are read with the one schema (``dsl.config.TuiSection``): bpllm.toml through
``dsl.config.load_config`` like every other reader of it, the user file as a ``[tui]`` table.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from dsl.config import CONFIG_FILE, ConfigError, TuiSection, load_config as load_workspace_config, read_section, read_toml

DEFAULT_THEME = "textual-dark"


@dataclass
class TuiConfig:
    theme: str = DEFAULT_THEME
    keys: dict[str, str] = field(default_factory=dict)
    log_lines: int = 5000  # bound of the log buffer
    stall_seconds: float = 120.0  # heartbeat age that counts as a stall warning
    loss_window: int = 200  # "last N" window of the loss chart
    profile: str | None = None  # profile passed to `bpllm run` (None: the workspace default)
    run_args: list[str] = field(default_factory=list)  # more `bpllm run` arguments, e.g. ["--only", "1,2,8,9"]
    sources: list[str] = field(default_factory=list)  # files the settings came from
    problems: list[str] = field(default_factory=list)  # bad keys/values, shown as a notification


def user_config_path() -> Path:
    env = os.environ.get("BPLLM_TUI_CONFIG")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "bpllm" / "tui.toml"


def _merge(cfg: TuiConfig, table: TuiSection, origin: str) -> None:
    """The settings ``table`` sets, over ``cfg``; a key the TUI does not know is a problem (named, with a guess)."""
    for name in ("theme", "profile", "log_lines", "loss_window", "stall_seconds"):
        value = getattr(table, name)
        if value is not None:
            setattr(cfg, name, value)
    if table.run_args is not None:
        cfg.run_args = list(table.run_args)
    cfg.keys.update({str(k): v.strip() for k, v in table.keys.items()})
    known = [f.name for f in TuiSection.settings()]
    for key in table.extra:
        close = difflib.get_close_matches(key, known, n=1)
        cfg.problems.append(f"{origin}: unknown setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))


def load_config(workspace: Path | None) -> TuiConfig:
    """Load and merge the user file and the workspace's ``[tui]`` table; never raises (problems are listed)."""
    cfg = TuiConfig()
    user = user_config_path()
    if user.is_file():
        try:
            raw, text = read_toml(user)
            section, problems = read_section(TuiSection, raw, str(user), "", text)
            assert isinstance(section, TuiSection)
            cfg.problems += problems
            _merge(cfg, section, str(user))
            cfg.sources.append(str(user))
        except ConfigError as exc:
            cfg.problems.append(str(exc))
    if workspace is not None:
        ws_file = workspace / CONFIG_FILE
        if ws_file.is_file():
            try:
                table = load_workspace_config(ws_file).tui
            except ConfigError as exc:
                cfg.problems.append(str(exc))
            else:
                if table.as_dict():
                    _merge(cfg, table, f"{ws_file} [tui]")
                    cfg.sources.append(f"{ws_file} [tui]")
    return cfg


def workspace_config_problem(workspace: Path) -> str | None:
    """The one-line verdict on the workspace's ``bpllm.toml`` (None when it is fine or absent).

    The control room refuses to open on a config that every engine command would refuse, so a bad
    setting is named up front (file, line, key, value, what is allowed) instead of when a run starts.
    """
    path = workspace / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        load_workspace_config(path)
    except ConfigError as exc:
        return str(exc)
    return None
