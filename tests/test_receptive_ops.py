"""Receptive fields of ops read through the op registry, against the gradient measurement of
test_receptive (float64, constant positive weights, the extent of one unit's input gradient).

Each net puts the op between convolutions, so a wrong rule shows in the field of the last node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from test_receptive import (
    Field,
    along_height,
    last_rf,
    linear_net,
    measure_axis,
    measure_periodic,
    one_thread,
)
from torch import nn

import shapetrace
from shapetrace import ops
from shapetrace.passes import receptive

__all__ = ["one_thread"]  # the autouse fixture: measurements run on one thread


def test_every_op_family_has_a_field_rule() -> None:
    assert set(receptive.FAMILY_RULES) == ops.families()


def fields(rf: dict[str, Any]) -> list[Field]:
    return [(rf["size"][a], rf["stride"][a], rf["padding"][a]) for a in range(len(rf["size"]))]


def measured(net: nn.Module, shape: Sequence[int]) -> list[Field]:
    forward = linear_net(net)
    return [measure_axis(forward, shape, axis) for axis in range(len(shape) - 2)]


class FunctionalSame(nn.Module):
    """padding="same" in the functional conv: even kernels (the extra pixel goes after) and
    dilations, between strided convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.weight = nn.Parameter(torch.empty(2, 2, 4, 3))
        self.after = nn.Conv2d(2, 1, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(self.down(x), self.weight, padding="same", dilation=(1, 3))
        return self.after(x)


def test_functional_conv_with_same_padding_equals_gradient_measurement() -> None:
    _, rf = last_rf(FunctionalSame(), "1x1x64x64")
    assert fields(rf) == measured(FunctionalSame(), [1, 1, 64, 64])
    # The 4-tap "same" kernel pads 1 before and 2 after; the dilated 3-tap one 3 on each side.
    assert fields(rf) == [(3 + 2 * 3 + 2 * 2, 4, 1 + 2 * 1), (3 + 2 * 6 + 2 * 2, 4, 1 + 2 * 3)]


def test_functional_and_module_conv_with_same_padding_read_the_same() -> None:
    module = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1))
    module.append(nn.Conv2d(2, 2, (4, 3), padding="same", dilation=(1, 3)))
    module.append(nn.Conv2d(2, 1, 3, stride=2))
    _, rf = last_rf(module, "1x1x64x64")
    assert rf == last_rf(FunctionalSame(), "1x1x64x64")[1]


class LPPools(nn.Module):
    """LPPool2d (stride defaults to the kernel) and the functional lp_pool2d."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 2, 3)
        self.pool = nn.LPPool2d(2, 3)
        self.last = nn.Conv2d(2, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.lp_pool2d(self.pool(self.first(x)), 2, (2, 3), stride=(1, 2))
        return self.last(x)


def test_lp_pools_equal_gradient_measurement() -> None:
    report, rf = last_rf(LPPools(), "1x1x96x96")
    assert report.node("pool").rf == {"size": [5, 5], "stride": [3, 3], "padding": [0, 0]}
    assert fields(rf) == measured(LPPools(), [1, 1, 96, 96])
    assert fields(rf) == [(5 + 3 + 3, 3, 0), (5 + 3 * 2 + 6, 6, 0)]


class Unshuffled(nn.Module):
    """Space-to-depth by 2 (module) and by 3 (functional) between convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 1, 3, padding=1)
        self.unshuffle = nn.PixelUnshuffle(2)
        self.mid = nn.Conv2d(4, 1, 3)
        self.last = nn.Conv2d(9, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.unshuffle(self.first(x)))
        return self.last(F.pixel_unshuffle(x, 3))


def test_pixel_unshuffle_equals_gradient_measurement() -> None:
    report, rf = last_rf(Unshuffled(), "1x1x100x100")
    assert report.node("unshuffle").rf == {"size": [4, 4], "stride": [2, 2], "padding": [1, 1]}
    assert fields(rf) == measured(Unshuffled(), [1, 1, 100, 100])
    # 8 pixels after the middle conv; 3 of its units (2 apart), then 2 of those (6 apart).
    assert fields(rf) == [(8 + 2 * 2 + 6 * 1, 6, 1)] * 2


class Shuffled(nn.Module):
    """Depth-to-space by 2 after a strided convolution: half a unit per output unit."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 4, 3, stride=3)
        self.last = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.pixel_shuffle(self.first(x), 2))


def test_pixel_shuffle_reports_fractional_stride_as_measured() -> None:
    _, rf = last_rf(Shuffled(), "1x1x60x9")
    assert rf["stride"] == ["3/2", "3/2"]
    assert along_height(rf) == measure_periodic(Shuffled(), [1, 1, 60, 9])


class Narrowed(nn.Module):
    """Crops by narrow (method, negative start) and select of a channel."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 2, 3, stride=2)
        self.last = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x).narrow(2, 5, 12)
        x = torch.narrow(x, 3, -14, 10)
        return self.last(x.select(1, 0).unsqueeze(1))


def test_narrow_crop_equals_gradient_measurement() -> None:
    report, rf = last_rf(Narrowed(), "1x1x48x48")
    # 48 -> 23 columns: narrow(3, -14) starts at unit 9.
    assert report.node("narrow").rf == {"size": [3, 3], "stride": [2, 2], "padding": [-10, 0]}
    assert fields(rf) == measured(Narrowed(), [1, 1, 48, 48])
    assert fields(rf) == [(7, 2, -10), (7, 2, -18)]


class Im2col(nn.Module):
    """F.unfold after a convolution: N x C*kh*kw x L, the positions of the windows flattened."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 2, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.unfold(self.first(x), (3, 2), dilation=(1, 2), padding=1, stride=(2, 1))


def test_im2col_unfold_reports_flattened_field_as_measured() -> None:
    report, rf = last_rf(Im2col(), "1x1x64x64")
    inner = rf["flattened"]
    # (3, 2) taps dilated (1, 2) pad 1 over units 2 pixels apart, stepping (2, 1) units.
    assert inner == {"size": [7, 7], "stride": [4, 2], "padding": [2, 2]}
    # Measure per window position: L runs over the output rows, then the columns.
    rows, cols = 16, 31
    assert report.nodes[-1].shape == [1, 2 * 3 * 2, rows * cols]
    net = linear_net(Im2col())

    def forward(x: torch.Tensor) -> torch.Tensor:
        return net(x).unflatten(-1, (rows, cols))

    assert fields(inner) == [measure_axis(forward, [1, 1, 64, 64], a) for a in (0, 1)]


class Windows(nn.Module):
    """Tensor.unfold along the height, then along the width: windows as new last dims, summed
    away (an average pool written by hand), then a convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 2, 3)
        self.last = nn.Conv2d(2, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x).unfold(2, 4, 3).unfold(3, 2, 1)
        return self.last(x.sum((-1, -2)))


def test_tensor_unfold_windows_equal_gradient_measurement() -> None:
    report, rf = last_rf(Windows(), "1x1x80x80")
    slide = report.node("unfold")
    assert slide.shape == [1, 2, 25, 78, 4]
    assert slide.rf == {"size": [6, 3], "stride": [3, 1], "padding": [0, 0]}
    net = linear_net(Windows())

    def windows(x: torch.Tensor) -> torch.Tensor:
        return net.get_submodule("first")(x).unfold(2, 4, 3).sum(-1)

    assert fields(slide.rf) == [measure_axis(windows, [1, 1, 80, 80], a) for a in (0, 1)]
    assert fields(rf) == measured(Windows(), [1, 1, 80, 80])
    assert fields(rf) == [(3 + 3 + 3, 3, 0), (3 + 1 + 1, 1, 0)]


class Interleaved(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 1, 3, stride=2)
        self.last = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.first(x).repeat_interleave(3, dim=2))


def test_repeat_interleave_along_an_axis_is_a_nearest_upsampling_as_measured() -> None:
    _, rf = last_rf(Interleaved(), "1x1x40x9")
    assert rf["stride"] == ["2/3", 2]
    assert along_height(rf) == measure_periodic(Interleaved(), [1, 1, 40, 9])


class Moves(nn.Module):
    """Flips and rolls: across channels the field stays, along a spatial axis it is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.conv(x)
        kept = torch.roll(x.flip(1), 3, 1)
        return kept, x.flip(-1), x.roll(1, -1) + 1, torch.zeros_like(x)


def test_moving_positions_loses_the_field_and_says_why() -> None:
    report = shapetrace.analyze(Moves(), "1x1x16x16")
    conv = {"size": [3, 3], "stride": [1, 1], "padding": [0, 0]}
    assert report.node("flip").rf == report.node("roll").rf == conv
    assert report.node("flip").missing is None
    assert report.node("flip_1").rf == {"unknown": "flip"}
    assert report.node("flip_1").missing == {"rf": "flip moves positions along a spatial axis"}
    assert report.node("roll_1").rf == {"unknown": "roll"}
    assert report.node("add").rf == {"unknown": "roll"}
    assert report.node("add").missing == {
        "rf": "its field is lost at roll_1: roll moves positions along a spatial axis"
    }
    # A new tensor of the same size depends on no pixel: no field, and nothing to explain.
    assert report.node("zeros_like").rf is None
    assert report.node("zeros_like").missing is None


def test_opaque_torchvision_function_says_it_is_not_a_known_op() -> None:
    report = shapetrace.analyze("swin_t", "1x3x224x224")
    node = report.node("features.1.0.attn.shifted_window_attention")
    assert node.rf == {"unknown": "shifted_window_attention"}
    assert node.missing is not None
    assert node.missing["rf"] == (
        "torchvision.models.swin_transformer.shifted_window_attention is not an op shapetrace"
        " knows, so its field is not derived"
    )
    unknown = [n for n in report.nodes if n.rf is not None and "unknown" in n.rf]
    assert unknown and all(n.missing and "rf" in n.missing for n in unknown)


class Einsums(nn.Module):
    """A 1x1 convolution written as an einsum keeps the field; a sum over positions is global."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 2, 3, stride=2)
        self.mix = nn.Parameter(torch.empty(3, 2))
        self.last = nn.Conv2d(3, 1, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.last(torch.einsum("bchw,oc->bohw", self.first(x), self.mix))
        return x, torch.einsum("bchw,bdhw->bcd", x, x)


def test_einsum_over_channels_keeps_the_field_as_measured_and_over_positions_is_global() -> None:
    report = shapetrace.analyze(Einsums(), "1x1x40x40")
    assert report.node("einsum_1").rf == {"global": True}
    rf = report.node("last").rf
    assert rf is not None
    net = linear_net(Einsums())

    def forward(x: torch.Tensor) -> torch.Tensor:
        return net(x)[0]

    assert fields(rf) == [measure_axis(forward, [1, 1, 40, 40], a) for a in (0, 1)]
    assert fields(rf) == [(7, 2, 0)] * 2
