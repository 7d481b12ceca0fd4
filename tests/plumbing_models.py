"""Everyday tensor plumbing, written the way people write it in their own models: the patterns
where the accepted-size domain has to be exact (issue 13). Each takes N x 3 x H x W."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OcrHead(nn.Module):
    """CRNN: convolutions bring the height to 1, `squeeze(2)` drops it, a Linear per column."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
            nn.MaxPool2d((4, 1)),
        )  # fmt: skip
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x).squeeze(2)  # N x 8 x W/2: works only where the height became 1
        return self.fc(x.permute(0, 2, 1))


class CropThenLinear(nn.Module):
    """A centre crop by slicing, then a Linear over the flattened crop."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)[:, :, 2:-2, 2:-2]
        return self.fc(torch.flatten(x, 1))


class LastColumns(nn.Module):
    """`x[..., -4:]`: the last four columns, whatever the width (at least 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[..., -4:]


def _centre_crop(skip: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    dh = (skip.shape[2] - like.shape[2]) // 2
    dw = (skip.shape[3] - like.shape[3]) // 2
    return skip[:, :, dh : dh + like.shape[2], dw : dw + like.shape[3]]


class ValidUNet(nn.Module):
    """The classic U-Net with valid convolutions: skips are centre-cropped to the upsampled map."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.out = nn.Sequential(nn.Conv2d(8, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.down(x)
        y = self.up(self.mid(self.pool(skip)))
        return self.out(torch.cat([_centre_crop(skip, y), y], dim=1))


class SpaceToDepth(nn.Module):
    """A view built from `x.shape`: every even size works."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return self.conv(x.reshape(n, c * 4, h // 2, w // 2))


class UpToSkip(nn.Module):
    """`ConvTranspose2d(..., output_size=skip.shape)`: the upsampled map matches any skip."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.down(x), output_size=x.shape)


class SplitRows(nn.Module):
    """chunk along H: two halves added together, so H must be even."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = x.chunk(2, dim=2)
        return top + bottom


class Unshuffle(nn.Module):
    """pixel_unshuffle by 2: H and W must be even."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(12, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pixel_unshuffle(x, 2))


class PoolUnpool(nn.Module):
    """MaxPool2d with indices, then MaxUnpool2d back to the input's size."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, indices = self.pool(x)
        return self.unpool(y, indices, output_size=x.shape)


class BroadcastAdd(nn.Module):
    """upsample(strided conv(x)) + x: works at H = 1 (a 1-row map broadcasts) and at even H."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 3, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x)) + x


class SqueezeAll(nn.Module):
    """Global pool then `squeeze()`: at N = 1 it drops the batch dim too."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 1).squeeze())


class LeNet(nn.Module):
    """LeNet-5 with `view(-1, 400)`: 16 x 5 x 5 features arrive only at 32x32..35x35."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(400, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(x.view(-1, 400))


def drop_last_row(x: torch.Tensor) -> torch.Tensor:
    """A function of the model's own, kept whole by tracing: no size rule knows it."""
    return x[:, :, :-1]


torch.fx.wrap("drop_last_row")


class OwnFunction(nn.Module):
    """A convolution, then a function of the model's own that changes the height."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_last_row(self.conv(x))


class Kron(nn.Module):
    """`torch.kron` with a 2x2 block: every size works, but no size rule says so."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return torch.kron(y, y.new_ones(1, 1, 2, 2))


class AddFixedMap(nn.Module):
    """A map added to one of fixed size (14 x 14): equal sizes, or a map of 1 that broadcasts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + y.new_zeros(1, 4, 14, 14)
