"""Modal screens: the key help and the export prompt."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

# Keys handled by the tree, the table and the inputs themselves, listed in the help.
NAVIGATION_KEYS = (
    ("↑ ↓ PgUp PgDn", "move in the tree or the table"),
    ("^home ^end", "first or last row"),
    ("space", "expand or collapse a group in the tree"),
    ("enter", "expand or collapse a group row in the table"),
    ("tab", "next pane: tree, table, input"),
    ("escape", "leave the input, clear the filter"),
    ("mouse", "click rows and tree nodes, scroll"),
)


class HelpScreen(ModalScreen[None]):
    """Every binding, with what it does."""

    AUTO_FOCUS = None

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", show=False),
    ]

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        super().__init__()
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for key, description in [*self.bindings, *NAVIGATION_KEYS]:
            table.add_row(key, description)
        with Vertical(id="help-box"):
            yield Label(Text.assemble(("Keys", "bold"), ("  (escape closes)", "dim")))
            yield Static(table, id="help-keys")


class ExportScreen(ModalScreen[str | None]):
    """Ask where to write the current view; the suffix picks the format."""

    AUTO_FOCUS = "#export-path"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", show=False),
    ]

    def __init__(self, default: str, depth_text: str) -> None:
        super().__init__()
        self.default = default
        self.depth_text = depth_text

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Label(Text(f"Export the current view (depth {self.depth_text}) to:"))
            yield Input(self.default, id="export-path", select_on_focus=False)
            yield Label(
                Text(
                    ".svg .png .pdf diagram · .dot source · .md Markdown table · .json report; "
                    "enter saves",
                    style="dim",
                )
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path = event.value.strip()
        self.dismiss(path or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
