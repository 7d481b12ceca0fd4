"""A new input size without torch work (issue 17): the TUI's size change and `shapetrace sweep`.

Run: `python benchmarks/bench_new_size.py` (`--rounds 5`, `--presses 7`).

1. TUI: the explorer opened on a model named on the command line (`shapetrace MODEL --tui`,
   analysed by the worker as the CLI does), driven by Textual's pilot. Each press types a new
   size into the input field; timed is `enter` to the first screen refresh after the size was
   handled (a callback Textual runs after the next refresh), i.e. what the user waits for
   before the table shows the new size. Between presses the app is left until its workers are
   done. Median over the presses, per model.
   Also the first size change of `shapetrace show REPORT --tui` in fresh processes: torch is
   not imported yet, and the worker's confirmation imports it.
2. sweep: `shapetrace sweep codereview_resnet50 --sizes 32:4096:32` (128 sizes, 127 rejected)
   as a subprocess, `-f json` and the table, against the bare `python -c "import torch,
   torchvision"`, interleaved, median of `--rounds`.

Timings on a shared machine are noisy: the load average is printed with them. To compare
with an older version, run this script with that version's package first on PYTHONPATH
(e.g. unpacked by `git archive COMMIT shapetrace | tar -x -C /tmp/old`).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import subprocess
import sys
import time
from typing import Any

SWEEP = ["sweep", "codereview_resnet50", "--sizes", "32:4096:32"]
# Sizes the formulas accept (resnet50: any; codereview_resnet50: H, W in [193, 224]).
TUI_SIZES = {
    "resnet50": ["1x3x448x448", "1x3x320x320", "1x3x640x640", "1x3x256x256", "1x3x512x512"],
    "codereview_resnet50": ["1x3x200x200", "1x3x208x208", "1x3x224x224", "1x3x196x196"],
}


async def _press(app: Any, pilot: Any, size: str) -> float:
    """Type `size` into the input field, then time `enter` to the first screen refresh after
    the size was handled."""
    from textual.widgets import Input

    done = asyncio.get_running_loop().create_future()
    # `i` and the new size typed, each painted as typing would, before `enter`.
    await pilot.press("i")
    app.query_one("#size", Input).value = size
    await pilot.pause()

    def refreshed() -> None:
        if not done.done():
            done.set_result(time.perf_counter())

    original = app._set_status

    def status(text: Any) -> None:
        original(text)
        app.call_after_refresh(refreshed)

    app._set_status = status
    start = time.perf_counter()
    await pilot.press("enter")
    end: float = await done
    app._set_status = original
    return end - start


async def _tui_presses(model: str, sizes: list[str], presses: int) -> list[float]:
    from shapetrace.views.tui import ShapetraceApp

    request = {"model": model, "input": "1x3x224x224", "model_args": {}, "train": False}
    # As `shapetrace MODEL --tui` runs it (a version before `freeze_heap` had none).
    frozen = "freeze_heap" in inspect.signature(ShapetraceApp).parameters
    app = ShapetraceApp(request=request, **({"freeze_heap": True} if frozen else {}))
    times: list[float] = []
    async with app.run_test(size=(160, 45)) as pilot:
        for _ in range(400):  # the first analysis runs after the first frame
            await pilot.pause()
            await app.workers.wait_for_complete()
            if app.report is not None:
                break
        assert app.report is not None, "the first analysis did not finish"
        for i in range(presses):
            size = sizes[i % len(sizes)]
            times.append(await _press(app, pilot, size))
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.report is not None and "x".join(map(str, app.report.input)) == size
    return times


async def _first_press(path: str, size: str) -> float:
    """`shapetrace show REPORT --tui`, then a first size change: torch is not imported yet,
    so the worker's confirmation imports it (seconds of work holding the GIL)."""
    from shapetrace.report import Report
    from shapetrace.views.tui import ShapetraceApp

    app = ShapetraceApp(Report.load(path))
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert "torch" not in sys.modules
        took = await _press(app, pilot, size)
        await app.workers.wait_for_complete()
    return took


def first_presses(runs: int) -> list[float]:
    """The first size change in `runs` fresh processes (median of one press each)."""
    import tempfile

    times = []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "resnet50.json")
        subprocess.run(
            [sys.executable, "-m", "shapetrace", "resnet50", "-f", "json", "-o", path], check=True
        )
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, __file__, "--first-press", path],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            times.append(float(out.split()[-1]))
    return times


def tui(presses: int, models: list[str]) -> dict[str, list[float]]:
    return {model: asyncio.run(_tui_presses(model, TUI_SIZES[model], presses)) for model in models}


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def sweep(rounds: int) -> dict[str, list[float]]:
    shapetrace = [sys.executable, "-m", "shapetrace"]
    commands = {
        "bare import torch, torchvision": [sys.executable, "-c", "import torch, torchvision"],
        "sweep -f json": [*shapetrace, *SWEEP, "-f", "json"],
        "sweep (table)": [*shapetrace, *SWEEP],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            times[name].append(_wall(argv))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="sweep rounds (default 5)")
    parser.add_argument("--presses", type=int, default=7, help="size changes per model")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-tui", action="store_true")
    parser.add_argument("--first-press", metavar="REPORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--models", nargs="+", default=list(TUI_SIZES), choices=list(TUI_SIZES), help="TUI models"
    )
    args = parser.parse_args()
    if args.first_press:  # one fresh process of `first_presses`
        print(asyncio.run(_first_press(args.first_press, "1x3x448x448")))
        return
    print(f"load average before: {os.getloadavg()}")
    if not args.skip_sweep:
        found = sweep(args.rounds)
        bare = statistics.median(found["bare import torch, torchvision"])
        for name, values in found.items():
            median = statistics.median(values)
            spread = ", ".join(f"{v:.2f}" for v in values)
            print(f"{name:32s} median {median:6.2f} s  (+{median - bare:5.2f} s)  [{spread}]")
    if not args.skip_tui:
        for model, values in tui(args.presses, args.models).items():
            spread = ", ".join(f"{v * 1e3:.0f}" for v in values)
            print(
                f"TUI size change, {model:20s} median {statistics.median(values) * 1e3:6.1f} ms"
                f"  [{spread}]"
            )
        first = first_presses(args.rounds)
        spread = ", ".join(f"{v * 1e3:.0f}" for v in first)
        print(
            f"TUI first size change, torch not imported (resnet50, 224 -> 448) median "
            f"{statistics.median(first) * 1e3:6.1f} ms  [{spread}]"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
