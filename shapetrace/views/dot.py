"""Architecture diagrams with Graphviz: module clusters, one box per layer, the break marked.

The diagram is built from a Report alone (no torch) through the `graphviz` package's API. Every
label is a Graphviz HTML-like label made by `html_label`, which escapes every value, so module
names such as `<b>` or `a&b` cannot break the DOT source.

Layout: the top-level stages (module clusters, runs of plain layers) become columns placed side by
side, each flowing in `rankdir` (top to bottom by default). Edges between stages do not constrain
the ranks, so every column starts at the top and the drawing stays roughly square instead of one
tall column.
"""

from __future__ import annotations

import html
import itertools
import math
import shutil
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import graphviz

from shapetrace.errors import UsageError
from shapetrace.outputs import write_bytes, write_text
from shapetrace.report import Report, format_shape
from shapetrace.views.rf_text import format_rf
from shapetrace.views.summary import heading
from shapetrace.views.tree import FAILED, NOT_REACHED, Row, build_rows

DEFAULT_DEPTH = 2  # ResNet-50: its stages as clusters, its blocks as boxes, no BatchNorm
# More boxes than this take dot minutes (10,000 ran past 300 s): the default depth is lowered
# until the drawing fits, and an explicit depth that does not fit is refused with the one that does.
MAX_BOXES = 600
FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = "install Graphviz's dot: apt-get install graphviz (macOS: brew install graphviz)"
_WRAP = 40  # characters per line of a failure message inside a box
_FONT = "Helvetica"
NAME_PT, TEXT_PT, EDGE_PT, TITLE_PT = 12, 11, 10, 14  # nothing below 10 pt

# Box categories, in legend order: the input-size analysis first, then the break.
BOUND, SCALES, FIXED, PLAIN = "bound", "scales", "fixed", "plain"
BREAKS = "breaks"  # a node state the sizing pass may give the failing node; drawn as FAILED
# Ops that only arrange a parameter or constant next to the one real tensor they pass on (a
# class token expanded and concatenated to ViT's patches): drawn as the edge they sit on.
_BOOKKEEPING = frozenset({"expand", "expand_as", "cat", "concat", "concatenate", "stack", "repeat"})

_THEMES: dict[str, dict[str, Any]] = {
    "light": {
        "background": "white",
        "text": "#1f2328",
        "muted": "#9ca3af",
        "edge": "#57606a",
        "cluster_fill": ["#f6f8fa", "#eaeef2"],
        "cluster_line": "#8c959f",
        "boxes": {
            PLAIN: ("#ffffff", "#57606a"),
            SCALES: ("#e0f2fe", "#0369a1"),
            FIXED: ("#dcfce7", "#15803d"),
            BOUND: ("#fae8ff", "#a21caf"),
            FAILED: ("#fee2e2", "#dc2626"),
            NOT_REACHED: ("#f6f8fa", "#c0c6cc"),
        },
    },
    "dark": {
        "background": "#0d1117",
        "text": "#e6edf3",
        "muted": "#6e7681",
        "edge": "#8b949e",
        "cluster_fill": ["#161b22", "#1f252d"],
        "cluster_line": "#484f58",
        "boxes": {
            PLAIN: ("#0d1117", "#8b949e"),
            SCALES: ("#0c2d4a", "#58a6ff"),
            FIXED: ("#0f2e1a", "#3fb950"),
            BOUND: ("#3b1040", "#d2a8ff"),
            FAILED: ("#4a0f14", "#f85149"),
            NOT_REACHED: ("#0d1117", "#30363d"),
        },
    },
}

# The words of the TUI's legend and Input size column, with the same hues.
_LEGEND_TEXT = {
    PLAIN: "layer: name, type · parameters, output shape · receptive field size/stride",
    SCALES: "scales: output shape follows the input size",
    FIXED: "fixed: output shape is the same at every input size",
    BOUND: "bound: limits the input size",
    FAILED: "✗ breaks here: fails at this input (message in the box)",
    NOT_REACHED: "not reached: after the break",
}


@dataclass(frozen=True)
class Line:
    """One line of an HTML-like label."""

    text: str
    size: int = TEXT_PT
    bold: bool = False
    color: str | None = None


def html_label(lines: Sequence[Line], align: str = "CENTER") -> str:
    """A Graphviz HTML-like label (`<...>`) of `lines`; every text is escaped with html.escape."""
    cells = []
    for line in lines:
        text = html.escape(line.text, quote=True)
        if line.bold:
            text = f"<B>{text}</B>"
        color = f' COLOR="{html.escape(line.color, quote=True)}"' if line.color else ""
        cells.append(
            f'<TR><TD ALIGN="{align}"><FONT POINT-SIZE="{line.size}"{color}>{text}</FONT></TD></TR>'
        )
    table = '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
    return f"<{table}{''.join(cells)}</TABLE>>"


# -- text of a box -------------------------------------------------------------------------


def shape_label(shape: Any) -> str:
    """`[1, 256, 56, 56]` -> `1×256×56×56`, compact enough for a box or an edge."""
    if isinstance(shape, list) and shape and all(isinstance(d, int) for d in shape):
        return "×".join(map(str, shape))
    return format_shape(shape)


def params_label(count: int) -> str:
    """2049000 -> `2.05M params`, 75008 -> `75.0k params`."""
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M params"
    if count >= 1_000:
        return f"{count / 1e3:.1f}k params"
    return f"{count} params"


def _category(row: Row, promoted: frozenset[str] = frozenset()) -> str:
    """The box's colour: the break, not reached, bound (also when a folded node it stands for
    is), scales, fixed, or plain."""
    if row.status in (FAILED, NOT_REACHED):
        return row.status
    dep = row.depends_on_input
    if dep == BREAKS and row.kind != "group":
        return FAILED
    if row.name in promoted:
        return BOUND
    return dep if dep in (BOUND, SCALES, FIXED) else PLAIN


def plumbing_nodes(report: Report) -> set[str]:
    """Names of the nodes the diagram folds into edges by default.

    Scalar plumbing (`getattr` of a shape, `getitem` of sizes, `eq`, `_assert`, `floordiv`,
    `mul` of ints, `dim`, `size`: nodes whose value is not a tensor), parameter reads
    (`get_attr`), and bookkeeping that only sets a parameter beside the one real tensor it
    passes on (ViT's class token: `expand`, then `cat` with the patches). The input, the
    failing node and bound tensors are never folded."""
    failing = report.failure.node if report.failure is not None else None
    folded: set[str] = set()
    for node in report.nodes:  # graph order: a node's inputs come before it
        if node.op in ("placeholder", "output") or node.name == failing:
            continue
        if node.shape is None:
            # a number, a tuple of sizes, a bool, an assert's None: not a tensor. After a break
            # an unreached node has no value either, and stays a (greyed) box.
            if report.failure is None or node.value is not None:
                folded.add(node.name)
            continue
        if node.depends_on_input in (BOUND, BREAKS):
            continue
        if node.op == "get_attr":
            folded.add(node.name)
        elif node.type in _BOOKKEEPING and node.op in ("call_function", "call_method"):
            real = [name for name in node.inputs if name not in folded]
            if len(real) <= 1:
                folded.add(node.name)
    return folded


def _box_lines(
    row: Row, report: Report, theme: dict[str, Any], promoted: frozenset[str] = frozenset()
) -> list[Line]:
    category = _category(row, promoted)
    muted = theme["muted"] if category == NOT_REACHED else None
    kind = row.type + (" · " + params_label(row.params) if row.params else "")
    lines = [Line(row.name, NAME_PT, bold=True, color=muted), Line(kind, color=muted)]
    facts = []
    if category == NOT_REACHED:
        facts.append("not reached")
    elif row.shape is not None:
        facts.append(shape_label(row.shape))
    elif row.node is not None and row.node.value is not None:
        facts.append(f"= {row.node.value}")
    if row.rf:
        facts.append("RF " + format_rf(row.rf))
    if facts:
        lines.append(Line(" · ".join(facts), color=muted))
    border = theme["boxes"][category][1]
    if category == BOUND:
        lines.append(Line("bound: limits the input size", bold=True, color=border))
    if category == FAILED and report.failure is not None:
        # The message starts with the node's name, which the box already shows.
        message = report.failure.message.removeprefix(f"{report.failure.node}: ")
        for part in textwrap.wrap("breaks: " + message, _WRAP):
            lines.append(Line(part, bold=True, color=border))
    return lines


def _box_attrs(category: str, theme: dict[str, Any]) -> dict[str, str]:
    fill, line = theme["boxes"][category]
    attrs = {"fillcolor": fill, "color": line}
    if category in (BOUND, FAILED):
        attrs["penwidth"] = "3"
    if category == NOT_REACHED:
        attrs["style"] = "rounded,filled,dashed"
    return attrs


# -- structure -----------------------------------------------------------------------------


@dataclass
class _Cluster:
    """A module drawn as a cluster (`row` None for the whole graph), and what it contains."""

    row: Row | None
    items: list[Row | _Cluster] = field(default_factory=list)


def _boxes(items: Sequence[Row | _Cluster]) -> Iterator[Row]:
    for item in items:
        if isinstance(item, _Cluster):
            yield from _boxes(item.items)
        else:
            yield item


def _nest(rows: list[Row]) -> _Cluster:
    root = _Cluster(None)
    stack = [root]
    for row in rows:
        del stack[row.level + 1 :]
        if row.kind == "group":
            cluster = _Cluster(row)
            stack[-1].items.append(cluster)
            stack.append(cluster)
        else:
            stack[-1].items.append(row)
    _prune(root)
    return root


def _prune(cluster: _Cluster) -> None:
    """Drop clusters left without a box (every node inside was folded)."""
    for item in cluster.items:
        if isinstance(item, _Cluster):
            _prune(item)
    cluster.items = [i for i in cluster.items if not isinstance(i, _Cluster) or i.items]


def _is_input(item: Row | _Cluster) -> bool:
    return isinstance(item, Row) and item.node is not None and item.node.op == "placeholder"


def _count(items: Sequence[Row | _Cluster]) -> int:
    return sum(1 for _ in _boxes(items))


def _stages(items: Sequence[Row | _Cluster], run_limit: int) -> list[list[Row | _Cluster]]:
    """Each cluster alone, and the plain layers between clusters in runs of at most `run_limit`."""
    stages: list[list[Row | _Cluster]] = []
    run: list[Row | _Cluster] = []
    for item in items:
        if run and (isinstance(item, _Cluster) or len(run) >= run_limit):
            stages.append(run)
            run = []
        if isinstance(item, _Cluster):
            stages.append([item])
        else:
            run.append(item)
    if run:
        stages.append(run)
    return stages


def _merge(stages: list[list[Row | _Cluster]], limit: float) -> list[list[Row | _Cluster]]:
    """Neighbours share a column while it stays within `limit` boxes; inputs join the next."""
    merged: list[list[Row | _Cluster]] = []
    for stage in stages:
        if merged and (
            all(_is_input(item) for item in merged[-1])
            or _count(merged[-1]) + _count(stage) <= limit
        ):
            merged[-1].extend(stage)
        else:
            merged.append(stage)
    return merged


def _columns(root: _Cluster) -> list[list[Row | _Cluster]]:
    """The columns placed side by side, each a list of consecutive boxes and clusters.

    The top-level stages (clusters, and runs of plain layers between them, cut to about
    sqrt(3 n) boxes for a square drawing: a box is some 3 times wider than tall) are columns;
    short neighbours share one up to the tallest (ResNet-50: layer4 above the head). A model
    wrapped in a single container is looked into. Clusters are not split across columns: dot
    does not keep the order of columns nested in a cluster.
    """
    top = root.items
    while len(top) == 1 and isinstance(top[0], _Cluster):
        top = top[0].items
    stages = _stages(top, math.ceil(math.sqrt(3 * _count(top))))
    return _merge(stages, max((_count(stage) for stage in stages), default=0))


class _Ids:
    """DOT identifiers: the name itself when it is plain ASCII, a numbered one otherwise."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def make(self, name: str, prefix: str = "") -> str:
        plain = name and all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)
        ident = prefix + name if plain else f"{prefix}_{len(self.used)}"
        while ident in self.used:
            ident = f"{prefix}_{len(self.used)}"
        self.used.add(ident)
        return ident


# -- the diagram ---------------------------------------------------------------------------


def diagram(
    report: Report,
    depth: int | None = None,
    rankdir: str | None = None,
    theme: str = "light",
    show_plumbing: bool = False,
    dpi: int | None = None,
) -> graphviz.Digraph:
    """The report as a `graphviz.Digraph`, ready to render or to restyle.

    Modules at `depth` are drawn as single boxes, the ones above as clusters; by default
    DEFAULT_DEPTH, lowered until at most MAX_BOXES boxes remain (an explicit depth with more
    raises UsageError naming one that fits). `rankdir` (TB, LR, BT, RL; default TB) is the flow
    inside a stage; stages are placed across it. `theme` is "light" or "dark". Scalar plumbing
    and parameter bookkeeping (`plumbing_nodes`) are folded into the edges they sit on unless
    `show_plumbing`; a folded node that bounds the input size makes the next box bound. `dpi`
    sets the resolution of PNG output.
    """
    if theme not in _THEMES:
        raise UsageError(f"unknown theme {theme!r}; use one of: {', '.join(_THEMES)}")
    if rankdir not in (None, "TB", "LR", "BT", "RL"):
        raise UsageError(f"unknown rankdir {rankdir!r}; use one of: TB, LR, BT, RL")
    if dpi is not None and not 10 <= dpi <= 2400:
        raise UsageError(f"dpi {dpi} is out of range; use 10 to 2400")
    colors = _THEMES[theme]
    folded = set() if show_plumbing else plumbing_nodes(report)
    root = _nest(_fitting_rows(report, depth, folded))
    graph = graphviz.Digraph(name="shapetrace")
    if dpi is not None:
        graph.attr(dpi=str(dpi))
    graph.attr(
        rankdir=rankdir or "TB",
        newrank="true",  # lets the stage heads share a rank across clusters
        nodesep="0.2",
        ranksep="0.2",
        bgcolor=colors["background"],
        fontname=_FONT,
        fontcolor=colors["text"],
        labelloc="t",
        labeljust="l",
        label=html_label(_title_lines(report, colors), align="LEFT"),
    )
    graph.attr(
        "node",
        shape="box",
        style="rounded,filled",
        fontname=_FONT,
        fontcolor=colors["text"],
        margin="0.1,0.04",
    )
    graph.attr(
        "edge",
        fontname=_FONT,
        fontsize=str(EDGE_PT),
        fontcolor=colors["text"],
        color=colors["edge"],
        arrowsize="0.7",
    )
    ids = _Ids()
    box_ids = {id(row): ids.make(row.name) for row in _boxes(root.items)}
    columns = [[box_ids[id(row)] for row in _boxes(column)] for column in _columns(root)]
    heads = [column[0] for column in columns]
    box_of: dict[str, str] = {}  # node name -> the box that draws it
    row_of: dict[str, str] = {}  # node name -> the name of the row that draws it
    for row in _boxes(root.items):
        for member in row.members or (row.name,):
            box_of[member] = box_ids[id(row)]
            row_of[member] = row.name
    promoted = _promoted(report, folded, row_of)
    order = _order(root, box_ids, heads)
    _draw(graph, root, report, colors, ids, box_ids, order, 0, promoted)

    category = {box_ids[id(row)]: _category(row, promoted) for row in _boxes(root.items)}
    column_of = {box: index for index, column in enumerate(columns) for box in column}
    _draw_edges(graph, report, box_of, folded, column_of, category, colors)
    legend = _draw_legend(graph, set(category.values()), colors)
    # Every column starts on the first rank: the stages stand side by side. The legend goes
    # under the last one.
    with graph.subgraph() as first:
        first.attr(rank="same")
        for head in heads:
            first.node(head)
    if columns:
        graph.edge(columns[-1][-1], legend, style="invis")
    return graph


def _fitting_rows(report: Report, depth: int | None, folded: set[str]) -> list[Row]:
    """The rows to draw: at `depth`, or at the deepest depth up to DEFAULT_DEPTH that fits."""

    def rows_at(level: int) -> list[Row]:
        rows = build_rows(report, level)
        return [r for r in rows if not (r.kind == "node" and r.name in folded)]

    def boxes(rows: list[Row]) -> int:
        return sum(1 for r in rows if r.kind != "group")

    level = DEFAULT_DEPTH if depth is None else depth
    rows = rows_at(level)
    count = boxes(rows)
    if count <= MAX_BOXES:
        return rows
    fits = next((d for d in range(level - 1, 0, -1) if boxes(rows_at(d)) <= MAX_BOXES), None)
    if depth is None and fits is not None:
        return rows_at(fits)
    advice = f"draw it at depth {fits}" if fits is not None else "export Markdown or JSON"
    raise UsageError(
        f"{count:,} boxes at depth {level} are too many to lay out (Graphviz takes minutes "
        f"past {MAX_BOXES}): {advice}"
    )


def _promoted(report: Report, folded: set[str], row_of: dict[str, str]) -> frozenset[str]:
    """Rows drawn bound because a folded node that bounds the input size (ViT's `_assert` of
    the image height) sits just before them: the next drawn node in graph order."""
    promoted = set()
    pending = False
    for node in report.nodes:
        if node.name in folded:
            pending = pending or node.depends_on_input == BOUND
        elif pending and node.name in row_of:
            promoted.add(row_of[node.name])
            pending = False
    return frozenset(promoted)


def _title_lines(report: Report, colors: dict[str, Any]) -> list[Line]:
    lines = [Line(heading(report), TITLE_PT, bold=True, color=colors["text"])]
    total = report.totals.get("params")
    if total:
        lines.append(Line(f"{total:,} parameters", color=colors["text"]))
    if report.failure is not None and report.failure.message not in (report.verdict or ""):
        failed = colors["boxes"][FAILED][1]
        lines.append(Line(f"Breaks: {report.failure.message}", bold=True, color=failed))
    if report.verdict:
        color = colors["boxes"][FAILED][1] if report.failure is not None else colors["text"]
        lines.extend(Line(part, color=color) for part in textwrap.wrap(report.verdict, 110))
    return lines


def _order(
    root: _Cluster, box_ids: dict[int, str], heads: list[str]
) -> dict[int, list[tuple[str, str]]]:
    """Invisible edges that keep the columns in order, each in the innermost cluster holding
    both of its ends (dot keeps the order of flat edges inside one cluster, not across)."""
    chains: dict[str, list[int]] = {}

    def walk(cluster: _Cluster, chain: list[int]) -> None:
        for item in cluster.items:
            if isinstance(item, _Cluster):
                walk(item, [*chain, id(item)])
            else:
                chains[box_ids[id(item)]] = chain

    walk(root, [id(root)])
    order: dict[int, list[tuple[str, str]]] = {}
    for left, right in itertools.pairwise(heads):
        pairs = zip(chains[left], chains[right], strict=False)
        common = [a for a, _ in itertools.takewhile(lambda pair: pair[0] == pair[1], pairs)]
        order.setdefault(common[-1], []).append((left, right))
    return order


def _draw(
    graph: graphviz.Digraph,
    cluster: _Cluster,
    report: Report,
    colors: dict[str, Any],
    ids: _Ids,
    box_ids: dict[int, str],
    order: dict[int, list[tuple[str, str]]],
    level: int,
    promoted: frozenset[str],
) -> None:
    for item in cluster.items:
        if isinstance(item, Row):
            category = _category(item, promoted)
            graph.node(
                box_ids[id(item)],
                label=html_label(_box_lines(item, report, colors, promoted)),
                tooltip=box_tooltip(item, report),
                **_box_attrs(category, colors),
            )
            continue
        row = item.row
        assert row is not None
        sub = graphviz.Digraph(name=ids.make(row.name, prefix="cluster_"))
        muted = row.status == NOT_REACHED
        kind = row.type + (" · " + params_label(row.params) if row.params else "")
        sub.attr(
            label=html_label([Line(row.name, NAME_PT, bold=True), Line(kind)], align="LEFT"),
            labeljust="l",
            style="rounded,filled" + (",dashed" if muted else ""),
            fillcolor=colors["cluster_fill"][level % 2],
            color=colors["boxes"][FAILED][1] if row.status == FAILED else colors["cluster_line"],
            fontcolor=colors["muted"] if muted else colors["text"],
            penwidth="2" if row.status == FAILED else "1",
        )
        _draw(sub, item, report, colors, ids, box_ids, order, level + 1, promoted)
        graph.subgraph(sub)
    for left, right in order.get(id(cluster), []):
        graph.edge(left, right, style="invis")


def _draw_edges(
    graph: graphviz.Digraph,
    report: Report,
    box_of: dict[str, str],
    folded: set[str],
    column_of: dict[str, int],
    category: dict[str, str],
    colors: dict[str, Any],
) -> None:
    """One edge per pair of boxes, unlabelled: every box shows its output shape, so no label
    sits over another edge or a box. An edge into a folded tensor node (a class token's `cat`)
    continues to that node's users; folded scalars carry no data and draw no edge."""
    inputs = {node.name: node.inputs for node in report.nodes}
    tensor = {node.name: node.shape is not None for node in report.nodes}
    sources: dict[str, set[str]] = {}

    def boxes_feeding(name: str) -> set[str]:
        """The boxes whose tensors reach a node through `name` (memoised, graph order)."""
        if name in box_of:
            return {box_of[name]}
        if name not in sources:
            found: set[str] = set()
            if name in folded and tensor.get(name):
                for source in inputs.get(name, []):
                    found |= boxes_feeding(source)
            sources[name] = found
        return sources[name]

    edges: dict[tuple[str, str], None] = {}
    for node in report.nodes:
        head = box_of.get(node.name)
        if head is None:
            continue
        for name in node.inputs:
            for tail in sorted(boxes_feeding(name)):
                if tail != head:
                    edges.setdefault((tail, head), None)
    failed = colors["boxes"][FAILED][1]
    for tail, head in edges:
        attrs: dict[str, str] = {}
        if column_of[tail] != column_of[head]:
            attrs.update(constraint="false")  # must not push the next column down
        if category[head] == FAILED:
            attrs.update(color=failed, penwidth="2")
        elif NOT_REACHED in (category[tail], category[head]):
            attrs.update(color=colors["muted"], style="dashed")
        graph.edge(tail, head, **attrs)


def _draw_legend(graph: graphviz.Digraph, present: set[str], colors: dict[str, Any]) -> str:
    """A cluster of sample boxes, one per colour in use; returns the id of its first box."""
    legend = graphviz.Digraph(name="cluster_legend")
    legend.attr(
        label=html_label([Line("Legend", NAME_PT, bold=True)]),
        style="rounded",
        color=colors["cluster_line"],
        fontcolor=colors["text"],
    )
    entries = [c for c in _LEGEND_TEXT if c in present or c == PLAIN]
    names = [f"legend_{c}" for c in entries]
    for category, name in zip(entries, names, strict=True):
        text_color = colors["muted"] if category == NOT_REACHED else colors["text"]
        legend.node(
            name,
            label=html_label(
                [Line(part, color=text_color) for part in textwrap.wrap(_LEGEND_TEXT[category], 28)]
            ),
            **_box_attrs(category, colors),
        )
    for upper, lower in itertools.pairwise(names):
        legend.edge(upper, lower, style="invis")
    graph.subgraph(legend)
    return names[0]


# -- output --------------------------------------------------------------------------------


def write_diagram(
    report: Report,
    path: str | None,
    fmt: str,
    depth: int | None = None,
    rankdir: str | None = None,
    theme: str = "light",
    show_plumbing: bool = False,
    dpi: int | None = None,
) -> None:
    """Write the diagram as svg, png, pdf or dot to `path` (atomically); DOT source to stdout
    when path is None. The options are `diagram`'s.

    Raises UsageError when Graphviz's `dot` is needed and missing, or the graph is too large.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown diagram format {fmt!r}; use one of: {', '.join(FORMATS)}")
    graph = diagram(
        report, depth=depth, rankdir=rankdir, theme=theme, show_plumbing=show_plumbing, dpi=dpi
    )
    if fmt == "dot":
        if path is None:
            sys.stdout.write(graph.source)
        else:
            write_text(path, graph.source)
        return
    if path is None:
        raise UsageError(f"--format {fmt} needs -o FILE")
    write_bytes(path, render(graph, fmt))


def dot_available() -> bool:
    """True when Graphviz's `dot` is on the PATH."""
    return shutil.which("dot") is not None


def render(graph: graphviz.Digraph, fmt: str) -> bytes:
    """Run `dot` on `graph`; UsageError with the install hint when `dot` is missing."""
    missing = f"cannot write {fmt} without Graphviz ({INSTALL_HINT}); .dot output works without it"
    if not dot_available():
        raise UsageError(missing)
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise UsageError(missing) from exc


# -- tooltips ------------------------------------------------------------------------------


def box_tooltip(row: Row, report: Report) -> str:
    """The hover text of a box (SVG `<title>`/`xlink:title`): the row's full record, one fact a
    line: type, shape, shape formula, receptive field, parameters, MACs, and the input-size
    constraints its nodes set. Escaped for DOT (`\\n` between lines; a backslash or quote in
    a name stays text, never an escape such as `\\N`)."""
    from shapetrace.safetext import plain

    members = set(row.members or (row.name,))
    if row.node is not None:
        formula = row.node.shape_formula
    else:  # a collapsed module: the formula of its last node giving the module's output
        last = [n for n in report.nodes if n.name in members and n.shape == row.shape]
        formula = last[-1].shape_formula if last else None
    lines = [f"{row.name} ({row.type})"]
    if row.status == NOT_REACHED:
        lines.append("not reached: after the break")
    elif row.shape is not None:
        lines.append(f"shape: {format_shape(row.shape)}")
    if formula:
        lines.append(f"formula: ({', '.join(formula)})")
    if row.rf:
        lines.append(f"receptive field size/stride: {format_rf(row.rf)}")
    lines.append(f"params: {row.params:,}")
    if row.macs is not None:
        lines.append(f"MACs: {row.macs:,}")
    if row.depends_on_input:
        lines.append(f"input size: {row.depends_on_input}")
    for bound in (report.domain or {}).get("bounds", []):
        if bound.get("node") in members and bound.get("constraint"):
            by = bound.get("implied_by")
            label = f"implied by {', '.join(map(str, by))}" if isinstance(by, list) else "bound"
            lines.append(f"{label}: {bound['constraint']}")
    if row.status == FAILED and report.failure is not None and report.failure.node in members:
        lines.append(f"breaks: {report.failure.message}")
    escaped = (plain(line).replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return "\\n".join(escaped)
