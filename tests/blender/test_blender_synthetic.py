"""The material pack's synthetic generator and starter content: coverage, validity, determinism, and
Blender's own verdict (bpy builds every generated and every starter text; skipped without bpy)."""
from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources

from dsl.packs import load
from dsl.packs.blender_material.catalog import load_catalog
from dsl.packs.blender_material.synthetic import EXCLUDED, GROUP_IO, coverable, generate
from tests.blender_helpers import need_bpy

PACK = load("blender-material")
STARTER = resources.files("dsl.packs.blender_material") / "starter"


def _errors(text: str) -> list:
    return [d for d in PACK.validate(text) if d.severity == "error"]


def _types(text: str) -> set[str]:
    cat = load_catalog()
    return {cat.resolve_type(t) for t in PACK.node_types(text)}


def test_rows_cover_every_material_type_and_all_validate():
    types = coverable()
    rows = generate(2 * len(types), seed=11)
    assert len(rows) == 2 * len(types)
    seen = set().union(*(_types(r["output"]) for r in rows))
    assert set(types) - seen == set(), "types no row uses"
    assert set(EXCLUDED) & seen == set()
    # every focus type is the focus of at least one row; groups are among them
    focus = Counter(r["focus"] for r in rows)
    cat = load_catalog()
    assert {cat.short(t) for t in types if t not in GROUP_IO} <= set(focus)
    assert any(r["output"].startswith("GROUP:") for r in rows)
    for r in rows:
        assert _errors(r["output"]) == [], r["output"]
        assert PACK.format(r["output"]) == r["output"], "rows are in canonical form"
        assert r["source"].startswith("synthetic-bmat") and r["pattern"].split(":")[0] in ("material", "group")


def test_instructions_come_from_the_graph_and_never_name_ids():
    for r in generate(60, seed=3):
        name = re.match(r"(?:MATERIAL|GROUP): (.*)", r["output"]).group(1).strip('"')
        assert f"'{name}'" in r["instruction"]
        assert not re.search(r"\bn[0-9]+\b", r["instruction"]), r["instruction"]


def test_deterministic_per_seed_with_unique_names():
    a, b, c = generate(80, seed=5), generate(80, seed=5), generate(80, seed=6)
    assert a == b
    assert a != c
    names = [r["output"].splitlines()[0] for r in a]
    assert len(set(names)) == len(names)


def test_focus_nodes_build_rows_around_those_types():
    rows = generate(12, seed=2, focus_nodes=["NoiseTexture", "ShaderNodeMath", "GroupInput", "NotAType"])
    assert len(rows) == 12
    assert {r["focus"] for r in rows} == {"NoiseTexture", "Math", "GroupInput"}
    for r in rows:
        expected = load_catalog().resolve_type(r["focus"])
        assert expected in _types(r["output"]), r
        assert _errors(r["output"]) == []
    assert generate(5, seed=2, focus_nodes=["NotAType", "Script"]) == []  # nothing buildable, nothing made


def test_group_calls_come_with_the_group_they_call():
    rows = generate(10, seed=4, focus_nodes=["Group"])
    assert len(rows) == 10
    groups = {re.match(r'GROUP: "?([^"\n]*)', r["output"]).group(1) for r in rows if r["output"].startswith("GROUP")}
    calls = [re.search(r'node_tree="([^"]*)"', r["output"]).group(1) for r in rows if r["pattern"] == "material:Group"]
    assert calls and set(calls) <= groups


def test_pack_synthesize_is_the_generator():
    assert PACK.has("synthesize")
    assert PACK.synthesize(10, 4) == generate(10, seed=4)


def _starter_texts() -> list[tuple[str, str]]:
    out = []
    for f in sorted((STARTER / "lessons").iterdir(), key=lambda p: p.name):
        for p in json.loads(f.read_text())["prompts"]:
            out.append((f"{f.name}:{p['id']}", p["expected_dsl"]))
    for i, line in enumerate((STARTER / "datasets" / "starter.jsonl").read_text().splitlines(), 1):
        out.append((f"starter.jsonl:{i}", json.loads(line)["output"]))
    return out


def test_starter_lessons_and_dataset_validate_in_canonical_form():
    lessons = sorted(p.name for p in (STARTER / "lessons").iterdir())
    assert lessons == ["starter_01.json", "starter_02.json", "starter_03.json"]
    texts = _starter_texts()
    assert len(texts) >= 15 + 20
    for where, text in texts:
        assert _errors(text) == [], where
        assert PACK.format(text).rstrip("\n") == text, where
    cfg = (STARTER / "bpllm.toml").read_text()
    assert re.search(r'^language = "blender-material"', cfg, re.M)


@need_bpy
def test_blender_builds_every_generated_and_starter_text():
    from dsl.packs.blender_material.cli import in_blender_diagnostics

    rows = generate(300, seed=9)
    texts = [r["output"] for r in rows] + [t for _w, t in _starter_texts()]
    # one Blender file holds them all: each material its own name (groups keep theirs: materials call them)
    texts = [re.sub(r"^MATERIAL: .*", f'MATERIAL: "T{i}"', t, count=1) for i, t in enumerate(texts)]
    assert any("Group [node_tree=" in t for t in texts), "no group call among the rows"
    verdicts = in_blender_diagnostics(texts)
    assert verdicts is not None
    rejected = [(t.splitlines()[0], [d.message for d in v]) for t, v in zip(texts, verdicts) if v]
    assert rejected == []
    # the check can fail: Blender refuses a group call to a group nobody defined
    bad = in_blender_diagnostics(['MATERIAL: X\nNODE n1: MaterialOutput\nNODE n2: Group [node_tree="Nope"]\n'])
    assert bad and bad[0] and "Nope" in bad[0][0].message
