"""The rows the TUI shows, their nesting, and which of them are visible (no Textual, no torch).

One `Outline` per (report, depth): the rows of `views.tree.build_rows`, each row's enclosing
group, and who uses each node. The tree and the table both read it, which keeps them in step:
a group collapsed in the tree hides its rows in the table, and a filter shows matching rows
whatever their group's state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.text import Text

from shapetrace.report import Node, Report
from shapetrace.views.tree import (
    FAILED,
    NOT_REACHED,
    Column,
    Row,
    build_rows,
    cell_text,
    columns_for,
)

BOUND = "bound"
# Bound nodes stand out; scaling and fixed shapes get calmer, distinct colours (as in the table).
DEPENDENCE_STYLE = {BOUND: "bold magenta", "scales": "cyan", "fixed": "green"}
FAILED_STYLE = "bold red"
NOT_REACHED_STYLE = "dim"


@dataclass
class Outline:
    """The rows of one report at one depth, with their nesting."""

    report: Report
    depth: int | None
    rows: list[Row]
    parents: list[int | None]
    children: dict[int | None, list[int]]
    users: dict[str, list[str]] = field(default_factory=dict)
    by_name: dict[str, Node] = field(default_factory=dict)
    # The table views' columns: the analyses that ran get theirs.
    columns: list[Column] = field(default_factory=list)

    @classmethod
    def build(cls, report: Report, depth: int | None = None) -> Outline:
        """Rows in graph order; a row's parent is the nearest group row above it, one level up."""
        rows = build_rows(report, depth)
        parents: list[int | None] = []
        children: dict[int | None, list[int]] = {None: []}
        open_groups: list[int] = []
        for i, row in enumerate(rows):
            del open_groups[row.level :]
            parent = open_groups[-1] if open_groups else None
            parents.append(parent)
            children.setdefault(parent, []).append(i)
            if row.kind == "group":
                open_groups.append(i)
                children[i] = []
        users: dict[str, list[str]] = {}
        for node in report.nodes:
            for name in node.inputs:
                users.setdefault(name, []).append(node.name)
        by_name = {node.name: node for node in report.nodes}
        return cls(
            report,
            depth,
            rows,
            parents,
            children,
            users,
            by_name,
            _tui_order(columns_for(report, rows)),
        )

    # -- nesting -------------------------------------------------------------------------
    def ancestors(self, index: int) -> list[int]:
        """Group rows enclosing row `index`, innermost first."""
        chain = []
        parent = self.parents[index]
        while parent is not None:
            chain.append(parent)
            parent = self.parents[parent]
        return chain

    def members(self, index: int) -> list[str]:
        """Names of the graph nodes a row stands for."""
        row = self.rows[index]
        if row.kind == "node":
            return [row.name]
        if row.kind == "collapsed":
            return list(row.members)
        names: list[str] = []
        for child in self.children.get(index, []):
            names.extend(self.members(child))
        return names

    def index_of(self, kind: str, name: str) -> int | None:
        """The row of that kind and name (how a selection survives a rebuild)."""
        for i, row in enumerate(self.rows):
            if row.name == name and row.kind == kind:
                return i
        for i, row in enumerate(self.rows):
            if row.name == name or name in row.members:
                return i
        return None

    # -- what is shown -------------------------------------------------------------------
    def visible(self, collapsed: set[str], query: str = "") -> list[int]:
        """Rows shown in the table: those matching `query` (name or type), else those whose
        enclosing groups are all expanded."""
        needle = query.strip().lower()
        if needle:
            return [
                i
                for i, row in enumerate(self.rows)
                if needle in row.name.lower() or needle in row.type.lower()
            ]
        shown = []
        hidden_below: int | None = None  # level of a collapsed group we are inside
        for i, row in enumerate(self.rows):
            if hidden_below is not None:
                if row.level > hidden_below:
                    continue
                hidden_below = None
            shown.append(i)
            if row.kind == "group" and row.name in collapsed:
                hidden_below = row.level
        return shown

    def targets(self) -> list[int]:
        """Rows `n`/`N` jump between: bound nodes and the failing node (groups excluded)."""
        return [
            i
            for i, row in enumerate(self.rows)
            if row.kind != "group" and (row.depends_on_input == BOUND or row.status == FAILED)
        ]

    def next_target(self, current: int | None, forward: bool, among: Iterable[int]) -> int | None:
        """The next (or previous) target after row `current`, wrapping around."""
        allowed = set(among)
        candidates = [i for i in self.targets() if i in allowed]
        if not candidates:
            return None
        if current is None:
            return candidates[0] if forward else candidates[-1]
        if forward:
            later = [i for i in candidates if i > current]
            return later[0] if later else candidates[0]
        earlier = [i for i in candidates if i < current]
        return earlier[-1] if earlier else candidates[-1]

    # -- columns -------------------------------------------------------------------------
    def titles(self) -> list[str]:
        """Column headings."""
        return [column.title for column in self.columns]

    def cells(self, index: int, collapsed: set[str]) -> list[Text]:
        """The table cells of row `index`, styled by status and input dependence."""
        row = self.rows[index]
        dep = row.depends_on_input or ""
        dep_style = DEPENDENCE_STYLE.get(dep, "")
        cells = []
        for column in self.columns:
            text = cell_text(row, column.key)
            if column.key == "name":
                cell = Text("  " * row.level)
                if row.kind == "group":
                    cell.append(("▸ " if row.name in collapsed else "▾ ") + text, style="bold")
                elif row.kind == "collapsed":
                    cell.append(text + " …", style="bold")
                else:
                    cell.append(text)
                if dep == BOUND:
                    cell.stylize(dep_style)
            elif column.key == "shape" and row.status == FAILED and row.kind != "group":
                cell = Text("✗ " + text, style=FAILED_STYLE)
            elif column.key in ("shape", "dep") and row.status != NOT_REACHED:
                cell = Text(text, style=dep_style)  # scaling and fixed shapes told apart
            else:
                cell = Text(text)
            if column.numeric:
                cell.justify = "right"
            cells.append(cell)
        status_style = _status_style(row)
        if status_style:
            for cell in cells:
                cell.stylize(status_style)
        return cells

    def tree_label(self, index: int) -> Text:
        """A short label for the module tree: the name relative to its group."""
        row = self.rows[index]
        parent = self.parents[index]
        name = row.name
        if parent is not None:
            prefix = self.rows[parent].name + "."
            if name.startswith(prefix):
                name = name[len(prefix) :]
        label = Text(name)
        dep = row.depends_on_input or ""
        if dep == BOUND:
            label.stylize(DEPENDENCE_STYLE[BOUND])
            label.append(" bound", style=DEPENDENCE_STYLE[BOUND])
        elif row.kind != "group" and dep in DEPENDENCE_STYLE:
            label.stylize(DEPENDENCE_STYLE[dep])
        if row.status == FAILED:
            label.append(" ✗", style=FAILED_STYLE)
            label.stylize(FAILED_STYLE)
        elif row.status == NOT_REACHED:
            label.stylize(NOT_REACHED_STYLE)
        return label


def _tui_order(columns: list[Column]) -> list[Column]:
    """Input dependence right after the shape it describes, so it stays on narrow screens."""
    dep = [c for c in columns if c.key == "dep"]
    rest = [c for c in columns if c.key != "dep"]
    at = next((i + 1 for i, c in enumerate(rest) if c.key == "shape"), len(rest))
    return rest[:at] + dep + rest[at:]


def _status_style(row: Row) -> str:
    if row.status == FAILED:
        return FAILED_STYLE
    if row.status == NOT_REACHED:
        return NOT_REACHED_STYLE
    return ""


def max_depth(report: Report) -> int:
    """The deepest module path (`layer4.2.downsample.0` is 4)."""
    return max((m.depth for m in report.modules), default=0)


def depth_cycle(report: Report) -> list[int | None]:
    """Depths `d` steps through: everything, then 1, 2, ... up to one above the deepest."""
    return [None, *range(1, max(max_depth(report), 1))]
