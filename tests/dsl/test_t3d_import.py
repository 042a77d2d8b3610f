"""import-t3d against the 47 real UE5 clipboard exports of the reference corpus (read in place)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsl.parser import parse
from dsl.scorer import score
from dsl.t3d.importer import import_t3d_text
from dsl.t3d.parser import parse_t3d
from tests.conftest import corpus_files

EXPORTS = "raw-data/clipboard-exports/processed"


@pytest.fixture(scope="module")
def imports(corpus: Path):
    files = corpus_files(corpus, EXPORTS, "*.txt", expected=47)  # the 47 real exports
    return {f.name: (f, import_t3d_text(f.read_text(encoding="utf-8"), source=f.name)) for f in files}


def test_every_export_imports_and_the_output_parses(imports):
    for name, (_, result) in imports.items():
        doc = parse(result.dsl_text)
        assert doc.errors == [], f"{name}: importer wrote DSL that does not parse: {doc.errors[:3]}"
        # the output validates, or carries its diagnostics: every error is a real Diagnostic
        for d in result.diagnostics:
            assert d.severity in ("error", "warning", "info") and d.line >= 1


def test_blueprint_exports_yield_exec_data_wires_and_params(imports):
    """The reference translator produced 0 wires and 0 params from these files."""
    totals = {"exec": 0, "data": 0, "params": 0, "nodes": 0}
    for name, (_, result) in imports.items():
        rep = result.report
        totals["exec"] += rep.exec_wires
        totals["data"] += rep.data_wires
        totals["params"] += rep.params
        totals["nodes"] += rep.nodes_imported
        doc = parse(result.dsl_text)
        assert len(doc.execs) == rep.exec_wires and len(doc.datas) == rep.data_wires + rep.literal_inputs, name
    print(f"\nreal exports: {totals['nodes']} nodes, {totals['exec']} EXEC, {totals['data']} DATA, {totals['params']} params")
    assert totals["exec"] > 150 and totals["data"] > 200 and totals["params"] > 40
    wired = [n for n, (_, r) in imports.items() if r.report.kind == "blueprint" and r.report.exec_wires + r.report.data_wires > 0]
    assert len(wired) >= 35


def test_every_file_reports_what_did_not_map(imports):
    for name, (_, result) in imports.items():
        rep = result.report
        data = rep.to_dict()
        assert data["unsupported_total"] == sum(u["count"] for u in data["unsupported"])
        # every graph node is either imported or counted under a reason
        dropped_nodes = sum(u.count for u in rep.unsupported.values() if u.what == "node")
        assert rep.graph_nodes - rep.nodes_imported == dropped_nodes + rep.nodes_folded, name
        for u in rep.unsupported.values():
            assert u.count > 0 and u.reason
        json.dumps(data)  # serialisable for --json


def test_controlrig_graphs_are_reported_not_silently_dropped(imports):
    rig = {n: r for n, (_, r) in imports.items() if r.report.kind == "controlrig"}
    assert set(rig) == {"DemoFPSCR_Mannequin_Body.txt", "DemoFPSCR_Mannequin_FootIK.txt", "DemoFPSCR_Mannequin_Procedural.txt"}
    for name, result in rig.items():
        items = [u for u in result.report.unsupported.values() if u.what == "graph"]
        assert items and items[0].count > 10 and "ControlRig" in items[0].reason, name


def test_every_wire_in_real_files_is_accounted_for(imports):
    """LinkedTo is written on both ends; each link ends up as a DSL wire or under a reason."""
    checked = 0
    for name, (path, result) in imports.items():
        rep = result.report
        if rep.kind != "blueprint":
            continue
        checked += 1
        doc = parse_t3d(path.read_text(encoding="utf-8"))
        knots = {o.name for o in doc.objects if o.short_class == "K2Node_Knot"}
        comments = {o.name for o in doc.objects if "Comment" in o.short_class}
        links = set()
        for obj in doc.objects:
            if obj.name in knots or obj.name in comments:
                continue
            for pin in obj.pins:
                for other, pid in pin.linked_to:
                    if other not in knots:
                        links.add(frozenset([(obj.name, pin.pin_id), (other, pid)]))
        accounted = rep.exec_wires + rep.data_wires + sum(
            u.count for u in rep.unsupported.values() if u.what in ("wire", "pin")
        )
        # knot chains add wires (one source fanning out through a knot) so accounted may exceed direct links
        assert accounted >= len(links), f"{name}: {len(links)} direct links, {accounted} accounted"
    assert checked >= 35, f"only {checked} Blueprint exports checked"


def test_hello_world_exact(imports):
    _, result = imports["hello_world.txt"]
    expected = (
        "BLUEPRINT: BP_HelloWorld\nPARENT: Actor\nGRAPH: EventGraph\n"
        "NODE n1: Event_Tick\nNODE n2: PrintString [InString=\"Hello World\"]\n"
        "EXEC n1.Then -> n2.Execute\n"
    )
    assert score(expected, result.dsl_text).score == 1.0
    doc = parse(result.dsl_text)
    assert [(n.id, n.type) for n in doc.nodes] == [("n1", "Event_Tick"), ("n2", "PrintString")]
    assert doc.nodes[1].param("InString").value.python == "Hello World"
    assert [str(c.source) + "->" + str(c.target) for c in doc.execs] == ["n1.Then->n2.Execute"]
    assert result.diagnostics == []
    assert result.report.unsupported == {}


def test_knots_collapse_into_direct_wires(imports):
    collapsed = sum(r.report.knots_collapsed for _, r in imports.values())
    assert collapsed > 20
    for _, result in imports.values():
        assert "Knot" not in result.dsl_text


def test_training_row_has_instruction_stub(imports):
    _, result = imports["hello_world.txt"]
    row = result.training_row()
    assert row["instruction"].startswith("TODO") and row["output"] == result.dsl_text


def test_cli_import_json_and_out_dir(corpus: Path, tmp_path: Path):
    src = corpus / EXPORTS / "hello_world.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "import-t3d", str(src), "--json", "--training-row", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (entry,) = data["files"]
    assert entry["report"]["exec_wires"] == 1 and entry["training_row"]["output"] == entry["dsl"]
    assert (tmp_path / "hello_world.dsl").read_text() == entry["dsl"]
    assert len((tmp_path / "training_rows.jsonl").read_text().splitlines()) == 1


def test_cli_names_unreadable_file(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "import-t3d", str(tmp_path / "missing.txt")],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2 and "missing.txt" in proc.stderr and "cannot read" in proc.stderr


@pytest.mark.parametrize("content,reason", [
    (__import__("random").Random(13).randbytes(4096), "not Unreal clipboard text"),
    (b"", "empty file"),
    (b"just some notes\n", "no Blueprint nodes found"),
], ids=["random-bytes", "empty", "plain-text"])
def test_cli_refuses_a_file_with_no_nodes_and_writes_nothing(tmp_path: Path, content: bytes, reason: str):
    src = tmp_path / "clip.txt"
    src.write_bytes(content)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "import-t3d", str(src), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0] and reason in lines[0] and "nothing written" in lines[0], lines
    assert not out.exists() and proc.stdout == "", "no empty-graph DSL may be written"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "import-t3d", str(src), "--json"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    (entry,) = json.loads(proc.stdout)["files"]
    assert proc.returncode == 1 and entry["dsl"] is None and reason in entry["error"]
