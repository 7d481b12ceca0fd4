"""Writing the current view to a file: an SVG diagram, Markdown, or the JSON report."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from shapetrace.errors import UsageError
from shapetrace.report import Report
from shapetrace.views.markdown import render as render_markdown

FORMATS = {".svg": "svg", ".md": "markdown", ".markdown": "markdown", ".json": "json"}


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
        raise UsageError(f"{path.name}: use a .svg, .md or .json name")
    if fmt == "svg":
        if not diagrams_available():
            raise UsageError("SVG export needs the diagram view; save as .md or .json")
        from shapetrace.views.dot import write_diagram

        write_diagram(report, str(path), "svg", depth=depth)
        return fmt
    text = render_markdown(report, depth) if fmt == "markdown" else report.to_json()
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return fmt
