"""The view of `shapetrace check`: one line per input size, control characters of node names
and messages made visible."""

from __future__ import annotations

from shapetrace.report import format_shape
from shapetrace.safetext import plain
from shapetrace.tasks.runner import CheckResult


def line(result: CheckResult) -> str:
    """`224x224: accepted, output (1, 2)` or `448x448: rejected at fc_layer: <why>`."""
    if result.accepted:
        return plain(f"{result.size}: accepted, output {format_shape(result.output_shape)}")
    verb = "rejected at" if result.status == "rejected" else "cannot tell past"
    return plain(f"{result.size}: {verb} {result.node}: {result.reason}")
