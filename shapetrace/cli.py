"""Command line: argument parsing and dispatch, nothing else.

torch is imported only once a model has to be analysed, so `--help`, `--version` and
`shapetrace show report.json` stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from shapetrace import __version__
from shapetrace.errors import (
    EXIT_CANNOT_ANALYSE,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_REJECTED,
    ShapetraceError,
    UsageError,
    first_line,
)
from shapetrace.inputs import parse_model_args
from shapetrace.report import Report

SUBCOMMANDS = ("show", "check", "sweep", "diff")
TEXT_FORMATS = ("table", "markdown", "json")
DIAGRAM_FORMATS = ("svg", "png", "pdf", "dot")
_SUFFIXES = {
    ".json": "json",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "table",
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
    ".dot": "dot",
    ".gv": "dot",
}

EXIT_CODES_HELP = """exit codes:
  0  success
  1  the model rejects the input (breaks at that size, wrong channel count)
  2  usage error (bad flags, malformed --input, unknown model, missing or broken file,
     bad --model-args)
  3  the model cannot be analysed (untraceable, constructor raises)
  4  internal error of shapetrace (rerun with --debug)
"""


def positive_int(text: str) -> int:
    """argparse type for --depth: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line, with exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _add_view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        "-f",
        choices=TEXT_FORMATS + DIAGRAM_FORMATS,
        help="output format (default: table, or from the suffix of -o)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE; its suffix picks the format (.json .md .txt .svg ...)",
    )
    parser.add_argument(
        "--depth",
        type=positive_int,
        metavar="N",
        help="collapse modules below depth N into single rows/boxes",
    )
    parser.add_argument(
        "--rankdir",
        choices=("LR", "TB", "RL", "BT"),
        help="diagram direction (default: stages side by side)",
    )
    parser.add_argument(
        "--theme", choices=("light", "dark"), default="light", help="diagram colours"
    )
    parser.add_argument("--tui", action="store_true", help="open the interactive explorer")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_model_options(parser: argparse.ArgumentParser, repeat_input: bool = False) -> None:
    parser.add_argument(
        "--input",
        "-i",
        metavar="SPEC",
        action="append" if repeat_input else "store",
        help="input shape: NxCxHxW (1x3x448x448), S (448), HxW, CxHxW; ':int64' for dtype; "
        "commas for several tensors; name=SPEC for keyword inputs",
    )
    parser.add_argument(
        "--model-args",
        metavar="JSON",
        help="keyword arguments for the model's constructor, e.g. '{\"base_dim\": 32}'",
    )
    parser.add_argument("--train", action="store_true", help="trace in training mode")


def _main_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shapetrace",
        description="Show how a PyTorch model transforms its input, layer by layer, "
        "without running it.",
        epilog="MODEL: a torchvision name (resnet50), codereview_resnet50, "
        "stembodyhead_resnet18/34/50, path/to/file.py:Name or package.module:Name.\n"
        "subcommands: shapetrace show REPORT.json | check MODEL --input A --input B | "
        "sweep MODEL --sizes 32:1024:32 | diff A B\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", nargs="?", help="the model to analyse")
    _add_model_options(parser)
    _add_view_options(parser)
    parser.add_argument("--list-models", action="store_true", help="list the known model names")
    parser.add_argument("--version", action="version", version=f"shapetrace {__version__}")
    return parser


def _show_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shapetrace show", description="Render a saved JSON report (does not import torch)."
    )
    parser.add_argument("report", metavar="REPORT.json")
    _add_view_options(parser)
    return parser


def _check_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shapetrace check",
        description="Check which input sizes a model accepts; exit 1 if any is rejected.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL")
    _add_model_options(parser, repeat_input=True)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


# -- dispatch -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `shapetrace` command; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        if args_list and args_list[0] in SUBCOMMANDS:
            command, rest = args_list[0], args_list[1:]
            return _COMMANDS[command](rest)
        return _run_main(args_list)
    except ShapetraceError as exc:
        if debug:
            traceback.print_exc()
        _say(f"shapetrace: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("shapetrace: interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _say(
            f"shapetrace: internal error: {type(exc).__name__}: {first_line(exc)} "
            "(rerun with --debug)"
        )
        return EXIT_INTERNAL


def _say(line: str) -> None:
    # One line, whatever the message quotes (a model name or path with a newline in it).
    print(" ".join(line.split("\n")), file=sys.stderr)


def _run_main(argv: list[str]) -> int:
    args = _main_parser().parse_args(argv)
    if args.list_models:
        from shapetrace.sources import known_names

        print("\n".join(known_names()))
        return EXIT_OK
    if not args.model:
        raise UsageError("name a model, e.g. `shapetrace resnet50 --input 1x3x448x448`")
    fmt = _format(args)  # validate before the slow import
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
    from shapetrace.analysis import analyze

    report = analyze(
        args.model, args.input, model_args=parse_model_args(args.model_args), train=args.train
    )
    return _emit(report, args, fmt)


def _run_show(argv: list[str]) -> int:
    args = _show_parser().parse_args(argv)
    fmt = _format(args)
    path = Path(args.report)
    if not path.exists():
        raise UsageError(f"{args.report}: no such file")
    try:
        report = Report.load(path)
    except OSError as exc:
        raise UsageError(f"{args.report}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{args.report}: not a shapetrace report ({exc})") from exc
    return _emit(report, args, fmt)


def _run_check(argv: list[str]) -> int:
    args = _check_parser().parse_args(argv)
    from shapetrace.sizecheck import check_sizes

    if not args.input:
        raise UsageError("check needs at least one --input, e.g. --input 224 --input 448")
    results = check_sizes(
        args.model, args.input, parse_model_args(args.model_args), train=args.train
    )
    for result in results:
        print(result.line())
    if any(r.status == "rejected" for r in results):
        return EXIT_REJECTED
    return EXIT_OK if all(r.accepted for r in results) else EXIT_CANNOT_ANALYSE


def _run_diff(argv: list[str]) -> int:
    from shapetrace.diff_cli import run_diff

    return run_diff(argv)


def _run_sweep(argv: list[str]) -> int:
    from shapetrace.sweep import run_sweep

    return run_sweep(argv)


_COMMANDS = {"show": _run_show, "check": _run_check, "sweep": _run_sweep, "diff": _run_diff}


# -- output -------------------------------------------------------------------------------


def _format(args: argparse.Namespace) -> str:
    return output_format(args.format, args.output)


def output_format(
    fmt: str | None, output: str | None, suffixes: dict[str, str] | None = None
) -> str:
    """--format if given, else the format -o's suffix names (table when writing to stdout)."""
    suffixes = _SUFFIXES if suffixes is None else suffixes
    if fmt:
        return fmt
    if output:
        suffix = Path(output).suffix.lower()
        if suffix not in suffixes:
            raise UsageError(
                f"-o {output}: unknown suffix '{suffix}'; use one of "
                f"{', '.join(sorted(suffixes))} or --format"
            )
        return suffixes[suffix]
    return "table"


# Suffixes of the text formats, for subcommands that draw no diagrams.
TEXT_SUFFIXES = {k: v for k, v in _SUFFIXES.items() if v in TEXT_FORMATS}


def _emit(report: Report, args: argparse.Namespace, fmt: str) -> int:
    try:
        _write(report, args, fmt)
    except OSError as exc:
        target = args.output or "stdout"
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    if report.failure is not None and report.failure.kind == "unsupported":
        _say(f"shapetrace: cannot analyse {report.model} past {report.failure.message}")
        return EXIT_CANNOT_ANALYSE
    if report.failure is not None:
        _say(
            f"shapetrace: {report.model} rejects input {_input_text(report)}: "
            f"{report.failure.message}"
        )
        return EXIT_REJECTED
    return EXIT_OK


def _write(report: Report, args: argparse.Namespace, fmt: str) -> None:
    if getattr(args, "tui", False):
        from shapetrace.views.tui import run_tui

        run_tui(report)
    elif fmt in DIAGRAM_FORMATS:
        from shapetrace.views.dot import write_diagram

        if not args.output and fmt != "dot":
            raise UsageError(f"--format {fmt} needs -o FILE")
        write_diagram(
            report, args.output, fmt, depth=args.depth, rankdir=args.rankdir, theme=args.theme
        )
    else:
        _emit_text(report, args, fmt)


def _input_text(report: Report) -> str:
    return ", ".join(report.source.get("input", [])) or "x".join(map(str, report.input))


def _emit_text(report: Report, args: argparse.Namespace, fmt: str) -> None:
    if fmt == "json":
        text = report.to_json()
    elif fmt == "markdown":
        from shapetrace.views.markdown import render

        text = render(report, args.depth)
    elif args.output:
        from shapetrace.views.table import render_text

        text = render_text(report, args.depth)
    else:
        from shapetrace.views.table import render as render_table

        render_table(report, args.depth, color=_color())
        return
    if args.output:
        Path(args.output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _color() -> bool | None:
    if os.environ.get("NO_COLOR"):
        return False
    return None  # rich decides: colour only on a terminal
