"""Table and Markdown views from hand-built reports: hierarchy, depth, failure marks, and
graphs of 20,000+ nodes, all without torch."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from shapetrace.report import Failure, Module, Node, Report
from shapetrace.views import markdown, table
from shapetrace.views.tree import FAILED, NOT_REACHED, build_rows, cell_text


def _chain(blocks: int, fail_at: int | None = None) -> Report:
    """x -> body.0.conv -> body.0.relu -> ... : two leaf nodes per block."""
    nodes = [Node("x", "placeholder", "x", None, "Input", [], [1, 4, 8, 8], "float32")]
    modules = [Module("body", "Sequential", 20 * blocks, 1, [1, 4, 8, 8])]
    previous = "x"
    for i in range(blocks):
        modules.append(Module(f"body.{i}", "Block", 20, 1, [1, 4, 8, 8]))
        for leaf, kind, params in (("conv", "Conv2d", 20), ("relu", "ReLU", 0)):
            name = f"body.{i}.{leaf}"
            reached = fail_at is None or i < fail_at
            nodes.append(
                Node(
                    name,
                    "call_module",
                    name,
                    name,
                    kind,
                    [previous],
                    [1, 4, 8, 8] if reached else None,
                    "float32" if reached else None,
                    params,
                )
            )
            modules.append(
                Module(name, kind, params, 1 if reached else 0, [1, 4, 8, 8] if reached else None)
            )
            previous = name
    failure = None
    if fail_at is not None:
        failure = Failure(
            f"body.{fail_at}.conv",
            f"body.{fail_at}.conv",
            "Conv2d",
            [[1, 4, 8, 8]],
            f"body.{fail_at}.conv: broke",
        )
    return Report(
        source={"model": "chain", "input": ["1x4x8x8"], "mode": "eval", "trace": "fx"},
        model="chain",
        input=[1, 4, 8, 8],
        nodes=nodes,
        modules=modules,
        totals={
            "params": 20 * blocks,
            "trainable_params": 20 * blocks,
            "param_bytes": 80 * blocks,
            "buffers": 0,
        },
        failure=failure,
    )


def test_depth_collapses_blocks_and_keeps_graph_order() -> None:
    report = _chain(3)
    assert [(r.kind, r.name, r.level) for r in build_rows(report, depth=1)] == [
        ("node", "x", 0),
        ("collapsed", "body", 0),
    ]
    rows = build_rows(report, depth=2)
    assert [(r.kind, r.name, r.level) for r in rows] == [
        ("node", "x", 0),
        ("group", "body", 0),
        ("collapsed", "body.0", 1),
        ("collapsed", "body.1", 1),
        ("collapsed", "body.2", 1),
    ]
    assert rows[2].members == ("body.0.conv", "body.0.relu") and rows[2].params == 20
    full = build_rows(report)
    assert [r.name for r in full if r.kind == "node"] == [n.name for n in report.nodes]


def test_failure_marks_the_breaking_row_and_the_rows_after_it() -> None:
    report = _chain(3, fail_at=1)
    rows = {r.name: r for r in build_rows(report)}
    assert rows["body.0.relu"].status == "ok"
    assert rows["body.1.conv"].status == FAILED
    assert rows["body.2.relu"].status == NOT_REACHED
    assert rows["body.1"].status == FAILED and rows["body.2"].status == NOT_REACHED
    text = markdown.render(report)
    assert "| \u2003\u2003`body.1.conv` | Conv2d | **breaks here** | 20 |" in text
    assert "| \u2003\u2003`body.2.conv` | Conv2d | *not reached* | 20 |" in text
    assert "- Breaks: body.1.conv: broke" in text


def test_twenty_thousand_nodes_render_in_every_text_view() -> None:
    report = _chain(10_001)
    assert len(report.nodes) == 20_003
    buffer = io.StringIO()
    table.render(report, file=buffer, color=False)
    lines = buffer.getvalue().splitlines()
    # heading, titles, x, the body group, a group and two nodes per block, totals
    assert len(lines) == 1 + 1 + 1 + 1 + 10_001 * 3 + 1
    assert lines[-2].split() == ["body.10000.relu", "ReLU", "(1,", "4,", "8,", "8)", "-"]
    md = markdown.render(report, depth=2)
    assert md.count("\n| ") == 1 + 1 + 1 + 10_001
    again = Report.from_json(report.to_json())
    assert again.to_dict() == report.to_dict()


def test_rendering_a_report_never_imports_torch() -> None:
    code = (
        "import sys; sys.path.insert(0, 'tests'); from test_views import _chain\n"
        "from shapetrace.views import markdown, table\n"
        "r = _chain(5); markdown.render(r); table.render_text(r)\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _with_states(fail_at: int | None) -> Report:
    """The chain with Input size states: body.1.conv bound, the rest scaling, and the domain
    attributed to it (body.0.conv's constraint implied)."""
    report = _chain(3, fail_at=fail_at)
    for node in report.nodes:
        node.depends_on_input = "bound" if node.name == "body.1.conv" else "scales"
    report.domain = {
        "H": [[8, 9]],
        "W": [[8, 9]],
        "bounds": [],
        "attribution": {"bound": ["body.1.conv"], "implied": {"body.0.conv": ["body.1.conv"]}},
    }
    return report


def test_the_failing_row_reads_breaks_in_red_apart_from_bound_in_magenta() -> None:
    # A report whose sizing pass did not mark the break itself still shows it.
    report = _with_states(fail_at=2)
    rows = {r.name: r for r in build_rows(report)}
    assert cell_text(rows["body.2.conv"], "dep") == "breaks"
    assert cell_text(rows["body.1.conv"], "dep") == "bound"
    assert cell_text(rows["body.0.conv"], "dep") == "scales"
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=160)
    console.print(table.build_table(report))
    styled = buffer.getvalue()
    assert "\x1b[1;31mbreaks" in styled  # bold red
    assert "\x1b[1;35mbound" in styled  # bold magenta
    assert "\x1b[36mscales" in styled  # cyan
    md = markdown.render(report)
    assert "| **breaks here** | 20 | **breaks** |" in md
    assert "| (1, 4, 8, 8) | 20 | **bound** |" in md
    assert "| (1, 4, 8, 8) | 20 | scales |" in md


def test_accepted_sizes_name_the_bound_nodes_and_the_implied_ones() -> None:
    report = _with_states(fail_at=None)
    assert "- Accepts: H in [8, 9], W in [8, 9] (set by body.1.conv; implied: body.0.conv)" in (
        markdown.render(report)
    )
    report.domain["attribution"] = {"bound": [], "implied": {}}
    assert "- Accepts: H in [8, 9], W in [8, 9]\n" in markdown.render(report)


def test_a_size_that_depends_on_values_is_printed_as_a_tensor_size() -> None:
    from shapetrace.report import format_shape

    # as a symbolic capture writes a detector's boxes, and a tuple holding such a tensor
    assert format_shape(["Min(100, u9)", 4]) == "(Min(100, u9), 4)"
    assert format_shape([["u0"], [1, 2]]) == "[(u0), (1, 2)]"
    assert format_shape({"boxes": ["u1", 4]}) == "{boxes: (u1, 4)}"
    assert format_shape([1, 3, 224, 224]) == "(1, 3, 224, 224)"
