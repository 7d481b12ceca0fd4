"""Command line: `shapetrace MODEL` and its subcommands, one module each (analyze, show,
check, sweep, diff), on options declared once in `options`.

torch is imported only once a model has to be analysed, so `--help`, `--version` and
`shapetrace show report.json` stay fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from types import FrameType
from typing import NoReturn

from shapetrace.cli import analyze, check, diff, output, show, sweep
from shapetrace.cli.options import ArgparseExit
from shapetrace.cli.output import say
from shapetrace.errors import (
    EXIT_CANNOT_ANALYSE,
    EXIT_INTERNAL,
    ShapetraceError,
    describe_exit,
    first_line,
)

SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "show": show.run,
    "check": check.run,
    "sweep": sweep.run,
    "diff": diff.run,
}

# A reader that leaves early (`shapetrace resnet50 | head -1`) ends the command quietly with
# the status of a Unix tool killed by SIGPIPE, 128 + 13: not 1, which means "rejected".
EXIT_PIPE = 141
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `finally` runs: a `dot` child is killed and
    waited for (subprocess.run does so on any exception), a temporary output file removed."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `shapetrace` command; returns the exit code.

    Called with `argv`, it runs in-process and returns. Called without (the `shapetrace` console
    script, `python -m shapetrace`), it is the whole process: SIGTERM unwinds like Ctrl-C, and
    once stdout and stderr are flushed the process ends at once, without the second or so of
    interpreter teardown torch costs."""
    if argv is not None:
        return run(list(argv))
    output.PROCESS_ENTRY = True
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = run(sys.argv[1:])
    except SystemExit as exc:  # argparse's --help and --version
        code = exc.code if isinstance(exc.code, int) else EXIT_INTERNAL
    _leave(code)


def run(args_list: list[str]) -> int:
    """Run one command line; every outcome is an exit code and at most one line on stderr."""
    debug = "--debug" in args_list
    try:
        if args_list and args_list[0] in SUBCOMMANDS:
            return SUBCOMMANDS[args_list[0]](args_list[1:])
        return analyze.run(args_list)
    except BrokenPipeError:
        return EXIT_PIPE
    except ShapetraceError as exc:
        if debug:
            traceback.print_exc()
        say(f"shapetrace: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        if output.PROCESS_ENTRY:
            _end_children()
        if isinstance(exc, Terminated):
            say("shapetrace: terminated")
            return EXIT_TERMINATED
        say("shapetrace: interrupted")
        return EXIT_INTERRUPTED
    except ArgparseExit:
        raise
    except SystemExit as exc:
        # Not ours: code the model runs outside its guarded constructor and forward (a module
        # imported from a file) ended the process. Never a silent exit 0.
        if debug:
            traceback.print_exc()
        say(f"shapetrace: error: the model's code {describe_exit(exc)}; nothing was analysed")
        return EXIT_CANNOT_ANALYSE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        say(
            f"shapetrace: internal error: {type(exc).__name__}: {first_line(exc)} "
            "(rerun with --debug)"
        )
        return EXIT_INTERNAL


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _end_children() -> None:
    """Kill and reap the processes this one started. graphviz runs `dot` with a bare Popen
    that nothing kills when an exception unwinds past it, so an interrupted render would leave
    `dot` laying out the graph for minutes. Linux (/proc) only; elsewhere nothing is done."""
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) != me:  # fields[0] is the state, fields[1] the parent
            continue
        with contextlib.suppress(OSError):
            os.kill(int(entry), signal.SIGKILL)
            os.waitpid(int(entry), 0)


def _leave(code: int) -> NoReturn:
    """Flush what was written and end the process without interpreter teardown: every output
    file is already complete (written atomically), and nothing else is left to clean up."""
    try:
        sys.stdout.flush()
    except OSError:  # the reader left before the last buffer: a closed pipe, as above
        code = code or EXIT_PIPE
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)
