"""Models that stop shapetrace in different ways, each for one exit-code decision."""

import torch
from torch import nn


class ValueBranch(nn.Module):
    """`if x.sum() > 0`: fx cannot trace it; the eager meta run stops at bool() of a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            return y
        return -y


class Nonzero(nn.Module):
    """Traceable, but `torch.nonzero`'s output size depends on values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(self.conv(x))


class BoolMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[y > 0]


class ItemSize(nn.Module):
    """int(x.sum().item()): fx fails with a TypeError, the meta run at reading the value."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n = int(y.sum().item())
        return y[:, :n]


class ToList(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> list[float]:
        return self.conv(x).flatten().tolist()


class CpuConstant(nn.Module):
    """Creates a tensor on the CPU explicitly, as detectors' anchor generators do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + torch.ones_like(y, device="cpu")


class ShapeBranchCpuConstant(CpuConstant):
    """The same CPU tensor behind a branch on the input's width, which fx cannot trace: the
    symbolic capture and then the hooks run meet it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if x.shape[-1] > 4:
            y = y * 2
        return y + torch.ones_like(y, device="cpu")


class LoopThenWrongFeatures(nn.Module):
    """Untraceable (iterates over a tensor), and its Linear does not fit: a real rejection."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [row for row in x]
        return self.fc(torch.stack(rows))


class RaisesMetaLikeText(nn.Module):
    """Raises, from its own code, with the words torch uses for meta-tensor limits: the text
    must not turn the model's own error into shapetrace's limitation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError(
            "Tensor.item() cannot be called on meta tensors; data-dependent nonzero()"
        )


class ControlFlowText(nn.Module):
    """Raises a ValueError that reads like fx's control-flow message while being traced."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("symbolically traced variables cannot be used as inputs to control flow")
