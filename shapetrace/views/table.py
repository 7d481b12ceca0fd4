"""The terminal table (rich): hierarchical, collapsible by depth, coloured only on a terminal."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from shapetrace.report import Report
from shapetrace.views.summary import diagnosis_lines, heading, totals_lines
from shapetrace.views.tree import FAILED, NOT_REACHED, Row, build_rows, cell_text, columns_for

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


# Beyond this many rows the table is printed as aligned plain text.
LARGE = 2000


def build_table(report: Report, depth: int | None = None, rows: list[Row] | None = None) -> Table:
    """A rich Table of the report's rows."""
    rows = build_rows(report, depth) if rows is None else rows
    columns = columns_for(report, rows)
    table = Table(title=heading(report), title_justify="left", expand=False, pad_edge=False)
    for column in columns:
        table.add_column(
            column.title,
            justify="right" if column.numeric else "left",
            no_wrap=True,
            min_width=min(48, max(len(r.name) for r in rows) + 2) if column.key == "name" else None,
        )
    for row in rows:
        style = None
        if row.status == FAILED:
            style = "bold red"
        elif row.status == NOT_REACHED:
            style = "dim"
        cells: list[Text | str] = []
        for column in columns:
            text = cell_text(row, column.key)
            if column.key == "name":
                cells.append(_name_cell(row))
            elif column.key == "dep":
                cells.append(Text(text, style=_DEPENDENCE_STYLE.get(text, "")))
            else:
                cells.append(text)
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
    console = make_console(file, color, width)
    rows = build_rows(report, depth)
    if len(rows) > LARGE:
        # rich lays out every cell; for very large graphs aligned plain text is 100x faster.
        console.print(heading(report), style="italic", soft_wrap=True)
        out = console.file
        for line in plain_lines(report, rows):
            out.write(line + "\n")
    else:
        print_table(console, build_table(report, depth, rows), width)
    for line in totals_lines(report):
        console.print(line, soft_wrap=True)
    for line in diagnosis_lines(report):
        console.print(line, style="bold red" if line.startswith("Breaks") else None, soft_wrap=True)


def plain_lines(report: Report, rows: list[Row]) -> list[str]:
    """The rows as aligned plain text, one line each, header first."""
    columns = columns_for(report, rows)
    grid = [[c.title for c in columns]]
    for row in rows:
        cells = [cell_text(row, c.key) for c in columns]
        cells[0] = "  " * row.level + cells[0]
        grid.append(cells)
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    return [
        "  ".join(
            cell.rjust(w) if column.numeric else cell.ljust(w)
            for cell, w, column in zip(line, widths, columns, strict=True)
        ).rstrip()
        for line in grid
    ]


def make_console(file: IO[str] | None, color: bool | None, width: int | None) -> Console:
    """A console that colours only on a terminal; `color=False` means no escape codes at all."""
    plain = color is False
    return Console(
        file=file,
        color_system=None if plain else "auto",
        force_terminal=False if plain else None,
        no_color=plain,
        width=width,
        highlight=False,
    )


def print_table(console: Console, table: Table, width: int | None) -> None:
    """Print a table; when piped, at its natural width rather than squeezed into 80 columns."""
    if width is None and not console.is_terminal:
        natural = Measurement.get(console, console.options.update_width(10_000), table)
        console.width = max(80, natural.maximum)
    console.print(table)


def render_text(report: Report, depth: int | None = None, width: int = 160) -> str:
    """The table as plain text (for `-o FILE.txt`)."""
    import io

    buffer = io.StringIO()
    render(report, depth, file=buffer, color=False, width=width)
    return buffer.getvalue()
