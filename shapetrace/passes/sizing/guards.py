"""Guards of a symbolic-shape capture in the domain: the model's own size checks, quoted.

A model fx cannot trace is captured by `torch.export` (`shapetrace.capture_symbolic`); the
shape-dependent Python it ran leaves guards on the input sizes. Guards under which the model
raises (`rejects`) are in the graph as hidden `torch._assert` checks, so the propagator turns
them into constraints like any `torch._assert`; here they get the model's own message instead
of the assert's formula. What the guards leave open (another path the model takes at other
sizes, a guard no operator spells, data-dependent sizes) is listed in `domain["open"]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shapetrace.passes import PassContext
from shapetrace.passes.sizing.domain import SizeAnalysis
from shapetrace.passes.sizing.expr import Poly
from shapetrace.passes.sizing.paths import question, where_text
from shapetrace.passes.sizing.tensors import Message


def quote_guards(analysis: SizeAnalysis) -> None:
    """Give the constraints of the capture's guard checks the model's own words."""
    symbolic = analysis.context.capture.symbolic
    if symbolic is None:
        return
    by_line: dict[tuple[str | None, int | None], str] = {}
    for c in analysis.constraints:
        guard = symbolic.checks.get(c.node)
        if guard is not None:
            # One sentence per line of the model's (`if h % 32 or w % 32:` guards H and W).
            text = by_line.setdefault((guard.file, guard.line), _rejection(guard))
            c.kind = "guard"
            c.message = _said(text)


def _said(text: str) -> Message:
    def message(value: Callable[[Poly], int]) -> str:
        return text

    return message


def open_questions(context: PassContext) -> None:
    """`domain["open"]`: what the capture's guards leave unknown, one entry per question (the
    domain lists those that leave sizes unknown already)."""
    symbolic = context.capture.symbolic
    report = context.report
    if symbolic is None or report.domain is None:
        return
    listed = {entry.get("guard") for entry in report.domain.get("open") or []}
    found: list[dict[str, Any]] = []
    for guard in symbolic.guards:
        if guard.text in listed:
            continue
        entry = _question(symbolic, guard)
        if entry is not None:
            found.append(entry)
    for unbacked in symbolic.unbacked:
        found.append(
            {
                "node": unbacked.nodes[0],
                "reason": f"size {unbacked.symbol} depends on tensor values "
                f"({', '.join(unbacked.nodes)})",
            }
        )
    if found:
        report.domain.setdefault("open", []).extend(found)


def _question(symbolic: Any, guard: Any) -> dict[str, Any] | None:
    if guard.kind == "path":
        return question(symbolic, guard)
    where = where_text(guard)
    if guard.kind == "data" and getattr(guard, "assumed", False):
        reason = (
            f"assumed {guard.text}: the model branches on a size that depends on tensor values "
            f"({where}); the capture took the branch for a non-empty size, the other is not "
            "captured"
        )
    elif guard.kind == "data":
        reason = f"{guard.text} depends on tensor values ({where})"
    else:
        return None
    return {"node": guard.module or "", "guard": guard.text, "reason": reason}


def _rejection(guard: Any) -> str:
    said = f': "{guard.message}"' if guard.message else ""
    return f"the model's own check at {where_text(guard)} rejects other sizes{said}"


__all__ = ["open_questions", "quote_guards"]
