"""Placeholder entry point, filled in by its issue."""

from __future__ import annotations

from shapetrace.passes import PassContext


def run(context: PassContext) -> None:
    """Annotate the report in place."""
