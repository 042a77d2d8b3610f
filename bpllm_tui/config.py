"""User settings for the TUI: key rebinding, theme, limits.

Read from ``$BPLLM_TUI_CONFIG`` or ``~/.config/bpllm/tui.toml`` and then from the
workspace's ``bpllm.toml`` ``[tui]`` table (the workspace wins), so a team can
ship defaults with a workspace and a user can still keep their own keys::

    theme = "nord"
    stall_seconds = 180
    [keys]            # binding id = "key[,key...]"  (see the help screen, F1)
    "run.start" = "f5"
    "run.stop" = "f6"
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _merge(cfg: TuiConfig, table: dict[str, Any], origin: str) -> None:
    for key, value in table.items():
        if key == "keys":
            if not isinstance(value, dict):
                cfg.problems.append(f"{origin}: [keys] must be a table of binding id = \"key\"")
                continue
            for binding_id, keys in value.items():
                if isinstance(keys, str) and keys.strip():
                    cfg.keys[str(binding_id)] = keys.strip()
                else:
                    cfg.problems.append(f"{origin}: keys.{binding_id} must be a non-empty string such as \"f5\"")
        elif key == "theme" and isinstance(value, str):
            cfg.theme = value
        elif key == "profile" and isinstance(value, str):
            cfg.profile = value
        elif key == "run_args" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            cfg.run_args = list(value)
        elif key in ("log_lines", "loss_window") and isinstance(value, int) and value > 0:
            setattr(cfg, key, value)
        elif key == "stall_seconds" and isinstance(value, (int, float)) and value > 0:
            cfg.stall_seconds = float(value)
        else:
            cfg.problems.append(f"{origin}: unknown or invalid setting {key!r} = {value!r}")


def load_config(workspace: Path | None) -> TuiConfig:
    """Load and merge the user file and the workspace's ``[tui]`` table; never raises."""
    cfg = TuiConfig()
    user = user_config_path()
    if user.is_file():
        try:
            _merge(cfg, tomllib.loads(user.read_text(encoding="utf-8")), str(user))
            cfg.sources.append(str(user))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            cfg.problems.append(f"{user}: {exc}")
    if workspace is not None:
        ws_file = workspace / "bpllm.toml"
        if ws_file.is_file():
            try:
                table = tomllib.loads(ws_file.read_text(encoding="utf-8")).get("tui", {})
                if isinstance(table, dict) and table:
                    _merge(cfg, table, f"{ws_file} [tui]")
                    cfg.sources.append(f"{ws_file} [tui]")
            except (OSError, tomllib.TOMLDecodeError) as exc:
                cfg.problems.append(f"{ws_file}: {exc}")
    return cfg


def workspace_config_problem(workspace: Path) -> str | None:
    """The engine's one-line verdict on the workspace's ``bpllm.toml`` (None when it is fine or absent).

    The control room refuses to open on a config that every engine command would refuse, so a bad
    setting is named up front (file, line, key, value, what is allowed) instead of when a run starts.
    """
    from engine.workspace.config import ConfigError
    from engine.workspace.config import load_config as load_engine_config

    path = workspace / "bpllm.toml"
    if not path.is_file():
        return None
    try:
        load_engine_config(path)
    except ConfigError as exc:
        return str(exc)
    return None
