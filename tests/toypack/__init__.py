"""Toy: a language pack written the way a third party would, outside dsl/ and engine/.

Three node types (Source, Double, Sink) in its own grammar, catalog (dsl's catalog model) and
starter lesson. It uses only the public pieces a pack may use: the LanguagePack interface, the
catalog model, Diagnostic, FormatError and ScoreResult. tests/test_toypack.py registers it as an
installed distribution (an entry point in the ``bpllm.languages`` group) and drives the real CLI.
"""
from __future__ import annotations

import random
from collections import Counter
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from dsl.ast import Diagnostic
from dsl.catalog import Catalog
from dsl.formatter import FormatError
from dsl.packs import Highlight, LanguagePack
from dsl.scorer import BUCKETS, ScoreResult

NUMBERS = list(range(1, 13))
LABELS = ["total", "result", "score", "answer", "sum", "count", "value", "output"]
TIMES = {0: "", 1: "double it", 2: "double it twice", 3: "double it three times"}


@lru_cache(maxsize=1)
def _lark():
    from lark import Lark

    text = (resources.files(__name__) / "grammar.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", lexer="contextual", start=["start", "line"])


@lru_cache(maxsize=1)
def _catalog() -> Catalog:
    import json

    data = json.loads((resources.files(__name__) / "catalog.json").read_text(encoding="utf-8"))
    return Catalog(data, source="toypack/catalog.json")


class _Doc:
    """What a toy text says: header name, nodes (id -> type, params, line), links, syntax errors."""

    def __init__(self) -> None:
        self.header: str | None = None
        self.nodes: dict[str, tuple[str, dict[str, tuple[str, str]], int]] = {}
        self.links: list[tuple[str, str, str, str, int]] = []
        self.diags: list[Diagnostic] = []


def _parse(text: str) -> _Doc:
    from lark.exceptions import UnexpectedInput

    doc = _Doc()
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            tree = _lark().parse(raw, start="line")
        except UnexpectedInput as exc:
            col = getattr(exc, "column", 1) or 1
            doc.diags.append(Diagnostic(number, col, number, col + 1, "error", "syntax",
                                        f"cannot read this line at column {col}; a line is TOY:, NODE or LINK"))
            continue
        if not tree.children:
            continue
        st = tree.children[0]
        ch = [str(c) if not hasattr(c, "data") else c for c in st.children]
        if st.data == "header":
            doc.header = ch[0]
        elif st.data == "node_decl":
            params: dict[str, tuple[str, str]] = {}
            if len(ch) > 2:
                for p in ch[2].children:
                    name, value = p.children
                    params[str(name)] = (value.data, str(value.children[0]))
            if ch[0] in doc.nodes:
                doc.diags.append(Diagnostic(number, 1, number, len(raw) + 1, "error", "duplicate-node",
                                            f"node {ch[0]} is declared twice; give it a new id"))
            doc.nodes[ch[0]] = (ch[1], params, number)
        elif st.data == "link":
            doc.links.append((ch[0], ch[1], ch[2], ch[3], number))
    return doc


class ToyPack(LanguagePack):
    """The toy language: own grammar and checks over dsl's catalog model."""

    def root(self) -> Traversable:
        return resources.files(__name__)

    def grammar_text(self) -> str:
        return (self.root() / "grammar.lark").read_text(encoding="utf-8")

    def catalog(self) -> Catalog:
        return _catalog()

    def system_prompt(self) -> str:
        return (self.starter_dir() / "system_prompt.txt").read_text(encoding="utf-8").strip()

    def starter_dir(self) -> Traversable:
        return self.root() / "starter"

    def vocabulary(self) -> list[str]:
        cat = _catalog()
        words = ["TOY", "NODE", "LINK"]
        for name, spec in cat.nodes.items():
            words += [name, *(p.name for p in spec.pins), *(p.name for p in spec.params)]
        return words

    def validate(self, text: str, *, unknown_nodes: str = "error") -> list[Diagnostic]:
        doc = _parse(text)
        diags = list(doc.diags)
        cat = _catalog()

        def err(line: int, code: str, message: str, severity: str = "error") -> None:
            diags.append(Diagnostic(line, 1, line, 2, severity, code, message))  # type: ignore[arg-type]

        if doc.header is None and not doc.diags:
            err(1, "missing-header", "a toy text starts with TOY: Name")
        if not doc.nodes and not doc.diags:
            err(1, "empty-graph", "no NODE line; declare at least one node")
        for node_id, (kind, params, line) in doc.nodes.items():
            spec = cat.get(kind)
            if spec is None:
                err(line, "unknown-node", f"unknown node type {kind}; one of {', '.join(cat.nodes)}",
                    "warning" if unknown_nodes == "warning" else "error")
                continue
            known = {p.name: p for p in spec.params}
            for name, (vkind, _value) in params.items():
                if name not in known:
                    err(line, "unknown-param", f"{kind} has no param {name}")
                elif (vkind == "number") != (known[name].type == "Int"):
                    err(line, "bad-param", f"{kind}.{name} takes a {known[name].type}")
            for name, p in known.items():
                if p.required and name not in params:
                    err(line, "missing-param", f"{kind} needs [{name}=...]")
        fed: Counter[tuple[str, str]] = Counter()
        for src, spin, dst, dpin, line in doc.links:
            for node_id, pin, direction in ((src, spin, "out"), (dst, dpin, "in")):
                if node_id not in doc.nodes:
                    err(line, "unknown-node-id", f"{node_id} is not declared; add a NODE line")
                    continue
                spec = cat.get(doc.nodes[node_id][0])
                if spec is not None and spec.pin(pin, direction) is None:
                    err(line, "unknown-pin", f"{doc.nodes[node_id][0]} has no {direction}put pin {pin}")
            fed[(dst, dpin)] += 1
            if fed[(dst, dpin)] == 2:
                err(line, "multiple-sources", f"{dst}.{dpin} is fed twice; keep one LINK")
        for node_id, (kind, _params, line) in doc.nodes.items():
            spec = cat.get(kind)
            for p in spec.pins if spec is not None else ():
                if p.direction == "in" and p.required and not fed[(node_id, p.name)]:
                    err(line, "unconnected-input", f"{node_id}.{p.name} needs a LINK into it")
        return sorted(diags, key=lambda d: (d.line, d.column, d.code))

    def format(self, text: str) -> str:
        doc = _parse(text)
        if doc.diags:
            first = doc.diags[0]
            raise FormatError(f"line {first.line}:{first.column}: {first.message}")
        order = sorted(doc.nodes, key=lambda n: int(n[1:]))
        out = [f"TOY: {doc.header or 'Graph'}", ""]
        for node_id in order:
            kind, params, _line = doc.nodes[node_id]
            spec = _catalog().get(kind)
            names = [p.name for p in spec.params if p.name in params] if spec else sorted(params)
            names += sorted(set(params) - set(names))
            shown = ", ".join(f"{n}={params[n][1]}" for n in names)
            out.append(f"NODE {node_id}: {kind}" + (f" [{shown}]" if shown else ""))
        if doc.links:
            out.append("")
            out += [f"LINK {s}.{sp} -> {d}.{dp}" for s, sp, d, dp, _ in sorted(doc.links, key=lambda x: x[4])]
        return "\n".join(out) + "\n"

    def node_types(self, text: str) -> list[str]:
        return [kind for kind, _params, _line in _parse(text).nodes.values()]

    def score(self, expected: str, actual: str) -> ScoreResult:
        """F1 over node (type, params) and link (type.pin -> type.pin) multisets."""
        exp, act = _parse(expected), _parse(actual)

        def items(doc: _Doc) -> Counter:
            c: Counter = Counter()
            for kind, params, _ in doc.nodes.values():
                c[("node", kind, tuple(sorted((k, v[1]) for k, v in params.items())))] += 1
            for s, sp, d, dp, _ in doc.links:
                if s in doc.nodes and d in doc.nodes:
                    c[("link", f"{doc.nodes[s][0]}.{sp}", f"{doc.nodes[d][0]}.{dp}")] += 1
            return c

        e, a = items(exp), items(act)
        matched = sum((e & a).values())
        et, at = sum(e.values()), sum(a.values())
        precision = matched / at if at else (1.0 if not et else 0.0)
        recall = matched / et if et else (1.0 if not at else 0.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        buckets: dict[str, list[dict[str, Any]]] = {b: [] for b in BUCKETS}
        for key, n in (e - a).items():
            buckets["missing_nodes" if key[0] == "node" else "missing_data"] += [{"text": str(key)}] * n
        for key, n in (a - e).items():
            buckets["extra_nodes" if key[0] == "node" else "extra_data"] += [{"text": str(key)}] * n
        exp_lines = {ln.strip() for ln in expected.splitlines() if ln.strip()}
        act_lines = {ln.strip() for ln in actual.splitlines() if ln.strip()}
        line_score = len(exp_lines & act_lines) / len(exp_lines) if exp_lines else 0.0
        kinds = Counter(k for k, _, _ in exp.nodes.values())
        got = Counter(k for k, _, _ in act.nodes.values())
        node_types = {k: min(1.0, got[k] / n) for k, n in kinds.items()}
        return ScoreResult(f1, precision, recall, line_score, matched, et, at, buckets, {},
                           actual_syntax_errors=len(act.diags), node_types=node_types)

    def synthesize(self, count: int, seed: int, focus_nodes: list[str] | None = None) -> list[dict[str, str]]:
        """Source -> Double*k -> Sink chains with their English, deterministic for a seed."""
        rng = random.Random(seed)
        rows: list[dict[str, str]] = []
        seen: set[str] = set()
        focus = [f for f in (focus_nodes or ["Source", "Double", "Sink"]) if f in _catalog().nodes] or ["Source"]
        for _ in range(count * 20):
            if len(rows) >= count:
                break
            want = focus[len(rows) % len(focus)]
            k = rng.randint(1 if want == "Double" else 0, 3)
            value, label = rng.choice(NUMBERS), rng.choice(LABELS)
            lines = ["TOY: Chain", "", f"NODE n1: Source [value={value}]"]
            lines += [f"NODE n{i}: Double" for i in range(2, k + 2)]
            lines.append(f'NODE n{k + 2}: Sink [label="{label}"]')
            lines.append("")
            lines += [f"LINK n{i}.out -> n{i + 1}.in" for i in range(1, k + 2)]
            output = "\n".join(lines) + "\n"
            verb = rng.choice(["Take", "Start from", "Begin with"])
            middle = f", {TIMES[k]}" if k else ""
            instruction = f'{verb} {value}{middle} and show it as "{label}".'
            if instruction in seen:
                continue
            seen.add(instruction)
            rows.append({"instruction": instruction, "output": output, "pattern": f"chain:{want}",
                         "focus": want, "source": "synthetic-toy"})
        return rows


PACK = ToyPack(
    name="toy",
    title="Toy chains: Source -> Double -> Sink (the test pack)",
    header_keys=("TOY",),
    suffixes=(".toy",),
    highlights=(Highlight(r"^\s*(TOY|NODE|LINK)\b", "keyword", 1),
                Highlight(r"\bn[0-9]+\b", "node"),
                Highlight(r'"[^"\n]*"?', "string")),
    provides={"grammar": "grammar.lark", "catalog": "catalog.json (3 node types)"},
)
