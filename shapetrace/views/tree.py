"""The hierarchical rows every view shows: module groups, nodes, and modules collapsed by depth.

Depth counts path components: `layer4` is depth 1, `layer4.2` depth 2, `layer4.2.conv1` depth 3.
With `depth=N`, modules at depth N become single rows (their output shape and summed
parameters); modules above that are group headers with their nodes inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shapetrace.report import Module, Node, Report, format_shape
from shapetrace.safetext import plain
from shapetrace.views.rf_text import format_rf

OK, FAILED, NOT_REACHED = "ok", "failed", "not_reached"


@dataclass
class Row:
    """One line of a table, a box of a diagram, one entry of the TUI."""

    kind: str  # "group" (module header), "node", or "collapsed" (module shown as one row)
    name: str  # node name, or module path
    level: int  # indentation level
    type: str
    shape: Any
    params: int
    status: str
    node: Node | None = None
    module: Module | None = None
    members: tuple[str, ...] = ()  # node names a group or collapsed row stands for
    activation_bytes: int | None = None  # bytes of the row's output (a collapsed row: its last)

    @property
    def rf(self) -> dict[str, Any] | None:
        source = self.node if self.node is not None else self.module
        return source.rf if source is not None else None

    @property
    def macs(self) -> int | None:
        source = self.node if self.node is not None else self.module
        return source.macs if source is not None else None

    @property
    def depends_on_input(self) -> str | None:
        source = self.node if self.node is not None else self.module
        return source.depends_on_input if source is not None else None


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def enclosing_modules(report: Report, node: Node) -> list[str]:
    """Module paths that contain `node`, outermost first (its own module for function calls)."""
    if not node.module:
        return []
    known = _module_index(report)
    chain = _prefixes(node.module)
    if node.op == "call_module":
        chain = chain[:-1]
    return [p for p in chain if p in known]


_INDEX_CACHE: dict[int, dict[str, Module]] = {}


def _module_index(report: Report) -> dict[str, Module]:
    key = id(report)
    cached = _INDEX_CACHE.get(key)
    if cached is None or len(cached) != len(report.modules):
        cached = {m.path: m for m in report.modules}
        _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = cached
    return cached


def node_status(report: Report, node: Node) -> str:
    """ok, failed (the breaking node), or not_reached (after the break)."""
    if report.failure is None:
        return OK
    if node.name == report.failure.node:
        return FAILED
    if node.shape is None and node.value is None and node.op != "placeholder":
        return NOT_REACHED
    return OK


def build_rows(report: Report, depth: int | None = None) -> list[Row]:
    """Rows in graph order; `depth=None` expands everything."""
    modules = _module_index(report)
    rows: list[Row] = []
    stack: list[str] = []
    collapsed: Row | None = None
    for node in report.nodes:
        status = node_status(report, node)
        chain = enclosing_modules(report, node)
        own_depth = len(node.module.split(".")) if node.module and node.op == "call_module" else 0
        if depth is not None:
            cut = [p for p in chain if len(p.split(".")) <= depth]
            target = cut[-1] if cut and len(cut[-1].split(".")) == depth else None
            if target is None and own_depth > depth:
                target = ".".join(node.module.split(".")[:depth]) if node.module else None
            groups = [p for p in cut if p != target]
        else:
            target, groups = None, chain
        # Close groups the node is not in, open the ones it is.
        common = 0
        while common < min(len(stack), len(groups)) and stack[common] == groups[common]:
            common += 1
        if common < len(stack):
            collapsed = None
        del stack[common:]
        for path in groups[common:]:
            module = modules[path]
            rows.append(
                Row(
                    "group",
                    path,
                    len(stack),
                    module.type,
                    module.shape,
                    module.params,
                    OK,
                    module=module,
                )
            )
            stack.append(path)
            collapsed = None
        if target is not None and target in modules:
            if collapsed is None or collapsed.name != target:
                module = modules[target]
                collapsed = Row(
                    "collapsed",
                    target,
                    len(stack),
                    module.type,
                    module.shape,
                    module.params,
                    status,
                    module=module,
                )
                rows.append(collapsed)
            collapsed.members += (node.name,)
            if node.activation_bytes is not None:
                collapsed.activation_bytes = node.activation_bytes
            if collapsed.module is not None and collapsed.module.shape is None and node.shape:
                collapsed.shape = node.shape  # containers never called (ModuleList): last output
            if status == FAILED or (
                status == NOT_REACHED and collapsed.status == OK and len(collapsed.members) == 1
            ):
                collapsed.status = status
            continue
        collapsed = None
        rows.append(
            Row(
                "node",
                node.name,
                len(stack),
                node.type,
                node.shape,
                node.params,
                status,
                node=node,
                activation_bytes=node.activation_bytes,
            )
        )
    _mark_groups(rows, report)
    return rows


def _mark_groups(rows: list[Row], report: Report) -> None:
    """A group containing the break is failed; one whose nodes were all skipped is not reached."""
    if report.failure is None:
        return
    for i, row in enumerate(rows):
        if row.kind != "group":
            continue
        inner = []
        for later in rows[i + 1 :]:
            if later.level <= row.level:
                break
            inner.append(later)
        statuses = {r.status for r in inner if r.kind != "group"}
        if FAILED in statuses:
            row.status = FAILED
        elif statuses == {NOT_REACHED}:
            row.status = NOT_REACHED


def format_macs(macs: int | None) -> str:
    """Multiply-accumulates, compact: 115.6M, 4.09G; `?` when the op has no formula."""
    if macs is None:
        return "?"
    if macs == 0:
        return "-"
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if macs >= size:
            return f"{macs / size:.2f}{unit}"
    return str(macs)


def format_bytes(count: int | None) -> str:
    """Bytes, compact in binary units: 392.0 KiB, 3.1 MiB; empty when unknown."""
    if count is None:
        return ""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def format_params(count: int) -> str:
    """1234567 -> 1,234,567; 0 -> -."""
    return f"{count:,}" if count else "-"


@dataclass(frozen=True)
class Column:
    """A column of the table views: its key for `cell_text`, title, and alignment."""

    key: str
    title: str
    numeric: bool = False


def columns_for(report: Report, rows: list[Row]) -> list[Column]:
    """The columns worth showing: the analyses that ran get theirs."""
    columns = [Column("name", "Layer"), Column("type", "Type"), Column("shape", "Output shape")]
    columns.append(Column("params", "Params", numeric=True))
    if "macs" in report.totals:
        columns.append(Column("macs", "MACs", numeric=True))
    if any(r.activation_bytes is not None for r in rows):
        columns.append(Column("act", "Activations", numeric=True))
    if any(r.rf for r in rows):
        columns.append(Column("rf", "RF size/stride", numeric=True))
    if any(r.depends_on_input for r in rows):
        columns.append(Column("dep", "Input size"))
    return columns


def cell_text(row: Row, key: str) -> str:
    """The plain text of one cell, control characters made visible (`shapetrace.safetext`);
    views add their own emphasis and escaping."""
    return plain(_cell_text(row, key))


def _cell_text(row: Row, key: str) -> str:
    if key == "name":
        return row.name
    if key == "type":
        return row.type
    if key == "shape":
        if row.status == NOT_REACHED:
            return "not reached"
        if row.status == FAILED and row.kind != "group":
            return "breaks here"
        return shape_text(row)
    if key == "params":
        return format_params(row.params)
    if key == "macs":
        return "" if row.status == NOT_REACHED else format_macs(row.macs)
    if key == "act":
        return "" if row.status == NOT_REACHED else format_bytes(row.activation_bytes)
    if key == "rf":
        return format_rf(row.rf) if row.rf else ""
    if key == "dep":
        return dependence(row)
    raise KeyError(key)


def dependence(row: Row) -> str:
    """The Input size state: `breaks` for the failing node (also in a report whose sizing pass
    did not say so), else `bound`, `scales` or `fixed` as recorded (empty when unknown)."""
    if row.status == FAILED and row.kind != "group":
        return "breaks"
    return row.depends_on_input or ""


def shape_text(row: Row) -> str:
    """The output shape, or `= value` for nodes that compute a number (`size()`)."""
    if row.shape is None and row.node is not None and row.node.value is not None:
        return f"= {row.node.value}"
    return format_shape(row.shape)
