"""Structural exam scorer: compare an expected and an actual text as graphs.

Elements of a text: its PARENT class and CATEGORY, each VAR, each node (by canonical type),
each node param, each EXEC wire (with pin names) and each DATA wire (with pins
and type; a literal wired into a pin counts as that pin's param). The scorer finds the node correspondence
that maximises the number of agreeing elements — so node numbering, line order,
whitespace, alias spellings and the BLUEPRINT name never cost points — and
reports precision, recall and F1 (the headline score), plus buckets of every
difference pointing at its line in both texts, ready for a diff view.

It also computes the reference project's *line score* (set of trimmed lines,
recall only) so results compare with its published numbers.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .ast import Document
from .catalog import Catalog, default_catalog
from .graph import GEdge, Graph, build_graph, wl_rounds
from .parser import normalise, parse

BUCKETS = (
    "missing_nodes",
    "extra_nodes",
    "wrong_params",
    "missing_exec",
    "extra_exec",
    "missing_data",
    "extra_data",
    "missing_vars",
    "extra_vars",
    "header",
    "format_errors",
)


@dataclass(slots=True)
class ScoreResult:
    score: float  # F1 of matched elements
    precision: float
    recall: float
    line_score: float  # the reference project's recall-only line overlap
    matched: int
    expected_total: int
    actual_total: int
    buckets: dict[str, list[dict[str, Any]]]
    mapping: dict[str, str]  # expected node id -> actual node id
    actual_syntax_errors: int = 0
    node_types: dict[str, float] = field(default_factory=dict)  # expected node type -> share matched

    @property
    def exact(self) -> bool:
        return self.matched == self.expected_total == self.actual_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "line_score": round(self.line_score, 4),
            "matched": self.matched,
            "expected_total": self.expected_total,
            "actual_total": self.actual_total,
            "actual_syntax_errors": self.actual_syntax_errors,
            "mapping": self.mapping,
            "node_types": {k: round(v, 4) for k, v in self.node_types.items()},
            "buckets": self.buckets,
        }


def line_score(expected: str, actual: str) -> float:
    """The reference project's score: share of expected trimmed lines found in actual."""
    exp = {line.strip() for line in normalise(expected).split("\n") if line.strip()}
    if not exp:
        return 1.0
    act = {line.strip() for line in normalise(actual).split("\n") if line.strip()}
    return len(exp & act) / len(exp)


def _edge_key(e: GEdge, node_map: dict[str, str] | None) -> tuple | None:
    if node_map is None:
        src, dst = e.src, e.dst
    else:
        src = node_map.get(e.src) if e.src is not None else None
        dst = node_map.get(e.dst)
        if (e.src is not None and src is None) or dst is None:
            return None
    return (e.kind, src, e.src_pin if e.src is not None else "=" + e.src_pin, dst, e.dst_pin, e.type or "")


class _Matcher:
    def __init__(self, exp: Graph, act: Graph):
        self.exp, self.act = exp, act
        self.act_edges = Counter(k for e in act.edges if (k := _edge_key(e, None)) is not None)
        self.exp_edges_by_node: dict[str, list[GEdge]] = defaultdict(list)
        for e in exp.edges:
            if e.src is not None:
                self.exp_edges_by_node[e.src].append(e)
            self.exp_edges_by_node[e.dst].append(e)

    def param_agreement(self, e_id: str, a_id: str) -> int:
        ep, ap = self.exp.nodes[e_id].params, self.act.nodes[a_id].params
        return sum(1 for k, v in ep.items() if ap.get(k) == v)

    def edge_matches(self, mapping: dict[str, str]) -> int:
        wanted = Counter(k for e in self.exp.edges if (k := _edge_key(e, mapping)) is not None)
        return sum(min(c, self.act_edges[k]) for k, c in wanted.items())

    def objective(self, mapping: dict[str, str]) -> int:
        return len(mapping) + sum(self.param_agreement(e, a) for e, a in mapping.items()) + self.edge_matches(mapping)

    def match(self) -> dict[str, str]:
        exp, act = self.exp, self.act
        by_type_act: dict[str, list[str]] = defaultdict(list)
        for nid, n in act.nodes.items():
            by_type_act[n.type].append(nid)
        sigs_e, sigs_a = wl_rounds(exp, 3), wl_rounds(act, 3)
        candidates = []
        for e_id, en in exp.nodes.items():
            for a_id in by_type_act.get(en.type, ()):
                sim = 2 * self.param_agreement(e_id, a_id) + sum(
                    3 for se, sa in zip(sigs_e, sigs_a) if se[e_id] == sa[a_id]
                )
                # gentle preference for the same id and position, only as a tie-break
                tie = (1 if e_id == a_id else 0)
                candidates.append((sim, tie, e_id, a_id))
        candidates.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
        mapping: dict[str, str] = {}
        used: set[str] = set()
        for _, _, e_id, a_id in candidates:
            if e_id in mapping or a_id in used:
                continue
            mapping[e_id] = a_id
            used.add(a_id)
        return self._improve(mapping, by_type_act)

    def _improve(self, mapping: dict[str, str], by_type_act: dict[str, list[str]]) -> dict[str, str]:
        """Local search: swap or re-point same-type pairs while the objective rises."""
        best = self.objective(mapping)
        groups: dict[str, list[str]] = defaultdict(list)
        for e_id, n in self.exp.nodes.items():
            groups[n.type].append(e_id)
        ambiguous = {t: ids for t, ids in groups.items() if len(ids) > 1 or len(by_type_act.get(t, ())) > 1}
        for _ in range(20):
            improved = False
            for t, e_ids in ambiguous.items():
                a_ids = by_type_act.get(t, [])
                for i, e1 in enumerate(e_ids):
                    # re-point e1 to any same-type actual node (swapping with its holder)
                    for a in a_ids:
                        current = mapping.get(e1)
                        if current == a:
                            continue
                        holder = next((e for e, x in mapping.items() if x == a), None)
                        trial = dict(mapping)
                        trial[e1] = a
                        if holder is not None:
                            if current is None:
                                del trial[holder]
                            else:
                                trial[holder] = current
                        value = self.objective(trial)
                        if value > best:
                            mapping, best, improved = trial, value, True
            if not improved:
                break
        return mapping


def _line_text(doc: Document, line: int) -> str:
    lines = doc.text.split("\n")
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def _fold_literal_pins(g: Graph) -> Graph:
    """A literal wired into a pin is that pin's value: ``DATA false -> n2.PrintToScreen [Bool]`` and
    ``PrintString [PrintToScreen=false]`` are one graph (Unreal stores both as the pin's default), so
    they score alike. A literal for a pin the node already sets stays an edge (and an error)."""
    kept = []
    for e in g.edges:
        node = g.nodes.get(e.dst)
        if e.kind == "DATA" and e.src is None and node is not None and e.dst_pin not in node.params:
            node.params[e.dst_pin] = e.src_pin
            node.param_order.append(e.dst_pin)
        else:
            kept.append(e)
    g.edges = kept
    return g


def score(
    expected: str | Document,
    actual: str | Document,
    catalog: Catalog | None = None,
) -> ScoreResult:
    """Compare two texts as graphs (never raises; an unparsable actual scores what parsed)."""
    cat = catalog if catalog is not None else default_catalog()
    exp_doc = expected if isinstance(expected, Document) else parse(expected)
    act_doc = actual if isinstance(actual, Document) else parse(actual)
    exp, act = _fold_literal_pins(build_graph(exp_doc, cat)), _fold_literal_pins(build_graph(act_doc, cat))
    mapping = _Matcher(exp, act).match()
    inverse = {a: e for e, a in mapping.items()}
    buckets: dict[str, list[dict[str, Any]]] = {b: [] for b in BUCKETS}
    matched = 0

    def item(text: str, exp_line: int | None, act_line: int | None, **extra: Any) -> dict[str, Any]:
        return {"text": text, "expected_line": exp_line, "actual_line": act_line, **extra}

    # headers: the parent class and category (the BLUEPRINT name is free)
    exp_total = act_total = 0
    for key in ("PARENT", "CATEGORY"):
        ev, av = exp.headers.get(key), act.headers.get(key)
        exp_total += 1 if ev else 0
        act_total += 1 if av else 0
        if ev and ev == av:
            matched += 1
        elif ev or av:
            buckets["header"].append(
                item(f"{key}: expected {ev}, got {av}", exp.header_lines.get(key), act.header_lines.get(key),
                     expected=ev, actual=av)
            )

    # vars: equal when name, type and default agree (a multiset: duplicates count)
    remaining = Counter((v.name, v.type, v.default) for v in act.vars)
    act_by_name = {v.name: v for v in act.vars}
    exp_by_name = {v.name: v for v in exp.vars}
    for v in exp.vars:
        exp_total += 1
        key = (v.name, v.type, v.default)
        if remaining[key] > 0:
            remaining[key] -= 1
            matched += 1
        else:
            other = act_by_name.get(v.name)
            buckets["missing_vars"].append(item(_line_text(exp_doc, v.line), v.line, other.line if other else None))
    wanted = Counter((v.name, v.type, v.default) for v in exp.vars)
    for v in act.vars:
        act_total += 1
        key = (v.name, v.type, v.default)
        if wanted[key] > 0:
            wanted[key] -= 1
        else:
            other = exp_by_name.get(v.name)
            buckets["extra_vars"].append(item(_line_text(act_doc, v.line), other.line if other else None, v.line))

    # nodes and params
    type_hits: dict[str, list[int]] = defaultdict(list)
    for e_id, en in exp.nodes.items():
        exp_total += 1 + len(en.params)
        a_id = mapping.get(e_id)
        if a_id is None:
            buckets["missing_nodes"].append(item(_line_text(exp_doc, en.line), en.line, None, node=e_id, type=en.type))
            type_hits[en.type].append(0)
            continue
        an = act.nodes[a_id]
        matched += 1
        type_hits[en.type].append(1)
        for k, v in en.params.items():
            if an.params.get(k) == v:
                matched += 1
            else:
                buckets["wrong_params"].append(
                    item(f"{en.type}.{k}: expected {v}, got {an.params.get(k)}", en.line, an.line,
                         node=e_id, actual_node=a_id, param=k, expected=v, actual=an.params.get(k))
                )
        for k, v in an.params.items():
            if k not in en.params:
                buckets["wrong_params"].append(
                    item(f"{an.type}.{k}: unexpected {v}", en.line, an.line,
                         node=e_id, actual_node=a_id, param=k, expected=None, actual=v)
                )
    for a_id, an in act.nodes.items():
        act_total += 1 + len(an.params)
        if a_id not in inverse:
            buckets["extra_nodes"].append(item(_line_text(act_doc, an.line), None, an.line, node=a_id, type=an.type))

    # wires
    act_by_key: dict[tuple, list[GEdge]] = defaultdict(list)
    for e in act.edges:
        k = _edge_key(e, None)
        if k is not None:
            act_by_key[k].append(e)
    consumed: set[int] = set()
    for e in exp.edges:
        exp_total += 1
        k = _edge_key(e, mapping)
        hit = None
        if k is not None:
            for cand in act_by_key.get(k, ()):
                if id(cand) not in consumed:
                    hit = cand
                    break
        bucket = "missing_exec" if e.kind == "EXEC" else "missing_data"
        if hit is not None:
            consumed.add(id(hit))
            matched += 1
        else:
            buckets[bucket].append(item(_line_text(exp_doc, e.line), e.line, None))
    for e in act.edges:
        act_total += 1
        if id(e) not in consumed:
            bucket = "extra_exec" if e.kind == "EXEC" else "extra_data"
            buckets[bucket].append(item(_line_text(act_doc, e.line), None, e.line))

    # actual lines that did not parse at all are extra elements (format errors);
    # junk after a complete statement is reported by the validator but costs nothing here
    recovered_lines = {st.span.line for st in act_doc.statements}
    for d in act_doc.errors:
        if d.line not in recovered_lines:
            act_total += 1
            buckets["format_errors"].append(item(_line_text(act_doc, d.line), None, d.line, message=d.message))

    precision = matched / act_total if act_total else (1.0 if exp_total == 0 else 0.0)
    recall = matched / exp_total if exp_total else (1.0 if act_total == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ScoreResult(
        score=f1,
        precision=precision,
        recall=recall,
        line_score=line_score(exp_doc.text, act_doc.text),
        matched=matched,
        expected_total=exp_total,
        actual_total=act_total,
        buckets=buckets,
        mapping=dict(sorted(mapping.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        actual_syntax_errors=len(act_doc.errors),
        node_types={t: sum(h) / len(h) for t, h in type_hits.items()},
    )
