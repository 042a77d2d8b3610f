"""Property tests: no exception escapes the parser, validator, formatter or scorer.

Two sources of input, 1,200 examples each (2,400 in all): texts generated from
the grammar's statement shapes, and real gold texts mutated at the character and
line level. Invariants: positions stay inside the text, formatting is idempotent
and graph-preserving whenever the text parses.
"""
from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.formatter import FormatError, format_dsl
from dsl.parser import parse
from dsl.scorer import score
from tests.conftest import CORPUS

try:
    from dsl.validator import validate
except ImportError:  # pragma: no cover - validator lands with the catalog
    validate = None

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEED_TEXTS = [
    'BLUEPRINT: BP_A\nPARENT: Actor\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\nNODE n2: PrintString [InString="Hi"]\n'
    "EXEC n1.Then -> n2.Execute\n",
    "BLUEPRINT: BP_B\nPARENT: Actor\nVAR X: Float = 1.5\nGRAPH: EventGraph\nNODE n1: Event_Tick\nNODE n2: Branch\n"
    "NODE n3: Delay [Duration=2.0]\nEXEC n1.Then -> n2.Execute\nEXEC n2.True -> n3.Execute\nDATA true -> n2.Condition [Bool]\n",
]
if (CORPUS / "lessons").is_dir():
    for path in sorted((CORPUS / "lessons").glob("lesson_*.json"))[:6]:
        SEED_TEXTS += [p["expected_dsl"] for p in json.loads(Path(path).read_text(encoding="utf-8"))["prompts"][:5]]

ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
node_id = st.integers(1, 12).map(lambda i: f"n{i}")
literal = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda f: f"{f:.2f}"),
    st.sampled_from(["true", "false", "None"]),
    st.text(st.characters(blacklist_characters='"\\\n\r', blacklist_categories=("Cs",)), max_size=8).map(lambda s: f'"{s}"'),
)
value = st.one_of(literal, ident, st.lists(st.tuples(ident, literal), max_size=3).map(
    lambda fs: "(" + ",".join(f"{k}={v}" for k, v in fs) + ")"))
type_ = st.one_of(ident, ident.map(lambda t: f"Array<{t}>"))
statement = st.one_of(
    st.tuples(st.sampled_from(["BLUEPRINT", "PARENT", "CATEGORY"]), ident).map(lambda t: f"{t[0]}: {t[1]}"),
    st.tuples(ident, type_, st.none() | literal).map(lambda t: f"VAR {t[0]}: {t[1]}" + (f" = {t[2]}" if t[2] else "")),
    st.just("GRAPH: EventGraph"),
    st.tuples(node_id, ident, st.lists(st.tuples(ident, value), max_size=3)).map(
        lambda t: f"NODE {t[0]}: {t[1]}" + (" [" + ", ".join(f"{k}={v}" for k, v in t[2]) + "]" if t[2] else "")),
    st.tuples(node_id, ident, node_id, ident).map(lambda t: f"EXEC {t[0]}.{t[1]} -> {t[2]}.{t[3]}"),
    st.tuples(node_id | literal, ident, node_id, ident, type_).map(
        lambda t: f"DATA {t[0]}{'.' + t[1] if t[0].startswith('n') and t[0][1:].isdigit() else ''} -> {t[2]}.{t[3]} [{t[4]}]"),
)
generated = st.lists(statement, max_size=25).map("\n".join)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEED_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["del", "dup", "swap", "insert", "line_del", "line_dup", "crlf"]))
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        if op == "del":
            text = text[:i] + text[i + 1:]
        elif op == "dup":
            text = text[:i] + text[i] + text[i:]
        elif op == "swap" and i + 1 < len(text):
            text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        elif op == "insert":
            junk = draw(st.sampled_from(["}", "{", '"', "\t", "->", "[", "]", "\x00", "é", "\ufeff", "=", ".", "  "]))
            text = text[:i] + junk + text[i:]
        else:
            lines = text.split("\n")
            k = draw(st.integers(0, len(lines) - 1))
            if op == "line_del":
                del lines[k]
            elif op == "line_dup":
                lines.insert(k, lines[k])
            else:
                lines[k] += "\r"
            text = "\n".join(lines)
    return text


def _check(text: str) -> None:
    doc = parse(text)
    n_lines = doc.text.count("\n") + 1
    diags = list(doc.errors)
    if validate is not None:
        diags = validate(text)
    for d in diags:
        assert 1 <= d.line <= d.end_line <= n_lines and d.column >= 1, d
        assert d.severity in ("error", "warning", "info") and d.code and d.message
    try:
        canon = format_dsl(doc)
    except FormatError:
        assert doc.errors
    else:
        assert format_dsl(canon) == canon
        declared = {n.id for n in doc.nodes}
        dangling = any(
            ref.node not in declared
            for c in doc.connections
            for ref in (c.source, c.target)
            if hasattr(ref, "node")
        )
        duplicated = len(declared) != len(doc.nodes)
        if not dangling and not duplicated:
            assert score(text, canon).score == 1.0
    reference = SEED_TEXTS[0]
    for a, b in ((reference, text), (text, reference)):
        result = score(a, b)
        assert 0.0 <= result.score <= 1.0 and 0.0 <= result.line_score <= 1.0


@FUZZ
@given(generated)
def test_generated_texts(text):
    _check(text)


@FUZZ
@given(mutated())
def test_mutated_gold_texts(text):
    _check(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode(text):
    _check(text)
