"""Models a hostile or careless user could hand shapetrace, each for one safety decision."""

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

# Not modules: `pkg.mod:Name` must refuse to call these.
system = os.system
print_it = print
SHOUT = "not a model"


class NotAModule:
    """A class, but not an nn.Module: instantiating it runs arbitrary code."""

    def __init__(self) -> None:
        raise AssertionError("NotAModule was instantiated")


class Callable_:
    """A callable object (not a function): calling it runs arbitrary code."""

    def __call__(self) -> nn.Module:
        raise AssertionError("a callable object was called")


callable_object = Callable_()


def returns_a_string() -> str:
    return "not a module"


class ExitsInConstructor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        sys.exit(0)


class ExitsInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sys.exit(0)


class ExitsOnValues(nn.Module):
    """Untraceable (branches on a value), so the hook run calls forward and exits there."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            return y
        sys.exit(0)


class ExitsInMetaRun(nn.Module):
    """Traceable, but a leaf module's forward exits when the graph runs on meta tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = _ExitingReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _ExitingReLU(nn.Softmax):
    """In torch.nn's namespace as far as the tracer's leaf test goes, so it is kept whole."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(0)


_ExitingReLU.__module__ = "torch.nn.modules.activation"


class ContainsItself(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.me = self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


scripted = torch.jit.script(_Small())


class ECAStem(nn.Module):
    """ECA-style: a functional conv stem on 3 channels, then a channel attention whose Conv1d
    over 1 channel is the first `call_module` convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(8, 3, 3, 3))
        self.conv1d = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight)
        attention = F.adaptive_avg_pool2d(y, 1)  # N x 8 x 1 x 1
        attention = self.conv1d(attention.squeeze(-1).transpose(-1, -2))  # N x 1 x 8
        attention = attention.transpose(-1, -2).unsqueeze(-1).sigmoid()
        return y * attention


class ExitsAfterLoop(nn.Module):
    """Untraceable (iterates over a tensor), so the eager hook run reaches the sys.exit()."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [row for row in self.conv(x)]
        if rows:
            sys.exit(0)
        return rows[0]


class Stop(BaseException):
    """Neither an Exception nor an interrupt, like GeneratorExit."""


class RaisesBaseException(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise Stop()


class ContainsAncestor(nn.Module):
    """A child holding its parent: the cycle is one level down."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3))
        self.block.add_module("owner", self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block[0](x)


def make_contains_itself() -> nn.Module:
    return ContainsItself()
