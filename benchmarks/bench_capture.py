"""Capture rungs side by side: torch.fx against the symbolic-shape capture (torch.export) and
the hooks run, on the same model and input, one process.

python benchmarks/bench_capture.py            # print the table
python benchmarks/bench_capture.py --write    # and update docs/performance.md's section
python benchmarks/bench_capture.py --runs 1   # a quick look
python benchmarks/bench_capture.py --detectors maskrcnn_resnet50_fpn ssd300_vgg16   # per detector

For each model: the capture alone (`capture.trace`, `capture_symbolic.capture_symbolic`,
`capture_hooks.hook_run`; a rung that cannot capture the model is `-`) and the whole
`shapetrace.analyze`, which picks the rung itself. Medians of `--runs` calls after one
warm-up (`timing.median_seconds`), wall time on a shared machine; models whose symbolic capture
takes seconds are run `--slow-runs` times.

`--detectors NAME ...` times the whole `shapetrace.analyze` of torchvision detectors instead,
as a CLI user meets it: per detector, `--runs` fresh processes, each importing shapetrace (and
with it torch and torchvision), then analysing the detector twice: the first call pays what
torch.export and shapetrace set up once per process, the second is the warm call. Medians of
the runs: import, first and warm call (wall and CPU seconds), the rung, the rows, where the
capture ended, and the load average before and after, for docs/capture.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from timing import median_seconds

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
HEADER = "## Capture rungs: fx, symbolic shapes, hooks"

# (name, --input, slow): torchvision models fx traces, one it cannot (a loop in RAFT), a detector,
# and a segmentation-style model checking its input size in Python.
MODELS = [
    ("resnet18", "1x3x224x224", False),
    ("mobilenet_v3_large", "1x3x224x224", False),
    ("divisible_by_32", "1x3x224x224", False),
    ("raft_small", "1x3x128x128,1x3x128x128", True),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "1x3x320x320", True),
]


def build(name: str) -> Any:
    import torch
    import torchvision
    from torch import nn

    if name == "divisible_by_32":

        class DivisibleBy32(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.features = nn.Sequential(
                    nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
                )
                self.head = nn.Conv2d(16, 2, 1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                h, w = x.shape[-2:]
                if h % 32 or w % 32:
                    raise RuntimeError(f"input must be divisible by 32, got {h}x{w}")
                return self.head(self.features(x))

        return DivisibleBy32()
    with torch.device("meta"):
        kwargs: dict[str, Any] = {"weights": None}
        if "rcnn" in name:
            kwargs["weights_backbone"] = None
        return torchvision.models.get_model(name, **kwargs)


def measure(name: str, spec: str, runs: int) -> dict[str, Any]:
    import torch

    import shapetrace
    from shapetrace.capture import TraceFailure, trace
    from shapetrace.capture_hooks import hook_run
    from shapetrace.capture_symbolic import SymbolicCaptureError, capture_symbolic

    model = build(name).eval()
    meta = model.to("meta") if name == "divisible_by_32" else model
    shapes = [[int(d) for d in part.split("x")] for part in spec.split(",")]
    tensors = [torch.empty(s, device="meta") for s in shapes]
    detection = "rcnn" in name
    row: dict[str, Any] = {"model": name, "input": spec}

    def timed(call: Any) -> float | None:
        try:
            return median_seconds(call, runs)
        except (TraceFailure, SymbolicCaptureError):
            return None

    row["fx"] = timed(lambda: trace(meta))
    row["symbolic"] = timed(
        lambda: capture_symbolic(meta, tensors, (-2, -1), images=detection, max_paths=1)
    )
    hooks_args: list[Any] = [list(tensors[0].unbind(0))] if detection else tensors
    row["hooks"] = timed(lambda: hook_run(meta, hooks_args, {}))
    report = shapetrace.analyze(build(name) if name == "divisible_by_32" else name, spec)
    row["rung"] = report.source["trace"]
    row["analyze"] = median_seconds(
        lambda: shapetrace.analyze(build(name) if name == "divisible_by_32" else name, spec),
        runs,
    )
    return row


def table(rows: list[dict[str, Any]]) -> list[str]:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "| model | input | fx (s) | symbolic (s) | hooks (s) | analyze (s) | rung taken |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['input']} | {cell(r['fx'])} | {cell(r['symbolic'])} | "
            f"{cell(r['hooks'])} | {cell(r['analyze'])} | {r['rung']} |"
        )
    return lines


def write(lines: list[str], runs: int, slow_runs: int) -> None:
    import torch

    section = [
        HEADER,
        "",
        "`python benchmarks/bench_capture.py --write`: the capture alone per rung, and the whole",
        "`shapetrace.analyze` (which picks the rung), on meta tensors. Median of "
        f"{runs} calls after a warm-up ({slow_runs} for RAFT and the detector), wall time on a "
        f"shared 2-core machine under load, torch {torch.__version__.split('+')[0]}. `-`: the "
        "rung cannot capture that model. The symbolic capture includes classifying its guards "
        "(one eager meta run per guard) and, here, only the first path (`max_paths=1`). The "
        "detector's hooks run stops at its RPN (`nonzero`): fast, and a partial report.",
        "",
        *lines,
        "",
    ]
    text = DOC.read_text(encoding="utf-8")
    start = text.find(HEADER)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section)
    else:
        end = text.find("\n## ", start + len(HEADER))
        rest = "" if end < 0 else text[end + 1 :]
        text = text[:start] + "\n".join(section) + ("\n" + rest if rest else "")
    DOC.write_text(text, encoding="utf-8")


def detectors(names: list[str], runs: int) -> list[str]:
    """Per detector, medians over `runs` fresh processes (`one_process`) of the import, the
    first and the warm analysis."""
    lines = [
        "| model | rung | rows | import (s) | first wall (s) | first CPU (s) | warm wall (s) "
        "| warm CPU (s) | capture ends at |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    before = os.getloadavg()[0]
    for name in names:
        results = []
        for _ in range(runs):
            done = subprocess.run(
                [sys.executable, __file__, "--one-process", name],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))

        def med(key: str, results: list[dict[str, Any]] = results) -> str:
            return f"{statistics.median(r[key] for r in results):.2f}"

        last = results[-1]
        line = (
            f"| `{name}` | {last['rung']} | {last['rows']} | {med('import')} | "
            f"{med('first_wall')} | {med('first_cpu')} | {med('warm_wall')} | {med('warm_cpu')} "
            f"| {last['ends'] or '-'} |"
        )
        print(line, file=sys.stderr, flush=True)
        lines.append(line)
    after = os.getloadavg()[0]
    lines.append("")
    lines.append(
        f"Median of {runs} fresh processes; load average {before:.1f} before, {after:.1f} after."
    )
    return lines


def one_process(name: str) -> dict[str, Any]:
    """In this (fresh) process: the import of shapetrace's analysis (torch, torchvision), then
    two analyses of `name`, each timed in wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    import shapetrace
    import shapetrace.analysis  # shapetrace imports it, and torch, on first use

    out: dict[str, Any] = {"import": time.perf_counter() - wall}
    for call in ("first", "warm"):
        wall, cpu = time.perf_counter(), time.process_time()
        report = shapetrace.analyze(name)
        out[f"{call}_wall"] = time.perf_counter() - wall
        out[f"{call}_cpu"] = time.process_time() - cpu
    out["rung"] = report.source["trace"]
    out["rows"] = len(report.nodes)
    out["ends"] = next(
        (n.name for n in report.nodes if (n.missing or {}).get("shape", "").startswith("not")),
        "",
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slow-runs", type=int, default=1)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--detectors", nargs="+", metavar="MODEL")
    parser.add_argument("--one-process", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.one_process:
        print(json.dumps(one_process(args.one_process)))
        return 0
    if args.detectors:
        print("\n".join(detectors(args.detectors, args.runs)))
        return 0
    rows = []
    for name, spec, slow in MODELS:
        row = measure(name, spec, args.slow_runs if slow else args.runs)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    lines = table(rows)
    print("\n".join(lines))
    if args.write:
        write(lines, args.runs, args.slow_runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
