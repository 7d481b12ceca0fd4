"""Time shapetrace's ResNet-50 diagram against torchview's draw_graph, and compare the drawings.

    python benchmarks/bench_dot.py            # median of 7 runs each
    python benchmarks/bench_dot.py --runs 11

shapetrace: building the diagram from a Report at the default depth plus running `dot` to SVG
(the analysis is timed apart), and the whole `shapetrace show report.json -o x.svg` command in a
fresh process (no torch import). torchview: `draw_graph` on a resnet50 on the meta device plus
rendering its graph to SVG with the same `dot`. The PNG size (96 dpi) of each drawing is printed.
Never part of CI: the figures depend on the machine (it is shared: check `uptime`).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import median_seconds

ROOT = Path(__file__).resolve().parent.parent


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(data)).size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    import torchview
    import torchvision

    import shapetrace
    from shapetrace.views.dot import diagram, render

    start = time.perf_counter()
    report = shapetrace.analyze("resnet50", "1x3x224x224")
    analysis = time.perf_counter() - start

    def ours() -> bytes:
        return render(diagram(report), "svg")

    def theirs_graph() -> torchview.computation_graph.ComputationGraph:
        model = torchvision.models.resnet50()
        return torchview.draw_graph(model, input_size=(1, 3, 224, 224), device="meta")

    def theirs() -> bytes:
        return bytes(theirs_graph().visual_graph.pipe(format="svg"))

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "resnet50.json"
        saved.write_text(report.to_json(), encoding="utf-8")
        command = [sys.executable, "-m", "shapetrace", "show", str(saved), "-o", f"{tmp}/r.svg"]

        def cli() -> None:
            subprocess.run(command, check=True, cwd=ROOT)

        rows = [
            ("shapetrace diagram + dot -> svg", median_seconds(ours, args.runs)),
            ("shapetrace show report.json -o r.svg", median_seconds(cli, args.runs)),
            ("torchview draw_graph + dot -> svg", median_seconds(theirs, args.runs)),
        ]
    ours_px = png_size(render(diagram(report), "png"))
    theirs_px = png_size(theirs_graph().visual_graph.pipe(format="png"))

    print(f"resnet50 1x3x224x224, median of {args.runs} runs after one warm-up")
    print(f"(shapetrace.analyze, once: {analysis:.2f} s, not included below)")
    for name, seconds in rows:
        print(f"  {name:<40} {seconds * 1000:8.0f} ms")
    print("drawing size as PNG at 96 dpi (width x height, aspect):")
    for name, (width, height) in (("shapetrace", ours_px), ("torchview", theirs_px)):
        print(f"  {name:<12} {width} x {height} px, {width / height:.2f}")


if __name__ == "__main__":
    main()
