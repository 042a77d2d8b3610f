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


class StepTree(Tree[str]):
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

    def sync(self, state: RunState) -> None:
        core = state.core
        ids = [p["id"] for p in core.plan] if core.plan else sorted(core.steps, key=step_sort_key)
        ids += [s for s in core.steps if s not in ids]
        signature = tuple(ids)
        if signature != self._signature:
            self._rebuild(state, ids)
            self._signature = signature
        current = core.current_step
        for sid, node in self._step_nodes.items():
            node.set_label(self._label(state, sid, sid == current))
        if current != self._followed and current in self._step_nodes and state.active:
            self._followed = current  # keep the running step in view (the cursor stays where the user put it)
            line = self._step_nodes[current].line
            if line >= 0:
                self.scroll_to_line(line, animate=False)

    def _rebuild(self, state: RunState, ids: list[str]) -> None:
        self.clear()
        self._step_nodes.clear()
        core = state.core
        for sid in ids:
            step = core.steps.get(sid)
            parent_id = (step.parent if step and step.parent else (sid.rsplit(".", 1)[0] if "." in sid else None))
            parent = self._step_nodes.get(parent_id) if parent_id else None
            if parent is None:
                node = self.root.add(sid, data=sid, expand=True)
            else:
                node = parent.add_leaf(sid, data=sid)
            self._step_nodes[sid] = node

    def _label(self, state: RunState, sid: str, current: bool) -> Text:
        step = state.core.steps.get(sid)
        status = state.step_status(sid)
        name = step.name if step else sid
        icon = STEP_ICONS.get(status, "?")
        style = themed(self.app, STATUS_STYLE.get(status, ""))
        text = Text()
        text.append(f"{icon} ", style)
        text.append(f"{sid:<4} ", "bold" if "." not in sid else "")
        text.append(name, style if status != "pending" else "")
        detail = ""
        if status == "running":
            if step and step.total:
                detail = f"{step.n or 0}/{step.total}"
            if state.eta(sid) is not None:
                detail += f" ETA {state.eta_text(sid)}"
        elif step and step.duration is not None and status in ("complete", "error"):
            detail = format_duration(step.duration)
        elif status == "skip" and step and step.message:
            detail = step.message  # the engine's reason on the row (⏭ already says skipped; the row is narrow)
        if detail:
            text.append(f"  {detail.strip()}", "dim")
        if current and state.active:
            text.stylize("reverse")
        return text
