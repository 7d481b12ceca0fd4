"""The interactive explorer: module tree, node table, details, and a live input size.

It renders from a Report alone. When the report's source can be rebuilt, a new input size is
analysed by the analysis API in a thread worker, and the views update in place. Nothing here
imports torch: the worker does, lazily, after the window has painted.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import re
import sys
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.actions import SkipAction
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Label, Static, Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from shapetrace.errors import ShapetraceError, UsageError
from shapetrace.report import Report
from shapetrace.safetext import plain
from shapetrace.views.tree import build_rows
from shapetrace.views.tui.details import (
    depth_text,
    details_text,
    header_text,
    legend_text,
    loading_header,
    totals_text,
)
from shapetrace.views.tui.export import SUFFIXES, default_name, export
from shapetrace.views.tui.outline import (
    CHANGED_MARK,
    CHANGED_STYLE,
    FAILED_STYLE,
    Outline,
    depth_cycle,
)
from shapetrace.views.tui.request import (
    analyse,
    estimate,
    input_text,
    rebuild_blocker,
    request_for,
    validate_input,
)
from shapetrace.views.tui.screens import ExportScreen, HelpScreen

RowIndex = int


# Beyond this many rows the table opens collapsed (press d to go deeper): a DataTable lays out
# every row it holds, so a 20,000-node graph would take seconds per refresh.
ROW_LIMIT = 2000


def fitting_depth(report: Report) -> int | None:
    """None (everything) when the graph is small, else the deepest depth that fits ROW_LIMIT."""
    if len(report.nodes) <= ROW_LIMIT:
        return None
    depth = 1
    while len(build_rows(report, depth + 1)) <= ROW_LIMIT and depth < 32:
        depth += 1
    return depth


def tui_message(message: str) -> str:
    """An error worded for the explorer: one line, no control characters, and no command-line
    flag (`malformed --input '1x3x'` -> `malformed input '1x3x'`)."""
    return re.sub(r"--input\b", "input", plain(message).splitlines()[0] if message else "")


def _parse_formulas(report: Report) -> None:
    """Answer the report's own size from its formulas: parses them (10-20 ms for a ResNet-50,
    kept per formula text), so that the first size change is answered at once."""
    with contextlib.suppress(ValueError):
        report.at(report.input)


def _kept_columns(shown: Outline, new: Outline) -> list[Any]:
    """The columns of `shown` when `new` has a subset of them (an estimate lacks receptive
    fields and activation bytes), else `new`'s own."""
    keys = {column.key for column in new.columns}
    if keys <= {column.key for column in shown.columns}:
        return list(shown.columns)
    return new.columns


class ShapetraceApp(App[None]):
    """Explore one model's report; change the input size and watch what changes or breaks."""

    CSS_PATH = "app.tcss"
    TITLE = "shapetrace"
    ENABLE_COMMAND_PALETTE = False
    AUTO_FOCUS = "#table"
    # Below 110 columns the tree is hidden (t shows it) so the table keeps its columns.
    # (Textual declares these `ClassVar[...] | None`, so mypy refuses a ClassVar annotation.)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide"), (170, "-very-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("n", "next_target", "Next"),
        Binding("N", "previous_target", "Prev"),
        Binding("d", "cycle_depth", "Depth"),
        # Priority: handled when the key arrives, so the digits typed right after it (already
        # queued) reach the field, not the table.
        Binding("i", "edit_input", "Input", priority=True),
        Binding("e", "export", "Export"),
        Binding("t", "toggle_tree", "Tree"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "escape", "Back", show=False),
    ]
    # What each shown binding does, at more length than the footer has room for.
    KEY_HELP: ClassVar[dict[str, str]] = {
        "filter": "filter by name, type or shape; bound, breaks, scales, fixed by state",
        "next_target": "jump to the next bound or failing node",
        "previous_target": "jump to the previous bound or failing node",
        "cycle_depth": "depth: all, then modules collapsed at 1, 2, ...",
        "edit_input": "edit the input size; enter re-analyses",
        "export": f"export this view: {SUFFIXES}",
        "toggle_tree": "show or hide the module tree",
        "help": "this help",
        "quit": "quit",
    }

    def __init__(
        self,
        report: Report | None = None,
        *,
        request: dict[str, Any] | None = None,
        freeze_heap: bool = False,
    ) -> None:
        super().__init__()
        if report is None and request is None:
            raise ValueError("give a report or an analysis request")
        # When the explorer is the whole process (`shapetrace MODEL --tui`): once the first
        # analysis has imported torch, `gc.freeze()` its million objects, so that no garbage
        # collection walks them again (a collection of the youngest-but-one generation took
        # 100-400 ms of a size change).
        self._freeze_heap = freeze_heap
        self.report: Report | None = report
        # A request means the user named the model on the command line: a new size rebuilds it
        # from that request. A report opened alone is data, re-analysed by name only.
        self.request = request
        self.previous: Report | None = None  # the report shown before the last size change
        # The last report a real analysis gave (the shown one may be estimated from formulas).
        self.confirmed: Report | None = None
        self.error: BaseException | None = None
        self.outline: Outline | None = None
        self.depth: int | None = None
        self.collapsed: set[str] = set()
        self.query_text = ""
        self.visible_rows: list[RowIndex] = []
        self.selected: RowIndex | None = None
        self._positions: dict[RowIndex, int] = {}
        # Table row keys carry the fill they belong to, so events from an older fill are ignored.
        self._fill = 0
        self._filter_timer: Timer | None = None
        self._tree_nodes: dict[RowIndex, TreeNode[RowIndex]] = {}
        # What the table holds, so a new size updates only the cells that differ.
        self._column_keys: list[Any] = []
        self._shown: dict[RowIndex, list[Text]] = {}
        self._labels: dict[RowIndex, Text] = {}
        self._texts: dict[str, Any] = {}  # what each Static shows (`_put`)

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="totals")
        yield Static(legend_text(), id="legend")
        with Horizontal(id="inputbar"):
            yield Label("Input ", id="input-label")
            yield Input(id="size", compact=True, placeholder="1x3x224x224")
            yield Static(id="status")
        with Horizontal(id="filterbar"):
            yield Label("Filter ", id="filter-label")
            yield Input(id="filter", compact=True, placeholder="name, type, shape or state")
            yield Static(id="filter-count")
        with Horizontal(id="main"):
            tree: Tree[RowIndex] = Tree("model", id="tree")
            tree.auto_expand = False
            tree.guide_depth = 2
            yield tree
            with Container(id="right"):
                yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="details"):
                    yield Static(id="details-body")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#details").border_title = "details"
        if self.report is not None:
            self._show(self.report)
            return
        assert self.request is not None
        inputs = input_text(self.request.get("input"))
        self.query_one("#header", Static).update(loading_header(str(self.request["model"]), inputs))
        size = self.query_one("#size", Input)
        size.value = inputs
        size.disabled = True
        self._set_status(Text("analysing…", style="italic"))
        self.query_one("#main").loading = True
        # Start after the first frame: the worker's torch import competes for the GIL.
        self.call_after_refresh(self._analyse, self.request)

    # -- analysis ---------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="analysis", exit_on_error=False)
    def _analyse(self, request: dict[str, Any]) -> None:
        worker = get_current_worker()
        outcome: Report | BaseException
        try:
            outcome = analyse(request)
        except Exception as exc:  # shown to the user, never a crash of the window
            outcome = exc
        if worker.is_cancelled:
            return  # a newer input superseded this one
        with contextlib.suppress(RuntimeError):  # the app closed while the analysis ran
            self.call_from_thread(self._analysis_done, request, outcome)

    def _analysis_done(self, request: dict[str, Any], outcome: Report | BaseException) -> None:
        self.query_one("#main").loading = False
        if self._freeze_heap:
            self._freeze_heap = False
            gc.freeze()
        if isinstance(outcome, Report):
            self._show(outcome)
            return
        if self.report is None:
            self.error = outcome  # nothing to show: run_tui re-raises it after the window closes
            self.exit()
            return
        if isinstance(outcome, ShapetraceError):
            message = str(outcome)
        else:
            message = f"internal error: {type(outcome).__name__}: {outcome}"
        self._set_status(Text("✗ " + tui_message(message), style=FAILED_STYLE))

    @on(Input.Submitted, "#size")
    def _size_submitted(self, event: Input.Submitted) -> None:
        if self.report is None:
            return
        text = event.value.strip()
        table = self.query_one("#table")
        try:
            validate_input(text)
        except UsageError as exc:
            # Say why in the status line, give the keys back to the table (`i` edits again),
            # and show the size that is analysed.
            self._set_status(Text("✗ " + tui_message(str(exc)), style=FAILED_STYLE))
            event.input.value = self._input_shown()
            self.screen.set_focus(table)
            return
        blocker = self._blocker(self.report)
        if blocker:
            self._set_status(Text(plain(blocker), style="dim"))
            return
        if self.request is not None:
            request = dict(self.request, input=text)
        else:
            request = request_for(self.report, text)
        # The formulas answer at once; the worker's analysis on meta tensors confirms it. It
        # starts once the estimate is on the screen: its torch work holds the GIL for a
        # hundred milliseconds and more, which would delay the repaint the user waits for.
        estimated = estimate(self.confirmed or self.report, text)
        if estimated is not None:
            self._show(estimated)
            self.call_after_refresh(self._analyse, request)
        else:
            self._set_status(Text(f"analysing {plain(text)}…", style="italic"))
            self._analyse(request)
        self.screen.set_focus(table)

    def _blocker(self, report: Report) -> str | None:
        """Why a new size cannot be analysed here (None when it can)."""
        if self.request is not None:
            return None  # the user named this model on the command line
        return rebuild_blocker(report.source)

    def _input_shown(self) -> str:
        if self.report is None:
            return ""
        return input_text(self.report.source.get("input")) or "x".join(map(str, self.report.input))

    # -- showing a report ----------------------------------------------------------------
    def _show(self, report: Report) -> None:
        """Show `report`, keeping the selected row, the collapsed groups and the filter.

        The first report opens on the answer: modules without a bound or failing node folded,
        the cursor on the failing node (else the first bound one). A later one (a new size)
        marks the rows whose shape or state changed."""
        keep = self._selection_key()
        first = self.outline is None
        if first and self.depth is None:
            self.depth = fitting_depth(report)
        self.previous = None if first else (self.confirmed or self.report)
        self.report = report
        estimated = "estimated" in report.source
        if not estimated:
            self.confirmed = report
            # Parse its formulas once the screen is painted, not at the first size change.
            self.call_after_refresh(_parse_formulas, report)
        shown = self.outline
        # The rows of the report compared against, when they are the ones on the screen.
        same = shown is not None and shown.report is self.previous and shown.depth == self.depth
        rows_before = shown.rows if shown is not None and same else None
        self.outline = Outline.build(report, self.depth, self.previous, rows_before)
        if estimated and shown is not None:
            # The formulas give no receptive field or activation bytes: keep their columns,
            # empty until the analysis confirms, so the table keeps its layout.
            self.outline.columns = _kept_columns(shown, self.outline)
        if first:
            self.collapsed = self.outline.answer_collapsed()
        self._update_header()
        size = self.query_one("#size", Input)
        size.value = self._input_shown()
        blocker = self._blocker(report)
        size.disabled = blocker is not None
        size.tooltip = Text(plain(blocker)) if blocker else None
        status = Text()
        if blocker:
            status.append(plain(blocker), style="dim")
        elif report.failure is not None:
            status.append(
                f"✗ rejected at {plain(report.failure.node)} · n jumps there", style=FAILED_STYLE
            )
        else:
            status.append(f"✓ {len(report.nodes)} nodes", style="green")
        if self.previous is not None:
            before = "x".join(map(str, self.previous.input))
            status.append(
                f" · {CHANGED_MARK}{len(self.outline.changed)} rows changed from {before}",
                style=CHANGED_STYLE,
            )
        if estimated:
            status.append(
                " · ≈ from the shape formulas; confirming on meta tensors…", style="italic"
            )
        self._set_status(status)
        if first:
            self._build_tree()
            self._fill_table(self.outline.first_target() or 0)
            return
        if shown is not None and self._update_in_place(shown):
            return
        self._rebuild(keep)

    def _update_in_place(self, shown: Outline) -> bool:
        """Show the new outline in the tree and table as they stand when only cells differ
        (the same rows, columns and visible rows: a new size): set the cells and tree labels
        that changed, leave the rest, the cursor and the layout alone. False when the rows
        or columns differ (then everything is rebuilt)."""
        outline = self.outline
        assert outline is not None
        if [(r.kind, r.name, r.level) for r in outline.rows] != [
            (r.kind, r.name, r.level) for r in shown.rows
        ]:
            return False
        if outline.titles() != shown.titles() or len(self._column_keys) != len(outline.columns):
            return False
        if outline.visible(self.collapsed, self.query_text) != self.visible_rows:
            return False
        table: DataTable[Text] = self.query_one("#table", DataTable)
        widths = [column.content_width for column in table.columns.values()]
        for index in self.visible_rows:
            cells = outline.cells(index, self.collapsed)
            before = self._shown.get(index, [])
            key = f"{self._fill}:{index}"
            for column, cell in enumerate(cells):
                if column < len(before) and _same_text(cell, before[column]):
                    continue
                # A wider cell widens its column; a narrower one leaves it as it is (columns
                # that shrink and grow at each size would make the table jump).
                grow = cell.cell_len > widths[column]
                table.update_cell(key, self._column_keys[column], cell, update_width=grow)
            self._shown[index] = cells
        for index, node in self._tree_nodes.items():
            label = outline.tree_label(index)
            shown_label = self._labels.get(index)
            if shown_label is None or not _same_text(label, shown_label):
                node.set_label(label)
                self._labels[index] = label
        self._update_filter_count()
        self._select(self.selected)
        return True

    def _update_header(self) -> None:
        assert self.report is not None and self.outline is not None
        folded = bool(self.collapsed) and self.depth is None
        self._put("#header", header_text(self.report, self.depth, folded))
        self._put("#totals", totals_text(self.report))
        self._put("#legend", legend_text(bool(self.outline.changed)))

    def _selection_key(self) -> tuple[str, str] | None:
        if self.outline is None or self.selected is None:
            return None
        row = self.outline.rows[self.selected]
        return row.kind, row.name

    def _rebuild(self, keep: tuple[str, str] | None) -> None:
        """Rebuild tree and table from the outline, selecting the row `keep` names."""
        assert self.outline is not None
        target = self.outline.index_of(*keep) if keep else None
        self._build_tree()
        self._fill_table(target if target is not None else 0)

    def _build_tree(self) -> None:
        assert self.outline is not None and self.report is not None
        outline = self.outline
        tree: Tree[RowIndex] = self.query_one("#tree", Tree)
        tree.clear()
        tree.root.set_label(Text(plain(self.report.model), style="bold"))
        tree.root.expand()
        self._tree_nodes = {}
        self._labels = {}
        stack: list[tuple[TreeNode[RowIndex], int]] = [
            (tree.root, i) for i in reversed(outline.children[None])
        ]
        while stack:
            parent, index = stack.pop()
            row = outline.rows[index]
            label = self._labels[index] = outline.tree_label(index)
            if row.kind == "group":
                node = parent.add(label, data=index, expand=row.name not in self.collapsed)
                stack.extend((node, child) for child in reversed(outline.children[index]))
            else:
                node = parent.add_leaf(label, data=index)
            self._tree_nodes[index] = node

    def _fill_table(self, select: RowIndex | None) -> None:
        """Refill the table with the visible rows; put the cursor on `select` (or nearby)."""
        assert self.outline is not None
        outline = self.outline
        table: DataTable[Text] = self.query_one("#table", DataTable)
        self.visible_rows = outline.visible(self.collapsed, self.query_text)
        self._positions = {index: pos for pos, index in enumerate(self.visible_rows)}
        self._fill += 1
        table.clear(columns=True)
        self._column_keys = table.add_columns(*outline.titles())
        self._shown = {}
        for index in self.visible_rows:
            cells = outline.cells(index, self.collapsed)
            self._shown[index] = cells
            table.add_row(*cells, key=f"{self._fill}:{index}")
        self._update_filter_count()
        if select is not None and select not in self._positions:
            # The row is hidden: select its nearest visible enclosing group instead.
            select = next((a for a in outline.ancestors(select) if a in self._positions), None)
        if select is not None and select in self._positions:
            table.move_cursor(row=self._positions[select], animate=False)
            self._select(select)
        elif self.visible_rows:
            table.move_cursor(row=0, animate=False)
            self._select(self.visible_rows[0])
        else:
            self._select(None)

    def _select(self, index: RowIndex | None) -> None:
        """Show the details of row `index`."""
        self.selected = index
        if index is None or self.outline is None:
            self._put("#details-body", Text("no row matches", style="dim"))
            return
        self._put("#details-body", details_text(self.outline, index))

    def _put(self, selector: str, text: Text) -> None:
        """Show `text` in a Static unless it shows it already. The screen is laid out again
        only when the text may take another height: a different number of lines, or a line
        wider than the widget (which wraps); otherwise only the widget is repainted."""
        key = _text_key(text)
        shown = self._texts.get(selector)
        if shown is not None and shown[0] == key:
            return
        widget = self.query_one(selector, Static)
        width = widget.content_size.width
        lines = [line.cell_len for line in text.split("\n", allow_blank=True)]
        fits = bool(lines) and max(lines) <= width
        same_height = shown is not None and shown[1] and fits and shown[2] == len(lines)
        self._texts[selector] = (key, fits, len(lines))
        widget.update(text, layout=not same_height)

    def _set_status(self, text: Text) -> None:
        self._put("#status", text)

    def _update_filter_count(self) -> None:
        total = len(self.outline.rows) if self.outline else 0
        shown = f"{len(self.visible_rows)} of {total} rows" if self.query_text else ""
        self._put("#filter-count", Text(shown))

    # -- keeping the tree and the table in step --------------------------------------------
    # The focused one of the two leads; the other follows. Events that arrive after the cursor
    # or the contents have moved on are stale and ignored.
    def _row_index(self, key: str | None) -> RowIndex | None:
        if key is None:
            return None
        fill, _, index = key.partition(":")
        return int(index) if fill == str(self._fill) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        index = self._row_index(event.row_key.value)
        if index is None or self._positions.get(index) != event.data_table.cursor_row:
            return
        self._select(index)
        tree: Tree[RowIndex] = self.query_one("#tree", Tree)
        node = self._tree_nodes.get(index)
        if node is None or tree.cursor_node is node or self.focused is tree:
            return
        self._reveal_in_tree(node)

    def _reveal_in_tree(self, node: TreeNode[RowIndex]) -> None:
        parent = node.parent
        while parent is not None:
            if not parent.is_expanded:
                parent.expand()
            parent = parent.parent
        # Line numbers are recomputed on the next refresh after expanding.
        self.call_after_refresh(self._follow_in_tree, node)

    def _follow_in_tree(self, node: TreeNode[RowIndex]) -> None:
        tree: Tree[RowIndex] = self.query_one("#tree", Tree)
        if self.focused is not tree:  # the user has taken the tree over meanwhile
            tree.move_cursor(node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[RowIndex]) -> None:
        tree = event.control
        index = event.node.data
        if (
            index is None
            or event.node is not tree.cursor_node
            or self._tree_nodes.get(index) is not event.node
            or self.focused is not tree
        ):
            return
        table: DataTable[Text] = self.query_one("#table", DataTable)
        position = self._positions.get(index)
        if position is None:
            self._select(index)  # filtered out of the table: show its details anyway
        elif table.cursor_row != position:
            table.move_cursor(row=position)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[RowIndex]) -> None:
        self._set_collapsed(event.node, False)

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[RowIndex]) -> None:
        self._set_collapsed(event.node, True)

    def _set_collapsed(self, node: TreeNode[RowIndex], collapsed: bool) -> None:
        index = node.data
        if index is None or self.outline is None or self._tree_nodes.get(index) is not node:
            return
        name = self.outline.rows[index].name
        if (name in self.collapsed) == collapsed:
            return
        if collapsed:
            self.collapsed.add(name)
        else:
            self.collapsed.discard(name)
        self._fill_table(self.selected)
        self._update_header()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter (or a click on the highlighted row) toggles a group, as in the tree."""
        index = self._row_index(event.row_key.value)
        if index is None or self.outline is None:
            return
        node = self._tree_nodes.get(index)
        if node is not None and self.outline.rows[index].kind == "group":
            node.toggle()

    # -- actions ---------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.screen.add_class("-filtering")
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # Refilter once typing pauses: refilling thousands of rows per keystroke would lag.
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(0.15, lambda: self._apply_filter(event.value))

    def _apply_filter(self, text: str) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        if text != self.query_text:
            self.query_text = text
            self._fill_table(self.selected)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter(event.value)
        if not event.value.strip():
            self._clear_filter()
        self.query_one("#table").focus()

    def _clear_filter(self) -> None:
        self.screen.remove_class("-filtering")
        self.query_one("#filter", Input).value = ""
        self._apply_filter("")

    def action_escape(self) -> None:
        focused = self.focused
        if focused is not None and focused.id == "size" and self.report is not None:
            size = self.query_one("#size", Input)
            size.value = input_text(self.report.source.get("input"))
            self.query_one("#table").focus()
        elif self.query_text or self.screen.has_class("-filtering"):
            self._clear_filter()
            self.query_one("#table").focus()

    def _jump(self, forward: bool) -> None:
        if self.outline is None:
            return
        among = self.visible_rows if self.query_text else range(len(self.outline.rows))
        target = self.outline.next_target(self.selected, forward, among)
        if target is None:
            self._set_status(Text("no bound or failing node", style="dim"))
            return
        hidden = [
            a
            for a in self.outline.ancestors(target)
            if self.outline.rows[a].name in (self.collapsed)
        ]
        for ancestor in hidden:
            self.collapsed.discard(self.outline.rows[ancestor].name)
            node = self._tree_nodes.get(ancestor)
            if node is not None:
                node.expand()
        if hidden:
            self._fill_table(target)
        else:
            self.query_one("#table", DataTable).move_cursor(row=self._positions[target])
            self._select(target)
        self.query_one("#table").focus()

    def action_next_target(self) -> None:
        self._jump(True)

    def action_previous_target(self) -> None:
        self._jump(False)

    def action_cycle_depth(self) -> None:
        if self.report is None:
            return
        cycle = depth_cycle(self.report)
        position = cycle.index(self.depth) if self.depth in cycle else 0
        self.depth = cycle[(position + 1) % len(cycle)]
        self.collapsed = set()  # a depth is an explicit choice: nothing else folded
        keep = self._selection_key()
        self.outline = Outline.build(self.report, self.depth, self.previous)
        self._update_header()
        self._rebuild(keep)

    def action_edit_input(self) -> None:
        if isinstance(self.focused, Input):
            raise SkipAction()  # an `i` typed into a field
        size = self.query_one("#size", Input)
        if size.disabled:
            reason = size.tooltip if isinstance(size.tooltip, Text) else Text("analysing…")
            self._set_status(Text(reason.plain, style="dim"))
            return
        # Focus now, not after a refresh: the digits typed right after `i` go to the field.
        self.screen.set_focus(size)

    def action_export(self) -> None:
        if self.report is None:
            return
        report, depth = self.report, self.depth

        def write(path: str | None) -> None:
            if not path:
                return
            try:
                fmt = export(report, path, depth)
            except (ShapetraceError, OSError) as exc:
                message = f"✗ export failed: {tui_message(str(exc))}"
                self._set_status(Text(message, style=FAILED_STYLE))
                return
            self._set_status(Text(f"✓ wrote {plain(path)} ({fmt})", style="green"))

        self.push_screen(ExportScreen(default_name(report, depth), depth_text(depth)), write)

    def action_toggle_tree(self) -> None:
        self.screen.toggle_class("-flip-tree")

    def help_rows(self) -> list[tuple[str, str]]:
        """(key, what it does) for every binding the footer shows."""
        return [
            (self.get_key_display(b), self.KEY_HELP[b.action])
            for b in self.BINDINGS
            if isinstance(b, Binding) and b.show
        ]

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_rows()))


def run_tui(
    report: Report | None = None, *, request: dict[str, Any] | None = None
) -> Report | None:
    """Open the explorer on `report`, or on the analysis `request` (painted before it runs).

    `request` is `{"model": spec, "input": "1x3x448x448" | None, "model_args": {...},
    "train": bool}`, the model the user named. A malformed input, or no terminal to draw on
    (stdin or stdout not a tty), raises UsageError before the window opens; if the first
    analysis fails, the window closes and its error is raised here. Returns the report shown
    last (None if the window closed before one arrived), so a caller can choose its exit code.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the explorer needs a terminal (stdin and stdout are not both a tty); "
            "leave out --tui to print the report"
        )
    if request is not None and request.get("input"):
        validate_input(input_text(request["input"]))
    app = ShapetraceApp(report, request=request, freeze_heap=True)
    # Once torch is loaded, the interpreter's final garbage collection walks millions of its
    # objects (about 2 s after `q`); objects frozen at exit are skipped, so the shell is back at
    # once. Only at exit: a caller that keeps running is not affected.
    atexit.register(gc.freeze)
    app.run()
    if app.error is not None:
        raise app.error
    return app.report


def _text_key(text: Text) -> tuple[Any, ...]:
    """What a Text shows: rich's `==` compares the characters and spans, not the style of
    the whole text, so a cell whose state changed colour and not wording would look equal."""
    return (text.plain, text.spans, text.style, text.justify)


def _same_text(a: Text, b: Text) -> bool:
    return _text_key(a) == _text_key(b)
