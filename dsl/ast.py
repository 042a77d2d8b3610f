"""Typed syntax tree of a Blueprint DSL text.

Every element carries a :class:`Span` with 1-based line and column numbers
(``end_column`` is exclusive), so diagnostics, the lesson editor's underlines and
the exam diff view can all point at the exact spot in the original text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Span:
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def of_line(cls, line: int, text: str) -> "Span":
        """The whole visible content of one line (at least one column wide)."""
        stripped = text.rstrip()
        start = len(text) - len(text.lstrip()) + 1
        return cls(line, start, line, max(start + 1, len(stripped) + 1))


@dataclass(frozen=True, slots=True)
class Diagnostic:
    line: int
    column: int
    end_line: int
    end_column: int
    severity: Severity
    code: str
    message: str

    @classmethod
    def at(cls, span: Span, severity: Severity, code: str, message: str) -> "Diagnostic":
        return cls(span.line, span.column, span.end_line, span.end_column, severity, code, message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.severity} [{self.code}] {self.message}"


ValueKind = Literal["string", "number", "bool", "none", "ident", "struct"]


@dataclass(frozen=True, slots=True)
class Value:
    """A literal or bare identifier; structs hold one level of ``(K=V, ...)`` fields."""

    kind: ValueKind
    raw: str  # as written (strings keep their quotes)
    span: Span
    fields: tuple["Field", ...] = ()

    @property
    def python(self) -> Any:
        """The value as Python data: str, int/float, bool, None, or dict for structs."""
        if self.kind == "string":
            return _unquote(self.raw)
        if self.kind == "number":
            try:
                return int(self.raw)
            except ValueError:
                return float(self.raw)
        if self.kind == "bool":
            return self.raw == "true"
        if self.kind == "none":
            return None
        if self.kind == "struct":
            return {f.name: f.value.python for f in self.fields}
        return self.raw

    def canonical(self) -> str:
        """Normalised spelling used by the formatter and the scorer (3.0 == 3, spacing-free)."""
        if self.kind == "number":
            number = self.python
            if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
                return str(int(number))
            return repr(number) if isinstance(number, float) else str(number)
        if self.kind == "struct":
            return "(" + ",".join(f"{f.name}={f.value.canonical()}" for f in self.fields) + ")"
        if self.kind == "string":
            return quote(self.python)
        return self.raw


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    value: Value
    span: Span


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    value: Value
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Header:
    key: str  # BLUEPRINT | PARENT | CATEGORY
    value: str
    span: Span
    value_span: Span


@dataclass(frozen=True, slots=True)
class TypeRef:
    name: str
    args: tuple["TypeRef", ...]
    span: Span

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}<{', '.join(str(a) for a in self.args)}>"


@dataclass(frozen=True, slots=True)
class VarDecl:
    name: str
    type: TypeRef
    default: Value | None
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class GraphDecl:
    name: str
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class NodeDecl:
    id: str
    type: str
    params: tuple[Param, ...]
    span: Span
    id_span: Span
    type_span: Span

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True, slots=True)
class PinRef:
    node: str
    pin: str
    span: Span
    node_span: Span
    pin_span: Span

    def __str__(self) -> str:
        return f"{self.node}.{self.pin}"


@dataclass(frozen=True, slots=True)
class Connection:
    """An ``EXEC`` or ``DATA`` wire. A DATA source may be a literal instead of a pin."""

    kind: Literal["EXEC", "DATA"]
    source: PinRef | Value
    target: PinRef
    type: TypeRef | None  # DATA only
    span: Span

    @property
    def source_is_literal(self) -> bool:
        return isinstance(self.source, Value)


Statement = Header | VarDecl | GraphDecl | NodeDecl | Connection


@dataclass(slots=True)
class Document:
    """A parsed text: what did parse, plus the syntax errors of what did not."""

    text: str  # normalised (no BOM, "\n" line ends)
    headers: list[Header] = field(default_factory=list)
    vars: list[VarDecl] = field(default_factory=list)
    graphs: list[GraphDecl] = field(default_factory=list)
    nodes: list[NodeDecl] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    # statement order as written, each with its line number
    statements: list[Statement] = field(default_factory=list)

    def header(self, key: str) -> str | None:
        for h in self.headers:
            if h.key == key:
                return h.value
        return None

    @property
    def name(self) -> str | None:
        return self.header("BLUEPRINT")

    @property
    def execs(self) -> list[Connection]:
        return [c for c in self.connections if c.kind == "EXEC"]

    @property
    def datas(self) -> list[Connection]:
        return [c for c in self.connections if c.kind == "DATA"]

    def node_map(self) -> dict[str, NodeDecl]:
        """First declaration wins (duplicates are a validator error)."""
        result: dict[str, NodeDecl] = {}
        for n in self.nodes:
            result.setdefault(n.id, n)
        return result

    def iter_lines(self) -> Iterator[tuple[int, str]]:
        for i, line in enumerate(self.text.split("\n"), start=1):
            yield i, line


def _unquote(raw: str) -> str:
    body = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if "\\" not in body:
        return body
    out = []
    it = iter(body)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


def quote(text: str) -> str:
    """Inverse of :func:`_unquote`: a DSL string literal for ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
