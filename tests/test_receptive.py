"""Receptive fields against a gradient measurement.

The measurement knows nothing of shapetrace: a real CPU model in float64 with constant positive
weights, every activation (and LayerNorm, GroupNorm) replaced by identity and every max-pool by
an average pool of the same geometry, so the input gradient of one output unit is non-zero
exactly on that unit's field (no path can cancel or saturate). The extent of that gradient
gives the field's size, the shift between two neighbouring units its stride, and where the
first unit would start its padding. One thread: see `one_thread`.

Fields do not depend on the extent of the other axes, so each axis is measured on an input that
is large along it and as thin as the model allows along the other: the measured units sit far
from the borders and the runs stay cheap. Each orientation is analysed at exactly the measured
input size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import shapetrace
from shapetrace.report import Report
from shapetrace.views.rf_text import format_rf
from shapetrace.zoo import ZOO

Field = tuple[int, int, int]  # size, stride, padding along one axis
Extent = tuple[int, int]  # first and last input pixel with a non-zero gradient

# Replaced by identity for the measurement: activations (nothing saturates) and the norms without
# running statistics (whose centring cancels a gradient that is the same in every channel).
_NONLINEAR = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardswish,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Hardsigmoid,
    nn.LayerNorm,
    nn.GroupNorm,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Float64 grouped convolutions run group by group, thousands of tiny parallel regions: on a
    busy machine each waits for a descheduled partner thread, up to a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the measurement ------------------------------------------------------------------------


def linearise(model: nn.Module) -> nn.Module:
    """Activations -> identity, max-pools -> average pools of the same geometry, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _NONLINEAR):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                assert child.dilation in (1, (1, 1)), "no average pool has a dilation"
                pool = nn.AvgPool2d(
                    child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode
                )
                setattr(parent, name, pool)
    return model


def constant_weights(model: nn.Module) -> nn.Module:
    """float64; every kernel an average over its fan-in (positive, and no overflow over 50
    layers); biases zero; batch norms identity."""
    model.double().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            else:
                param.fill_(1.0 / param[0].numel() if param.dim() > 1 else 1.0)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
    for param in model.parameters():
        param.requires_grad_(False)
    return model


Forward = Callable[[torch.Tensor], torch.Tensor]


def extents(
    forward: Forward, input_shape: Sequence[int], pick: Callable[[Sequence[int]], list[tuple]]
) -> list[list[Extent]]:
    """Per output unit `pick(output spatial shape)`, the extent of the non-zero input gradient
    along each axis. Each unit gets its own batch element (input_shape[0] of them), so one
    backward pass serves them all."""
    # Ones, not zeros: a product of two branches has a zero gradient at a zero input.
    x = torch.ones(tuple(input_shape), dtype=torch.float64, requires_grad=True)
    y = forward(x)
    units = pick(y.shape[2:])
    assert len(units) == len(x)
    total = sum(y[(b, slice(None), *unit)].sum() for b, unit in enumerate(units))
    assert isinstance(total, torch.Tensor)
    total.backward()
    assert x.grad is not None
    found = []
    for b, unit in enumerate(units):
        reach = x.grad[b] != 0
        per_axis = []
        for axis in range(len(input_shape) - 2):
            line = reach.movedim(axis + 1, 0).flatten(1).any(dim=1)
            hits = torch.nonzero(line).flatten()
            assert len(hits), f"unit {unit} does not reach the input"
            per_axis.append((int(hits[0]), int(hits[-1])))
        found.append(per_axis)
    return found


def measure_axis(forward: Forward, input_shape: Sequence[int], axis: int) -> Field:
    """Size, stride and padding along `axis`, from two neighbouring central output units."""
    chosen: list[int] = []

    def pick(spatial: Sequence[int]) -> list[tuple]:
        assert spatial[axis] >= 2, f"one unit along axis {axis}: use a larger input"
        centre = [n // 2 for n in spatial]
        chosen.append(centre[axis] - 1)
        return [
            (*tuple(centre[:axis]), centre[axis] - 1 + step, *tuple(centre[axis + 1 :]))
            for step in (0, 1)
        ]

    first, second = (e[axis] for e in extents(forward, [2, *input_shape[1:]], pick))
    length = input_shape[2 + axis]
    for low, high in (first, second):
        assert low > 0 and high < length - 1, "field touches the border: use a larger input"
    assert first[1] - first[0] == second[1] - second[0]
    stride = second[0] - first[0]
    return first[1] - first[0] + 1, stride, chosen[0] * stride - first[0]


class _Reached(Exception):
    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


def up_to(model: nn.Module, path: str) -> Forward:
    """The output of module `path`, running the model only that far."""
    module = model.get_submodule(path)

    def forward(x: torch.Tensor) -> torch.Tensor:
        def stop(_: nn.Module, __: Any, output: torch.Tensor) -> None:
            raise _Reached(output)

        handle = module.register_forward_hook(stop)
        try:
            model(x)
        except _Reached as reached:
            return reached.output
        finally:
            handle.remove()
        raise AssertionError(f"{path} was never called")

    return forward


def measurable(builder: Callable[[], nn.Module]) -> nn.Module:
    """A linearised, constant-weight model. Built on meta: the Linear layers of the head, never
    reached by `up_to`, stay there and cost no memory."""
    with torch.device("meta"):
        model = linearise(builder().eval())
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            module.to_empty(device="cpu", recurse=False)
    return constant_weights(model)


# -- the analytic side ----------------------------------------------------------------------


def analytic(report: Report, name: str) -> dict[str, Any]:
    """The rf of a node, or of a module (the field of its output)."""
    try:
        rf = report.node(name).rf
    except KeyError:
        rf = report.module(name).rf
    assert rf is not None, name
    return rf


def analytic_axis(report: Report, name: str, axis: int) -> Field:
    rf = analytic(report, name)
    return rf["size"][axis], rf["stride"][axis], rf["padding"][axis]


# -- real models ------------------------------------------------------------------------------

# name -> (measured nodes or modules, length of the measured axis, thinnest other axis).
MODELS: dict[str, tuple[list[str], int, int]] = {
    "resnet18": (["maxpool", "layer1", "layer2", "layer3", "layer4"], 512, 1),
    "resnet50": (["maxpool", "layer1", "layer2", "layer3", "layer4"], 512, 1),
    "vgg16": (["features.4", "features.9", "features.16", "features.23", "features.30"], 288, 32),
    "alexnet": (["features.2", "features.5", "features.12"], 288, 63),
    "mobilenet_v2": (
        ["features.1", "features.3", "features.6", "features.13", "features.18"],
        576,
        1,
    ),
    "codereview_resnet50": (["layer_1", "layer_2", "layer_3", "layer_4", "layer_5"], 640, 1),
    "stembodyhead_resnet50": (["stem", "body.0", "body.1", "body.2", "body.3"], 512, 1),
}


def _builder(name: str) -> Callable[[], nn.Module]:
    if name in ZOO:
        return ZOO[name]
    return lambda: torchvision.models.get_model(name, weights=None)


@pytest.mark.parametrize("name", list(MODELS))
def test_field_of_each_stage_equals_gradient_measurement(name: str) -> None:
    nodes, long, thin = MODELS[name]
    model = measurable(_builder(name))
    for axis, dims in ((0, [long, thin]), (1, [thin, long])):
        report = shapetrace.analyze(name, f"1x3x{dims[0]}x{dims[1]}")
        measured = {n: measure_axis(up_to(model, n), [1, 3, *dims], axis) for n in nodes}
        assert {n: analytic_axis(report, n, axis) for n in nodes} == measured, axis


def test_resnet50_layer4_sees_427_pixels_every_32_and_covers_224_but_not_448() -> None:
    report = shapetrace.analyze("resnet50", "1x3x224x224")
    assert report.module("layer4").rf == {
        "size": [427, 427],
        "stride": [32, 32],
        "padding": [213, 213],
    }
    last = report.node("layer4.2.relu_2")
    assert last.rf_covers_input is True
    assert last.rf_covers_input_up_to == [406, 406]
    assert report.node("avgpool").rf == {"global": True}
    assert report.node("fc").rf == {"global": True}
    assert report.node("fc").rf_covers_input_up_to is None
    assert not any(n.rf and n.rf.get("misaligned") for n in report.nodes)
    assert format_rf(report.module("layer4").rf) == "427/32"


def test_every_tensor_node_and_module_of_resnet50_has_a_field() -> None:
    report = shapetrace.analyze("resnet50", "1x3x224x224")
    for node in report.nodes:
        assert (node.rf is not None) == (node.shape is not None), node.name
    assert all(m.rf is not None for m in report.modules if m.calls)


def test_largest_covered_input_is_where_the_measured_central_fields_stop_covering() -> None:
    """resnet18 layer4 along the height: at the reported size one of the four central units'
    measured fields covers the whole input; one pixel more, none does."""
    largest = shapetrace.analyze("resnet18", "1x3x224x1").node("layer4.1.relu_1")
    assert largest.rf_covers_input_up_to is not None
    forward = up_to(measurable(_builder("resnet18")), "layer4")
    answers = []
    for size in (largest.rf_covers_input_up_to[0], largest.rf_covers_input_up_to[0] + 1):
        node = shapetrace.analyze("resnet18", f"1x3x{size}x1").node("layer4.1.relu_1")
        found = extents(
            forward, [4, 3, size, 1], lambda s: [(s[0] // 2 + u, 0) for u in range(-2, 2)]
        )
        measured = any(low <= 0 and high >= size - 1 for (low, high), _ in found)
        answers.append((node.rf_covers_input, measured))
    assert answers == [(True, True), (False, False)]


def test_failed_model_keeps_fields_up_to_the_break() -> None:
    report = shapetrace.analyze("codereview_resnet50", "1x3x448x448")
    assert report.failure is not None
    assert report.module("layer_5").rf == {
        "size": [539, 539],
        "stride": [32, 32],
        "padding": [269, 269],
    }
    assert report.node(report.failure.node).rf is None
    last = report.node("layer_5.2.add")
    assert (last.rf_covers_input, last.rf_covers_input_up_to) == (True, [526, 526])


def test_fixed_pool_then_view_then_linear_keeps_the_flattened_field() -> None:
    report = shapetrace.analyze("codereview_resnet50", "1x3x224x224")
    inner = {"size": [731, 731], "stride": [32, 32], "padding": [269, 269]}
    assert report.node("avgpool").rf == inner
    assert report.node("view").rf == {"flattened": inner}
    # One position only: the Linear mixes features, not positions.
    assert report.node("fc_layer").rf == {"flattened": inner}
    assert report.node("fc_layer").rf_covers_input is True


def test_linear_over_flattened_positions_is_global() -> None:
    report = shapetrace.analyze("vgg16", "1x3x224x224")
    assert report.node("flatten").rf == {"flattened": analytic(report, "features.30")}
    assert report.node("classifier.0").rf == {"global": True}


def test_rf_text_is_size_over_stride() -> None:
    assert format_rf({"size": [427, 427], "stride": [32, 32], "padding": [213, 213]}) == "427/32"
    assert format_rf({"size": [109, 219, 219], "stride": [8, 16, 16]}) == "109x219x219/8x16x16"
    assert format_rf({"flattened": {"size": [731, 731], "stride": [32, 32]}}) == "731/32"
    field = {"size": [7, 7], "stride": ["1/2", "1/2"], "uniform": False, "misaligned": True}
    assert format_rf(field) == "≤7/(1/2) !"
    assert format_rf({"global": True}) == "global"
    assert format_rf({"unknown": "LSTM"}) == "?"


# -- small nets ---------------------------------------------------------------------------------


def linear_net(net: nn.Module) -> nn.Module:
    """The net, in place, ready for the gradient measurement (analyse it first)."""
    return constant_weights(linearise(net))


def last_rf(net: nn.Module, input_shape: str) -> tuple[Report, dict[str, Any]]:
    report = shapetrace.analyze(net, input_shape)
    rf = report.nodes[-1].rf
    assert rf is not None
    return report, rf


def test_dilated_stack_equals_gradient_measurement() -> None:
    net = nn.Sequential(
        nn.Conv2d(2, 2, 3, padding=1),
        nn.Conv2d(2, 2, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(2, 2, 3, stride=2, padding=4, dilation=4),
        nn.Conv2d(2, 2, (3, 5), padding="same", dilation=(8, 3)),
        nn.Conv2d(2, 2, 2, padding="valid", dilation=3),
    )
    _, rf = last_rf(net, "1x2x160x160")
    forward = linear_net(net)
    measured = measure_axis(forward, [1, 2, 160, 160], 0)
    measured_w = measure_axis(forward, [1, 2, 160, 160], 1)
    assert (rf["size"][0], rf["stride"][0], rf["padding"][0]) == measured
    assert (rf["size"][1], rf["stride"][1], rf["padding"][1]) == measured_w
    assert measured == (1 + 2 + 4 + 8 + 2 * 16 + 2 * 3, 2, 1 + 2 + 4 + 2 * 8)


def measure_periodic(net: nn.Module, input_shape: Sequence[int]) -> dict[str, Any]:
    """Largest size, stride and padding along the height of a field that repeats every few
    units. The period is found in the measurement, over 24 central units; the padding is where
    the repeating pattern puts the start of unit 0."""
    span = 24
    forward = linear_net(net)
    first: list[int] = []

    def pick(spatial: Sequence[int]) -> list[tuple]:
        first.append(spatial[0] // 2 - span // 2)
        return [(first[0] + i, spatial[1] // 2) for i in range(span)]

    found = [e[0] for e in extents(forward, [span, *input_shape[1:]], pick)]
    for low, high in found:
        assert low > 0 and high < input_shape[2] - 1
    period = next(
        p
        for p in range(1, span // 2)
        if len({(b[0] - a[0], b[1] - a[1]) for a, b in zip(found, found[p:], strict=False)}) == 1
    )
    shift = found[period][0] - found[0][0]
    whole = -first[0] % period  # the first unit of the window whose index is a multiple of period
    start = found[whole][0] - (first[0] + whole) // period * shift
    return {
        "size": max(high - low + 1 for low, high in found),
        "stride": Fraction(shift, period),
        "padding": -start,
    }


def along_height(rf: dict[str, Any]) -> dict[str, Any]:
    return {"size": rf["size"][0], "stride": Fraction(rf["stride"][0]), "padding": rf["padding"][0]}


def test_transposed_convolution_reports_largest_field_and_fractional_stride() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1),
        nn.Conv2d(2, 2, 3, padding=1),
        nn.ConvTranspose2d(2, 2, 3, stride=3, padding=1, dilation=2),
    )
    _, rf = last_rf(net, "1x1x40x9")
    assert rf["uniform"] is False
    assert rf["stride"] == ["1/6", "1/6"]
    assert along_height(rf) == measure_periodic(net, [1, 1, 40, 9])


class Resampled(nn.Module):
    """Bilinear x2, bilinear x3 (every third output falls exactly on an input pixel, so the
    second tap has weight zero) and nearest x2 between strided convolutions: stride 1/3."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.conv = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.nearest = nn.Upsample(scale_factor=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(self.up(self.down(x)), scale_factor=3, mode="bilinear")
        return self.nearest(self.conv(x))


def test_bilinear_upsampling_reports_largest_field_and_fractional_stride() -> None:
    _, rf = last_rf(Resampled(), "1x1x48x9")
    assert rf["uniform"] is False
    assert rf["stride"] == ["1/3", "1/3"]
    assert along_height(rf) == measure_periodic(Resampled(), [1, 1, 48, 9])


def test_align_corners_upsampling_matches_every_unit() -> None:
    """Source pixel o * 19/39: the period spans the whole map, so measure every unit. The width
    goes from 1 to 2 units, which both read the one input column."""
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.UpsamplingBilinear2d(scale_factor=2))
    _, rf = last_rf(net, "1x1x22x3")
    found = [
        e[0]
        for e in extents(linear_net(net), [40, 1, 22, 3], lambda _: [(u, 0) for u in range(40)])
    ]
    assert rf["size"][0] == max(high - low + 1 for low, high in found)
    assert Fraction(rf["stride"][0]) == Fraction(found[-1][0] - found[0][0], 39) == Fraction(19, 39)
    assert rf["padding"] == [-found[0][0], 0]
    assert rf["stride"][1] == 0


def test_align_corners_downsampling_by_two_reads_one_pixel_per_unit() -> None:
    """Source pixel 2o exactly: the other tap has weight zero, so the field stays uniform."""
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3), nn.Upsample(size=(11, 3), mode="bilinear", align_corners=True)
    )
    _, rf = last_rf(net, "1x1x23x5")
    assert rf == {"size": [3, 3], "stride": [2, 1], "padding": [0, 0]}
    assert measure_axis(linear_net(net), [1, 1, 23, 5], 0) == (3, 2, 0)


class Functional(nn.Module):
    """Functional forms, padding, a crop and a strided slice, a channel-last block (permute,
    LayerNorm, Linear, permute back), a concat and a channel shuffle (views that keep the
    positions)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Parameter(torch.empty(2, 1, 3, 3))
        self.last = nn.Parameter(torch.empty(2, 4, 2, 2))
        self.norm = nn.LayerNorm(2)
        self.mix = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.conv2d(x, self.first, stride=2, padding=2, dilation=2)
        x = nn.functional.pad(x, (2, 0, 1, 3))
        x = nn.functional.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
        x = x[:, :, 1:, 2::2]
        y = self.mix(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        x = torch.cat([x, nn.functional.gelu(y)], dim=1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        return nn.functional.conv2d(x, self.last)


def test_functional_forms_and_layout_changes_equal_gradient_measurement() -> None:
    _, rf = last_rf(Functional(), "1x1x64x64")
    forward = linear_net(Functional())
    for axis in (0, 1):
        measured = measure_axis(forward, [1, 1, 64, 64], axis)
        assert (rf["size"][axis], rf["stride"][axis], rf["padding"][axis]) == measured


class Heads(nn.Module):
    """A global-pool head and a flatten head over a 3x3 map of 4x4 tiles."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 4, stride=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(18, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)
        return self.pool(x), self.fc(self.flat(x))


def test_global_fields_reach_every_input_pixel() -> None:
    report = shapetrace.analyze(Heads(), "1x1x12x12")
    assert report.node("pool").rf == report.node("fc").rf == {"global": True}
    tiles = {"size": [4, 4], "stride": [4, 4], "padding": [0, 0]}
    assert report.node("flat").rf == {"flattened": tiles}
    net = linear_net(Heads())
    x = torch.ones(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    pooled, logits = net(x)
    (grad_pool,) = torch.autograd.grad(pooled[0, 0].sum(), x, retain_graph=True)
    (grad_fc,) = torch.autograd.grad(logits[0, 0], x)
    assert bool((grad_pool != 0).all()) and bool((grad_fc != 0).all())


class AvgShortcut(nn.Module):
    """A ResNet-D style block: its average-pool shortcut is centred half a pixel off the
    strided 3x3 main path."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.shortcut = nn.AvgPool2d(2, 2)
        self.after = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.main(x) + self.shortcut(x))


def test_branches_centred_apart_are_flagged_misaligned_and_their_union_measured() -> None:
    report, rf = last_rf(AvgShortcut(), "1x1x32x32")
    add = report.node("add")
    assert add.rf is not None and add.rf["misaligned"] is True
    assert "misaligned" not in rf  # the flag marks the merge, not what follows it
    measured = measure_axis(linear_net(AvgShortcut()), [1, 1, 32, 32], 0)
    assert (rf["size"][0], rf["stride"][0], rf["padding"][0]) == measured


# -- random nets -----------------------------------------------------------------------------------


@st.composite
def conv_specs(draw: st.DrawFn) -> dict[str, Any]:
    kernel = draw(st.integers(1, 5))
    dilation = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, (kernel - 1) * dilation))
    return {"kernel_size": kernel, "stride": stride, "padding": padding, "dilation": dilation}


@st.composite
def layers(draw: st.DrawFn) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["conv", "conv", "pool", "same", "branch"]))
    if kind == "conv":
        return kind, (draw(conv_specs()), draw(conv_specs()))  # one per axis
    if kind == "same":
        return kind, (draw(st.integers(1, 6)), draw(st.integers(1, 3)))
    if kind == "pool":
        kernel = draw(st.integers(1, 4))
        return kind, (
            draw(st.sampled_from(["max", "avg"])),
            kernel,
            draw(st.integers(1, 3)),
            draw(st.integers(0, kernel // 2)),
            draw(st.booleans()),
        )
    first = draw(conv_specs())
    kernel, dilation = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    twice = dilation * (kernel - 1) - first["dilation"] * (first["kernel_size"] - 1)
    twice += 2 * first["padding"]
    assume(twice >= 0 and twice % 2 == 0)  # same output length for every input length
    second = {
        "kernel_size": kernel,
        "stride": first["stride"],
        "padding": twice // 2,
        "dilation": dilation,
    }
    return kind, (first, second, draw(st.sampled_from(["add", "cat", "mul"])))


class Branches(nn.Module):
    def __init__(self, first: dict[str, int], second: dict[str, int], merge: str) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, **first)
        self.b = nn.Conv2d(2, 2, **second)
        self.merge = merge
        self.squeeze = nn.Conv2d(4, 2, 1) if merge == "cat" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)
        if self.merge == "cat":
            return self.squeeze(torch.cat([a, b], dim=1))
        return a + b if self.merge == "add" else a * b


def build(spec: Sequence[tuple[str, Any]]) -> tuple[nn.Module, int]:
    """The net, and a bound on its field size and offset plus four strides (for the input
    size: the measured units must sit well inside)."""
    modules: list[nn.Module] = []
    reach, stride = 1, 1
    for kind, args in spec:
        if kind == "conv":
            h, w = args
            modules.append(nn.Conv2d(2, 2, **{k: (h[k], w[k]) for k in h}))
            step = max(h["stride"], w["stride"])
            grow = max((c["kernel_size"] - 1) * c["dilation"] + c["padding"] for c in (h, w))
        elif kind == "same":
            kernel, dilation = args
            modules.append(nn.Conv2d(2, 2, kernel, padding="same", dilation=dilation))
            step, grow = 1, (kernel - 1) * dilation
        elif kind == "pool":
            pool, kernel, step, padding, ceil = args
            cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
            modules.append(cls(kernel, step, padding, ceil_mode=ceil))
            grow = kernel - 1
        else:
            first, second, merge = args
            modules.append(Branches(first, second, merge))
            step = first["stride"]
            # Branches centred apart widen the union by their offset: count both paddings.
            grow = max(
                (c["kernel_size"] - 1) * c["dilation"] + 2 * c["padding"] for c in (first, second)
            )
        reach += grow * stride
        stride *= step
    return nn.Sequential(*modules), reach + 4 * stride


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.lists(layers(), min_size=1, max_size=4))
def test_random_conv_nets_equal_gradient_measurement(spec: list[tuple[str, Any]]) -> None:
    net, bound = build(spec)
    size = 2 * bound + 8
    shape = [1, 2, size, size]
    _, rf = last_rf(net, "x".join(map(str, shape)))
    forward = linear_net(net)
    for axis in (0, 1):
        measured = measure_axis(forward, shape, axis)
        assert (rf["size"][axis], rf["stride"][axis], rf["padding"][axis]) == measured
