"""Packages of the wheel: ours found by name, plus the resource folders mapped under our names.

``data/`` and ``styles/`` stay top-level folders in the repository, but installing them as
top-level packages ``data`` and ``styles`` would collide with other projects. pyproject.toml
cannot add mapped packages to a ``find`` result, so this file does; the mapping itself is the
table in engine/resources.py, which also finds the files at run time.
"""
import runpy
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
RESOURCE_PACKAGES = runpy.run_path(str(HERE / "engine" / "resources.py"))["PACKAGES"]  # {"data": "engine.assets", …}

setup(
    packages=find_packages(include=["dsl", "dsl.*", "engine", "engine.*", "bpllm_tui", "bpllm_tui.*"])
    + sorted(RESOURCE_PACKAGES.values()),
    package_dir={package: folder for folder, package in RESOURCE_PACKAGES.items()},
)
