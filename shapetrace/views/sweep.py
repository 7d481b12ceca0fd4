"""Views of a sweep (`shapetrace sweep`): aligned text columns, Markdown and JSON, each with the
domain, aligned sizes and verdict below the sizes. Nothing here imports torch. Node names and
messages are the model's: control characters are made visible in text, HTML escaped in
Markdown (`shapetrace.safetext`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shapetrace.report import format_shape
from shapetrace.safetext import html_text, plain
from shapetrace.tasks.sweep import Sweep


def domain_text(domain: dict[str, Any], axes: Sequence[str]) -> str:
    """`H in [193, 224]; W >= 1`, progressions as `H in {16, 32, ...}`."""
    parts = []
    for axis in axes:
        items = []
        for seg in domain.get(axis, []):
            lo, hi = seg[0], seg[1]
            step = seg[2] if len(seg) > 2 else 1
            if step > 1:
                items.append(f"in {{{lo}, {lo + step}, ..." + ("}" if hi is None else f", {hi}}}"))
            elif hi is None:
                items.append(f">= {lo}")
            else:
                items.append(f"= {lo}" if hi == lo else f"in [{lo}, {hi}]")
        parts.append(f"{axis} " + (" or ".join(items) if items else "accepts nothing"))
    return "; ".join(parts)


def _columns(s: Sweep) -> list[list[str]]:
    rows = []
    for row in s.rows:
        r = row.result
        if r.accepted:
            what = format_shape(r.output_shape)
        else:
            verb = "" if r.status == "rejected" else "cannot tell past "
            what = f"{verb}{r.node}: {r.reason}"
        domain = {True: "accepts", False: "rejects", None: "?"}[row.in_domain]
        if row.agrees is False:
            domain += " (disagrees)"
        rows.append([plain(r.size), r.status, plain(what), domain])
    return rows


_HEADER = ["size", "status", "output shape, or where it breaks", "domain"]


def _footer(s: Sweep) -> list[str]:
    rejected = sum(not row.result.accepted for row in s.rows)
    limits = list(
        dict.fromkeys(
            b["node"]
            for b in s.domain.get("bounds", [])
            if b.get("kind") != "inexact" and not b.get("implied_by")
        )
    )
    set_by = f" (set by {', '.join(limits)})" if limits else ""
    lines = [f"Domain: {domain_text(s.domain, s.axes)}{set_by}"]
    for bound in s.domain.get("bounds", []):
        combos = bound.get("combinations")
        if bound.get("kind") == "coupled" and combos:
            axes = bound["axis"].split(",")
            shown = "; ".join(domain_text(c, axes).replace("; ", " with ") for c in combos[:8])
            tail = f"; and {len(combos) - 8} more" if len(combos) > 8 else ""
            lines.append(f"Coupled at {bound['node']}: {shown}{tail}")
    aligned = {a: m for a, m in (s.aligned_multiple or {}).items() if m > 1}
    if aligned and len(set(aligned.values())) == 1:
        lines.append(
            f"Aligned sizes: {', '.join(aligned)} multiples of {aligned[next(iter(aligned))]}"
        )
    elif aligned:
        lines.append(
            "Aligned sizes: " + ", ".join(f"{a} multiples of {m}" for a, m in aligned.items())
        )
    if s.verdict:
        lines.append(f"Verdict: {s.verdict}")
    lines.append(f"{len(s.rows) - rejected} of {len(s.rows)} sizes accepted.")
    return [plain(line) for line in lines]


def render_table(s: Sweep) -> str:
    """Aligned plain-text columns, then the domain, aligned sizes and verdict."""
    rows = [_HEADER, *_columns(s)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    lines = [plain(f"{s.model} · input {s.input} · sweep of {', '.join(s.axes)}"), ""]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join([*lines, "", *_footer(s)]) + "\n"


def render_markdown(s: Sweep) -> str:
    """A Markdown table, then the domain, aligned sizes and verdict."""

    def cell(text: str) -> str:
        return html_text(text).replace("|", "\\|")

    lines = [cell(f"## {s.model}: sweep of {', '.join(s.axes)} (input {s.input})"), ""]
    lines.append("| " + " | ".join(_HEADER) + " |")
    lines.append("|" + "---|" * len(_HEADER))
    for r in _columns(s):
        lines.append("| " + " | ".join(cell(c) for c in r) + " |")
    return "\n".join([*lines, "", *(f"{cell(line)}  " for line in _footer(s))]) + "\n"


def render(s: Sweep, fmt: str) -> str:
    """The sweep in `fmt`: table, markdown or json."""
    if fmt == "json":
        return json.dumps(s.to_dict(), indent=1) + "\n"
    return render_markdown(s) if fmt == "markdown" else render_table(s)
