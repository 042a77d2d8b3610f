"""Structural score of a material text against the expected one (the ideas of dsl/scorer.py).

Elements: each node (by bl_idname), each of its non-default params (enum/bool props and unlinked
input values, compared in canonical spelling), each link (with socket identifiers), and for groups
each interface socket (name, type, default). Nodes are matched by type, agreeing params and
Weisfeiler-Lehman neighbourhood signatures, then improved by local search on the number of agreeing
elements, so node numbering, line order and alias spellings never cost points. Buckets reuse the
Blueprint scorer's names (links are ``*_data``, interface sockets ``*_vars``) so the exam diff view
shows both languages alike.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from dsl.scorer import BUCKETS, ScoreResult, line_score

from . import model
from .text import Analysis, analyse, format_value


@dataclass(slots=True)
class _N:
    id: str
    type: str
    params: dict[str, str]
    line: int


def _nodes(a: Analysis) -> dict[str, _N]:
    g = a.graph
    out: dict[str, _N] = {}
    if g is None:
        return out
    for n in g.nodes:
        params = {k: format_value(v) for k, v in n.props.items()}
        params.update({"in:" + k: format_value(v) for k, v in n.inputs.items()})
        out[n.id] = _N(n.id, n.bl_idname, params, a.node_lines.get(n.id, 0))
    return out


def _links(a: Analysis) -> list[tuple[model.Link, int]]:
    return list(zip(a.graph.links, a.link_lines)) if a.graph is not None else []


def _wl(nodes: dict[str, _N], links: list[tuple[model.Link, int]], rounds: int = 3) -> list[dict[str, str]]:
    """Neighbourhood signatures per round: a node's type, then its typed links' signatures."""
    label = {i: n.type for i, n in nodes.items()}
    result = []
    for _ in range(rounds):
        nxt = {}
        for i in nodes:
            ins = sorted(f"<{l.dst_socket}<{l.src_socket}<{label.get(l.src, '?')}" for l, _ in links if l.dst == i)
            outs = sorted(f">{l.src_socket}>{l.dst_socket}>{label.get(l.dst, '?')}" for l, _ in links if l.src == i)
            nxt[i] = hashlib.sha1("|".join([label[i], *ins, *outs]).encode()).hexdigest()[:16]
        label = nxt
        result.append(label)
    return result


def _match(exp: dict[str, _N], act: dict[str, _N], exp_links: list, act_links: list) -> dict[str, str]:
    act_keys = Counter((l.src, l.src_socket, l.dst, l.dst_socket) for l, _ in act_links)

    def objective(mapping: dict[str, str]) -> int:
        value = len(mapping)
        for e, a in mapping.items():
            value += sum(1 for k, v in exp[e].params.items() if act[a].params.get(k) == v)
        wanted = Counter((mapping.get(l.src), l.src_socket, mapping.get(l.dst), l.dst_socket) for l, _ in exp_links)
        value += sum(min(c, act_keys[k]) for k, c in wanted.items() if k[0] and k[2])
        return value

    sig_e, sig_a = _wl(exp, exp_links), _wl(act, act_links)
    by_type: dict[str, list[str]] = defaultdict(list)
    for i, n in act.items():
        by_type[n.type].append(i)
    cands = []
    for e, en in exp.items():
        for a in by_type.get(en.type, ()):
            sim = 2 * sum(1 for k, v in en.params.items() if act[a].params.get(k) == v)
            sim += sum(3 for se, sa in zip(sig_e, sig_a) if se[e] == sa[a])
            cands.append((-sim, 0 if e == a else 1, e, a))
    cands.sort()
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for _, _, e, a in cands:
        if e not in mapping and a not in used:
            mapping[e] = a
            used.add(a)
    best = objective(mapping)
    for _ in range(10):  # local search: re-point a node to another of its type (swapping holders)
        improved = False
        for e, en in exp.items():
            for a in by_type.get(en.type, ()):
                cur = mapping.get(e)
                if cur == a:
                    continue
                holder = next((x for x, y in mapping.items() if y == a), None)
                trial = dict(mapping)
                trial[e] = a
                if holder is not None:
                    if cur is None:
                        del trial[holder]
                    else:
                        trial[holder] = cur
                value = objective(trial)
                if value > best:
                    mapping, best, improved = trial, value, True
        if not improved:
            break
    return mapping


def _line(text: str, line: int) -> str:
    lines = text.split("\n")
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def score(expected: str, actual: str) -> ScoreResult:
    """Compare two material texts as graphs (never raises; an unparsable actual scores what parsed)."""
    ea, aa = analyse(expected), analyse(actual)
    exp, act = _nodes(ea), _nodes(aa)
    exp_links, act_links = _links(ea), _links(aa)
    mapping = _match(exp, act, exp_links, act_links)
    inverse = {a: e for e, a in mapping.items()}
    buckets: dict[str, list[dict[str, Any]]] = {b: [] for b in BUCKETS}
    matched = exp_total = act_total = 0
    exp_text, act_text = expected.replace("\r\n", "\n"), actual.replace("\r\n", "\n")

    def item(text: str, el: int | None, al: int | None, **extra: Any) -> dict[str, Any]:
        return {"text": text, "expected_line": el, "actual_line": al, **extra}

    # group interface sockets
    def iface(a: Analysis) -> Counter:
        g = a.graph
        if g is None or g.kind != "group":
            return Counter()
        return Counter([("INPUT", s.name, s.socket_type, format_value(s.default) if s.default is not None else "")
                        for s in g.inputs] + [("OUTPUT", s.name, s.socket_type, "") for s in g.outputs])

    ei, ai = iface(ea), iface(aa)
    exp_total += sum(ei.values())
    act_total += sum(ai.values())
    matched += sum((ei & ai).values())
    for k in (ei - ai).elements():
        buckets["missing_vars"].append(item(f"{k[0]} {k[1]}: {k[2]}", None, None))
    for k in (ai - ei).elements():
        buckets["extra_vars"].append(item(f"{k[0]} {k[1]}: {k[2]}", None, None))

    hits: dict[str, list[int]] = defaultdict(list)
    for e, en in exp.items():
        exp_total += 1 + len(en.params)
        a = mapping.get(e)
        if a is None:
            buckets["missing_nodes"].append(item(_line(exp_text, en.line), en.line, None, node=e, type=en.type))
            hits[en.type].append(0)
            continue
        an = act[a]
        matched += 1
        hits[en.type].append(1)
        for k, v in en.params.items():
            if an.params.get(k) == v:
                matched += 1
            else:
                buckets["wrong_params"].append(item(f"{en.type}.{k}: expected {v}, got {an.params.get(k)}",
                                                    en.line, an.line, node=e, actual_node=a, param=k,
                                                    expected=v, actual=an.params.get(k)))
        for k, v in an.params.items():
            if k not in en.params:
                buckets["wrong_params"].append(item(f"{an.type}.{k}: unexpected {v}", en.line, an.line, node=e,
                                                    actual_node=a, param=k, expected=None, actual=v))
    for a, an in act.items():
        act_total += 1 + len(an.params)
        if a not in inverse:
            buckets["extra_nodes"].append(item(_line(act_text, an.line), None, an.line, node=a, type=an.type))

    pool: dict[tuple, list[int]] = defaultdict(list)
    for link, line in act_links:
        pool[(link.src, link.src_socket, link.dst, link.dst_socket)].append(line)
    for link, line in exp_links:
        exp_total += 1
        key = (mapping.get(link.src), link.src_socket, mapping.get(link.dst), link.dst_socket)
        if pool.get(key):
            pool[key].pop()
            matched += 1
        else:
            buckets["missing_data"].append(item(_line(exp_text, line), line, None))
    act_total += len(act_links)
    for lines in pool.values():
        for line in lines:
            buckets["extra_data"].append(item(_line(act_text, line), None, line))
    parsed_lines = {s.span.line for s in aa.statements}
    for d in aa.diagnostics:
        if d.code == "syntax" and d.line not in parsed_lines:
            act_total += 1
            buckets["format_errors"].append(item(_line(act_text, d.line), None, d.line, message=d.message))

    precision = matched / act_total if act_total else (1.0 if exp_total == 0 else 0.0)
    recall = matched / exp_total if exp_total else (1.0 if act_total == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ScoreResult(
        score=f1, precision=precision, recall=recall, line_score=line_score(expected, actual),
        matched=matched, expected_total=exp_total, actual_total=act_total, buckets=buckets,
        mapping=dict(sorted(mapping.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        actual_syntax_errors=sum(1 for d in aa.diagnostics if d.code == "syntax"),
        node_types={t: sum(h) / len(h) for t, h in hits.items()},
    )
