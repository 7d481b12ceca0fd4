"""A ResNet written as stem / body / head, after the blog post "ResNet 만들기(stem, body, header)".

The post gives the structure but no usable code, so the geometry here is fixed
to match torchvision's ResNet v1.5 exactly: same parameter and buffer totals,
same per-stage output shapes, BatchNorm wherever torchvision has one, and the
stride of a bottleneck on its 3x3 convolution. Only the module tree differs:

* ``stem``: 7x7/2 convolution, BatchNorm, ReLU, 3x3/2 max pool.
* ``body``: four stages built by :func:`make_stage`; stages 2-4 halve the
  resolution in their first block.
* ``head``: global average pool, flatten, linear classifier.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
from torch import nn

__all__ = [
    "BnConv",
    "ResBlock",
    "ResBottleNeckBlock",
    "ResNet",
    "make_stage",
    "stembodyhead_resnet18",
    "stembodyhead_resnet34",
    "stembodyhead_resnet50",
]


class BnConv(nn.Module):
    """Bias-free ``Conv2d`` followed by ``BatchNorm2d`` and, optionally, ``ReLU``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        relu: bool = True,
    ) -> None:
        super().__init__()
        # "Same" padding for odd kernels, so only the stride changes the resolution.
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        # None rather than nn.Identity keeps no-op nodes out of traced graphs.
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(bn(conv(x)))`` (or ``bn(conv(x))`` without ReLU)."""
        out = self.bn(self.conv(x))
        if self.relu is not None:
            out = self.relu(out)
        return out


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Projection (1x1 conv + BN) where the shape changes, identity otherwise."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ResBlock(nn.Module):
    """Basic residual block (expansion 1): two 3x3 conv+BN, ReLU after the first and the add."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = BnConv(in_channels, out_channels, 3, stride=stride)
        self.conv2 = BnConv(out_channels, out_channels, 3, relu=False)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(conv2(conv1(x)) + shortcut(x))``."""
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResBottleNeckBlock(nn.Module):
    """Bottleneck block (expansion 4): 1x1 reduce, 3x3 (strided, as in v1.5), 1x1 expand."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        expanded = out_channels * self.expansion
        self.conv1 = BnConv(in_channels, out_channels, 1)
        self.conv2 = BnConv(out_channels, out_channels, 3, stride=stride)
        self.conv3 = BnConv(out_channels, expanded, 1, relu=False)
        self.shortcut = _shortcut(in_channels, expanded, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(conv3(conv2(conv1(x))) + shortcut(x))``."""
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


Block = type[ResBlock] | type[ResBottleNeckBlock]


def make_stage(
    block: Block,
    in_channels: int,
    out_channels: int,
    num_blocks: int,
    stride: int,
) -> nn.Sequential:
    """Stack ``num_blocks`` blocks; only the first one gets ``stride`` (as torchvision does).

    ``out_channels`` is the block's base width; the stage outputs
    ``out_channels * block.expansion`` channels.
    """
    blocks: list[nn.Module] = [block(in_channels, out_channels, stride)]
    for _ in range(num_blocks - 1):
        blocks.append(block(out_channels * block.expansion, out_channels, 1))
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """ResNet as ``head(body(stem(x)))``, geometrically identical to torchvision's."""

    def __init__(
        self,
        block: Block,
        num_blocks: list[int],
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(num_blocks) != 4:
            raise ValueError(f"num_blocks must list 4 stages, got {num_blocks!r}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        channels = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), num_blocks, strict=True)):
            # The stem already reduced by 4, so stage 1 keeps the resolution.
            stages.append(make_stage(block, channels, width, n, 1 if i == 0 else 2))
            channels = width * block.expansion
        self.body = nn.Sequential(*stages)
        self.head = nn.Sequential(
            OrderedDict(
                gap=nn.AdaptiveAvgPool2d((1, 1)),
                flatten=nn.Flatten(1),
                fc=nn.Linear(512 * block.expansion, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape ``(N, num_classes)``."""
        return self.head(self.body(self.stem(x)))


def stembodyhead_resnet18(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2] (11,689,512 parameters at 1000 classes)."""
    return ResNet(ResBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels)


def stembodyhead_resnet34(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3] (21,797,672 parameters at 1000 classes)."""
    return ResNet(ResBlock, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels)


def stembodyhead_resnet50(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3] (25,557,032 parameters at 1000 classes)."""
    return ResNet(
        ResBottleNeckBlock, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels
    )
