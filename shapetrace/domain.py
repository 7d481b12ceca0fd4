"""The accepted domain a Report carries: whether it holds given sizes, and its text.

A domain is plain data (see docs/input-size.md): per axis a list of segments `[lo, hi]` or
`[lo, hi, step]` (`hi` None when unbounded), and `bounds`, the nodes that limit it. This
module does not import torch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the Report imports this module (Report.at)
    from shapetrace.report import Report


def in_domain(domain: dict[str, Any], sizes: dict[str, int]) -> bool | None:
    """Does the domain accept these sizes? Axes a coupled bound ties together are judged by
    its combinations; None when such a bound lists none. A domain left open by an op without a
    size rule proves only its own sets: sizes outside them that the known rules still allow
    (`possible`) are None, unknown, not rejected. For a capture whose graph holds on a path of
    sizes (guards in `open`), sizes moving more than one axis from `at` are None; where it ended
    at a call it could not follow (an `open` entry with `cut`), no size is known to be
    accepted."""
    at = domain.get("at") or {}
    moved = [a for a, n in sizes.items() if a in at and at[a] != n]
    if len(moved) > 1 and _on_paths(domain):
        # Each axis's sets hold with the others at `at`; a capture's path can change with
        # another axis (a window chosen from the width), so sizes moving several axes at once
        # are not decided by them.
        return None
    proven = _in_proven(domain, sizes)
    if proven is True and any(e.get("cut") for e in domain.get("open") or []):
        # The capture ended at a call it could not follow: the sets hold for the graph up to
        # that call, and what the rest of the forward accepts is unknown.
        return None
    if proven is not False or not domain.get("open"):
        return proven
    possible = domain.get("possible") or {}
    if all(a in possible and _member(possible[a], n) for a, n in sizes.items()):
        return None
    return False


_DATA_SIZE = re.compile(r"\bu[0-9]+\b")


def _on_paths(domain: dict[str, Any]) -> bool:
    """Whether the domain comes from a capture whose graph holds only on a path of sizes (an
    `open` entry names a guard on the input's sizes, or an axis the export fixed)."""
    for entry in domain.get("open") or []:
        guard = entry.get("guard")
        if guard is not None and not _DATA_SIZE.search(str(guard)):
            return True
        if entry.get("pinned") is not None:  # an axis the export fixed
            return True
    return False


def _in_proven(domain: dict[str, Any], sizes: dict[str, int]) -> bool | None:
    coupled = [b for b in domain.get("bounds", []) if b.get("kind") == "coupled"]
    tied: set[str] = set()
    for bound in coupled:
        axes = bound["axis"].split(",")
        if not all(a in sizes for a in axes):
            continue
        tied.update(axes)
        combos = bound.get("combinations")
        if combos is None:
            return None
        if not any(all(_member(c[a], sizes[a]) for a in axes) for c in combos):
            return None if bound.get("omitted") else False
    # Each combination lies inside the axes' own sets; the other axes are checked alone.
    return all(_member(domain[a], n) for a, n in sizes.items() if a not in tied)


def _member(segments: list[list[int | None]], n: int) -> bool:
    for seg in segments:
        lo, hi = seg[0], seg[1]
        step = seg[2] if len(seg) > 2 and seg[2] else 1
        if lo is not None and n >= lo and (hi is None or n <= hi) and (n - lo) % step == 0:
            return True
    return False


def domain_text(report: Report) -> str | None:
    """`H in [1, ∞), W in [1, ∞)` from the accepted domain, if computed."""
    if not report.domain:
        return None
    parts = []
    for axis, spans in report.domain.items():
        if axis in ("bounds", "open") or not isinstance(spans, list):
            continue
        texts = []
        for span in spans:
            lo, hi = span[0], span[1]
            step = span[2] if len(span) > 2 else 1
            text = f"[{lo}, {hi}]" if hi is not None else f"[{lo}, ∞)"
            if step and step != 1:
                text += f" step {step}"
            texts.append(text)
        parts.append(f"{axis} in {' ∪ '.join(texts) if texts else 'no size'}")
    if not parts:
        return None
    text = ", ".join(parts)
    open_nodes = [str(entry.get("node")) for entry in report.domain.get("open") or []]
    if open_nodes:
        text += f"; beyond it unknown: {', '.join(dict.fromkeys(open_nodes))} left open"
    return text
