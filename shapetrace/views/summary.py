"""Text shared by the table and Markdown views: the heading facts, totals, and the diagnosis.

Every line comes with control characters made visible (`safetext.plain`): names, paths and
messages are the model's or the report's, not ours. Views escape markup or HTML on top."""

from __future__ import annotations

from shapetrace.domain import domain_text
from shapetrace.report import Report, format_shape
from shapetrace.safetext import plain
from shapetrace.views.tree import format_bytes


def heading(report: Report) -> str:
    """`resnet50 · input (1, 3, 448, 448) · eval · traced with fx`."""
    inputs = ", ".join(report.source.get("input", [])) or format_shape(report.input)
    return plain(
        f"{report.model} · input {inputs} · {report.source.get('mode', 'eval')} · "
        f"traced with {report.source.get('trace', 'fx')}"
    )


def totals_lines(report: Report) -> list[str]:
    """Parameter totals, then dead and train-only modules."""
    t = report.totals
    lines = [
        f"Total params: {t['params']:,} (trainable {t['trainable_params']:,}, "
        f"{t['param_bytes'] / 2**20:,.1f} MiB); buffers: {t['buffers']:,} elements"
    ]
    if "macs" in t:
        lines.append(cost_line(report))
    if t.get("peak_activation_bytes") is not None:
        lines.append(f"Peak activation memory: {format_bytes(t['peak_activation_bytes'])}")
    if report.dead_modules:
        total = sum(m["params"] for m in report.dead_modules)
        names = ", ".join(m["path"] for m in report.dead_modules)
        lines.append(f"Never called: {names} ({total:,} params)")
    if report.train_only_modules:
        total = sum(m["params"] for m in report.train_only_modules)
        names = ", ".join(m["path"] for m in report.train_only_modules)
        lines.append(f"Called only in training: {names} ({total:,} params)")
    return [plain(line) for line in lines]


def cost_line(report: Report) -> str:
    """`MACs: 4,089,184,256; FLOPs: ...`, or `MACs: at least ...` naming the ops left out."""
    t = report.totals
    left_out = [n for n in report.nodes if n.macs is None and n.missing and "macs" in n.missing]
    if not left_out and not t.get("uncounted"):
        return f"MACs: {t['macs']:,}; FLOPs: {t.get('flops', 0):,}"
    kinds = list(dict.fromkeys([*t.get("uncounted", []), *(n.type for n in left_out)]))
    count = f"{len(left_out)} ops" if left_out else "some ops"
    return (
        f"MACs: at least {t['macs']:,} ({count} uncounted: {', '.join(kinds)}); "
        f"FLOPs: at least {t.get('flops', 0):,}"
    )


def diagnosis_lines(report: Report) -> list[str]:
    """The break (if any), the accepted sizes and the verdict."""
    lines = []
    if report.failure is not None:
        lines.append(f"Breaks: {report.failure.message}")
    domain = domain_text(report)
    if domain:
        lines.append(f"Accepts: {domain}{attribution_text(report)}")
    if report.verdict:
        lines.append(f"Verdict: {report.verdict}")
    return [plain(line) for line in lines]


def attribution_text(report: Report) -> str:
    """` (set by fc_layer; implied: avgpool)`: the bound nodes the domain is attributed to and
    the nodes whose constraints they imply; empty when no node limits the size."""
    data = (report.domain or {}).get("attribution")
    if not isinstance(data, dict):
        return ""
    bound = [str(n) for n in data.get("bound") or [] if isinstance(n, str)]
    implied = [str(n) for n in data.get("implied") or {}]
    if not bound:
        return ""
    text = f"set by {', '.join(bound)}"
    if implied:
        more = f" and {len(implied) - 4} more" if len(implied) > 4 else ""
        text += f"; implied: {', '.join(implied[:4])}{more}"
    return f" ({text})"
