"""The parser's fast path (LALR table replay + shapes memoised by token-type sequence)
gives exactly the Document the pure-Lark path gives: statements, spans and errors.

Compared on generated and mutated texts (hypothesis), on hand-picked lexer corner cases
(keywords where names go, node ids as names, tabs, trailing junk), on the starter data
and on every gold/exam/dataset text of the reference corpus when it is present.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import parser
from dsl.parser import parse, set_fast_path
from engine.workspace.workspace import STARTER_DIR
from tests.conftest import CORPUS, CORPUS_MISSING

FAST_HITS: list[str] = []  # lines the fast path built (it declines some, which then go through Lark)


@pytest.fixture(scope="module", autouse=True)
def fast_path_built():
    """Every comparison here is vacuous unless the fast path exists: both sides would be Lark's."""
    set_fast_path(True)
    fast = parser._fast_path()
    assert fast is not None, "the parser's fast path failed to build (dsl/parser.py _FastPath): nothing to compare"
    real = fast.statement

    def counted(number: int, raw: str):
        stmt = real(number, raw)
        if stmt is not None:
            FAST_HITS.append(raw)
        return stmt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast, "statement", counted)
        yield fast


def both(text: str):
    """(pure-Lark document, fast document, fast document again from learnt shapes)."""
    set_fast_path(False)
    try:
        pure = parse(text)
    finally:
        set_fast_path(True)
    assert parser._fast_path() is not None, "the fast path is off or failed: the comparison would be Lark vs Lark"
    first = parse(text)
    set_fast_path(True)  # forget memoised lines, keep learnt shapes: now every line is a shape hit
    again = parse(text)
    return pure, first, again


def assert_same(text: str) -> None:
    pure, first, again = both(text)
    assert first == pure, f"fast path differs from Lark on:\n{text}"
    assert again == pure, f"memoised shapes differ from Lark on:\n{text}"
    assert [type(s) for s in first.statements] == [type(s) for s in pure.statements]


ident = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    # words the lexer must read by position: keywords, literals and node ids used as names
    st.sampled_from(["true", "false", "None", "n1", "n22", "NODE", "VAR", "DATA", "EXEC", "GRAPH",
                     "BLUEPRINT", "PARENT", "trueish", "Nonesuch", "n1x", "_"]),
)
node_id = st.integers(0, 40).map(lambda i: f"n{i}")
number = st.one_of(st.integers(-1000, 1000).map(str), st.floats(-1e4, 1e4, allow_nan=False).map(lambda f: f"{f:g}"))
string = st.text(st.characters(blacklist_characters='"\\\n\r', blacklist_categories=("Cs",)), max_size=6).map(
    lambda s: f'"{s}"') | st.just('"a \\"b\\" c"')
literal = st.one_of(number, string, st.sampled_from(["true", "false", "None"]))
struct = st.lists(st.tuples(ident, literal | ident), max_size=3).map(
    lambda fs: "(" + ",".join(f"{k}={v}" for k, v in fs) + ")")
value = st.one_of(literal, ident, struct)
type_ = st.recursive(ident, lambda inner: st.tuples(ident, st.lists(inner, min_size=1, max_size=2)).map(
    lambda t: f"{t[0]}<{', '.join(t[1])}>"), max_leaves=3)
space = st.sampled_from(["", " ", "  ", "\t", " \t "])


def spaced(*parts):
    return st.tuples(*(st.tuples(space, p) for p in parts), space).map(
        lambda ps: "".join(s + v for s, v in ps[:-1]) + ps[-1])


statement = st.one_of(
    spaced(st.sampled_from(["BLUEPRINT", "PARENT", "CATEGORY"]), st.just(":"), ident),
    spaced(st.just("VAR"), ident, st.just(":"), type_, st.none().map(lambda _: "") | value.map(lambda v: f"= {v}")),
    spaced(st.just("GRAPH"), st.just(":"), ident),
    spaced(st.just("NODE"), node_id, st.just(":"), ident,
           st.lists(st.tuples(ident, value), max_size=3).map(
               lambda ps: "" if not ps else "[" + ", ".join(f"{k}={v}" for k, v in ps) + "]")),
    spaced(st.just("EXEC"), node_id, st.just("."), ident, st.just("->"), node_id, st.just("."), ident),
    spaced(st.just("DATA"), node_id.map(lambda n: n + ".Value") | literal, st.just("->"), node_id,
           st.just("."), ident, st.just("["), type_, st.just("]")),
)


@st.composite
def mutated(draw, base):
    """A generated line with a character-level change: inserted, deleted or replaced."""
    line = draw(base)
    if not line:
        return line
    i = draw(st.integers(0, len(line)))
    ch = draw(st.sampled_from(list(':.,[]()<>=-"}\\ \tnx9_') + ["->", "\x00", "\u00e9"]))
    op = draw(st.sampled_from(["insert", "delete", "replace"]))
    if op == "insert":
        return line[:i] + ch + line[i:]
    if op == "delete":
        return line[:i] + line[i + 1:]
    return line[:i] + ch + line[i + 1:]


texts = st.lists(st.one_of(statement, mutated(statement), st.just(""), st.just("   ")), max_size=12).map("\n".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_fast_path_matches_lark_on_generated_texts(text):
    assert_same(text)


@pytest.mark.parametrize("text", [
    "NODE n1: NODE [true=true, n2=n3, None=None, VAR=(X=1,Y=-2.5e3)]",
    "VAR true: Array<Map<String, n1>> = None",
    "VAR n1: Int = 5",
    "DATA false -> n5.Value [Bool]",
    'DATA "x" -> n5.Value [String]\nDATA -1.0 -> n17.Value [Float]\nDATA None -> n2.A [Object]',
    "EXEC n1.Then -> n2.Execute }",  # trailing junk: error plus recovered statement, both via Lark
    "NODE\tn1 :\tFoo   \nBLUEPRINT:BP_X\t\nGRAPH : EventGraph",
    "NODE n1: Foo []\nNODE n2: Foo [A=()]",
    "NODE n1: Foo [A=trueish, B=Nonesuch, C=falsey]",
    "NODEn1: Foo\nEXECn1.A->n2.B\nBLUEPRINTS: X\nnode n1: Foo",
    "NODE n1x: Foo\nNODE n1: n2\nEXEC n1 . Then->n2.Execute",
    'NODE n1: Foo [A="unterminated]\nNODE n2: Foo [A=1',
    "\ufeffBLUEPRINT: A\r\nPARENT: Actor\r\n\r\nGRAPH: EventGraph\r\n",
])
def test_fast_path_matches_lark_on_corner_cases(text):
    assert_same(text)


def test_valid_lines_skip_lark(monkeypatch):
    """A valid text is read without calling Lark, a new line of a known shape too, and a
    syntax error still goes through Lark (so its message is Lark's)."""
    lark = parser._lark()
    calls = []
    real = lark.parse
    monkeypatch.setattr(lark, "parse", lambda text, **kw: calls.append(text) or real(text, **kw))
    text = ("BLUEPRINT: BP_A\nPARENT: Actor\nVAR X: Float = 1.5\nGRAPH: EventGraph\n"
            "NODE n1: Event_Tick\nNODE n2: Delay [Duration=2.0]\nEXEC n1.Then -> n2.Execute\n"
            "DATA 2.0 -> n2.Duration [Float]\n")
    parser.clear_cache()
    doc = parse(text)
    assert doc.errors == [] and len(doc.statements) == 8
    assert calls == []
    assert parse("NODE n1: X\nNODE\tn1: Foo [Bar=1.5]  ").errors == []  # known shapes, new tokens
    assert calls == []
    bad = parse("NODE n1 Foo")
    assert bad.errors and bad.errors[0].code == "missing-colon"
    assert calls and calls[0] == "NODE n1 Foo"  # (then its prefix, looking for trailing junk)


def _starter_texts() -> list[str]:
    out = []
    for path in sorted(STARTER_DIR.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict):
            out += [p["expected_dsl"] for p in data.get("prompts", []) if isinstance(p, dict) and "expected_dsl" in p]
    return out


def test_fast_path_matches_lark_on_starter_data():
    texts = _starter_texts()
    assert texts, f"no starter lesson texts found under {STARTER_DIR}"
    parser.clear_cache()
    FAST_HITS.clear()
    for text in texts:
        assert_same(text)
    lines = {line for text in texts for line in parser.normalise(text).split("\n") if line.strip()}
    assert lines <= set(FAST_HITS), f"valid gold lines the fast path did not build: {sorted(lines - set(FAST_HITS))[:3]}"


def _corpus_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(CORPUS.rglob("*.json")) + sorted(CORPUS.rglob("*.jsonl")):
        try:
            raw = path.read_text(encoding="utf-8")
            rows = [json.loads(line) for line in raw.splitlines() if line.strip()] if path.suffix == ".jsonl" \
                else json.loads(raw).get("prompts", [])
        except (ValueError, AttributeError, UnicodeDecodeError):
            continue
        for row in rows:
            if isinstance(row, dict):
                texts += [row[k] for k in ("expected_dsl", "actual_dsl", "output") if isinstance(row.get(k), str)]
    return texts


def test_fast_path_matches_lark_on_every_corpus_text():
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_MISSING)
    texts = _corpus_texts()
    assert len(texts) > 1000, f"expected the corpus's gold, exam and dataset texts, found {len(texts)}"
    set_fast_path(False)
    try:
        pure = [parse(t) for t in texts]
    finally:
        set_fast_path(True)
    parser.clear_cache()  # learn every shape from scratch while reading
    FAST_HITS.clear()
    fast = [parse(t) for t in texts]
    assert len(FAST_HITS) > 1000, f"the fast path built only {len(FAST_HITS)} lines of {len(texts)} texts"
    set_fast_path(True)
    again = [parse(t) for t in texts]
    bad = [i for i, (p, f, a) in enumerate(zip(pure, fast, again)) if not (p == f == a)]
    assert not bad, f"{len(bad)} texts differ, first:\n{texts[bad[0]]}"
