"""Tests of the input-size pass: the accepted domain, `depends_on_input`, the verdict, `check`.

Every domain is checked against an independent brute force: the model itself, run by torch on
meta tensors (or on CPU where only real values reveal a break) at each size of one axis, with
the other axes at the reference size the domain reports. A size is accepted when the forward
runs and the output keeps its batch and non-spatial dims. Full sweeps of the big models are
marked slow; the default run sweeps small models and checks the big ones at their edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from torch import nn

import shapetrace
from shapetrace.passes.sizing import Evaluator, IntSet, Poly, Sym
from shapetrace.report import Report
from shapetrace.tasks.check import check_sizes, exit_code
from shapetrace.views.check import line
from shapetrace.zoo import ZOO

# -- the brute force ------------------------------------------------------------------------


def on_meta(name: str) -> nn.Module:
    """A zoo or torchvision model with its weights on meta, in eval mode."""
    with torch.device("meta"):
        model = ZOO[name]() if name in ZOO else torchvision.models.get_model(name, weights=None)
    return model.eval()


def runs(
    model: nn.Module, shape: Sequence[int], expected: Sequence[int | None], device: str = "meta"
) -> bool:
    """Does the forward run at `shape` and give `expected` (None: any size) as output shape?"""
    try:
        with torch.no_grad():
            out = model(torch.zeros(tuple(shape), device=device))
    except Exception:
        return False
    got = tuple(out.shape)
    return len(got) == len(expected) and all(
        e is None or g == e for g, e in zip(got, expected, strict=True)
    )


def sweep(
    model: nn.Module,
    report: Report,
    axis: str,
    sizes: Iterable[int],
    expected: Sequence[int | None],
    device: str = "meta",
) -> set[int]:
    """The sizes of `axis` the model accepts, the other axes at the domain's reference."""
    assert report.domain is not None
    at = report.domain["at"]
    lead = report.input[: len(report.input) - len(at)]
    accepted = set()
    for n in sizes:
        shape = [*lead, *(n if a == axis else at[a] for a in at)]
        if runs(model, shape, expected, device):
            accepted.add(n)
    return accepted


def members(segments: list[list[int | None]], sizes: Iterable[int]) -> set[int]:
    """The sizes among `sizes` that a domain's `[lo, hi]` / `[lo, hi, step]` list contains."""
    out = set()
    for n in sizes:
        for seg in segments:
            lo, hi = seg[0], seg[1]
            step = seg[2] if len(seg) > 2 else 1
            assert lo is not None and step is not None
            if n >= lo and (hi is None or n <= hi) and (n - lo) % step == 0:
                out.add(n)
    return out


def assert_domain_matches(
    model: nn.Module,
    report: Report,
    sizes: Iterable[int],
    expected: Sequence[int | None],
    device: str = "meta",
) -> None:
    assert report.domain is not None
    sizes = list(sizes)
    for axis in report.domain["at"]:
        brute = sweep(model, report, axis, sizes, expected, device)
        computed = members(report.domain[axis], sizes)
        assert computed == brute, (
            f"{axis}: computed only {sorted(computed - brute)[:10]}, "
            f"brute force only {sorted(brute - computed)[:10]}"
        )


# -- small models -----------------------------------------------------------------------------


class LeNet(nn.Module):
    """LeNet as tutorials write it: a hard-coded view(-1, 16 * 5 * 5) before the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        return self.fc2(torch.relu(self.fc1(x)))


class Strip(nn.Module):
    """Different arithmetic per axis: kernel (3, 5), stride (1, 2), a (2, 3) pool, a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=(3, 5), stride=(1, 2), padding=(1, 0))
        self.pool = nn.AvgPool2d((2, 3))
        self.fc = nn.Linear(8 * 4 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


class Positions(nn.Module):
    """A 1-d model adding a learned position table looked up by arange: meta tensors cannot
    see an index past the table, a real forward can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3)
        self.pos = nn.Embedding(16, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).transpose(1, 2)
        positions = torch.arange(x.size(1))
        return self.head((x + self.pos(positions)).mean(1))


def test_hard_coded_view_domain_equals_brute_force_and_blames_the_view() -> None:
    model = LeNet().eval()
    report = shapetrace.analyze(model, "1x3x32x32")
    assert report.domain is not None
    assert report.domain["H"] == [[32, 35]] and report.domain["W"] == [[32, 35]]
    assert_domain_matches(model.to("meta"), report, range(1, 301), (1, 10))
    assert report.node("view").depends_on_input == "bound"
    assert report.node("fc1").depends_on_input == "scales"  # its batch is the view's
    assert report.verdict is not None
    assert "torch.flatten(x, 1)" in report.verdict
    assert "AdaptiveAvgPool2d((5, 5))" in report.verdict


def test_view_folding_the_map_into_the_batch_is_a_break_at_the_view() -> None:
    # At 52x32 the map is 10x5: view(-1, 400) runs but yields a batch of 2.
    model = LeNet().eval()
    assert runs(model, (1, 3, 52, 32), (2, 10), device="cpu")
    report = shapetrace.analyze(model, "1x3x52x32")
    assert report.failure is not None
    assert report.failure.node == "view"
    assert "folds spatial elements into the batch" in report.failure.message
    [result] = check_sizes(model, ["1x3x52x32"])
    assert not result.accepted and result.node == "view"


def test_axes_with_different_arithmetic_get_different_exact_domains() -> None:
    model = Strip().eval()
    report = shapetrace.analyze(model, "1x3x8x40")
    assert report.domain is not None
    assert report.domain["H"] == [[8, 9]]
    assert report.domain["W"] == [[39, 44]]
    assert_domain_matches(model.to("meta"), report, range(1, 301), (1, 10))
    # fc needs h * w == 24: 4x6 but also 3x8 or 2x12, so the axes are coupled.
    assert any(b["kind"] == "coupled" and b["node"] == "fc" for b in report.domain["bounds"])
    assert report.verdict is not None
    assert "replace pool = AvgPool2d((2, 3), (2, 3)) with AdaptiveAvgPool2d((4, 6))" in (
        report.verdict
    )


class UNet(nn.Module):
    """`levels` 2x poolings, then upsampling concatenated with the skips: only multiples of
    2**levels are accepted."""

    def __init__(self, levels: int = 3, in_channels: int = 3, width: int = 4) -> None:
        super().__init__()
        self.inc = nn.Conv2d(in_channels, width, 3, padding=1)
        self.downs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(levels)])
        self.ups = nn.ModuleList([nn.Conv2d(2 * width, width, 3, padding=1) for _ in range(levels)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inc(x)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(self.pool(x))
        for up in self.ups:
            x = up(torch.cat([self.up(x), skips.pop()], 1))
        return x


def test_skip_concatenations_give_an_exact_periodic_domain() -> None:
    model = UNet().eval()
    report = shapetrace.analyze(model, "1x3x64x48")
    assert report.domain is not None
    assert report.domain["H"] == [[8, None, 8]] and report.domain["W"] == [[8, None, 8]]
    assert_domain_matches(model.to("meta"), report, range(1, 101), (1, 4, None, None))
    assert {b["kind"] for b in report.domain["bounds"]} == {"periodic"}
    # The outermost concatenation (8*floor(H/8) vs H) alone sets the period; the pools'
    # at-least-2x2 and the inner concatenations follow from it.
    bound = [n.name for n in report.nodes if n.depends_on_input == "bound"]
    assert bound == ["cat_2"]
    assert set(report.domain["attribution"]["implied"]) == {
        "pool",
        "pool_1",
        "pool_2",
        "cat",
        "cat_1",
    }


def test_positions_beyond_an_embedding_table_are_rejected_as_a_real_forward_does() -> None:
    model = Positions().eval()
    report = shapetrace.analyze(model, "1x4x10")
    assert report.domain is not None
    assert report.domain["L"] == [[3, 18]]
    assert_domain_matches(model, report, range(1, 31), (1, 2), device="cpu")
    assert report.node("pos").depends_on_input == "bound"
    past = shapetrace.analyze(model, "1x4x20")
    assert past.failure is not None and past.failure.node == "pos"


# -- generated conv nets ----------------------------------------------------------------------

Kernel = tuple[int, int]
pairs = st.tuples(st.integers(1, 4), st.integers(1, 4))
convs = st.tuples(
    st.just("conv"),
    pairs,
    st.sampled_from([(1, 1), (1, 2), (2, 1), (2, 2), (3, 2)]),
    st.integers(0, 2),
    st.sampled_from([1, 2]),
)
pools = st.tuples(
    st.sampled_from(["max", "avg"]),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 2),
    st.booleans(),
)
ups = st.tuples(st.just("up"), st.sampled_from([2.0, 1.5]))
merges = st.tuples(st.sampled_from(["add", "cat"]), st.integers(1, 4), st.integers(1, 2))
# Tensor plumbing: crops by slicing, the last columns, squeeze/unsqueeze of the height, a chunk
# of the rows added back together (a 1-row half broadcasts), pixel unshuffle then shuffle, a
# transposed conv back to its input's size, and a strided branch upsampled onto its input.
slices = st.tuples(st.just("slice"), st.integers(0, 3), st.integers(0, 3))
tails = st.tuples(st.just("tail"), st.integers(1, 6))
plumbing = st.one_of(
    slices,
    tails,
    st.tuples(st.sampled_from(["squeeze", "chunk", "shuffle", "upto", "bcast"])),
)
layers = st.lists(st.one_of(convs, pools, ups, merges, plumbing), min_size=1, max_size=5)
heads = st.sampled_from(["none", "adaptive", "flatten"])


class Generated(nn.Module):
    """A small conv net from a list of layer specs: convs, pools (ceil mode too), upsampling,
    two-branch merges whose branches may disagree in size, and tensor plumbing; then a head."""

    def __init__(self, specs: list[tuple[Any, ...]], head: str, features: int) -> None:
        super().__init__()
        self.specs, self.head_kind = specs, head
        self.layers = nn.ModuleList()
        channels = 3
        for spec in specs:
            kind = spec[0]
            if kind == "conv":
                _, k, s, p, d = spec
                self.layers.append(nn.Conv2d(channels, 4, k, s, p, d))
                channels = 4
            elif kind in ("max", "avg"):
                _, k, s, p, ceil = spec
                pool = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
                self.layers.append(pool(k, s, min(p, k // 2), ceil_mode=ceil))
            elif kind == "up":
                self.layers.append(nn.Upsample(scale_factor=spec[1]))
            elif kind in ("add", "cat"):
                _, k, s = spec
                branch = nn.Conv2d(channels, 4, k, s, k // 2)
                shortcut = nn.Conv2d(channels, 4, 1, s)
                self.layers.append(nn.ModuleList([branch, shortcut]))
                channels = 8 if kind == "cat" else 4
            elif kind == "upto":
                down = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
                up = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1)
                self.layers.append(nn.ModuleList([down, up]))
            elif kind == "bcast":
                down = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
                self.layers.append(nn.ModuleList([down, nn.Upsample(scale_factor=2)]))
            else:
                self.layers.append(nn.Identity())
        self.channels = channels
        self.pool = nn.AdaptiveAvgPool2d(1) if head == "adaptive" else None
        self.fc = (
            nn.Linear(channels if head == "adaptive" else features, 3) if head != "none" else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for spec, layer in zip(self.specs, self.layers, strict=True):
            x = _apply(spec, layer, x)
        if self.pool is not None:
            x = self.pool(x)
        if self.fc is not None:
            x = self.fc(torch.flatten(x, 1))
        return x


def _apply(spec: tuple[Any, ...], layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    kind = spec[0]
    if kind == "slice":
        _, a, b = spec
        stop = -b if b else None
        return x[:, :, a:stop, a:stop]
    if kind == "tail":
        return x[..., -spec[1] :]
    if kind == "squeeze":
        return x.squeeze(2).unsqueeze(2)
    if kind == "chunk":
        top, bottom = x.chunk(2, dim=2)
        return top + bottom
    if kind == "shuffle":
        return F.pixel_shuffle(F.pixel_unshuffle(x, 2), 2)
    if isinstance(layer, nn.ModuleList):
        a, b = layer[0], layer[1]
        if kind == "upto":
            return b(a(x), output_size=x.shape)
        if kind == "bcast":
            return b(a(x)) + x
        return a(x) + b(x) if kind == "add" else torch.cat([a(x), b(x)], 1)
    return layer(x)


def _free_output(model: nn.Module, size: tuple[int, int]) -> tuple[int | None, ...] | None:
    """The output's shape at `size`, its map sizes free (a squeezed height kept at the
    analysed size keeps its rank), or None if the model breaks there."""
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *size))
    except RuntimeError:
        return None
    return (*out.shape[:-2], None, None)


def _check_generated(specs: list[tuple[Any, ...]], head: str) -> None:
    # Where a squeeze drops another set of dims than at the analysed size, the graph runs at
    # another rank; the domain counts that as rejected, which holds unless the later ops take
    # any rank (a flatten head does, and a conv fed the wrong rank at the analysed size may
    # take the other): a squeeze ends a headless net.
    assume(("squeeze",) not in specs[:-1] and (head == "none" or ("squeeze",) not in specs))
    probe = Generated(specs, "none", 1).eval()
    free = _free_output(probe, (24, 32))
    features = 64  # when the default size breaks: the domain is found all the same
    if free is not None:
        with torch.no_grad():
            features = probe(torch.zeros(1, 3, 24, 32)).flatten(1).shape[1]
    model = Generated(specs, head, features).eval()
    report = shapetrace.analyze(model, "1x3x24x32")
    assert report.domain is not None and not report.domain.get("open")
    at = report.domain["at"]
    free = free or _free_output(probe, (at["H"], at["W"])) or (1, probe.channels, None, None)
    expected = (1, 3) if head != "none" else free
    assert_domain_matches(model.to("meta"), report, range(1, 65), expected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=layers, head=heads)
def test_generated_conv_nets_domain_equals_brute_force(
    specs: list[tuple[Any, ...]], head: str
) -> None:
    _check_generated(specs, head)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(st.one_of(convs, pools, plumbing), min_size=1, max_size=4), head=heads)
@example(specs=[("slice", 0, 1), ("max", 2, 1, 1, False)], head="none")  # pools refuse empty maps
@example(specs=[("conv", (1, 1), (1, 1), 0, 1), ("slice", 0, 1), ("squeeze",)], head="none")
@example(specs=[("conv", (1, 1), (1, 1), 0, 1), ("slice", 0, 1), ("chunk",)], head="none")
@example(  # chunk after the analysed size broke: its pieces are counted, not observed
    specs=[
        ("conv", (1, 1), (1, 1), 0, 1),
        ("conv", (1, 2), (1, 1), 0, 1),
        ("shuffle",),
        ("chunk",),
    ],
    head="none",
)
@example(
    specs=[
        ("conv", (1, 1), (1, 1), 0, 1),
        ("conv", (1, 2), (1, 1), 0, 1),
        ("shuffle",),
        ("squeeze",),
    ],
    head="none",
)
def test_generated_nets_with_tensor_plumbing_domain_equals_brute_force(
    specs: list[tuple[Any, ...]], head: str
) -> None:
    _check_generated(specs, head)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=layers, head=heads)
def test_generated_nets_explored_at_length(specs: list[tuple[Any, ...]], head: str) -> None:
    _check_generated(specs, head)


# -- the seeds' models ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def codereview() -> Report:
    return shapetrace.analyze("codereview_resnet50")


@pytest.fixture(scope="module")
def resnet50() -> Report:
    return shapetrace.analyze("resnet50")


def test_codereview_accepts_exactly_the_sizes_where_layer_5_is_7x7(codereview: Report) -> None:
    assert codereview.domain is not None
    assert codereview.domain["H"] == [[193, 224]]
    assert codereview.domain["W"] == [[193, 224]]
    assert codereview.domain["at"] == {"H": 224, "W": 224}
    # layer_5 is ceil(n / 32): 7 exactly for n in 193..224; brute force at the edges.
    model = on_meta("codereview_resnet50")
    edges = [1, 7, 191, 192, 193, 194, 223, 224, 225, 226, 448]
    for axis in ("H", "W"):
        assert sweep(model, codereview, axis, edges, (1, 2)) == {193, 194, 223, 224}


def test_codereview_fc_is_bound_its_pool_implied_and_the_verdict_names_the_fix(
    codereview: Report,
) -> None:
    assert codereview.node("fc_layer").depends_on_input == "bound"
    assert codereview.node("avgpool").depends_on_input == "scales"
    assert codereview.domain["attribution"]["implied"] == {"avgpool": ["fc_layer"]}
    assert codereview.module("fc_layer").depends_on_input == "bound"
    # Every stage's shape follows the input, 7x7 over the whole domain or not.
    assert codereview.module("layer_3").depends_on_input == "scales"
    assert codereview.module("layer_4").depends_on_input == "scales"
    assert codereview.verdict == (
        "fc_layer expects 2048 features, which arrive only when layer_5 is 7x7: accepts H, W "
        "in [193, 224]. Fix: replace avgpool = AvgPool2d(7, 1) with AdaptiveAvgPool2d((1, 1)). "
        "Feature maps divide evenly when H and W are multiples of 32; of the accepted sizes, "
        "only 224 is."
    )
    bounds = {(b["axis"], b["kind"]): b["node"] for b in codereview.domain["bounds"]}
    assert bounds[("H", "min")] == "avgpool" and bounds[("H", "max")] == "fc_layer"


def test_codereview_breaking_at_448_still_gets_its_domain_and_fix() -> None:
    report = shapetrace.analyze("codereview_resnet50", "448")
    assert report.failure is not None and report.failure.node == "fc_layer"
    assert report.domain is not None
    assert report.domain["H"] == [[193, 224]] and report.domain["at"] == {"H": 224, "W": 224}
    assert report.verdict is not None
    assert report.verdict.startswith(
        "Breaks at 448x448: fc_layer: Linear(2048 -> 2) received 131072 features."
    )
    assert "AdaptiveAvgPool2d((1, 1))" in report.verdict
    assert report.node("fc_layer").depends_on_input == "breaks"


def test_resnet50_has_no_bound_node_and_accepts_every_size_from_1(resnet50: Report) -> None:
    assert resnet50.domain is not None
    assert resnet50.domain["H"] == [[1, None]] and resnet50.domain["W"] == [[1, None]]
    assert not [n.name for n in resnet50.nodes if n.depends_on_input == "bound"]
    assert resnet50.node("fc").depends_on_input == "fixed"
    assert resnet50.node("avgpool").depends_on_input == "fixed"
    assert resnet50.node("layer4.2.relu_2").depends_on_input == "scales"
    assert resnet50.module("layer4").depends_on_input == "scales"
    assert resnet50.verdict == (
        "Fully convolutional up to avgpool; AdaptiveAvgPool2d((1, 1)) gives fc 2048 features "
        "at any size: accepts every H, W >= 1. Feature maps divide evenly when H and W are "
        "multiples of 32."
    )
    model = on_meta("resnet50")
    for axis in ("H", "W"):
        sizes = {1, 2, 3, 31, 33, 1000}
        assert sweep(model, resnet50, axis, sizes, (1, 1000)) == sizes
    assert runs(model, (1, 3, 1, 1), (1, 1000))


def test_vit_accepts_only_224_because_of_its_asserts_and_position_table() -> None:
    report = shapetrace.analyze("vit_b_16")
    assert report.domain is not None
    assert report.domain["H"] == [[224, 224]] and report.domain["W"] == [[224, 224]]
    for name in ("_assert", "_assert_1"):
        assert report.node(name).depends_on_input == "bound"
    # The position table pins the size too, but the asserts already do.
    assert report.domain["attribution"]["implied"]["encoder.add"] == ["_assert", "_assert_1"]
    assert report.verdict is not None
    assert "interpolate encoder.pos_embedding" in report.verdict
    assert "H == 224 and W == 224" in report.verdict


def test_training_mode_batch_norm_needs_more_than_one_value_per_channel() -> None:
    # body.3 (layer4) is 1x1 when W <= 32 with H = 32 and a batch of 1: BatchNorm then raises.
    report = shapetrace.analyze("stembodyhead_resnet18", "1x3x32x40", train=True)
    assert report.domain is not None
    assert report.domain["H"] == [[1, None]] and report.domain["W"] == [[33, None]]
    model = on_meta("stembodyhead_resnet18").train()
    for axis in ("H", "W"):
        brute = sweep(model, report, axis, range(1, 41), (1, 1000))
        assert brute == members(report.domain[axis], range(1, 41))
    assert report.verdict is not None
    assert report.verdict.startswith("The smallest size is set by body.3.0.conv1.bn")


def test_check_names_the_breaking_node_per_size() -> None:
    results = check_sizes("codereview_resnet50", ["224", "448"])
    assert [line(r) for r in results] == [
        "224x224: accepted, output (1, 2)",
        "448x448: rejected at fc_layer: Linear(2048 -> 2) received 131072 features",
    ]
    assert exit_code(results) == 1
    assert exit_code(results[:1]) == 0


# -- the arithmetic ---------------------------------------------------------------------------


def _n() -> Poly:
    return Poly.atom(Sym("n"))


@given(
    steps=st.lists(
        st.tuples(st.integers(1, 7), st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=4
    ),
    n=st.integers(-50, 500),
)
def test_nested_floor_divisions_evaluate_as_plain_integer_arithmetic(
    steps: list[tuple[int, int, int]], n: int
) -> None:
    expr, value = _n(), n
    for k, s, p in steps:
        expr = (expr + 2 * p - k).floordiv(s) + 1
        value = (value + 2 * p - k) // s + 1
    assert Evaluator({"n": n}).poly(expr) == value


def test_equivalent_size_formulas_are_recognised_as_equal() -> None:
    n = _n()
    strided_3x3 = (n + 2 - 3).floordiv(2) + 1
    strided_1x1 = (n - 1).floordiv(2) + 1
    assert strided_3x3 == strided_1x1
    stem = (n + 6 - 7).floordiv(2) + 1  # 7x7 stride-2 conv, padding 3
    pooled = (stem + 2 - 3).floordiv(2) + 1  # 3x3 stride-2 max pool, padding 1
    assert str(pooled) == "floor((n + 3)/4)"


ranges = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4), st.booleans()), max_size=3)


@st.composite
def int_sets(draw: Callable[..., Any]) -> IntSet:
    period = draw(st.sampled_from([1, 2, 3, 4, 6]))
    base = draw(st.integers(1, 8))
    prefix = sorted({n for n in draw(st.lists(st.integers(1, base), max_size=4)) if n < base})
    classes = []
    for _ in range(period):
        out: list[tuple[int, int | None]] = []
        k = 0
        for gap, length, open_end in draw(ranges):
            lo = k + gap
            if open_end:
                out.append((lo, None))
                break
            out.append((lo, lo + length))
            k = lo + length + 2
        classes.append(out)
    return IntSet(base, [(n, n) for n in prefix], period, classes)


def _elements(s: IntSet, top: int = 120) -> set[int]:
    return {n for n in range(1, top) if s.contains(n)}


@given(a=int_sets(), b=int_sets())
def test_periodic_sets_intersect_unite_and_list_as_python_sets_do(a: IntSet, b: IntSet) -> None:
    assert _elements(a.intersect(b)) == _elements(a) & _elements(b)
    assert _elements(a.union(b)) == _elements(a) | _elements(b)
    listed = [list(seg) for seg in a.intersect(b).segments()]
    assert members(listed, range(1, 120)) == _elements(a) & _elements(b)


# -- full sweeps (slow) -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["codereview_resnet50", "resnet50", "stembodyhead_resnet50"])
def test_resnet_domains_equal_a_brute_force_sweep_to_1100(name: str) -> None:
    report = shapetrace.analyze(name)
    classes = 2 if name.startswith("codereview") else 1000
    assert_domain_matches(on_meta(name), report, range(1, 1101), (1, classes))


@pytest.mark.slow
def test_vit_domain_equals_a_brute_force_sweep_to_300() -> None:
    report = shapetrace.analyze("vit_b_16")
    assert_domain_matches(on_meta("vit_b_16"), report, range(1, 301), (1, 1000))
