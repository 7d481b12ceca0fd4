"""Time the receptive-field pass alone, on the prepared context of `analyze("resnet50")`.

    python benchmarks/bench_receptive.py                  # resnet50 at 224, 30 runs
    python benchmarks/bench_receptive.py --model densenet121 --input 1x3x448x448 --runs 50

The pass is captured as `analyze()` calls it, then run again on the same context: the figure is
what computing the fields adds to `analyze()`, nothing else (no model build, trace or shapes).
Printed, never asserted: the machine is shared, so quote the median and check `uptime`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

BUDGET_MS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--input", default="1x3x224x224")
    parser.add_argument("--runs", type=int, default=30, help="timed runs, at least 20")
    args = parser.parse_args()
    runs = max(args.runs, 20)

    import shapetrace
    from shapetrace.passes import receptive

    captured: dict[str, Any] = {}
    original = receptive.run

    def capture(context: Any) -> None:
        captured["context"] = context
        original(context)

    receptive.run = capture
    try:
        start = time.perf_counter()
        report = shapetrace.analyze(args.model, args.input)
        whole = time.perf_counter() - start
    finally:
        receptive.run = original
    context = captured["context"]

    original(context)  # warm-up: first-call caches (aten op tags) are not per model
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        original(context)
        times.append(time.perf_counter() - start)

    median_ms = statistics.median(times) * 1e3
    print(f"{args.model} {args.input}: {len(report.nodes)} nodes, first analyze() {whole:.2f} s")
    print(
        f"receptive pass: median {median_ms:.2f} ms, min {min(times) * 1e3:.2f} ms, "
        f"max {max(times) * 1e3:.2f} ms over {runs} runs "
        f"(budget {BUDGET_MS:.0f} ms; load average {os.getloadavg()[0]:.2f})"
    )
    layer4 = next((m for m in report.modules if m.path == "layer4"), None)
    if layer4 is not None:
        print(f"layer4 rf: {layer4.rf}")


if __name__ == "__main__":
    main()
