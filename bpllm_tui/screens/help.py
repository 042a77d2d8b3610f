"""Every key of the app, grouped by screen, with its id for rebinding."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from bpllm_tui.config import user_config_path
from bpllm_tui.keys import ALL_KEY_GROUPS, effective_key
from engine.resources import resource


class HelpScreen(ModalScreen[None]):
    CSS_PATH = resource("styles", "help.tcss")
    BINDINGS = [Binding("escape,f1,q,question_mark", "dismiss", "Close", show=True)]

    def __init__(self, keymap: dict[str, str], config_sources: list[str]) -> None:
        super().__init__(id="help")
        self.keymap = keymap
        self.config_sources = config_sources

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(Text("bpllm-tui — keys", style="bold"), id="help-title")
            for group, specs in ALL_KEY_GROUPS:
                table = Table(title=group, title_justify="left", expand=True, show_edge=False, pad_edge=False)
                table.add_column("key", style="bold", no_wrap=True, width=18)
                table.add_column("what it does")
                table.add_column("id (rebind)", style="dim", no_wrap=True)
                for spec in specs:
                    key = effective_key(spec, self.keymap)
                    table.add_row(key.replace("question_mark", "?").replace("slash", "/"), spec.help, spec.id)
                yield Static(table, classes="help-group")
            yield Static(
                "Command palette: ctrl+p (the same actions by name).  Stop is never ctrl+c (that copies).\n"
                f"Rebind keys in {user_config_path()} or the workspace's bpllm.toml under [tui.keys], e.g.\n"
                '    [tui.keys]\n    "run.start" = "f5"\n'
                + (f"Settings read from: {', '.join(self.config_sources)}" if self.config_sources else
                   "No settings file found (defaults in use)."),
                id="help-footer",
            )
