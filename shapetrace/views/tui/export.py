"""Writing the current view to a file: a diagram (SVG, PNG, PDF, DOT), Markdown, or the JSON
report. Every file is written atomically (a temporary file beside it, renamed into place)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from shapetrace.errors import UsageError
from shapetrace.outputs import write_text
from shapetrace.report import Report
from shapetrace.views.markdown import render as render_markdown

DIAGRAM_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot"}
FORMATS = {**DIAGRAM_FORMATS, ".md": "markdown", ".markdown": "markdown", ".json": "json"}
SUFFIXES = ".svg, .png, .pdf, .dot, .md or .json"


def diagrams_available() -> bool:
    """True when the diagram view can be imported (SVG export); Markdown is the fallback."""
    return importlib.util.find_spec("shapetrace.views.dot") is not None


def default_name(report: Report, depth: int | None) -> str:
    """`resnet50_1x3x448x448.svg` (`_d2` when collapsed to depth 2); `.md` without diagrams."""
    model = report.model.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", model) or "model"
    if report.input:
        stem += "_" + "x".join(str(d) for d in report.input)
    if depth is not None:
        stem += f"_d{depth}"
    return stem + (".svg" if diagrams_available() else ".md")


def export(report: Report, path: str | Path, depth: int | None) -> str:
    """Write `report` at `depth` to `path`, the format chosen by its suffix; return the format."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path.name}: use a {SUFFIXES} name")
    if fmt in DIAGRAM_FORMATS.values():
        if not diagrams_available():
            raise UsageError(f"{fmt.upper()} export needs the diagram view; save as .md or .json")
        from shapetrace.views.dot import write_diagram

        write_diagram(report, str(path), fmt, depth=depth)
        return fmt
    text = render_markdown(report, depth) if fmt == "markdown" else report.to_json()
    write_text(path, text if text.endswith("\n") else text + "\n")
    return fmt
