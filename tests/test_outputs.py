"""Atomic output files and escaping of untrusted text: a failed or killed write leaves the old
file whole; control characters, rich markup and HTML from names never reach the output raw."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from shapetrace import outputs, safetext


def test_write_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    outputs.write_text(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_full_disk_mid_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "model.svg"
    target.write_text("<svg>old</svg>")
    with pytest.raises(OSError), outputs.atomic_path(target) as temporary:
        temporary.write_text("<svg>tru")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "<svg>old</svg>"
    assert [p.name for p in tmp_path.iterdir()] == ["model.svg"]


def test_a_kill_mid_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "table.txt"
    target.write_text("old table")
    script = (
        "import os, signal, sys\n"
        "from shapetrace import outputs\n"
        "with outputs.atomic_path(sys.argv[1]) as t:\n"
        "    t.write_text('half a tab')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(target)], check=False)
    assert run.returncode == -signal.SIGKILL
    assert target.read_text() == "old table"


def test_control_characters_are_shown_not_sent() -> None:
    name = "layer\x1b]0;pwned\x07.\x1b]52;c;ZXZpbA==\x07conv\u202e"
    shown = safetext.plain(name)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert shown == "layer\\x1b]0;pwned\\x07.\\x1b]52;c;ZXZpbA==\\x07conv\\u202e"
    assert safetext.plain("layer4.0.conv1 (1, 2048, 7, 7)") == "layer4.0.conv1 (1, 2048, 7, 7)"


def test_markup_in_names_prints_literally() -> None:
    console = Console(record=True, width=200, color_system=None)
    path = "models/[/x]/[link=https://example.org]net[/link].py"
    console.print(safetext.markup(path))
    assert console.export_text().strip() == path
    assert str(Text.from_markup(safetext.markup("[bold]x"))) == "[bold]x"


def test_html_in_names_is_escaped() -> None:
    text = safetext.html_text('<img src=x onerror="alert(1)"><script>x</script>')
    assert "<" not in text and ">" not in text and '"' not in text
    assert os.linesep not in safetext.html_text("a\nb")
