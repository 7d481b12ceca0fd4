"""Models a user might write, for the source and CLI tests."""

import torch
from torch import nn


class TinyNet(nn.Module):
    """LeNet-like: a hard-coded view before the classifier."""

    def __init__(self, width: int = 6, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(width, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        return self.fc2(torch.relu(self.fc1(x)))


def make_tiny(width: int = 6) -> nn.Module:
    """A factory function, as users often write."""
    return TinyNet(width=width)


class Seq1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(1000, 32)
        self.out = nn.Linear(32, 1000)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids))


class Branchy(nn.Module):
    """Python control flow on a tensor's value: fx cannot trace this."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(x)
        if y.sum() > 0:
            return y
        return -y


class BranchyFirst(nn.Module):
    """Branches on the input's values before any module runs: nothing to report per module."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.gate(x)
        return x


class WrapsBranchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Branchy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + 1


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        raise ValueError("broken constructor")


class KeywordInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * mask


NOT_A_MODEL = 42


class ReturnsDict(nn.Module):
    """A forward that returns a dict holding a tensor and a plain number."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.conv(x)
        return {"features": y, "channels": y.shape[1]}


class InPlace(nn.Module):
    """In-place ops on activations."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y.relu_()
        y += 1
        return y.mul_(2)


class SharedBranches(nn.Module):
    """One convolution used by two branches."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(3, 3, 3, padding=1)
        self.left = nn.Sequential(self.shared, nn.ReLU())
        self.right = nn.Sequential(nn.MaxPool2d(2), self.shared)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.left(x), self.right(x)


class OptionalInput(nn.Module):
    """A forward with an optional second input that changes the path taken."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x).mean((2, 3))
        if y is not None:
            out = out + self.fc(y)
        return out + torch.ones(4)
