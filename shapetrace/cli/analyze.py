"""`shapetrace MODEL`: analyse a model at one input and show the report."""

from __future__ import annotations

import argparse

from shapetrace.cli import options
from shapetrace.cli.output import emit_report, load_analysis
from shapetrace.errors import EXIT_OK, EXIT_REJECTED, UsageError
from shapetrace.inputs import parse_model_args
from shapetrace.version import __version__


def parser() -> argparse.ArgumentParser:
    parser = options.Parser(
        prog="shapetrace",
        description="Show how a PyTorch model transforms its input, layer by layer, "
        "without running it.",
        epilog="MODEL: a torchvision name (resnet50), codereview_resnet50, "
        "stembodyhead_resnet18/34/50, path/to/file.py:Name or package.module:Name.\n"
        "subcommands: shapetrace show REPORT.json | check MODEL --input A --input B | "
        "sweep MODEL --sizes 32:1024:32 | diff A B\n\n" + options.EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", nargs="?", help="the model to analyse")
    options.add_model_options(parser)
    options.add_view_options(parser)
    parser.add_argument("--list-models", action="store_true", help="list the known model names")
    parser.add_argument("--version", action="version", version=f"shapetrace {__version__}")
    return parser


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.list_models:
        from shapetrace.sources import known_names

        print("\n".join(known_names()))
        return EXIT_OK
    if not args.model:
        raise UsageError("name a model, e.g. `shapetrace resnet50 --input 1x3x448x448`")
    fmt = options.output_format(args.format, args.output)  # validate before the slow import
    if args.tui:
        # Paint first: the TUI analyses in a worker, so torch loads behind the window.
        from shapetrace.views.tui import run_tui

        shown = run_tui(
            request={
                "model": args.model,
                "input": args.input,
                "model_args": parse_model_args(args.model_args),
                "train": args.train,
            }
        )
        return EXIT_REJECTED if shown is not None and shown.failure is not None else EXIT_OK
    load_analysis()
    from shapetrace.analysis import analyze

    report = analyze(
        args.model, args.input, model_args=parse_model_args(args.model_args), train=args.train
    )
    return emit_report(report, args, fmt)
