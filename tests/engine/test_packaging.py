"""The wheel ships data/ and styles/ under our own package names, and code finds them by resource.

Built for real with pip (no build isolation: no network needed), inspected as the zip it is, and
installed into a throwaway venv where a fresh interpreter, outside the checkout, loads the step
plan and every TUI stylesheet through engine.resources.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from engine.resources import PACKAGES, checkout_root, resource

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["dsl", "engine", "bpllm_tui", "tools", *PACKAGES]
# the one place that locates the source checkout; everything else asks it or importlib.resources
CLIMB_ALLOWED = {"engine/resources.py"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build's scratch files stay out of the repo)."""
    src = tmp_path_factory.mktemp("src")
    for name in ["dsl", "engine", "bpllm_tui", *PACKAGES]:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ["pyproject.toml", "setup.py", "README.md"]:
        shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("bpllm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_has_no_top_level_data_or_styles_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"dsl", "engine", "bpllm_tui"}, top
    assert "data/__init__.py" not in names and "styles/__init__.py" not in names
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert set(zipfile.ZipFile(wheel).read(top_level).decode().split()) == {"dsl", "engine", "bpllm_tui"}
    # every file of the two folders is inside, under the mapped package
    for folder, package in PACKAGES.items():
        shipped = sorted(p.relative_to(REPO / folder).as_posix() for p in (REPO / folder).rglob("*")
                         if p.is_file() and "__pycache__" not in p.parts)
        assert shipped, f"{folder}/ is empty"
        prefix = package.replace(".", "/") + "/"
        missing = [f for f in shipped if prefix + f not in names]
        assert not missing, (package, missing)
    assert sum(n.startswith("bpllm_tui/styles/") and n.endswith(".tcss") for n in names) >= 7
    assert "engine/assets/step_plan.json" in names


_PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import engine, engine.resources as r
    site = Path(engine.__file__).resolve().parent.parent
    assert r.checkout_root() is None, r.checkout_root()
    from engine.runtime.plan import PLAN_PATH, load_plan
    plan = load_plan()
    from bpllm_tui.state import load_plan as tui_plan
    from bpllm_tui.app import BpllmApp
    from bpllm_tui.screens import dashboard, dialogs, editor, help, history, review
    css = [BpllmApp.CSS_PATH, dashboard.DashboardScreen.CSS_PATH, help.HelpScreen.CSS_PATH,
           history.HistoryScreen.CSS_PATH, review.ReviewScreen.CSS_PATH, editor.EditorScreen.CSS_PATH,
           editor.LessonPicker.CSS_PATH, dialogs.Choice.CSS_PATH, dialogs.Prompt.CSS_PATH]
    print(json.dumps({"site": str(site), "plan_path": str(PLAN_PATH), "steps": len(plan.steps),
                      "tui_steps": len(tui_plan()), "css": [str(c) for c in css],
                      "css_ok": all(Path(c).is_file() for c in css)}))
""")


def test_installed_wheel_finds_its_files_through_the_helper(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no PYTHONPATH: the checkout must not be found
    out = subprocess.run([str(py), "-c", _PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    site = Path(got["site"])
    assert site.is_relative_to(venv), got  # the installed copy, not the checkout
    assert Path(got["plan_path"]) == site / "engine" / "assets" / "step_plan.json"
    assert got["steps"] > 0 and got["tui_steps"] == got["steps"], got
    assert got["css_ok"], got
    assert all(Path(c).parent == site / "bpllm_tui" / "styles" for c in got["css"]), got["css"]


def test_checkout_resources_come_from_the_checkout():
    assert checkout_root() == REPO
    assert resource("data", "step_plan.json") == REPO / "data" / "step_plan.json"
    assert resource("styles", "app.tcss").is_file()
    with pytest.raises(KeyError, match="unknown resource folder"):
        resource("templates", "x")


def test_no_code_climbs_out_of_its_package():
    climb = re.compile(r"__file__\)[^\n]*\.(parent\.parent|parents\[)|CSS_PATH = \"\.\./")
    found = {p.relative_to(REPO).as_posix() for name in SOURCES if (REPO / name).is_dir()
             for p in (REPO / name).rglob("*.py") if climb.search(p.read_text(encoding="utf-8"))}
    assert found, "the scan found nothing at all: engine/resources.py itself must match"
    assert found <= CLIMB_ALLOWED, sorted(found - CLIMB_ALLOWED)
