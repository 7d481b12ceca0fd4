"""`shapetrace diff A B`: compare two models, or one model at two input sizes.

Exit 0 when the two are the same, 1 when they differ (as Unix `diff`); errors raise
shapetrace.errors exceptions, which `main` prints.
"""

from __future__ import annotations

import argparse

from shapetrace.cli import options
from shapetrace.cli.output import color, load_analysis, write_text
from shapetrace.errors import EXIT_OK, EXIT_REJECTED
from shapetrace.inputs import parse_model_args


def parser() -> argparse.ArgumentParser:
    parser = options.parser(
        "shapetrace diff",
        "Align two models (or one model at two input sizes) by structure and show "
        "where shapes, parameters, modules and totals differ. Exit 0 when the same, 1 when "
        "different.",
        exit_codes=False,
    )
    parser.add_argument("model_a", metavar="A", help="first model")
    parser.add_argument("model_b", metavar="B", help="second model (may be the same as A)")
    options.add_input(parser, help="input for A, and for B unless --input-b is given")
    parser.add_argument("--input-b", metavar="SPEC", help="input for B")
    options.add_model_args(
        parser, help="constructor arguments for A, and for B unless --model-args-b is given"
    )
    parser.add_argument("--model-args-b", metavar="JSON", help="constructor arguments for B")
    options.add_text_output(parser)
    options.add_debug(parser)
    return parser


def run(argv: list[str]) -> int:
    """`shapetrace diff`; returns 0 when A and B are the same, 1 otherwise."""
    args = parser().parse_args(argv)
    fmt = options.output_format(args.format, args.output, options.TEXT_SUFFIXES)
    from shapetrace.tasks.diff import diff_models
    from shapetrace.views import diff as views

    load_analysis()
    args_a = parse_model_args(args.model_args)
    args_b = parse_model_args(args.model_args_b) if args.model_args_b else args_a
    result = diff_models(
        args.model_a,
        args.model_b,
        args.input,
        args.input_b or args.input,
        model_args_a=args_a,
        model_args_b=args_b,
    )
    if fmt == "table" and not args.output:
        views.render(result, color=color())
    elif fmt == "json":
        write_text(views.render_json(result), args.output)
    elif fmt == "markdown":
        write_text(views.render_markdown(result), args.output)
    else:
        write_text(views.render_text(result), args.output)
    return EXIT_OK if result.same else EXIT_REJECTED
