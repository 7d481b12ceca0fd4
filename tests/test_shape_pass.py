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
