"""Analysis passes. Each reads the captured graph and the shape results and writes typed fields
on the Report's nodes and modules; each has one entry point, `run(context)`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import fx, nn

    from shapetrace.capture import Capture
    from shapetrace.inputs import TensorSpec
    from shapetrace.passes.shapes import ShapeResult
    from shapetrace.report import Node, Report


@dataclass
class PassContext:
    """What every pass may read: the model (on meta), its capture, the shape results, the report
    being built (nodes in graph order, as `capture.nodes()`), the input specs and meta inputs."""

    model: nn.Module
    capture: Capture
    shapes: ShapeResult
    report: Report
    specs: list[TensorSpec]
    inputs: list[Any]
    by_fx: dict[fx.Node, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.by_fx:
            self.by_fx = dict(zip(self.capture.nodes(), self.report.nodes, strict=True))
