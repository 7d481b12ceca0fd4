"""Text from a model or a report is untrusted: layer names, file paths and messages may hold
terminal escapes (OSC 52 writes the clipboard, OSC 0 the window title), rich markup or HTML.
Views pass every such string through one of these before it reaches a terminal or a page."""

from __future__ import annotations

import html
import re

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a reader sees.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: object) -> str:
    """`text` with every control character shown as a visible escape (`\\x1b`), on one line."""
    value = str(text)
    if value.isprintable():
        return value
    return _UNSAFE.sub(_escape, value)


def markup(text: object) -> str:
    """`plain(text)` with rich markup escaped, for strings that rich renders as markup."""
    from rich.markup import escape

    return escape(plain(text))


def html_text(text: object) -> str:
    """`plain(text)` with HTML escaped, for Markdown and other HTML-rendered output."""
    return html.escape(plain(text), quote=True)
