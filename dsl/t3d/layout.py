"""Node positions for exported graphs: layered, left to right along the exec flow.

Exec nodes take the column of their longest exec path from an event (so a chain
reads left to right and a branch fans out into rows); pure nodes sit one column
left of the first node that reads them. Within a column nodes stack in event
order, then by their order in the text. Positions snap to Unreal's 16-unit grid.
"""
from __future__ import annotations

from dataclasses import dataclass

COLUMN_WIDTH = 400
ROW_HEIGHT = 224
GRID = 16


@dataclass(frozen=True, slots=True)
class LayoutEdge:
    src: str
    dst: str
    exec: bool


def _snap(v: int) -> int:
    return int(round(v / GRID)) * GRID


def layered_layout(
    nodes: list[str], edges: list[LayoutEdge], events: set[str], pure: set[str]
) -> dict[str, tuple[int, int]]:
    """Positions (x, y) per node id; ``nodes`` order breaks ties."""
    order = {n: i for i, n in enumerate(nodes)}
    exec_succ: dict[str, list[str]] = {n: [] for n in nodes}
    exec_pred: dict[str, list[str]] = {n: [] for n in nodes}
    readers: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        if e.src not in order or e.dst not in order:
            continue
        if e.exec:
            exec_succ[e.src].append(e.dst)
            exec_pred[e.dst].append(e.src)
        else:
            readers[e.src].append(e.dst)

    column: dict[str, int] = {}
    group: dict[str, int] = {}
    # longest exec path from the roots, bounded so loops cannot run away
    roots = [n for n in nodes if n in events] + [n for n in nodes if n not in events and n not in pure and not exec_pred[n]]
    limit = len(nodes)
    for gi, root in enumerate(roots):
        if root in column:
            continue
        column[root] = 0
        group[root] = gi
        stack = [root]
        while stack:
            cur = stack.pop()
            for nxt in sorted(exec_succ[cur], key=order.get):
                cand = column[cur] + 1
                if cand > limit:
                    continue
                if nxt not in column or (cand > column[nxt] and group.get(nxt) == gi):
                    column[nxt] = cand
                    group.setdefault(nxt, gi)
                    stack.append(nxt)
    # pure nodes: one column left of their first reader (resolved through chains of pure nodes)
    def pure_column(n: str, seen: frozenset[str]) -> tuple[int, int]:
        if n in column:
            return column[n], group.get(n, 0)
        cols = []
        for r in readers[n]:
            if r in seen:
                continue
            c, g = pure_column(r, seen | {n})
            cols.append((c - 1, g))
        if not cols:
            return 0, len(roots)
        return min(cols)

    for n in nodes:
        if n not in column:
            c, g = pure_column(n, frozenset())
            column[n] = c
            group[n] = g
    shift = -min(column.values()) if column else 0
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(column[n] + shift, []).append(n)
    pos: dict[str, tuple[int, int]] = {}
    for col, members in columns.items():
        members.sort(key=lambda n: (group.get(n, 0), 1 if n in pure else 0, order[n]))
        for row, n in enumerate(members):
            pos[n] = (_snap(col * COLUMN_WIDTH), _snap(row * ROW_HEIGHT))
    return pos
