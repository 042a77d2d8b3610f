"""`bpllm languages [--json]`: the installed language packs and what each provides.

A pack that fails to load is listed with its error (exit 0 still: the others work); the JSON
shape is ``{"languages": [{"name", "ok", "title"?, "error"?, "provides": {...}}]}``.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from dsl import packs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("languages", help="list the installed language packs and what each provides")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_languages)


def _count(fn) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one broken part of a pack is reported, the listing goes on
        return f"error: {type(exc).__name__}: {exc}"


def describe(name: str) -> dict[str, Any]:
    """What pack NAME provides, or its load error."""
    try:
        pack = packs.load(name)
    except Exception as exc:  # noqa: BLE001 - a broken third-party pack is shown with its error, not fatal
        return {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}", "provides": {}}

    def starter_lessons() -> int:
        where = pack.starter_dir() / "lessons"
        return sum(1 for p in where.iterdir() if p.name.endswith(".json")) if where.is_dir() else 0

    has = pack.has
    provides: dict[str, Any] = {
        "grammar": has("grammar_text"),
        "catalog_node_types": _count(lambda: len(pack.node_names())),
        "validator": has("validate"),
        "formatter": has("format"),
        "scorer": has("score"),
        "synthetic": has("synthesize"),
        "constraint": has("constraint"),
        "vocabulary": has("vocabulary"),
        "system_prompt": has("system_prompt"),
        "starter_lessons": _count(starter_lessons) if has("starter_dir") else 0,
        "importers": [c.name for c in pack.commands if c.name.startswith("import")],
        "exporters": [c.name for c in pack.commands if c.name.startswith("export")],
        "commands": [c.name for c in pack.commands],
        "highlights": len(pack.highlights),
    }
    return {"name": pack.name, "ok": True, "title": pack.title, "header_keys": list(pack.header_keys),
            "suffixes": list(pack.suffixes), "provides": provides, "details": dict(pack.provides)}


def cmd_languages(args: argparse.Namespace) -> int:
    rows = [describe(n) for n in packs.names()]
    if args.json:
        print(json.dumps({"default": packs.DEFAULT_LANGUAGE, "languages": rows}, indent=2))
        return 0
    for row in rows:
        mark = " (default)" if row["name"] == packs.DEFAULT_LANGUAGE else ""
        if not row["ok"]:
            print(f"{row['name']}{mark}: FAILED TO LOAD: {row['error']}")
            continue
        print(f"{row['name']}{mark}: {row['title']}")
        pr = row["provides"]
        flags = [k for k in ("grammar", "validator", "formatter", "scorer", "synthetic", "constraint",
                             "vocabulary", "system_prompt") if pr[k] is True]
        print(f"  provides: {', '.join(flags) or 'nothing'}")
        print(f"  catalog: {pr['catalog_node_types']} node types; starter lessons: {pr['starter_lessons']}")
        if pr["commands"]:
            print(f"  commands: {', '.join(pr['commands'])}")
    return 0
