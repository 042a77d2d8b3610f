"""The canonical step plan (1 Data Foundation … 9 Dashboard & Finalize) with live status.

Structure comes from the engine's plan (the ``run`` start event), so step numbers
stay data owned by the engine; labels are updated in place so the cursor and
scroll position survive every refresh.
"""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from bpllm_tui.widgets._theme import themed
from bpllm_tui.state import STEP_ICONS, RunState, format_duration, step_sort_key

STATUS_STYLE = {
    "pending": "dim",
    "running": "bold $accent",
    "complete": "$success",
    "error": "bold $error",
    "skip": "dim italic",
    "stopped": "$warning",
}


GROUP_DONE = ("complete", "skip")


class StepTree(Tree[str]):
    """Groups 1–9 always in view: finished groups fold away, the running one unfolds (a group the user
    toggles stays as they left it until the run moves to another group). A row's counter and ETA are never
    cut: a long step name gives way (``…``) instead."""

    DEFAULT_CSS = """
    StepTree { scrollbar-size-vertical: 1; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("steps", id=id, classes=classes)
        self.show_root = False
        self.guide_depth = 2
        self._step_nodes: dict[str, TreeNode[str]] = {}
        self._signature: tuple[str, ...] = ()
        self._followed: str | None = None
        self._open_group: str | None = None  # the group unfolded for the running step
        self._state: RunState | None = None

    def sync(self, state: RunState) -> None:
        self._state = state
        core = state.core
        ids = [p["id"] for p in core.plan] if core.plan else sorted(core.steps, key=step_sort_key)
        ids += [s for s in core.steps if s not in ids]
        signature = tuple(ids)
        if signature != self._signature:
            self._rebuild(state, ids)
            self._signature = signature
            self._open_group = None
            self._fold(state, rebuilt=True)
        else:
            self._fold(state, rebuilt=False)
        current = core.current_step
        self.relabel(state)
        if current != self._followed and current in self._step_nodes and state.active:
            self._followed = current  # keep the running step in view (the cursor stays where the user put it)
            line = self._step_nodes[current].line
            if line >= 0:
                self.scroll_to_line(line, animate=False)

    def on_resize(self) -> None:
        if self._state is not None:
            self.relabel(self._state)

    def relabel(self, state: RunState) -> None:
        current = state.core.current_step
        width = self.scrollable_content_region.width
        for sid, node in self._step_nodes.items():
            node.set_label(self._label(state, sid, sid == current, width - self._indent(node)))

    def _indent(self, node: TreeNode[str]) -> int:
        """Columns the tree draws before a label: a guide per level below the top (the root is hidden),
        plus the fold icon of a node with children."""
        depth = 0
        parent = node.parent
        while parent is not None and parent is not self.root:
            depth += 1
            parent = parent.parent
        return self.guide_depth * depth + (len(self.ICON_NODE) if node.allow_expand else 0)

    def _group_of(self, state: RunState, sid: str | None) -> str | None:
        if not sid:
            return None
        step = state.core.steps.get(sid)
        parent = step.parent if step and step.parent else (sid.rsplit(".", 1)[0] if "." in sid else None)
        return parent or sid

    def _fold(self, state: RunState, *, rebuilt: bool) -> None:
        """Unfold the running group (and any group holding a failed or stopped step); fold finished ones.
        Only on a rebuild or when the running group changes, so a user's own folding is left alone."""
        running = self._group_of(state, state.core.current_step) if state.active else None
        if not rebuilt and running == self._open_group:
            return
        for sid, node in self._step_nodes.items():
            if not node.children:
                continue
            kids = [state.step_status(c.data) for c in node.children if c.data]
            trouble = any(k in ("error", "stopped") for k in kids) or state.step_status(sid) in ("error", "stopped")
            if sid == running or (trouble and (rebuilt or sid == self._open_group)):
                node.expand()
            elif rebuilt or sid == self._open_group:
                node.collapse()
        self._open_group = running

    def _rebuild(self, state: RunState, ids: list[str]) -> None:
        self.clear()
        self._step_nodes.clear()
        core = state.core
        for sid in ids:
            step = core.steps.get(sid)
            parent_id = (step.parent if step and step.parent else (sid.rsplit(".", 1)[0] if "." in sid else None))
            parent = self._step_nodes.get(parent_id) if parent_id else None
            if parent is None:
                node = self.root.add(sid, data=sid, expand=False)
            else:
                node = parent.add_leaf(sid, data=sid)
            self._step_nodes[sid] = node

    def _label(self, state: RunState, sid: str, current: bool, width: int = 0) -> Text:
        step = state.core.steps.get(sid)
        status = state.step_status(sid)
        name = step.name if step else sid
        icon = STEP_ICONS.get(status, "?")
        style = themed(self.app, STATUS_STYLE.get(status, ""))
        detail = ""
        if status == "running":
            if step and step.total:
                detail = f"{step.n or 0}/{step.total}"
            if state.eta(sid) is not None:
                detail += f" ETA {state.eta_text(sid)}"
        elif step and step.duration is not None and status in ("complete", "error"):
            detail = format_duration(step.duration)
        elif status == "skip" and step and step.message:
            detail = step.message  # the engine's reason on the row (⏭ already says skipped)
        detail = detail.strip()
        head = f"{icon} {sid:<4} "
        if width > 0:  # the name gives way to the counter and ETA, never the other way round
            room = width - len(head) - (len(detail) + 2 if detail else 0)
            if len(name) > room:
                name = name[: max(0, room - 1)] + "…" if room > 1 else ""
        text = Text()
        text.append(f"{icon} ", style)
        text.append(f"{sid:<4} ", "bold" if "." not in sid else "")
        text.append(name, style if status != "pending" else "")
        if detail:
            text.append(f"  {detail}", "dim")
        if current and state.active:
            text.stylize("reverse")
        return text
