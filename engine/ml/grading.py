"""Grading (step 7): error taxonomy, node mastery, weakest nodes, the drafted next lesson.

Everything here reads exam records (``engine.ml.exam``) and the structural scorer's
buckets; nothing needs the model. Mastery of a node type is the mean structural
score (0–100) of the exam prompts whose gold graph uses that type, with the count
of prompts behind it and a band: the reference's >= 97 production, >= 95 product (product quality
with a retry), >= 85 mastered; below mastery >= 60 learning, else struggling.
"""
from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from itertools import zip_longest
from pathlib import Path
from typing import Any, Iterable, Sequence

from dsl.catalog import default_catalog
from dsl.packs import LanguagePack
from dsl.parser import parse
from dsl.validator import validate as blueprint_validate
from engine.dataset.synthetic import generate as blueprint_generate

MASTERED, LEARNING = 85.0, 60.0
PRODUCT, PRODUCTION = 95.0, 97.0  # the reference: 95 = product quality with retry, 97 = production
BANDS = ("production", "product", "mastered", "learning", "struggling")  # best first

TAXONOMY = {
    "missing_nodes": "missing node",
    "extra_nodes": "extra node",
    "wrong_params": "wrong param",
    "missing_exec": "missing EXEC",
    "extra_exec": "extra EXEC",
    "missing_data": "missing DATA",
    "extra_data": "extra DATA",
    "missing_vars": "missing VAR",
    "extra_vars": "extra VAR",
    "header": "header",
    "format_errors": "format error",
}


def band(score: float) -> str:
    """The node's band; every band from 'mastered' up counts as mastered (score >= MASTERED)."""
    if score >= MASTERED:
        return "production" if score >= PRODUCTION else "product" if score >= PRODUCT else "mastered"
    return "learning" if score >= LEARNING else "struggling"


def classify_errors(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts per error class over all records, plus the prompts hit by each (the reference taxonomy)."""
    totals: Counter[str] = Counter()
    prompts: dict[str, list[str]] = defaultdict(list)
    extra_lines = 0
    for r in records:
        comp = r.get("comparison", {})
        for bucket in TAXONOMY:
            n = len(comp.get(bucket) or [])
            if n:
                totals[bucket] += n
                prompts[bucket].append(f"{r.get('lesson_id')}:{r.get('prompt_id')}")
        if not r.get("validation", {}).get("parses", True):
            totals["format_errors"] += 1
        extra_lines += len(comp.get("extra_nodes") or []) + len(comp.get("extra_exec") or []) + len(
            comp.get("extra_data") or [])
    return {
        "totals": {TAXONOMY[k]: v for k, v in totals.most_common()},
        "by_bucket": dict(totals),
        "prompts": {k: v for k, v in prompts.items()},
        "extra_lines": extra_lines,
        "records": len(records),
        "perfect": sum(1 for r in records if r.get("comparison", {}).get("exact")),
    }


def gold_node_types(record: dict[str, Any], catalog=None) -> set[str]:
    return node_types_of(record.get("expected_dsl", ""), catalog)


def node_mastery(
    records: Sequence[dict[str, Any]],
    previous: dict[str, float] | None = None,
    catalog=None,
) -> list[dict[str, Any]]:
    """Per node type: mean structural score of the prompts using it, count, band, delta vs ``previous``."""
    scores: dict[str, list[float]] = defaultdict(list)
    for r in records:
        s = float(r.get("comparison", {}).get("score", 0.0))
        for node in gold_node_types(r, catalog):
            scores[node].append(s)
    table = []
    for node, values in scores.items():
        mean = sum(values) / len(values)
        prev = (previous or {}).get(node)
        table.append({
            "node": node,
            "score": round(mean, 2),
            "n": len(values),
            "band": band(mean),
            "delta": round(mean - prev, 2) if prev is not None else None,
        })
    table.sort(key=lambda row: (row["score"], -row["n"], row["node"]))
    return table


# two-sided 95 % Student t quantiles by degrees of freedom (no scipy in the engine's dependencies)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(df: int) -> float:
    """The 95 % two-sided t quantile for ``df`` degrees of freedom (the nearest tabulated df below)."""
    if df < 1:
        return float("inf")
    return _T95[max(k for k in _T95 if k <= df)] if df < 1000 else 1.960


def paired_node_changes(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], catalog=None,
                        fall: float = 5.0) -> dict[str, dict[str, Any]]:
    """Per node type, the change in mastery from ``old`` to ``new`` exam records *of the same prompts*,
    with its paired 95 % interval.

    Mastery moves when prompts flip, and between any two trainings some prompts flip (measured here:
    per-prompt scores move with a standard deviation of ~11 points even with no new lesson). A node in
    7 prompts whose one prompt flips moves 10 points; the interval says whether the prompts *agree* it
    moved. ``significant_fall``: fell more than ``fall`` points and the interval lies below zero.
    """
    key = lambda r: (r.get("lesson_id"), r.get("prompt_id"))  # noqa: E731
    before = {key(r): r for r in old}
    diffs: dict[str, list[float]] = defaultdict(list)
    olds: dict[str, list[float]] = defaultdict(list)
    for r in new:
        prev = before.get(key(r))
        if prev is None:
            continue
        a = float(prev.get("comparison", {}).get("score", 0.0))
        b = float(r.get("comparison", {}).get("score", 0.0))
        for node in gold_node_types(prev, catalog):
            diffs[node].append(b - a)
            olds[node].append(a)
    out: dict[str, dict[str, Any]] = {}
    for node, d in diffs.items():
        n = len(d)
        mean = sum(d) / n
        sd = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5 if n > 1 else float("inf")
        half = t95(n - 1) * sd / n ** 0.5 if n > 1 else float("inf")
        old_mean = sum(olds[node]) / n
        out[node] = {
            "old": round(old_mean, 2), "new": round(old_mean + mean, 2), "delta": round(mean, 2), "n": n,
            "low": round(mean - half, 2) if n > 1 else None, "high": round(mean + half, 2) if n > 1 else None,
            "flipped": sum(1 for x in d if x != 0),
            "significant_fall": bool(n > 1 and mean < -fall and mean + half < 0),
        }
    return out


# how the prompts two versions both answered split by what each version had trained on
SEEN_GROUPS = {
    "unseen": "unseen by both (generalisation)",
    "seen": "seen by both (trained on before either)",
    "newly_seen": "trained on between the two (unseen by OLD, seen by NEW): recall of taught prompts, not generalisation",
    "no_longer_seen": "seen by OLD, unseen by NEW",
    "unmarked": "without seen/unseen marks",
}


def seen_group(old_seen: bool | None, new_seen: bool | None) -> str:
    if old_seen is None or new_seen is None:
        return "unmarked"
    if old_seen == new_seen:
        return "seen" if new_seen else "unseen"
    return "newly_seen" if new_seen else "no_longer_seen"


def compare_like_with_like(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]],
                           catalog=None) -> dict[str, dict[str, Any]]:
    """Exam records of two versions compared like with like: the prompts both answered, split by
    :func:`seen_group` (a prompt unseen by OLD and trained on before NEW is never averaged with one
    unseen by both). Per group: prompts, both averages, and the paired per-node changes."""
    key = lambda r: (r.get("lesson_id"), r.get("prompt_id"))  # noqa: E731
    before = {key(r): r for r in old}
    groups: dict[str, tuple[list, list]] = {}
    for r in new:
        prev = before.get(key(r))
        if prev is None:
            continue
        a, b = groups.setdefault(seen_group(prev.get("seen"), r.get("seen")), ([], []))
        a.append(prev)
        b.append(r)
    avg = lambda rs: round(sum(float(r.get("comparison", {}).get("score", 0.0)) for r in rs) / len(rs), 2)  # noqa: E731
    return {g: {"prompts": len(b), "avg_old": avg(a), "avg_new": avg(b), "nodes": paired_node_changes(a, b, catalog)}
            for g, (a, b) in sorted(groups.items(), key=lambda kv: list(SEEN_GROUPS).index(kv[0]))}


def weakest_nodes(table: Sequence[dict[str, Any]], k: int = 5, min_n: int = 1,
                  ignore: Iterable[str] = ("Event_BeginPlay",)) -> list[str]:
    """The ``k`` lowest-mastery node types below 'mastered' (events every graph has are not the weakness)."""
    skip = set(ignore)
    weak = [row for row in table if row["n"] >= min_n and row["score"] < MASTERED and row["node"] not in skip]
    return [row["node"] for row in weak[:k]]


def _catalog(catalog):
    """The node catalog behind grading's ``catalog`` argument, which is a dsl Catalog, the workspace's
    LanguagePack (its catalog; None when the pack has none) or None (Blueprint's catalog)."""

    if isinstance(catalog, LanguagePack):
        return catalog.catalog()
    if catalog is None:
        return default_catalog()
    return catalog


def node_types_of(text: str, catalog=None) -> set[str]:
    """Canonical node types a text uses (what parses of it); a LanguagePack names them itself."""

    if isinstance(catalog, LanguagePack):
        return set(catalog.node_types(text or ""))

    cat = _catalog(catalog)
    return {cat.canonical_node_type(n.type) for n in parse(text or "").nodes}


def _kind(spec) -> str:
    return "event" if spec.is_event else "pure" if spec.pure else "exec"


def confusions(records: Sequence[dict[str, Any]], catalog=None) -> Counter:
    """(expected, written) node-type pairs: the gold used ``expected``, the answer left it out and
    wrote ``written`` (of the same kind: event / pure / exec) in its place."""
    cat = _catalog(catalog)
    pairs: Counter = Counter()
    if cat is None:
        return pairs
    lang = catalog if catalog is not None else cat
    for r in records:
        gold, got = node_types_of(r.get("expected_dsl", ""), lang), node_types_of(r.get("actual_dsl", ""), lang)
        missing, extra = gold - got, got - gold
        for m in missing:
            ms = cat.get(m)
            for e in extra:
                es = cat.get(e)
                if ms is not None and es is not None and _kind(ms) == _kind(es):
                    pairs[(m, e)] += 1
    return pairs


def _words(name: str) -> set[str]:
    """CamelCase / snake_case words of a node name: ForEachLoopWithBreak -> For, Each, Loop, With, Break."""
    return set(re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", name.removeprefix("Event_")))


def look_alikes(node: str, catalog=None, k: int = 3, cutoff: float = 0.65, word_cutoff: float = 0.4) -> list[str]:
    """Catalog node types of the same kind whose names read most like ``node``: by spelling
    (ArrayRemove ~ ArrayRemoveIndex) or by shared words (ForLoopWithBreak ~ ForEachLoop: a drill
    that teaches "…Loop" is followed by "WithBreak" costs every loop that is not)."""
    from difflib import SequenceMatcher

    cat = _catalog(catalog)
    spec = cat.get(node) if cat is not None else None
    if spec is None:
        return []
    strip = lambda name: name.removeprefix("Event_")  # noqa: E731 - every event shares the prefix
    mine = _words(node)
    scored = []
    for other, ospec in cat.nodes.items():
        if other == node or _kind(ospec) != _kind(spec):
            continue
        spelling = SequenceMatcher(None, strip(node), strip(other)).ratio()
        theirs = _words(other)
        words = len(mine & theirs) / max(1, len(mine | theirs))
        if spelling >= cutoff or words >= word_cutoff:
            scored.append((max(spelling, words), other))
    return [name for _, name in sorted(scored, key=lambda t: (-t[0], t[1]))[:k]]


def contrast_nodes(focus: Sequence[str], pairs: Counter | None = None, catalog=None,
                   per_node: int = 3, limit: int = 10, min_swaps: int = 2) -> list[str]:
    """Node types a drill on ``focus`` is likely to crowd out, to review beside it.

    Drilling a node raises the odds the model writes it, so the nodes it is confused with start
    losing prompts to it (measured: a drill on Event_Destroyed and ArrayRemove cost Event_Destruct
    and ArrayRemoveIndex 7–16 points). Those are the nodes the exam saw swapped with a focus node,
    in either direction, and the catalog's look-alikes of each focus node. A pair swapped fewer than
    ``min_swaps`` times is left out: one swap in a large exam is noise, and a slot spent on it was the
    one a real neighbour needed (a drill on ForEachLoopWithBreak reviewed two one-off swaps of other
    focus nodes while ForEachLoop, swapped 10 times, lost 12 points)."""
    focus_set = set(focus)
    picks: list[list[str]] = []
    for node in focus:
        swapped = Counter()
        for (expected, written), n in (pairs or {}).items():
            if expected == node and written not in focus_set:
                swapped[written] += n
            elif written == node and expected not in focus_set:
                swapped[expected] += n
        swaps = [name for name, n in swapped.most_common() if n >= min_swaps]
        alikes = [name for name in look_alikes(node, catalog) if name not in focus_set]
        # a look-alike the exam also swapped is the surest neighbour (ForEachLoop for ForEachLoopWithBreak:
        # left out as the fourth candidate, it lost 9-12 points in two of three seeds); then one of each in turn
        both = [name for name in swaps if name in alikes]
        ranked = both + [name for pair in zip_longest(swaps, alikes) for name in pair if name]
        picks.append(list(dict.fromkeys(ranked))[:per_node])
    # round robin over the focus nodes: every one keeps its closest neighbours within ``limit``
    out: list[str] = []
    for tier in zip_longest(*picks):
        for name in tier:
            if name and name not in out and len(out) < limit:
                out.append(name)
    return out


def draft_lesson(
    focus_nodes: Sequence[str],
    lesson_id: str,
    n_prompts: int = 10,
    seed: int = 0,
    catalog=None,
    version: str | None = None,
    mastery: Sequence[dict[str, Any]] | None = None,
    contrast: Sequence[str] = (),
    contrast_share: float = 0.3,
) -> dict[str, Any]:
    """A lesson aimed at ``focus_nodes``: synthetic prompts with gold DSL, every one validated.

    A share of the prompts (``contrast_share``) reviews the ``contrast`` nodes, so that what the
    drill teaches is "this node *here*", not "this node more often"."""

    if isinstance(catalog, LanguagePack):  # the workspace's language: its generator and validator
        pack = catalog

        def generate(n, seed, catalog, focus_nodes):  # noqa: ARG001 - the pack knows its catalog
            return pack.synthesize(n, seed, focus_nodes=focus_nodes)

        validate = lambda text, _cat: pack.validate(text)  # noqa: E731
    else:  # Blueprint's catalog-driven generator and validator
        generate, validate = blueprint_generate, blueprint_validate

    contrast = [n for n in contrast if n not in set(focus_nodes)]
    n_contrast = round(n_prompts * contrast_share) if contrast else 0
    rows = [dict(r, role="focus") for r in
            generate(n_prompts - n_contrast, seed=seed, catalog=catalog, focus_nodes=list(focus_nodes))]
    if n_contrast:
        rows += [dict(r, role="contrast") for r in
                 generate(n_contrast, seed=seed + 7919, catalog=catalog, focus_nodes=list(contrast))]
    prompts = []
    for i, row in enumerate(rows, 1):
        diags = [d for d in validate(row["output"], catalog) if d.severity == "error"]
        if diags:  # generate() already rejects these; keep the guarantee local and explicit
            continue
        prompts.append({
            "id": f"{lesson_id.upper()}_{i:02d}",
            # pattern/focus are optional row keys (a pack's generator may leave them out)
            "category": str(row.get("pattern", "synthetic")).split(":", 1)[0] + "_" + str(row.get("focus", "")).lower(),
            "instruction": row["instruction"],
            "expected_dsl": row["output"],
            "focus": row.get("focus", ""),
            "role": row["role"],
        })
    scores = {m["node"]: m for m in (mastery or [])}
    description = (
        f"Drafted after exam of {version or 'the latest version'} for the weakest node types: "
        + ", ".join(f"{n} ({scores[n]['score']:.0f})" if n in scores else n for n in focus_nodes)
    )
    if n_contrast:
        description += f"; {n_contrast} prompts review the nodes they are confused with: " + ", ".join(contrast)
    return {
        "lesson_id": lesson_id,
        "lesson_name": "Drill: " + ", ".join(focus_nodes[:4]) + ("…" if len(focus_nodes) > 4 else ""),
        "description": description,
        "created": time.strftime("%Y-%m-%d"),
        "status": "draft",
        "drafted_by": "bpllm grading 7.5",
        "drafted_from": version,
        "focus_nodes": list(focus_nodes),
        "contrast_nodes": list(contrast) if n_contrast else [],
        "prompts": prompts,
    }


def next_draft_id(lessons_dir: Path, drafts_dir: Path) -> str:
    taken = {p.stem for p in list(lessons_dir.glob("*.json")) + list(drafts_dir.glob("*.json"))}
    i = 1
    while f"drill_{i:02d}" in taken:
        i += 1
    return f"drill_{i:02d}"


def report(records: Sequence[dict[str, Any]], table: Sequence[dict[str, Any]], taxonomy: dict[str, Any],
           version: str, previous_version: str | None) -> dict[str, Any]:
    n = max(1, len(records))
    return {
        "version": version,
        "previous_version": previous_version,
        "prompts": len(records),
        "avg_score": round(sum(r["comparison"]["score"] for r in records) / n, 2) if records else None,
        "parse_pct": round(100 * sum(1 for r in records if r["validation"].get("parses")) / n, 1),
        "valid_pct": round(100 * sum(1 for r in records if r["validation"].get("valid")) / n, 1),
        "errors": taxonomy,
        "bands": dict(Counter(row["band"] for row in table)),
        "mastery": list(table),
        "regressions": [row for row in table if row.get("delta") is not None and row["delta"] < -10],
    }
