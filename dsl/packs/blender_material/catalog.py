"""The Blender shader-node catalog as the text side reads it (no bpy needed).

``catalog.json`` is derived from Blender by ``tools/derive_blender_catalog.py``; this module only
reads it and answers the questions the parser, validator, formatter and scorer ask: which
``bl_idname`` a DSL type name means, what a socket is called in the DSL, whether a socket is
available for a node's enum settings, and whether Blender accepts a link between two socket types.

DSL socket names (docs/blender.md): a socket is written by its Blender name with every run of
characters other than letters, digits and ``_`` turned into one ``_`` ("Base Color" ->
``Base_Color``). When two sockets on the same side of a node share that spelling and can be
available at the same time (Mix Shader's two "Shader" inputs, Math's three "Value"s), each of them
is written by its identifier instead (``Shader``, ``Shader_001``). Sockets that share a name but
never coexist (Mix's ``A_Float``/``A_Vector``/``A_Color``, all "A") keep the name; the node's
``data_type`` decides which one it is. The identifier is always accepted too.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

PACKAGE = "dsl.packs.blender_material"
GROUP_NODES = ("ShaderNodeGroup", "NodeGroupInput", "NodeGroupOutput")

# interface socket types (bpy NodeTreeInterfaceSocket.socket_type) <-> DSL spelling
INTERFACE_TYPES = {
    "NodeSocketFloat": "Float",
    "NodeSocketInt": "Int",
    "NodeSocketBool": "Bool",
    "NodeSocketVector": "Vector",
    "NodeSocketColor": "Color",
    "NodeSocketShader": "Shader",
    "NodeSocketString": "String",
    "NodeSocketRotation": "Rotation",
    "NodeSocketMatrix": "Matrix",
    "NodeSocketMenu": "Menu",
}
INTERFACE_BY_DSL = {v: k for k, v in INTERFACE_TYPES.items()}
# socket `type` (bpy NodeSocket.type) of each interface socket type, for link checks
INTERFACE_SOCKET_KIND = {
    "NodeSocketFloat": "VALUE", "NodeSocketInt": "INT", "NodeSocketBool": "BOOLEAN",
    "NodeSocketVector": "VECTOR", "NodeSocketColor": "RGBA", "NodeSocketShader": "SHADER",
    "NodeSocketString": "STRING", "NodeSocketRotation": "ROTATION", "NodeSocketMatrix": "MATRIX",
    "NodeSocketMenu": "MENU",
}


def dsl_name(text: str) -> str:
    """A Blender name spelled for the DSL: runs of other characters become ``_`` ('Base Color' -> 'Base_Color')."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    if not out:
        return "_"
    return "_" + out if out[0].isdigit() else out


def _overlap(a: list[dict[str, list[str]]] | None, b: list[dict[str, list[str]]] | None) -> bool:
    """Can two availability conditions hold at once? (None = always available, [] = never)."""
    if a == [] or b == []:
        return False
    if a is None or b is None:
        return True
    for ca in a:
        for cb in b:
            if all(set(ca[k]) & set(cb[k]) for k in set(ca) & set(cb)):
                return True
    return False


@dataclass
class NodeSpec:
    bl_idname: str
    short: str
    data: dict[str, Any]

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.data["inputs"]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.data["outputs"]

    @property
    def props(self) -> dict[str, Any]:
        return self.data["props"]

    @property
    def is_output(self) -> bool:
        return bool(self.data.get("is_output"))

    @property
    def is_group(self) -> bool:
        return bool(self.data.get("is_group"))

    def sockets(self, side: str) -> list[dict[str, Any]]:
        return self.data[side]

    def condition(self, side: str, ident: str) -> list[dict[str, list[str]]] | None:
        """Availability condition of a socket: None = always, [] = never, else combos of enum values."""
        avail = self.data.get("availability", {}).get(side, {})
        if ident in avail:
            return avail[ident]
        sock = next((s for s in self.sockets(side) if s["identifier"] == ident), None)
        if sock is not None and sock.get("enabled") is False:
            return []
        return None

    def settings(self, props: dict[str, Any]) -> dict[str, str]:
        """Values of the socket-affecting enums, defaults filled in."""
        keys = self.data.get("availability", {}).get("keys", [])
        return {k: str(props.get(k, self.props[k]["default"])) for k in keys}

    def available(self, side: str, ident: str, props: dict[str, Any]) -> bool:
        cond = self.condition(side, ident)
        if cond is None:
            return True
        values = self.settings(props)
        return any(all(values.get(k) in v for k, v in c.items()) for c in cond)

    @property
    def dsl_names(self) -> dict[str, dict[str, str]]:
        """side -> socket identifier -> DSL name (the duplicate rule of the module docstring)."""
        return _dsl_names(self.bl_idname)

    def resolve_socket(self, side: str, ref: str, props: dict[str, Any]) -> tuple[str | None, list[str]]:
        """(identifier, candidates) for a DSL socket reference given the node's settings.

        identifier is None when nothing available matches; candidates then lists the identifiers
        that match by name but are unavailable for these settings (for the diagnostic)."""
        names = self.dsl_names[side]
        matches = [s["identifier"] for s in self.sockets(side) if s["identifier"] == ref]
        if not matches:
            matches = [i for i, n in names.items() if n == ref]
        avail = [i for i in matches if self.available(side, i, props)]
        if avail:
            return avail[0], matches
        return None, matches

    def socket(self, side: str, ident: str) -> dict[str, Any] | None:
        return next((s for s in self.sockets(side) if s["identifier"] == ident), None)


@lru_cache(maxsize=None)
def _dsl_names(bl_idname: str) -> dict[str, dict[str, str]]:
    spec = load_catalog().spec(bl_idname)
    result: dict[str, dict[str, str]] = {}
    for side in ("inputs", "outputs"):
        socks = spec.sockets(side) if spec else []
        names = {s["identifier"]: dsl_name(s["name"]) for s in socks}
        final = dict(names)
        for a in socks:
            for b in socks:
                ia, ib = a["identifier"], b["identifier"]
                if ia != ib and names[ia] == names[ib] and _overlap(spec.condition(side, ia), spec.condition(side, ib)):
                    final[ia] = dsl_name(ia)
        result[side] = final
    return result


class BlenderCatalog:
    """Read-only view of catalog.json."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.version: str = data["blender_version"]
        self.nodes: dict[str, Any] = data["nodes"]
        self.short_names: dict[str, str] = data["short_names"]
        self.by_short = {v: k for k, v in self.short_names.items()}
        self.aliases: dict[str, str] = data["aliases"]
        self.link_rules: dict[str, list[str]] = data["link_rules"]
        self._specs: dict[str, NodeSpec] = {}

    def resolve_type(self, name: str) -> str | None:
        """bl_idname for a DSL type name, alias, legacy name or bl_idname; None when unknown."""
        if name in self.by_short:
            return self.by_short[name]
        return self.aliases.get(name)

    def short(self, bl_idname: str) -> str:
        return self.short_names.get(bl_idname, bl_idname)

    def spec(self, bl_idname: str) -> NodeSpec | None:
        if bl_idname not in self.nodes:
            return None
        if bl_idname not in self._specs:
            self._specs[bl_idname] = NodeSpec(bl_idname, self.short(bl_idname), self.nodes[bl_idname])
        return self._specs[bl_idname]

    def can_link(self, out_kind: str, in_kind: str) -> bool:
        """Blender's verdict (from the catalog) on linking an output socket type to an input socket type.

        Types the rules do not cover (CUSTOM, virtual sockets, INT/BOOLEAN of group interfaces) pass:
        only combinations Blender was seen to reject are errors."""
        allowed = self.link_rules.get(out_kind)
        if allowed is None or in_kind not in {k for v in self.link_rules.values() for k in v}:
            return out_kind != "SHADER" or in_kind == "SHADER"
        return in_kind in allowed

    def type_names(self) -> list[str]:
        return sorted(self.by_short)


@lru_cache(maxsize=1)
def load_catalog() -> BlenderCatalog:
    """The pack's catalog.json (through importlib.resources, so it works from a wheel)."""
    text = resources.files(PACKAGE).joinpath("catalog.json").read_text(encoding="utf-8")
    return BlenderCatalog(json.loads(text))
