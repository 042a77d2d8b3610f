"""Parser: typed AST with spans, all errors per text, never raises."""
from __future__ import annotations

import llguidance
import pytest

from dsl.ast import Connection, NodeDecl, PinRef, Value
from dsl.parser import grammar_text, parse

GOOD = """BLUEPRINT: BP_Door
PARENT: Actor
CATEGORY: Gameplay

VAR IsOpen: Bool = false
VAR Points: Array<Vector>

GRAPH: EventGraph

NODE n1: Event_BeginPlay
NODE n2: SetActorLocation [NewLocation=(X=0,Y=0,Z=1000), bSweep=true, Label="a \\"b\\""]
EXEC n1.Then -> n2.Execute
DATA false -> n2.bSweep [Bool]
DATA n1.Out -> n2.In [Array<Vector>]
"""


def test_grammar_loads_in_llguidance():
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
        llguidance.grammar_from("lark", grammar_text())
    )
    assert not is_error, messages


def test_typed_ast_with_spans():
    doc = parse(GOOD)
    assert doc.errors == []
    assert doc.header("BLUEPRINT") == "BP_Door" and doc.header("CATEGORY") == "Gameplay"
    assert [v.name for v in doc.vars] == ["IsOpen", "Points"]
    assert str(doc.vars[1].type) == "Array<Vector>"
    assert doc.vars[0].default is not None and doc.vars[0].default.python is False
    n2 = doc.nodes[1]
    assert isinstance(n2, NodeDecl) and n2.type == "SetActorLocation"
    assert (n2.type_span.line, n2.type_span.column, n2.type_span.end_column) == (11, 10, 26)
    loc = n2.param("NewLocation")
    assert loc is not None and loc.value.python == {"X": 0, "Y": 0, "Z": 1000}
    assert n2.param("Label").value.python == 'a "b"'
    lit = doc.connections[1]
    assert isinstance(lit, Connection) and isinstance(lit.source, Value) and lit.source.python is False
    assert isinstance(doc.connections[0].source, PinRef)
    assert doc.connections[0].source.pin_span.column == 9
    assert str(doc.connections[2].type) == "Array<Vector>"


def test_crlf_bom_tabs_trailing_spaces():
    text = "\ufeff" + GOOD.replace("\n", "  \r\n").replace("NODE n1:", "NODE\tn1 :\t")
    doc = parse(text)
    assert doc.errors == []
    assert len(doc.nodes) == 2 and len(doc.connections) == 3


@pytest.mark.parametrize(
    "line, code, column",
    [
        ("NODE n3 PrintString", "missing-colon", 9),
        ('NODE n3: PrintString [InString="abc]', "unterminated-string", 32),
        ("EXEC n1.Then -> n2.Execute }", "trailing-junk", 28),
        ("FOO bar", "unknown-directive", 1),
        ("DATA n1.A -> n2.B", "incomplete", 17),
        ("NODE n3: X [A=]", "syntax", 15),
        ("GRAPH EventGraph", "missing-colon", 7),
    ],
)
def test_each_syntax_error_is_positioned(line, code, column):
    doc = parse(GOOD + line + "\n")
    assert len(doc.errors) == 1, doc.errors
    err = doc.errors[0]
    assert (err.line, err.code, err.column) == (GOOD.count("\n") + 1, code, column)
    assert err.severity == "error" and err.message


def test_all_errors_reported_and_rest_still_parses():
    text = "BLUEPRINT: A\nPARENT Actor\nGRAPH: EventGraph\nNODE n1 X\nNODE n2: Y\nEXEC n2.Then -> n1.Execute }}\n"
    doc = parse(text)
    assert [e.line for e in doc.errors] == [2, 4, 6]
    assert [n.id for n in doc.nodes] == ["n2"]
    assert len(doc.connections) == 1  # recovered from before the trailing junk


def test_junk_never_raises():
    for junk in ["", "\x00\x01", "}}}}", "NODE", "DATA -> ->", "\r\r\n\n", "BLUEPRINT: " + "A" * 5000, "é" * 10]:
        parse(junk)
