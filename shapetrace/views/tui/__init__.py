"""The interactive Textual explorer (`shapetrace MODEL --tui`, `shapetrace show FILE --tui`).

Importing this package does not import torch: only the analysis worker does, once the window
has painted.
"""

from __future__ import annotations

from shapetrace.views.tui.app import ShapetraceApp, run_tui

__all__ = ["ShapetraceApp", "run_tui"]
