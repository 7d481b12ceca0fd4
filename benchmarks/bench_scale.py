"""Scale: billion-parameter models analysed without materialising weights.

For each model, a fresh process imports shapetrace and torch (the baseline), then analyses the
model; we record wall time of the analysis and peak RSS above the baseline.

    python benchmarks/bench_scale.py            # prints a Markdown table
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("vit_h_14", None, None),
    ("regnet_y_128gf", None, None),
    (f"{ROOT / 'examples' / 'decoder_lm.py'}:DecoderLM", "1x1024", '{"layers": 24}'),
]

CHILD = r"""
import json, resource, sys, time
import torch, torchvision, shapetrace
from shapetrace.analysis import analyze
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model, spec, args = sys.argv[1], sys.argv[2] or None, sys.argv[3]
start = time.perf_counter()
report = analyze(model, spec, model_args=json.loads(args) if args else None)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "baseline_mb": baseline / 1024, "peak_mb": peak / 1024,
                  "params": report.totals["params"], "nodes": len(report.nodes),
                  "ok": report.failure is None}))
"""


def measure(model: str, spec: str | None, args: str | None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model, spec or "", args or ""],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    runs = 3
    print("| model | params | nodes | analysis (s, median of 3) | peak RSS above import (MB) |")
    print("|---|---:|---:|---:|---:|")
    for model, spec, args in CASES:
        results = [measure(model, spec, args) for _ in range(runs)]
        seconds = sorted(r["seconds"] for r in results)[runs // 2]
        extra = sorted(r["peak_mb"] - r["baseline_mb"] for r in results)[runs // 2]
        first = results[0]
        name = model.rsplit("/", 1)[-1]
        print(f"| {name} | {first['params']:,} | {first['nodes']} | {seconds:.2f} | {extra:.0f} |")


if __name__ == "__main__":
    main()
