"""A zoo of ResNet models for exercising shapetrace.

``ZOO`` maps a model name to a builder that accepts keyword arguments (such as
``num_classes``) and returns a fresh ``nn.Module``:

* ``codereview_resnet50``: the buggy hand-written ResNet-50 of a blog code review,
  kept bug for bug (see :mod:`shapetrace.zoo.codereview`).
* ``stembodyhead_resnet18`` / ``_resnet34`` / ``_resnet50``: a stem/body/head
  ResNet geometrically identical to torchvision's (see :mod:`shapetrace.zoo.stembodyhead`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from shapetrace.zoo.codereview import codereview_resnet50
from shapetrace.zoo.stembodyhead import (
    stembodyhead_resnet18,
    stembodyhead_resnet34,
    stembodyhead_resnet50,
)

__all__ = ["ZOO"]

ZOO: dict[str, Callable[..., nn.Module]] = {
    "codereview_resnet50": codereview_resnet50,
    "stembodyhead_resnet18": stembodyhead_resnet18,
    "stembodyhead_resnet34": stembodyhead_resnet34,
    "stembodyhead_resnet50": stembodyhead_resnet50,
}
