"""Receptive fields as short text for the views (no torch import)."""

from __future__ import annotations

from typing import Any


def format_rf(rf: dict[str, Any]) -> str:
    """`{"size": [427, 427], "stride": [32, 32], ...}` -> `427/32`; per axis when they differ."""
    if rf.get("global"):
        return "global"
    if "flattened" in rf:
        return format_rf(rf["flattened"])
    if "unknown" in rf:
        return "?"
    size, stride = rf.get("size", []), rf.get("stride", [])
    if len(set(map(str, size))) == 1 and len(set(map(str, stride))) == 1 and size:
        return f"{size[0]}/{stride[0]}"
    return "x".join(map(str, size)) + "/" + "x".join(map(str, stride))
