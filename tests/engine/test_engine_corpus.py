"""Import of the reference BlueprintLLM project and the leakage check on it (read in place).

Skips with a clear message when ../shared/corpus/blueprintllm is absent.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_engine_run import bpllm, events, run_dirs

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus" / "blueprintllm"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"reference corpus not found at {CORPUS} "
                                                            "(tests that read it in place are skipped)")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("corpus") / "ws"
    assert bpllm("init", str(ws), "--pipeline-config", str(CORPUS / "pipeline_config.json")).returncode == 0
    r = bpllm("import-blueprintllm", str(CORPUS), "-w", str(ws), "--json")
    assert r.returncode == 0, r.stderr
    (ws / "import.json").write_text(r.stdout)
    return ws


def test_import_validates_and_quarantines(imported: Path) -> None:
    rep = json.loads((imported / "import.json").read_text())
    lessons = {x.get("lesson_id"): x for x in rep["lessons"]}
    assert {f"lesson_{i:02d}" for i in range(1, 13)} <= set(lessons)
    assert lessons["lesson_12"]["holdout"] is True and lessons["lesson_01"]["holdout"] is False
    assert any("holdout/lesson_11.json is identical" in n for n in rep["notes"])
    ds = {d["file"]: d for d in rep["datasets"]}
    # the broken clipboard translator's rows are quarantined with diagnostics, not silently dropped
    auto = ds["auto_translated.jsonl"]
    assert auto["rows"] == 1128 and auto["imported"] + auto["quarantined"] == 1128 and auto["quarantined"] > 1000
    q = [json.loads(x) for x in Path(auto["quarantine"]).read_text().splitlines()]
    assert len(q) == auto["quarantined"] and all(x["line"] and x["diagnostics"] for x in q)
    train = ds["train.jsonl"]
    assert train["rows"] == 662 and train["quarantined"] >= 191  # 191 rows have no NODE at all
    src = imported / "datasets" / "sources" / "blueprintllm_train.jsonl"
    assert sum(1 for _ in src.open()) == train["imported"]
    lesson12 = json.loads((imported / "lessons" / "lesson_12.json").read_text())
    assert lesson12["holdout"] is True and len(lesson12["prompts"]) == 20


def test_imported_pipeline_config(imported: Path) -> None:
    import tomllib
    cfg = tomllib.loads((imported / "bpllm.toml").read_text())
    prof = cfg["profiles"]["blueprintllm"]
    assert cfg["run"]["profile"] == "blueprintllm" and prof["base"] == "llama-70b-8bit"
    assert prof["model"] == "meta-llama/Meta-Llama-3.1-70B" and prof["lora_r"] == 32 and prof["grad_accum"] == 8
    assert cfg["stall"]["training_kill_s"] == 10800.0


def _check_leakage(ws: Path) -> dict:
    r = bpllm("leakage", "-w", str(ws), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    by = {x["lesson_id"]: x for x in rep["lessons"]}
    for i in range(1, 12):
        lid = f"lesson_{i:02d}"
        assert by[lid]["status"] == "seen", (lid, by[lid]["seen"], by[lid]["unseen"])
        assert by[lid]["unseen"] == 0
        assert all(p["status"] == "seen" and "instruction" in p["match"] for p in by[lid]["prompts"])
    assert by["lesson_12"]["status"] == "unseen"
    l12 = {p["prompt_id"]: p for p in by["lesson_12"]["prompts"]}
    assert sum(p["status"] == "unseen" for p in l12.values()) >= 19
    assert not any("instruction" in p["match"] for p in l12.values()), "no lesson 12 prompt was ever trained on"
    return rep


def test_leakage_on_imported_sources(imported: Path) -> None:
    rep = _check_leakage(imported)
    assert rep["training_data"].startswith("sources")
    text = bpllm("leakage", "-w", str(imported)).stdout
    assert "lesson_12          unseen" in text and "lesson_01          seen" in text


def test_data_steps_on_imported_corpus_then_leakage(imported: Path) -> None:
    r = bpllm("run", "-w", str(imported), "--only", "1,2", "-q")
    assert r.returncode == 0, r.stderr
    evs = events(run_dirs(imported)[-1])
    merged = next(e for e in evs if e["type"] == "data" and e["name"] == "merged")
    assert merged["duplicates"] > 0 and merged["train"] > 1000
    q = imported / "datasets" / "quarantine"
    dups = (q / "merge-duplicates.jsonl").read_text().splitlines()
    assert len(dups) == merged["duplicates"] + merged["near_duplicates"]
    assert (q / "import-auto_translated.jsonl").exists(), "the import's quarantine survives the merge"
    rep = _check_leakage(imported)
    assert rep["training_data"].startswith("merged split")
    # the split never puts two rows of one graph on both sides
    from engine.dataset.rows import check_dsl, graph_key
    def keys(name: str) -> set[str]:
        return {graph_key(check_dsl(json.loads(x)["output"]).canonical)
                for x in (imported / "datasets" / name).read_text().splitlines()}
    assert not keys("train.jsonl") & keys("validation.jsonl")
