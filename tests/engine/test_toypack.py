"""A second language is a folder, not a fork: the toy pack (tests/toypack/, three node types) is
installed the way a third party installs one — a distribution on sys.path whose entry point sits in
the ``bpllm.languages`` group — and goes through the real CLI: languages, init --language,
validate, fmt, score and a tiny `bpllm run` (synthetic data, tiny base, training, exam, grading).

Nothing in dsl/ core or engine/ names the toy language; the last test checks that too.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOY = Path(__file__).resolve().parents[1] / "toypack"

GOOD = 'TOY: A\nNODE n2: Sink [label="x"]\nNODE n1: Source [value=2]\nLINK n1.out -> n2.in\n'
CANONICAL = 'TOY: A\n\nNODE n1: Source [value=2]\nNODE n2: Sink [label="x"]\n\nLINK n1.out -> n2.in\n'


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site directory holding the toy pack as an installed distribution (package + dist-info)."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(TOY, site / "toypack", ignore=shutil.ignore_patterns("__pycache__"))
    info = site / "toypack-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toypack\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[bpllm.languages]\ntoy = toypack:PACK\n", encoding="utf-8")
    return site


def bpllm(site: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)])}
    env.pop("BPLLM_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_languages_lists_the_installed_toy_pack(site):
    r = bpllm(site, "languages", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["name"]: x for x in json.loads(r.stdout)["languages"]}
    assert rows["blueprint"]["ok"] and rows["blueprint"]["provides"]["catalog_node_types"] > 100
    toy = rows["toy"]
    assert toy["ok"], toy
    assert toy["provides"]["catalog_node_types"] == 3
    assert toy["provides"]["starter_lessons"] == 1
    assert toy["provides"]["synthetic"] and toy["provides"]["scorer"] and not toy["provides"]["constraint"]


def test_validate_fmt_score_pick_the_toy_pack_from_the_header(site, tmp_path):
    good, bad = tmp_path / "a.toy", tmp_path / "b.toy"
    good.write_text(GOOD, encoding="utf-8")
    bad.write_text('TOY: B\nNODE n1: Sink\nLINK n7.out -> n1.in\n', encoding="utf-8")

    r = bpllm(site, "validate", str(good), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["files"][0]["items"][0]["valid"] is True
    r = bpllm(site, "validate", str(bad), "--json")
    assert r.returncode == 1
    codes = {d["code"] for d in json.loads(r.stdout)["files"][0]["items"][0]["diagnostics"]}
    assert {"missing-param", "unknown-node-id"} <= codes, codes
    # the Blueprint validator would call every toy line an unknown directive
    r = bpllm(site, "validate", "--language", "blueprint", str(good))
    assert r.returncode == 1 and "unknown-directive" in r.stdout

    assert bpllm(site, "fmt", "--check", str(good)).returncode == 1
    r = bpllm(site, "fmt", str(good))
    assert r.returncode == 0, r.stderr
    assert good.read_text(encoding="utf-8") == CANONICAL

    other = tmp_path / "c.toy"
    other.write_text(CANONICAL.replace("value=2", "value=3"), encoding="utf-8")
    r = bpllm(site, "score", str(good), str(good), "--json")
    assert json.loads(r.stdout)["score"] == 1.0
    r = bpllm(site, "score", str(good), str(other), "--json")
    out = json.loads(r.stdout)
    assert 0 < out["score"] < 1 and out["buckets"]["missing_nodes"], out

    r = bpllm(site, "validate", "--language", "nope", str(good))
    assert r.returncode == 1 and "unknown language 'nope'" in r.stderr and "toy" in r.stderr
    assert "Traceback" not in r.stderr


def test_init_language_records_it_and_refuses_unknown(site, tmp_path):
    r = bpllm(site, "init", str(tmp_path / "bp"), "--language", "blueprint")
    assert r.returncode == 0, r.stderr
    assert 'language = "blueprint"' in (tmp_path / "bp" / "bpllm.toml").read_text(encoding="utf-8")
    r = bpllm(site, "init", str(tmp_path / "x"), "--language", "klingon")
    assert r.returncode == 1
    assert "unknown language 'klingon'" in r.stderr and "blueprint" in r.stderr and "toy" in r.stderr
    assert not (tmp_path / "x" / "bpllm.toml").exists()


@pytest.mark.slow
def test_tiny_run_teaches_the_toy_language(site, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("trl")
    from engine.ml.testing import TEST_BASE_SETTINGS

    ws = tmp_path / "ws"
    r = bpllm(site, "init", str(ws), "--language", "toy")
    assert r.returncode == 0, r.stderr
    assert 'language = "toy"' in (ws / "bpllm.toml").read_text(encoding="utf-8")
    assert (ws / "lessons" / "toy_01.json").exists()
    assert (ws / "system_prompt.txt").read_text(encoding="utf-8").startswith("You write toy node graphs")
    tiny = ", ".join(f"{k} = {json.dumps(v)}" for k, v in TEST_BASE_SETTINGS.items())
    cfg = (ws / "bpllm.toml").read_text(encoding="utf-8").replace("count = 500", "count = 60")
    cfg += (f"\n[profiles.tiny]\nmax_steps = 6\nbatch_size = 4\nsave_steps = 1000\nlogging_steps = 1\n"
            f"learning_rate = 0.004\ntiny = {{ {tiny} }}\n\n[exam]\nmax_new_tokens = 64\nbatch_size = 8\n"
            f"time_budget_s = 60\n\n[grading]\ndraft_prompts = 4\n")
    (ws / "bpllm.toml").write_text(cfg, encoding="utf-8")

    r = bpllm(site, "run", "-w", str(ws), "-q", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    synthetic = [json.loads(x) for x in (ws / "datasets" / "generated" / "synthetic.jsonl").read_text().splitlines()]
    assert len(synthetic) == 60 and all(row["output"].startswith("TOY:") for row in synthetic)
    train = [json.loads(x) for x in (ws / "datasets" / "train.jsonl").read_text().splitlines()]
    assert train and all(row["output"].startswith("TOY:") for row in train)
    records = [json.loads(x) for x in (ws / "models" / "v1" / "exams" / "exam_toy_01.jsonl").read_text().splitlines()]
    assert {r["prompt_id"] for r in records} == {"T01_01", "T01_02", "T01_03", "T01_04"}
    # constrained by the toy grammar (the pack has no catalog checker): every answer is a toy text or empty
    assert all(r["constraint"] == "syntax" for r in records)
    assert all(not r["actual_dsl"] or r["actual_dsl"].startswith("TOY") for r in records)
    drafts = list((ws / "lessons" / "drafts").glob("*.json"))
    assert drafts, "grading drafts a drill from the toy pack's generator"
    drill = json.loads(drafts[0].read_text(encoding="utf-8"))
    assert drill["prompts"] and all(p["expected_dsl"].startswith("TOY:") for p in drill["prompts"])
    assert set(drill["lesson_name"].removeprefix("Drill: ").split(", ")) <= {"Source", "Double", "Sink"}


def test_dsl_core_and_engine_never_name_the_toy_language():
    """The proof's other half: the pack needed no edit to dsl/ core or engine/."""
    for folder in ("dsl", "engine"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert "toypack" not in text and "TOY:" not in text and '"toy"' not in text, path


def test_tui_editor_uses_the_workspace_pack_for_checks_and_colours(tmp_path):
    """In-process: a registered pack (no install) drives the lesson editor's checks and colours."""
    pytest.importorskip("textual")
    from rich.style import Style
    from rich.text import Text

    import toypack
    from bpllm_tui.screens.editor import language_pack
    from bpllm_tui.widgets.dsl_editor import colourize
    from dsl import packs
    from engine.workspace.workspace import init_workspace

    packs.register(toypack.PACK)
    try:
        ws, _notes = init_workspace(tmp_path / "ws", language="toy")
        pack, problem = language_pack(ws.root)
        assert pack.name == "toy" and problem is None
        assert [d.code for d in pack.validate("TOY: A\nNODE n1: Sink\n")] == ["missing-param", "unconnected-input"]
        seen: list[str] = []
        line = colourize(Text('LINK n1.out -> n2.in'), lambda k: seen.append(k) or Style(bold=True), pack.highlights)
        assert seen == ["keyword", "node", "node"]
        assert line.spans[0].start == 0 and line.spans[0].end == 4
        # Blueprint's rules would colour the arrow and the pins: the toy pack names none
        bp: list[str] = []
        colourize(Text('LINK n1.out -> n2.in'), lambda k: bp.append(k) or Style(), None)
        assert "arrow" in bp and "pin" in bp
    finally:
        packs.unregister("toy")
