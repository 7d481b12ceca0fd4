"""The terminal table (rich): hierarchical, collapsible by depth, coloured only on a terminal."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from shapetrace.report import Report
from shapetrace.views.rf_text import format_rf
from shapetrace.views.summary import diagnosis_lines, heading, totals_lines
from shapetrace.views.tree import FAILED, NOT_REACHED, Row, build_rows, format_params, shape_text

_DEPENDENCE_STYLE = {"bound": "bold magenta", "scales": "cyan", "fixed": "green"}


def _name_cell(row: Row) -> Text:
    text = Text("  " * row.level)
    if row.kind == "group":
        text.append(row.name, style="bold")
    elif row.kind == "collapsed":
        text.append(row.name + " …", style="bold")
    else:
        text.append(row.name)
    return text


def build_table(report: Report, depth: int | None = None) -> Table:
    """A rich Table of the report's rows."""
    rows = build_rows(report, depth)
    show_rf = any(r.rf for r in rows)
    show_dep = any(r.depends_on_input for r in rows)
    table = Table(title=heading(report), title_justify="left", expand=False, pad_edge=False)
    table.add_column("Layer", no_wrap=True, min_width=min(48, max(len(r.name) for r in rows) + 2))
    table.add_column("Type", no_wrap=True)
    table.add_column("Output shape", no_wrap=True)
    table.add_column("Params", justify="right", no_wrap=True)
    if show_rf:
        table.add_column("RF size/stride", justify="right", no_wrap=True)
    if show_dep:
        table.add_column("Input size", no_wrap=True)
    for row in rows:
        style = None
        if row.status == FAILED:
            style = "bold red"
        elif row.status == NOT_REACHED:
            style = "dim"
        shape = "not reached" if row.status == NOT_REACHED else shape_text(row)
        if row.status == FAILED and row.kind != "group":
            shape = "breaks here"
        cells: list[Text | str] = [_name_cell(row), row.type, shape, format_params(row.params)]
        if show_rf:
            cells.append(format_rf(row.rf) if row.rf else "")
        if show_dep:
            dep = row.depends_on_input or ""
            cells.append(Text(dep, style=_DEPENDENCE_STYLE.get(dep, "")))
        table.add_row(*cells, style=style)
    return table


def render(
    report: Report,
    depth: int | None = None,
    file: IO[str] | None = None,
    color: bool | None = None,
    width: int | None = None,
) -> None:
    """Print the table, totals and diagnosis. Colour follows the terminal and NO_COLOR."""
    plain = color is False
    console = Console(
        file=file,
        color_system=None if plain else "auto",
        force_terminal=False if plain else None,
        no_color=plain,
        width=width,
        highlight=False,
    )
    table = build_table(report, depth)
    if width is None and not console.is_terminal:
        # Piped or redirected: print the whole table rather than squeeze it into 80 columns.
        natural = Measurement.get(console, console.options.update_width(10_000), table)
        console.width = max(80, natural.maximum)
    console.print(table)
    for line in totals_lines(report):
        console.print(line)
    for line in diagnosis_lines(report):
        console.print(line, style="bold red" if line.startswith("Breaks") else None)


def render_text(report: Report, depth: int | None = None, width: int = 160) -> str:
    """The table as plain text (for `-o FILE.txt`)."""
    import io

    buffer = io.StringIO()
    render(report, depth, file=buffer, color=False, width=width)
    return buffer.getvalue()
