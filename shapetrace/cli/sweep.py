"""`shapetrace sweep MODEL --sizes ...`: the sweep as a table, Markdown or JSON; exit 0 when
every size is accepted, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shapetrace.cli import options
from shapetrace.cli.output import load_analysis, write_text
from shapetrace.errors import EXIT_CANNOT_ANALYSE, EXIT_OK, EXIT_REJECTED, UsageError
from shapetrace.inputs import parse_model_args


def parser() -> argparse.ArgumentParser:
    parser = options.parser(
        "shapetrace sweep",
        "The output shape at each input size, or the node that breaks, beside the "
        "exact domain of accepted sizes; exit 1 if any size is rejected.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="a torchvision name, codereview_resnet50, path.py:Name"
    )
    parser.add_argument(
        "--sizes",
        required=True,
        metavar="SIZES",
        help="START:STOP[:STEP] (stop included), or a list like 224,256,448 or 224x320",
    )
    options.add_input(parser, help="base input whose spatial dims each size replaces")
    options.add_model_args(parser, help="keyword arguments for the model")
    options.add_train(parser)
    options.add_text_output(parser)
    options.add_debug(parser)
    return parser


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from shapetrace.tasks.sweep import sweep
    from shapetrace.views.sweep import render

    fmt = options.output_format(args.format, args.output, options.TEXT_SUFFIXES)
    sizes = _sizes(args.sizes)
    load_analysis()
    with _progress(len(sizes)) as advance:
        result = sweep(
            args.model,
            sizes,
            args.input,
            parse_model_args(args.model_args),
            train=args.train,
            advance=advance,
        )
    write_text(render(result, fmt), args.output)
    statuses = {row.result.status for row in result.rows}
    if "rejected" in statuses:
        return EXIT_REJECTED
    # As `check`: a size shapes alone cannot decide is not a rejection.
    return EXIT_CANNOT_ANALYSE if "unknown" in statuses else EXIT_OK


def _sizes(text: str) -> list[tuple[int, ...]]:
    """--sizes parsed; anything but ASCII digits (`²`, `٣`, which str.isdigit accepts) is a
    usage error."""
    from shapetrace.tasks.sweep import parse_sizes

    if not text.isascii():
        raise UsageError(f"--sizes {text}: sizes are written with the digits 0-9, e.g. 224,448")
    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise UsageError(f"--sizes {text}: not a size like 224, 224x320 or 32:1024:32") from exc


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None] | None]:
    """A progress bar on stderr while the sizes run, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sweeping sizes", total=total)
        yield lambda: bar.advance(task)
