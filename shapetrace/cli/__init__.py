"""Command line: `shapetrace MODEL` and its subcommands, one module each (analyze, show,
check, sweep, diff), on options declared once in `options`.

torch is imported only once a model has to be analysed, so `--help`, `--version` and
`shapetrace show report.json` stay fast.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence

from shapetrace.cli import analyze, check, diff, show, sweep
from shapetrace.cli.output import say
from shapetrace.errors import EXIT_INTERNAL, ShapetraceError, first_line

SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "show": show.run,
    "check": check.run,
    "sweep": sweep.run,
    "diff": diff.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `shapetrace` command; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        if args_list and args_list[0] in SUBCOMMANDS:
            return SUBCOMMANDS[args_list[0]](args_list[1:])
        return analyze.run(args_list)
    except ShapetraceError as exc:
        if debug:
            traceback.print_exc()
        say(f"shapetrace: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        say("shapetrace: interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        say(
            f"shapetrace: internal error: {type(exc).__name__}: {first_line(exc)} "
            "(rerun with --debug)"
        )
        return EXIT_INTERNAL
