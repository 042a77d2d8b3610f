"""The material graph model as JSON: the import/export format until (and beside) the DSL text.

``import-blend --format json`` writes it and ``export-blend`` reads it, so the Blender side can be
used and tested without the text layer. Tuples become lists in JSON and come back as tuples.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from dsl.errors import BpllmError

from .model import Graph, Link, Node, Socket, Value

FORMAT = "bpllm-blender-material-graph/1"


def _tuples(v: Any) -> Value:
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    if isinstance(v, dict):  # not a model value; kept for forward compatibility
        return {k: _tuples(x) for k, x in v.items()}  # type: ignore[return-value]
    return v


def to_dict(graph: Graph) -> dict[str, Any]:
    d = asdict(graph)
    d["format"] = FORMAT
    return d


def to_json(graph: Graph) -> str:
    return json.dumps(to_dict(graph), indent=1, ensure_ascii=False) + "\n"


def from_dict(d: dict[str, Any], where: str = "graph") -> Graph:
    """A Graph from ``to_dict`` output (BpllmError naming WHERE when a field is missing or wrong)."""
    try:
        return Graph(
            kind=d["kind"],
            name=d["name"],
            nodes=[Node(id=n["id"], bl_idname=n["bl_idname"],
                        inputs={k: _tuples(v) for k, v in n.get("inputs", {}).items()},
                        props={k: _tuples(v) for k, v in n.get("props", {}).items()},
                        label=n.get("label", ""),
                        location=tuple(n["location"]) if n.get("location") else None)
                   for n in d.get("nodes", [])],
            links=[Link(lk["src"], lk["src_socket"], lk["dst"], lk["dst_socket"]) for lk in d.get("links", [])],
            inputs=[Socket(**{**s, "default": _tuples(s.get("default"))}) for s in d.get("inputs", [])],
            outputs=[Socket(**{**s, "default": _tuples(s.get("default"))}) for s in d.get("outputs", [])],
            groups_used=list(d.get("groups_used", [])),
            source=d.get("source", ""),
        )
    except (KeyError, TypeError) as exc:
        raise BpllmError(f"{where}: not a material graph JSON ({type(exc).__name__}: {exc})",
                         "write it with `bpllm import-blend --format json`") from None


def from_json(text: str, where: str = "graph") -> Graph:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BpllmError(f"{where}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})", "fix the JSON") from None
    if not isinstance(data, dict):
        raise BpllmError(f"{where}: not a material graph JSON (top level is not an object)", "")
    return from_dict(data, where)
