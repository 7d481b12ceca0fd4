"""Writing output files atomically: a reader, a full disk or a kill mid-write never sees (or
leaves) a truncated file. Everything is written to a temporary file in the destination's folder
and renamed into place, which POSIX makes atomic within one file system."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `destination`; on a clean exit it replaces `destination`, on an
    error it is removed and `destination` is left as it was.

    A destination that is not a regular file (`/dev/null`, `/dev/stdout`, a named pipe) cannot
    be replaced, and must not be: it is written in place. A symbolic link is followed, so the
    file it names is replaced and the link kept."""
    target = Path(os.path.realpath(destination))
    if target.exists() and not target.is_file():
        yield target
        return
    folder = target.parent if str(target.parent) else Path(".")
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        _keep_mode(target, temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_text(destination: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `destination` atomically."""
    write_bytes(destination, text.encode("utf-8"))


def write_bytes(destination: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `destination` atomically."""
    with atomic_path(destination) as temporary:
        temporary.write_bytes(data)


def _keep_mode(target: Path, temporary: Path) -> None:
    # mkstemp creates 0600; a new file gets the usual umask-derived mode, a replaced one its own.
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temporary, mode)
