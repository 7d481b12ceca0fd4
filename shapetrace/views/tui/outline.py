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
from shapetrace.safetext import plain
from shapetrace.views.tree import (
    FAILED,
    NOT_REACHED,
    Column,
    Row,
    build_rows,
    cell_text,
    columns_for,
    shape_text,
)

# How a row depends on the input size. `breaks` is the node the report's failure names (also
# when the sizing pass has not marked it so itself); `bound` nodes limit which sizes work.
BREAKS, BOUND, SCALES, FIXED = "breaks", "bound", "scales", "fixed"
STATES = (BREAKS, BOUND, SCALES, FIXED)
FAILED_STYLE = "bold red"
# The break and the bound nodes stand out, each in its own colour; scaling and fixed shapes get
# calmer, distinct ones (the diagram uses the same hues).
DEPENDENCE_STYLE = {BREAKS: FAILED_STYLE, BOUND: "bold magenta", SCALES: "cyan", FIXED: "green"}
NOT_REACHED_STYLE = "dim"
CHANGED_MARK = "Δ "
CHANGED_STYLE = "bold yellow"
STATE_MEANING = {
    BREAKS: "fails here at this input",
    BOUND: "limits which input sizes work",
    SCALES: "changes with the input size",
    FIXED: "the same at every input size",
}


def row_state(row: Row) -> str | None:
    """breaks, bound, scales, fixed (or None) for one row; a group is never `breaks` itself."""
    if row.kind != "group" and (row.status == FAILED or row.depends_on_input == BREAKS):
        return BREAKS
    dep = row.depends_on_input
    # A group holding the break is marked by its ✗, not as a bound node it need not be.
    return None if dep == BREAKS else dep


def _shape_forms(row: Row) -> str:
    """The shape as the table shows it and as `--input` spells it, lower case, for the filter."""
    text = shape_text(row)
    if isinstance(row.shape, list) and all(isinstance(d, int) for d in row.shape):
        text += " " + "x".join(map(str, row.shape))
    return text.lower()


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
    # Rows whose shape or state differs from the report shown before (after a size change).
    changed: set[str] = field(default_factory=set)

    @classmethod
    def build(
        cls,
        report: Report,
        depth: int | None = None,
        previous: Report | None = None,
        previous_rows: list[Row] | None = None,
    ) -> Outline:
        """Rows in graph order; a row's parent is the nearest group row above it, one level up.

        With `previous` (the report shown before a size change), rows whose output shape or
        state differs from the same node's or module's there are marked as changed;
        `previous_rows` are its rows at `depth` when the caller has them."""
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
            _changed(rows, previous_rows or build_rows(previous, depth))
            if previous is not None
            else set(),
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
        """Rows shown in the table: those matching `query`, else those whose enclosing groups
        are all expanded.

        A query that is a state (`bound`, `breaks`, `scales`, `fixed`, with or without a leading
        `/`) keeps the layers in that state; any other text matches names, types and shapes
        (`14, 14` or `1x2048x14x14`)."""
        needle = query.strip().lower()
        if needle.removeprefix("/") in STATES:
            state = needle.removeprefix("/")
            return [
                i
                for i, row in enumerate(self.rows)
                if row.kind != "group" and row_state(row) == state
            ]
        if needle:
            return [
                i
                for i, row in enumerate(self.rows)
                if needle in row.name.lower()
                or needle in row.type.lower()
                or (row.status != NOT_REACHED and needle in _shape_forms(row))
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
            if row.kind != "group" and row_state(row) in (BOUND, BREAKS)
        ]

    def first_target(self) -> int | None:
        """Where the answer is: the failing node, else the first bound node."""
        targets = self.targets()
        breaking = [i for i in targets if row_state(self.rows[i]) == BREAKS]
        return next(iter(breaking or targets), None)

    def answer_collapsed(self) -> set[str]:
        """The groups to fold so the first screen shows the answer: every module that holds no
        bound or failing node is collapsed, the ones that do stay open down to it."""
        keep = {a for i in self.targets() for a in self.ancestors(i)}
        return {
            row.name for i, row in enumerate(self.rows) if row.kind == "group" and i not in keep
        }

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
        state = row_state(row) or ""
        dep_style = DEPENDENCE_STYLE.get(state, "")
        cells = []
        for column in self.columns:
            text = plain(cell_text(row, column.key))
            if column.key == "name":
                cell = Text("  " * row.level)
                if row.kind == "group":
                    cell.append(("▸ " if row.name in collapsed else "▾ ") + text, style="bold")
                elif row.kind == "collapsed":
                    cell.append(text + " …", style="bold")
                else:
                    cell.append(text)
                if state in (BOUND, BREAKS):
                    cell.stylize(dep_style)
            elif column.key == "shape" and state == BREAKS:
                cell = Text("✗ " + text, style=FAILED_STYLE)
            elif column.key in ("shape", "dep") and row.status != NOT_REACHED:
                # scaling and fixed shapes told apart; the state column names the state
                cell = Text(state if column.key == "dep" else text, style=dep_style)
                if column.key == "shape" and row.name in self.changed:
                    cell = Text.assemble((CHANGED_MARK, CHANGED_STYLE), cell)
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
        label = Text(plain(name))
        state = row_state(row) or ""
        if state == BREAKS:
            label.stylize(FAILED_STYLE)
            label.append(" ✗ breaks", style=FAILED_STYLE)
        elif state == BOUND:
            label.stylize(DEPENDENCE_STYLE[BOUND])
            label.append(" bound", style=DEPENDENCE_STYLE[BOUND])
        elif row.kind != "group" and state in DEPENDENCE_STYLE:
            label.stylize(DEPENDENCE_STYLE[state])
        if row.status == FAILED and row.kind == "group":
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


def _changed(rows: list[Row], previous: list[Row]) -> set[str]:
    """Names of rows whose output shape, state or status is not what it was in `previous`."""
    before = {(row.kind, row.name): (row.shape, row_state(row), row.status) for row in previous}
    return {
        row.name
        for row in rows
        if before.get((row.kind, row.name), (row.shape, row_state(row), row.status))
        != (row.shape, row_state(row), row.status)
    }


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
