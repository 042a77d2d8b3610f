"""Steps 1.1, 1.2 and 1.5 from a workspace's [sources]: scrape (against the loopback GitHub stand-in of
test_scrape.py), build rows from the scraped folder and a blend_dirs folder together, write fine-tune
exports after the merge; a second run downloads nothing again. Real subprocesses (`bpllm run --only 1`),
real corpus .blend files served by the stand-in, real Blender for the build (skipped without bpy)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path


from tests.blender_helpers import need_blend_corpus, need_bpy

from dsl.packs import load
from tests.pipeline.test_scrape import BLEND_CORPUS, WAIT, StandIn, read_jsonl
from tests.cli import bpllm as _run

PACK = load("blender-material")
SERVED = ("armory3d__armory_examples__material_normalmap.blend", "armory3d__armory_examples__particle_info.blend",
          "KhronosGroup__glTF-Blender-IO__01_dispersion.blend")
LOCAL = "KhronosGroup__glTF-Blender-IO__39_iridescence.blend"


def bpllm(*args: str) -> subprocess.CompletedProcess:
    return _run(*args, timeout=WAIT * 5)


def events(ws: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((ws / "runs").glob("*/events.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


def workspace(tmp_path: Path, language: str, sources: str) -> Path:
    ws = tmp_path / "ws"
    r = bpllm("init", str(ws), "--language", language)
    assert r.returncode == 0, r.stderr
    cfg = (ws / "bpllm.toml").read_text().replace("count = 500", "count = 40")
    (ws / "bpllm.toml").write_text(cfg + "\n[sources]\n" + sources)
    return ws


def test_sources_on_another_language_are_one_clear_line(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "blueprint", 'github_query = "extension:blend"\napi_url = "http://127.0.0.1:9"\n')
    r = bpllm("run", "-w", str(ws), "--only", "1", "-q")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "[sources] github_query" in out and "blender-material" in out and "Traceback" not in out


def test_bad_sources_keys_name_the_key_and_the_fix(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "blender-material", 'export_formats = ["csv"]\napi_url = "ftp://x"\n')
    r = bpllm("status", "-w", str(ws))
    assert r.returncode == 1
    assert "sources.export_formats" in r.stderr and '"openai"' in r.stderr
    assert "sources.api_url" in r.stderr and "http(s) URL" in r.stderr


@need_bpy
@need_blend_corpus
def test_steps_scrape_build_and_export_from_sources(tmp_path: Path) -> None:
    files = [("acme/shaders", f"mats/{SERVED[0]}", (BLEND_CORPUS / SERVED[0]).read_bytes()),
             ("acme/shaders", f"mats/{SERVED[1]}", (BLEND_CORPUS / SERVED[1]).read_bytes()),
             ("zed/looks", "notes.blend", b"not a blend file at all\n" * 10),
             ("zed/looks", f"x/{SERVED[2]}", (BLEND_CORPUS / SERVED[2]).read_bytes())]
    local = tmp_path / "more-blends"
    local.mkdir()
    shutil.copy(BLEND_CORPUS / LOCAL, local / LOCAL)  # a user's own folder (a temporary copy, not the project)
    with StandIn(files, page_size=2) as gh:
        gh.fault("/search/code", "", "ratelimit")  # page 2 refused once: step 1.1 waits, then goes on
        ws = workspace(tmp_path, "blender-material",
                       f'github_query = "extension:blend"\napi_url = "{gh.url}"\nmax_size_mb = 5\n'
                       f'blend_dirs = ["{local}"]\nexport_formats = ["openai", "anthropic"]\n')
        r = bpllm("run", "-w", str(ws), "--only", "1", "-q")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        raw_first = [p for _t, p in gh.log if p.startswith("/raw/")]

        # 1.1: the scrape stored the three .blend files once each and rejected the text file
        scraped = ws / "datasets" / "raw" / "github"
        meta = read_jsonl(scraped / "metadata.jsonl")
        assert sorted(m["path"].rsplit("/", 1)[-1] for m in meta) == sorted(SERVED)
        evs = events(ws)
        scrape_ev = [e for e in evs if e["type"] == "data" and e.get("name") == "scrape"]
        assert scrape_ev and scrape_ev[-1]["files"] == 3 and scrape_ev[-1]["rejected"] == 1

        # 1.2: one build over the scrape folder and blend_dirs, provenance from the scrape's metadata
        built = [e for e in evs if e["type"] == "data" and e.get("name") == "blend_build"]
        assert built and built[-1]["rows"] > 0
        report = json.loads((ws / "datasets" / "generated" / "blend_build.json").read_text())
        assert sorted(report["from"]) == sorted([str(scraped.resolve()), str(local.resolve())])
        assert report["files"] == 4
        rows = read_jsonl(ws / "datasets" / "sources" / "blend.jsonl")
        repos = {row["repository"] for row in rows}
        lesson = ws / "lessons" / "blend_test.json"
        test_repos = {p["repository"] for p in json.loads(lesson.read_text())["prompts"]} if lesson.exists() else set()
        assert {"acme/shaders", "zed/looks"} <= repos | test_repos
        assert all(row["licence"] == "MIT" for row in rows if row["repository"] in ("acme/shaders", "zed/looks"))

        # 1.5: fine-tune files of the merged splits, in the asked formats
        train = read_jsonl(ws / "datasets" / "export" / "openai" / "train.jsonl")
        assert train and all([m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
                              for line in train)
        assert any(line["messages"][2]["content"].startswith(("MATERIAL:", "GROUP:")) for line in train)
        anth = read_jsonl(ws / "datasets" / "export" / "anthropic" / "val.jsonl")
        assert anth and all(set(line) == {"system", "messages"} and
                            [m["role"] for m in line["messages"]] == ["user", "assistant"] for line in anth)
        merged = sum(1 for line in (ws / "datasets" / "train.jsonl").read_text().splitlines() if line.strip())
        assert len(train) == merged

        # a second run: the scrape resumes finished, downloads nothing; nothing new to build
        again = bpllm("run", "-w", str(ws), "--only", "1", "-q")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert [p for _t, p in gh.log if p.startswith("/raw/")] == raw_first
        last = [e for e in events(ws) if e["type"] == "step" and e.get("id") == "1.2" and e.get("status") == "complete"]
        assert last and re.search(r"no new exports", json.dumps(last[-1]))
        # unchanged files keep their digest by size and mtime; a changed one is seen and built again
        stat = json.loads((ws / "datasets" / "generated" / "exports_stat.json").read_text())
        assert len(stat) == 4 and all(len(v) == 3 for v in stat.values())
        with (local / LOCAL).open("ab") as fh:
            fh.write(b"\0")  # still a .blend Blender reads; its bytes, size and mtime differ
        third = bpllm("run", "-w", str(ws), "--only", "1", "-q")
        assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
        rebuilt = [e for e in events(ws) if e["type"] == "data" and e.get("name") == "blend_build"]
        assert len(rebuilt) == len(built) + 1


@need_bpy
def test_step_2_2_lets_blender_judge_rows_and_lessons(tmp_path: Path) -> None:
    """A row the catalog accepts but Blender cannot build (it calls a node group nobody defines) leaves
    the merged splits for quarantine, with Blender's reason; a lesson gold like it is reported."""
    ws = workspace(tmp_path, "blender-material", "")
    orphan = 'MATERIAL: Orphan\nNODE n1: MaterialOutput\nNODE n2: Group [node_tree="Nowhere"]\nLINK n2.Shader -> n1.Surface'
    assert not [d for d in PACK.validate(orphan) if d.severity == "error"]  # the catalog cannot tell
    with (ws / "datasets" / "sources" / "starter.jsonl").open("a") as fh:
        fh.write(json.dumps({"instruction": "Make 'Orphan': a material calling the group 'Nowhere'.", "output": orphan})
                 + "\n")
    lesson = json.loads((ws / "lessons" / "starter_01.json").read_text())
    lesson["prompts"][0]["expected_dsl"] = orphan.replace("Orphan", "Lonely")
    (ws / "lessons" / "starter_01.json").write_text(json.dumps(lesson))
    r = bpllm("run", "-w", str(ws), "--only", "1,2", "-q")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    merged = [row["output"] for name in ("train.jsonl", "validation.jsonl")
              for row in read_jsonl(ws / "datasets" / name)]
    assert merged and not any("Nowhere" in text for text in merged)
    quarantined = [row for f in (ws / "datasets" / "quarantine").glob("tool-*.jsonl") for row in read_jsonl(f)]
    assert [q["row"]["output"] for q in quarantined] == [orphan]
    assert "Nowhere" in quarantined[0]["reason"] and "Blender" in quarantined[0]["reason"]
    evs = events(ws)
    judged = [e for e in evs if e["type"] == "data" and e.get("name") == "tool_check"]
    assert judged and judged[-1]["quarantined"] == 1 and judged[-1]["lessons"] == 1
    assert any("Lonely" in e.get("message", "") or "S01_01" in e.get("message", "")
               for e in evs if e["type"] == "log" and e.get("level") == "warning")
