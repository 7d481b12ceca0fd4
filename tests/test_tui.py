"""The Textual explorer, driven through Textual's pilot: tree and table in step, filter, jumps to
bound and failing nodes, depth, the live input size (a real analysis in the worker), export,
help, a large graph, and snapshots of the main screens.

Snapshots (tests/__snapshots__/test_tui/) render saved reports from tests/data/tui/, so they
change only when the TUI does. A missing report is analysed and saved again; after a pass
changes what reports contain, delete tests/data/tui/*.json and refresh the snapshots with
`pytest tests/test_tui.py --snapshot-update`.
"""

from __future__ import annotations

import asyncio
import functools
import io
import re
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from textual.widgets import DataTable, Input, Static, Tree

from shapetrace.domain import domain_text
from shapetrace.report import Module, Node, Report, format_shape
from shapetrace.views.markdown import render as render_markdown
from shapetrace.views.tree import build_rows
from shapetrace.views.tui import ShapetraceApp
from shapetrace.views.tui.export import default_name, diagrams_available
from shapetrace.views.tui.outline import Outline
from shapetrace.views.tui.request import rebuild_blocker

DATA = Path(__file__).parent / "data" / "tui"
WIDE = (120, 40)


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (no pytest-asyncio needed)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def saved_report(model: str, size: int) -> Report:
    """The report of `model` at `size`x`size`, analysed once and kept under tests/data/tui/."""
    path = DATA / f"{model}_{size}.json"
    if not path.exists():
        import shapetrace

        DATA.mkdir(parents=True, exist_ok=True)
        path.write_text(shapetrace.analyze(model, str(size)).to_json(indent=None) + "\n")
    return Report.load(path)


# -- helpers reading the app's state --------------------------------------------------------


def table_of(app: ShapetraceApp) -> DataTable[Text]:
    return app.query_one("#table", DataTable)


def table_names(app: ShapetraceApp) -> list[str]:
    """The Layer column, as shown (indentation and group marks removed)."""
    table = table_of(app)
    names = []
    for i in range(table.row_count):
        cell = str(table.get_row_at(i)[0]).strip()
        names.append(re.sub(r"^[▸▾] ", "", cell).removesuffix(" …"))
    return names


def cursor_name(app: ShapetraceApp) -> str:
    return table_names(app)[table_of(app).cursor_row]


def cell(app: ShapetraceApp, name: str, column: str) -> str:
    table = table_of(app)
    index = [str(c.label) for c in table.ordered_columns].index(column)
    return str(table.get_row_at(table_names(app).index(name))[index])


def static_text(app: ShapetraceApp, selector: str) -> str:
    """The plain text a Static shows."""
    content = app.screen.query_one(selector, Static).content
    if isinstance(content, Text):
        return content.plain
    if isinstance(content, str):
        return content
    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(content)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


async def unfold(app: ShapetraceApp, pilot: Any) -> None:
    """Step `d` through the depths back to everything expanded (the app opens folded)."""
    await pilot.press("d")
    while app.depth is not None:
        await pilot.press("d")
    await pilot.pause()
    assert not app.collapsed


def rows_inside(report: Report, group: str, depth: int | None = None) -> list[str]:
    """Names of the rows nested under module `group` (for checking the table independently)."""
    return [
        r.name
        for r in build_rows(report, depth)
        if r.name.startswith(group + ".") or (r.node is not None and _inside(r.node, group))
    ]


def _inside(node: Node, group: str) -> bool:
    return bool(node.module) and (node.module or "").startswith(group + ".")


# -- no terminal -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["show", "analyse"])
def test_tui_without_a_terminal_is_a_one_line_error(command: str) -> None:
    # `shapetrace show r.json --tui </dev/null | cat` used to wait forever
    args = (
        ["show", str(DATA / "codereview_resnet50_448.json")]
        if command == "show"
        else ["codereview_resnet50", "--input", "448"]
    )
    done = subprocess.run(
        [sys.executable, "-m", "shapetrace", *args, "--tui"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "needs a terminal" in done.stderr


# -- import cost -----------------------------------------------------------------------------


def test_importing_the_tui_does_not_import_torch() -> None:
    code = (
        "import sys, shapetrace.views.tui, shapetrace.views.tui.app;"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- tree and table ----------------------------------------------------------------------------


@run_async
async def test_tree_navigation_selects_the_same_row_in_the_table_and_details() -> None:
    report = saved_report("resnet50", 448)
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await unfold(app, pilot)
        tree: Tree[int] = app.query_one("#tree", Tree)
        tree.focus()
        await pilot.pause()
        # root, x, conv1, bn1, relu, maxpool, layer1
        await pilot.press("home", *["down"] * 6)
        await pilot.pause()
        assert tree.cursor_node is not None
        assert str(tree.cursor_node.label) == "layer1"
        assert cursor_name(app) == "layer1"
        details = static_text(app, "#details-body")
        assert details.startswith("layer1  Sequential")
        assert format_shape(report.module("layer1").shape) in details
        # and back: moving the table cursor moves the tree cursor
        table_of(app).focus()
        await pilot.press("down")
        await pilot.pause()
        assert cursor_name(app) == "layer1.0"
        assert tree.cursor_node is not None and str(tree.cursor_node.label) == "0"


@run_async
async def test_collapsing_a_module_in_the_tree_hides_its_rows_in_the_table() -> None:
    report = saved_report("resnet50", 448)
    inside = rows_inside(report, "layer1")
    assert len(inside) > 30  # three bottlenecks and their layers
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await unfold(app, pilot)
        total = table_of(app).row_count
        assert total == len(build_rows(report))
        tree: Tree[int] = app.query_one("#tree", Tree)
        tree.focus()
        await pilot.press("home", *["down"] * 6, "space")
        await pilot.pause()
        names = table_names(app)
        assert table_of(app).row_count == total - len(inside)
        assert "layer1" in names and "layer1.0.conv1" not in names
        assert str(table_of(app).get_row_at(names.index("layer1"))[0]).strip().startswith("▸")
        await pilot.press("space")
        await pilot.pause()
        assert table_of(app).row_count == total
        # enter on a group row in the table collapses it in the tree too
        table_of(app).focus()
        await pilot.press("enter")
        await pilot.pause()
        layer1 = next(n for n in app._tree_nodes.values() if str(n.label) == "layer1")
        assert not layer1.is_expanded
        assert table_of(app).row_count == total - len(inside)


@run_async
async def test_filter_by_name_and_by_type() -> None:
    report = saved_report("resnet50", 448)
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("slash", *"layer4", "enter")
        await pilot.pause()
        names = table_names(app)
        expected = [r.name for r in build_rows(report) if "layer4" in r.name.lower()]
        assert names == expected
        assert cell(app, "layer4", "Output shape") == "(1, 2048, 14, 14)"
        assert report.module("layer4").shape == [1, 2048, 14, 14]
        assert "layer3" not in names
        assert f"{len(expected)} of {len(build_rows(report))} rows" in static_text(
            app, "#filter-count"
        )
        await pilot.press("slash")
        app.query_one("#filter", Input).value = "linear"
        await pilot.press("enter")
        await pilot.pause()
        assert table_names(app) == ["fc"]
        assert cell(app, "fc", "Params") == f"{2048 * 1000 + 1000:,}"
        await pilot.press("escape")
        await pilot.pause()
        assert table_names(app) == [
            app.outline.rows[i].name for i in app.outline.visible(app.collapsed)
        ]


# -- the first screen ---------------------------------------------------------------------------


def _rows_in_view(table: DataTable[Text]) -> range:
    """Indices of the table rows inside its viewport (rows are one line high)."""
    height = table.scrollable_content_region.height - table.header_height
    top = round(table.scroll_y)
    return range(top, min(top + height, table.row_count))


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
@run_async
async def test_the_first_screen_shows_the_verdict_and_the_failing_node(
    size: tuple[int, int],
) -> None:
    report = saved_report("codereview_resnet50", 448)
    assert report.verdict and "Fix:" in report.verdict
    app = ShapetraceApp(report)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        header = app.query_one("#header", Static)
        # the whole verdict, fix included, in the header, and the header is not cut
        assert report.verdict in static_text(app, "#header").replace("\n", " ")
        content = header.content
        assert isinstance(content, Text)
        lines = content.wrap(app.console, header.content_region.width)
        assert header.content_region.height == len(lines)
        assert header.region.bottom <= app.query_one("#legend").region.y < size[1]
        # the stages are folded, the layers around the answer open, the cursor on the break
        table = table_of(app)
        names = table_names(app)
        assert names == [
            "x",
            *(f"layer_{i}" for i in range(1, 6)),
            "avgpool",
            "size",
            "view",
            "fc_layer",
        ]
        assert cursor_name(app) == "fc_layer"
        shown = [names[i] for i in _rows_in_view(table)]
        assert {"avgpool", "fc_layer"} <= set(shown)
        assert cell(app, "fc_layer", "Input size") == "breaks"
        assert cell(app, "avgpool", "Input size") == "bound"
        assert "breaks" in static_text(app, "#details-body")
        # one line says what the colours mean
        legend = app.query_one("#legend", Static).content
        assert isinstance(legend, Text) and "\n" not in legend.plain
        assert "breaks" in legend.plain and "bound" in legend.plain


def test_bound_and_breaks_have_different_colours() -> None:
    report = saved_report("codereview_resnet50", 448)
    outline = Outline.build(report)
    by_name = {row.name: i for i, row in enumerate(outline.rows)}

    def styles(name: str) -> set[str]:
        cells = outline.cells(by_name[name], set())
        return {str(span.style) for c in cells for span in c.spans} | {str(c.style) for c in cells}

    assert "bold magenta" in styles("avgpool") and "bold red" not in styles("avgpool")
    assert "bold red" in styles("fc_layer") and "bold magenta" not in styles("fc_layer")


def test_a_node_the_failure_names_breaks_whatever_state_the_pass_gave_it() -> None:
    report = saved_report("codereview_resnet50", 448)
    data = report.to_dict()
    for node in data["nodes"]:
        if node["name"] == "fc_layer":
            node["depends_on_input"] = "fixed"
    outline = Outline.build(Report.from_dict(data))
    assert [outline.rows[i].name for i in outline.visible(set(), "/breaks")] == ["fc_layer"]
    # and a report whose sizing pass already says `breaks` reads the same
    for node in data["nodes"]:
        if node["name"] == "fc_layer":
            node["depends_on_input"] = "breaks"
    outline = Outline.build(Report.from_dict(data))
    assert [outline.rows[i].name for i in outline.visible(set(), "breaks")] == ["fc_layer"]
    assert [outline.rows[i].name for i in outline.visible(set(), "bound")] == ["avgpool"]


@run_async
async def test_filter_by_state_and_by_shape() -> None:
    report = saved_report("codereview_resnet50", 448)
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("slash", *"bound", "enter")
        await pilot.pause()
        assert table_names(app) == ["avgpool"]
        await pilot.press("slash")
        app.query_one("#filter", Input).value = "/breaks"
        await pilot.press("enter")
        await pilot.pause()
        assert table_names(app) == ["fc_layer"]
        assert "1 of" in static_text(app, "#filter-count")
        # by shape, as the table prints it or as --input spells it
        await pilot.press("slash")
        app.query_one("#filter", Input).value = "131072"
        await pilot.press("enter")
        await pilot.pause()
        assert table_names(app) == ["view"]
        await pilot.press("slash")
        app.query_one("#filter", Input).value = "1x2048x8x8"
        await pilot.press("enter")
        await pilot.pause()
        assert table_names(app) == ["avgpool"]
        fixed = [
            r.name
            for r in build_rows(report)
            if r.kind != "group" and r.depends_on_input == "fixed"
        ]
        await pilot.press("slash")
        app.query_one("#filter", Input).value = "fixed"
        await pilot.press("enter")
        await pilot.pause()
        assert table_names(app) == fixed and len(fixed) > 10


# -- untrusted text ------------------------------------------------------------------------------

MARKUP_NAME = "[link=https://x]a[/link]"
ESCAPE_NAME = "evil\x1b]0;pwned\x07[bold]"


def _hostile_report() -> Report:
    nodes = [
        Node("x", "placeholder", "x", None, "Input", [], [1, 3, 8, 8], "float32"),
        Node(
            MARKUP_NAME,
            "call_module",
            MARKUP_NAME,
            MARKUP_NAME,
            "[red]Conv",
            ["x"],
            None,
            "float32",
        ),
        Node(ESCAPE_NAME, "call_function", "relu", None, "relu\x1b[2J", [MARKUP_NAME], None, None),
    ]
    from shapetrace.report import Failure

    return Report(
        source={"model": "[b]m[/b]\x1b]52;c;aGk=\x07", "input": ["1x3x8x8"], "family": "object"},
        model="[b]m[/b]\x1b]52;c;aGk=\x07",
        input=[1, 3, 8, 8],
        nodes=nodes,
        modules=[Module(MARKUP_NAME, "[red]Conv", 0, 1, None)],
        totals={"params": 0, "trainable_params": 0, "param_bytes": 0, "buffers": 0},
        failure=Failure(
            MARKUP_NAME, MARKUP_NAME, "[red]Conv", [[1, 3, 8, 8]], f"{MARKUP_NAME}: \x1b[31m[/x]"
        ),
        verdict="[link=https://y]click[/link] \x1b]0;title\x07",
    )


def _no_markup_or_controls(text: Text) -> None:
    assert "\x1b" not in text.plain and "\x07" not in text.plain
    for span in text.spans:
        assert "link" not in str(span.style)


@run_async
async def test_names_and_messages_show_literally_never_as_markup_or_escapes() -> None:
    app = ShapetraceApp(_hostile_report())
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        await unfold(app, pilot)
        table = table_of(app)
        for i in range(table.row_count):
            for value in table.get_row_at(i):
                _no_markup_or_controls(value)
        assert MARKUP_NAME in table_names(app)
        assert "evil\\x1b]0;pwned\\x07[bold]" in table_names(app)
        assert "[red]Conv" in [
            str(v) for v in table.get_row_at(table_names(app).index(MARKUP_NAME))
        ]
        tree: Tree[int] = app.query_one("#tree", Tree)
        labels = [node.label for node in app._tree_nodes.values()] + [tree.root.label]
        for label in labels:
            _no_markup_or_controls(label)
        assert any(MARKUP_NAME in label.plain for label in labels)
        for selector in ("#header", "#details-body", "#status"):
            content = app.query_one(selector, Static).content
            assert isinstance(content, Text), selector
            _no_markup_or_controls(content)
        header = static_text(app, "#header")
        assert "[b]m[/b]\\x1b]52;c;aGk=\\x07" in header
        assert "[link=https://y]click[/link] \\x1b]0;title\\x07" in header
        await pilot.press("n")
        await pilot.pause()
        details = static_text(app, "#details-body")
        assert f"{MARKUP_NAME}: \\x1b[31m[/x]" in details


# -- jumps -------------------------------------------------------------------------------------


@run_async
async def test_n_jumps_to_the_bound_nodes_of_codereview_resnet50() -> None:
    report = saved_report("codereview_resnet50", 224)
    bound = [r.name for r in build_rows(report) if r.depends_on_input == "bound"]
    assert bound == ["avgpool", "fc_layer"]
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert cursor_name(app) == bound[0]  # it opens on the first bound node
        for name in bound[1:]:
            await pilot.press("n")
            await pilot.pause()
            assert cursor_name(app) == name
        await pilot.press("n")  # wraps around
        await pilot.pause()
        assert cursor_name(app) == bound[0]
        await pilot.press("N")
        await pilot.pause()
        assert cursor_name(app) == bound[-1]
        assert cell(app, "fc_layer", "Input size") == "bound"
        assert "bound" in static_text(app, "#details-body")


@run_async
async def test_n_stops_at_each_bound_node_and_at_the_failing_node() -> None:
    report = saved_report("codereview_resnet50", 448)
    assert report.failure is not None and report.failure.node == "fc_layer"
    stops = [
        r.name
        for r in build_rows(report)
        if r.kind != "group" and (r.depends_on_input == "bound" or r.name == "fc_layer")
    ]
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        for name in stops:
            await pilot.press("n")
            await pilot.pause()
            assert cursor_name(app) == name
        assert stops[-1] == "fc_layer"
        assert cell(app, "fc_layer", "Output shape") == "✗ breaks here"
        details = static_text(app, "#details-body")
        assert report.failure.message in details
        assert "(1, 131072)" in details  # the shape fc_layer received: 2048 x 8 x 8
        assert 2048 * 8 * 8 == 131072


@run_async
async def test_not_reached_nodes_are_marked_and_n_opens_the_group_that_breaks() -> None:
    # A report that breaks early: every node after the break is shown as not reached.
    report = _chain_report(6, break_at=2)
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert cursor_name(app) == "block2.conv"  # it opens on the break
        await unfold(app, pilot)
        shapes = [cell(app, f"block{i}.conv", "Output shape") for i in range(6)]
        assert shapes[:2] == ["(1, 8, 32, 32)", "(1, 8, 32, 32)"]
        assert shapes[2] == "✗ breaks here"
        assert shapes[3:] == ["not reached"] * 3
        block2 = next(n for n in app._tree_nodes.values() if str(n.label).startswith("block2"))
        block2.collapse()
        await pilot.pause()
        assert "block2.conv" not in table_names(app)
        await pilot.press("n")
        await pilot.pause()
        assert block2.is_expanded
        assert cursor_name(app) == "block2.conv"
        assert "broken on purpose" in static_text(app, "#details-body")


# -- depth -------------------------------------------------------------------------------------


@run_async
async def test_d_cycles_the_depth_and_keeps_the_selection_inside() -> None:
    report = saved_report("resnet50", 448)
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await unfold(app, pilot)
        await pilot.press("slash", *"layer4.1.conv2", "enter", "escape")
        await pilot.pause()
        assert table_of(app).row_count == len(build_rows(report))
        assert cursor_name(app) == "layer4.1.conv2"
        await pilot.press("d")
        await pilot.pause()
        assert table_names(app) == [r.name for r in build_rows(report, 1)]
        assert cursor_name(app) == "layer4"  # the collapsed row that now stands for it
        assert "depth 1" in static_text(app, "#header")
        await pilot.press("d", "d")
        await pilot.pause()
        assert table_names(app) == [r.name for r in build_rows(report, 3)]
        await pilot.press("d")
        await pilot.pause()
        assert "depth all" in static_text(app, "#header")
        assert table_of(app).row_count == len(build_rows(report))


# -- live input size ---------------------------------------------------------------------------


@run_async
async def test_changing_the_input_from_224_to_448_shows_the_failure() -> None:
    report = saved_report("codereview_resnet50", 224)
    assert report.failure is None
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("slash", *"avgpool", "enter", "escape")
        await pilot.pause()
        assert cursor_name(app) == "avgpool"
        assert cell(app, "avgpool", "Output shape") == "(1, 2048, 1, 1)"
        await pilot.press("i", *"448", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.report is not None, static_text(app, "#status")
        assert app.report.input == [1, 3, 448, 448], static_text(app, "#status")
        # 448 / 32 = 14, and AvgPool2d(7, 1) leaves 14 - 7 + 1 = 8 per side; the rows that
        # changed are marked, the others not
        assert cell(app, "avgpool", "Output shape") == "Δ (1, 2048, 8, 8)"
        assert cell(app, "fc_layer", "Output shape") == "✗ breaks here"
        assert cell(app, "fc_layer", "Input size") == "breaks"
        assert cell(app, "size", "Output shape") == "= 1"  # the batch size did not change
        changed = app.outline.changed if app.outline else set()
        assert {"x", "layer_5", "avgpool", "view", "fc_layer"} <= changed
        assert "size" not in changed
        assert cursor_name(app) == "avgpool"  # the selection survives the update
        status = static_text(app, "#status")
        assert "rejected at fc_layer" in status
        assert f"Δ {len(changed)} rows changed from 1x3x224x224" in status
        assert "Δ changed" in static_text(app, "#legend")
        assert "changed since the last input size" in static_text(app, "#details-body")
        header = static_text(app, "#header")
        # the verdict names the break (so no separate Breaks line), the sizes that work, the fix
        assert "fc_layer: Linear(2048 -> 2) received 131072 features" in header
        # the failure, the sizes that work and the fix
        assert f"Accepts: {domain_text(app.report)}" in header
        assert app.report.verdict and "Fix:" in app.report.verdict
        assert f"Verdict: {app.report.verdict}" in header
        assert app.query_one("#size", Input).value == "1x3x448x448"


def table_cells(app: ShapetraceApp, marks: bool = True) -> list[list[str]]:
    """Every cell the table holds, row by row: each character run with the style it is drawn
    in; without the marks of changed rows if `marks` is False."""
    table = table_of(app)

    def shown(cell: Any) -> str:
        if not isinstance(cell, Text):
            return str(cell)
        if not marks and cell.plain.startswith("Δ "):
            cell = cell[2:]
        # Each character with the styles it is drawn in: the text's own, then its spans'.
        drawn = [
            (
                char,
                " ".join(
                    filter(
                        None,
                        [
                            str(cell.style),
                            *(str(s.style) for s in cell.spans if s.start <= i < s.end),
                        ],
                    )
                ),
            )
            for i, char in enumerate(cell.plain)
        ]
        return repr(drawn)

    return [[shown(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@run_async
async def test_a_size_the_formulas_accept_updates_the_cells_in_place_then_the_analysis_confirms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker's analysis is held back until the estimate has been looked at.
    import threading

    import shapetrace.views.tui.app as tui_app

    release = threading.Event()
    real = tui_app.analyse

    def held(request: dict[str, Any]) -> Report:
        release.wait(60)
        return real(request)

    monkeypatch.setattr(tui_app, "analyse", held)
    import shapetrace

    # Analysed now (the saved reports predate shape formulas): the formulas answer 224.
    report = shapetrace.analyze("resnet50", "448")
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await unfold(app, pilot)
        await pilot.press("slash", *"layer4.0.conv1", "enter", "escape")
        await pilot.pause()
        assert cursor_name(app) == "layer4.0.conv1"
        assert cell(app, "layer4.0.conv1", "Output shape") == "(1, 512, 28, 28)"
        fill, rows, cursor = app._fill, table_of(app).row_count, table_of(app).cursor_row
        totals_lines = static_text(app, "#totals").count("\n")
        await pilot.press("i", *"224", "enter")
        await pilot.pause()
        # The estimate, in the table as it stood: same fill (row keys), rows and cursor.
        assert app.report is not None and "estimated" in app.report.source
        assert app.report.input == [1, 3, 224, 224]
        assert (app._fill, table_of(app).row_count, table_of(app).cursor_row) == (
            fill,
            rows,
            cursor,
        )
        # 224 / 16 = 14 for layer4's first conv; its MACs follow: 512*14*14 outputs, each
        # 1024 multiply-accumulates
        assert cell(app, "layer4.0.conv1", "Output shape") == "Δ (1, 512, 14, 14)"
        assert cell(app, "layer4.0.conv1", "MACs") == "102.76M"
        # What only the meta run gives stays empty, in its column, until it confirms.
        assert cell(app, "layer4.0.conv1", "Activations") == ""
        assert cell(app, "layer4.0.conv1", "RF size/stride") == ""
        assert "confirming" in static_text(app, "#status")
        assert static_text(app, "#totals").count("\n") == totals_lines
        assert "Peak activation memory: …" in static_text(app, "#totals")
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.report is app.confirmed and "estimated" not in app.report.source
        assert app._fill == fill and cursor_name(app) == "layer4.0.conv1"
        assert cell(app, "layer4.0.conv1", "Activations") == "392.0 KiB"  # 512*14*14*4 B
        assert cell(app, "layer4.0.conv1", "RF size/stride") == "267/16"
        assert "confirming" not in static_text(app, "#status")
        # Updated in place, the table holds what a fresh window shows for that report
        # (column widths aside).
        # The fresh window marks nothing as changed: compare without the marks.
        updated = table_cells(app, marks=False)
        fresh = ShapetraceApp(app.report)
        fresh.previous = None
    async with fresh.run_test(size=WIDE) as pilot:
        await unfold(fresh, pilot)
        expected = table_cells(fresh)
    assert updated == expected


@run_async
async def test_an_invalid_input_shows_one_line_and_analyses_nothing() -> None:
    report = saved_report("codereview_resnet50", 224)
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("i", *"1x3x", "enter")
        await pilot.pause()
        status = static_text(app, "#status")
        assert status.startswith("✗ malformed input '1x3x'")
        assert "\n" not in status and "--" not in status  # no command-line flag in the TUI
        assert len(app.workers) == 0
        assert app.report is report
        # the keys go back to the table, the field shows the analysed size again
        assert app.focused is table_of(app)
        assert app.query_one("#size", Input).value == "1x3x224x224"
        await pilot.press("n")  # a binding, not a letter typed into the field
        await pilot.pause()
        assert cursor_name(app) == "fc_layer"


@run_async
async def test_the_first_digit_typed_after_i_is_kept() -> None:
    # `i` and the digits arrive in one burst, as from a fast typist or a paste.
    report = saved_report("codereview_resnet50", 224)
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("i", "4", "4", "8")
        assert app.query_one("#size", Input).value == "448"
        await pilot.press("escape")
        await pilot.pause()
        assert app.query_one("#size", Input).value == "1x3x224x224"


@run_async
async def test_a_model_named_on_the_command_line_is_analysed_again_at_a_new_size() -> None:
    # `shapetrace tests/data/user_models.py:TinyNet --tui`: the user named the file, so a new
    # size rebuilds it from the request (a report naming a file is never re-run: see below).
    request = {
        "model": "tests/data/user_models.py:TinyNet",
        "input": "1x3x32x32",
        "model_args": {},
        "train": False,
    }
    app = ShapetraceApp(request=request)
    async with app.run_test(size=WIDE) as pilot:
        # The analysis starts after the first frame: wait until its worker has run.
        for _ in range(200):
            await pilot.pause()
            await app.workers.wait_for_complete()
            if app.report is not None:
                break
        assert app.report is not None and app.report.input == [1, 3, 32, 32]
        assert not app.query_one("#size", Input).disabled
        await pilot.press("i", *"1x3x64x64", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.report.input == [1, 3, 64, 64], static_text(app, "#status")
        assert app.report.model == app.previous.model if app.previous else False
        # the same report opened alone (shapetrace show) is read-only: no code of a report's
        # choosing runs
        alone = ShapetraceApp(app.report)
        assert alone._blocker(app.report) is not None
        assert "command line" in (rebuild_blocker(app.report.source) or "")


@run_async
async def test_a_report_of_a_live_module_has_a_read_only_input() -> None:
    data = saved_report("codereview_resnet50", 224).to_dict()
    data["source"] = {**data["source"], "model": "ResNet", "family": "object"}
    report = Report.from_dict(data)
    assert rebuild_blocker(report.source) is not None
    assert rebuild_blocker({"model": "resnet50"}) is None
    assert "command line" in (rebuild_blocker({"model": "tests/data/user_models.py:Net"}) or "")
    assert "command line" in (rebuild_blocker({"model": "pkg.mod:Net"}) or "")
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("i")
        await pilot.pause()
        assert app.query_one("#size", Input).disabled
        assert "read-only" in static_text(app, "#status")


# -- export and help ---------------------------------------------------------------------------


async def _export(app: ShapetraceApp, pilot: Any, name: str) -> None:
    await pilot.press("e")
    await pilot.pause()
    app.screen.query_one("#export-path", Input).value = name
    await pilot.press("enter")
    await pilot.pause()


@run_async
async def test_export_writes_markdown_json_and_svg_of_the_current_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    report = saved_report("codereview_resnet50", 448)
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("d")  # depth 1
        await pilot.press("e")
        await pilot.pause()
        assert app.screen.query_one("#export-path", Input).value == default_name(report, 1)
        await pilot.press("escape")
        await _export(app, pilot, "view.md")
        assert (tmp_path / "view.md").read_text() == render_markdown(report, 1)
        assert "wrote view.md (markdown)" in static_text(app, "#status")
        await _export(app, pilot, "view.json")
        saved = Report.load(tmp_path / "view.json")
        assert [n.name for n in saved.nodes] == [n.name for n in report.nodes]
        assert saved.failure == report.failure
        await _export(app, pilot, "view.txt")
        assert "use a .svg, .png, .pdf, .dot, .md or .json name" in static_text(app, "#status")
        if diagrams_available():
            await _export(app, pilot, "view.svg")
            status = static_text(app, "#status")
            if "wrote" in status:
                assert "<svg" in (tmp_path / "view.svg").read_text()
                await _export(app, pilot, "view.png")
                assert (tmp_path / "view.png").read_bytes().startswith(b"\x89PNG")
                await _export(app, pilot, "view.pdf")
                assert (tmp_path / "view.pdf").read_bytes().startswith(b"%PDF")
                assert "wrote view.pdf (pdf)" in static_text(app, "#status")
            else:  # Graphviz's dot is missing: the one-line reason is shown
                assert "dot" in status
        # every file was renamed into place: no temporary file is left beside them
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@run_async
async def test_help_lists_every_binding() -> None:
    app = ShapetraceApp(saved_report("resnet50", 448))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        rendered = static_text(app, "#help-keys")
        shown = [b for b in ShapetraceApp.BINDINGS if getattr(b, "show", False)]
        assert len(app.help_rows()) == len(shown) == 9
        for key, description in app.help_rows():
            assert re.search(rf"^{re.escape(key)}\s+{re.escape(description)}", rendered, re.M)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]


# -- scale -------------------------------------------------------------------------------------


def _chain_report(blocks: int, break_at: int | None = None) -> Report:
    """A synthetic report: `blocks` modules `blockI` each holding conv, bn, relu nodes."""
    nodes = [Node("x", "placeholder", "x", None, "Input", [], [1, 8, 32, 32], "float32")]
    modules = []
    previous = "x"
    reached = True
    for i in range(blocks):
        modules.append(Module(f"block{i}", "Block", 640, 1, [1, 8, 32, 32]))
        for part, kind, params in (("conv", "Conv2d", 584), ("bn", "BatchNorm2d", 16)):
            name = f"block{i}.{part}"
            shape = [1, 8, 32, 32] if reached and i != break_at else None
            modules.append(Module(name, kind, params, 1, shape))
            nodes.append(
                Node(name, "call_module", name, name, kind, [previous], shape, "float32", params)
            )
            previous = name
            if i == break_at:
                reached = False
    failure = None
    if break_at is not None:
        from shapetrace.report import Failure

        name = f"block{break_at}.conv"
        failure = Failure(name, name, "Conv2d", [[1, 8, 32, 32]], f"{name}: broken on purpose")
    totals = {"params": 600 * blocks, "trainable_params": 600 * blocks, "param_bytes": 0}
    totals["buffers"] = 0
    return Report(
        source={"model": "synthetic", "input": ["1x8x32x32"], "family": "object"},
        model="synthetic",
        input=[1, 8, 32, 32],
        nodes=nodes,
        modules=modules,
        totals=totals,
        failure=failure,
    )


@run_async
async def test_a_graph_of_thousands_of_nodes_opens_collapsed_and_expands_on_request() -> None:
    report = _chain_report(2500)  # 5001 nodes, 7500 modules: 7501 rows when fully expanded
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        # More rows than the table should lay out at once: it opens at depth 1.
        assert app.depth == 1
        assert table_of(app).row_count == len(build_rows(report, 1)) == 2501
        # Virtualised: the DOM holds a fixed set of widgets, not one per row.
        assert len(list(app.query("*"))) < 60
        await pilot.press("ctrl+end")
        await pilot.pause()
        assert cursor_name(app) == "block2499"
        while app.depth is not None:  # d cycles on to "everything"
            await pilot.press("d")
            await pilot.pause()
        assert table_of(app).row_count == len(build_rows(report)) == 5001 + 2500
        assert len(list(app.query("*"))) < 60


# -- outline logic (no app) --------------------------------------------------------------------


def test_outline_parents_and_visibility_match_the_rows() -> None:
    report = saved_report("resnet50", 448)
    outline = Outline.build(report)
    for i, row in enumerate(outline.rows):
        parent = outline.parents[i]
        if parent is not None:
            assert outline.rows[parent].kind == "group"
            assert row.level == outline.rows[parent].level + 1
    visible = outline.visible({"layer2", "layer3"})
    hidden = set(rows_inside(report, "layer2")) | set(rows_inside(report, "layer3"))
    assert [outline.rows[i].name for i in visible] == [
        r.name for r in outline.rows if r.name not in hidden
    ]
    assert outline.members(outline.index_of("group", "layer4.2") or 0)[-1] == "layer4.2.relu_2"
    assert outline.users["layer4.2.relu_2"] == ["avgpool"]


# -- snapshots ---------------------------------------------------------------------------------


def test_snapshot_resnet50_main_screen(snap_compare: Any) -> None:
    assert snap_compare(ShapetraceApp(saved_report("resnet50", 448)), terminal_size=WIDE)


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_snapshot_codereview_resnet50_first_screen_at_448(
    snap_compare: Any, size: tuple[int, int]
) -> None:
    # what `shapetrace codereview_resnet50 --input 448 --tui` opens on, no key pressed
    app = ShapetraceApp(saved_report("codereview_resnet50", 448))
    assert snap_compare(app, terminal_size=size)


def test_snapshot_codereview_resnet50_bound_nodes(snap_compare: Any) -> None:
    app = ShapetraceApp(saved_report("codereview_resnet50", 224))
    assert snap_compare(app, press=["d", "n"], terminal_size=WIDE)


def test_snapshot_help(snap_compare: Any) -> None:
    app = ShapetraceApp(saved_report("resnet50", 448))
    assert snap_compare(app, press=["question_mark"], terminal_size=(80, 24))


@run_async
async def test_twenty_thousand_node_graph_opens_collapsed_then_deepens() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_views import _chain

    from shapetrace.views.tui.app import ROW_LIMIT

    report = _chain(10_001)
    app = ShapetraceApp(report)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.query_one("#table", DataTable)
        assert app.depth == 1 and table.row_count <= ROW_LIMIT
        assert [app.outline.rows[i].name for i in app.visible_rows] == ["x", "body"]
        await pilot.press("d")  # one level deeper: every block as a row
        await pilot.pause()
        assert table.row_count == 1 + 1 + 10_001


@run_async
async def test_a_new_size_shows_at_once_from_the_formulas_then_the_analysis_confirms_it() -> None:
    import time

    import shapetrace

    # A fresh report: the saved ones predate shape formulas and cost multiples.
    report = shapetrace.analyze("codereview_resnet50", "224")
    app = ShapetraceApp(report)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("i", *"208")
        start = time.perf_counter()
        await pilot.press("enter")
        handled = time.perf_counter() - start
        await pilot.pause()
        shown = time.perf_counter() - start
        assert app.report is not None and app.report.input == [1, 3, 208, 208]
        if app.workers and not all(w.is_finished for w in app.workers):
            assert "estimated" in app.report.source
            assert "confirming" in static_text(app, "#status")
        assert cell(app, "avgpool", "Output shape") == "(1, 2048, 1, 1)"  # 208 / 32 -> 7
        assert app.outline is not None and "layer_1.0" in app.outline.changed
        # The figure (no timed assertion): key press to the estimated table, with the pilot.
        print(
            f"\nTUI size change from the formulas: key press handled (estimate and table "
            f"update) {1000 * handled:.1f} ms; next frame {1000 * shown:.1f} ms"
        )
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "estimated" not in app.report.source
        assert app.report.input == [1, 3, 208, 208] and app.report.failure is None
        assert app.previous is report


def test_a_group_holding_the_break_is_not_called_bound() -> None:
    import torch

    import shapetrace

    model = torch.nn.Sequential()
    model.add_module("conv", torch.nn.Conv2d(3, 4, 3))
    model.add_module("head", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)))
    report = shapetrace.analyze(model, "1x3x10x10")  # 8x8 maps: head.1 gets 256 features
    assert report.failure is not None and report.failure.node == "head.1"
    outline = Outline.build(report)
    index = outline.index_of("group", "head")
    assert index is not None
    label = outline.tree_label(index).plain
    assert "✗" in label and "bound" not in label
    assert "head" not in [outline.rows[i].name for i in outline.visible(set(), "bound")]
    assert [outline.rows[i].name for i in outline.visible(set(), "breaks")] == ["head.1"]
