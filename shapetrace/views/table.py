"""The terminal table (rich): hierarchical, collapsible by depth, coloured only on a terminal.

Every cell, the heading and the lines below are rich `Text` made with `safetext.plain`, never
markup: a layer name or path holding `[link=...]` or a terminal escape is shown, not obeyed.
The table fits the terminal (or `COLUMNS`): Layer, Output shape and Input size stay whole, and
the other columns are left out, least needed first, with a line saying which.
"""

from __future__ import annotations

import os
from typing import IO

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from shapetrace.report import Report
from shapetrace.safetext import plain
from shapetrace.views.summary import diagnosis_lines, heading, totals_lines
from shapetrace.views.tree import (
    FAILED,
    NOT_REACHED,
    Column,
    Row,
    build_rows,
    cell_text,
    columns_for,
)

# The Input size states in the TUI's colours: the break red, bound magenta, scales cyan, fixed
# green.
_DEPENDENCE_STYLE = {
    "breaks": "bold red",
    "bound": "bold magenta",
    "scales": "cyan",
    "fixed": "green",
}


def _name_cell(row: Row) -> Text:
    text = Text("  " * row.level)
    name = plain(row.name)
    if row.kind == "group":
        text.append(name, style="bold")
    elif row.kind == "collapsed":
        text.append(name + " …", style="bold")
    else:
        text.append(name)
    return text


# Columns that always stay whole, and the others in the order they are left out when the
# table is wider than the terminal.
KEPT = ("name", "shape", "dep")
LEFT_OUT_FIRST = ("rf", "act", "macs", "type", "params")


# Beyond this many rows the table is printed as aligned plain text.
LARGE = 2000


def build_table(
    report: Report,
    depth: int | None = None,
    rows: list[Row] | None = None,
    columns: list[Column] | None = None,
) -> Table:
    """A rich Table of the report's rows (in `columns`, by default all that apply)."""
    rows = build_rows(report, depth) if rows is None else rows
    columns = columns_for(report, rows) if columns is None else columns
    table = Table(title=Text(heading(report)), title_justify="left", expand=False, pad_edge=False)
    for column in columns:
        kept = column.key in KEPT
        table.add_column(
            column.title,
            justify="right" if column.numeric else "left",
            # Kept columns fold rather than cut when even they do not fit: no `…` mid-shape.
            no_wrap=not kept,
            overflow="fold" if kept else "ellipsis",
            min_width=min(48, max((len(r.name) for r in rows), default=0) + 2)
            if column.key == "name"
            else None,
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
                cells.append(Text(text))
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
        console.print(Text(heading(report), style="italic"), soft_wrap=True)
        out = console.file
        for line in plain_lines(report, rows):
            out.write(line + "\n")
    else:
        limit = target_width(console, width)
        columns, left_out = fit_columns(console, report, depth, rows, limit)
        print_table(console, build_table(report, depth, rows, columns), limit)
        if left_out:
            console.print(
                Text(
                    f"Not shown at {limit} columns: {', '.join(left_out)} "
                    "(a wider terminal, COLUMNS=160 or -o FILE.txt shows them)",
                    style="dim",
                ),
                soft_wrap=True,
            )
    for line in totals_lines(report):
        console.print(Text(line), soft_wrap=True)
    for line in diagnosis_lines(report):
        style = "bold red" if line.startswith("Breaks") else ""
        console.print(Text(line, style=style), soft_wrap=True)


def target_width(console: Console, width: int | None) -> int | None:
    """The width to fit: `width`, the terminal's, or `COLUMNS` when piped; None (the table's
    natural width) when piped without `COLUMNS`."""
    if width is not None:
        return width
    if console.is_terminal:
        return console.width
    return _columns_env()


def _columns_env() -> int | None:
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def fit_columns(
    console: Console, report: Report, depth: int | None, rows: list[Row], limit: int | None
) -> tuple[list[Column], list[str]]:
    """The columns that fit in `limit` characters and the titles of those left out."""
    columns = columns_for(report, rows)
    left_out: list[str] = []
    if limit is None:
        return columns, left_out
    for key in LEFT_OUT_FIRST:
        if _natural_width(console, build_table(report, depth, rows, columns)) <= limit:
            break
        dropped = [c for c in columns if c.key == key]
        columns = [c for c in columns if c.key != key]
        left_out.extend(c.title for c in dropped)
    return columns, left_out


def _natural_width(console: Console, table: Table) -> int:
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


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


class _Console(Console):
    """rich's Console, except that a closed pipe raises BrokenPipeError for the caller to end
    quietly, instead of rich's `SystemExit(1)` (1 means "rejected" to shapetrace's users)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def make_console(file: IO[str] | None, color: bool | None, width: int | None) -> Console:
    """A console that colours only on a terminal; `color=False` means no escape codes at all."""
    plain = color is False
    return _Console(
        file=file,
        color_system=None if plain else "auto",
        force_terminal=False if plain else None,
        no_color=plain,
        width=width,
        highlight=False,
    )


def print_table(console: Console, table: Table, width: int | None) -> None:
    """Print a table `width` wide at most; piped without `COLUMNS` (and no `width`), at its
    natural width rather than squeezed into 80 columns."""
    if width is not None:
        console.width = width
    elif not console.is_terminal and _columns_env() is None:
        console.width = max(80, _natural_width(console, table))
    console.print(table)


def render_text(report: Report, depth: int | None = None, width: int = 160) -> str:
    """The table as plain text (for `-o FILE.txt`)."""
    import io

    buffer = io.StringIO()
    render(report, depth, file=buffer, color=False, width=width)
    return buffer.getvalue()
