"""Receptive fields as short text for the views (no torch import)."""

from __future__ import annotations

from typing import Any


def format_rf(rf: dict[str, Any]) -> str:
    """`size/stride` of a node's or module's `rf`, as the report carries it.

    `427/32`; per axis when the axes differ, `427x211/32x16`; the field before a flatten for a
    flattened one; `≤7/(1/2)` for a field that is not the same for every unit (the largest size,
    a fractional stride); a trailing ` !` on a merge of misaligned branches; `global`; `?` when
    unknown.
    """
    if rf.get("global"):
        return "global"
    if "unknown" in rf:
        return "?"
    mark = " !" if rf.get("misaligned") else ""
    if "flattened" in rf:
        return format_rf(rf["flattened"]) + mark
    stride = _per_axis(rf.get("stride", []))
    if "/" in stride:
        stride = f"({stride})"
    prefix = "≤" if rf.get("uniform") is False else ""
    return f"{prefix}{_per_axis(rf.get('size', []))}/{stride}{mark}"


def _per_axis(values: list[Any]) -> str:
    if values and all(v == values[0] for v in values[1:]):
        return str(values[0])
    return "x".join(str(v) for v in values)
