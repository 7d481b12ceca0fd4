"""Text of the header and of the details pane (rich Text, no Textual, no torch)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from shapetrace.domain import domain_text
from shapetrace.report import Node, Report, format_shape
from shapetrace.safetext import plain
from shapetrace.views.summary import heading, totals_lines
from shapetrace.views.tree import NOT_REACHED, format_params, shape_text
from shapetrace.views.tui.outline import (
    BOUND,
    BREAKS,
    CHANGED_MARK,
    CHANGED_STYLE,
    DEPENDENCE_STYLE,
    FAILED_STYLE,
    FIXED,
    NOT_REACHED_STYLE,
    SCALES,
    STATE_MEANING,
    Outline,
    row_state,
)

_AXES = {1: ("L",), 2: ("H", "W"), 3: ("T", "H", "W")}
_LABEL_WIDTH = 11


def depth_text(depth: int | None) -> str:
    return "all" if depth is None else str(depth)


def header_text(report: Report, depth: int | None, folded: bool = False) -> Text:
    """Model, input, depth; then the break, the verdict (which says how to fix it) and the
    accepted sizes, every line of them: this is the answer the first screen leads with."""
    text = Text()
    text.append(plain(heading(report)), style="bold")
    if not folded:  # folded to the answer: the table's ▸ marks say so
        text.append(f" · depth {depth_text(depth)}", style="dim")
    failure = report.failure
    verdict = report.verdict or ""
    if failure is not None and failure.message not in verdict:
        text.append("\n")
        text.append("✗ Breaks: " + plain(failure.message), style=FAILED_STYLE)
    if verdict:
        text.append("\n")
        text.append("Verdict: ", style="bold")
        text.append(plain(verdict), style="bold red" if failure is not None else "bold")
    domain = domain_text(report)
    if domain:
        text.append("\n")
        text.append("Accepts: ", style="bold")
        text.append(plain(domain))
    if failure is None and not verdict:
        text.append("\n")
        text.append("✓ runs at this input", style="green")
    return text


def totals_text(report: Report) -> Text:
    """Parameter and cost totals, dead modules (shown when the terminal is tall enough).

    A report estimated from the formulas may lack the total MACs (an op whose cost does not
    scale with its output) and lacks the peak activation memory (the meta run gives them):
    their lines say they are coming, so the totals keep their height and the screen its
    layout while the analysis confirms."""
    lines = totals_lines(report)
    totals = report.totals
    if "estimated" in report.source:
        if "macs" not in totals:
            lines.insert(1, "MACs: …")
        if totals.get("peak_activation_bytes") is None:
            lines.insert(2, "Peak activation memory: …")
    return Text("\n".join(plain(line) for line in lines), style="dim")


def legend_text(changed: bool = False) -> Text:
    """One line naming the colours of the Input size states (and the change mark)."""
    text = Text()
    for state, words in (
        (BREAKS, "✗ breaks here"),
        (BOUND, "bound: limits the input size"),
        (SCALES, "scales"),
        (FIXED, "fixed"),
    ):
        if text:
            text.append(" · ", style="dim")
        text.append(words, style=DEPENDENCE_STYLE[state])
    if changed:
        text.append(" · ", style="dim")
        text.append(CHANGED_MARK + "changed", style=CHANGED_STYLE)
    return text


def loading_header(model: str, inputs: str) -> Text:
    """What the header says while the first analysis runs."""
    text = Text()
    text.append(plain(model), style="bold")
    text.append(f" · input {plain(inputs) or 'default'}")
    text.append("\nAnalysing… (importing torch takes a few seconds)", style="italic")
    return text


def _line(text: Text, label: str, value: str | Text, style: str = "") -> None:
    if text:
        text.append("\n")
    text.append(label.ljust(_LABEL_WIDTH), style="bold dim")
    if isinstance(value, Text):
        text.append_text(value)
    else:
        text.append(plain(value), style=style)


def _names(names: list[str], limit: int = 12) -> str:
    if not names:
        return "-"
    shown = ", ".join(names[:limit])
    return shown + (f" … (+{len(names) - limit})" if len(names) > limit else "")


def rf_axes(rf: dict[str, Any]) -> str:
    """`{"size": [427, 427], "stride": [32, 32], "padding": [211, 211]}` ->
    `H 427 stride 32 padding 211 · W 427 stride 32 padding 211`."""
    if rf.get("global"):
        return "the whole input (global)"
    if "flattened" in rf:
        return "flattened, keeps " + rf_axes(rf["flattened"])
    if "unknown" in rf:
        return f"unknown ({rf['unknown']})"
    size = rf.get("size") or []
    axes = _AXES.get(len(size), tuple(f"d{i}" for i in range(len(size))))
    parts = []
    for i, axis in enumerate(axes):
        part = f"{axis} {size[i]}"
        for key in ("stride", "padding"):
            values = rf.get(key)
            if isinstance(values, list) and i < len(values):
                part += f" {key} {values[i]}"
        parts.append(part)
    text = " · ".join(parts)
    if rf.get("uniform") is False:
        text += " (largest; varies between units)"
    if rf.get("misaligned"):
        text += " (misaligned branches)"
    return text


def _coverage(node: Node) -> str | None:
    if node.rf_covers_input is None:
        return None
    text = "covers the whole input" if node.rf_covers_input else "does not cover the whole input"
    up_to = node.rf_covers_input_up_to
    if up_to:
        text += " (up to " + " x ".join("any" if v is None else str(v) for v in up_to) + ")"
    return text


def _bounds_for(report: Report, names: set[str]) -> list[str]:
    bounds = (report.domain or {}).get("bounds") or []
    return [
        plain(f"{b.get('axis', '?')}: {b.get('constraint', '')}{_implied(b)}")
        for b in bounds
        if isinstance(b, dict) and b.get("node") in names
    ]


def _implied(bound: dict[str, Any]) -> str:
    by = bound.get("implied_by")
    return f" (implied by {', '.join(map(str, by))})" if isinstance(by, list) and by else ""


def details_text(outline: Outline, index: int) -> Text:
    """Everything known about one row: why it breaks or limits the size first, then where it
    sits, what feeds it, its shape, field and cost."""
    report = outline.report
    row = outline.rows[index]
    title = Text(plain(row.name), style="bold")
    title.append(f"  {plain(row.type)}")
    if row.node is not None:
        title.append(f" · {plain(row.node.op)}", style="dim")
    elif row.module is not None:
        title.append(" · module" + (" (collapsed)" if row.kind == "collapsed" else ""), style="dim")
    body = Text()
    members = outline.members(index)
    inside = set(members)
    failure = report.failure
    breaks_here = failure is not None and failure.node in inside
    if failure is not None and breaks_here:
        _line(body, "breaks", failure.message, FAILED_STYLE)
        received = ", ".join(format_shape(s) for s in failure.input_shapes)
        _line(body, "received", received or "-", FAILED_STYLE)
    elif failure is not None and row.status == NOT_REACHED:
        _line(body, "", f"not reached: the model breaks earlier, at {failure.node}", "dim")
    state = row_state(row)
    if state:
        meaning = f"{state}: {STATE_MEANING.get(state, '')}"
        _line(body, "input size", meaning, DEPENDENCE_STYLE.get(state, ""))
    for bound in _bounds_for(report, inside | {row.name}):
        _line(body, "limits", bound, DEPENDENCE_STYLE[BOUND])
    if breaks_here or state == BOUND:
        domain = domain_text(report)
        if domain:
            _line(body, "accepts", domain)
    _shape_lines(body, outline, index)
    if row.node is not None:
        node = row.node
        _line(body, "module", node.module or "-")
        if node.op == "call_function" or node.op == "call_method":
            _line(body, "target", node.target)
        inputs = node.inputs
        users = outline.users.get(node.name, [])
    else:
        _line(body, "module", row.name)
        _line(body, "nodes", f"{len(members)}: {_names(members, 4)}")
        inputs = _unique(n for m in members for n in outline.by_name[m].inputs if n not in inside)
        users = _unique(u for m in members for u in outline.users.get(m, []) if u not in inside)
    _line(body, "inputs", _names(inputs))
    _line(body, "users", _names(users))
    rf = row.rf
    if rf:
        _line(body, "RF", rf_axes(rf))
    if row.node is not None and (coverage := _coverage(row.node)):
        _line(body, "", coverage)
    _line(body, "params", format_params(row.params) if row.params else "0")
    if row.module is not None and row.module.calls > 1:
        _line(body, "calls", str(row.module.calls))
    source = row.node if row.node is not None else row.module
    macs = getattr(source, "macs", None)
    if macs is not None:
        _line(body, "MACs", f"{macs:,}")
    text = Text()
    text.append_text(title)
    text.append("\n")
    text.append_text(body)
    return text


def _shape_lines(body: Text, outline: Outline, index: int) -> None:
    row = outline.rows[index]
    state = row_state(row)
    if state == BREAKS and row.shape is None:
        _line(body, "shape", "✗ breaks here", FAILED_STYLE)
    elif row.status == NOT_REACHED:
        _line(body, "shape", "not reached", NOT_REACHED_STYLE)
    else:
        shape = shape_text(row)
        if row.node is not None and row.node.dtype:
            shape += f"  {row.node.dtype}"
        _line(body, "shape", shape, DEPENDENCE_STYLE.get(state or "", ""))
    if row.name in outline.changed:
        _line(body, "", CHANGED_MARK + "changed since the last input size", CHANGED_STYLE)
    formula = row.node.shape_formula if row.node is not None else None
    if formula:
        _line(body, "formula", "(" + ", ".join(formula) + ")")


def _unique(names: Any) -> list[str]:
    return list(dict.fromkeys(names))
