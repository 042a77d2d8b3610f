"""The catalog-aware constraint (dsl/constraint.py): what it refuses, what it must never refuse."""
from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.catalog import default_catalog
from dsl.constraint import PREVENTED, WHOLE_TEXT, ConstraintState, rules_for
from dsl.validator import validate

from tests.conftest import REPO_ROOT

RULES = rules_for()
HEAD = "BLUEPRINT: BP_Test\nPARENT: Actor\n\nGRAPH: EventGraph\n\n"
GRAPH = HEAD + "NODE n1: Event_BeginPlay\nNODE n2: PrintString\nNODE n3: GetActorLocation\n"


def state_after(text: str) -> ConstraintState:
    s = ConstraintState(RULES)
    for ch in text:
        assert s.allows(ch), f"refused {ch!r} after {text[: text.index(ch) if ch in text else 0]!r}"
        s.advance(ch)
    return s


def allowed_line(prefix: str, line: str) -> bool:
    """Is ``line`` (with its newline) allowed, character by character, after ``prefix``?"""
    s = state_after(prefix)
    for ch in line + "\n":
        if not s.allows(ch):
            return False
        s.advance(ch)
    return True


def errors(text: str) -> set[str]:
    return {d.code for d in validate(text) if d.severity == "error"}


@pytest.mark.parametrize("line, code", [
    ("NODE n1: Branch", "duplicate-node"),
    ("NODE n4: PrintStrin", "unknown-node"),
    ("NODE n4: NoSuchNode", "unknown-node"),
    ("NODE n4: PrintString [InString=\"a\", InString=\"b\"]", "duplicate-param"),
    ("NODE n4: PrintString [Banana=1]", "unknown-param"),
    ("NODE n4: Delay [Duration=\"soon\"]", "literal-type"),
    ("EXEC n1.Then -> n9.Execute", "undeclared-node"),
    ("EXEC n1.Then -> n2.Nope", "unknown-pin"),
    ("EXEC n2.Execute -> n1.Then", "direction"),
    ("EXEC n1.Then -> n2.InString", "kind-mismatch"),
    ("DATA n3.ReturnValue -> n2.InString [Bool]", "type-mismatch"),
    ("BLUEPRINT: BP_Again", "duplicate-header"),
    ("GRAPH: Second", "duplicate-graph"),
])
def test_each_prevented_error_is_refused(line, code):
    assert code in errors(GRAPH + line + "\n"), "the validator reports this line (the premise)"
    assert not allowed_line(GRAPH, line)


@pytest.mark.parametrize("line", [
    "NODE n4: Branch",
    "NODE n4: PrintString [InString=\"hi\", Duration=2.0]",
    "EXEC n1.Then -> n2.Execute",
    "DATA n3.ReturnValue -> n2.InString [String]",
    "DATA \"hello\" -> n2.InString [String]",
])
def test_valid_lines_pass(line):
    assert allowed_line(GRAPH, line)


def test_sections_come_in_order():
    assert not allowed_line("", "GRAPH: EventGraph")  # a header first
    assert not allowed_line("", "NODE n1: Branch")
    assert not allowed_line(GRAPH, "VAR Health: Float")  # VARs before GRAPH
    assert not allowed_line(GRAPH, "PARENT: Pawn")  # headers first
    assert allowed_line("BLUEPRINT: BP_X\n", "VAR Health: Float = 1.0")


def test_the_text_may_end_only_when_the_whole_text_is_valid():
    assert not state_after(HEAD).can_end()  # empty graph
    assert not state_after(HEAD + "NODE n1: Event_BeginPlay\nNODE n2: PrintString\n").can_end()  # no wires
    assert state_after(HEAD + "NODE n1: Event_BeginPlay\nNODE n2: PrintString\nEXEC n1.Then -> n2.Execute\n").can_end()


def _starter_golds() -> list[str]:
    texts = []
    for path in sorted((REPO_ROOT / "dsl" / "packs" / "blueprint" / "starter").rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        texts += [p["expected_dsl"] for p in data.get("prompts", []) if p.get("expected_dsl")]
    for path in sorted((REPO_ROOT / "dsl" / "packs" / "blueprint" / "starter").rglob("*.jsonl")):
        texts += [json.loads(x)["output"] for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(texts) > 10, "the starter data holds gold texts"
    return texts


def _walk_whole(text: str) -> bool:
    s = ConstraintState(RULES)
    for ch in text:
        if not s.allows(ch):
            return False
        s.advance(ch)
    return s.can_end()


def test_never_refuses_a_valid_starter_gold():
    golds = [t for t in _starter_golds() if not errors(t)]
    assert golds
    refused = [t for t in golds if not _walk_whole(t)]
    assert refused == []


def test_never_refuses_a_valid_corpus_gold(corpus):
    texts = []
    for path in sorted((corpus / "lessons").rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        texts += [p["expected_dsl"] for p in data.get("prompts", []) if p.get("expected_dsl")]
    random.Random(3).shuffle(texts)
    golds = [t for t in texts[:400] if not errors(t)]
    assert len(golds) > 50, f"only {len(golds)} valid golds in the corpus lessons"
    refused = [t for t in golds if not _walk_whole(t)]
    assert refused == [], refused[0]


# -- random walks through the constraint ----------------------------------------------------------
def _vocabulary() -> list[str]:
    cat = default_catalog()
    types = ["Event_BeginPlay", "Event_Tick", "PrintString", "Branch", "Delay", "GetActorLocation",
             "SetActorLocation", "Sequence", "ForLoop", "VariableGet", "VariableSet", "Add", "Multiply",
             "GreaterThan", "SpawnActorFromClass", "DestroyActor", "CastToCharacter", "IsValid"]
    types = [t for t in types if t in cat]
    pins = sorted({p.name for t in types for p in cat.get(t).pins})
    words = ["BLUEPRINT", "PARENT", "CATEGORY", "VAR", "GRAPH", "NODE", "EXEC", "DATA", "BP_Walk", "Actor",
             "EventGraph", "Health", "true", "false", "None", "Float", "Int", "Bool", "String", "Vector",
             "Object", "Actor", "Wildcard", "InString", "Duration"]
    punct = [" ", ": ", ":", ".", " -> ", "->", "[", "]", "=", ", ", "\n", "1", "2.5", "-3", '"hi"', "(", ")"]
    ids = [f"n{i}" for i in range(1, 6)]
    letters = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789")  # a tokenizer has these too
    return sorted(set(types + pins + words + punct + ids + letters))


VOCAB = _vocabulary()


def walk(choices: list[int]) -> ConstraintState:
    """Any allowed piece at each step (a line ends once it is long and may end: lines, not soup)."""
    s = ConstraintState(RULES)
    for c in choices:
        allowed = [p for p in VOCAB if s.allows(p)]
        if not allowed:
            break
        s.advance("\n" if "\n" in allowed and len(s.line) > 12 + c % 30 else allowed[c % len(allowed)])
    return s


def test_walks_write_real_graphs():
    """The walk below is worth something: it declares nodes and wires them."""
    rng = random.Random(5)
    texts = [walk([rng.randrange(10_000) for _ in range(150)]).done for _ in range(20)]
    assert sum(t.count("\nNODE ") for t in texts) > 20
    assert sum(t.count("\nEXEC ") + t.count("\nDATA ") for t in texts) > 5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=10, max_size=90))
def test_random_walks_never_reach_a_prevented_error(choices):
    """Take any allowed piece at every step: the complete lines never hold an error the constraint
    claims to prevent, and a text it lets end has no error at all."""
    s = walk(choices)
    line_level = {d.code for d in validate(s.done) if d.severity == "error"} - WHOLE_TEXT
    assert not (line_level & PREVENTED), (line_level, s.done)
    assert not line_level, (line_level, s.done)
    if s.can_end():
        assert errors(s.done + s.line) == set(), s.done + s.line


def allowed_prefix(prefix: str, partial: str) -> bool:
    return state_after(prefix).allows(partial)


def test_no_comma_after_the_last_param_a_node_can_take():
    """A dead end seen in a real exam: `[PlayerIndex=5, ` on a node with one param can never close."""
    assert set(RULES.params_of("GetPlayerController").values()) == {"PlayerIndex"}  # the premise
    assert allowed_prefix(GRAPH, "NODE n4: GetPlayerController [PlayerIndex=5")
    assert not allowed_prefix(GRAPH, "NODE n4: GetPlayerController [PlayerIndex=5,")
    assert allowed_prefix(GRAPH, "NODE n4: PrintString [InString=\"a\",")  # PrintString has more


def test_a_data_target_is_offered_only_where_some_type_fits():
    """`DATA 100 -> n2.Target` was a dead end: no [Type] could close it. A target pin is allowed exactly when
    the validator accepts the wire with some type."""
    cat = default_catalog()
    seen = set()
    for source in ["100", "n3.ReturnValue", "\"text\"", "true", "n1.Then"]:
        for nid, pin in [(nid, p.name) for nid, t in (("n2", "PrintString"), ("n3", "GetActorLocation"))
                         for p in cat.get(t).pins_where("in", "data")]:
            line = f"DATA {source} -> {nid}.{pin}"
            fits = any(not {d.code for d in validate(GRAPH + f"{line} [{t}]\n") if d.severity == "error"}
                       for t in RULES.type_names)
            assert allowed_prefix(GRAPH, line + " ") == fits, (line, fits)  # the pin written
            assert allowed_prefix(GRAPH, line) == fits, (line, fits)  # still being written: no dead end ahead
            seen.add(fits)
    assert seen == {True, False}, "some targets can be fed and some cannot (else this proves nothing)"
