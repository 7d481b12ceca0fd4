"""Small models that call ops the way people's own models do, one family or spelling each:
the probes of the op registry's coverage test. Each takes a 1 x 3 x H x W image (H, W even)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Resampling(nn.Module):
    """nn.Upsample, F.interpolate (bilinear), pixel_shuffle and pixel_unshuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.conv(x))
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        x = F.pixel_unshuffle(x, 2)  # 32 channels at half size
        return self.shuffle(x)  # 8 channels at full size


class Windows(nn.Module):
    """LPPool2d, a functional conv with padding="same", a dilated functional pool, F.unfold."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(6, 3, 3, 3))
        self.lp = nn.LPPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, padding="same")
        x = self.lp(x)
        x = F.max_pool2d(x, 3, stride=1, padding=1)
        cols = F.unfold(x, kernel_size=2, stride=2)  # N x 6*4 x positions
        return cols.sum(-1)


class Plumbing(nn.Module):
    """narrow, swapaxes, Tensor.unfold, chunk along channels, cat, flip, expand, softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        a, b = x.chunk(2, dim=1)
        x = torch.cat([b, a], dim=1).flip(1)
        x = x.narrow(1, 0, 6)
        x = x.swapaxes(2, 3).swapaxes(2, 3)
        weights = x.mean(dim=(2, 3), keepdim=True).softmax(dim=1)
        x = x * weights.expand_as(x)
        patches = x.unfold(3, 2, 2)  # N x C x H x W/2 x 2
        return patches.sum(-1)


class Tokens(nn.Module):
    """Patch embedding, LayerNorm, attention through F.sdpa, projections by einsum and bmm."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.norm = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # N x L x 16
        x = self.norm(x)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn = F.scaled_dot_product_attention(q, k, v)
        mixed = torch.einsum("nld,de->nle", v, self.qkv.weight[:16, :16])
        mixed = torch.bmm(mixed, self.qkv.weight[16:32, :16].t().expand(x.shape[0], 16, 16))
        return self.head((attn + mixed).mean(1))


PROBES: dict[str, type[nn.Module]] = {
    "resampling": Resampling,
    "windows": Windows,
    "plumbing": Plumbing,
    "tokens": Tokens,
}
