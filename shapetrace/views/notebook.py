"""A Report in Jupyter: shown as its architecture diagram (as its Markdown table where Graphviz's
`dot` is missing), and `report.diagram(depth=2)` for the `graphviz.Digraph`; `print(report)`
gives the terminal table.

`shapetrace.report` declares those methods and calls the display installed here; `import
shapetrace` installs it. graphviz is imported on first use.
"""

from __future__ import annotations

from typing import Any

from shapetrace.errors import UsageError
from shapetrace.report import Report, set_notebook_display


class Display:
    """The notebook display of every Report, drawn by `shapetrace.views.dot`."""

    def diagram(self, report: Report, depth: int | None = None, **kw: Any) -> Any:
        from shapetrace.views.dot import diagram

        return diagram(report, depth=depth, **kw)

    def svg(self, report: Report) -> str | None:
        from shapetrace.views.dot import diagram, render

        try:
            return render(diagram(report), "svg").decode("utf-8")
        except UsageError:
            return None

    def markdown(self, report: Report) -> str | None:
        from shapetrace.views.dot import dot_available
        from shapetrace.views.markdown import render

        return None if dot_available() else render(report)

    def text(self, report: Report) -> str:
        import shutil

        from shapetrace.views.table import render_text

        return render_text(report, width=shutil.get_terminal_size().columns).rstrip("\n")


def install() -> None:
    """Let every Report show itself through this display."""
    set_notebook_display(Display())
