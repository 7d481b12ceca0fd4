"""`shapetrace check MODEL --input A --input B`: one line per size; exit 1 if any is
rejected."""

from __future__ import annotations

import argparse

from shapetrace.cli import options
from shapetrace.cli.output import load_analysis
from shapetrace.errors import EXIT_CANNOT_ANALYSE, EXIT_OK, EXIT_REJECTED, UsageError
from shapetrace.inputs import parse_model_args


def parser() -> argparse.ArgumentParser:
    parser = options.parser(
        "shapetrace check",
        "Check which input sizes a model accepts; exit 1 if any is rejected.",
    )
    parser.add_argument("model", metavar="MODEL")
    options.add_model_options(parser, repeat_input=True)
    options.add_debug(parser)
    return parser


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from shapetrace.tasks.check import check_sizes
    from shapetrace.views.check import line

    if not args.input:
        raise UsageError("check needs at least one --input, e.g. --input 224 --input 448")
    load_analysis()
    results = check_sizes(
        args.model, args.input, parse_model_args(args.model_args), train=args.train
    )
    for result in results:
        print(line(result))
    if any(r.status == "rejected" for r in results):
        return EXIT_REJECTED
    return EXIT_OK if all(r.accepted for r in results) else EXIT_CANNOT_ANALYSE
