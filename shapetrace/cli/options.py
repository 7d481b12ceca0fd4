"""The options the subcommands share, each declared once, and the argparse they run on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from shapetrace.errors import UsageError

TEXT_FORMATS = ("table", "markdown", "json")
DIAGRAM_FORMATS = ("svg", "png", "pdf", "dot")
SUFFIXES = {
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
# Suffixes of the text formats, for subcommands that draw no diagrams.
TEXT_SUFFIXES = {k: v for k, v in SUFFIXES.items() if v in TEXT_FORMATS}

EXIT_CODES_HELP = """exit codes:
  0  success
  1  the model rejects the input (breaks at that size, wrong channel count)
  2  usage error (bad flags, malformed --input, unknown model, missing or broken file,
     bad --model-args)
  3  the model cannot be analysed (untraceable, constructor raises)
  4  internal error of shapetrace (rerun with --debug)
  141  stdout closed early (`| head`): ends quietly, as a Unix tool killed by SIGPIPE
"""

INPUT_HELP = (
    "input shape: NxCxHxW (1x3x448x448), S (448), HxW, CxHxW; ':int64' for dtype; "
    "commas for several tensors; name=SPEC for keyword inputs"
)
MODEL_ARGS_HELP = "keyword arguments for the model's constructor, e.g. '{\"base_dim\": 32}'"


class ArgparseExit(SystemExit):
    """argparse ending the command itself (`--help`, `--version`), told apart from a
    `sys.exit()` in the model's code."""


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line, with exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise ArgparseExit(status)


def parser(prog: str, description: str, exit_codes: bool = True) -> Parser:
    """A subcommand's parser, with the exit codes below its help unless `exit_codes` is off."""
    if not exit_codes:
        return Parser(prog=prog, description=description)
    return Parser(
        prog=prog,
        description=description,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def positive_int(text: str) -> int:
    """argparse type for --depth: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_input(
    parser: argparse.ArgumentParser, help: str = INPUT_HELP, repeat: bool = False
) -> None:
    """--input/-i SPEC, once or (`repeat`) several times."""
    parser.add_argument(
        "--input", "-i", metavar="SPEC", action="append" if repeat else "store", help=help
    )


def add_model_args(parser: argparse.ArgumentParser, help: str = MODEL_ARGS_HELP) -> None:
    """--model-args JSON: keyword arguments for the model's constructor."""
    parser.add_argument("--model-args", metavar="JSON", help=help)


def add_train(parser: argparse.ArgumentParser) -> None:
    """--train: trace in training mode."""
    parser.add_argument("--train", action="store_true", help="trace in training mode")


def add_model_options(parser: argparse.ArgumentParser, repeat_input: bool = False) -> None:
    """--input, --model-args and --train."""
    add_input(parser, repeat=repeat_input)
    add_model_args(parser)
    add_train(parser)


def add_text_output(parser: argparse.ArgumentParser) -> None:
    """--format table|markdown|json and -o FILE, for subcommands that draw no diagrams."""
    parser.add_argument(
        "--format", "-f", choices=TEXT_FORMATS, help="output format (default: table)"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (.txt .md .json)")


def add_debug(parser: argparse.ArgumentParser) -> None:
    """--debug: show tracebacks."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def add_view_options(parser: argparse.ArgumentParser) -> None:
    """How a report is shown: --format (text or diagram), -o, --depth, --rankdir, --theme,
    --tui, --debug."""
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
    add_debug(parser)


def output_format(
    fmt: str | None, output: str | None, suffixes: dict[str, str] | None = None
) -> str:
    """--format if given, else the format -o's suffix names (table when writing to stdout)."""
    suffixes = SUFFIXES if suffixes is None else suffixes
    if fmt:
        return fmt
    if output:
        suffix = Path(output).suffix.lower()
        if not suffix:  # `-o report`, `-o /dev/null`: the table as text
            return "table"
        if suffix not in suffixes:
            raise UsageError(
                f"-o {output}: unknown suffix '{suffix}'; use one of "
                f"{', '.join(sorted(suffixes))} or --format"
            )
        return suffixes[suffix]
    return "table"
