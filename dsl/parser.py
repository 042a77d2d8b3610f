"""Parse Blueprint DSL text into the typed AST of :mod:`dsl.ast`.

The syntax lives in ``grammar.lark`` alone. Every statement sits on one line, so
the parser runs the grammar's ``line`` rule line by line: one bad line yields one
positioned diagnostic and the rest of the text still parses (error recovery per
line). Parsed lines are memoised by content — exam outputs, lessons and the text
being edited repeat most of their lines — which keeps re-validation cheap.

``parse`` never raises: any input (binary junk included) yields a Document.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .ast import (
    Connection,
    Diagnostic,
    Document,
    Field,
    GraphDecl,
    Header,
    NodeDecl,
    Param,
    PinRef,
    Span,
    TypeRef,
    Value,
    VarDecl,
)

GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")

DIRECTIVES = ("BLUEPRINT:", "PARENT:", "CATEGORY:", "VAR", "GRAPH:", "NODE", "EXEC", "DATA")

# How terminals read in messages.
_TERMINAL_NAMES = {
    "HEADER_KEY": "BLUEPRINT/PARENT/CATEGORY",
    "IDENT": "a name",
    "NODE_ID": "a node id like n1",
    "NUMBER": "a number",
    "STRING": 'a "quoted string"',
    "TRUE": "true",
    "FALSE": "false",
    "NONE": "None",
    "COLON": "':'",
    "COMMA": "','",
    "DOT": "'.'",
    "EQUAL": "'='",
    "LSQB": "'['",
    "RSQB": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LESSTHAN": "'<'",
    "MORETHAN": "'>'",
    "__ANON_0": "'->'",
    "_NL": "end of line",
    "$END": "end of line",
    "VAR": "VAR",
    "GRAPH": "GRAPH",
    "NODE": "NODE",
    "EXEC": "EXEC",
    "DATA": "DATA",
}


@lru_cache(maxsize=1)
def grammar_text() -> str:
    """The grammar source, shared with the constrained decoder."""
    return GRAMMAR_PATH.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        start=["start", "line"],
        maybe_placeholders=False,
    )


def normalise(text: str) -> str:
    """Strip a BOM and turn CRLF / CR line ends into LF."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


class _LineError:
    """A syntax error on one line; ``recovered`` holds the statement before trailing junk."""

    __slots__ = ("column", "end_column", "code", "message", "recovered")

    def __init__(self, column: int, end_column: int, code: str, message: str, recovered: Tree | None = None):
        self.column, self.end_column, self.code, self.message = column, end_column, code, message
        self.recovered = recovered


@lru_cache(maxsize=65536)
def _parse_line(line: str) -> Tree | _LineError | None:
    """One line → its statement tree (columns 1-based), a syntax error, or None if blank."""
    if not line.strip():
        return None
    if "\x00" in line:
        col = line.index("\x00") + 1
        return _LineError(col, col + 1, "syntax", "NUL character in text; remove it")
    try:
        tree = _lark().parse(line, start="line")
    except UnexpectedInput as exc:
        return _describe_error(line, exc)
    except Exception as exc:  # noqa: BLE001 - parse must never raise
        return _LineError(1, max(2, len(line.rstrip()) + 1), "syntax", f"cannot parse line: {exc}")
    return tree.children[0] if tree.children else None


def _expected_text(expected: Any) -> str:
    names = sorted({_TERMINAL_NAMES.get(t, t.lower() if t.isupper() else t) for t in expected or ()})
    if not names:
        return ""
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _describe_error(line: str, exc: UnexpectedInput) -> _LineError:
    first_word = line.split(None, 1)[0] if line.strip() else ""
    lead = len(line) - len(line.lstrip()) + 1
    keyword = first_word.rstrip(":")
    if keyword not in ("BLUEPRINT", "PARENT", "CATEGORY", "VAR", "GRAPH", "NODE", "EXEC", "DATA"):
        word_end = lead + len(first_word)
        shown = first_word if len(first_word) <= 40 else first_word[:37] + "..."
        return _LineError(
            lead,
            max(lead + 1, word_end),
            "unknown-directive",
            f"unknown directive '{shown}'; a line starts with one of: {', '.join(DIRECTIVES)}",
        )
    junk_col = getattr(exc, "column", None)
    if isinstance(junk_col, int) and junk_col > 1:
        prefix = _complete_statement(line[: junk_col - 1])
        if prefix is not None:
            junk = line[junk_col - 1:].rstrip()
            shown = junk if len(junk) <= 20 else junk[:17] + "..."
            return _LineError(junk_col, junk_col + len(junk), "trailing-junk",
                              f"unexpected '{shown}' after a complete statement; remove it", recovered=prefix)
    if isinstance(exc, UnexpectedCharacters):
        col = exc.column
        ch = line[col - 1] if 0 < col <= len(line) else ""
        if ch == '"':
            return _LineError(col, len(line.rstrip()) + 1, "unterminated-string",
                              'unterminated string; close it with a matching "')
        expected = _expected_text(exc.allowed)
        shown = repr(ch) if ch else "end of line"
        return _LineError(col, col + 1, "syntax",
                          f"unexpected character {shown}" + (f"; expected {expected}" if expected else ""))
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        expected = _expected_text(exc.expected)
        if tok.type == "$END":
            end = len(line.rstrip()) + 1
            return _LineError(max(1, end - 1), end, "incomplete",
                              f"line ends too early; expected {expected}" if expected else "line ends too early")
        col = tok.column or 1
        end = col + max(1, len(str(tok)))
        if expected == "':'":
            return _LineError(col, end, "missing-colon", f"missing ':' before '{tok}'")
        return _LineError(col, end, "syntax", f"unexpected '{tok}'" + (f"; expected {expected}" if expected else ""))
    if isinstance(exc, UnexpectedEOF):
        end = len(line.rstrip()) + 1
        return _LineError(max(1, end - 1), end, "incomplete", "line ends too early")
    return _LineError(1, len(line.rstrip()) + 1, "syntax", str(exc).splitlines()[0])


def _complete_statement(prefix: str) -> Tree | None:
    """The statement ``prefix`` forms on its own, if any (so what follows it is junk)."""
    if not prefix.strip():
        return None
    try:
        tree = _lark().parse(prefix, start="line")
    except Exception:  # noqa: BLE001
        return None
    return tree.children[0] if tree.children else None


def _tok_span(tok: Token, line: int) -> Span:
    col = tok.column or 1
    return Span(line, col, line, col + len(tok.value))


def _join(a: Span, b: Span) -> Span:
    return Span(a.line, a.column, b.end_line, b.end_column)


class _Builder:
    """Turns one line's statement tree into AST objects with that line's number."""

    __slots__ = ("line",)

    def __init__(self, line: int):
        self.line = line

    def value(self, tree: Tree) -> Value:
        kind = tree.data
        if kind == "struct":
            fields = tuple(self.field(f) for f in tree.children)
            if fields:
                inner = _join(fields[0].span, fields[-1].span)
                span = Span(self.line, inner.column - 1, self.line, inner.end_column + 1)
            else:
                span = Span(self.line, 1, self.line, 2)
            raw = "(" + ",".join(f"{f.name}={f.value.raw}" for f in fields) + ")"
            return Value("struct", raw, span, fields)
        tok = tree.children[0]
        mapped = {"string": "string", "number": "number", "true": "bool", "false": "bool", "none": "none", "ident": "ident"}
        return Value(mapped[kind], tok.value, _tok_span(tok, self.line))  # type: ignore[arg-type]

    def field(self, tree: Tree) -> Field:
        name_tok, value_tree = tree.children
        value = self.value(value_tree)
        return Field(name_tok.value, value, _join(_tok_span(name_tok, self.line), value.span))

    def type_ref(self, tree: Tree) -> TypeRef:
        name_tok = tree.children[0]
        args = tuple(self.type_ref(t) for t in tree.children[1:])
        span = _tok_span(name_tok, self.line)
        if args:
            span = Span(self.line, span.column, self.line, args[-1].span.end_column + 1)
        return TypeRef(name_tok.value, args, span)

    def pin_ref(self, tree: Tree) -> PinRef:
        node_tok, pin_tok = tree.children
        node_span, pin_span = _tok_span(node_tok, self.line), _tok_span(pin_tok, self.line)
        return PinRef(node_tok.value, pin_tok.value, _join(node_span, pin_span), node_span, pin_span)

    def statement(self, tree: Tree, text: str):
        span = Span.of_line(self.line, text)
        kind = tree.data
        ch = tree.children
        if kind == "header":
            return Header(ch[0].value, ch[1].value, span, _tok_span(ch[1], self.line))
        if kind == "var_decl":
            default = self.value(ch[2]) if len(ch) > 2 else None
            return VarDecl(ch[0].value, self.type_ref(ch[1]), default, span, _tok_span(ch[0], self.line))
        if kind == "graph_decl":
            return GraphDecl(ch[0].value, span, _tok_span(ch[0], self.line))
        if kind == "node_decl":
            params: tuple[Param, ...] = ()
            if len(ch) > 2:
                built = []
                for p in ch[2].children:
                    name_tok, value_tree = p.children
                    value = self.value(value_tree)
                    name_span = _tok_span(name_tok, self.line)
                    built.append(Param(name_tok.value, value, _join(name_span, value.span), name_span))
                params = tuple(built)
            return NodeDecl(ch[0].value, ch[1].value, params, span, _tok_span(ch[0], self.line), _tok_span(ch[1], self.line))
        if kind == "exec_conn":
            return Connection("EXEC", self.pin_ref(ch[0]), self.pin_ref(ch[1]), None, span)
        if kind == "data_conn":
            source = self.pin_ref(ch[0]) if ch[0].data == "pin_ref" else self.value(ch[0])
            return Connection("DATA", source, self.pin_ref(ch[1]), self.type_ref(ch[2]), span)
        raise ValueError(f"unknown statement {kind}")


@lru_cache(maxsize=65536)
def _build_line(number: int, raw: str) -> tuple[Diagnostic | None, object | None] | None:
    """(syntax error, statement) of line ``number``; memoised because AST nodes are immutable."""
    result = _parse_line(raw)
    if result is None:
        return None
    error = None
    if isinstance(result, _LineError):
        error = Diagnostic(number, result.column, number, result.end_column, "error", result.code, result.message)
        if result.recovered is None:
            return error, None
        result = result.recovered
    try:
        return error, _Builder(number).statement(result, raw)
    except Exception as exc:  # noqa: BLE001 - a grammar/builder mismatch must not crash callers
        span = Span.of_line(number, raw)
        return Diagnostic.at(span, "error", "syntax", f"cannot read statement: {exc}"), None


def parse(text: str) -> Document:
    """Parse a whole text; syntax problems land in ``Document.errors`` (never raises)."""
    if not isinstance(text, str):
        text = str(text)
    text = normalise(text)
    doc = Document(text=text)
    for number, raw in enumerate(text.split("\n"), start=1):
        built = _build_line(number, raw)
        if built is None:
            continue
        error, stmt = built
        if error is not None:
            doc.errors.append(error)
        if stmt is None:
            continue
        doc.statements.append(stmt)
        if isinstance(stmt, Header):
            doc.headers.append(stmt)
        elif isinstance(stmt, VarDecl):
            doc.vars.append(stmt)
        elif isinstance(stmt, GraphDecl):
            doc.graphs.append(stmt)
        elif isinstance(stmt, NodeDecl):
            doc.nodes.append(stmt)
        else:
            doc.connections.append(stmt)
    return doc


def clear_cache() -> None:
    """Forget memoised lines (benchmarks measure cold parsing with this)."""
    _parse_line.cache_clear()
    _build_line.cache_clear()
