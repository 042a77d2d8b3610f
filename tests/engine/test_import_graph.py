"""No import circles among bpllm's own modules (issue 15, item 2).

The graph is built from the source with ``ast``: an edge A -> B for every import of B that runs when A
is imported (module level, including under ``try``/``if``; not under ``if TYPE_CHECKING:`` and not
inside functions). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg``. The checker is tested on a made-up circle, so a pass means something.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dsl", "engine", "bpllm_tui")


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(body: list[ast.stmt]):
    """Import statements that run at import time: the module body and its try/if/with blocks."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_imports(block)
        elif isinstance(node, ast.With):
            yield from _module_level_imports(node.body)


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    files = module_files(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _module_level_imports(tree.body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                while target and target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]  # `import a.b.c` where only a.b is ours
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_checker_finds_a_real_circle(tmp_path):
    pkg = tmp_path / "engine" / "ml"
    pkg.mkdir(parents=True)
    (tmp_path / "engine" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "launch.py").write_text("from .steps import hooks\n")
    (pkg / "steps.py").write_text("import json\nfrom engine.ml import launch\n")
    (pkg / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from engine.ml.launch import x\n")
    (pkg / "lazy.py").write_text("def f():\n    from engine.ml import steps\n")
    graph = import_graph(tmp_path, ("engine",))
    assert graph["engine.ml.typed"] == set() and graph["engine.ml.lazy"] == set()
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) == {"engine.ml.launch", "engine.ml.steps"}, cycle
    (pkg / "steps.py").write_text("import json\n")
    assert find_cycle(import_graph(tmp_path, ("engine",))) is None


def test_no_import_circles_in_the_project():
    graph = import_graph(ROOT)
    assert len(graph) > 80 and sum(len(v) for v in graph.values()) > 150  # the real tree was read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
