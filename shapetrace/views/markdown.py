"""Markdown for docs: the same rows as the table, indentation kept with em spaces.

Names, paths and messages come from the model or the report: every cell and line is
HTML-escaped (`safetext.html_text`), so `<script>` or `<img onerror=...>` in a layer name shows
as text wherever the Markdown is rendered."""

from __future__ import annotations

from shapetrace.report import Report
from shapetrace.safetext import html_text
from shapetrace.views.summary import diagnosis_lines, heading, totals_lines
from shapetrace.views.tree import FAILED, NOT_REACHED, Row, build_rows, cell_text, columns_for


def _cell(text: str) -> str:
    return html_text(text).replace("|", "\\|")


def _emphasised(row: Row, key: str, text: str) -> bool:
    """The breaking node's shape cell and the break and bound states stand out."""
    if key == "shape":
        return row.status == FAILED and row.kind != "group"
    return key == "dep" and text in ("breaks", "bound")


def render(report: Report, depth: int | None = None) -> str:
    """The report as a Markdown document: heading, table, totals, diagnosis."""
    rows = build_rows(report, depth)
    columns = columns_for(report, rows)
    lines = [
        f"### {_cell(heading(report))}",
        "",
        "| " + " | ".join(c.title for c in columns) + " |",
        "|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|",
    ]
    for row in rows:
        cells = []
        for column in columns:
            text = _cell(cell_text(row, column.key))
            if column.key == "name":
                text = f"`{text}`" if row.kind == "node" else f"**`{text}`**"
                text = "\u2003" * row.level + text
            elif column.key == "shape" and row.status == NOT_REACHED:
                text = f"*{text}*"
            elif _emphasised(row, column.key, text):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {_cell(line)}" for line in totals_lines(report) + diagnosis_lines(report))
    return "\n".join(lines) + "\n"
