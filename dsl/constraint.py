"""Catalog-aware constraint: which continuations of a DSL text can still be valid.

The grammar (``dsl/packs/blueprint/grammar.lark``, run by llguidance in the engine) guarantees syntax. This
module adds the validator's rules that are decidable from a prefix, language-neutrally from
the catalog: node types the catalog knows, ids declared once, params a type has (at most once,
with a value of their type), wires between declared ids on pins their types have, from an
output to an input of the right kind, with a ``[Type]`` the validator accepts, and headers and
sections in order.

Two levels of check, both pure Python (no torch):

* **lexemes** — while a line is being written, each identifier is checked against the finite
  set it must come from (a prefix of one while open, a member once closed), so a row cannot
  wander into a line that has no valid ending;
* **lines** — when a line ends, the real validator (``dsl.validator.validate``) runs on the text
  so far, and the line is refused if it brings an error the constraint prevents. Whole-text
  rules (a GRAPH, a node, an event, wires) are checked when the text would end.

The validator is the oracle, so "the constraint allows it" can never drift from "the validator
accepts it" for the rules listed in :data:`PREVENTED`. What the catalog cannot decide (warnings,
an answer cut off by a token cap) the validator still reports on the finished text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from .catalog import Catalog, NodeSpec, default_catalog
from .prefix import LinePrefixChecker
from .validator import validate

# error codes that only the whole text can decide: checked when the text would end
WHOLE_TEXT = frozenset({"missing-header", "missing-graph", "empty-graph", "no-event", "no-wires"})
# every other error-severity code is prevented line by line; named here for docs and tests
PREVENTED = frozenset({
    "syntax", "duplicate-header", "duplicate-graph", "duplicate-var", "duplicate-node", "undeclared-node",
    "unknown-node", "unknown-param", "duplicate-param", "missing-param", "literal-type", "unknown-pin",
    "kind-mismatch", "direction", "type-mismatch", "multiple-sources",
}) | WHOLE_TEXT

HEADER_KEYS = ("BLUEPRINT", "PARENT", "CATEGORY")
_TOKEN = re.compile(
    r"""(?P<ws>[ \t]+)|(?P<str>"(?:[^"\\\n]|\\.)*"?)|(?P<arrow>->)|(?P<num>-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?)|(?P<minus>-)"""
    r"""|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>.)"""
)
_NODE_ID = re.compile(r"n[0-9]+")


class _Tok(NamedTuple):
    kind: str
    text: str
    open: bool  # the last token, touching the end of the line: it may still grow
    end: int = 0  # where it ends in the line


def _lex(line: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _TOKEN.finditer(line):
        kind = m.lastgroup or "punct"
        if kind == "ws":
            continue
        toks.append(_Tok(kind, m.group(), m.end() == len(line), m.end()))
    return toks


def _prefix_ok(text: str, options) -> bool:
    return any(o.startswith(text) for o in options)


class CatalogRules:
    """What the catalog allows, precomputed once per catalog (shared by every row)."""

    def __init__(self, catalog: Catalog | None = None, unknown_nodes: str = "error"):
        self.catalog = catalog or default_catalog()
        self.unknown_nodes = unknown_nodes
        self.validations: dict[str, frozenset] = {}  # text -> its prevented errors (the validator is pure)
        cat = self.catalog
        self.node_types: tuple[str, ...] = tuple(sorted(set(cat.nodes) | set(cat.node_aliases)))
        # Wildcard first: it fits most wires, so "does any type fit?" usually answers at the first try
        self.type_names: tuple[str, ...] = tuple(sorted(set(cat.types) | set(cat.type_aliases),
                                                        key=lambda t: (t != "Wildcard", t)))

    @lru_cache(maxsize=None)
    def params_of(self, node_type: str) -> dict[str, str]:
        """Spelling → canonical param name, aliases included."""
        spec = self.catalog.get(node_type)
        if spec is None:
            return {}
        out = {p.name: p.name for p in spec.all_params}
        for alias, canon in self.catalog.param_alias_map(node_type).items():
            if spec.param(canon) is not None:
                out[alias] = canon
        return out

    @lru_cache(maxsize=None)
    def pins_of(self, node_type: str, direction: str, kind: str) -> tuple[tuple[str, ...], tuple[re.Pattern, ...]]:
        """Spellings of the pins of one direction and kind, and the pattern families."""
        spec = self.catalog.get(node_type)
        if spec is None:
            return (), ()
        names = {p.name for p in spec.pins_where(direction, kind) if not p.pattern}
        patterns = tuple(re.compile(p.pattern) for p in spec.pins_where(direction, kind) if p.pattern)
        for alias, canon in self.catalog.pin_alias_map(node_type).items():
            if any(p.direction == direction and p.kind == kind for p in spec.pins_named(canon)):
                names.add(alias)
        if kind == "exec" and spec.pure:  # pure-exec: a warning, not an error
            names.add("Execute" if direction == "in" else "Then")
        return tuple(sorted(names)), patterns

    def spec(self, node_type: str) -> NodeSpec | None:
        return self.catalog.get(node_type)

    def literal_kinds(self, node_type: str, param: str):
        spec = self.catalog.get(node_type)
        canon = self.params_of(node_type).get(param)
        ps = spec.param(canon) if spec is not None and canon else None
        return None if ps is None else self.catalog.literal_kinds(ps.type)


_FIRST_CHARS = {
    "int": "-0123456789", "float": "-0123456789", "string": '"', "struct": "(",
}


def _value_start_ok(tok: _Tok, kinds) -> bool:
    """Can this (partial) value token be a literal of one of ``kinds``? None = any."""
    if kinds is None:
        return True
    t = tok.text
    for k in kinds:
        if k in _FIRST_CHARS and t[:1] in _FIRST_CHARS[k]:
            return True
        if k == "bool" and (("true".startswith(t) or "false".startswith(t)) if tok.open else t in ("true", "false")):
            return True
        if k == "none" and ("None".startswith(t) if tok.open else t == "None"):
            return True
        if k == "ident" and tok.kind == "ident":
            return True
    return False


@dataclass
class _Facts:
    """What the complete lines so far declared (the state a new line is checked against)."""

    headers: set[str] = field(default_factory=set)
    vars: dict[str, str] = field(default_factory=dict)
    graph: bool = False
    nodes: dict[str, str] = field(default_factory=dict)  # id -> node type as written
    wires: bool = False


class ConstraintState(LinePrefixChecker):
    """One row's text under the constraint: ``allows(piece)``, ``advance(piece)``, ``can_end()``
    (the line discipline is :class:`dsl.prefix.LinePrefixChecker`'s; Blueprint's lexemes are here)."""

    __slots__ = ("rules", "facts", "n_lines", "_kw")

    def __init__(self, rules: CatalogRules):
        super().__init__()
        self.rules = rules
        self.facts = _Facts()
        self.n_lines = 0
        self._kw: set[str] | None = None  # keywords a line may start with, until the facts change

    def can_end(self) -> bool:
        """May the text end here? Whole-text rules hold, and the open line (if any) is valid."""
        text = self.done + self.line
        if not self.facts.graph and not self.line.strip().startswith("GRAPH"):
            return False
        errors = [d for d in validate(text, self.rules.catalog, unknown_nodes=self.rules.unknown_nodes)
                  if d.severity == "error"]
        return not errors

    def copy(self) -> "ConstraintState":
        other = ConstraintState.__new__(ConstraintState)
        other.rules = self.rules
        other.done = self.done
        other.line = self.line
        other.facts = _Facts(set(self.facts.headers), dict(self.facts.vars), self.facts.graph, dict(self.facts.nodes),
                             self.facts.wires)
        other._errors = self._errors
        other._cache = {}
        other.n_lines = self.n_lines
        other._kw = None
        return other

    def _line_errors(self, text: str) -> frozenset:
        """Error-level diagnostics of ``text`` the constraint answers for (memoised: a line is judged when a
        candidate would end it and again when it is consumed, and a wire's targets share their text)."""
        memos = self.rules.validations
        memo = memos.get(text)
        if memo is not None:
            return memo
        if len(memos) > 4096:
            memos.clear()
        memo = memos[text] = frozenset(
            (d.code, d.line, d.column)
            for d in validate(text, self.rules.catalog, unknown_nodes=self.rules.unknown_nodes)
            if d.severity == "error" and d.code not in WHOLE_TEXT
        )
        return memo

    def _learn(self, line: str) -> None:
        self.n_lines += 1
        self._kw = None
        toks = _lex(line)
        if not toks:
            return
        head = toks[0].text
        f = self.facts
        if head in HEADER_KEYS:
            f.headers.add(head)
        elif head == "VAR" and len(toks) > 1:
            f.vars[toks[1].text] = toks[3].text if len(toks) > 3 else ""
        elif head == "GRAPH":
            f.graph = True
        elif head == "NODE" and len(toks) > 3:
            f.nodes[toks[1].text] = toks[3].text
        elif head in ("EXEC", "DATA"):
            f.wires = True

    # -- the line being written ---------------------------------------------------------------
    def _check(self, line: str, closing: bool) -> bool:
        return self._check_line(_lex(line), line, closing)

    def _keywords(self) -> set[str]:
        if self._kw is None:
            self._kw = self._compute_keywords()
        return self._kw

    def _compute_keywords(self) -> set[str]:
        f = self.facts
        out: set[str] = set()
        if not f.graph:
            if not f.vars:
                out.update(k for k in HEADER_KEYS if k not in f.headers)
            if f.headers:
                out.update({"VAR", "GRAPH"})
        else:
            out.add("NODE")
            if f.nodes:
                specs = [self.rules.spec(t) for t in f.nodes.values()]
                if any(s is None or s.dynamic_pins or s.pins_where("out", "exec") for s in specs) and \
                        any(s is None or s.dynamic_pins or s.pins_where("in", "exec") for s in specs):
                    out.add("EXEC")
                if any(s is None or s.dynamic_pins or s.pins_where("in", "data") for s in specs):
                    out.add("DATA")
        return out

    def _check_line(self, toks: list[_Tok], line: str, closing: bool) -> bool:
        if not toks:
            return True
        head = toks[0]
        keywords = self._keywords()
        if head.open and not closing:
            return head.kind == "ident" and _prefix_ok(head.text, keywords)
        if head.text not in keywords:
            return False
        rest = toks[1:]
        if head.text == "NODE":
            return self._node_line(rest, closing)
        if head.text in ("EXEC", "DATA"):
            return self._wire_line(head.text, rest, line, closing)
        if head.text == "VAR":
            return self._var_line(rest)
        return _shape(rest, (":", _IDENT)) and len(rest) <= 2  # headers and GRAPH: `KEY: Name`

    def _closed(self, tok: _Tok, closing: bool) -> bool:
        return closing or not tok.open

    def _node_line(self, toks: list[_Tok], closing: bool) -> bool:
        rules, f = self.rules, self.facts
        if not toks:
            return True
        nid = toks[0]
        if nid.kind != "ident" or not re.fullmatch(r"n[0-9]*", nid.text):
            return False
        if self._closed(nid, closing) and (nid.text in f.nodes or not _NODE_ID.fullmatch(nid.text)):
            return False
        if len(toks) < 2:
            return True
        if toks[1].text != ":":
            return False
        if len(toks) < 3:
            return True
        ntype = toks[2]
        if ntype.kind != "ident":
            return False
        if rules.unknown_nodes != "warning":
            if not self._closed(ntype, closing):
                return _prefix_ok(ntype.text, rules.node_types)
            if ntype.text not in rules.node_types:
                return False
        if len(toks) < 4:
            return True
        if toks[3].text != "[":
            return False
        params = rules.params_of(ntype.text)
        unknown = not params and rules.spec(ntype.text) is None  # an allowed unknown type: any params
        given: set[str] = set()
        i = 4
        if i < len(toks) and toks[i].text == "]":
            return i == len(toks) - 1
        while i < len(toks):
            name = toks[i]
            if name.kind != "ident":
                return False
            if not unknown:
                if not self._closed(name, closing):
                    return any(p.startswith(name.text) and params[p] not in given for p in params)
                canon = params.get(name.text)
                if canon is None or canon in given:
                    return False
                given.add(canon)
            if i + 1 >= len(toks):
                return True
            if toks[i + 1].text != "=":
                return False
            if i + 2 < len(toks) and not unknown:
                value = toks[i + 2]
                if value.text != "(" and not _value_start_ok(value, rules.literal_kinds(ntype.text, name.text)):
                    return False
            j = _parse_value(toks, i + 2)
            if j == _BAD:
                return False
            if j >= len(toks):
                return True
            if toks[j].text == "]":
                return j == len(toks) - 1  # nothing after the params
            if toks[j].text != ",":
                return False
            if not unknown and all(canon in given for canon in params.values()):
                return False  # a comma with no param left to give could never close
            i = j + 1
        return True

    def _var_line(self, toks: list[_Tok]) -> bool:
        if toks and not toks[0].open and toks[0].text in self.facts.vars:
            return False  # duplicate-var
        if not _shape(toks, (_IDENT, ":")):
            return False
        j = _parse_type(toks, 2)
        if j >= len(toks) or j == _BAD:
            return j != _BAD
        if toks[j].text != "=":
            return False
        j = _parse_value(toks, j + 1)
        return j != _BAD and j >= len(toks)

    def _endpoint_ok(self, toks: list[_Tok], i: int, direction: str, kind: str, closing: bool) -> int | None:
        """Check ``id . pin`` starting at toks[i]; the index after it, or None when refused.

        Returns len(toks) + 1 when the endpoint is still being written (and may complete)."""
        f, rules = self.facts, self.rules
        if i >= len(toks):
            return len(toks) + 1
        nid = toks[i]
        if nid.kind != "ident":
            return None
        fitting = [n for n, t in f.nodes.items() if self._has_pins(t, direction, kind)]
        if not self._closed(nid, closing):
            return len(toks) + 1 if _prefix_ok(nid.text, fitting) else None
        if nid.text not in fitting:
            return None
        if i + 1 >= len(toks):
            return len(toks) + 1
        if toks[i + 1].text != ".":
            return None
        if i + 2 >= len(toks):
            return len(toks) + 1
        pin = toks[i + 2]
        if pin.kind != "ident":
            return None
        ntype = f.nodes[nid.text]
        spec = rules.spec(ntype)
        if spec is None or spec.dynamic_pins:
            return i + 3
        names, patterns = rules.pins_of(ntype, direction, kind)
        extra = self._named_pins(nid.text, spec, direction, kind)
        if not self._closed(pin, closing):
            ok = _prefix_ok(pin.text, names) or _prefix_ok(pin.text, extra) or \
                any(_pattern_prefix(rx, pin.text) for rx in patterns)
            return len(toks) + 1 if ok else None
        ok = pin.text in names or pin.text in extra or any(rx.fullmatch(pin.text) for rx in patterns)
        return i + 3 if ok else None

    def _named_pins(self, nid: str, spec: NodeSpec, direction: str, kind: str) -> tuple[str, ...]:
        """Pins spelled like a value: VariableGet [VarName=Health] reads as n1.Health; var-as-pin."""
        out: list[str] = []
        if kind == "data" and direction == "out":
            out.extend(self.facts.vars)  # var-as-pin is a warning
        if spec.named_pin is not None:
            out.extend(self.facts.vars)
        return tuple(out)

    def _has_pins(self, node_type: str, direction: str, kind: str) -> bool:
        spec = self.rules.spec(node_type)
        if spec is None or spec.dynamic_pins:
            return True
        names, patterns = self.rules.pins_of(node_type, direction, kind)
        # any node can be a var-as-pin source (a warning) once a VAR exists
        return bool(names or patterns or (kind == "data" and direction == "out" and self.facts.vars))

    def _wire_line(self, head: str, toks: list[_Tok], line: str, closing: bool) -> bool:
        kind = "exec" if head == "EXEC" else "data"
        i = 0
        if kind == "data" and toks and toks[0].kind != "ident":  # a literal source
            if toks[0].kind not in ("num", "str", "minus"):
                return False
            i = 1
        elif kind == "data" and toks and toks[0].kind == "ident" and toks[0].text in ("true", "false", "None"):
            i = 1
        elif kind == "data" and toks and toks[0].open and not closing and \
                any(w.startswith(toks[0].text) for w in ("true", "false", "None")):
            return True  # a literal or a node id, still being written
        else:
            i = self._endpoint_ok(toks, 0, "out", kind, closing)
        if i is None:
            return False
        if i > len(toks):
            return True  # the source is still being written
        if i == len(toks):
            return True
        if toks[i].kind == "minus" and toks[i].open and not closing:
            return True
        if toks[i].kind != "arrow":
            return False
        if kind == "data":  # only targets some [Type] can reach from this source: no dead end at the bracket
            j = self._data_target_ok(toks, i + 1, line[: toks[i].end], closing)
        else:
            j = self._endpoint_ok(toks, i + 1, "in", kind, closing)
        if j is None:
            return False
        if j > len(toks):
            return True  # the target is still being written
        if kind == "exec":
            return j == len(toks)
        if j == len(toks):  # the target pin is complete: some [Type] must make the line valid
            return self._some_type_fits(line.rstrip())
        if toks[j].text != "[":
            return False
        if j + 1 >= len(toks):
            return self._some_type_fits(line[: line.rindex("[")].rstrip())
        ty = toks[j + 1]
        if ty.kind != "ident":
            return False
        end = _parse_type(toks, j + 1)
        if end == _BAD or (end < len(toks) and (toks[end].text != "]" or end != len(toks) - 1)):
            return False
        base = line[: line.rindex("[")].rstrip()
        fits = self._fitting_types(base)
        if not fits:
            return True  # only generic spellings (Array<...>) could fit: the line validator decides
        if not self._closed(ty, closing):
            return _prefix_ok(ty.text, fits) or ty.text in ("Array",)
        return ty.text in fits or (ty.text == "Array" and any(t.startswith("Array") for t in fits)) or \
            (j + 2 < len(toks) and toks[j + 2].text == "<")

    def _data_target_ok(self, toks: list[_Tok], i: int, head: str, closing: bool) -> int | None:
        """``id . pin`` of a DATA target after ``head`` (``DATA <source> ->``) that some [Type] can reach;
        as _endpoint_ok."""
        if i >= len(toks):
            return len(toks) + 1 if self._target_ids(head) else None
        nid = toks[i]
        if nid.kind != "ident":
            return None
        if not self._closed(nid, closing):
            return len(toks) + 1 if _prefix_ok(nid.text, self._target_ids(head)) else None
        if nid.text not in self.facts.nodes or self._target_pins(head, nid.text, first_only=True) == ():
            return None
        if i + 1 >= len(toks):
            return len(toks) + 1
        if toks[i + 1].text != ".":
            return None
        if i + 2 >= len(toks):
            return len(toks) + 1
        pin, pins = toks[i + 2], self._target_pins(head, nid.text)
        if pin.kind != "ident":
            return None
        if pins is None:  # dynamic pins: any name
            return len(toks) + 1 if not self._closed(pin, closing) else i + 3
        if not self._closed(pin, closing):
            return len(toks) + 1 if _prefix_ok(pin.text, pins) else None
        return i + 3 if pin.text in pins else None

    def _target_pins(self, head: str, nid: str, first_only: bool = False) -> tuple[str, ...] | None:
        """For ``DATA <source> ->``: the data inputs of ``nid`` that some [Type] makes a valid wire from this
        source (None: the node names its pins itself); ``first_only`` stops at the first. Tried with the
        validator, cached per line."""
        key = f"\x00pins\x00{first_only}\x00{nid}\x00{head}"
        if key in self._cache:
            return self._cache[key]  # type: ignore[return-value]
        ntype = self.facts.nodes[nid]
        spec = self.rules.spec(ntype)
        if spec is None or spec.dynamic_pins:
            pins = None
        else:
            names = list(self.rules.pins_of(ntype, "in", "data")[0])
            if spec.named_pin is not None:
                names += list(self.facts.vars)
            fits = (p for p in names if self._some_type_fits(f"{head} {nid}.{p}"))
            pins = tuple(fits) if not first_only else tuple(p for p in (next(fits, None),) if p is not None)
        self._cache[key] = pins  # type: ignore[assignment]
        return pins

    def _target_ids(self, head: str) -> tuple[str, ...]:
        """Declared ids with at least one data input this source can feed."""
        return tuple(nid for nid in self.facts.nodes if self._target_pins(head, nid, first_only=True) != ())

    def _some_type_fits(self, base: str) -> bool:
        """Does some [Type] make ``base [Type]`` a valid line? (stops at the first that does)"""
        key = "\x00types\x00" + base
        if key in self._cache:
            return bool(self._cache[key])
        return any(self._line_errors(self.done + f"{base} [{t}]\n") <= self._errors
                   for t in self.rules.type_names)

    def _fitting_types(self, base: str) -> tuple[str, ...]:
        """Type names T for which ``base [T]`` is a line the validator accepts (tried for real)."""
        key = "\x00types\x00" + base
        cached = self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        fits = tuple(t for t in self.rules.type_names
                     if self._line_errors(self.done + f"{base} [{t}]\n") <= self._errors)
        self._cache[key] = fits  # type: ignore[assignment]
        return fits


_IDENT = object()  # any identifier, in a _shape
_BAD = -1  # _parse_type / _parse_value: these tokens cannot start that


def _parse_type(toks: list[_Tok], i: int) -> int:
    """``Name`` or ``Name<T, ...>`` from toks[i]: the index after it, len(toks) (or more) while
    it may still grow, or _BAD."""
    if i >= len(toks):
        return len(toks) + 1
    if toks[i].kind != "ident":
        return _BAD
    i += 1
    if i >= len(toks) or toks[i].text != "<":
        return i
    return _parse_list(toks, i + 1, _parse_type, ">")


def _parse_value(toks: list[_Tok], i: int) -> int:
    """A param/VAR value from toks[i] (literal, name or ``(F=v, ...)``); as _parse_type."""
    if i >= len(toks):
        return len(toks) + 1
    t = toks[i]
    if t.kind in ("num", "ident") or (t.kind == "str" and (t.open or (len(t.text) > 1 and t.text.endswith('"')))):
        return i + 1
    if t.kind == "minus" and t.open:
        return i + 1
    if t.text != "(":
        return _BAD
    if i + 1 < len(toks) and toks[i + 1].text == ")":
        return i + 2
    return _parse_list(toks, i + 1, _parse_field, ")")


def _parse_field(toks: list[_Tok], i: int) -> int:
    """``Name = value`` inside a struct."""
    if i >= len(toks):
        return len(toks) + 1
    if toks[i].kind != "ident":
        return _BAD
    if i + 1 >= len(toks):
        return len(toks) + 1
    if toks[i + 1].text != "=":
        return _BAD
    return _parse_value(toks, i + 2)


def _parse_list(toks: list[_Tok], i: int, item, close: str) -> int:
    """``item (, item)* close`` from toks[i]; as _parse_type."""
    while True:
        i = item(toks, i)
        if i == _BAD or i >= len(toks):
            return i if i == _BAD else len(toks) + 1
        if toks[i].text == ",":
            i += 1
        elif toks[i].text == close:
            return i + 1
        else:
            return _BAD


def _shape(toks: list[_Tok], shape: tuple) -> bool:
    """Do the first tokens follow ``shape`` (literal texts, or _IDENT)? Later tokens are free."""
    for tok, want in zip(toks, shape):
        if want is _IDENT:
            if tok.kind != "ident":
                return False
        elif tok.text != want:
            return False
    return True


def _pattern_prefix(rx: re.Pattern, text: str) -> bool:
    """Could ``text`` grow into a full match of a pin family (Then_[0-9]+, Case_[A-Za-z0-9_]+)?"""
    stem = rx.pattern.split("_", 1)[0] + "_"
    if len(text) <= len(stem):
        return stem.startswith(text)
    return text.startswith(stem)


@lru_cache(maxsize=8)
def rules_for(catalog_source: str | None = None, unknown_nodes: str = "error") -> CatalogRules:
    """Shared rules for the default catalog (or one loaded from a path)."""
    if catalog_source is None:
        return CatalogRules(None, unknown_nodes)
    from .catalog import load_catalog_file

    return CatalogRules(load_catalog_file(catalog_source), unknown_nodes)
