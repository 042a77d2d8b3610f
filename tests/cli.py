"""The one way tests run the real CLI: ``bpllm(...)`` runs ``python -m engine.cli`` in a child process.

The child imports this checkout (PYTHONPATH first), never inherits the terminal (stdin is /dev/null,
output captured) and does not see the caller's ``BPLLM_*`` settings unless a test passes them, so a
developer's shell cannot change a result.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
ENGINE = [sys.executable, "-m", "engine.cli"]


def bpllm_env(*extra_paths: str | Path, keep: Iterable[str] = (), **set_vars: str) -> dict[str, str]:
    """os.environ with this checkout (then EXTRA_PATHS) first on PYTHONPATH, without ``BPLLM_*`` and
    ``GITHUB_TOKEN`` (except the names in KEEP), plus SET_VARS."""
    keep = set(keep)
    env = {k: v for k, v in os.environ.items()
           if k in keep or not (k.startswith("BPLLM_") or k == "GITHUB_TOKEN")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), *map(str, extra_paths), env.get("PYTHONPATH", ""))
                                        if p)
    env.update(set_vars)
    return env


def bpllm(*args: str | Path, cwd: str | Path = ROOT, env: dict[str, str] | None = None,
          timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``bpllm ARGS`` as a user runs it; returns the finished process (text stdout/stderr)."""
    return subprocess.run([*ENGINE, *map(str, args)], cwd=cwd, env=env if env is not None else bpllm_env(),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
