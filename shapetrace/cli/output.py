"""Where the subcommands' output goes: stdout or -o FILE (written atomically: a temporary file
in the same folder renamed into place, so a full disk or a kill never leaves a truncated file),
one-line messages on stderr, and a report's exit status."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from shapetrace import outputs
from shapetrace.cli.options import DIAGRAM_FORMATS
from shapetrace.errors import EXIT_CANNOT_ANALYSE, EXIT_OK, EXIT_REJECTED, UsageError
from shapetrace.report import Report
from shapetrace.safetext import plain

# Set by `shapetrace.cli.main` when it is the whole process (the console script), not a call
# from Python: only then may it freeze the heap or leave without teardown.
PROCESS_ENTRY = False


def load_analysis() -> None:
    """Import the analysis (torch, torchvision: about 3 s), then, in the `shapetrace` process,
    `gc.freeze()` the million objects that import made: no garbage collection walks them again
    (about 0.7 s of a run, issue 17)."""
    import shapetrace.analysis  # noqa: F401

    if PROCESS_ENTRY:
        import gc

        gc.freeze()


def say(line: str) -> None:
    """Print one line on stderr, whatever the message quotes (a model name or path with a
    newline or a terminal escape in it)."""
    with contextlib.suppress(OSError):  # stderr closed too: nothing left to tell
        print(plain(" ".join(line.split("\n"))), file=sys.stderr)


def color() -> bool | None:
    """False under NO_COLOR; otherwise None, so rich colours only a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    return None


def write_text(text: str, output: str | None) -> None:
    """Write `text`, ending in a newline, to `output` (stdout when None)."""
    text = text if text.endswith("\n") else text + "\n"
    try:
        if output:
            outputs.write_text(output, text)
        else:
            sys.stdout.write(text)
    except BrokenPipeError:
        raise  # the reader left: `main` ends quietly
    except OSError as exc:
        raise UsageError(f"cannot write {output or 'stdout'}: {exc.strerror or exc}") from exc


def emit_report(report: Report, args: argparse.Namespace, fmt: str) -> int:
    """Show a report as the view options ask; its exit status: 0, 1 when the model rejects the
    input, 3 when shapes alone cannot follow the model."""
    try:
        _write(report, args, fmt)
    except BrokenPipeError:
        raise
    except OSError as exc:
        target = args.output or "stdout"
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    if report.failure is not None and report.failure.kind == "unsupported":
        say(f"shapetrace: cannot analyse {report.model} past {report.failure.message}")
        return EXIT_CANNOT_ANALYSE
    if report.failure is not None:
        say(
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
    elif fmt == "table" and not args.output:
        from shapetrace.views.table import render

        render(report, args.depth, color=color())
    else:
        write_text(_text(report, fmt, args.depth), args.output)


def _input_text(report: Report) -> str:
    return ", ".join(report.source.get("input", [])) or "x".join(map(str, report.input))


def _text(report: Report, fmt: str, depth: int | None) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "markdown":
        from shapetrace.views.markdown import render

        return render(report, depth)
    from shapetrace.views.table import render_text

    return render_text(report, depth)
