"""What the TUI asks the analysis API for, and whether a report can be asked for again.

Everything here but `analyse` is torch-free; `analyse` imports the analysis API on first use,
from the worker thread, so the window paints before torch has loaded.
"""

from __future__ import annotations

import threading
from typing import Any

from shapetrace.errors import UsageError
from shapetrace.inputs import parse
from shapetrace.report import Report
from shapetrace.safetext import plain

# The model builders patch torch.nn.Module while they run (sources._parameters_on_meta), so two
# analyses must never overlap, even when a newer request supersedes a running one.
_ANALYSIS_LOCK = threading.Lock()


def input_text(value: Any) -> str:
    """An `--input` value as one line: `None` -> ``, `["1x3x8x8", "1x4"]` -> `1x3x8x8,1x4`."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return ",".join(str(v) for v in value)


def validate_input(text: str) -> None:
    """Raise UsageError (one line) if `text` is not a well-formed `--input`."""
    parse(text)


def rebuild_blocker(source: dict[str, Any]) -> str | None:
    """Why the model behind a report opened alone cannot be analysed again, or None when it can.

    A report is data from anywhere: only torchvision's and shapetrace's own model names are
    rebuilt from it (`analyze(from_report=True)`); a file or import path runs only when the user
    names it on the command line."""
    if source.get("family") == "object":
        return (
            "read-only: this report was made from a live nn.Module; analyse a model name or "
            "path.py:Name to change the input here"
        )
    spec = source.get("model")
    if not isinstance(spec, str) or not spec:
        return "read-only: the report does not say which model it was made from"
    if ":" in spec or "/" in spec or "\\" in spec or spec.endswith(".py"):
        return (
            "read-only: the report's model is code of your own, which runs only when you name "
            f"it on the command line: shapetrace {plain(spec)} --tui"
        )
    return None


def estimate(report: Report, inputs: str) -> Report | None:
    """`report` at `inputs` from its shape formulas and domain (`Report.at`, no torch, well
    under a millisecond), when they accept the size and give every shape; else None. The
    worker's analysis confirms it."""
    if "estimated" in report.source:
        return None
    try:
        answer = report.at(inputs)
    except (ValueError, UsageError):
        return None
    if answer.accepted is not True or any("shape" in u for u in answer.unknown.values()):
        return None
    return answer.report(report)


def request_for(report: Report, inputs: str) -> dict[str, Any]:
    """The request that analyses the report's model again at `inputs`."""
    source = report.source
    return {
        "model": source["model"],
        "input": inputs,
        "model_args": source.get("model_args") or {},
        "train": source.get("mode") == "train",
        "from_report": True,  # a report is data from anywhere: rebuild no code it names
    }


def analyse(request: dict[str, Any]) -> Report:
    """Run the analysis API on a request (slow: imports torch the first time)."""
    from shapetrace.analysis import analyze

    with _ANALYSIS_LOCK:
        return analyze(
            request["model"],
            request.get("input") or None,
            model_args=request.get("model_args") or {},
            train=bool(request.get("train")),
            from_report=bool(request.get("from_report")),
        )
