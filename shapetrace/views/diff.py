"""Views of a structural diff: a rich table for the terminal, Markdown, and JSON.

All read a `DiffResult` (plain data); nothing here imports torch. Aligned nodes that are the
same on both sides are counted, not listed, so the differences stand out. Model names, node
names and paths are the models' own: the terminal view shows them as rich `Text` with control
characters made visible, never as markup; Markdown escapes HTML (`shapetrace.safetext`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import IO, Any

from rich.table import Table
from rich.text import Text

from shapetrace.report import format_shape
from shapetrace.safetext import html_text, plain
from shapetrace.tasks.diff import DiffResult, ModuleOnly, NodeDiff
from shapetrace.views.table import make_console, print_table

_TOTAL_LABELS = {
    "params": "Params",
    "macs": "MACs",
    "flops": "FLOPs",
    "peak_activation_bytes": "Peak activations",
    "domain": "Accepted sizes",
    "output": "Output",
}
_MODULE_EXAMPLES = 6


def heading(result: DiffResult) -> str:
    """`A = codereview_resnet50 @ 1x3x224x224 · B = resnet50 @ 1x3x224x224`."""
    return (
        f"A = {result.a['model']} @ {result.a['input']} · "
        f"B = {result.b['model']} @ {result.b['input']}"
    )


def verdict(result: DiffResult) -> str:
    if result.same:
        return f"Same structure, shapes and totals ({result.identical} nodes)."
    changed = sum(r.status == "aligned" and not r.same for r in result.nodes)
    only_a = sum(r.status == "only_a" for r in result.nodes)
    only_b = sum(r.status == "only_b" for r in result.nodes)
    return (
        f"{result.aligned} nodes aligned ({result.identical} identical, {changed} changed); "
        f"{only_a} only in A, {only_b} only in B."
    )


def change_text(row: NodeDiff) -> str:
    """What differs in one row, in words."""
    if row.status == "only_a":
        return "only in A"
    if row.status == "only_b":
        return "only in B"
    parts = []
    if "type" in row.changes:
        parts.append(f"type {row.type_a} -> {row.type_b}")
    if "shape" in row.changes:
        parts.append(f"shape {row.factor}" if row.factor else "shape")
    if "params" in row.changes:
        parts.append(f"params {_count(row.params_a)} -> {_count(row.params_b)}")
    return "; ".join(parts)


def total_rows(result: DiffResult) -> list[tuple[str, str, str, str]]:
    """(label, A, B, B relative to A) for each total."""
    rows = []
    for key, (a, b) in result.totals.items():
        label = _TOTAL_LABELS.get(key, key)
        if key == "output":
            rows.append((label, format_shape(a), format_shape(b), "" if a == b else "differs"))
        elif key == "peak_activation_bytes":
            rows.append((label, _bytes(a), _bytes(b), _ratio(a, b)))
        elif isinstance(a, int) or isinstance(b, int):
            rows.append((label, _count(a), _count(b), _ratio(a, b)))
        else:
            rows.append((label, str(a or "-"), str(b or "-"), "" if a == b else "differs"))
    return rows


def module_lines(modules: list[ModuleOnly]) -> list[str]:
    """Modules on one side only, grouped by type: `Conv2d x15: a, b, ... (+9)`."""
    by_type: dict[str, list[ModuleOnly]] = {}
    for module in modules:
        by_type.setdefault(module.type, []).append(module)
    lines = []
    for kind, group in sorted(by_type.items(), key=lambda kv: -len(kv[1])):
        paths = [m.path for m in group]
        shown = ", ".join(paths[:_MODULE_EXAMPLES])
        more = f" (+{len(paths) - _MODULE_EXAMPLES})" if len(paths) > _MODULE_EXAMPLES else ""
        params = sum(m.params for m in group)
        lines.append(f"{kind} x{len(group)} ({_count(params)} params): {shown}{more}")
    return lines


# -- terminal -------------------------------------------------------------------------------


def build_table(result: DiffResult) -> Table:
    """The differing node rows as a rich Table, A on the left, B on the right."""
    table = Table(title="Nodes that differ", title_justify="left", pad_edge=False)
    for column in ("A node", "A type", "A shape", "B node", "B type", "B shape", "Change"):
        table.add_column(column, no_wrap=column != "Change")
    for row in result.differences:
        style = {"only_a": "red", "only_b": "green"}.get(row.status)
        cells = (
            row.a or "",
            row.type_a or "",
            format_shape(row.shape_a) if row.a else "",
            row.b or "",
            row.type_b or "",
            format_shape(row.shape_b) if row.b else "",
            change_text(row),
        )
        table.add_row(*(Text(plain(c)) for c in cells), style=style)
    return table


def render(
    result: DiffResult,
    file: IO[str] | None = None,
    color: bool | None = None,
    width: int | None = None,
) -> None:
    """Print the diff: heading, notable differences, totals, modules on one side, nodes."""
    console = make_console(file, color, width)
    console.print(Text(plain(heading(result)), style="bold"))
    console.print(Text(plain(verdict(result))))
    if result.notable:
        console.print(Text("\nNotable differences", style="bold"))
        for line in result.notable:
            console.print(Text(plain(f"- {line}")), soft_wrap=False, overflow="fold")
    totals = Table(title="Totals", title_justify="left", pad_edge=False)
    for column in ("", "A", "B", "B vs A"):
        totals.add_column(column, justify="left" if not column else "right")
    for row in total_rows(result):
        totals.add_row(*(Text(plain(c)) for c in row))
    print_table(console, totals, width)
    for label, modules in (("A", result.modules_only_a), ("B", result.modules_only_b)):
        if modules:
            console.print(Text(f"Modules only in {label}", style="bold"))
            for line in module_lines(modules):
                console.print(Text(plain(f"- {line}")), overflow="fold")
    if result.differences:
        print_table(console, build_table(result), width)
    console.print(Text(f"{result.identical} aligned nodes identical on both sides (not listed)."))


def render_text(result: DiffResult, width: int = 160) -> str:
    """The terminal view as plain text (for `-o FILE.txt`)."""
    buffer = io.StringIO()
    render(result, file=buffer, color=False, width=width)
    return buffer.getvalue()


# -- Markdown and JSON ----------------------------------------------------------------------


def _cell(text: Any) -> str:
    return html_text(text).replace("|", "\\|")


def _md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return lines


def render_markdown(result: DiffResult) -> str:
    """The diff as a Markdown document."""
    lines = [f"### {_cell(heading(result))}", "", _cell(verdict(result)), ""]
    if result.notable:
        lines += ["**Notable differences**", ""]
        lines += [f"- {_cell(line)}" for line in result.notable]
        lines.append("")
    lines += _md_table(
        ["", "A", "B", "B vs A"], ([_cell(c) for c in r] for r in total_rows(result))
    )
    lines.append("")
    for label, modules in (("A", result.modules_only_a), ("B", result.modules_only_b)):
        if modules:
            lines += [f"**Modules only in {label}**", ""]
            lines += [f"- {_cell(line)}" for line in module_lines(modules)]
            lines.append("")
    if result.differences:
        rows = [
            (
                f"`{_cell(r.a)}`" if r.a else "",
                _cell(r.type_a or ""),
                _cell(format_shape(r.shape_a)) if r.a else "",
                f"`{_cell(r.b)}`" if r.b else "",
                _cell(r.type_b or ""),
                _cell(format_shape(r.shape_b)) if r.b else "",
                _cell(change_text(r)),
            )
            for r in result.differences
        ]
        header = ["A node", "A type", "A shape", "B node", "B type", "B shape", "Change"]
        lines += _md_table(header, rows)
        lines.append("")
    lines.append(f"{result.identical} aligned nodes identical on both sides (not listed).")
    return "\n".join(lines) + "\n"


def render_json(result: DiffResult) -> str:
    """The diff as JSON (every aligned row, including identical ones)."""
    return result.to_json()


# -- numbers --------------------------------------------------------------------------------


def _count(value: Any) -> str:
    if not isinstance(value, int):
        return "-"
    if abs(value) >= 10**6:
        return f"{value:,} ({_si(value)})"
    return f"{value:,}"


def _si(value: int) -> str:
    for factor, unit in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {unit}"
    return str(value)


def _bytes(value: Any) -> str:
    if not isinstance(value, int):
        return "-"
    return f"{value / 2**20:,.1f} MiB"


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int) or not isinstance(b, int) or a == b:
        return "" if a == b else "-"
    if a == 0:
        return "-"
    return f"x{b / a:.4g}"
