"""The material graph as Blender sees it: the meeting point of the text side and the bpy side.

The DSL text layer (parser, formatter, validator) converts text <-> this model using the catalog
(short names and DSL socket names <-> ``bl_idname`` and socket identifiers). The Blender layer
(import-blend, export-blend, render, in-Blender validation) converts this model <-> bpy data and
never sees DSL spelling. Everything here is Blender's own naming, so a round trip can be compared
field by field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

# A value: a number, a bool, a string (enum item, image name, text), or a tuple of numbers
# (vector, colour RGBA, euler). Colour ramps and curves are lists of such tuples.
Value = Union[float, int, bool, str, tuple, list]


@dataclass(slots=True)
class Socket:
    """An interface socket of a node group (GROUP inputs and outputs)."""

    name: str  # as shown in Blender
    socket_type: str  # bpy socket_type: NodeSocketFloat, NodeSocketColor, NodeSocketVector, NodeSocketShader...
    default: Value | None = None
    min_value: float | None = None
    max_value: float | None = None
    identifier: str = ""  # Blender's interface identifier (Socket_0...), informative only


@dataclass(slots=True)
class Node:
    id: str  # "n1", "n2", ... in a deterministic order (see docs/blender.md)
    bl_idname: str  # "ShaderNodeBsdfPrincipled"
    # input socket identifier -> unlinked default value, only values that differ from the node's default
    inputs: dict[str, Value] = field(default_factory=dict)
    # node property -> value, only non-default ones: enum props (operation, blend_type, data_type...),
    # bools (use_clamp), image ("image": image name), node group ("node_tree": group name), ramp elements
    props: dict[str, Value] = field(default_factory=dict)
    label: str = ""
    location: tuple[float, float] | None = None  # informative; export lays nodes out itself


@dataclass(frozen=True, slots=True)
class Link:
    src: str  # node id
    src_socket: str  # output socket identifier
    dst: str
    dst_socket: str  # input socket identifier


@dataclass(slots=True)
class Graph:
    """One material or one shader node group."""

    kind: Literal["material", "group"]
    name: str
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    inputs: list[Socket] = field(default_factory=list)  # groups only
    outputs: list[Socket] = field(default_factory=list)  # groups only
    groups_used: list[str] = field(default_factory=list)  # names of node groups this graph's Group nodes use
    source: str = ""  # file it came from (import) or "" (built)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


@dataclass(slots=True)
class Unmapped:
    """Something of a .blend that did not become DSL, and why (an import report line)."""

    file: str
    owner: str  # material or group name
    what: str  # "node ShaderNodeScript 'Script'", "packed image 'x.png'", "driver on ..."
    reason: str
