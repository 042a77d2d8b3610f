"""Parse Blueprint DSL text into the typed AST of :mod:`dsl.ast`.

The syntax lives in ``grammar.lark`` alone. Every statement sits on one line, so
the parser runs the grammar's ``line`` rule line by line: one bad line yields one
positioned diagnostic and the rest of the text still parses (error recovery per
line). Parsed lines are memoised by content — exam outputs, lessons and the text
being edited repeat most of their lines — which keeps re-validation cheap.

Cold parsing skips Lark's per-line machinery where it can (see ``_FastPath``): the
grammar's own contextual-lexer regexes and LALR table, read from the loaded Lark
object, are replayed per line and the resulting tree shape is memoised by
token-type sequence, so a never-seen line of a known shape costs a few regex
matches and a handful of constructors. Anything unusual — and every syntax
error — goes through Lark exactly as before.

``parse`` never raises: any input (binary junk included) yields a Document.
"""
from __future__ import annotations

import dataclasses
import logging
import types
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr, UnlessCallback
from lark.parsers.lalr_analysis import Shift

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

# the Blueprint pack's grammar: the parser's AST (dsl.ast) is the shared node-graph statement set
GRAMMAR_PATH = Path(str(resources.files("dsl.packs.blueprint") / "grammar.lark"))

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
            raw = line[junk_col - 1:]
            junk = raw.rstrip() or raw  # junk may be only characters str.rstrip() calls space (\x0b, \x0c)
            shown = junk if len(junk) <= 20 else junk[:17] + "..."
            if not shown.isprintable():
                shown = shown.encode("unicode_escape").decode("ascii")
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
    except Exception:  # noqa: BLE001 - a probe: "no statement here" is the answer, the caller reports the junk
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


# --- fast path ---------------------------------------------------------------------------
#
# Lark's LALR parse is a function of the token types alone, and a line's tree shape is a
# function of the parse. So for a line that lexes the way Lark's contextual lexer would
# lex it, the tree is "the shape for this token-type sequence" filled with this line's
# token values and columns. ``_FastPath`` replays the contextual lexer with the regexes
# Lark compiled for each parser state (fused with the ignored-whitespace run where that
# provably reads the same tokens), walking a trie of token-type prefixes that records
# which state lexes the next token; on a shape it has not seen it runs the
# grammar's LALR table with Lark's own tree callbacks, checks that the compiled builder
# reproduces ``_Builder`` on that tree, and memoises the builder. Lexing or parsing
# trouble of any kind returns None and the line goes through Lark as before, so error
# messages cannot differ. Nothing here restates the grammar.


def _fast_ctor(cls: type) -> Callable[..., Any]:
    """A constructor for a frozen slots dataclass that skips the per-field
    ``object.__setattr__`` calls of its generated ``__init__`` (about twice as fast).
    Falls back to the class itself if it is not a plain frozen slots dataclass."""
    try:
        names = [f.name for f in dataclasses.fields(cls)]
        if hasattr(cls, "__post_init__") or not all(
            isinstance(cls.__dict__.get(n), types.MemberDescriptorType) for n in names
        ):
            return cls
        args = ", ".join(f"a{i}" for i in range(len(names)))
        body = "".join(f"    s{i}(o, a{i})\n" for i in range(len(names)))
        src = f"def make({args}):\n    o = new(cls)\n{body}    return o\n"
        env: dict[str, Any] = {"new": object.__new__, "cls": cls}
        env.update({f"s{i}": cls.__dict__[n].__set__ for i, n in enumerate(names)})
        exec(src, env)  # noqa: S102 - generated from the dataclass's own field list
        make = env["make"]
        sample = tuple(range(len(names)))
        if make(*sample) != cls(*sample):
            return cls
        return make
    except Exception:  # noqa: BLE001 - any surprise: use the class
        return cls


_mkSpan = _fast_ctor(Span)
_mkValue = _fast_ctor(Value)
_mkField = _fast_ctor(Field)
_mkParam = _fast_ctor(Param)
_mkTypeRef = _fast_ctor(TypeRef)
_mkPinRef = _fast_ctor(PinRef)
_mkHeader = _fast_ctor(Header)
_mkVarDecl = _fast_ctor(VarDecl)
_mkGraphDecl = _fast_ctor(GraphDecl)
_mkNodeDecl = _fast_ctor(NodeDecl)
_mkConnection = _fast_ctor(Connection)

_VALUE_KINDS = {"string": "string", "number": "number", "true": "bool", "false": "bool", "none": "none", "ident": "ident"}

# A compiled builder: (line number, line text, token values, token columns) -> AST object.
_Build = Callable[[int, str, list, list], Any]


def _line_span(n: int, raw: str) -> Span:
    """``Span.of_line`` without the dataclass ``__init__``."""
    start = len(raw) - len(raw.lstrip()) + 1
    end = len(raw.rstrip()) + 1
    return _mkSpan(n, start, n, end if end > start + 1 else start + 1)


def _c_tok_span(i: int) -> _Build:
    def build(n, raw, v, c):
        col = c[i]
        return _mkSpan(n, col, n, col + len(v[i]))
    return build


def _c_value(t: Any) -> _Build:
    kind = t.data
    if kind == "struct":
        fields = [_c_field(f) for f in t.children]

        def build_struct(n, raw, v, c):
            built = tuple(f(n, raw, v, c) for f in fields)
            if built:
                span = _mkSpan(n, built[0].span.column - 1, n, built[-1].span.end_column + 1)
            else:
                span = _mkSpan(n, 1, n, 2)
            return _mkValue("struct", "(" + ",".join(f"{f.name}={f.value.raw}" for f in built) + ")", span, built)
        return build_struct
    mapped = _VALUE_KINDS[kind]
    (i,) = t.children
    if not isinstance(i, int):
        raise TypeError("value leaf is not a token")

    def build_value(n, raw, v, c):
        val = v[i]
        col = c[i]
        return _mkValue(mapped, val, _mkSpan(n, col, n, col + len(val)), ())
    return build_value


def _c_field(t: Any) -> _Build:
    i, value_t = t.children
    value = _c_value(value_t)

    def build(n, raw, v, c):
        val = value(n, raw, v, c)
        return _mkField(v[i], val, _mkSpan(n, c[i], n, val.span.end_column))
    return build


def _c_type(t: Any) -> _Build:
    i = t.children[0]
    args = [_c_type(a) for a in t.children[1:]]
    if args:
        def build_generic(n, raw, v, c):
            built = tuple(a(n, raw, v, c) for a in args)
            return _mkTypeRef(v[i], built, _mkSpan(n, c[i], n, built[-1].span.end_column + 1))
        return build_generic

    def build(n, raw, v, c):
        name = v[i]
        col = c[i]
        return _mkTypeRef(name, (), _mkSpan(n, col, n, col + len(name)))
    return build


def _c_pin(t: Any) -> _Build:
    i, j = t.children

    def build(n, raw, v, c):
        node, pin = v[i], v[j]
        ci, cj = c[i], c[j]
        end = cj + len(pin)
        return _mkPinRef(node, pin, _mkSpan(n, ci, n, end), _mkSpan(n, ci, n, ci + len(node)), _mkSpan(n, cj, n, end))
    return build


def _c_statement(t: Any) -> _Build:
    """Compile a statement template (tree whose leaves are token indices), mirroring ``_Builder``."""
    kind = t.data
    ch = t.children
    if kind == "header":
        key, val = ch
        val_span = _c_tok_span(val)
        return lambda n, raw, v, c: _mkHeader(v[key], v[val], _line_span(n, raw), val_span(n, raw, v, c))
    if kind == "var_decl":
        name = ch[0]
        name_span = _c_tok_span(name)
        type_ = _c_type(ch[1])
        default = _c_value(ch[2]) if len(ch) > 2 else None
        return lambda n, raw, v, c: _mkVarDecl(
            v[name], type_(n, raw, v, c), default(n, raw, v, c) if default else None, _line_span(n, raw),
            name_span(n, raw, v, c))
    if kind == "graph_decl":
        (name,) = ch
        name_span = _c_tok_span(name)
        return lambda n, raw, v, c: _mkGraphDecl(v[name], _line_span(n, raw), name_span(n, raw, v, c))
    if kind == "node_decl":
        nid, ntype = ch[0], ch[1]
        params = [(p.children[0], _c_value(p.children[1])) for p in ch[2].children] if len(ch) > 2 else []

        def build_node(n, raw, v, c):
            built = []
            for i, value in params:
                val = value(n, raw, v, c)
                col = c[i]
                name = v[i]
                built.append(_mkParam(name, val, _mkSpan(n, col, n, val.span.end_column),
                                      _mkSpan(n, col, n, col + len(name))))
            ci, ct = c[nid], c[ntype]
            return _mkNodeDecl(v[nid], v[ntype], tuple(built), _line_span(n, raw),
                               _mkSpan(n, ci, n, ci + len(v[nid])), _mkSpan(n, ct, n, ct + len(v[ntype])))
        return build_node
    if kind == "exec_conn":
        src, dst = _c_pin(ch[0]), _c_pin(ch[1])
        return lambda n, raw, v, c: _mkConnection("EXEC", src(n, raw, v, c), dst(n, raw, v, c), None, _line_span(n, raw))
    if kind == "data_conn":
        src = _c_pin(ch[0]) if ch[0].data == "pin_ref" else _c_value(ch[0])
        dst, type_ = _c_pin(ch[1]), _c_type(ch[2])
        return lambda n, raw, v, c: _mkConnection(
            "DATA", src(n, raw, v, c), dst(n, raw, v, c), type_(n, raw, v, c), _line_span(n, raw))
    raise ValueError(f"unknown statement {kind}")


def _first_chars(items: Any) -> tuple[frozenset[str] | None, bool]:
    """(characters a parsed regex can start with — None if unknown —, whether it can match empty).
    Conservative: anything it does not understand is "unknown"."""
    from re import _constants as c  # noqa: PLC0415 - stdlib regex internals, read-only

    first: set[str] = set()
    for op, av in items:
        if op is c.LITERAL:
            chars, nullable = {chr(av)}, False
        elif op is c.IN:
            chars, nullable = set(), False
            for o, a in av:
                if o is c.LITERAL:
                    chars.add(chr(a))
                elif o is c.RANGE and a[1] - a[0] < 512:
                    chars.update(chr(x) for x in range(a[0], a[1] + 1))
                else:
                    return None, False
        elif op is c.BRANCH:
            chars, nullable = set(), False
            for alt in av[1]:
                f, n = _first_chars(alt)
                if f is None:
                    return None, False
                chars |= f
                nullable = nullable or n
        elif op is c.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags:
                return None, False
            f, nullable = _first_chars(sub)
            if f is None:
                return None, False
            chars = set(f)
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            lo, _hi, sub = av
            f, n = _first_chars(sub)
            if f is None:
                return None, False
            chars, nullable = set(f), n or lo == 0
        else:
            return None, False
        first |= chars
        if not nullable:
            return frozenset(first), False
    return frozenset(first), True


def _fused_scanner(terminals: list, ignore: frozenset[str], flags: int, re_module: Any) -> Callable | None:
    """Lark's alternation for one parser state preceded by an atomic run of its ignored
    terminals, when that provably reads exactly what Lark's scanner reads; else None."""
    from re import _parser  # noqa: PLC0415

    if flags or re_module.__name__ != "re":
        return None
    skipped, kept = [t for t in terminals if t.name in ignore], [t for t in terminals if t.name not in ignore]
    if not skipped:
        return None
    try:
        ignore_first: set[str] = set()
        for t in skipped:
            f, nullable = _first_chars(_parser.parse(t.pattern.to_regexp()))
            if f is None or nullable:
                return None
            ignore_first |= f
        for t in kept:
            f, _nullable = _first_chars(_parser.parse(t.pattern.to_regexp()))
            if f is None or f & ignore_first:
                return None
        skip = "|".join(f"(?:{t.pattern.to_regexp()})" for t in skipped)
        alts = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in kept)
        return re_module.compile(f"(?>(?:{skip})*)(?:{alts}|\\Z)").match
    except Exception:  # noqa: BLE001 - cannot prove it: use Lark's regex as is
        return None


class _Node:
    """A trie node: the token types read so far on a line. ``state`` is the LALR state the
    contextual lexer reads the next token in; ``end`` the compiled builder once the
    sequence is known to be a whole statement."""

    __slots__ = ("state", "match", "ignore", "retype", "kids", "end")

    def __init__(self, state: int, lexer: tuple):
        self.state = state
        self.match, self.ignore, self.retype = lexer
        self.kids: dict[str, _Node] = {}
        self.end: _Build | None = None


class _FastPath:
    """Lark's contextual lexer and LALR parser for the ``line`` rule, replayed from the
    tables of the loaded Lark object (see the comment above)."""

    MAX_NODES = 50_000  # bound on memoised prefixes; the trie restarts when it is reached

    def __init__(self, lark: Lark):
        parser = lark.parser.parser.parser
        table = parser.parse_table
        self.states = table.states
        self.start = table.start_states["line"]
        self.end_state = table.end_states["line"]
        self.callbacks = parser.callbacks
        if any(isinstance(k, str) for k in self.callbacks):
            raise TypeError("token callbacks are not replayed")
        self.lexers: dict[int, tuple] = {}
        built: dict[int, tuple] = {}
        for state, basic in lark.parser.lexer.lexers.items():
            if id(basic) not in built:
                built[id(basic)] = self._lexer(basic)
            self.lexers[state] = built[id(basic)]
        self.reset()

    @staticmethod
    def _lexer(basic: Any) -> tuple:
        """(match, ignored types, retype table) of one of Lark's per-state BasicLexers.

        ``match`` is Lark's own scanner regex, or — when no other terminal of the state can
        start with a character an ignored terminal starts with, so skipping ignored text
        first cannot change what Lark would read — the same alternation behind an atomic
        run of the ignored terminals, which reads whitespace and token in one call
        (``lastgroup`` None then means only ignored text was left)."""
        scanner = basic.scanner
        if len(scanner._mres) != 1:
            raise TypeError("split scanner regex")
        retype: dict[str, dict[str, str]] = {}
        for type_, callback in basic.callback.items():
            if not isinstance(callback, UnlessCallback) or type_ in basic.ignore_types:
                raise TypeError(f"unsupported lexer callback for {type_}")
            table: dict[str, str] = {}
            for term in callback.scanner.terminals:
                if not isinstance(term.pattern, PatternStr) or term.pattern.flags:
                    raise TypeError(f"unsupported keyword terminal {term.name}")
                table.setdefault(term.pattern.value, term.name)
            retype[type_] = table
        ignore = frozenset(basic.ignore_types)
        match = scanner._mres[0].match
        fused = _fused_scanner(scanner.terminals, ignore, scanner.g_regex_flags, scanner.re_)
        if fused is not None:
            match = fused
        return match, ignore, retype

    def reset(self) -> None:
        self.root = _Node(self.start, self.lexers[self.start])
        self.size = 1

    def statement(self, number: int, raw: str) -> Any:
        """The statement on non-blank line ``raw``, or None when Lark should decide."""
        node = self.root
        pos, n = 0, len(raw)
        vals: list[str] = []
        cols: list[int] = []
        while pos < n:
            m = node.match(raw, pos)
            if m is None:
                return None
            type_ = m.lastgroup
            if type_ is None:  # only ignored text was left
                break
            start, end = m.span(type_)
            if type_ in node.ignore:
                pos = end
                continue
            value = raw[start:end]
            if node.retype:
                table = node.retype.get(type_)
                if table:
                    type_ = table.get(value, type_)
            vals.append(value)
            cols.append(start + 1)
            pos = end
            kid = node.kids.get(type_)
            if kid is None:
                return self._learn(number, raw)
            node = kid
        build = node.end
        if build is None:
            return self._learn(number, raw)
        return build(number, raw, vals, cols)

    def _learn(self, number: int, raw: str) -> Any:
        """Lex and parse ``raw`` with the tables, memoise its shape, and build it."""
        states, callbacks = self.states, self.callbacks
        stack = [self.start]
        values: list[Any] = []
        tokens: list[Token] = []
        path: list[tuple[str, int]] = []  # (token type, state it was lexed in)
        pos, n = 0, len(raw)

        def feed(token: Token, is_end: bool) -> Any:
            while True:
                action, arg = states[stack[-1]].get(token.type, (None, None))
                if action is None:
                    raise LookupError
                if action is Shift:
                    if is_end:
                        raise LookupError
                    stack.append(arg)
                    values.append(token)
                    return None
                size = len(arg.expansion)
                args = values[-size:] if size else []
                if size:
                    del stack[-size:]
                    del values[-size:]
                value = callbacks[arg](args)
                goto, new_state = states[stack[-1]][arg.origin.name]
                if goto is not Shift:
                    raise LookupError
                stack.append(new_state)
                values.append(value)
                if is_end and new_state == self.end_state:
                    return value

        try:
            while pos < n:
                state = stack[-1]
                match, ignore, retype = self.lexers[state]
                m = match(raw, pos)
                if m is None:
                    return None
                type_ = m.lastgroup
                if type_ is None:  # only ignored text was left
                    break
                start, end = m.span(type_)
                if type_ in ignore:
                    pos = end
                    continue
                value = raw[start:end]
                type_ = retype.get(type_, {}).get(value, type_)
                token = Token(type_, value, start, 1, start + 1, 1, end + 1, end)
                tokens.append(token)
                path.append((type_, state))
                pos = end
                feed(token, False)
            final_state = stack[-1]
            last = tokens[-1] if tokens else None
            end_token = Token.new_borrow_pos("$END", "", last) if last else Token("$END", "", 0, 1, 1)
            tree = feed(end_token, True)
        except (LookupError, KeyError, TypeError, ValueError):
            return None
        if not isinstance(tree, Tree) or len(tree.children) != 1:
            return None
        stmt_tree = tree.children[0]
        index = {id(tok): i for i, tok in enumerate(tokens)}
        try:
            template = self._template(stmt_tree, index)
            build = _c_statement(template)
            expected = _Builder(number).statement(stmt_tree, raw)
            got = build(number, raw, [t.value for t in tokens], [t.column for t in tokens])
        except Exception:  # noqa: BLE001 - let Lark and _Builder handle it
            return None
        if got != expected or type(got) is not type(expected):
            return None
        self._remember(path, final_state, build)
        return got

    @staticmethod
    def _template(tree: Any, index: dict[int, int]) -> Any:
        """``tree`` with each token replaced by its position in the line's token list."""
        if isinstance(tree, Token):
            return index[id(tree)]
        if not isinstance(tree, Tree):
            raise TypeError(f"unexpected tree element {tree!r}")
        return Tree(tree.data, [_FastPath._template(ch, index) for ch in tree.children])

    def _remember(self, path: list[tuple[str, int]], final_state: int, build: _Build) -> None:
        if self.size + len(path) > self.MAX_NODES:
            self.reset()
        node = self.root
        for i, (type_, state) in enumerate(path):
            if node.state != state:  # cannot happen for a deterministic parser; be safe
                return
            kid = node.kids.get(type_)
            next_state = path[i + 1][1] if i + 1 < len(path) else final_state
            if kid is None:
                kid = node.kids[type_] = _Node(next_state, self.lexers[next_state])
                self.size += 1
            elif kid.state != next_state:
                return
            node = kid
        node.end = build


_fast: _FastPath | None = None
_fast_enabled = True  # set_fast_path(False) forces the pure-Lark path
_fast_failed: str | None = None  # why the loaded Lark object's layout defeats the fast path (said once)
_log = logging.getLogger(__name__)


def _fast_path() -> _FastPath | None:
    global _fast, _fast_failed
    if not _fast_enabled or _fast_failed:
        return None
    if _fast is None:
        try:
            _fast = _FastPath(_lark())
        except Exception as exc:  # noqa: BLE001 - parse with Lark alone (slower, same results), and say so once
            _fast_failed = f"{type(exc).__name__}: {exc}"
            _log.warning("dsl parser: the table-replay fast path is off for this process (%s); parsing with "
                         "Lark alone, which is slower but gives the same results", _fast_failed)
    return _fast


def fast_path_problem() -> str | None:
    """Why the fast path could not be built in this process (None: it was built, or not tried yet)."""
    return _fast_failed


def set_fast_path(enabled: bool) -> bool:
    """Turn the table-replay fast path on or off and forget memoised lines; learnt line
    shapes are kept, so switching back exercises the memoised shapes. Returns the old
    setting (tests compare both paths)."""
    global _fast_enabled
    previous = _fast_enabled
    _fast_enabled = bool(enabled)
    _parse_line.cache_clear()
    _build_line.cache_clear()
    return previous


@lru_cache(maxsize=65536)
def _build_line(number: int, raw: str) -> tuple[Diagnostic | None, object | None] | None:
    """(syntax error, statement) of line ``number``; memoised because AST nodes are immutable."""
    fast = _fast_path()
    if fast is not None and raw.strip() and "\x00" not in raw:
        try:
            stmt = fast.statement(number, raw)
        except Exception:  # noqa: BLE001 - never trust the fast path over Lark
            stmt = None
        if stmt is not None:
            return None, stmt
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
    if _fast is not None:
        _fast.reset()  # shapes too: "cold" means nothing learnt from earlier texts
