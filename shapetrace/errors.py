"""Errors that end in one line and a documented exit code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


def describe_exit(exc: BaseException) -> str:
    """What a BaseException that is not an Exception did, in words: `called sys.exit(0)`."""
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, (int, type(None))) else repr(exc.code)
        return f"called sys.exit({'' if code is None else code})"
    return f"raised {type(exc).__name__}"


@contextlib.contextmanager
def user_code(who: str, when: str) -> Iterator[None]:
    """Run the model's own code (its constructor, its forward). `sys.exit()` or another
    BaseException from it would end shapetrace with exit 0 and no output, a false pass in CI,
    so it becomes CannotAnalyse: `{who} called sys.exit(0) {when}`. Ctrl-C stays an interrupt."""
    try:
        yield
    except (Exception, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise CannotAnalyse(f"{who} {describe_exit(exc)} {when}") from exc
