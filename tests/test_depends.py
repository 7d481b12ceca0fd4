"""Tests of `depends_on_input`: `scales` or `fixed` by the node's shape formula, `bound` for the
fewest nodes whose constraints define the accepted sizes (the others listed as implied), and
`breaks` for the node the report's failure names; modules follow their nodes.

Minimality is checked two ways: the domain solved again without each bound node's constraints
is larger, and a size only that node rejects is found and a real forward at that size stops
at exactly that node."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_formula import PooledLinear
from test_sizing import LeNet, UNet
from torch import fx, nn

import shapetrace
from shapetrace.passes import sizing
from shapetrace.passes.sizing.attribution import nonnegative_sizes
from shapetrace.passes.sizing.domain import SizeAnalysis
from shapetrace.passes.sizing.expr import Evaluator, Unknown
from shapetrace.passes.sizing.solver import Solver
from shapetrace.passes.sizing.tensors import Constraint
from shapetrace.report import Report
from shapetrace.tasks.check import check_sizes


def bound(report: Report) -> set[str]:
    return {n.name for n in report.nodes if n.depends_on_input == "bound"}


def states(report: Report, state: str) -> list[str]:
    return [n.name for n in report.nodes if n.depends_on_input == state]


def attribution(report: Report) -> dict[str, Any]:
    assert report.domain is not None
    return report.domain["attribution"]


@pytest.fixture(scope="module")
def codereview_448() -> Report:
    return shapetrace.analyze("codereview_resnet50", "448")


@pytest.fixture(scope="module")
def codereview_224() -> Report:
    return shapetrace.analyze("codereview_resnet50", "224")


@pytest.fixture(scope="module")
def resnet50() -> Report:
    return shapetrace.analyze("resnet50", "224")


@pytest.fixture(scope="module")
def vit() -> Report:
    return shapetrace.analyze("vit_b_16", "224")


def test_codereview_at_224_is_bound_by_fc_layer_alone_and_its_pool_is_implied(
    codereview_224: Report,
) -> None:
    report = codereview_224
    assert bound(report) == {"fc_layer"} and not states(report, "breaks")
    assert attribution(report) == {"bound": ["fc_layer"], "implied": {"avgpool": ["fc_layer"]}}
    assert report.node("avgpool").depends_on_input == "scales"  # ceil(H/32) - 6
    assert report.node("avgpool").shape_formula == ["N", "2048", "ceil(H/32) - 6", "ceil(W/32) - 6"]
    assert report.node("view").depends_on_input == "scales"
    for stage in ("layer_1", "layer_3", "layer_4", "layer_5", "avgpool"):
        assert report.module(stage).depends_on_input == "scales"
    assert report.module("fc_layer").depends_on_input == "bound"
    # The edges found at the pool say who implies them.
    assert report.domain is not None
    edges = {(b["axis"], b["kind"]): b for b in report.domain["bounds"]}
    assert edges[("H", "min")]["node"] == "avgpool"
    assert edges[("H", "min")]["implied_by"] == ["fc_layer"]
    assert "implied_by" not in edges[("H", "max")]


def test_codereview_at_448_breaks_at_fc_layer_and_its_stages_scale(codereview_448: Report) -> None:
    report = codereview_448
    assert states(report, "breaks") == ["fc_layer"] and not bound(report)
    assert attribution(report)["bound"] == ["fc_layer"]
    assert attribution(report)["implied"] == {"avgpool": ["fc_layer"]}
    # (1, 2048, 14, 14) at 448: it follows the input, as does the view of 131072 features.
    assert report.node("layer_5.2.add").shape == [1, 2048, 14, 14]
    assert report.module("layer_4").depends_on_input == "scales"
    assert report.module("layer_5").depends_on_input == "scales"
    assert report.node("view").shape == [1, 131072]
    assert report.node("view").depends_on_input == "scales"
    assert report.module("fc_layer").depends_on_input == "breaks"
    assert report.node("x").depends_on_input == "scales"


def test_codereview_at_160_breaks_at_the_pool_and_fc_layer_stays_bound() -> None:
    report = shapetrace.analyze("codereview_resnet50", "160")
    assert states(report, "breaks") == ["avgpool"] and bound(report) == {"fc_layer"}


def test_torchvision_resnet50_has_no_bound_node_and_its_stages_scale(resnet50: Report) -> None:
    assert not bound(resnet50) and not states(resnet50, "breaks")
    assert attribution(resnet50) == {"bound": [], "implied": {}}
    assert states(resnet50, "fixed") == ["avgpool", "flatten", "fc"]
    for stage in ("conv1", "layer1", "layer2", "layer3", "layer4"):
        assert resnet50.module(stage).depends_on_input == "scales"
    assert resnet50.module("fc").depends_on_input == "fixed"


def test_vit_is_bound_by_its_size_asserts_and_its_input_and_patches_scale(vit: Report) -> None:
    assert bound(vit) == {"_assert", "_assert_1"}
    # The position table pins 14x14 patches too, but the asserts already pin 224 (the patch
    # conv's at-least-16 as well).
    assert attribution(vit)["implied"] == {
        "conv_proj": ["_assert", "_assert_1"],
        "encoder.add": ["_assert", "_assert_1"],
    }
    for name in ("x", "conv_proj", "reshape", "permute", "cat"):
        assert vit.node(name).depends_on_input == "scales", name
    assert vit.node("conv_proj").shape_formula == ["N", "768", "floor(H/16)", "floor(W/16)"]
    # After the add the token count is the table's 197 whatever the input: fixed.
    assert vit.node("encoder.add").depends_on_input == "fixed"
    assert vit.node("heads.head").depends_on_input == "fixed"
    assert vit.module("conv_proj").depends_on_input == "scales"
    assert vit.module("encoder").depends_on_input == "fixed"


def test_vit_at_448_breaks_at_the_height_assert() -> None:
    report = shapetrace.analyze("vit_b_16", "448")
    assert states(report, "breaks") == ["_assert"] and bound(report) == {"_assert_1"}


def test_lenet_coupling_its_axes_is_bound_by_the_view_alone() -> None:
    report = shapetrace.analyze(LeNet().eval(), "1x3x32x32")
    assert bound(report) == {"view"}
    assert attribution(report)["implied"] == {"conv2": ["view"], "pool_1": ["view"]}
    assert report.node("pool_1").depends_on_input == "scales"
    # view(-1, 400) folds other sizes into the batch: what follows scales with the input.
    assert report.node("fc1").shape_formula == [
        "floor(N*(floor(H/4) - 3)*(floor(W/4) - 3)/25)",
        "120",
    ]
    assert report.node("fc1").depends_on_input == "scales"
    folded = shapetrace.analyze(LeNet().eval(), "1x3x52x32")
    assert states(folded, "breaks") == ["view"] and not bound(folded)


def test_linear_after_a_fixed_pool_couples_the_axes_and_binds_alone() -> None:
    report = shapetrace.analyze(PooledLinear(4).eval(), "1x1x8x8")
    assert bound(report) == {"fc"}
    assert attribution(report)["implied"] == {"pool": ["fc"]}


def test_unet_period_is_bound_by_the_outermost_concatenation() -> None:
    # cat_3 compares 16*floor(H/16) (the decoder, every pooling undone) with H: multiples of
    # 16 alone; the inner concatenations and the 2x2 pools' at-least-2 follow from it.
    report = shapetrace.analyze(UNet(levels=4, in_channels=1, width=2).eval(), "1x1x64x48")
    assert report.domain is not None and report.domain["H"] == [[16, None, 16]]
    assert bound(report) == {"cat_3"}
    implied = attribution(report)["implied"]
    assert set(implied) == {"pool", "pool_1", "pool_2", "pool_3", "cat", "cat_1", "cat_2"}
    assert all(by == ["cat_3"] for by in implied.values())
    assert set(states(report, "scales")) == {n.name for n in report.nodes} - {"cat_3"}


# -- minimality ------------------------------------------------------------------------------


class Recorded(SizeAnalysis):
    last: SizeAnalysis | None = None

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        Recorded.last = self


def analysed(monkeypatch: pytest.MonkeyPatch, model: Any, spec: str) -> SizeAnalysis:
    monkeypatch.setattr(sizing, "SizeAnalysis", Recorded)
    shapetrace.analyze(model, spec)
    assert Recorded.last is not None
    return Recorded.last


def domain_of(a: SizeAnalysis, constraints: list[Constraint]) -> list[Any]:
    """The sizes along each axis and the diagonal, solved anew with the plain solver."""
    directions = [
        Solver({axis}, {k: v for k, v in a.reference.items() if k != axis}) for axis in a.axes
    ]
    directions.append(
        Solver(set(a.axes), {k: v for k, v in a.reference.items() if k not in a.axes})
    )
    return [s.solve([*nonnegative_sizes(a), *constraints])[0].segments() for s in directions]


def witness(a: SizeAnalysis, node: fx.Node) -> dict[str, int] | None:
    """A square size (or one axis moved) that `node` alone rejects."""
    others = [c for c in a.unique if c.node is not node]
    own = [c for c in a.constraints if c.node is node]
    candidates = [dict.fromkeys(a.axes, n) for n in range(1, 1200)]
    candidates += [a.env_at(axis, n) for axis in a.axes for n in range(1, 1200)]
    for sizes in candidates:
        env = {**a.reference, **sizes}
        ev = Evaluator(env)
        try:
            if all(c.holds(ev) for c in others) and not all(c.holds(ev) for c in own):
                return env
        except Unknown:
            continue
    return None


CASES = [
    ("codereview_resnet50", "224"),
    ("vit_b_16", "224"),
    ("resnet50", "224"),
    ("lenet", "1x3x32x32"),
    ("unet", "1x1x64x48"),
    ("pooled", "1x1x8x8"),
    ("vgg11", "224"),
    ("squeezenet1_0", "224"),
]


def model_for(name: str) -> Any:
    if name == "lenet":
        return LeNet().eval()
    if name == "unet":
        return UNet(levels=4, in_channels=1, width=2).eval()
    if name == "pooled":
        return PooledLinear(4).eval()
    return name


@pytest.mark.parametrize(("name", "spec"), CASES)
def test_every_bound_node_is_needed_and_every_implied_one_is_implied(
    monkeypatch: pytest.MonkeyPatch, name: str, spec: str
) -> None:
    a = analysed(monkeypatch, model_for(name), spec)
    full = domain_of(a, a.unique)
    for node in a.attribution.bound:
        without = domain_of(a, [c for c in a.unique if c.node is not node])
        assert without != full, f"{node.name} is not needed"
    for node, by in a.attribution.implied.items():
        kept = [c for c in a.unique if c.node in by]
        own = [c for c in a.constraints if c.node is node]
        assert domain_of(a, kept) == domain_of(a, kept + own), f"{node.name} is not implied"


@pytest.mark.parametrize(
    ("name", "spec"), [("lenet", "1x3x32x32"), ("unet", "1x1x64x48"), ("pooled", "1x1x8x8")]
)
def test_a_size_only_a_bound_node_rejects_stops_a_real_forward_there(
    monkeypatch: pytest.MonkeyPatch, name: str, spec: str
) -> None:
    a = analysed(monkeypatch, model_for(name), spec)
    channels = int(spec.split("x")[1])
    for node in a.attribution.bound:
        env = witness(a, node)
        assert env is not None, node.name
        model = model_for(name)
        assert isinstance(model, nn.Module)
        size = f"1x{channels}x{env['H']}x{env['W']}"
        [result] = check_sizes(model, [size])
        assert not result.accepted and result.node == node.name, (size, result)
        try:
            with torch.no_grad():
                out = model(torch.zeros(1, channels, env["H"], env["W"]))
        except RuntimeError:
            continue
        assert out.shape[0] != 1, f"{size} runs with its batch kept"  # folded into the batch
