"""Material DSL text <-> the Blender material graph (``model.Graph``), with positioned diagnostics.

The syntax lives in ``grammar.lark``; every statement sits on one line, so each line is parsed on
its own (one bad line is one diagnostic, the rest still parses). Names go through the catalog:
short type names and aliases -> ``bl_idname``, DSL socket names -> socket identifiers (the duplicate
rule is in catalog.py), params -> node properties or unlinked input values.

Sockets of group nodes (``Group``, ``GroupInput``, ``GroupOutput``) are not in the catalog: their
names come from a group's interface. In the model a link or input value on such a node names the
socket by its interface *name* — the real name for ``GroupInput``/``GroupOutput`` of a ``GROUP``
text (resolved through its INPUT/OUTPUT lines), the DSL spelling for a ``Group`` call. The bpy side
matches them with ``dsl_name(interface_name) == dsl_name(model_name)``.

Public: :func:`to_text`, :func:`from_text`, :func:`analyse` (lenient: a graph whenever the text
parses, plus every diagnostic) and :func:`format_value`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from dsl.ast import Diagnostic, Span, quote
from dsl.ast import _unquote as unquote

from . import model
from .catalog import (
    INTERFACE_BY_DSL,
    INTERFACE_SOCKET_KIND,
    INTERFACE_TYPES,
    PACKAGE,
    BlenderCatalog,
    NodeSpec,
    dsl_name,
    load_catalog,
)

HEADER_KEYS = ("MATERIAL", "GROUP")
KEYWORDS = ("MATERIAL", "GROUP", "INPUT", "OUTPUT", "NODE", "LINK")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NODE_ID = re.compile(r"n([0-9]+)\Z")
# params that are neither enum/bool props nor inputs
LABEL_PARAM = "label"
IFACE_OPTIONS = ("min", "max")
# curve point handles besides the default AUTO (a third tuple item)
CURVE_HANDLES = ("AUTO", "AUTO_CLAMPED", "VECTOR")
# ``out_<output>=value``: the value a Value/RGB/Normal node keeps in an output socket (model prop
# ``outputs.<identifier>``)
OUTPUT_PARAM = "out_"
OUTPUT_PROP = "outputs."


@lru_cache(maxsize=1)
def grammar_text() -> str:
    return resources.files(PACKAGE).joinpath("grammar.lark").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar_text(), parser="lalr", start=["start", "line"], propagate_positions=True,
                maybe_placeholders=False)


# -- values ------------------------------------------------------------------------------------

def format_number(x: float | int) -> str:
    """Canonical number: integers without a point, floats rounded to 6 significant decimals."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return "0"
    r = round(float(x), 6)
    if r == 0:
        return "0"
    if r.is_integer() and abs(r) < 1e15:
        return str(int(r))
    text = repr(r)
    return text


def format_value(v: Any) -> str:
    """A model value as DSL text: numbers, true/false, bare enum identifiers or quoted strings,
    tuples ``(a, b)`` and lists ``[a, b]``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return format_number(v)
    if isinstance(v, str):
        return v if _IDENT.match(v) and v not in ("true", "false") else quote(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(format_value(x) for x in v) + ")"
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    if v is None:
        return '""'
    return quote(str(v))


@dataclass(frozen=True, slots=True)
class PValue:
    """A parsed value: kind (number|string|ident|true|false|tuple|list), python data, span."""

    kind: str
    data: Any
    span: Span


def _span(meta_or_tok: Any, line: int) -> Span:
    if isinstance(meta_or_tok, Token):
        return Span(line, meta_or_tok.column, line, meta_or_tok.end_column)
    return Span(line, meta_or_tok.column, line, meta_or_tok.end_column)


def _value(t: Tree | Token, line: int) -> PValue:
    span = _span(t.meta if isinstance(t, Tree) else t, line)
    if isinstance(t, Token):  # a bare token without alias does not occur (aliases give trees)
        return PValue("ident", str(t), span)
    kind = t.data
    if kind in ("tuple", "list"):
        items = [_value(c, line) for c in t.children]
        data = tuple(i.data for i in items) if kind == "tuple" else [i.data for i in items]
        return PValue(kind, data, span)
    tok = t.children[0]
    span = _span(tok, line)
    if kind == "number":
        raw = str(tok)
        num: float | int = float(raw) if any(c in raw for c in ".eE") else int(raw)
        return PValue("number", num, span)
    if kind == "string":
        return PValue("string", unquote(str(tok)), span)
    if kind == "true":
        return PValue("true", True, span)
    if kind == "false":
        return PValue("false", False, span)
    return PValue("ident", str(tok), span)


# -- statements --------------------------------------------------------------------------------

@dataclass(slots=True)
class SParam:
    name: str
    value: PValue
    span: Span
    name_span: Span


@dataclass(slots=True)
class SHeader:
    key: str
    name: str
    span: Span


@dataclass(slots=True)
class SIface:
    key: str  # INPUT | OUTPUT
    name: str
    type: str
    default: PValue | None
    params: list[SParam]
    span: Span
    name_span: Span
    type_span: Span


@dataclass(slots=True)
class SNode:
    id: str
    type: str
    params: list[SParam]
    span: Span
    id_span: Span
    type_span: Span


@dataclass(slots=True)
class SRef:
    node: str
    socket: str
    span: Span
    node_span: Span
    socket_span: Span


@dataclass(slots=True)
class SLink:
    src: SRef
    dst: SRef
    span: Span


Statement = SHeader | SIface | SNode | SLink


def _params(t: Tree | None, line: int) -> list[SParam]:
    if t is None:
        return []
    out = []
    for p in t.children:
        name_tok, val = p.children
        out.append(SParam(str(name_tok), _value(val, line), _span(p.meta, line), _span(name_tok, line)))
    return out


def _statement(t: Tree, line: int) -> Statement:
    span = _span(t.meta, line)
    kids = t.children
    if t.data == "header":
        return SHeader(str(kids[0]), _value(kids[1], line).data, span)
    if t.data == "iface":
        key, name, typ = kids[0], kids[1], kids[2]
        default = None
        params = None
        for extra in kids[3:]:
            if isinstance(extra, Tree) and extra.data == "params":
                params = extra
            else:
                default = _value(extra, line)
        return SIface(str(key), _value(name, line).data, str(typ), default, _params(params, line), span,
                      _span(name.meta, line), _span(typ, line))
    if t.data == "node_decl":
        params = kids[2] if len(kids) > 2 else None
        return SNode(str(kids[0]), str(kids[1]), _params(params, line), span, _span(kids[0], line),
                     _span(kids[1], line))
    refs = []
    for r in kids:
        n, s = r.children
        refs.append(SRef(str(n), str(s), _span(r.meta, line), _span(n, line), _span(s, line)))
    return SLink(refs[0], refs[1], span)


def _describe(err: UnexpectedInput) -> str:
    expected = sorted(getattr(err, "expected", None) or getattr(err, "allowed", None) or [])
    names = {"NODE_ID": "a node id like n1", "IDENT": "a name", "NUMBER": "a number", "STRING": 'a "string"',
             "HEADER_KEY": "MATERIAL/GROUP", "IFACE_KEY": "INPUT/OUTPUT", "_NL": "end of line"}
    shown = [names.get(e, e.strip('"').lower() if e.isupper() else e) for e in expected][:6]
    tok = getattr(err, "token", None)
    got = f" got {str(tok)!r}," if tok is not None and str(tok) else ""
    return f"syntax error:{got} expected {', '.join(shown)}" if shown else "syntax error"


def parse_statements(text: str) -> tuple[list[Statement], list[Diagnostic], str]:
    """Statements and syntax diagnostics, line by line (a bad line never hides the rest)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    statements: list[Statement] = []
    diags: list[Diagnostic] = []
    parser = _lark()
    for i, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", "//")):
            continue
        try:
            tree = parser.parse(raw, start="line")
        except UnexpectedInput as err:
            col = getattr(err, "column", 1) or 1
            col = col if isinstance(col, int) and col > 0 else 1
            diags.append(Diagnostic(i, col, i, max(col + 1, len(raw.rstrip()) + 1), "error", "syntax",
                                    _describe(err)))
            continue
        if tree.children:
            statements.append(_statement(tree.children[0], i))
    return statements, diags, text


# -- semantic analysis -------------------------------------------------------------------------

@dataclass
class Analysis:
    """What :func:`analyse` found: the graph (None when the text did not parse at all) and diagnostics."""

    graph: model.Graph | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    node_lines: dict[str, int] = field(default_factory=dict)
    link_lines: list[int] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def _err(out: list[Diagnostic], span: Span, code: str, message: str, severity: str = "error") -> None:
    out.append(Diagnostic.at(span, severity, code, message))  # type: ignore[arg-type]


def _suggest(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _coerce_socket_value(sock: dict[str, Any], v: PValue) -> tuple[Any, str | None]:
    """A param value for an input socket as model data, or an error message."""
    kind = sock["type"]
    default = sock.get("default")
    if kind == "SHADER":
        return None, f"shader input {sock['name']!r} takes no value; link a shader"
    if kind == "VALUE":
        if isinstance(v.data, (int, float)) and not isinstance(v.data, bool):
            return float(v.data), None
        return None, f"{sock['name']} takes a number"
    if kind == "INT":
        if isinstance(v.data, int) and not isinstance(v.data, bool):
            return v.data, None
        return None, f"{sock['name']} takes an integer"
    if kind == "BOOLEAN":
        if isinstance(v.data, bool):
            return v.data, None
        return None, f"{sock['name']} takes true or false"
    if kind == "STRING":
        if isinstance(v.data, str) and v.kind == "string":
            return v.data, None
        return None, f'{sock["name"]} takes a "string"'
    if kind in ("VECTOR", "RGBA", "ROTATION"):
        size = len(default) if isinstance(default, list) else (4 if kind == "RGBA" else 3)
        data = v.data
        if isinstance(data, (int, float)) and not isinstance(data, bool) and kind != "RGBA":
            return tuple(float(data) for _ in range(size)), None
        if isinstance(data, tuple) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data):
            if kind == "RGBA" and len(data) == 3:
                data = (*data, 1.0)
            if len(data) == size:
                return tuple(float(x) for x in data), None
        shape = f"a tuple of {size} numbers" + (" (r, g, b, a)" if kind == "RGBA" else "")
        return None, f"{sock['name']} takes {shape}"
    return v.data, None


def _coerce_prop(name: str, spec: dict[str, Any], v: PValue) -> tuple[Any, str | None]:
    kind = spec["type"]
    if kind == "ENUM":
        if spec.get("flag"):
            items = v.data if isinstance(v.data, list) else [v.data]
            bad = [x for x in items if x not in spec["items"]]
            if bad:
                return None, f"unknown {name} item {bad[0]!r}; one of {', '.join(spec['items'])}"
            return sorted(items), None
        if v.kind not in ("ident", "string") or not isinstance(v.data, str):
            return None, f"{name} takes one of {', '.join(spec['items'])}"
        if v.data not in spec["items"]:
            return None, (f"unknown {name} item {v.data!r}{_suggest(v.data, spec['items'])};"
                          f" one of {', '.join(spec['items'][:12])}{'…' if len(spec['items']) > 12 else ''}")
        return v.data, None
    if kind == "BOOLEAN":
        if isinstance(v.data, bool):
            return v.data, None
        return None, f"{name} takes true or false"
    if kind == "INT":
        if isinstance(v.data, int) and not isinstance(v.data, bool):
            return v.data, None
        return None, f"{name} takes an integer"
    if kind == "FLOAT":
        if spec.get("array_length"):
            if isinstance(v.data, tuple) and len(v.data) == spec["array_length"]:
                return tuple(float(x) for x in v.data), None
            return None, f"{name} takes a tuple of {spec['array_length']} numbers"
        if isinstance(v.data, (int, float)) and not isinstance(v.data, bool):
            return float(v.data), None
        return None, f"{name} takes a number"
    if kind in ("STRING", "POINTER"):
        if v.kind == "string":
            return v.data, None
        return None, f'{name} takes a "quoted name"'
    return v.data, None


def _struct_param(node_spec: NodeSpec, name: str) -> str | None:
    """Model prop path ("color_ramp.elements") of a struct param ("stops"), else None."""
    for prop in node_spec.props.values():
        if prop.get("type") == "STRUCT" and name in prop["params"]:
            return prop["params"][name]
    return None


def _check_struct(path: str, v: PValue) -> tuple[Any, str | None]:
    data = v.data
    if path == "color_ramp.elements":
        ok = isinstance(data, list) and all(
            isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], (int, float))
            and isinstance(e[1], tuple) and len(e[1]) == 4 for e in data)
        if not ok or not data:
            return None, "stops takes [(position, (r, g, b, a)), ...]"
        return [(float(p), tuple(float(x) for x in c)) for p, c in data], None
    if path == "mapping.curves":
        ok = isinstance(data, list) and all(
            isinstance(c, list) and all(
                isinstance(p, tuple) and len(p) in (2, 3) and all(isinstance(x, (int, float)) for x in p[:2])
                and (len(p) == 2 or p[2] in CURVE_HANDLES) for p in c) for c in data)
        if not ok:
            return None, ("curves takes [[(x, y), ...], ...] (one list of points per curve; a point may add a"
                          f" handle: (x, y, {'|'.join(CURVE_HANDLES)}))")
        return [[(float(p[0]), float(p[1]), *p[2:]) for p in c] for c in data], None
    if isinstance(data, str):
        return data, None
    return None, f"{path.split('.')[-1]} takes a name"


def analyse(text: str, catalog: BlenderCatalog | None = None) -> Analysis:
    """Parse and check a text: a graph whenever it parses (even with semantic errors) + diagnostics."""
    cat = catalog or load_catalog()
    statements, diags, norm = parse_statements(text)
    result = Analysis(None, diags, statements)
    headers = [s for s in statements if isinstance(s, SHeader)]
    if not statements:
        if not diags:
            _err(diags, Span(1, 1, 1, 2), "missing-header", "empty text: start with MATERIAL: Name or GROUP: Name")
        return result
    if not headers:
        first = statements[0]
        _err(diags, first.span, "missing-header", "the text must start with MATERIAL: Name or GROUP: Name")
    for extra in headers[1:]:
        _err(diags, extra.span, "duplicate-header", "only one MATERIAL or GROUP header per text")
    kind = "group" if headers and headers[0].key == "GROUP" else "material"
    graph = model.Graph(kind=kind, name=headers[0].name if headers else "")
    result.graph = graph

    # interface
    iface_names: dict[str, dict[str, str]] = {"INPUT": {}, "OUTPUT": {}}  # dsl name -> real name
    iface_kinds: dict[str, dict[str, str]] = {"INPUT": {}, "OUTPUT": {}}  # real name -> socket kind
    for st in statements:
        if not isinstance(st, SIface):
            continue
        if kind != "group":
            _err(diags, st.span, "iface-in-material", f"{st.key} lines belong to a GROUP text, not a MATERIAL")
            continue
        socket_type = INTERFACE_BY_DSL.get(st.type)
        if socket_type is None:
            _err(diags, st.type_span, "unknown-socket-type",
                 f"unknown socket type {st.type!r}{_suggest(st.type, list(INTERFACE_BY_DSL))};"
                 f" one of {', '.join(INTERFACE_BY_DSL)}")
            socket_type = "NodeSocketFloat"
        key = dsl_name(st.name)
        if key in iface_names[st.key]:
            _err(diags, st.name_span, "duplicate-socket", f"{st.key} {st.name!r} is declared twice")
            continue
        iface_names[st.key][key] = st.name
        iface_kinds[st.key][st.name] = INTERFACE_SOCKET_KIND[socket_type]
        sock = model.Socket(name=st.name, socket_type=socket_type)
        if st.default is not None:
            if st.key == "OUTPUT" or socket_type == "NodeSocketShader":
                _err(diags, st.default.span, "bad-value", "only non-shader INPUTs take a default value")
            else:
                fake = {"name": st.name, "type": INTERFACE_SOCKET_KIND[socket_type],
                        "default": [0.0, 0.0, 0.0, 0.0] if socket_type == "NodeSocketColor" else [0.0] * 3}
                value, problem = _coerce_socket_value(fake, st.default)
                if problem:
                    _err(diags, st.default.span, "bad-value", problem)
                else:
                    sock.default = value
        for p in st.params:
            if p.name not in IFACE_OPTIONS:
                _err(diags, p.name_span, "unknown-param", f"interface sockets take {', '.join(IFACE_OPTIONS)}")
            elif not isinstance(p.value.data, (int, float)) or isinstance(p.value.data, bool):
                _err(diags, p.value.span, "bad-value", f"{p.name} takes a number")
            else:
                setattr(sock, f"{p.name}_value", float(p.value.data))
        (graph.inputs if st.key == "INPUT" else graph.outputs).append(sock)

    # nodes
    specs: dict[str, NodeSpec | None] = {}
    for st in statements:
        if not isinstance(st, SNode):
            continue
        if st.id in specs:
            _err(diags, st.id_span, "duplicate-id",
                 f"node id {st.id} is declared twice (first on line {result.node_lines[st.id]})")
            continue
        bl = cat.resolve_type(st.type)
        spec = cat.spec(bl) if bl else None
        if spec is None:
            _err(diags, st.type_span, "unknown-node",
                 f"unknown node type {st.type!r}{_suggest(st.type, cat.type_names() + list(cat.aliases))}")
            bl = st.type
        elif spec.data.get("legacy"):
            _err(diags, st.type_span, "legacy-node",
                 f"{st.type} is a legacy type; Blender converts it to {cat.short(spec.data['replaced_by'])}"
                 " when it loads a file", "warning")
        if spec is not None and kind == "material" and bl in ("NodeGroupInput", "NodeGroupOutput"):
            _err(diags, st.type_span, "group-io-in-material", f"{st.type} belongs in a GROUP text")
        specs[st.id] = spec
        result.node_lines[st.id] = st.span.line
        node = model.Node(id=st.id, bl_idname=bl)
        if not _NODE_ID.match(st.id):
            _err(diags, st.id_span, "bad-id", "node ids are n1, n2, ...")
        _node_params(node, spec, st, diags, iface_names, kind)
        graph.nodes.append(node)
        if bl == "ShaderNodeGroup" and isinstance(node.props.get("node_tree"), str):
            if node.props["node_tree"] not in graph.groups_used:
                graph.groups_used.append(node.props["node_tree"])

    # links
    nodes = {n.id: n for n in graph.nodes}
    linked_inputs: dict[tuple[str, str], int] = {}
    for st in statements:
        if not isinstance(st, SLink):
            continue
        ends = []
        for ref, side in ((st.src, "outputs"), (st.dst, "inputs")):
            ends.append(_resolve_ref(ref, side, nodes, specs, diags, iface_names, iface_kinds, kind))
        (src_ident, src_kind), (dst_ident, dst_kind) = ends
        if src_ident is None or dst_ident is None:
            continue
        if src_kind and dst_kind and not cat.can_link(src_kind, dst_kind):
            _err(diags, st.span, "link-type",
                 f"Blender rejects a {src_kind.lower()} output into a {dst_kind.lower()} input"
                 f" ({st.src.node}.{st.src.socket} -> {st.dst.node}.{st.dst.socket})")
        key = (st.dst.node, dst_ident)
        spec = specs.get(st.dst.node)
        multi = bool(spec and (spec.socket("inputs", dst_ident) or {}).get("multi_input"))
        if key in linked_inputs and not multi:
            _err(diags, st.dst.span, "input-linked-twice",
                 f"{st.dst.node}.{st.dst.socket} is already linked on line {linked_inputs[key]}")
            continue
        linked_inputs[key] = st.span.line
        if st.src.node == st.dst.node:
            _err(diags, st.span, "cycle", f"{st.src.node} is linked to itself")
            continue
        graph.links.append(model.Link(st.src.node, src_ident, st.dst.node, dst_ident))
        result.link_lines.append(st.span.line)
        node = nodes[st.dst.node]
        if dst_ident in node.inputs:
            _err(diags, st.dst.span, "value-and-link",
                 f"{st.dst.node}.{st.dst.socket} has both a value and a link; Blender ignores the value",
                 "warning")

    _check_cycles(graph, result, diags)
    if kind == "material" and headers and not any(n.bl_idname == "ShaderNodeOutputMaterial" for n in graph.nodes):
        _err(diags, headers[0].span, "missing-output", "a material needs a MaterialOutput node")
    if kind == "group" and headers and graph.outputs and not any(n.bl_idname == "NodeGroupOutput" for n in graph.nodes):
        _err(diags, headers[0].span, "missing-output", "a group with OUTPUT sockets needs a GroupOutput node")
    diags.sort(key=lambda d: (d.line, d.column))
    return result


def _node_params(node: model.Node, spec: NodeSpec | None, st: SNode, diags: list[Diagnostic],
                 iface_names: dict[str, dict[str, str]], kind: str) -> None:
    seen: set[str] = set()
    # enum/bool props first: socket availability depends on them
    ordered = sorted(st.params, key=lambda p: 0 if (spec and p.name in spec.props) else 1)
    for p in ordered:
        if p.name in seen:
            _err(diags, p.name_span, "duplicate-param", f"{p.name} is set twice")
            continue
        seen.add(p.name)
        if p.name == LABEL_PARAM:
            if p.value.kind != "string":
                _err(diags, p.value.span, "bad-value", 'label takes a "string"')
            else:
                node.label = p.value.data
            continue
        if spec is None:
            continue
        if p.name in spec.props and spec.props[p.name]["type"] != "STRUCT":
            value, problem = _coerce_prop(p.name, spec.props[p.name], p.value)
            if problem:
                _err(diags, p.value.span, "unknown-enum" if problem.startswith("unknown") else "bad-value", problem)
            else:
                node.props[p.name] = value
            continue
        path = _struct_param(spec, p.name)
        if path is not None:
            value, problem = _check_struct(path, p.value)
            if problem:
                _err(diags, p.value.span, "bad-value", problem)
            else:
                node.props[path] = value
            continue
        if spec.is_group:
            # group sockets come from an interface: the call's own group (unknown here) or this GROUP's
            if node.bl_idname == "NodeGroupOutput" and kind == "group":
                real = iface_names["OUTPUT"].get(p.name)
                if real is None:
                    _err(diags, p.name_span, "unknown-socket", f"no OUTPUT {p.name!r} in this group")
                    continue
                node.inputs[real] = p.value.data
            elif node.bl_idname == "ShaderNodeGroup":
                node.inputs[p.name] = p.value.data
            else:
                _err(diags, p.name_span, "unknown-param", f"{st.type} takes no params")
            continue
        ident, candidates = spec.resolve_socket("inputs", p.name, node.props)
        if ident is None and not candidates and p.name.startswith(OUTPUT_PARAM):
            out_ident, _c = spec.resolve_socket("outputs", p.name[len(OUTPUT_PARAM):], node.props)
            out_sock = spec.socket("outputs", out_ident) if out_ident else None
            if out_sock is not None and out_sock["type"] in ("VALUE", "RGBA", "VECTOR", "INT", "BOOLEAN"):
                value, problem = _coerce_socket_value(out_sock, p.value)
                if problem:
                    _err(diags, p.value.span, "bad-value", problem)
                else:
                    node.props[OUTPUT_PROP + out_ident] = value
                continue
        if ident is None:
            if candidates:
                settings = ", ".join(f"{k}={v}" for k, v in spec.settings(node.props).items())
                _err(diags, p.name_span, "unavailable-socket",
                     f"{st.type} has no input {p.name} when {settings}")
            else:
                names = sorted(set(spec.dsl_names["inputs"].values())) + sorted(k for k in spec.props)
                _err(diags, p.name_span, "unknown-param",
                     f"{st.type} has no param or input {p.name!r}{_suggest(p.name, names)}")
            continue
        sock = spec.socket("inputs", ident)
        value, problem = _coerce_socket_value(sock, p.value)
        if problem:
            _err(diags, p.value.span, "bad-value", problem)
        else:
            node.inputs[ident] = value


def _resolve_ref(ref: SRef, side: str, nodes: dict[str, model.Node], specs: dict[str, NodeSpec | None],
                 diags: list[Diagnostic], iface_names: dict[str, dict[str, str]],
                 iface_kinds: dict[str, dict[str, str]], kind: str) -> tuple[str | None, str | None]:
    """(socket identifier or interface name, socket kind) of one end of a link, or (None, None)."""
    node = nodes.get(ref.node)
    if node is None:
        _err(diags, ref.node_span, "unknown-id", f"no node {ref.node}")
        return None, None
    spec = specs.get(ref.node)
    if spec is None:
        return None, None  # the unknown type is already reported
    if spec.is_group:
        if node.bl_idname == "ShaderNodeGroup" or kind != "group":
            return ref.socket, None
        which = "INPUT" if node.bl_idname == "NodeGroupInput" else "OUTPUT"
        if (node.bl_idname == "NodeGroupInput") != (side == "outputs"):
            _err(diags, ref.span, "wrong-direction",
                 f"{ref.node} is a {'GroupInput' if which == 'INPUT' else 'GroupOutput'}; "
                 f"it has only {'outputs' if which == 'INPUT' else 'inputs'}")
            return None, None
        real = iface_names[which].get(ref.socket)
        if real is None:
            _err(diags, ref.socket_span, "unknown-socket",
                 f"no {which} {ref.socket!r} in this group{_suggest(ref.socket, list(iface_names[which]))}")
            return None, None
        return real, iface_kinds[which][real]
    ident, candidates = spec.resolve_socket(side, ref.socket, node.props)
    if ident is None:
        word = "output" if side == "outputs" else "input"
        if candidates:
            settings = ", ".join(f"{k}={v}" for k, v in spec.settings(node.props).items())
            _err(diags, ref.socket_span, "unavailable-socket",
                 f"{spec.short} has no {word} {ref.socket} when {settings}")
        else:
            other = "inputs" if side == "outputs" else "outputs"
            if spec.resolve_socket(other, ref.socket, node.props)[0] is not None:
                _err(diags, ref.socket_span, "wrong-direction",
                     f"{ref.socket} is an {'input' if other == 'inputs' else 'output'} of {spec.short}, not an {word}")
            else:
                names = sorted({spec.dsl_names[side][s["identifier"]] for s in spec.sockets(side)
                                if spec.available(side, s["identifier"], node.props)})
                _err(diags, ref.socket_span, "unknown-socket",
                     f"{spec.short} has no {word} {ref.socket!r}{_suggest(ref.socket, names)};"
                     f" {word}s: {', '.join(names)}")
        return None, None
    return ident, spec.socket(side, ident)["type"]


def _check_cycles(graph: model.Graph, result: Analysis, diags: list[Diagnostic]) -> None:
    """Report the link that closes each cycle (shader trees must be acyclic)."""
    succ: dict[str, list[tuple[str, int]]] = {n.id: [] for n in graph.nodes}
    for link, line in zip(graph.links, result.link_lines):
        if link.src in succ:
            succ[link.src].append((link.dst, line))
    state: dict[str, int] = {}
    reported: set[int] = set()
    for start in succ:
        if state.get(start):
            continue
        stack = [(start, iter(succ[start]))]
        state[start] = 1
        path = [start]
        while stack:
            nid, it = stack[-1]
            step = next(it, None)
            if step is None:
                state[nid] = 2
                stack.pop()
                path.pop()
                continue
            nxt, line = step
            if state.get(nxt) == 1:
                if line not in reported:
                    reported.add(line)
                    loop = path[path.index(nxt):] + [nxt]
                    lines = result.statements
                    span = next((s.span for s in lines if isinstance(s, SLink) and s.span.line == line),
                                Span(line, 1, line, 2))
                    _err(diags, span, "cycle", "this link closes a cycle: " + " -> ".join(loop))
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(succ.get(nxt, []))))
                path.append(nxt)


def from_text(text: str) -> tuple[model.Graph | None, list[Diagnostic]]:
    """The graph of a text and every diagnostic; the graph is None when any diagnostic is an error."""
    result = analyse(text)
    if result.errors:
        return None, result.diagnostics
    return result.graph, result.diagnostics


# -- text from a graph -------------------------------------------------------------------------

def _id_key(node_id: str) -> tuple[int, str]:
    m = _NODE_ID.match(node_id)
    return (int(m.group(1)) if m else 1 << 30, node_id)


def _name(text: str) -> str:
    return text if _IDENT.match(text) and text not in KEYWORDS else quote(text)


def _socket_text(cat: BlenderCatalog, node: model.Node, side: str, ident: str) -> str:
    spec = cat.spec(node.bl_idname)
    if spec is None or spec.is_group:
        return dsl_name(ident)
    name = spec.dsl_names[side].get(ident)
    if name is None:
        return dsl_name(ident)
    # the name must lead back to this socket for the node's settings, else the identifier does
    back, _ = spec.resolve_socket(side, name, node.props)
    return name if back == ident else ident


def _socket_order(cat: BlenderCatalog, node: model.Node, side: str, ident: str,
                  iface: dict[str, list[str]] | None = None) -> int:
    """Position of a socket on its node: catalog order, or interface order for GroupInput/GroupOutput."""
    spec = cat.spec(node.bl_idname)
    if iface is not None and node.bl_idname in ("NodeGroupInput", "NodeGroupOutput"):
        names = iface["INPUT" if node.bl_idname == "NodeGroupInput" else "OUTPUT"]
        return names.index(ident) if ident in names else len(names)
    if spec is None or spec.is_group:
        return 0
    for i, s in enumerate(spec.sockets(side)):
        if s["identifier"] == ident:
            return i
    return 1 << 20


def _params_text(cat: BlenderCatalog, node: model.Node) -> str:
    spec = cat.spec(node.bl_idname)
    parts: list[str] = []
    if node.label:
        parts.append(f"{LABEL_PARAM}={quote(node.label)}")
    prop_order = list(spec.props) if spec else []
    struct_names: dict[str, str] = {}
    if spec:
        for prop in spec.props.values():
            if prop.get("type") == "STRUCT":
                for dsl, path in prop["params"].items():
                    struct_names[path] = dsl

    struct_order = list(struct_names)

    def prop_key(item: tuple[str, Any]) -> tuple[int, int, str]:
        k = item[0]
        root = k.split(".")[0]
        sub = struct_order.index(k) if k in struct_order else 0
        return (prop_order.index(root) if root in prop_order else len(prop_order), sub, k)

    for k, v in sorted(node.props.items(), key=prop_key):
        if v is None:
            continue
        if k.startswith(OUTPUT_PROP) and spec is not None:
            parts.append(f"{OUTPUT_PARAM}{_socket_text(cat, node, 'outputs', k[len(OUTPUT_PROP):])}={format_value(v)}")
            continue
        kind = spec.props.get(k, {}).get("type") if spec else None
        text = quote(v) if kind in ("STRING", "POINTER") and isinstance(v, str) else format_value(v)
        parts.append(f"{struct_names.get(k, k)}={text}")
    inputs = sorted(node.inputs.items(), key=lambda kv: (_socket_order(cat, node, "inputs", kv[0]), kv[0]))
    for ident, v in inputs:
        sock = spec.socket("inputs", ident) if spec and not spec.is_group else None
        quoted = isinstance(v, str) and (sock is None or sock["type"] == "STRING")
        parts.append(f"{_socket_text(cat, node, 'inputs', ident)}={quote(v) if quoted else format_value(v)}")
    return f" [{', '.join(parts)}]" if parts else ""


def to_text(graph: model.Graph) -> str:
    """Canonical DSL text of a graph: header, interface, nodes by id, links by source then target."""
    cat = load_catalog()
    lines = [f"{'GROUP' if graph.kind == 'group' else 'MATERIAL'}: {_name(graph.name or 'Untitled')}"]
    if graph.kind == "group":
        for key, socks in (("INPUT", graph.inputs), ("OUTPUT", graph.outputs)):
            for s in socks:
                line = f"{key} {_name(s.name)}: {INTERFACE_TYPES.get(s.socket_type, s.socket_type)}"
                if key == "INPUT" and s.default is not None and s.socket_type != "NodeSocketShader":
                    line += f" = {format_value(s.default)}"
                opts = [f"{o}={format_number(getattr(s, f'{o}_value'))}" for o in IFACE_OPTIONS
                        if getattr(s, f"{o}_value") is not None]
                if opts:
                    line += f" [{', '.join(opts)}]"
                lines.append(line)
    nodes = sorted(graph.nodes, key=lambda n: _id_key(n.id))
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        lines.append(f"NODE {n.id}: {cat.short(n.bl_idname)}{_params_text(cat, n)}")
    order = {n.id: i for i, n in enumerate(nodes)}
    iface = {"INPUT": [s.name for s in graph.inputs], "OUTPUT": [s.name for s in graph.outputs]}

    def link_key(link: model.Link) -> tuple:
        src, dst = by_id.get(link.src), by_id.get(link.dst)
        return (order.get(link.src, 1 << 20),
                _socket_order(cat, src, "outputs", link.src_socket, iface) if src else 0,
                link.src_socket, order.get(link.dst, 1 << 20),
                _socket_order(cat, dst, "inputs", link.dst_socket, iface) if dst else 0, link.dst_socket)

    for link in sorted(graph.links, key=link_key):
        src, dst = by_id.get(link.src), by_id.get(link.dst)
        s = _socket_text(cat, src, "outputs", link.src_socket) if src else dsl_name(link.src_socket)
        d = _socket_text(cat, dst, "inputs", link.dst_socket) if dst else dsl_name(link.dst_socket)
        lines.append(f"LINK {link.src}.{s} -> {link.dst}.{d}")
    return "\n".join(lines) + "\n"
