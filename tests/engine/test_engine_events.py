"""The event contract: writer, heartbeat, reader (partial lines, truncation, rotation, offsets,
malformed lines) and the documentation covering every type.  Real files, no mocks."""
from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

from engine.runtime.events import (ENVELOPE, EVENT_TYPES, EventWriter, Heartbeat, read_heartbeat, validate_event)
from engine.runtime.reader import EventTail, RunState, read_events
from engine.runtime.plan import console_line_for_event, load_plan

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_RE = re.compile(r"^\[\d\d:\d\d:\d\d\] \[STEP \d+(\.\d+)?\] (STARTING|COMPLETE|PROGRESS|ERROR|RETRY|SKIPPED)")


def test_envelope_and_seq_continue_across_reopen(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, "r1")
    w.emit("run", phase="start", profile="tiny")
    w.emit("step", id="1", name="Data Foundation", status="start")
    w.close()
    w2 = EventWriter(tmp_path, "r1")
    ev = w2.emit("log", level="info", message="again")
    w2.close()
    assert ev["seq"] == 3
    batch = read_events(tmp_path)
    assert [e["seq"] for e in batch.events] == [1, 2, 3]
    for e in batch.events:
        assert list(e)[:5] == list(ENVELOPE)
        assert e["v"] == 1 and e["run_id"] == "r1" and isinstance(e["ts"], float)


def test_writer_rejects_unknown_type_and_missing_fields(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, "r1")
    with pytest.raises(ValueError, match="unknown event type"):
        w.emit("bogus", x=1)
    with pytest.raises(ValueError, match="missing required field 'status'"):
        w.emit("step", id="1", name="x")
    with pytest.raises(ValueError, match="not one of"):
        w.emit("step", id="1", name="x", status="running")
    w.close()
    assert read_events(tmp_path).events == []  # nothing half-written


def test_torn_last_line_is_cut_and_reported_on_reopen(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, "r1")
    w.emit("run", phase="start")
    w.close()
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('{"v":1,"seq":2,"ts":1.0,"run_id":"r1","type":"lo')  # kill -9 mid-write
    w2 = EventWriter(tmp_path, "r1")
    w2.close()
    batch = read_events(tmp_path)
    assert not batch.malformed
    assert [e["type"] for e in batch.events] == ["run", "log"]
    assert batch.events[1]["level"] == "warning" and "partial line" in batch.events[1]["message"]
    assert batch.events[1]["seq"] == 2


def test_reader_partial_line_then_completion(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(tmp_path)
    assert not tail.poll()  # file does not exist yet
    line = json.dumps({"v": 1, "seq": 1, "ts": 1.0, "run_id": "r", "type": "log", "level": "info", "message": "hi"})
    path.write_text(line[:20])
    assert tail.poll().events == []
    assert tail.offset == 0
    with open(path, "a") as fh:
        fh.write(line[20:] + "\n")
    b = tail.poll()
    assert [e["message"] for e in b.events] == ["hi"]
    assert tail.offset == len(line) + 1


def test_reader_reports_malformed_lines_with_position(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, "r1")
    w.emit("run", phase="start")
    w.close()
    with open(tmp_path / "events.jsonl", "ab") as fh:
        fh.write(b"not json at all\n")
        fh.write(b'{"v":1,"seq":3,"ts":1,"run_id":"r1","type":"step","id":"1"}\n')  # schema break
        fh.write(b"\xff\xfe\n")
        fh.write(b"[1,2]\n")
    w2 = EventWriter(tmp_path, "r1")
    w2.emit("log", level="info", message="after")
    w2.close()
    b = read_events(tmp_path)
    assert [e["type"] for e in b.events] == ["run", "log", "log"]
    # the reopening writer skipped the two unreadable last lines to find seq 3, and said so
    assert b.events[1]["level"] == "warning" and "line 5" in b.events[1]["message"] \
        and "line 4" in b.events[1]["message"] and str(tmp_path / "events.jsonl") in b.events[1]["message"]
    assert [e["seq"] for e in b.events] == [1, 4, 5]
    assert [m.line_no for m in b.malformed] == [2, 3, 4, 5]
    reasons = [m.error for m in b.malformed]
    assert "not JSON" in reasons[0]
    assert "missing required field 'name'" in reasons[1]
    assert "not UTF-8" in reasons[2]
    assert "not a JSON object" in reasons[3]
    assert "line 2" in str(b.malformed[0])


def test_reader_truncation_rotation_and_reattach(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, "r1")
    for i in range(5):
        w.emit("log", level="info", message=f"m{i}")
    w.close()
    tail = EventTail(tmp_path)
    assert len(tail.poll().events) == 5
    saved = tail.offset
    w = EventWriter(tmp_path, "r1")
    w.emit("log", level="info", message="m5")
    w.close()
    again = EventTail(tmp_path, offset=saved)  # re-attach from a stored byte offset
    assert [e["message"] for e in again.poll().events] == ["m5"]
    # truncation: the file is shorter than our offset
    (tmp_path / "events.jsonl").write_text("")
    b = again.poll()
    assert b.reset == "truncated" and b.events == []
    w = EventWriter(tmp_path, "r2")
    w.emit("log", level="info", message="fresh")
    w.close()
    assert [e["message"] for e in again.poll().events] == ["fresh"]
    # rotation: a new file (new inode) under the same name
    os.rename(tmp_path / "events.jsonl", tmp_path / "events.jsonl.1")
    w = EventWriter(tmp_path, "r3")
    w.emit("log", level="info", message="rotated")
    w.emit("log", level="info", message="rotated2")
    w.close()
    b = again.poll()
    assert b.reset == "rotated"
    assert [e["message"] for e in b.events] == ["rotated", "rotated2"]


def test_concurrent_emits_keep_lines_whole_and_seq_unique(tmp_path: Path) -> None:
    w = EventWriter(tmp_path, "r1")

    def burst(k: int) -> None:
        for i in range(200):
            w.emit("log", level="info", message=f"t{k}-{i}" + "x" * 300)

    threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    b = read_events(tmp_path)
    assert not b.malformed
    assert sorted(e["seq"] for e in b.events) == list(range(1, 801))


def test_heartbeat_atomic_and_ticking(tmp_path: Path) -> None:
    hb = Heartbeat(tmp_path, "r1", interval=0.05)
    hb.update(phase="data", step="1.1", force=True)
    first = read_heartbeat(tmp_path)
    assert first and first["pid"] == os.getpid() and first["phase"] == "data" and first["step"] == "1.1"
    hb.start()
    import time
    time.sleep(0.3)
    second = read_heartbeat(tmp_path)
    assert second["updated_at"] > first["updated_at"]
    assert second["progress_at"] == first["progress_at"]  # the ticker proves life, not progress
    hb.stop(status="done", phase="exited")
    assert read_heartbeat(tmp_path)["status"] == "done"
    assert not list(tmp_path.glob("*.tmp"))


def test_run_state_fold() -> None:
    st = RunState()
    evs = [
        {"type": "run", "phase": "start", "seq": 1, "ts": 1.0, "run_id": "r", "profile": "tiny",
         "plan": [{"id": "1", "name": "Data Foundation", "parent": None},
                  {"id": "1.1", "name": "Analyze new exports", "parent": "1"}]},
        {"type": "step", "id": "1", "name": "Data Foundation", "status": "start", "seq": 2, "ts": 2.0, "run_id": "r"},
        {"type": "step", "id": "1.1", "name": "Analyze new exports", "parent": "1", "status": "progress", "n": 2,
         "total": 4, "seq": 3, "ts": 3.0, "run_id": "r"},
        {"type": "step", "id": "1.1", "name": "Analyze new exports", "parent": "1", "status": "complete",
         "duration": 1.5, "seq": 4, "ts": 4.0, "run_id": "r"},
        {"type": "run", "phase": "end", "status": "stopped", "exit_code": 2, "seq": 5, "ts": 5.0, "run_id": "r"},
    ]
    for e in evs:
        assert validate_event(e | {"v": 1}) == []
        st.apply(e)
    assert st.steps["1.1"].status == "complete" and st.steps["1.1"].duration == 1.5
    assert st.steps["1"].status == "running"
    assert st.status == "stopped" and st.exit_code == 2


def test_every_event_type_is_documented() -> None:
    doc = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    for name, spec in EVENT_TYPES.items():
        assert f"### `{name}`" in doc, f"docs/events.md lacks a section for {name}"
        for f in spec.required:
            assert f"`{f}`" in doc


def test_console_lines_format() -> None:
    ev = {"type": "step", "id": "4.3", "name": "Training loop", "status": "start", "ts": 0.0, "eta": 125.0}
    assert CONSOLE_RE.match(console_line_for_event(ev))
    assert console_line_for_event(ev).endswith("STARTING: Training loop | ETA: 2m 5s")
    ev = {"type": "retry", "step": "4.3", "attempt": 2, "max_attempts": 3, "delay_s": 10.0, "ts": 0.0,
          "changes": {"batch_size": [4, 2]}, "category": "cuda_oom"}
    line = console_line_for_event(ev)
    assert CONSOLE_RE.match(line) and "batch_size 4 -> 2" in line


def test_plan_is_canonical() -> None:
    plan = load_plan()
    ids = [s.id for s in plan.steps]
    groups = [s.id for s in plan.groups]
    assert groups == [str(i) for i in range(1, 10)]
    counts = {g: len(plan.children(g)) for g in groups}
    assert counts == {"1": 5, "2": 4, "3": 6, "4": 7, "5": 6, "6": 7, "7": 5, "8": 5, "9": 5}
    assert plan["1.5"].name == "Merge + Deduplicate" and plan["9"].name == "Dashboard & Finalize"
    assert ids.index("1.5") < ids.index("2") < ids.index("9.5")
    assert [s.id for s in plan.select("1,8")][:2] == ["1.1", "1.2"]
    assert plan.select("4.3") == [plan["4.3"]]
    assert plan.select(None, "8.4")[0].id == "8.4"
    with pytest.raises(ValueError, match="unknown step id"):
        plan.select("1,42")


# --------------------------------------------------------------------------- issue 13 item 9: field types
BAD_TYPES = {"v": 1, "seq": 601, "ts": 1, "run_id": "r", "type": "step", "id": {"a": 1}, "name": [],
             "status": "progress"}


def test_schema_rejects_wrong_field_types(tmp_path: Path) -> None:
    problems = validate_event(BAD_TYPES)
    assert any("'id' must be a string" in p for p in problems) and any("'name' must be a string" in p for p in problems)
    assert validate_event({"v": 1, "seq": "2", "ts": 1.5, "run_id": "r", "type": "log", "level": "info",
                           "message": "m"}) == ["envelope field 'seq' must be an integer, not str '2'"]
    assert validate_event({"v": 1, "seq": 2, "ts": 1, "run_id": "r", "type": "train", "step": True, "loss": "x"})
    assert validate_event({"v": 1, "seq": 2, "ts": 1, "run_id": "r", "type": "step", "id": "1", "name": None,
                           "status": "start"}) == ["step: field 'name' must not be null"]
    ok = {"v": 1, "seq": 2, "ts": 1, "run_id": "r", "type": "step", "id": "4.2", "name": "Training loop",
          "status": "progress", "n": 3, "total": 10.0, "message": None}
    assert validate_event(ok) == []
    w = EventWriter(tmp_path, "r")
    with pytest.raises(ValueError, match="'name' must be a string"):
        w.emit("step", id="1", name=["x"], status="start")
    w.emit("run", phase="start", plan=[{"id": "1", "name": "Data", "parent": None}])
    w.close()
    with open(tmp_path / "events.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(BAD_TYPES) + "\n")
    b = read_events(tmp_path)
    assert [e["type"] for e in b.events] == ["run"]
    assert len(b.malformed) == 1 and b.malformed[0].line_no == 2
    assert str(b.malformed[0]).startswith(f"{tmp_path / 'events.jsonl'} line 2 (byte ")


def test_every_field_type_is_documented() -> None:
    from engine.runtime.events import types_line

    doc = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    for name, spec in EVENT_TYPES.items():
        section = doc.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        assert types_line(spec) in section, f"docs/events.md `{name}`: types line out of step with engine/runtime/events.py"


def test_step_5_2_skips_a_non_utf8_line_and_names_file_and_line(tmp_path: Path) -> None:
    """Step 5.2 (training summary) reads this run's train events; a non-UTF-8 line used to fail it with a
    UnicodeDecodeError naming no file."""
    from engine.runtime.context import StepContext
    from engine.runtime.events import Heartbeat
    from engine.workspace.history import History
    from engine.ml.steps import training_summary
    from engine.workspace.workspace import init_workspace

    ws, _ = init_workspace(tmp_path / "ws")
    run_dir = ws.runs / "r1"
    w = EventWriter(run_dir, "r1")
    w.emit("train", step=1, loss=2.0, version="v1")
    w.close()
    with open(run_dir / "events.jsonl", "ab") as fh:
        fh.write(b'{"type":"train","loss":"\xff\xfe"}\n')
    w = EventWriter(run_dir, "r1")
    w.emit("train", step=2, loss=1.5, version="v1")
    ctx = StepContext(workspace=ws, config=ws.config, profile="tiny", run_id="r1", run_dir=run_dir, events=w,
                      heartbeat=Heartbeat(run_dir, "r1"), history=History(ws.history_path), plan=load_plan(),
                      state={"ml": {"version:1": "v1", "train:1": {"global_step": 2}}})
    out = training_summary(ctx)
    w.close()
    assert out["logs"] == 2 and out["first_loss"] == 2.0 and out["final_loss"] == 1.5
    warnings = [e for e in read_events(run_dir).events if e["type"] == "log" and e["level"] == "warning"]
    assert any(f"{run_dir / 'events.jsonl'} line 2 (byte" in e["message"] and "not UTF-8" in e["message"]
               for e in warnings), warnings


def test_worker_event_relay_skips_bad_lines_and_names_file_and_line(tmp_path: Path) -> None:
    """The accelerate worker's side file is relayed into events.jsonl; a non-UTF-8 or non-object line
    used to raise (UnicodeDecodeError / AttributeError) and fail the training step."""
    from engine.ml.launch import _relay

    path = tmp_path / "worker_events.jsonl"
    path.write_bytes(b'{"type":"log","level":"info","message":"a"}\n\xff\xfe\n[1]\n\n'
                     b'{"type":"_progress","n":1,"total":4}\n{"type":"log","level":"info","mess')
    got: list[tuple[str, dict]] = []
    progress: list[tuple] = []
    offset = _relay(path, 0, lambda type, **p: got.append((type, p)), lambda *a: progress.append(a))
    assert offset == path.read_bytes().rindex(b"\n") + 1  # the partial last line waits
    assert got[0] == ("log", {"level": "info", "message": "a"})
    warnings = [p["message"] for t, p in got[1:] if p.get("level") == "warning"]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{path} line 2:") and "utf-8" in warnings[0]
    assert warnings[1].startswith(f"{path} line 3:") and "not a JSON object" in warnings[1]
    assert progress == [(1, 4, None)]
