"""Errors that end in one line and a documented exit code."""

from __future__ import annotations

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_CANNOT_ANALYSE = 3
EXIT_INTERNAL = 4


class ShapetraceError(Exception):
    """Base class: `str(error)` is the one line shown to the user."""

    exit_code = EXIT_INTERNAL


class UsageError(ShapetraceError):
    """Bad flags, malformed --input, unknown model, missing or broken file, bad --model-args."""

    exit_code = EXIT_USAGE


class InputRejected(ShapetraceError):
    """The model rejects the input (wrong channel count, breaks at this size)."""

    exit_code = EXIT_REJECTED


class CannotAnalyse(ShapetraceError):
    """The model cannot be analysed: untraceable with every fallback, or its constructor raises."""

    exit_code = EXIT_CANNOT_ANALYSE


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def caused_by(exc: BaseException, origin: BaseException) -> bool:
    """Whether `exc` is `origin`, or was raised while handling it (`raise ... from`, or inside
    an `except` block), so that wrapping by fx or by a model does not hide where it began."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if current is origin:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
