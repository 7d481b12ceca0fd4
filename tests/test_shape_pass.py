"""Shortcuts of the shape pass give exactly the shapes the real kernels give, and leave every
malformed call to the real kernel so its error is the model's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shapetrace.passes.shapes import _adaptive_pool_shape


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.AdaptiveAvgPool1d(3), (2, 4, 7)),
        (nn.AdaptiveAvgPool1d(1), (4, 7)),
        (nn.AdaptiveAvgPool2d((None, 2)), (2, 4, 5, 9)),
        (nn.AdaptiveAvgPool2d(1), (1, 2048, 7, 7)),
        (nn.AdaptiveAvgPool2d((5, 5)), (3, 2, 2)),
        (nn.AdaptiveAvgPool3d((2, None, 1)), (1, 3, 4, 5, 6)),
    ],
)
def test_adaptive_pool_shortcut_equals_the_real_kernel(module: nn.Module, shape: tuple) -> None:
    x = torch.empty(shape, device="meta")
    assert _adaptive_pool_shape(module, (x,), {}) == tuple(module(x).shape)
    assert tuple(module(torch.zeros(shape)).shape) == tuple(module(x).shape)


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.AdaptiveAvgPool2d(1), (1, 2, 3, 4, 5)),  # wrong rank: the kernel raises
        (nn.AdaptiveAvgPool2d(1), (1, 2, 0, 4)),  # an empty map
        (nn.AdaptiveAvgPool2d((0, 1)), (1, 2, 3, 4)),  # an empty output size
        (nn.AdaptiveMaxPool2d(1), (1, 2, 3, 4)),  # returns indices on request: not shortcut
    ],
)
def test_malformed_or_other_pools_go_to_the_real_kernel(module: nn.Module, shape: tuple) -> None:
    x = torch.empty(shape, device="meta")
    assert _adaptive_pool_shape(module, (x,), {}) is None


class _Residual(nn.Module):
    """Conv, batch norm and residual sums: the nodes the shape pass runs without a kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.proj = nn.Conv2d(3, 4, 1)
        self.down = nn.Conv2d(4, 8, 3, stride=2, dilation=2, groups=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        z = y + self.proj(x)  # two maps with an autograd history
        w = torch.add(z, self.bn(z))  # one with, one without
        s = x + x  # neither has one
        t = z + z.permute(0, 1, 3, 2)  # a transposed operand: the real kernel
        r = torch.nn.functional.relu(w) + torch.relu(z)  # functional ReLUs
        return self.down(w + t + s.sum() + r)


def test_shortcut_values_have_the_real_kernels_metadata() -> None:
    """Shape, dtype, strides (and but for modules kept whole, autograd state) of every value
    match a plain meta run."""
    from torch import fx

    from shapetrace.passes.shapes import propagate

    model = _Residual().to("meta").eval()
    gm = fx.symbolic_trace(model)
    x = torch.empty(2, 3, 8, 8, device="meta")
    ours = propagate(gm, [x], {}, {}).values
    real: dict[fx.Node, torch.Tensor] = {}

    class Plain(fx.Interpreter):
        def run_node(self, n: fx.Node) -> object:
            value = super().run_node(n)
            real[n] = value
            return value

    Plain(gm).run(x)
    assert ours.keys() == real.keys()
    for node, value in real.items():
        mine = ours[node]
        if not isinstance(value, torch.Tensor):
            continue
        assert (mine.shape, mine.dtype, mine.stride(), mine.device) == (
            value.shape,
            value.dtype,
            value.stride(),
            value.device,
        ), node.name
        if node.op != "call_module":  # shape-preserving modules give values without one
            assert mine.requires_grad == value.requires_grad, node.name


def test_tensors_the_forward_creates_without_a_device_are_meta() -> None:
    """The model's own calls run with meta as the default device."""
    import shapetrace

    class Offsets(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.ones(x.shape[-1]) + torch.arange(x.shape[-1])

    report = shapetrace.analyze(Offsets(), "1x3x4x5")
    assert report.failure is None
    assert report.nodes[-1].shape == [1, 3, 4, 5]
