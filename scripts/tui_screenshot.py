"""Write docs/tui.svg, the screenshot of the explorer shown in the README.

    python scripts/tui_screenshot.py                      # codereview_resnet50 at 448, breaking
    python scripts/tui_screenshot.py --model resnet50 --input 1x3x448x448 --press d -o out.svg

It analyses the model, opens the explorer headless at a fixed terminal size (120x40), presses
the given keys (none by default: the explorer opens on the answer, the stages folded and the
cursor on the failing fc_layer) and saves what the screen shows as SVG, atomically. Run it
after changing the TUI or an analysis the screenshot shows.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def screenshot(
    model: str, size: str, keys: list[str], out: Path, width: int, height: int
) -> None:
    """Analyse `model` at `size`, press `keys` in the explorer, save the screen to `out`."""
    from shapetrace import analyze
    from shapetrace.outputs import write_text
    from shapetrace.views.tui import ShapetraceApp

    app = ShapetraceApp(analyze(model, size))
    async with app.run_test(size=(width, height)) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
        write_text(out, app.export_screenshot())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="codereview_resnet50")
    parser.add_argument("--input", default="1x3x448x448")
    parser.add_argument(
        "--press", default="", help="keys to press before the shot, comma separated"
    )
    parser.add_argument("--size", default="120x40", help="terminal WIDTHxHEIGHT")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "tui.svg"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    keys = [k for k in args.press.split(",") if k]
    out = Path(args.output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(screenshot(args.model, args.input, keys, out, width, height))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
