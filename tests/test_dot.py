"""Tests of the Graphviz diagrams: real SVG from `dot`, parsed as XML.

Reports come from real analyses (ResNet-50 and the code-review ResNet-50 at 224, 448 and 64);
the layout checks read positions from dot's own JSON output and the PNG's pixel size.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import graphviz
import pytest
from torch import nn

import shapetrace
from shapetrace.cli import main
from shapetrace.errors import EXIT_USAGE, UsageError
from shapetrace.report import Module, Node, Report
from shapetrace.views import dot
from shapetrace.views.dot import Line, diagram, html_label, write_diagram

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"

needs_dot = pytest.mark.skipif(not dot.dot_available(), reason="Graphviz's dot is not installed")

RESNET50_BOXES = {
    "x",
    "conv1",
    "bn1",
    "relu",
    "maxpool",
    *(
        f"layer{stage}.{block}"
        for stage, n in ((1, 3), (2, 4), (3, 6), (4, 3))
        for block in range(n)
    ),
    "avgpool",
    "flatten",
    "fc",
}


# -- helpers ---------------------------------------------------------------------------------


def _svg(graph: graphviz.Digraph) -> ET.Element:
    return ET.fromstring(graph.pipe(format="svg"))


def _groups(svg: ET.Element, kind: str) -> dict[str, ET.Element]:
    """`<g class="node|cluster|edge">` elements by their `<title>` (the DOT id)."""
    found = {}
    for group in svg.iter(f"{SVG}g"):
        if group.get("class") == kind:
            title = group.find(f"{SVG}title")
            assert title is not None and title.text is not None
            found[title.text] = group
    return found


def _texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def _outline(group: ET.Element) -> dict[str, str]:
    """Fill, stroke, width and dashes of a box's outline."""
    # the first path or polygon, also when a tooltip wraps the box in an <a> link
    shape = next(group.iter(f"{SVG}path"), None)
    if shape is None:
        shape = next(group.iter(f"{SVG}polygon"), None)
    assert shape is not None
    return {
        key: shape.get(key, "") for key in ("fill", "stroke", "stroke-width", "stroke-dasharray")
    }


def _edges(svg: ET.Element) -> list[tuple[str, str]]:
    return [tuple(title.split("->")) for title in _groups(svg, "edge")]  # type: ignore[misc]


@pytest.fixture(scope="module")
def resnet50() -> Report:
    return shapetrace.analyze("resnet50", "1x3x224x224")


@pytest.fixture(scope="module")
def codereview() -> Callable[[int], Report]:
    cache: dict[int, Report] = {}

    def at(size: int) -> Report:
        if size not in cache:
            cache[size] = shapetrace.analyze("codereview_resnet50", f"1x3x{size}x{size}")
        return cache[size]

    return at


# -- labels and escaping ---------------------------------------------------------------------

HOSTILE = ['<b>&"{x}é', "</TD></TR>]", "a'b\\", "{}<>&amp;"]


@pytest.mark.parametrize("text", HOSTILE)
def test_html_label_escapes_hostile_text_and_parses_back(text: str) -> None:
    label = html_label([Line(text, bold=True, color='#fff"><b>'), Line("plain")])
    assert label.startswith("<") and label.endswith(">")
    table = ET.fromstring(label[1:-1])  # the inside of an HTML-like label is XML
    assert [("".join(cell.itertext())) for cell in table.iter("TD")] == [text, "plain"]
    assert table.find(".//FONT").get("COLOR") == '#fff"><b>'  # type: ignore[union-attr]


class _Hostile(nn.Module):
    """Submodules named with markup; fx's code generator takes every name without `"` or `\\`."""

    def __init__(self) -> None:
        super().__init__()
        block = nn.Sequential()
        block.add_module("<b>&'{x}é", nn.Conv2d(3, 4, 3))
        block.add_module("</TD>]", nn.ReLU())
        self.add_module("a<b>", block)
        self.add_module("}{", nn.Conv2d(4, 2, 1))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return getattr(self, "}{")(getattr(self, "a<b>")(x))


@needs_dot
def test_hostile_module_names_render_verbatim() -> None:
    report = shapetrace.analyze(_Hostile(), "1x3x16x16")
    svg = _svg(diagram(report))
    texts = set(_texts(svg))
    assert {"a<b>.<b>&'{x}é", "a<b>.</TD>]", "}{"} <= texts
    assert "a<b>" in texts  # the cluster's label
    assert len(_groups(svg, "cluster")) == 2  # a<b> and the legend


def _hand_report(names: list[str]) -> Report:
    nodes = [Node("x", "placeholder", "x", None, "Input", [], [1, 3, 8, 8], "torch.float32")]
    for previous, name in itertools.pairwise(["x", *names]):
        nodes.append(
            Node(name, "call_module", name, name, "Conv2d", [previous], [1, 3, 8, 8], "f32", 12)
        )
    modules = [Module("", "Net", 12 * len(names), 1)]
    modules += [Module(name, "Conv2d", 12, 1, [1, 3, 8, 8]) for name in names]
    return Report(
        source={"input": ['1x3x8x8"']},
        model='Net"<i>',
        input=[1, 3, 8, 8],
        nodes=nodes,
        modules=modules,
        totals={"params": 12 * len(names)},
    )


@needs_dot
def test_names_fx_cannot_trace_still_render_verbatim() -> None:
    names = ['"q"\\', "<i>&amp;</i>", "{x}é", "node", "-1"]
    graph = diagram(_hand_report(names))
    # HTML-like labels escape the name; tooltips are quoted DOT strings, where it is text
    labels = re.findall(r"label=<(.*?)> ", graph.source)
    assert labels and not any("<i>" in label.replace("<I>", "") for label in labels)
    svg = _svg(graph)
    assert set(names) <= set(_texts(svg))
    assert 'Net"<i> · input 1x3x8x8" · eval · traced with fx' in _texts(svg)
    assert len(_groups(svg, "node")) == len(names) + 2  # x and the legend


# -- structure -------------------------------------------------------------------------------


@needs_dot
def test_resnet50_default_depth_shows_stages_as_clusters_and_blocks_as_boxes(
    resnet50: Report,
) -> None:
    svg = _svg(diagram(resnet50))
    boxes = {name for name in _groups(svg, "node") if not name.startswith("legend_")}
    assert boxes == RESNET50_BOXES
    assert set(_groups(svg, "cluster")) == {
        "cluster_layer1",
        "cluster_layer2",
        "cluster_layer3",
        "cluster_layer4",
        "cluster_legend",
    }
    block = _texts(_groups(svg, "node")["layer1.0"])
    # RF by hand: conv1 7/2, maxpool 11/4, then the block's 3x3 conv adds 2 x 4
    assert block == ["layer1.0", "Bottleneck · 75.0k params", "1×256×56×56 · RF 19/4"]


@needs_dot
def test_depth_collapses_and_expands_modules(resnet50: Report) -> None:
    shallow = _svg(diagram(resnet50, depth=1))
    assert {"layer1", "layer4", "fc"} <= set(_groups(shallow, "node"))
    assert set(_groups(shallow, "cluster")) == {"cluster_legend"}
    deep = _svg(diagram(resnet50, depth=3))
    boxes = set(_groups(deep, "node"))
    assert {"layer1.0.conv1", "layer1.0.bn1", "layer1.0.downsample", "layer4.2.add"} <= boxes
    assert "layer1.0.downsample.0" not in boxes
    assert {"cluster_layer1", "cluster_layer1.0", "cluster_layer4.2"} <= set(
        _groups(deep, "cluster")
    )


@needs_dot
def test_edges_join_boxes_once_and_carry_no_label(resnet50: Report) -> None:
    svg = _svg(diagram(resnet50))
    edges = _edges(svg)
    order = [
        "x",
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        *sorted(b for b in RESNET50_BOXES if b.startswith("layer")),
        "avgpool",
        "flatten",
        "fc",
    ]
    assert sorted(edges) == sorted(itertools.pairwise(order))  # no self-loop, no duplicate
    # every box shows its output shape, so no label sits over an edge or a box
    labels = {title: _texts(group) for title, group in _groups(svg, "edge").items()}
    assert set(map(tuple, labels.values())) == {()}
    boxes = _groups(svg, "node")
    assert "1×256×56×56 · RF 19/4" in _texts(boxes["layer1.0"])  # 64 -> 256 channels


# -- highlighting ----------------------------------------------------------------------------


@needs_dot
def test_bound_nodes_stand_out_and_no_other_box_does(
    codereview: Callable[[int], Report], resnet50: Report
) -> None:
    svg = _svg(diagram(codereview(224)))
    boxes = _groups(svg, "node")
    bound = _outline(boxes["legend_bound"])
    marked = {name for name, group in boxes.items() if _outline(group) == bound}
    assert marked == {"fc_layer", "legend_bound"}  # avgpool's constraint is implied
    assert bound["stroke-width"] == "3"
    assert "bound: limits the input size" in _texts(boxes["fc_layer"])
    plain = _svg(diagram(resnet50))
    assert "legend_bound" not in _groups(plain, "node")
    widths = {_outline(group)["stroke-width"] for group in _groups(plain, "node").values()}
    assert widths == {""}  # torchvision's resnet50 has no bound node


@needs_dot
def test_scaling_and_fixed_shapes_are_told_apart_and_explained(resnet50: Report) -> None:
    boxes = _groups(_svg(diagram(resnet50)), "node")
    scales, fixed = _outline(boxes["legend_scales"]), _outline(boxes["legend_fixed"])
    assert scales["fill"] != fixed["fill"]
    for name in ("conv1", "layer3.2", "layer4.2"):  # spatial maps grow with the input
        assert _outline(boxes[name]) == scales, name
    for name in ("avgpool", "flatten", "fc"):  # after AdaptiveAvgPool2d((1, 1))
        assert _outline(boxes[name]) == fixed, name


@needs_dot
def test_failure_is_marked_with_its_message_and_every_node_before_it_drawn(
    codereview: Callable[[int], Report],
) -> None:
    report = codereview(448)
    svg = _svg(diagram(report))
    boxes = _groups(svg, "node")
    assert _outline(boxes["fc_layer"]) == _outline(boxes["legend_failed"])
    assert _outline(boxes["fc_layer"])["stroke"] != _outline(boxes["view"])["stroke"]
    text = " ".join(_texts(boxes["fc_layer"]))
    assert "breaks: Linear(2048 -> 2) received 131072 features" in text
    into = _outline(_groups(svg, "edge")["view->fc_layer"])
    assert into["stroke"] == _outline(boxes["fc_layer"])["stroke"]  # the edge into the break
    assert any(line.startswith("1×131072") for line in _texts(boxes["view"]))  # what it received
    assert any(line.startswith("1×2048×8×8") for line in _texts(boxes["avgpool"]))
    blocks = {f"layer_{s}.{b}" for s, n in ((2, 3), (3, 4), (4, 6), (5, 3)) for b in range(n)}
    assert blocks | {"x", "layer_1.0", "avgpool", "view"} <= set(boxes)
    assert "size" not in boxes  # x.size(0), a number: folded into the edge avgpool -> view
    title = " ".join(_texts(svg)[:4])
    assert "fc_layer: Linear(2048 -> 2) received 131072 features" in title


@needs_dot
def test_nodes_after_the_break_are_greyed(codereview: Callable[[int], Report]) -> None:
    report = codereview(64)
    assert report.failure is not None and report.failure.node == "avgpool"
    boxes = _groups(_svg(diagram(report)), "node")
    assert _outline(boxes["avgpool"]) == _outline(boxes["legend_failed"])
    for name in ("size", "view", "fc_layer"):  # after the break, size has no value: drawn
        assert _outline(boxes[name]) == _outline(boxes["legend_not_reached"])
        assert _outline(boxes[name])["stroke-dasharray"]
        assert "not reached" in _texts(boxes[name])
    assert _texts(boxes["layer_5.2"])[-1].startswith("1×2048×2×2")


# -- plumbing --------------------------------------------------------------------------------

PLUMBING_TYPES = {"getattr", "getitem", "eq", "_assert", "floordiv", "mul", "dim", "size"}


@pytest.fixture(scope="module")
def vit() -> Report:
    return shapetrace.analyze("vit_b_16", "1x3x224x224")


def _boxes_and_edges(svg: ET.Element) -> tuple[dict[str, ET.Element], list[tuple[str, str]]]:
    boxes = {k: v for k, v in _groups(svg, "node").items() if not k.startswith("legend_")}
    return boxes, _edges(svg)


@needs_dot
def test_vit_diagram_folds_plumbing_into_edges(vit: Report) -> None:
    by_name = {node.name: node for node in vit.nodes}
    plumbing = [n.name for n in vit.nodes if n.type in PLUMBING_TYPES and n.shape is None]
    assert len(plumbing) >= 15  # a third of the boxes ViT drew before
    svg = _svg(diagram(vit))
    boxes, edges = _boxes_and_edges(svg)
    assert set(boxes) == {
        "x",
        "conv_proj",
        "reshape",
        "permute",
        "encoder.add",
        "encoder.dropout",
        "encoder.layers",
        "encoder.ln",
        "getitem_5",
        "heads.head",
    }
    for name in boxes:  # every box is a tensor (a module collapsed at depth 2 has a shape)
        assert name not in by_name or by_name[name].shape is not None
    # the class token's expand and cat became the edge from the patches into the encoder
    assert ("permute", "encoder.add") in edges
    assert ("x", "reshape") not in edges  # a size read is not data flowing
    assert sorted(edges) == sorted(set(edges))
    # no label over an edge: edges carry none
    assert all(_texts(group) == [] for group in _groups(svg, "edge").values())
    # the bound that the folded asserts stand for stays on a drawn box
    bound = _outline(_groups(svg, "node")["legend_bound"])
    assert _outline(boxes["conv_proj"]) == bound


@needs_dot
def test_a_flag_shows_the_plumbing(vit: Report) -> None:
    boxes, _ = _boxes_and_edges(_svg(diagram(vit, show_plumbing=True)))
    assert {"getattr", "getitem", "eq", "_assert", "floordiv", "mul", "expand", "cat"} <= set(boxes)
    assert "class_token" in boxes


def test_the_failing_node_is_drawn_even_when_it_is_plumbing() -> None:
    from shapetrace.report import Failure

    report = _hand_report(["a", "b"])
    check = Node("check", "call_function", "torch._assert", None, "_assert", ["b"], None, None)
    report.nodes.append(check)
    report.failure = Failure("check", None, "_assert", [], "check: Wrong image height!")
    assert "check" not in dot.plumbing_nodes(report)
    assert "check [label=" in diagram(report).source
    report.failure = None  # at a size it accepts, the same assert is folded
    assert "check" in dot.plumbing_nodes(report)
    assert "check [label=" not in diagram(report).source


def test_a_graph_too_large_to_lay_out_is_drawn_shallower_or_refused() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_views import _chain

    report = _chain(2_000)  # x, then body.0 ... body.1999, two layers each
    graph = diagram(report)  # depth 2 would be 2,001 boxes: depth 1 is drawn
    assert graph.source.count("[label=") < dot.MAX_BOXES
    with pytest.raises(UsageError, match=r"2,001 boxes at depth 2 .* draw it at depth 1"):
        diagram(report, depth=2)


@needs_dot
def test_png_dpi_sets_the_resolution(codereview: Callable[[int], Report]) -> None:
    from PIL import Image

    report = codereview(448)
    small = Image.open(io.BytesIO(diagram(report, dpi=48).pipe(format="png"))).size
    large = Image.open(io.BytesIO(diagram(report, dpi=96).pipe(format="png"))).size
    assert 1.9 <= large[0] / small[0] <= 2.1
    with pytest.raises(UsageError, match="dpi"):
        diagram(report, dpi=0)


# -- layout ----------------------------------------------------------------------------------


def _positions(graph: graphviz.Digraph) -> dict[str, tuple[float, float]]:
    objects = json.loads(graph.pipe(format="json"))["objects"]
    return {
        o["name"]: tuple(float(v) for v in o["pos"].split(","))  # type: ignore[misc]
        for o in objects
        if "pos" in o
    }


@needs_dot
def test_stages_stand_side_by_side_in_order_and_rankdir_turns_them(resnet50: Report) -> None:
    heads = ["x", "layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    default = _positions(diagram(resnet50))
    assert len({default[h][1] for h in heads[1:]}) == 1  # the stages start on one line
    xs = [default[h][0] for h in heads]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # left to right, in order
    turned = _positions(diagram(resnet50, rankdir="LR"))
    assert len({turned[h][0] for h in heads[1:]}) == 1
    ys = [turned[h][1] for h in heads]
    assert ys == sorted(ys, reverse=True)  # top to bottom
    with pytest.raises(UsageError, match="rankdir"):
        diagram(resnet50, rankdir="diagonal")


@needs_dot
def test_resnet50_diagram_is_readable_by_default(resnet50: Report) -> None:
    from PIL import Image

    graph = diagram(resnet50)
    width, height = Image.open(io.BytesIO(graph.pipe(format="png"))).size  # 96 dpi
    assert width <= 2000 and height <= 2000
    assert 1 / 4 <= width / height <= 4
    sizes = {float(t.get("font-size", "0")) for t in _svg(graph).iter(f"{SVG}text")}
    assert min(sizes) >= 10


@needs_dot
def test_dark_theme_paints_a_dark_background_with_light_text(resnet50: Report) -> None:
    svg = _svg(diagram(resnet50, theme="dark"))
    background = svg.find(f"{SVG}g/{SVG}polygon")
    assert background is not None and background.get("fill") == "#0d1117"
    fills = {t.get("fill") for t in _groups(svg, "node")["layer1.0"].iter(f"{SVG}text")}
    assert fills == {"#e6edf3"}
    with pytest.raises(UsageError, match="theme"):
        diagram(resnet50, theme="sepia")


def test_golden_dot_sources_guard_the_layout_inputs(
    resnet50: Report, codereview: Callable[[int], Report], golden: Callable[[str, str], None]
) -> None:
    golden("resnet50_224.dot", diagram(resnet50).source)
    golden("codereview_resnet50_448.dot", diagram(codereview(448)).source)


# -- output, notebooks, missing dot ----------------------------------------------------------


@needs_dot
def test_cli_writes_svg_from_a_saved_report_and_prints_dot(
    resnet50: Report, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "report.json"
    saved.write_text(resnet50.to_json(), encoding="utf-8")
    assert main(["show", str(saved), "-o", str(tmp_path / "r.svg"), "--depth", "1"]) == 0
    svg = ET.parse(tmp_path / "r.svg").getroot()
    assert "layer3" in _groups(svg, "node")
    assert main(["show", str(saved), "--format", "dot"]) == 0
    assert capsys.readouterr().out == diagram(resnet50).source


def test_rendering_a_saved_report_never_imports_torch(resnet50: Report, tmp_path: Path) -> None:
    saved = tmp_path / "report.json"
    saved.write_text(resnet50.to_json(), encoding="utf-8")
    script = (
        "import sys\n"
        "from shapetrace.report import Report\n"
        "from shapetrace.views.dot import write_diagram\n"
        f"write_diagram(Report.load({str(saved)!r}), {str(tmp_path / 'r.dot')!r}, 'dot')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    assert (tmp_path / "r.dot").read_text(encoding="utf-8") == diagram(resnet50).source


@needs_dot
def test_report_shows_itself_in_notebooks_as_its_diagram(resnet50: Report) -> None:
    graph = resnet50.diagram(depth=1, theme="dark")
    assert isinstance(graph, graphviz.Digraph)
    assert graph.source == diagram(resnet50, depth=1, theme="dark").source
    svg = resnet50._repr_svg_()
    assert svg is not None and "layer1.0" in set(_texts(ET.fromstring(svg)))
    assert resnet50._repr_markdown_() is None  # Jupyter would prefer it to the SVG


def test_without_dot_only_dot_output_works(
    resnet50: Report,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot anywhere
    with pytest.raises(UsageError, match="apt-get install graphviz") as error:
        write_diagram(resnet50, str(tmp_path / "r.svg"), "svg")
    assert error.value.exit_code == EXIT_USAGE and "\n" not in str(error.value)
    write_diagram(resnet50, str(tmp_path / "r.dot"), "dot")
    assert (tmp_path / "r.dot").read_text(encoding="utf-8") == diagram(resnet50).source
    write_diagram(resnet50, None, "dot")
    assert capsys.readouterr().out == diagram(resnet50).source
    assert resnet50._repr_svg_() is None
    markdown = resnet50._repr_markdown_()
    assert markdown is not None and markdown.startswith("### resnet50")
    # dot vanishing between the check and the run (graphviz.ExecutableNotFound)
    monkeypatch.setattr(dot, "dot_available", lambda: True)
    with pytest.raises(UsageError, match="apt-get install graphviz"):
        write_diagram(resnet50, str(tmp_path / "r.png"), "png")
    assert not (tmp_path / "r.png").exists()


# -- docs ------------------------------------------------------------------------------------


@needs_dot
def test_docs_diagrams_are_what_the_documented_command_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_diagrams", ROOT / "scripts/make_diagrams.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fix = "regenerate with: python scripts/make_diagrams.py"
    for stem, graph in script.diagrams().items():
        stored = script.OUT / f"{stem}.dot"
        assert stored.read_text(encoding="utf-8") == graph.source, f"{stored} is stale; {fix}"
        drawn = ET.parse(script.OUT / f"{stem}.svg").getroot()
        assert _texts(drawn) == _texts(_svg(graph)), f"{stem}.svg is stale; {fix}"
