"""`shapetrace diff A B`: compare two models, or one model at two input sizes.

Exit 0 when the two are the same, 1 when they differ (as Unix `diff`); errors raise
shapetrace.errors exceptions, which the caller prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shapetrace.diff import DiffResult
from shapetrace.errors import EXIT_OK, EXIT_REJECTED

FORMATS = ("table", "markdown", "json")


def _parser() -> argparse.ArgumentParser:
    from shapetrace.cli import _Parser  # late: cli calls us

    parser = _Parser(
        prog="shapetrace diff",
        description="Align two models (or one model at two input sizes) by structure and show "
        "where shapes, parameters, modules and totals differ. Exit 0 when the same, 1 when "
        "different.",
    )
    parser.add_argument("model_a", metavar="A", help="first model")
    parser.add_argument("model_b", metavar="B", help="second model (may be the same as A)")
    parser.add_argument(
        "--input", "-i", metavar="SPEC", help="input for A, and for B unless --input-b is given"
    )
    parser.add_argument("--input-b", metavar="SPEC", help="input for B")
    parser.add_argument(
        "--model-args",
        metavar="JSON",
        help="constructor arguments for A, and for B unless --model-args-b is given",
    )
    parser.add_argument("--model-args-b", metavar="JSON", help="constructor arguments for B")
    parser.add_argument("--format", "-f", choices=FORMATS, help="output format (default: table)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (.txt .md .json)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def run_diff(argv: list[str]) -> int:
    """Entry point of `shapetrace diff`; returns 0 when A and B are the same, 1 otherwise."""
    from shapetrace.cli import TEXT_SUFFIXES, output_format

    args = _parser().parse_args(argv)
    fmt = output_format(args.format, args.output, TEXT_SUFFIXES)
    from shapetrace.analysis import analyze
    from shapetrace.diff import diff_reports
    from shapetrace.inputs import parse_model_args

    args_a = parse_model_args(args.model_args)
    args_b = parse_model_args(args.model_args_b) if args.model_args_b else args_a
    report_a = analyze(args.model_a, args.input, model_args=args_a)
    report_b = analyze(args.model_b, args.input_b or args.input, model_args=args_b)
    result = diff_reports(report_a, report_b)
    _emit(result, fmt, args.output)
    return EXIT_OK if result.same else EXIT_REJECTED


def _emit(result: DiffResult, fmt: str, output: str | None) -> None:
    from shapetrace.views import diff as views

    if fmt == "table" and not output:
        views.render(result, color=False if os.environ.get("NO_COLOR") else None)
        return
    if fmt == "json":
        text = views.render_json(result)
    elif fmt == "markdown":
        text = views.render_markdown(result)
    else:
        text = views.render_text(result)
    text = text if text.endswith("\n") else text + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
