"""Text shared by the table and Markdown views: the heading facts, totals, and the diagnosis."""

from __future__ import annotations

from shapetrace.domain import domain_text
from shapetrace.report import Report, format_shape


def heading(report: Report) -> str:
    """`resnet50 · input (1, 3, 448, 448) · eval · traced with fx`."""
    inputs = ", ".join(report.source.get("input", [])) or format_shape(report.input)
    return (
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
        lines.append(f"MACs: {t['macs']:,}; FLOPs: {t.get('flops', 0):,}")
    if report.dead_modules:
        total = sum(m["params"] for m in report.dead_modules)
        names = ", ".join(m["path"] for m in report.dead_modules)
        lines.append(f"Never called: {names} ({total:,} params)")
    if report.train_only_modules:
        total = sum(m["params"] for m in report.train_only_modules)
        names = ", ".join(m["path"] for m in report.train_only_modules)
        lines.append(f"Called only in training: {names} ({total:,} params)")
    return lines


def diagnosis_lines(report: Report) -> list[str]:
    """The break (if any), the accepted sizes and the verdict."""
    lines = []
    if report.failure is not None:
        lines.append(f"Breaks: {report.failure.message}")
    domain = domain_text(report)
    if domain:
        lines.append(f"Accepts: {domain}")
    if report.verdict:
        lines.append(f"Verdict: {report.verdict}")
    return lines
