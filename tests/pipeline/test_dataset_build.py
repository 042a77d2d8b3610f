"""`bpllm dataset build`: provenance, dedup, quarantine, repository splits and the held-out lesson.

The pipeline tests run the real build on real files in a real workspace; the language side (importer,
text, validation) is a small JSON stand-in with the pack's signatures, because these tests are about the
pipeline, not the Blender pack. The corpus tests at the end run the real pack and skip when it or the
corpus is absent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.packs.blender_material.model import Graph, Link, Node
from engine.dataset.build import Language, build, split_by_repository
from engine.dataset.rows import merge_rows
from engine.workspace.workspace import Workspace, init_workspace

ROOT = Path(__file__).resolve().parents[2]
CORPUS = (ROOT.parent / "shared" / "corpus" / "blender").resolve()


# --------------------------------------------------------------------------- a JSON stand-in language
def _graph(d: dict) -> Graph:
    return Graph(d.get("kind", "material"), d["name"],
                 nodes=[Node(n["id"], n["type"], inputs=n.get("inputs", {})) for n in d["nodes"]],
                 links=[Link(*link) for link in d.get("links", [])], groups_used=d.get("groups_used", []))


def read_json_blend(path: Path):
    return [_graph(d) for d in json.loads(Path(path).read_text())], []


def render(graph: Graph, groups: list[Graph], file_groups: dict | None = None) -> str:
    lines = []
    for g in [*groups, graph]:
        lines.append(f"{'GROUP' if g.kind == 'group' else 'MATERIAL'}: {g.name}")
        lines += [f"NODE {n.id}: {n.bl_idname} {json.dumps(n.inputs, sort_keys=True)}" for n in g.nodes]
        lines += [f"LINK {k.src}.{k.src_socket} -> {k.dst}.{k.dst_socket}" for k in g.links]
    return "\n".join(lines)


def validate(text: str) -> list[dict]:
    return [{"line": i, "severity": "error", "code": "unknown-node", "message": "unknown node type BadNode"}
            for i, line in enumerate(text.splitlines(), 1) if "BadNode" in line]


LANG = Language(read_blend=read_json_blend, render=render, validate=validate)


def material(name: str, roughness: float = 0.5, color=(0.8, 0.1, 0.1, 1.0), extra: str | None = None,
             groups_used: tuple[str, ...] = ()) -> dict:
    nodes = [{"id": "n1", "type": "ShaderNodeTexNoise", "inputs": {"Scale": 5.0}},
             {"id": "n2", "type": "ShaderNodeBsdfPrincipled", "inputs": {"Roughness": roughness, "Base Color": color}},
             {"id": "n3", "type": "ShaderNodeOutputMaterial"}]
    links = [["n2", "BSDF", "n3", "Surface"], ["n1", "Fac", "n2", "Metallic"]]
    if extra:
        nodes.append({"id": "n4", "type": extra})
    for i, g in enumerate(groups_used):
        nodes.append({"id": f"g{i}", "type": "ShaderNodeGroup"})
    return {"name": name, "nodes": nodes, "links": links, "groups_used": list(groups_used)}


def write_corpus(root: Path, files: dict[str, tuple[str, list[dict]]]) -> None:
    """name -> (repository, graphs); a manifest.json like the corpus' gives repository and licence."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = []
    for name, (repo, graphs) in files.items():
        (root / name).write_text(json.dumps(graphs))
        manifest.append({"name": name, "repo": repo, "path": f"assets/{name}", "license": "MIT (LICENSE)"})
    (root / "manifest.json").write_text(json.dumps(manifest))


def set_language(toml: Path) -> None:
    """.blend files build rows of the Blender material language: say so in the workspace's config."""
    text = toml.read_text()
    if 'language = "blueprint"' in text:
        text = text.replace('language = "blueprint"', 'language = "blender-material"')
    else:
        text = text.replace("[workspace]\n", '[workspace]\nlanguage = "blender-material"\n', 1)
    assert 'language = "blender-material"' in text, text
    toml.write_text(text)


@pytest.fixture
def ws(tmp_path):
    w = init_workspace(tmp_path / "ws")[0]
    set_language(w.root / "bpllm.toml")
    return Workspace(w.root)  # read the config afresh


def many_repos(root: Path, n: int = 8) -> None:
    files = {}
    for i in range(n):
        colours = [(0.8, 0.1, 0.1, 1.0), (0.1, 0.8, 0.1, 1.0), (0.1, 0.1, 0.8, 1.0)]
        files[f"r{i}.blend"] = (f"owner{i}/repo{i}", [  # a node type of its own each: no two are duplicates
            material(f"Mat {i} {j}", roughness=0.1 * j, color=colours[j], extra=f"ShaderNodeExtra{i}x{j}")
            for j in range(3)])
    write_corpus(root, files)


# --------------------------------------------------------------------------- the pipeline
def test_build_counts_quarantine_and_dedup(ws, tmp_path):
    src = tmp_path / "src"
    base = material("Red")
    write_corpus(src, {
        "a.blend": ("alice/mats", [base, material("Red copy"),  # renamed copy: an exact duplicate
                                   material("Broken", extra="BadNode"),
                                   {"name": "Empty", "nodes": [{"id": "n1", "type": "ShaderNodeOutputMaterial"}]}]),
        # the same template as "Red" with other values, five times: near_duplicate_keep = 3 keeps three in all
        "b.blend": ("bob/more", [material(f"Var {i}", roughness=0.1 + 0.01 * i) for i in range(5)]),
    })
    (src / "c.blend").write_text("not json")  # an unreadable file is reported, the rest still builds
    rep = build(ws, src, lang=LANG)
    assert rep["files"] == 3 and rep["files_unreadable"] == 1
    assert rep["materials"] == 9 and rep["empty_materials"] == 1
    assert rep["duplicates"] == 1 and rep["near_duplicates"] == 3
    assert rep["invalid"] == 1 and rep["quarantined"] == 2
    assert rep["rows"] == 3
    assert list(rep["quarantine_reasons"]) == ["[unknown-node] unknown node type BadNode"]
    q = {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in ws.quarantine.glob("build-*")}
    assert set(q) == {"build-a.jsonl", "build-c.jsonl", "build-duplicates.jsonl"}
    assert "BadNode" in q["build-a.jsonl"][0]["reason"] and q["build-a.jsonl"][0]["diagnostics"]
    assert {r["kind"] for r in q["build-duplicates.jsonl"]} == {"duplicate", "near_duplicate"}


def test_rows_carry_provenance_and_no_node_ids_in_instructions(ws, tmp_path):
    many_repos(tmp_path / "src")
    build(ws, tmp_path / "src", lang=LANG)
    rows = [json.loads(line) for line in (ws.sources / "blend.jsonl").read_text().splitlines()]
    assert rows
    for r in rows:
        assert r["licence"] == "MIT" and r["repository"].startswith("owner") and r["path"].startswith("assets/")
        assert r["output"].startswith("MATERIAL: ") and r["split"] in ("train", "validation")
        assert " n1" not in r["instruction"] and "noise texture" in r["instruction"]


def test_splits_by_repository_and_the_held_out_lesson(ws, tmp_path):
    many_repos(tmp_path / "src")
    rep = build(ws, tmp_path / "src", lang=LANG)
    rows = [json.loads(line) for line in (ws.sources / "blend.jsonl").read_text().splitlines()]
    lesson = json.loads((ws.lessons / "blend_test.json").read_text())
    assert lesson["holdout"] is True and lesson["prompts"]
    test_repos = {p["repository"] for p in lesson["prompts"]}
    by_split: dict[str, set[str]] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["repository"])
    assert by_split["train"] and by_split["validation"] and test_repos
    assert not (by_split["train"] & by_split["validation"]) and not (test_repos & (by_split["train"] |
                                                                                   by_split["validation"]))
    assert rep["test"]["rows"] == len(lesson["prompts"]) and rep["train"]["rows"] + rep["validation"]["rows"] == len(rows)
    # the test outputs are not trained on
    assert not {p["expected_dsl"] for p in lesson["prompts"]} & {r["output"] for r in rows}
    # the lesson loads as the engine loads lessons
    from engine.dataset.rows import load_lesson

    loaded, problems = load_lesson(ws.lessons / "blend_test.json")
    assert loaded is not None and loaded.holdout and not [p for p in problems if p.kind != "warning"]


def test_deterministic_and_the_seed_rephrases(ws, tmp_path):
    many_repos(tmp_path / "src")
    build(ws, tmp_path / "src", lang=LANG, seed=1)
    first = (ws.sources / "blend.jsonl").read_text()
    build(ws, tmp_path / "src", lang=LANG, seed=1)
    assert (ws.sources / "blend.jsonl").read_text() == first
    build(ws, tmp_path / "src", lang=LANG, seed=2)
    assert (ws.sources / "blend.jsonl").read_text() != first


def test_groups_included_or_referenced(ws, tmp_path):
    grp = {"kind": "group", "name": "Grain", "nodes": [{"id": "n1", "type": "ShaderNodeTexWave"},
                                                      {"id": "n2", "type": "NodeGroupOutput"}]}
    write_corpus(tmp_path / "src", {"g.blend": ("carol/g", [grp, material("Wood", groups_used=("Grain",)),
                                                            material("Oak", roughness=0.9, groups_used=("Grain",))])})
    build(ws, tmp_path / "src", lang=LANG, groups_mode="include")
    rows = [json.loads(line) for line in (ws.sources / "blend.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["output"].startswith("GROUP: Grain") for r in rows)
    build(ws, tmp_path / "src", lang=LANG, groups_mode="reference")
    rows = [json.loads(line) for line in (ws.sources / "blend.jsonl").read_text().splitlines()]
    outs = [r["output"].splitlines()[0] for r in rows]
    assert outs.count("GROUP: Grain") == 1 and "MATERIAL: Wood" in outs and "MATERIAL: Oak" in outs


def test_files_without_metadata_are_their_own_repository(ws, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / "src" / folder).mkdir(parents=True)
        (tmp_path / "src" / folder / "m.blend").write_text(json.dumps([material(f"M {folder}", roughness=0.3
                                                                                if folder == "x" else 0.9)]))
    rep = build(ws, tmp_path / "src", lang=LANG)
    assert rep["files_without_provenance"] == 2 and rep["rows"] == 2
    assert rep["notes"] and "no validation split" in rep["notes"][0]


def test_merge_keeps_the_repository_split(ws, tmp_path):
    """Step 1.5 keeps rows pinned to a side by `dataset build` there, and splits the others as always."""
    src = ROOT / "dsl" / "packs" / "blueprint" / "starter" / "datasets" / "starter.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    pinned = tmp_path / "pinned.jsonl"
    pinned.write_text("".join(json.dumps(r | {"split": "validation" if i < 3 else "train", "repository": "o/r",
                                              "licence": "MIT"}) + "\n" for i, r in enumerate(rows)))
    res = merge_rows([pinned], root=tmp_path, near_keep=0, val_fraction=0.05, min_val=2, seed=1)
    assert len(res.validation) == 3 and {r["instruction"] for r in res.validation} == \
        {r["instruction"].strip() for r in rows[:3]}
    assert all(r["repository"] == "o/r" and "_pin" not in r for r in res.train + res.validation)


def test_refusals(ws, tmp_path):
    from engine.dataset.build import BuildError

    with pytest.raises(BuildError, match="not a folder"):
        build(ws, tmp_path / "missing", lang=LANG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError, match="no .blend files"):
        build(ws, tmp_path / "empty", lang=LANG)


@settings(max_examples=200, deadline=None)
@given(sizes=st.dictionaries(st.text("abcdefgh/", min_size=1, max_size=6), st.integers(1, 40), min_size=1,
                             max_size=25),
       seed=st.integers(0, 2**32), val=st.floats(0, 0.5), test=st.floats(0, 0.5))
def test_split_never_shares_a_repository(sizes, seed, val, test):
    rows = [{"repository": repo} for repo, n in sizes.items() for _ in range(n)]
    assign = split_by_repository(rows, seed=seed, val_fraction=val, test_fraction=test)
    assert set(assign) == set(sizes) and set(assign.values()) <= {"train", "validation", "test"}
    assert "train" in assign.values()  # something is always left to train on
    assert split_by_repository(list(reversed(rows)), seed=seed, val_fraction=val, test_fraction=test) == assign
    if len(sizes) >= 3 and val > 0 and test > 0:
        assert {"validation", "test"} <= set(assign.values())
    if len(sizes) == 2 and test > 0:
        assert sorted(assign.values()) == ["test", "train"]  # the exam comes before a validation split


# --------------------------------------------------------------------------- the real pack on the corpus
def _real_pack() -> None:
    if not (CORPUS / "files").is_dir():
        pytest.skip(f"Blender corpus not found at {CORPUS} (../shared/corpus/blender beside the repo)")
    try:
        from dsl.packs.blender_material import blend, text  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the Blender pack's importer/text side is not installed yet ({exc})")


def test_build_on_the_corpus(tmp_path):
    _real_pack()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ws = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "engine.cli", "init", str(ws)], env=env, check=True, capture_output=True)
    toml = ws / "bpllm.toml"
    set_language(toml)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "dataset", "build", "--from", str(CORPUS / "files"),
                        "-w", str(ws), "--json"], env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["files"] == 28 and rep["files_without_provenance"] == 0  # SOURCES.md/manifest one folder up
    assert rep["materials"] > 0 and rep["rows"] > 0
    assert rep["train"]["rows"] > 0 and rep["test"]["rows"] > 0
    # rows are written the way `bpllm import-blend` writes them (through the pack's bridge), so the corpus
    # quarantines nothing: no group socket by identifier, no ColorRamp output values, one header per text
    assert rep["quarantined"] == 0, rep["quarantine_reasons"]
    from dsl.packs import load

    pack = load("blender-material")
    rows = [json.loads(line) for line in (ws / "datasets" / "sources" / "blend.jsonl").read_text().splitlines()]
    lesson = json.loads((ws / "lessons" / "blend_test.json").read_text())
    texts = [r["output"] for r in rows] + [p["expected_dsl"] for p in lesson["prompts"]]
    assert len(texts) == rep["rows"]
    for text in texts:
        errors = [d for d in pack.validate(text) if d.severity == "error"]
        assert not errors, (text[:300], errors[:3])
    groups = {r["output"].split("\n", 1)[0] for r in rows if r["output"].startswith("GROUP")}
    assert groups, "corpus materials use node groups: their rows are written as GROUP texts"
    # dedup never leaves a text without a group it calls: every call has its GROUP in the same split
    # (measured before the rule: 7 rows called a group removed as another's duplicate)
    import re as _re

    by_split: dict[str, set[str]] = {}
    calls: list[tuple[str, str, str]] = []
    for split, text in [(r["split"], r["output"]) for r in rows] + [("test", p["expected_dsl"])
                                                                     for p in lesson["prompts"]]:
        head = _re.match(r'GROUP: "?([^"\n]*)"?\n', text)
        if head:
            by_split.setdefault(split, set()).add(head.group(1))
        calls += [(split, name, text.split("\n", 1)[0]) for name in _re.findall(r'node_tree="([^"]*)"', text)]
    assert calls
    missing = [(split, name, head) for split, name, head in calls if name not in by_split.get(split, set())]
    assert missing == []


def test_cli_refusals_are_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("BPLLM_WORKSPACE", None)
    ws = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "engine.cli", "init", str(ws)], env=env, check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "dataset", "build", "--from", str(tmp_path / "nope"),
                        "-w", str(ws)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "not a folder" in r.stderr


def test_loop_steps_build_blend_files_from_the_exports_folder(tmp_path):
    """Steps 1.1/1.2 pick up .blend files in [data] exports_dir and build them (the loop from raw files)."""
    _real_pack()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("BPLLM_WORKSPACE", None)
    ws = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "engine.cli", "init", str(ws)], env=env, check=True, capture_output=True)
    toml = ws / "bpllm.toml"
    set_language(toml)
    for name in ("KhronosGroup__glTF-Blender-IO__01_factors.blend", "Tommozite__Blender_Stuff__smoothie.blend"):
        (ws / "exports" / name).write_bytes((CORPUS / "files" / name).read_bytes())  # into the tmp workspace only
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "-w", str(ws), "--only", "1.1,1.2",
                        "--events-stdout", "-q"], env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    built = [e for e in events if e.get("type") == "data" and e.get("name") == "blend_build"]
    assert built and built[0]["rows"] > 0, r.stdout[-2000:]
    assert (ws / "datasets" / "sources" / "blend.jsonl").exists()
