"""Validator: one test per diagnostic code with exact positions, plus hypothesis robustness.

Positions are 1-based; ``end_column`` is exclusive (see dsl/ast.py). Every case
starts from a valid text and breaks one thing, so each test fails if the check
it names stops firing, fires at the wrong token, or fires on valid input.
"""
from __future__ import annotations

import json
import random
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.ast import Diagnostic
from dsl.catalog import Catalog, default_catalog
from dsl.parser import parse
from dsl.validator import CODES, validate

VALID = """\
BLUEPRINT: BP_Test
PARENT: Actor
VAR Health: Float = 100.0
GRAPH: EventGraph
NODE n1: Event_BeginPlay
NODE n2: Delay [Duration=2.0]
NODE n3: PrintString [InString="Done"]
EXEC n1.Then -> n2.Execute
EXEC n2.Completed -> n3.Execute
"""


def lines_of(text: str) -> list[str]:
    return text.split("\n")


def with_line(n: int, new: str, text: str = VALID) -> str:
    """Replace line ``n`` (1-based)."""
    ls = lines_of(text)
    ls[n - 1] = new
    return "\n".join(ls)


def add_lines(*extra: str, text: str = VALID) -> str:
    return text + "\n".join(extra) + "\n"


def only(diags: list[Diagnostic], code: str) -> list[Diagnostic]:
    return [d for d in diags if d.code == code]


def pos(d: Diagnostic) -> tuple[int, int, int, int]:
    return (d.line, d.column, d.end_line, d.end_column)


def the(text: str, code: str, **kw) -> Diagnostic:
    """The single diagnostic with ``code``; also checks nothing else is an error unless expected."""
    diags = validate(text, **kw)
    found = only(diags, code)
    assert len(found) == 1, f"expected one {code}, got {[str(d) for d in diags]}"
    return found[0]


# --------------------------------------------------------------------------- baseline

def test_valid_text_has_no_diagnostics():
    assert validate(VALID) == []


def test_accepts_a_parsed_document_and_keeps_parser_errors():
    doc = parse(VALID + "NODE n4 PrintString\n")
    diags = validate(doc)
    assert [d.code for d in diags if d.severity == "error"] == [d.code for d in doc.errors]
    assert diags[0].line == 10


def test_sorted_by_position():
    text = with_line(8, "EXEC n1.Then -> n9.Execute", with_line(6, "NODE n2: Delay [Time=2.0]"))
    diags = validate(text)
    assert diags == sorted(diags, key=lambda d: (d.line, d.column))
    assert [d.code for d in diags if d.severity == "error"] == ["unknown-param", "undeclared-node"]


def test_every_emitted_code_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "catalog.md").read_text(encoding="utf-8")
    for code in CODES:
        assert f"`{code}`" in doc, f"{code} missing from docs/catalog.md"


# --------------------------------------------------------------------------- structure

def test_missing_header():
    d = the(VALID.replace("PARENT: Actor\n", ""), "missing-header")
    assert (d.severity, pos(d)) == ("error", (1, 1, 1, 2))
    assert "PARENT" in d.message


def test_duplicate_header():
    d = the(with_line(3, "BLUEPRINT: BP_Other"), "duplicate-header")
    assert pos(d) == (3, 1, 3, 20)
    assert "line 1" in d.message


def test_missing_graph_points_at_first_node():
    d = the(with_line(4, ""), "missing-graph")
    assert (d.severity, pos(d)) == ("error", (5, 1, 5, 25))


def test_duplicate_graph():
    d = the(add_lines("GRAPH: Other"), "duplicate-graph")
    assert pos(d) == (10, 1, 10, 13)
    assert "line 4" in d.message


def test_empty_graph():
    text = "BLUEPRINT: BP_X\nPARENT: Actor\nGRAPH: EventGraph\n"
    d = the(text, "empty-graph")
    assert (d.severity, pos(d)) == ("error", (3, 1, 3, 18))


def test_no_wires_rejects_unwired_translator_output():
    text = "BLUEPRINT: BP_X\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: Event_Tick\nNODE n2: PrintString\n"
    d = the(text, "no-wires")
    assert (d.severity, pos(d)) == ("error", (3, 1, 3, 18))


def test_no_event():
    text = "BLUEPRINT: BP_X\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: GetPlayerPawn\n"
    d = the(text, "no-event")
    assert (d.severity, pos(d)) == ("error", (3, 1, 3, 18))
    assert not only(validate(text), "unreachable")


def test_order_warning():
    text = VALID.replace("VAR Health: Float = 100.0\nGRAPH: EventGraph\n", "GRAPH: EventGraph\nVAR Health: Float = 100.0\n")
    d = the(text, "order")
    assert (d.severity, pos(d)) == ("warning", (4, 1, 4, 26))


# --------------------------------------------------------------------------- vars and literals

def test_duplicate_var():
    d = the(with_line(4, "VAR Health: Int = 1", VALID.replace("GRAPH", "\nGRAPH", 1)), "duplicate-var")
    assert pos(d) == (4, 5, 4, 11)


def test_var_default_of_wrong_type():
    d = the(with_line(3, "VAR Health: Float = true"), "literal-type")
    assert (d.severity, pos(d)) == ("error", (3, 21, 3, 25))
    assert "a number" in d.message


def test_param_value_of_wrong_type():
    d = the(with_line(6, "NODE n2: Delay [Duration=\"soon\"]"), "literal-type")
    assert pos(d) == (6, 26, 6, 32)
    assert "Float" in d.message and "write a number" in d.message


def test_int_param_rejects_decimal():
    text = add_lines("NODE n4: ForLoop [FirstIndex=0, LastIndex=2.5]", "EXEC n3.Then -> n4.Execute")
    d = the(text, "literal-type")
    assert pos(d) == (10, 43, 10, 46)


def test_data_literal_of_wrong_type():
    text = add_lines("NODE n4: Branch", "EXEC n3.Then -> n4.Execute", "DATA 5 -> n4.Condition [Bool]")
    d = the(text, "literal-type")
    assert pos(d) == (12, 6, 12, 7)


def test_data_literal_fits():
    text = add_lines("NODE n4: Branch", "EXEC n3.Then -> n4.Execute", "DATA false -> n4.Condition [Bool]")
    assert validate(text) == []


# --------------------------------------------------------------------------- nodes and params

def test_duplicate_node():
    d = the(with_line(7, "NODE n2: PrintString"), "duplicate-node")
    assert pos(d) == (7, 6, 7, 8)
    assert "line 6" in d.message


def test_unknown_node_is_error_by_default_and_warning_when_allowed():
    text = with_line(7, "NODE n3: PrintStrin [InString=\"Done\"]")
    d = the(text, "unknown-node")
    assert (d.severity, pos(d)) == ("error", (7, 10, 7, 20))
    assert "PrintString" in d.message  # close-match suggestion
    d = the(text, "unknown-node", unknown_nodes="warning")
    assert d.severity == "warning"
    assert not [x for x in validate(text, unknown_nodes="warning") if x.severity == "error"]


def test_unknown_param_lists_the_right_ones():
    d = the(with_line(6, "NODE n2: Delay [Time=2.0]"), "unknown-param")
    assert pos(d) == (6, 17, 6, 21)
    assert "Duration" in d.message


def test_duplicate_param_through_alias():
    text = add_lines('NODE n4: SetTimerByFunctionName [FunctionName="Tick", Looping=true, bLooping=false]',
                     "EXEC n3.Then -> n4.Execute")
    d = the(text, "duplicate-param")
    assert pos(d) == (10, 69, 10, 77)


def test_missing_required_param():
    text = add_lines("NODE n4: VariableGet")
    d = the(text, "missing-param")
    assert pos(d) == (10, 10, 10, 21)
    assert "VarName" in d.message


def test_undeclared_var_warning():
    text = add_lines("NODE n4: VariableSet [VarName=Score]", "EXEC n3.Then -> n4.Execute")
    d = the(text, "undeclared-var")
    assert (d.severity, pos(d)) == ("warning", (10, 31, 10, 36))


# --------------------------------------------------------------------------- wires

def test_undeclared_endpoint():
    d = the(with_line(9, "EXEC n2.Completed -> n7.Execute"), "undeclared-node")
    assert pos(d) == (9, 22, 9, 24)


def test_unknown_pin_message_names_the_right_pins():
    d = the(with_line(9, "EXEC n2.Finished -> n3.Execute"), "unknown-pin")
    assert pos(d) == (9, 9, 9, 17)
    assert d.message == "Delay has no exec output 'Finished'; exec outputs: Completed"


def test_unknown_pin_suggests_close_match():
    d = the(with_line(9, "EXEC n2.Complete -> n3.Execute"), "unknown-pin")
    assert "did you mean 'Completed'" in d.message


def test_kind_mismatch():
    text = add_lines("NODE n4: Branch", "EXEC n3.Then -> n4.Condition")
    d = the(text, "kind-mismatch")
    assert pos(d) == (11, 20, 11, 29)
    assert "data input" in d.message and "Execute" in d.message


def test_direction_reversed_wire_is_one_error_with_the_fix():
    text = with_line(9, "EXEC n3.Execute -> n2.Completed")
    d = the(text, "direction")
    assert pos(d) == (9, 6, 9, 32)
    assert d.message.endswith("write EXEC n2.Completed -> n3.Execute")
    assert not only(validate(text), "unreachable")  # the intended wire still counts


def test_direction_on_source():
    text = add_lines("NODE n4: PrintString", "EXEC n4.Execute -> n3.Execute")
    found = only(validate(text), "direction")
    assert [pos(d) for d in found] == [(11, 9, 11, 16)]
    assert "source must be an output (PrintString exec outputs: Then)" in found[0].message


def test_direction_on_target():
    text = with_line(9, "EXEC n2.Completed -> n1.Then")
    found = only(validate(text), "direction")
    assert [pos(d) for d in found] == [(9, 25, 9, 29)]


def test_type_suffix_disagrees_with_source():
    text = add_lines("NODE n4: GetActorLocation", "DATA n4.ReturnValue -> n3.InString [Bool]")
    d = the(text, "type-mismatch")
    assert pos(d) == (11, 37, 11, 41)
    assert "Vector" in d.message


def test_type_suffix_cannot_feed_target():
    text = add_lines("NODE n4: Branch", "NODE n5: GetActorLocation", "EXEC n3.Then -> n4.Execute",
                     "DATA n5.ReturnValue -> n4.Condition [Vector]")
    d = the(text, "type-mismatch")
    assert pos(d) == (13, 38, 13, 44)
    assert "Bool" in d.message


def test_autocast_and_subtypes_are_accepted():
    text = add_lines(
        "NODE n4: GetActorLocation", "NODE n5: GetPlayerPawn", "NODE n6: IsValid", "NODE n7: Branch",
        "EXEC n3.Then -> n7.Execute",
        "DATA n4.ReturnValue -> n3.InString [String]",  # Vector -> String conversion
        "DATA n5.ReturnValue -> n6.Input [Object]",  # Actor is an Object
        "DATA n6.ReturnValue -> n7.Condition [Bool]",
    )
    assert [d for d in validate(text) if d.severity == "error"] == []


def test_downcast_is_rejected():
    text = add_lines("NODE n4: Self", "NODE n5: CreateWidget [WidgetClass=WBP_Hud]", "NODE n6: DestroyActor",
                     "EXEC n3.Then -> n5.Execute", "EXEC n5.Then -> n6.Execute",
                     "DATA n5.ReturnValue -> n6.Target [Widget]")
    d = the(text, "type-mismatch")
    assert "Actor" in d.message


def test_var_type_flows_through_variable_get():
    text = add_lines("NODE n4: VariableGet [VarName=Health]", "NODE n5: Branch", "EXEC n3.Then -> n5.Execute",
                     "DATA n4.Value -> n5.Condition [Bool]")
    d = the(text, "type-mismatch")
    assert "Float" in d.message and pos(d) == (13, 32, 13, 36)


def test_multiple_sources_error_and_variadic_warning():
    base = add_lines("NODE n4: GetActorLocation", "NODE n5: GetActorForwardVector", "NODE n6: SetActorLocation",
                     "EXEC n3.Then -> n6.Execute",
                     "DATA n4.ReturnValue -> n6.NewLocation [Vector]",
                     "DATA n5.ReturnValue -> n6.NewLocation [Vector]")
    d = the(base, "multiple-sources")
    assert (d.severity, pos(d)) == ("error", (15, 1, 15, 47))
    variadic = add_lines("NODE n4: GetGameTimeInSeconds", "NODE n5: MultiplyFloat", "NODE n6: PrintString",
                         "EXEC n3.Then -> n6.Execute",
                         "DATA n4.ReturnValue -> n5.A [Float]", "DATA n4.ReturnValue -> n5.B [Float]",
                         "DATA n1.Then -> n5.B [Float]")
    diags = validate(variadic)
    assert only(diags, "kind-mismatch")  # exec pin as data source still an error
    ok = variadic.replace("DATA n1.Then -> n5.B [Float]", "DATA 2.0 -> n5.B [Float]")
    w = the(ok, "variadic-input")
    assert w.severity == "warning" and w.line == 16


def test_unknown_type_warning():
    text = add_lines("NODE n4: GetActorLocation", "DATA n4.ReturnValue -> n3.InString [Vec3]")
    d = the(text, "unknown-type")
    assert (d.severity, pos(d)) == ("warning", (11, 37, 11, 41))


# --------------------------------------------------------------------------- graph warnings

def test_unreachable_impure_and_unused_pure():
    text = add_lines("NODE n4: PrintString", "NODE n5: GetActorLocation")
    found = only(validate(text), "unreachable")
    assert [(d.severity, pos(d)) for d in found] == [("warning", (10, 1, 10, 21)), ("warning", (11, 1, 11, 26))]
    assert "never runs" in found[0].message and "unused" in found[1].message


def test_pure_node_feeding_a_reachable_node_is_reachable():
    text = add_lines("NODE n4: GetActorLocation", "DATA n4.ReturnValue -> n3.InString [String]")
    assert validate(text) == []


def test_unconnected_required_input():
    text = add_lines("NODE n4: Branch", "EXEC n3.Then -> n4.Execute")
    d = the(text, "unconnected-input")
    assert (d.severity, pos(d)) == ("warning", (10, 1, 10, 16))
    assert "Condition" in d.message


def test_exec_fanout():
    text = add_lines("NODE n4: PrintString", "EXEC n1.Then -> n4.Execute")
    d = the(text, "exec-fanout")
    assert (d.severity, pos(d)) == ("warning", (11, 1, 11, 27))
    assert "Sequence" in d.message


def test_duplicate_connection():
    d = the(add_lines("EXEC n2.Completed -> n3.Execute"), "duplicate-connection")
    assert (d.severity, d.line) == ("warning", 10)


# --------------------------------------------------------------------------- corpus quirks (documented warnings)

def test_var_as_pin_quirk_l01_04():
    text = (
        "BLUEPRINT: BP_BranchExample\nPARENT: Actor\n\nVAR IsActive: Bool = true\n\nGRAPH: EventGraph\n\n"
        "NODE n1: Event_BeginPlay\nNODE n2: Branch\nNODE n3: PrintString [InString=\"Active\"]\n"
        "NODE n4: PrintString [InString=\"Inactive\"]\n\nEXEC n1.Then -> n2.Execute\nEXEC n2.True -> n3.Execute\n"
        "EXEC n2.False -> n4.Execute\n\nDATA n1.IsActive -> n2.Condition [Bool]"
    )
    diags = validate(text)
    assert [(d.severity, d.code, pos(d)) for d in diags] == [("warning", "var-as-pin", (17, 9, 17, 17))]
    # a pin that is not a declared variable stays an error
    assert only(validate(text.replace("n1.IsActive", "n1.IsAlive")), "unknown-pin")


def test_pure_exec_quirk():
    text = add_lines("NODE n4: AddFloat [B=1.0]", "EXEC n3.Then -> n4.Execute")
    d = the(text, "pure-exec")
    assert (d.severity, pos(d)) == ("warning", (11, 20, 11, 27))
    assert only(validate(add_lines("NODE n4: AddFloat", "EXEC n3.Then -> n4.Go")), "unknown-pin")


def test_alias_warning_and_silent_alias():
    text = add_lines("NODE n4: CastToPawn", "NODE n5: DestroyActor", "EXEC n3.Then -> n4.Execute",
                     "EXEC n4.CastSucceeded -> n5.Execute", "DATA n1.Then -> n4.Object [Actor]")
    assert only(validate(text), "kind-mismatch")
    text = text.replace("DATA n1.Then -> n4.Object [Actor]", "DATA n4.AsCharacter -> n5.Target [Actor]")
    d = the(text, "alias")
    assert (d.severity, d.line) == ("warning", 14)
    silent = VALID.replace("Event_BeginPlay", "Event_CustomEvent [EventName=Go]")
    assert validate(silent) == []


# --------------------------------------------------------------------------- robustness

def test_never_raises_on_odd_inputs():
    for text in ["", "\ufeff", "\x00\x01", "NODE", "EXEC ->", "DATA n1. -> .x [", "}" * 50, "\r\n" * 5,
                 "GRAPH: EventGraph\n" * 3, "NODE n1: Event_BeginPlay\n" * 3, "é" * 100]:
        diags = validate(text)
        assert all(isinstance(d, Diagnostic) for d in diags)
        assert not only(diags, "internal")


def test_never_raises_with_an_empty_catalog():
    diags = validate(VALID, Catalog({}))
    assert [d.code for d in diags if d.severity == "error"] == ["unknown-node"] * 3
    assert not only(diags, "internal")


def _check_sane(text: str, diags: list[Diagnostic]) -> None:
    assert not only(diags, "internal"), [str(d) for d in diags]
    n_lines = len(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")) + 1
    for d in diags:
        assert d.severity in ("error", "warning", "info")
        assert d.code in CODES or d.code in {e.code for e in parse(text).errors}
        assert 1 <= d.line <= d.end_line <= n_lines + 1
        assert d.column >= 1 and (d.end_line > d.line or d.end_column > d.column)
    assert diags == sorted(diags, key=lambda d: (d.line, d.column))


SEEDS = [VALID, add_lines("NODE n4: Branch", "NODE n5: VariableGet [VarName=Health]", "EXEC n3.Then -> n4.Execute",
                          "DATA n5.Value -> n4.Condition [Float]", "DATA true -> n4.Condition [Bool]")]


def _corpus_seeds() -> list[str]:
    root = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "blueprintllm"
    seeds: list[str] = []
    if not root.is_dir():
        return seeds
    for path in sorted((root / "lessons").glob("*.json"))[:6]:
        seeds += [p["expected_dsl"] for p in json.loads(path.read_text(encoding="utf-8"))["prompts"][:8]]
    auto = (root / "datasets" / "auto_translated.jsonl").read_text(encoding="utf-8").splitlines()
    seeds += [json.loads(line)["output"] for line in auto[::200]]
    return seeds


ALL_SEEDS = SEEDS + _corpus_seeds()
JUNK = string.printable + "→é\ufeff\x00[](){}<>=,.:\"\\-"


def mutate(text: str, rng: random.Random, steps: int) -> str:
    """Delete/duplicate/swap characters and lines, insert junk: the edits an editor or a model makes."""
    for _ in range(steps):
        op = rng.randrange(7)
        if op < 3 and text:
            i = rng.randrange(len(text))
            if op == 0:
                text = text[:i] + text[i + 1:]
            elif op == 1:
                text = text[:i] + text[i] + text[i:]
            elif i + 1 < len(text):
                text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        elif op < 6:
            ls = text.split("\n")
            i = rng.randrange(len(ls))
            if op == 3:
                del ls[i]
            elif op == 4:
                ls.insert(i, ls[i])
            else:
                j = rng.randrange(len(ls))
                ls[i], ls[j] = ls[j], ls[i]
            text = "\n".join(ls)
        else:
            i = rng.randrange(len(text) + 1)
            text = text[:i] + "".join(rng.choice(JUNK) for _ in range(rng.randrange(1, 8))) + text[i:]
    return text


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(ALL_SEEDS), rng_seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 12))
def test_hypothesis_mutated_texts_never_raise(seed: str, rng_seed: int, steps: int):
    text = mutate(seed, random.Random(rng_seed), steps)
    _check_sane(text, validate(text))


_TOKENS = ["BLUEPRINT:", "PARENT:", "GRAPH:", "VAR", "NODE", "EXEC", "DATA", "n1", "n2", "n3", ".", "->", ":", "[", "]",
           "(", ")", "=", ",", "Then", "Execute", "Value", "Condition", "Event_BeginPlay", "Branch", "VariableGet",
           "VarName", "Health", "Float", "Bool", "Array<Vector>", "true", "None", "3.5", "-2", '"s"', "\n", " ", "\t"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=60))
def test_hypothesis_token_soup_never_raises(tokens: list[str]):
    text = " ".join(tokens)
    _check_sane(text, validate(text))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_hypothesis_arbitrary_text_never_raises(text: str):
    diags = validate(text)
    assert not only(diags, "internal")


def test_default_catalog_is_shared():
    assert default_catalog() is default_catalog()


def test_trailing_junk_of_space_like_control_characters_is_shown_and_has_width():
    """Found by hypothesis: junk that str.rstrip() treats as space (\\x0b) gave a zero-width diagnostic."""
    text = "BLUEPRINT: BP_A\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\x0b\nNODE n2: Delay\nEXEC n1.Then -> n2.Execute"
    junk = [d for d in validate(text) if d.code == "trailing-junk"]
    assert len(junk) == 1 and junk[0].line == 4
    assert junk[0].end_column > junk[0].column and "\\x0b" in junk[0].message
