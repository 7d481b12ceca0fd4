"""Tests of shape formulas, aligned sizes, periodic and coupled domains (the input-size pass's
second half), each against an independent method.

Formulas are checked against the shapes the shape pass propagates with torch's meta kernels at
other input sizes (`shapetrace.analyze(model, size)`), and against real CPU forwards; periodic
domains against a per-axis brute-force sweep; coupled domains against a 2-d sweep of real CPU
forwards on tiny models. Sweeps over many sizes of big models are marked slow.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_sizing import (
    Generated,
    LeNet,
    UNet,
    assert_domain_matches,
    heads,
    layers,
    members,
    runs,
)
from torch import nn

import shapetrace
from shapetrace.domain import in_domain
from shapetrace.formula import NAMES, evaluate, holds
from shapetrace.report import Report


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny CPU forwards are fastest on one thread (the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the formula language -------------------------------------------------------------------


def test_evaluate_is_exact_where_float_division_rounds_across_an_integer() -> None:
    h = 2**60 + 1
    assert evaluate("floor(H/3)", H=h) == h // 3
    assert evaluate("ceil(H/3)", H=h) == -(-h // 3)
    # Python's float quotient rounds 2**60 + 1 to 2**60, so plain eval is off by one here.
    assert math.floor(eval("H/3", {}, {"H": h})) != h // 3


def test_plain_eval_with_the_documented_names_agrees_at_ordinary_sizes() -> None:
    formulas = [
        "ceil(H/32)",
        "floor((H + 1)/4) - 2",
        "2048*(ceil(H/32) - 6)*(ceil(W/32) - 6)",
        "min(floor((H - 1)/2) + 1, ceil((H + 1)/2))",
        "floor(N*(floor(H/4) - 3)*(floor(W/4) - 3)/25)",
        "max(H, 3*W) - 7",
    ]
    for f in formulas:
        for h in (1, 7, 224, 1000):
            sizes = {"N": 2, "H": h, "W": h + 5}
            expected = eval(f, {"__builtins__": {}, **NAMES}, sizes)
            assert evaluate(f, **sizes) == expected


def test_evaluate_refuses_code_outside_the_formula_language() -> None:
    for text in ("__import__('os').system('true')", "H.bit_length()", "H ** 2", "[H]", "X + 1"):
        with pytest.raises(ValueError):
            evaluate(text, H=4)


def test_bound_conditions_hold_as_comparisons_joined_by_and_or() -> None:
    assert holds("(16*H) % 400 == 0 and floor(H/4) >= 1", H=25)
    assert not holds("(16*H) % 400 == 0 and floor(H/4) >= 1", H=24)
    assert holds("H == 1 or W == 1", H=3, W=1)
    with pytest.raises(ValueError):
        holds("H + 1", H=3)


# -- formulas on real models ----------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50() -> Report:
    return shapetrace.analyze("resnet50")


@pytest.fixture(scope="module")
def codereview() -> Report:
    return shapetrace.analyze("codereview_resnet50")


def test_layer4_formula_collapses_five_halvings_into_one_ceil(
    resnet50: Report, codereview: Report
) -> None:
    assert resnet50.node("layer4.2.relu_2").shape_formula == [
        "N",
        "2048",
        "ceil(H/32)",
        "ceil(W/32)",
    ]
    assert resnet50.node("conv1").shape_formula == ["N", "64", "ceil(H/2)", "ceil(W/2)"]
    assert codereview.node("layer_5.2.add").shape_formula == [
        "N",
        "2048",
        "ceil(H/32)",
        "ceil(W/32)",
    ]
    # The fixed 7x7 pool trims 6, and the flatten multiplies the two axes.
    assert codereview.node("avgpool").shape_formula == [
        "N",
        "2048",
        "ceil(H/32) - 6",
        "ceil(W/32) - 6",
    ]
    assert codereview.node("view").shape_formula == [
        "N",
        "2048*(ceil(H/32) - 6)*(ceil(W/32) - 6)",
    ]


def test_resnets_are_aligned_at_multiples_of_32_and_the_verdict_says_so(
    resnet50: Report, codereview: Report
) -> None:
    for report in (resnet50, codereview):
        assert report.aligned_multiple == {"H": 32, "W": 32}
        assert report.verdict is not None
        assert "Feature maps divide evenly when H and W are multiples of 32" in report.verdict
    # At a multiple of 32 every map is the input over its stride; one pixel more, not all.
    for size, even in ((256, True), (257, False)):
        report = shapetrace.analyze("resnet50", f"{size}x{size}")
        strides = [
            size / n.shape[2]
            for n in report.nodes
            if isinstance(n.shape, list) and len(n.shape) == 4 and n.shape[2] > 1
        ]
        assert all(s.is_integer() for s in strides) == even


def _accepted_sizes(report: Report, count: int, rng: random.Random) -> list[dict[str, int]]:
    """Random sizes each axis's domain accepts (axes not coupled), the reference included."""
    assert report.domain is not None
    out = [dict(report.domain["at"])]
    for _ in range(count):
        sizes = {}
        for axis in report.domain["at"]:
            lo, hi, *step = rng.choice(report.domain[axis])
            stride = step[0] if step else 1
            top = hi if hi is not None else lo + stride * rng.choice([3, 20, 60])
            sizes[axis] = rng.randrange(lo, top + 1, stride)
        out.append(sizes)
    return out


def assert_formulas_match(model: Any, report: Report, sizes: dict[str, int]) -> int:
    """Evaluate every formula at `sizes` against the shapes propagated there; returns how many
    nodes were compared."""
    lead = report.input[: len(report.input) - len(sizes)]
    spec = "x".join(str(d) for d in [*lead, *sizes.values()])
    there = shapetrace.analyze(model, spec)
    assert there.failure is None, (spec, there.failure)
    env = {"N": there.input[0], **sizes}
    compared = 0
    for node in report.nodes:
        shape = there.node(node.name).shape
        if node.shape_formula is None or not isinstance(shape, list):
            continue
        got = [evaluate(f, **env) for f in node.shape_formula]
        assert got == shape, (node.name, node.shape_formula, spec)
        compared += 1
    return compared


@pytest.mark.parametrize("name", ["resnet50", "codereview_resnet50", "vgg16", "mobilenet_v2"])
def test_every_shape_formula_equals_the_propagated_shape_at_sampled_accepted_sizes(
    name: str,
) -> None:
    report = shapetrace.analyze(name)
    # Every node with a spatial map has a formula: these models have a size rule for each op.
    maps = [n for n in report.nodes if isinstance(n.shape, list) and len(n.shape) == 4]
    assert maps and all(n.shape_formula is not None for n in maps)
    rng = random.Random(name)
    for sizes in _accepted_sizes(report, 2, rng):
        assert assert_formulas_match(name, report, sizes) >= len(maps)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "resnet50",
        "codereview_resnet50",
        "vgg16",
        "mobilenet_v2",
        "googlenet",
        "inception_v3",
        "densenet121",
        "efficientnet_b0",
        "convnext_tiny",
        "lraspp_mobilenet_v3_large",
        "squeezenet1_0",
    ],
)
def test_shape_formulas_hold_at_twenty_random_accepted_sizes(name: str) -> None:
    report = shapetrace.analyze(name)
    for sizes in _accepted_sizes(report, 20, random.Random(name)):
        assert_formulas_match(name, report, sizes)


# -- a periodic domain ----------------------------------------------------------------------


def test_unet_accepts_multiples_of_16_and_its_formulas_follow_the_pooling() -> None:
    model = UNet(levels=4, in_channels=1, width=2).eval()
    report = shapetrace.analyze(model, "1x1x64x48")
    assert report.domain is not None
    assert report.domain["H"] == [[16, None, 16]] and report.domain["W"] == [[16, None, 16]]
    assert_domain_matches(model.to("meta"), report, range(1, 101), (1, 2, None, None))
    steps = [b for b in report.domain["bounds"] if b["kind"] == "periodic"]
    assert {b["axis"] for b in steps} == {"H", "W"} and all(b["value"] == 16 for b in steps)
    assert report.aligned_multiple == {"H": 16, "W": 16}
    # On multiples of 16, 2*floor(H/16) is floor(H/8), and the decoder's output is H.
    assert report.node("downs.3").shape_formula == ["N", "2", "floor(H/16)", "floor(W/16)"]
    assert report.node("ups.0").shape_formula == ["N", "2", "floor(H/8)", "floor(W/8)"]
    assert report.node("ups.3").shape_formula == ["N", "2", "H", "W"]
    real = UNet(levels=4, in_channels=1, width=2).eval()
    for h, w in ((16, 32), (48, 16), (112, 80)):
        assert assert_formulas_match(model, report, {"H": h, "W": w}) == len(report.nodes)
        with torch.no_grad():
            out = real(torch.zeros(1, 1, h, w))
        formula = report.node("ups.3").shape_formula
        assert formula is not None
        assert list(out.shape) == [evaluate(f, N=1, H=h, W=w) for f in formula]


# -- coupled axes ---------------------------------------------------------------------------


class PooledLinear(nn.Module):
    """A Linear after a fixed pool: it needs h * w == 4 pooled cells, so 1x4, 2x2 and 4x1."""

    def __init__(self, pool: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.pool = nn.AvgPool2d(pool)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


def accepted_pairs(
    model: nn.Module, channels: int, top: int, expected: tuple[int, ...]
) -> set[tuple[int, int]]:
    """The (H, W) at which a real CPU forward runs and gives `expected`."""
    return {
        (h, w)
        for h in range(1, top + 1)
        for w in range(1, top + 1)
        if runs(model, (1, channels, h, w), expected, device="cpu")
    }


def pairs_from(report: Report, top: int) -> set[tuple[int, int]]:
    """The (H, W) in 1..top that the reported domain accepts (coupled bounds included)."""
    assert report.domain is not None
    return {
        (h, w)
        for h in range(1, top + 1)
        for w in range(1, top + 1)
        if in_domain(report.domain, {"H": h, "W": w})
    }


def coupled_bound(report: Report, node: str) -> dict[str, Any]:
    assert report.domain is not None
    (bound,) = [b for b in report.domain["bounds"] if b["kind"] == "coupled" and b["node"] == node]
    return bound


def test_linear_after_a_fixed_pool_admits_exactly_the_pairs_a_2d_sweep_finds() -> None:
    model = PooledLinear(pool=4).eval()
    report = shapetrace.analyze(model, "1x1x8x8")
    bound = coupled_bound(report, "fc")
    assert bound["formula"] == "floor(H/4)*floor(W/4) == 4"
    assert [c["map"] for c in bound["combinations"]] == [[1, 4], [2, 2], [4, 1]]
    assert [(c["H"], c["W"]) for c in bound["combinations"]] == [
        ([[4, 7]], [[16, 19]]),
        ([[8, 11]], [[8, 11]]),
        ([[16, 19]], [[4, 7]]),
    ]
    assert bound["sets"] == {"H": [[4, 11], [16, 19]], "W": [[4, 11], [16, 19]]}
    brute = accepted_pairs(model, 1, 24, (1, 2))
    assert pairs_from(report, 24) == brute
    # The formula alone decides, among sizes the pool accepts on each axis.
    assert brute == {
        (h, w) for h in range(4, 25) for w in range(4, 25) if holds(bound["formula"], N=1, H=h, W=w)
    }
    assert report.verdict is not None
    assert "fc couples H and W: maps 1x4, 2x2, 4x1 fit." in report.verdict


@pytest.mark.slow
def test_linear_after_an_8x8_pool_matches_a_128x128_sweep() -> None:
    model = PooledLinear(pool=8).eval()
    report = shapetrace.analyze(model, "1x1x16x16")
    assert [c["map"] for c in coupled_bound(report, "fc")["combinations"]] == [
        [1, 4],
        [2, 2],
        [4, 1],
    ]
    assert pairs_from(report, 128) == accepted_pairs(model, 1, 128, (1, 2))


def test_hard_coded_view_admits_three_combinations_and_names_them() -> None:
    model = LeNet().eval()
    report = shapetrace.analyze(model, "1x3x32x32")
    bound = coupled_bound(report, "view")
    assert [(c["H"], c["W"]) for c in bound["combinations"]] == [
        ([[16, 19]], [[112, 115]]),
        ([[32, 35]], [[32, 35]]),
        ([[112, 115]], [[16, 19]]),
    ]
    assert report.node("view").shape_formula == [
        "floor(N*(floor(H/4) - 3)*(floor(W/4) - 3)/25)",
        "400",
    ]
    # Real forwards at each combination's corners and just outside them.
    for h, w in ((16, 112), (19, 115), (35, 32), (112, 16), (115, 19)):
        assert runs(model, (1, 3, h, w), (1, 10), device="cpu")
        assert in_domain(report.domain or {}, {"H": h, "W": w})
    for h, w in ((15, 112), (20, 115), (36, 32), (116, 19), (16, 116), (64, 64)):
        assert not runs(model, (1, 3, h, w), (1, 10), device="cpu")
        assert not in_domain(report.domain or {}, {"H": h, "W": w})


@pytest.mark.slow
def test_hard_coded_view_matches_a_2d_sweep_to_120() -> None:
    model = LeNet().eval()
    report = shapetrace.analyze(model, "1x3x32x32")
    assert pairs_from(report, 120) == accepted_pairs(model, 3, 120, (1, 10))


# -- generated nets with branches and concatenations ----------------------------------------


def _probe_features(specs: list[tuple[Any, ...]], h: int = 24, w: int = 32) -> int:
    probe = Generated(specs, "none", 1).eval()
    try:
        with torch.no_grad():
            return int(probe(torch.zeros(1, 3, h, w)).flatten(1).shape[1])
    except RuntimeError:
        return 64


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=layers, head=heads, seed=st.integers(0, 2**16))
def test_generated_nets_formulas_equal_shapes_at_accepted_sizes(
    specs: list[tuple[Any, ...]], head: str, seed: int
) -> None:
    model = Generated(specs, head, _probe_features(specs)).eval()
    report = shapetrace.analyze(model, "1x3x24x32")
    assert report.domain is not None
    accepted = [
        (h, w)
        for h in members(report.domain["H"], range(1, 49))
        for w in members(report.domain["W"], range(1, 49))
        if in_domain(report.domain, {"H": h, "W": w})
    ]
    assume(accepted)
    for h, w in random.Random(seed).sample(accepted, min(2, len(accepted))):
        assert_formulas_match(model, report, {"H": h, "W": w})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=layers)
def test_generated_nets_with_a_flattening_head_couple_axes_as_a_2d_sweep_does(
    specs: list[tuple[Any, ...]],
) -> None:
    model = Generated(specs, "flatten", _probe_features(specs, 12, 16)).eval()
    report = shapetrace.analyze(model, "1x3x12x16")
    assert report.domain is not None
    coupled = [b for b in report.domain["bounds"] if b["kind"] == "coupled"]
    assume(all("combinations" in b for b in coupled))
    assert pairs_from(report, 24) == accepted_pairs(model, 3, 24, (1, 3))


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=layers)
def test_generated_nets_with_a_flattening_head_match_a_48x48_sweep(
    specs: list[tuple[Any, ...]],
) -> None:
    model = Generated(specs, "flatten", _probe_features(specs)).eval()
    report = shapetrace.analyze(model, "1x3x24x32")
    assert report.domain is not None
    coupled = [b for b in report.domain["bounds"] if b["kind"] == "coupled"]
    assume(all("combinations" in b for b in coupled))
    assert pairs_from(report, 48) == accepted_pairs(model, 3, 48, (1, 3))
