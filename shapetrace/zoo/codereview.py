"""The hand-written ResNet-50 of the Korean blog post "ResNet50 code review".

This is a fresh rewrite that keeps the post's module tree, attribute names and
forward semantics, *including its bugs*. The bugs are the point: shapetrace is
meant to find them, so each one is marked "kept on purpose" below.

Known defects (with the defaults ``base_dim=64, num_classes=2``):

* Every ``BottleNeck`` registers ``dim_equalizer``, but the three down blocks
  (``layer_2.2``, ``layer_3.3``, ``layer_4.5``) never call it: 1,378,048 dead
  parameters out of 39,423,874.
* ``x.size() is not out.size()`` compares object identity, so it is always true
  and ``dim_equalizer`` runs even when the shapes already match.
* One ``nn.ReLU`` object (``ResNet.act_fn``) is shared by every bottleneck, so
  per-module hooks, fusion and quantization cannot tell its call sites apart.
* ``avgpool`` is a fixed ``AvgPool2d(7, 1)``, so only inputs that leave a 7x7
  map after ``layer_5`` (such as 224x224) reach ``fc_layer`` with 2048 features;
  at 448 the flatten yields 131072 features and ``fc_layer`` raises.

Deviations from the paper that are faithful to the post rather than bugs: no
BatchNorm, every convolution has a bias, and the ReLU sits at the end of the
residual branch instead of after the addition.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BottleNeck", "ResNet", "codereview_resnet50", "conv_block_1", "conv_block_3"]


def conv_block_1(in_dim: int, out_dim: int, act_fn: nn.Module, stride: int = 1) -> nn.Sequential:
    """Return a 1x1 convolution (with bias) followed by ``act_fn``."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel_size=1, stride=stride),
        act_fn,
    )


def conv_block_3(in_dim: int, out_dim: int, act_fn: nn.Module) -> nn.Sequential:
    """Return a 3x3 convolution (stride 1, padding 1, with bias) followed by ``act_fn``."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=1, padding=1),
        act_fn,
    )


class BottleNeck(nn.Module):
    """Bottleneck block of the blog post: 1x1 -> 3x3 -> 1x1, each followed by ``act_fn``.

    With ``down=True`` the first 1x1 convolution has stride 2 and the shortcut is
    ``downsample`` (a strided 1x1 convolution); otherwise the shortcut is
    ``dim_equalizer`` (a 1x1 convolution), which is applied unconditionally.
    """

    def __init__(
        self,
        in_dim: int,
        mid_dim: int,
        out_dim: int,
        act_fn: nn.Module,
        down: bool = False,
    ) -> None:
        super().__init__()
        # Registration order (act_fn, down, layer, downsample, dim_equalizer) matches
        # the original so that module names and parameter order are the same.
        self.act_fn = act_fn
        self.down = down
        self.layer = nn.Sequential(
            conv_block_1(in_dim, mid_dim, act_fn, 2 if down else 1),
            conv_block_3(mid_dim, mid_dim, act_fn),
            conv_block_1(mid_dim, out_dim, act_fn),
        )
        if down:
            self.downsample = nn.Conv2d(in_dim, out_dim, 1, 2)
        # Bug kept on purpose: registered in every block, but the down blocks never
        # call it, so its parameters are dead weight there.
        self.dim_equalizer = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the main path and add the (projected) shortcut."""
        if self.down:
            downsample = self.downsample(x)
            out = self.layer(x)
            out = out + downsample
        else:
            out = self.layer(x)
            # Bug kept on purpose: identity comparison of two fresh torch.Size
            # objects is always true, so the projection always runs.
            if x.size() is not out.size():
                x = self.dim_equalizer(x)
            out = out + x
        return out


class ResNet(nn.Module):
    """The blog post's "ResNet 50 layer": a stem, 16 bottlenecks in 4 stages, a pool and a fc."""

    def __init__(self, base_dim: int = 64, num_classes: int = 2) -> None:
        super().__init__()
        # Bug kept on purpose: this single ReLU object is shared by every bottleneck.
        self.act_fn = nn.ReLU()
        self.layer_1 = nn.Sequential(
            nn.Conv2d(in_channels=3, out_channels=base_dim, kernel_size=7, stride=2, padding=3),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        b, act = base_dim, self.act_fn
        self.layer_2 = nn.Sequential(
            BottleNeck(b, b, b * 4, act),
            BottleNeck(b * 4, b, b * 4, act),
            BottleNeck(b * 4, b, b * 4, act, down=True),
        )
        self.layer_3 = nn.Sequential(
            BottleNeck(b * 4, b * 2, b * 8, act),
            BottleNeck(b * 8, b * 2, b * 8, act),
            BottleNeck(b * 8, b * 2, b * 8, act),
            BottleNeck(b * 8, b * 2, b * 8, act, down=True),
        )
        self.layer_4 = nn.Sequential(
            BottleNeck(b * 8, b * 4, b * 16, act),
            BottleNeck(b * 16, b * 4, b * 16, act),
            BottleNeck(b * 16, b * 4, b * 16, act),
            BottleNeck(b * 16, b * 4, b * 16, act),
            BottleNeck(b * 16, b * 4, b * 16, act),
            BottleNeck(b * 16, b * 4, b * 16, act, down=True),
        )
        self.layer_5 = nn.Sequential(
            BottleNeck(b * 16, b * 8, b * 32, act),
            BottleNeck(b * 32, b * 8, b * 32, act),
            BottleNeck(b * 32, b * 8, b * 32, act),
        )
        # Bug kept on purpose: a fixed 7x7 pool instead of a global (adaptive) one,
        # so any input other than 224x224 breaks fc_layer.
        self.avgpool = nn.AvgPool2d(7, 1)
        self.fc_layer = nn.Linear(b * 32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape ``(N, num_classes)`` for a ``(N, 3, 224, 224)`` input."""
        out = self.layer_1(x)
        out = self.layer_2(out)
        out = self.layer_3(out)
        out = self.layer_4(out)
        out = self.layer_5(out)
        out = self.avgpool(out)
        out = out.view(out.size(0), -1)
        out = self.fc_layer(out)
        return out


def codereview_resnet50(base_dim: int = 64, num_classes: int = 2) -> ResNet:
    """Build the blog post's ResNet-50 (39,423,874 parameters with the defaults)."""
    return ResNet(base_dim=base_dim, num_classes=num_classes)
