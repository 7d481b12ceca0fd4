"""Markdown for docs: the same rows as the table, indentation kept with em spaces."""

from __future__ import annotations

from shapetrace.report import Report
from shapetrace.views.rf_text import format_rf
from shapetrace.views.summary import diagnosis_lines, heading, totals_lines
from shapetrace.views.tree import FAILED, NOT_REACHED, build_rows, format_params, shape_text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(report: Report, depth: int | None = None) -> str:
    """The report as a Markdown document: heading, table, totals, diagnosis."""
    rows = build_rows(report, depth)
    show_rf = any(r.rf for r in rows)
    show_dep = any(r.depends_on_input for r in rows)
    header = ["Layer", "Type", "Output shape", "Params"]
    if show_rf:
        header.append("RF size/stride")
    if show_dep:
        header.append("Input size")
    lines = [f"### {_cell(heading(report))}", "", "| " + " | ".join(header) + " |"]
    lines.append(
        "|"
        + "|".join(["---", "---", "---", "---:"] + ["---:"] * show_rf + ["---"] * show_dep)
        + "|"
    )
    for row in rows:
        name = f"`{row.name}`"
        if row.kind != "node":
            name = f"**{name}**"
        name = "\u2003" * row.level + name
        shape = shape_text(row)
        if row.status == NOT_REACHED:
            shape = "*not reached*"
        elif row.status == FAILED and row.kind != "group":
            shape = "**breaks here**"
        cells = [name, _cell(row.type), shape, format_params(row.params)]
        if show_rf:
            cells.append(format_rf(row.rf) if row.rf else "")
        if show_dep:
            dep = row.depends_on_input or ""
            cells.append(f"**{dep}**" if dep == "bound" else dep)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {_cell(line)}" for line in totals_lines(report) + diagnosis_lines(report))
    return "\n".join(lines) + "\n"
