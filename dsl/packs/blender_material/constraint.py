"""Catalog-aware constraint for the material language: which continuations of a text can still be valid.

The grammar (grammar.lark, run by llguidance in the engine) guarantees syntax; this adds the catalog, the
way ``dsl.constraint`` does for Blueprint, with the same two levels:

* **lexemes**: while a line is written, each name is checked against the finite set it must come from (a
  prefix of one while open, a member once closed): the keywords a line may start with, node types,
  declared node ids, a node's params and enum items, the sockets of a link's source and target for the
  node's settings, interface names inside a group;
* **lines**: when a line ends, the pack's own validator (``text.analyse``) runs on the text so far and the
  line is refused if it brings an error. Whole-text rules (a material needs a MaterialOutput) are checked
  when the text would end.

The validator is the oracle, so the constraint can never allow what the validator rejects at a line's end.
Pure Python, no torch; one state per decoded row (``allows``, ``advance``, ``can_end``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dsl.prefix import LinePrefixChecker

from .catalog import INTERFACE_BY_DSL, BlenderCatalog, dsl_name, load_catalog
from .text import HEADER_KEYS, LABEL_PARAM, OUTPUT_PARAM, analyse

WHOLE_TEXT = frozenset({"missing-output"})  # decided when the text would end
_TOKEN = re.compile(r'(?P<ws>[ \t]+)|(?P<str>"(?:[^"\\\n]|\\.)*\\?"?)|(?P<arrow>->)|(?P<minus>-(?![0-9]))'
                    r'|(?P<num>-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)'
                    r'|(?P<punct>.)')
_MEMO_MAX = 4096
MAX_NAME = 63  # longest header / interface name the constraint lets a model write
OPEN = -1  # _endpoint: the line ends inside this endpoint (fine while it is still being written)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    open: bool  # touches the end of the line: may still grow


def _lex(line: str) -> list[_Tok]:
    return [_Tok(m.lastgroup or "punct", m.group(), m.end() == len(line))
            for m in _TOKEN.finditer(line) if m.lastgroup != "ws"]


def _fits(tok: _Tok, options: Any, closing: bool) -> bool:
    """A name that is one of OPTIONS (closed), or a prefix of one (still open)."""
    if tok.kind != "ident":
        return False
    if tok.open and not closing:
        return any(o.startswith(tok.text) for o in options)
    return tok.text in options


def _fits_item(tok: _Tok, items: tuple[str, ...], closing: bool) -> bool:
    """An enum value: a bare item, or a quoted one for items that are not names ("4D", "1D")."""
    if tok.kind != "str":
        return _fits(tok, items, closing)
    inner = tok.text[1:]
    if len(tok.text) > 1 and tok.text.endswith('"') and not tok.text.endswith('\\"'):
        return inner[:-1] in items
    return not closing and any(i.startswith(inner) for i in items)


class MaterialRules:
    """What the catalog allows, precomputed once (shared by every row of an exam)."""

    def __init__(self, catalog: BlenderCatalog | None = None):
        self.catalog = cat = catalog or load_catalog()
        self.type_names = frozenset(cat.by_short) | frozenset(cat.aliases)
        self.memo: dict[str, frozenset] = {}  # text -> its line-level errors (analyse is pure)
        self.ends: dict[str, bool] = {}  # text -> may it end here

    def errors(self, text: str) -> frozenset:
        hit = self.memo.get(text)
        if hit is None:
            if len(self.memo) > _MEMO_MAX:
                self.memo.clear()
            hit = self.memo[text] = frozenset(
                (d.code, d.line, d.column) for d in analyse(text, self.catalog).diagnostics
                if d.severity == "error" and d.code not in WHOLE_TEXT)
        return hit

    def whole_ok(self, text: str) -> bool:
        """No error at all in TEXT (memoised: the decoder asks at every point a text could end)."""
        hit = self.ends.get(text)
        if hit is None:
            if len(self.ends) > _MEMO_MAX:
                self.ends.clear()
            hit = self.ends[text] = not any(d.severity == "error" for d in analyse(text, self.catalog).diagnostics)
        return hit

    def params(self, idname: str | None) -> frozenset[str] | None:
        """Param names a NODE line of this type may carry (None: any, e.g. a Group's interface)."""
        spec = self.catalog.spec(idname) if idname else None
        if spec is None or spec.is_group:
            return None
        names = {LABEL_PARAM}
        for name, prop in spec.props.items():
            names |= set(prop["params"]) if prop.get("type") == "STRUCT" else {name}
        names |= set(spec.dsl_names["inputs"].values()) | {s["identifier"] for s in spec.inputs}
        names |= {OUTPUT_PARAM + n for n in spec.dsl_names["outputs"].values()}
        return frozenset(names)

    def enum_items(self, idname: str | None, param: str) -> tuple[str, ...] | None:
        spec = self.catalog.spec(idname) if idname else None
        prop = spec.props.get(param) if spec else None
        if prop and prop.get("type") == "ENUM" and not prop.get("flag") and prop.get("items"):
            return tuple(prop["items"])
        return None


@dataclass
class _Node:
    idname: str | None
    props: dict[str, str] = field(default_factory=dict)  # enum settings written on its line


@dataclass
class _Facts:
    kind: str = ""  # "material" | "group" once the header is written
    nodes: dict[str, _Node] = field(default_factory=dict)
    iface: dict[str, set[str]] = field(default_factory=lambda: {"INPUT": set(), "OUTPUT": set()})


class MaterialConstraint(LinePrefixChecker):
    """One row's text under the constraint: ``allows(piece)``, ``advance(piece)``, ``can_end()`` (the line
    discipline is :class:`dsl.prefix.LinePrefixChecker`'s; the material language's lexemes are here)."""

    __slots__ = ("rules", "facts")

    def __init__(self, rules: MaterialRules):
        super().__init__()
        self.rules = rules
        self.facts = _Facts()

    def can_end(self) -> bool:
        """May the text end here? The open line is whole and valid, and the whole-text rules hold."""
        if self.line.strip() and not self._line_ok(self.line, closing=True):
            return False
        text = self.done + self.line
        return bool(text.strip()) and self.rules.whole_ok(text)

    def copy(self) -> MaterialConstraint:
        other = MaterialConstraint(self.rules)
        other.done, other.line, other._errors = self.done, self.line, self._errors
        other.facts = _Facts(self.facts.kind, {k: _Node(v.idname, dict(v.props)) for k, v in self.facts.nodes.items()},
                             {k: set(v) for k, v in self.facts.iface.items()})
        return other

    def _line_errors(self, text: str) -> frozenset:
        return self.rules.errors(text)

    def _learn(self, line: str) -> None:
        toks = _lex(line)
        if not toks:
            return
        f = self.facts
        head = toks[0].text
        if head in HEADER_KEYS:
            f.kind = "group" if head == "GROUP" else "material"
        elif head in ("INPUT", "OUTPUT") and len(toks) > 1:
            name = toks[1].text.strip('"') if toks[1].kind == "str" else toks[1].text
            f.iface[head].add(dsl_name(name))
        elif head == "NODE" and len(toks) > 3:
            node = _Node(self.rules.catalog.resolve_type(toks[3].text))
            for i, t in enumerate(toks[:-2]):
                v = toks[i + 2]
                if t.kind == "ident" and toks[i + 1].text == "=" and v.kind in ("ident", "str"):
                    node.props[t.text] = v.text[1:-1] if v.kind == "str" else v.text  # enum items: bare or quoted
            f.nodes[toks[1].text] = node

    # -- the line being written -----------------------------------------------------------------
    def _keywords(self) -> tuple[str, ...]:
        f = self.facts
        if not f.kind:
            return HEADER_KEYS
        out = ("NODE", "LINK") if f.nodes else ("NODE",)
        return out + (("INPUT", "OUTPUT") if f.kind == "group" else ())

    def _check(self, line: str, closing: bool) -> bool:
        toks = _lex(line)
        if not toks or toks[0].kind == "punct" and toks[0].text == "#":
            return True
        head = toks[0]
        if not _fits(head, self._keywords(), closing):
            return False
        if head.open and not closing:
            return True
        rest = toks[1:]
        if head.text == "NODE":
            return self._node_line(rest, closing)
        if head.text == "LINK":
            return self._link_line(rest, closing)
        if head.text in ("INPUT", "OUTPUT"):
            return self._iface_line(rest, closing)
        return self._name_ok(rest, closing)  # a header: `KEY: Name`

    def _name_ok(self, toks: list[_Tok], closing: bool) -> bool:
        """A header's name is at most MAX_NAME characters (Blender's classic ID-name limit): a runaway
        name would leave an answer with no whole line at all."""
        if len(toks) >= 2 and toks[0].text == ":":
            name = toks[1].text[1:].rstrip('"') if toks[1].kind == "str" else toks[1].text
            return len(name) <= MAX_NAME and len(toks) <= 2
        return len(toks) <= 1 and not closing

    def _node_line(self, toks: list[_Tok], closing: bool) -> bool:
        # NODE nK : Type [ name = value , ... ]
        if not toks:
            return not closing
        if toks[0].kind != "ident" or not re.fullmatch(r"n[0-9]*", toks[0].text):
            return False
        if not toks[0].open and toks[0].text in self.facts.nodes:
            return False  # an id declared again
        if len(toks) < 3:
            return not closing
        type_tok = toks[2]
        if not _fits(type_tok, self.rules.type_names, closing):
            return False
        if type_tok.open and not closing:
            return True
        idname = self.rules.catalog.resolve_type(type_tok.text)
        if idname == "NodeGroupInput" or idname == "NodeGroupOutput":
            if self.facts.kind != "group":
                return False
        allowed = self.rules.params(idname)
        i = 3
        if i == len(toks):
            return True
        if toks[i].text != "[":
            return False
        expect, name, depth, seen = "name", "", 0, set()
        for t in toks[i + 1:]:
            if depth:
                depth += (t.text in "([") - (t.text in ")]")
                continue
            if expect == "name":
                if t.text == "]" and not seen:
                    return t is toks[-1]
                if t.kind != "ident" or (allowed is not None and not _fits(t, allowed, closing)):
                    return False
                if not t.open and t.text in seen:
                    return False  # a param given twice
                name, expect = t.text, "="
                seen.add(name)
            elif expect == "=":
                if t.text != "=":
                    return False
                expect = "value"
            elif expect == "value":
                items = self.rules.enum_items(idname, name)
                if items is not None and not _fits_item(t, items, closing):
                    return False
                depth = 1 if t.text in "([" else 0
                expect = "sep"
            elif t.text == "]":
                return t is toks[-1]
            elif t.text == ",":
                expect = "name"
            else:
                return False
        return not closing

    def _socket_names(self, node_id: str, side: str) -> frozenset[str] | None:
        """DSL names (and identifiers) of a declared node's sockets on SIDE for its settings; None: any."""
        node = self.facts.nodes.get(node_id)
        if node is None:
            return frozenset()
        cat = self.rules.catalog
        if node.idname == "NodeGroupInput" and side == "outputs":
            return frozenset(self.facts.iface["INPUT"])
        if node.idname == "NodeGroupOutput" and side == "inputs":
            return frozenset(self.facts.iface["OUTPUT"])
        spec = cat.spec(node.idname) if node.idname else None
        if spec is None or spec.is_group:
            return None
        names = set()
        for sock in spec.sockets(side):
            ident = sock["identifier"]
            if not spec.available(side, ident, node.props):  # permanently disabled ones included
                continue
            names |= {ident, spec.dsl_names[side].get(ident, ident)}
        return frozenset(names)

    def _endpoint(self, toks: list[_Tok], i: int, side: str, closing: bool) -> int | None:
        """Check `nK.socket` at toks[i:]: the index after it; OPEN when the line ends inside it; None if wrong."""
        if i >= len(toks):
            return OPEN
        nid = toks[i]
        if not _fits(nid, self.facts.nodes, closing):
            return None
        if i + 1 >= len(toks):
            return OPEN
        if toks[i + 1].text != ".":
            return None
        if i + 2 >= len(toks):
            return OPEN
        sock = toks[i + 2]
        names = self._socket_names(nid.text, side)
        if names is not None and not _fits(sock, names, closing):
            return None
        return OPEN if sock.open and not closing else i + 3

    def _link_line(self, toks: list[_Tok], closing: bool) -> bool:
        # LINK nA.out -> nB.in
        j = self._endpoint(toks, 0, "outputs", closing)
        if j is None or j == OPEN:
            return j == OPEN and not closing
        if j == len(toks):
            return not closing
        arrow = toks[j]
        if arrow.kind != "arrow":
            return arrow.kind == "minus" and arrow is toks[-1] and not closing  # "-" of "->" so far
        k = self._endpoint(toks, j + 1, "inputs", closing)
        if k is None or k == OPEN:
            return k == OPEN and not closing
        return k == len(toks)  # nothing may follow the target socket

    def _iface_line(self, toks: list[_Tok], closing: bool) -> bool:
        # INPUT Name : Type [= value] [min=, max=]; only before the nodes use them
        if self.facts.kind != "group":
            return False
        if toks and len(toks[0].text.strip('"')) > MAX_NAME:
            return False
        if len(toks) >= 3 and toks[1].text == ":":
            return _fits(toks[2], INTERFACE_BY_DSL, closing)
        return True
