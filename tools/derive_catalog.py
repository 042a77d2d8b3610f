#!/usr/bin/env python3
"""Derive a draft node catalog from the reference corpus's curated DSL texts.

Why: the hand-curated ``dsl/packs/blueprint/catalog.json`` must cover every node type, param and
pin the gold data uses.  This script measures that usage (node types, params with
the kinds of values they take, pins seen as exec/data inputs/outputs with their
``[Type]`` suffixes) so curation starts from facts, and ``--check`` shows what the
curated catalog still lacks.

Sources (read in place, never copied): lessons (incl. holdout and corrections),
exam ``expected_dsl``, ``lesson_data.jsonl``, ``lesson_02_data.jsonl``,
``synthetic_train.jsonl``, ``validation.jsonl`` and the rows of ``train.jsonl``
that did not come from the broken clipboard translator.

Usage (with bpllm importable: ``make setup``, or ``PYTHONPATH=.`` in a checkout)::

    python tools/derive_catalog.py                  # draft JSON on stdout
    python tools/derive_catalog.py --summary        # human-readable usage table
    python tools/derive_catalog.py --check dsl/packs/blueprint/catalog.json   # what the catalog misses
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

from dsl.catalog import load_catalog_file
from engine.resources import checkout_root

# the reference corpus sits beside the checkout (../shared/corpus/blueprintllm)
DEFAULT_CORPUS = ((checkout_root() or Path.cwd()).parent / "shared" / "corpus" / "blueprintllm").resolve()

CURATED_DATASETS = ("lesson_data.jsonl", "lesson_02_data.jsonl", "synthetic_train.jsonl", "validation.jsonl")

_NODE = re.compile(r"^NODE\s+(n\d+)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[(.*)\])?\s*$")
_CONN = re.compile(
    r"^(EXEC|DATA)\s+(?:(n\d+)\.([A-Za-z_]\w*)|(.+?))\s*->\s*(n\d+)\.([A-Za-z_]\w*)\s*(?:\[\s*([^\]]+?)\s*\])?\s*$"
)


def is_translator_row(row: dict) -> bool:
    """Rows of train.jsonl written by the broken clipboard translator.

    They are the only rows carrying neither ``pattern`` (synthetic) nor ``source``
    (lesson-derived); all of them have ``BP_Demo`` names, 188 with ``.Dsl`` suffixes.
    """
    return "pattern" not in row and "source" not in row


def iter_gold_texts(corpus: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(origin, dsl_text)`` for every curated gold text in the corpus."""
    lessons = corpus / "lessons"
    for path in sorted(lessons.glob("*.json")) + sorted((lessons / "holdout").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for prompt in data.get("prompts", []):
            yield f"{path.relative_to(corpus)}:{prompt.get('id')}", prompt["expected_dsl"]
    for path in sorted((corpus / "results" / "exams").glob("*.jsonl")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                rec = json.loads(line)
                if rec.get("expected_dsl"):
                    yield f"{path.relative_to(corpus)}:{i}:{rec.get('prompt_id')}", rec["expected_dsl"]
    datasets = corpus / "datasets"
    for name in CURATED_DATASETS + ("train.jsonl",):
        path = datasets / name
        if not path.exists():
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if name == "train.jsonl" and is_translator_row(row):
                continue
            yield f"datasets/{name}:{i}", row["output"]


def split_params(body: str) -> list[tuple[str, str]]:
    """Split ``K=V, K=(X=1,Y=2), K="a,b"`` at top-level commas."""
    out, depth, quoted, cur = [], 0, False, []
    escaped = False
    for ch in body:
        if quoted:
            cur.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur))
    pairs = []
    for item in out:
        if "=" in item:
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    return pairs


def value_kind(raw: str) -> str:
    if raw.startswith('"'):
        return "string"
    if raw in ("true", "false"):
        return "bool"
    if raw == "None":
        return "none"
    if raw.startswith("("):
        return "struct"
    if re.fullmatch(r"-?\d+", raw):
        return "int"
    if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", raw):
        return "float"
    return "ident"


def derive(corpus: Path) -> dict:
    node_count: Counter[str] = Counter()
    params: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    pins: dict[str, dict[tuple[str, str, str], Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    literal_into: dict[str, Counter[str]] = defaultdict(Counter)
    texts = 0
    for _origin, text in iter_gold_texts(corpus):
        texts += 1
        types: dict[str, str] = {}
        for raw_line in text.replace("\r\n", "\n").split("\n"):
            line = raw_line.strip()
            m = _NODE.match(line)
            if m:
                nid, ntype, body = m.groups()
                types[nid] = ntype
                node_count[ntype] += 1
                for k, v in split_params(body or ""):
                    params[ntype][k][value_kind(v)] += 1
                continue
            m = _CONN.match(line)
            if not m:
                continue
            kind, sn, sp, lit, tn, tp, dtype = m.groups()
            k = "exec" if kind == "EXEC" else "data"
            tag = dtype or "-"
            if sn and sn in types:
                pins[types[sn]][("out", k, sp)][tag] += 1
            if tn in types:
                pins[types[tn]][("in", k, tp)][tag] += 1
                if lit:
                    literal_into[f"{types[tn]}.{tp}"][f"{value_kind(lit)}:{tag}"] += 1
    return {
        "texts": texts,
        "nodes": {
            name: {
                "count": node_count[name],
                "params": {p: dict(kinds) for p, kinds in sorted(params[name].items())},
                "pins": [
                    {"name": pn, "dir": d, "kind": k, "types": dict(types_)}
                    for (d, k, pn), types_ in sorted(pins[name].items())
                ],
            }
            for name in sorted(node_count)
        },
        "literal_sources": {k: dict(v) for k, v in sorted(literal_into.items())},
    }


def draft_catalog(usage: dict) -> dict:
    """A catalog-shaped draft: most frequent type per pin, param type from value kinds."""
    kind_to_type = {"string": "String", "bool": "Bool", "int": "Int", "float": "Float", "struct": "Struct",
                    "ident": "Name", "none": "Object"}
    nodes = {}
    for name, info in usage["nodes"].items():
        pins = []
        for p in info["pins"]:
            entry = {"name": p["name"], "dir": p["dir"], "kind": p["kind"]}
            if p["kind"] == "data":
                typed = Counter({t: c for t, c in p["types"].items() if t != "-"})
                if typed:
                    entry["type"] = typed.most_common(1)[0][0]
            pins.append(entry)
        params = []
        for pname, kinds in info["params"].items():
            kinds = Counter(kinds)
            if set(kinds) <= {"int", "float"} and "float" in kinds:
                ptype = "Float"
            else:
                ptype = kind_to_type[kinds.most_common(1)[0][0]]
            params.append({"name": pname, "type": ptype})
        nodes[name] = {
            "category": "",
            "pure": not any(p["kind"] == "exec" for p in pins),
            "event": name.startswith("Event_"),
            "dynamic_pins": False,
            "description": "",
            "pins": pins,
            "params": params,
        }
    return {"version": 1, "nodes": nodes, "aliases": {"nodes": {}, "params": {"*": {}}, "pins": {"*": {}}, "types": {}},
            "quirks": []}


def check(usage: dict, catalog_path: Path) -> list[str]:
    """Usage the curated catalog does not cover (after aliases)."""
    cat = load_catalog_file(catalog_path)
    problems = []
    for name, info in usage["nodes"].items():
        spec = cat.get(name)
        if spec is None:
            problems.append(f"node {name} ({info['count']} uses) missing")
            continue
        for pname in info["params"]:
            if spec.param(cat.canonical_param(name, pname)) is None:
                problems.append(f"{name}: param {pname} missing")
        for p in info["pins"]:
            found = spec.pins_named(cat.canonical_pin(name, p["name"]))
            if not found:
                if not spec.dynamic_pins:
                    problems.append(f"{name}: {p['dir']} {p['kind']} pin {p['name']} missing ({p['types']})")
            elif not any((f.direction, f.kind) == (p["dir"], p["kind"]) for f in found):
                have = ", ".join(f"{f.direction} {f.kind}" for f in found)
                problems.append(f"{name}.{p['name']}: used as {p['dir']} {p['kind']}, catalog has {have}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--summary", action="store_true", help="print a usage table instead of JSON")
    ap.add_argument("--usage", action="store_true", help="print raw usage counts as JSON")
    ap.add_argument("--check", type=Path, metavar="CATALOG", help="list usage the catalog does not cover")
    args = ap.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"corpus not found at {args.corpus} (pass --corpus)", file=sys.stderr)
        return 2
    usage = derive(args.corpus)
    if args.check:
        problems = check(usage, args.check)
        for p in problems:
            print(p)
        print(f"{len(usage['nodes'])} node types in {usage['texts']} texts; {len(problems)} gaps", file=sys.stderr)
        return 1 if problems else 0
    if args.summary:
        print(f"{usage['texts']} texts, {len(usage['nodes'])} node types")
        for name, info in sorted(usage["nodes"].items(), key=lambda kv: -kv[1]["count"]):
            print(f"{info['count']:6d}  {name}")
            for pname, kinds in info["params"].items():
                print(f"          param {pname}: {kinds}")
            for p in info["pins"]:
                print(f"          {p['dir']:3s} {p['kind']:4s} {p['name']}: {p['types']}")
        return 0
    json.dump(usage if args.usage else draft_catalog(usage), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
