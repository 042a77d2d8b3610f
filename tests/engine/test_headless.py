"""The core stays headless: import rules checked on the real modules, in fresh interpreters."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> set[tuple[str, str]]:
    """(file, top-level module) for every import statement anywhere in a package's source."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.add((str(path.relative_to(ROOT)), alias.name.split(".")[0]))
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("dsl", {"textual", "torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate"}),
        ("engine", {"textual"}),
        ("bpllm_tui", {"torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate"}),
    ],
)
def test_no_forbidden_imports_in_source(package, forbidden):
    found = _imports(package)
    assert found, f"no imports found under {package}/: the scan read nothing"
    bad = sorted((f, m) for f, m in found if m in forbidden)
    assert not bad, f"{package}/ must not import {sorted(forbidden)}: {bad}"


@pytest.mark.parametrize(
    "modules, forbidden",
    [
        (["dsl", "dsl.parser", "dsl.validator", "dsl.formatter", "dsl.scorer", "dsl.cli"], ["textual", "torch"]),
        (["engine.cli"], ["textual", "torch", "transformers"]),
    ],
)
def test_runtime_imports_stay_light(modules, forbidden):
    lines = [
        "import importlib, sys",
        f"for m in {modules!r}:",
        "    importlib.import_module(m)",
    ]
    if "engine.cli" in modules:
        lines.append("engine = importlib.import_module('engine.cli'); engine.build_parser()")
    lines.append(f"print(sorted(set({forbidden!r}) & set(sys.modules)))")
    code = "\n".join(lines)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
