"""Issue 17's figures: `analyze("resnet50")` at 224, model build included, against
`torchinfo.summary(..., device="meta")` and `torchview.draw_graph(..., device="meta")` with
their model built on meta too; analysis time per node from resnet18 to efficientnet_b7 and an
HRNet-style net (`hrnet_like` below); and `Report.at`, the answer at a new size from formulas.

    PYTHONPATH=/tmp/peers python benchmarks/bench_fast.py   # torchinfo/torchview installed
    # there with `pip install --target /tmp/peers torchinfo torchview`: never a dependency

Every figure is a median of calls interleaved in one process (one thread), so a burst of other
work on the shared machine hits each alike; ratios are of medians measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any


def hrnet_like(width: int = 32, blocks: int = 4) -> Any:
    """An HRNet-style net: four parallel resolutions, exchanged by strided convs and
    upsampling
    at every stage (the multi-branch fusion that makes HRNet's graph wide)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def unit(c: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        )

    class Stage(nn.Module):
        def __init__(self, branches: int) -> None:
            super().__init__()
            widths = [width * 2**i for i in range(branches)]
            self.widths = widths
            self.branches = nn.ModuleList(
                nn.Sequential(*[unit(c) for _ in range(blocks)]) for c in widths
            )
            self.fuse = nn.ModuleList(
                nn.ModuleList(
                    nn.Conv2d(
                        widths[j],
                        widths[i],
                        1 if j >= i else 3,
                        stride=1 if j >= i else 2 ** (i - j),
                        padding=0 if j >= i else 1,
                    )
                    for j in range(branches)
                )
                for i in range(branches)
            )

        def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
            ys = [b(x) for b, x in zip(self.branches, xs, strict=True)]
            out = []
            for i, convs in enumerate(self.fuse):
                acc = ys[i]
                for j, conv in enumerate(convs):
                    if j == i:
                        continue
                    z = conv(ys[j])
                    if j > i:
                        z = F.interpolate(z, size=acc.shape[-2:], mode="nearest")
                    acc = acc + z
                out.append(F.relu(acc))
            return out

    class HRNetLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1)
            )
            self.down = nn.ModuleList(
                nn.Conv2d(width * 2**i, width * 2 ** (i + 1), 3, 2, 1) for i in range(3)
            )
            self.stages = nn.ModuleList(Stage(b) for b in (1, 2, 3, 4))
            self.head = nn.Conv2d(width, 17, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            xs = [self.stem(x)]
            for k, stage in enumerate(self.stages):
                xs = stage(xs)
                if k < 3:
                    xs = [*xs, self.down[k](xs[-1])]
            return self.head(xs[0])

    return HRNetLike()


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch
    import torchvision

    import shapetrace

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average (1 min) {os.getloadavg()[0]:.2f}")

    def on_meta(build: Callable[[], Any]) -> Any:
        with torch.device("meta"):
            return build()

    peers: dict[str, Callable[[], Any]] = {
        "shapetrace analyze('resnet50') (build on meta included)": lambda: shapetrace.analyze(
            "resnet50", "1x3x224x224"
        )
    }
    try:
        import torchinfo

        peers["torchinfo.summary(device='meta'), resnet50 built on meta (build included)"] = (
            lambda: torchinfo.summary(
                on_meta(torchvision.models.resnet50), (1, 3, 224, 224), device="meta", verbose=0
            )
        )
    except ImportError:
        print("torchinfo not installed: skipped")
    try:
        import torchview

        peers["torchview.draw_graph(device='meta'), resnet50 built on meta (build included)"] = (
            lambda: torchview.draw_graph(
                on_meta(torchvision.models.resnet50), input_size=(1, 3, 224, 224), device="meta"
            )
        )
    except ImportError:
        print("torchview not installed: skipped")
    figures = interleaved(peers, args.rounds)
    ours = next(iter(figures.values()))
    print("\n| resnet50 at 224 | median | / shapetrace |\n|---|---:|---:|")
    for name, ms in figures.items():
        print(f"| {name} | {ms:.1f} ms | {ms / ours:.2f}x |")

    models = {
        "resnet18": "resnet18",
        "resnet50": "resnet50",
        "efficientnet_b7": "efficientnet_b7",
        "hrnet_like": hrnet_like(),
    }
    calls = {k: (lambda m=m: shapetrace.analyze(m, "1x3x224x224")) for k, m in models.items()}
    counts = {k: len(c().nodes) for k, c in calls.items()}
    times = interleaved(calls, max(3, args.rounds // 3))
    base = times["resnet50"] / counts["resnet50"]
    print(
        "\n| model | nodes | analyze | per node | / resnet50's per node |"
        "\n|---|---:|---:|---:|---:|"
    )
    for k in models:
        per = times[k] / counts[k]
        print(
            f"| {k} | {counts[k]} | {times[k]:.0f} ms | {1000 * per:.0f} µs | {per / base:.2f}x |"
        )

    print("\n| Report.at (formulas, no torch) | median |\n|---|---:|")
    for name in ("resnet50", "efficientnet_b7"):
        report = shapetrace.analyze(name, "1x3x224x224")
        report.at("640")  # parses and caches the formulas
        print(
            f"| {name} at 640 ({len(report.nodes)} nodes) | "
            f"{median_ms(lambda r=report: r.at('1x3x640x640'), 51):.2f} ms |"
        )
    print(f"\nload average (1 min) at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
