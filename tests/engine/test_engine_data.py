"""Data steps: validation, dedup (exact / near, keeping prompt variations), group split, lesson
integration after an exam, idempotent health alerts, multi-cycle runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.dataset.rows import (instruction_variations, merge_rows, norm_instruction, template_fingerprint, check_dsl)
from test_engine_run import bpllm, events, run_dirs

G = ("BLUEPRINT: {name}\nPARENT: Actor\n\nGRAPH: EventGraph\n\nNODE n1: Event_BeginPlay\n"
     "NODE n2: PrintString [InString=\"{text}\"]\n\nEXEC n1.Then -> n2.Execute")
D = ("BLUEPRINT: {name}\nPARENT: Actor\n\nGRAPH: EventGraph\n\nNODE n1: Event_BeginPlay\nNODE n2: Delay [Duration={d}]\n"
     "NODE n3: DestroyActor\n\nEXEC n1.Then -> n2.Execute\nEXEC n2.Completed -> n3.Execute")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dedup_exact_near_and_variations_kept(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Print Hello at begin play.", "output": G.format(name="BP_A", text="Hello")},
        # exact duplicate: same instruction up to case/space/punctuation, same graph, other BLUEPRINT name
        {"instruction": "print  hello at BEGIN play", "output": G.format(name="BP_B", text="Hello")},
        # a rephrasing of the same graph: an intentional variation, kept
        {"instruction": "When the game starts, show Hello on screen.", "output": G.format(name="BP_C", text="Hello")},
    ]
    # one template, five value instantiations: near-duplicates beyond the cap
    rows += [{"instruction": f"Destroy the actor {d} seconds after begin play.", "output": D.format(name=f"BP_D{d}", d=d)}
             for d in (1, 2, 3, 4, 5)]
    f = _write(tmp_path / "src.jsonl", rows)
    res = merge_rows([f], root=tmp_path, near_keep=3, val_fraction=0.0, min_val=0, seed=1)
    kinds = [p.kind for p in res.problems]
    assert kinds.count("duplicate") == 1 and kinds.count("near_duplicate") == 2
    dup = next(p for p in res.problems if p.kind == "duplicate")
    assert dup.line == 2 and "src.jsonl:1" in dup.reason
    kept = [r["instruction"] for r in res.train]
    assert "When the game starts, show Hello on screen." in kept
    assert sum("Destroy the actor" in k for k in kept) == 3
    assert res.stats["valid"] == 5 and res.stats["duplicates"] == 1 and res.stats["near_duplicates"] == 2
    res_all = merge_rows([f], root=tmp_path, near_keep=0, val_fraction=0.0, min_val=0, seed=1)
    assert res_all.stats["near_duplicates"] == 0 and res_all.stats["valid"] == 7


def test_fingerprints_mask_values_only() -> None:
    c1 = check_dsl(D.format(name="X", d=1)).canonical
    c2 = check_dsl(D.format(name="Y", d=9)).canonical
    assert template_fingerprint("Wait 1 seconds then die", c1) == template_fingerprint("Wait 9 seconds then die", c2)
    assert template_fingerprint("Wait 1 seconds then die", c1) != template_fingerprint("Pause 1 seconds then die", c1)
    assert norm_instruction("  Hello   World!! ") == "hello world"


def test_split_keeps_graph_groups_together(tmp_path: Path) -> None:
    rows = []
    for i in range(30):
        text = f"Msg{i}"
        rows.append({"instruction": f"Print {text} at begin play.", "output": G.format(name=f"BP_{i}", text=text)})
        rows.append({"instruction": f"On begin play, print the text {text}.", "output": G.format(name=f"BP_{i}b",
                                                                                                   text=text)})
    f = _write(tmp_path / "s.jsonl", rows)
    a = merge_rows([f], root=tmp_path, near_keep=0, val_fraction=0.2, min_val=2, seed=7)
    b = merge_rows([f], root=tmp_path, near_keep=0, val_fraction=0.2, min_val=2, seed=7)
    assert [r["instruction"] for r in a.validation] == [r["instruction"] for r in b.validation]  # deterministic
    assert len(a.validation) >= 12 and len(a.validation) % 2 == 0
    texts = lambda rs: {r["output"].split('InString="')[1].split('"')[0] for r in rs}  # noqa: E731
    assert not texts(a.train) & texts(a.validation)


def test_instruction_variations_are_distinct_and_deterministic() -> None:
    v = instruction_variations("Create a Blueprint that prints Hi.", 3, seed=1)
    assert len(v) == 3 and len({norm_instruction(x) for x in v}) == 3
    assert all("prints Hi" in x for x in v)
    assert v == instruction_variations("Create a Blueprint that prints Hi.", 3, seed=1)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    assert bpllm("init", str(w)).returncode == 0
    t = (w / "bpllm.toml").read_text().replace("count = 500", "count = 40")
    (w / "bpllm.toml").write_text(t)
    return w


def test_examined_lesson_is_integrated_and_becomes_seen(ws: Path) -> None:
    assert bpllm("run", "-w", str(ws), "--only", "1,2", "-q").returncode == 0
    rep = json.loads(bpllm("leakage", "-w", str(ws), "--json").stdout)
    assert {x["lesson_id"]: x["status"] for x in rep["lessons"]}["starter_02"] == "unseen"
    # what the exam step (issue 4) records: results for starter_02 in the history store
    from engine.workspace.history import History
    h = History(ws / "history.db")
    h.add_exam_results("v1", "run-x", [{"lesson_id": "starter_02", "prompt_id": "S02_01", "score": 0.5,
                                        "valid": True, "seen": False}])
    h.close()
    r = bpllm("run", "-w", str(ws), "--only", "8")
    assert r.returncode == 0, r.stderr
    evs = events(run_dirs(ws)[-1])
    s81 = next(e for e in evs if e["type"] == "step" and e["id"] == "8.1" and e["status"] == "complete")
    assert s81["result"]["to_integrate"] == ["starter_02"]
    assert any(e["type"] == "backup" and e["tier"] == "scheduled" for e in evs)  # 8.5 post-merge backup
    rows = [json.loads(x) for x in (ws / "datasets" / "generated" / "lessons.jsonl").read_text().splitlines()]
    assert len(rows) == 5 * 3 and sum(1 for r in rows if r.get("variation")) == 10
    rep = json.loads(bpllm("leakage", "-w", str(ws), "--json").stdout)
    by = {x["lesson_id"]: x for x in rep["lessons"]}
    assert by["starter_02"]["status"] == "seen" and by["starter_02"]["unseen"] == 0
    assert by["starter_01"]["status"] == "unseen"
    # a second pass integrates nothing new and keeps the lesson in training (1.4 regenerates it)
    r = bpllm("run", "-w", str(ws), "--only", "1,8", "-q")
    evs = events(run_dirs(ws)[-1])
    s81 = next(e for e in evs if e["type"] == "step" and e["id"] == "8.1" and e["status"] == "complete")
    assert s81["result"]["to_integrate"] == []
    assert json.loads(bpllm("leakage", "-w", str(ws), "--json").stdout)["lessons"][1]["status"] == "seen"


def test_health_alerts_are_idempotent_and_never_hidden(ws: Path) -> None:
    src = ws / "datasets" / "sources" / "starter.jsonl"
    rows = src.read_text().splitlines()
    src.write_text("\n".join(rows + rows[:5]) + "\n")  # 5 exact duplicates of 25 rows: 20% > 5%
    (ws / "bpllm.toml").write_text((ws / "bpllm.toml").read_text().replace("enabled = true\ncount = 40",
                                                                          "enabled = false\ncount = 40"))
    for _ in range(2):
        assert bpllm("run", "-w", str(ws), "--only", "1,2", "-q").returncode == 0
        evs = events(run_dirs(ws)[-1])
        alerts = [e for e in evs if e["type"] == "health" and e["check"] == "duplicates"]
        assert len(alerts) == 1 and alerts[0]["severity"] == "warning" and alerts[0]["value"] == 0.2
    from engine.workspace.history import History
    h = History(ws / "history.db", readonly=True)
    rows = [a for a in h.alerts() if a["check_name"] == "duplicates"]
    h.close()
    assert len(rows) == 2 and all(r["count"] == 1 for r in rows)  # one per run scope, both kept


def test_two_cycles_run_everything_twice(ws: Path) -> None:
    r = bpllm("run", "-w", str(ws), "--only", "1,2,8,9", "--cycles", "2", "-q")
    assert r.returncode == 0, r.stderr
    evs = events(run_dirs(ws)[-1])
    done = [(e["cycle"], e["id"]) for e in evs if e["type"] == "step" and e["status"] == "complete" and e["id"] == "9.5"]
    assert done == [(1, "9.5"), (2, "9.5")]
    st = json.loads(bpllm("status", "-w", str(ws), "--json").stdout)
    assert st["cycle"] == 2 and st["cycles"] == 2 and st["status"] == "done"


def test_near_duplicate_group_a_kept_material_calls_is_kept(tmp_path: Path) -> None:
    """Four node groups of one template: the near-duplicate limit (3) would drop the fourth, but a kept
    material calls it by name, so it stays."""
    def group(name: str, value: float) -> str:
        return (f'GROUP: "{name}"\nOUTPUT Result: Float\nNODE n1: Value [out_Value={value}]\nNODE n2: GroupOutput'
                "\nLINK n1.Value -> n2.Result")

    rows = [{"instruction": f"Make the group '{n}' giving {v}.", "output": group(n, v)}
            for n, v in (("Ramp 1", 1), ("Ramp 2", 2), ("Ramp 3", 3), ("Ramp 4", 4))]
    mat = ('MATERIAL: M\nNODE n1: MaterialOutput\nNODE n2: Group [node_tree="Ramp 4"]\nNODE n3: PrincipledBSDF\n'
           "LINK n2.Result -> n3.Roughness\nLINK n3.BSDF -> n1.Surface")
    rows.append({"instruction": "Make 'M' whose roughness comes from the group 'Ramp 4'.", "output": mat})
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = merge_rows([f], root=tmp_path, near_keep=3, val_fraction=0.0, min_val=0, seed=1,
                     language="blender-material")
    outputs = [r["output"] for r in res.train + res.validation]
    assert any(o.startswith('GROUP: "Ramp 4"') for o in outputs), "the called group was dropped"
    assert res.stats["near_duplicates"] == 0 and not [p for p in res.problems if p.kind == "near_duplicate"]
    # without the caller, the limit applies as before
    f.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]), encoding="utf-8")
    res = merge_rows([f], root=tmp_path, near_keep=3, val_fraction=0.0, min_val=0, seed=1,
                     language="blender-material")
    assert res.stats["near_duplicates"] == 1 and len(res.train + res.validation) == 3
