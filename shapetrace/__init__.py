"""shapetrace: how a PyTorch network transforms its input, layer by layer, without running it.

    >>> import shapetrace
    >>> report = shapetrace.analyze("resnet50", "1x3x448x448")
    >>> report.node("layer4.2.relu_2").shape
    [1, 2048, 14, 14]

Importing this package is cheap: torch is imported on the first call to `analyze`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shapetrace.report import Report
from shapetrace.version import __version__
from shapetrace.views.notebook import install as _install_notebook_display

if TYPE_CHECKING:
    from shapetrace.analysis import analyze

# Reports show themselves in Jupyter as their diagram; the views draw it, not the Report.
_install_notebook_display()


def __getattr__(name: str) -> Any:
    if name == "analyze":
        from shapetrace.analysis import analyze

        return analyze
    raise AttributeError(f"module 'shapetrace' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "analyze"})


__all__ = ["Report", "__version__", "analyze"]
