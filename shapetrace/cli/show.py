"""`shapetrace show REPORT.json`: render a saved report again, without importing torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from shapetrace.cli import options
from shapetrace.cli.output import emit_report
from shapetrace.errors import UsageError
from shapetrace.report import Report


def parser() -> argparse.ArgumentParser:
    parser = options.parser(
        "shapetrace show",
        "Render a saved JSON report (does not import torch).",
        exit_codes=False,
    )
    parser.add_argument("report", metavar="REPORT.json")
    options.add_view_options(parser)
    return parser


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    fmt = options.output_format(args.format, args.output)
    path = Path(args.report)
    if not path.exists():
        raise UsageError(f"{args.report}: no such file")
    try:
        report = Report.load(path)
    except OSError as exc:
        raise UsageError(f"{args.report}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{args.report}: not a shapetrace report ({exc})") from exc
    return emit_report(report, args, fmt)
