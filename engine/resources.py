"""Files shipped beside the code (``data/``, ``styles/``), found in one place.

The repository keeps the design card's top-level folders ``data/`` and ``styles/``, but a wheel
must not install packages with such generic names (they collide with any other project that has a
``data`` or ``styles``). ``setup.py`` therefore maps each folder onto a package of ours (the table
:data:`PACKAGES`, read by ``setup.py`` too), and code asks this module for a file:

* running from a source checkout (``PYTHONPATH=$PWD`` or an editable install), the file comes from
  the checkout's folder: the files that belong with this code, even when another copy of bpllm is
  installed in the same interpreter;
* installed from a wheel, it comes from the mapped package through :mod:`importlib.resources`.

:func:`checkout_root` is the only place that locates the source tree.
"""
from __future__ import annotations

import importlib.resources
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

# folder in the repository -> the package it is installed as (setup.py reads this table)
PACKAGES = {"data": "engine.assets", "styles": "bpllm_tui.styles"}


@lru_cache(maxsize=1)
def checkout_root() -> Path | None:
    """The source checkout this code runs from, or None when it runs from an installed wheel.

    A checkout is the folder holding our top-level packages, a ``pyproject.toml`` and the
    resource folders; in site-packages that folder holds neither."""
    root = Path(__file__).resolve().parent.parent  # engine/resources.py -> the folder holding engine/
    if (root / "pyproject.toml").is_file() and all((root / folder).is_dir() for folder in PACKAGES):
        return root
    return None


def resource(folder: str, *parts: str) -> Path:
    """Path of ``folder/parts…`` (``resource("styles", "app.tcss")``), from a checkout or an install.

    Installed packages are plain folders on disk (setuptools never zips them), so the result is
    a real path that Textual's ``CSS_PATH`` and ``open()`` accept."""
    if folder not in PACKAGES:
        raise KeyError(f"unknown resource folder {folder!r} (known: {', '.join(PACKAGES)})")
    if not parts:
        raise ValueError("resource() names a file or folder inside the resource folder")
    root = checkout_root()
    if root is not None:
        return root.joinpath(folder, *parts)
    node = importlib.resources.files(PACKAGES[folder])
    for part in parts:  # one segment at a time: a namespace package's joinpath takes one child (3.11)
        node = node.joinpath(part)
    if not isinstance(node, Path):
        raise RuntimeError(f"{PACKAGES[folder]} is not installed as plain files ({node!r}); reinstall bpllm")
    return node


def child_pythonpath(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the checkout put first on PYTHONPATH, so child interpreters import this same code.

    From an installed wheel the child's interpreter already finds it (the same site-packages), and
    site-packages must not go on PYTHONPATH (it would be searched before the standard library)."""
    out = dict(env)
    root = checkout_root()
    if root is not None:
        out["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), out.get("PYTHONPATH", "")) if p)
    return out


def run_engine(*args: str, cwd: str | Path, timeout: float) -> subprocess.CompletedProcess:
    """``bpllm ARGS`` in a child interpreter of this same engine (checkout or install), output captured,
    stdin closed: for work the engine keeps out of its own process (bpy must not share it with torch)."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(cwd), stdin=subprocess.DEVNULL,
                          env=child_pythonpath(dict(os.environ)))
