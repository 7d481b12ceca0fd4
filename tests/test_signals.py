"""Process behaviour: SIGTERM and SIGINT while Graphviz's `dot` renders a diagram leave no `dot`
running and no partial file; `--tui` without a terminal ends at once. Real subprocesses: the
point is what the process leaves behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shapetrace.report import Node, Report

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists()
    or not any((Path(d) / "dot").exists() for d in os.environ.get("PATH", "").split(os.pathsep)),
    reason="needs /proc and Graphviz's dot",
)


def tangle(nodes: int = 600) -> Report:
    """A graph whose layout takes `dot` tens of seconds: every node adds its predecessor and a
    random earlier node."""
    rng = random.Random(0)
    made = [Node("x", "placeholder", "x", None, "Input", [], [1, 4, 8, 8], "float32")]
    for i in range(1, nodes):
        inputs = [made[i - 1].name, made[rng.randrange(i)].name]
        made.append(
            Node(f"add_{i}", "call_function", "add", None, "add", inputs, [1, 4, 8, 8], "float32")
        )
    totals = {"params": 0, "trainable_params": 0, "param_bytes": 0, "buffers": 0}
    return Report(
        source={"model": "tangle", "input": ["1x4x8x8"], "mode": "eval", "trace": "fx"},
        model="tangle",
        input=[1, 4, 8, 8],
        nodes=made,
        modules=[],
        totals=totals,
    )


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            found.append((int(entry.name), name))
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_a_diagram_render_leaves_no_dot_running(
    tmp_path: Path, signum: int, code: int
) -> None:
    saved = tmp_path / "tangle.json"
    saved.write_text(tangle().to_json())
    out = tmp_path / "out" / "tangle.svg"
    out.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shapetrace", "show", str(saved), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    dot = None
    try:
        deadline = time.monotonic() + 120
        while dot is None and time.monotonic() < deadline and proc.poll() is None:
            dot = next((pid for pid, name in _children(proc.pid) if name == "dot"), None)
            time.sleep(0.05)
        assert dot is not None, "dot never started"
        time.sleep(0.5)  # dot is laying out the graph
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 5
        while _running(dot) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(dot), "dot survived shapetrace"
        assert proc.returncode == code
        assert len(err.decode().strip().splitlines()) == 1, err
        assert list(out.parent.iterdir()) == []  # no partial file, no temporary file
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if dot is not None and _running(dot):
            os.kill(dot, signal.SIGKILL)


def test_tui_without_a_terminal_ends_at_once(tmp_path: Path) -> None:
    saved = tmp_path / "r.json"
    saved.write_text(tangle(3).to_json())
    # `shapetrace show r.json --tui </dev/null | cat`
    result = subprocess.run(
        [sys.executable, "-m", "shapetrace", "show", str(saved), "--tui"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "terminal" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_command_flushes_its_output_and_leaves_without_interpreter_teardown(
    tmp_path: Path,
) -> None:
    saved = tmp_path / "r.json"
    saved.write_text(tangle(3).to_json())
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('teardown ran'))\n"
        f"sys.argv = ['shapetrace', 'show', {str(saved)!r}, '--format', 'markdown']\n"
        "from shapetrace.cli import main\n"
        "main()\n"
        "print('main returned')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "| `add_2` |" in result.stdout  # buffered output flushed before leaving
    assert "teardown ran" not in result.stdout and "main returned" not in result.stdout
