"""Time shapetrace's input-size domain against a brute-force meta sweep and torch.export.

    python benchmarks/bench_sizing.py               # sweep estimated from 50 sizes
    python benchmarks/bench_sizing.py --full-sweep  # sweep every size 1..1024 (minutes)
    python benchmarks/bench_sizing.py --runs 11
    python benchmarks/bench_sizing.py --per-node    # the pass's time per node, resnet18..maxvit_t

For resnet50 and codereview_resnet50:
- shapetrace: the input-size pass alone (`sizing.run` on an analysed model: symbolic
  propagation, the exact domain per axis, bounds, verdict), median of `--runs`; and the whole
  `shapetrace.analyze` call for scale.
- brute force: the model's own forward on meta tensors at H = 1..1024 (W = 224), one call per
  size, as a user would sweep; timed on 50 evenly spread sizes and scaled to 1024 unless
  `--full-sweep`. One axis only: the other costs the same again.
- torch.export with H and W as `Dim`s (1..4096): its time and the range or guard it reports.

Then the pass broken down (median of `--runs`), on those two and on two ResNet-50-sized models
whose domains are not intervals: `resnet50_flat`, resnet50 whose fc reads the flattened
layer4 map (2048*h*w == 100352 couples H and W: 1x49, 7x7, 49x1), and `resnet50_unet`,
resnet50 with a decoder that upsamples and concatenates layer3..layer1 (periodic): the
symbolic run plus the exact domain and its bounds (coupled combinations included), the
shape formulas of every node, and the aligned sizes.
Never part of CI: the figures depend on the machine (it is shared: check `uptime`).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from timing import median_seconds

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("resnet50", "codereview_resnet50")


def build(name: str, device: str) -> Any:
    import torch
    import torchvision

    from shapetrace.zoo import ZOO

    with torch.device(device):
        model = ZOO[name]() if name in ZOO else torchvision.models.get_model(name, weights=None)
    return model.eval()


def _analysed(name: str) -> tuple[Any, Any]:
    """(the input-size pass's context, the report) of one analysis of `name`."""
    import shapetrace
    from shapetrace.passes import sizing

    contexts: list[Any] = []
    original = sizing.run

    def keep(context: Any) -> None:
        contexts.append(context)
        original(context)

    sizing.run = keep  # type: ignore[assignment]
    try:
        report = shapetrace.analyze(name)
    finally:
        sizing.run = original  # type: ignore[assignment]
    return contexts[0], report


def shapetrace_domain(name: str, runs: int) -> tuple[float, float, dict[str, Any]]:
    """(median seconds of the pass alone, of the whole analyze, the domain)."""
    import shapetrace
    from shapetrace.passes import sizing

    context, report = _analysed(name)
    pass_alone = median_seconds(lambda: sizing.run(context), runs)
    whole = median_seconds(lambda: shapetrace.analyze(name), max(3, runs // 2))
    assert report.domain is not None
    return pass_alone, whole, {k: report.domain[k] for k in ("H", "W")}


class _FlatHead:
    """resnet50 whose fc reads the flattened layer4 map (as hand-written nets often do)."""

    @staticmethod
    def build() -> Any:
        import torch
        import torchvision
        from torch import nn

        with torch.device("meta"):
            model = torchvision.models.resnet50(weights=None)
            model.avgpool = nn.Identity()
            model.fc = nn.Linear(2048 * 7 * 7, 1000)
        return model.eval()


class _UNetHead:
    """resnet50's trunk with a decoder: each stage upsampled 2x and concatenated with the
    encoder map of that resolution, so sizes must halve evenly (a periodic domain)."""

    @staticmethod
    def build() -> Any:
        import torch
        import torchvision
        from torch import nn

        class ResNetUNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                trunk = torchvision.models.resnet50(weights=None)
                self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
                self.layers = nn.ModuleList([trunk.layer1, trunk.layer2, trunk.layer3])
                self.layer4 = trunk.layer4
                self.up = nn.Upsample(scale_factor=2)
                self.fuse = nn.ModuleList(
                    [nn.Conv2d(c, c // 2, 1) for c in (2048 + 1024, 1536 + 512, 1024 + 256)]
                )

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = self.stem(x)
                skips = []
                for layer in self.layers:
                    x = layer(x)
                    skips.append(x)
                x = self.layer4(x)
                for fuse in self.fuse:
                    x = fuse(torch.cat([self.up(x), skips.pop()], 1))
                return x

        with torch.device("meta"):
            return ResNetUNet().eval()


BREAKDOWN = {
    "resnet50": lambda: "resnet50",
    "codereview_resnet50": lambda: "codereview_resnet50",
    "resnet50_flat": _FlatHead.build,
    "resnet50_unet": _UNetHead.build,
}


def pass_breakdown(name: str, runs: int) -> dict[str, Any]:
    """Median ms of the pass and of its parts on one model, and what they found."""
    import shapetrace
    from shapetrace.passes import sizing
    from shapetrace.passes.sizing import SizeAnalysis
    from shapetrace.passes.sizing.formulas import FormulaWriter, aligned_sets

    contexts: list[Any] = []
    original = sizing.run

    def keep(context: Any) -> None:
        contexts.append(context)
        original(context)

    sizing.run = keep  # type: ignore[assignment]
    try:
        report = shapetrace.analyze(BREAKDOWN[name](), "1x3x224x224")
    finally:
        sizing.run = original  # type: ignore[assignment]
    context = contexts[0]
    analysis = SizeAnalysis(context)
    assert report.domain is not None
    kinds = sorted({b["kind"] for b in report.domain["bounds"]})
    return {
        "pass": median_seconds(lambda: original(context), runs) * 1000,
        "domain": median_seconds(lambda: SizeAnalysis(context).domain(), runs) * 1000,
        "formulas": median_seconds(lambda: FormulaWriter(analysis).shapes(), runs) * 1000,
        "aligned": median_seconds(lambda: aligned_sets(analysis), runs) * 1000,
        "nodes": len(report.nodes),
        "found": f"H {report.domain['H']}, bounds {', '.join(kinds) or 'none'}, "
        f"aligned {report.aligned_multiple}",
    }


def brute_force(name: str, full: bool) -> tuple[float, str, list[list[int]]]:
    """Seconds for H = 1..1024 (estimated from 50 sizes unless `full`), and the H accepted."""
    import torch

    model = build(name, "meta")
    expected = None
    with torch.no_grad():
        expected = tuple(model(torch.empty(1, 3, 224, 224, device="meta")).shape)
    sizes = list(range(1, 1025)) if full else sorted({1 + round(i * 1023 / 49) for i in range(50)})
    accepted = []
    start = time.perf_counter()
    for n in sizes:
        try:
            with torch.no_grad():
                out = model(torch.empty(1, 3, n, 224, device="meta"))
            if tuple(out.shape) == expected:
                accepted.append(n)
        except Exception:
            pass
    elapsed = time.perf_counter() - start
    seconds = elapsed if full else elapsed * 1024 / len(sizes)
    intervals: list[list[int]] = []
    for n in accepted:
        if intervals and intervals[-1][1] == n - 1:
            intervals[-1][1] = n
        else:
            intervals.append([n, n])
    how = "measured" if full else f"estimated from {len(sizes)} sizes; accepted among them"
    return seconds, how, intervals


def torch_export(name: str) -> tuple[float, str]:
    """Seconds for torch.export with dynamic H and W, and the range or error it reports."""
    import torch
    from torch.export import Dim

    model = build(name, "cpu")
    x = torch.zeros(1, 3, 224, 224)
    dims = {"x": {2: Dim("H", min=1, max=4096), 3: Dim("W", min=1, max=4096)}}
    start = time.perf_counter()
    try:
        program = torch.export.export(model, (x,), dynamic_shapes=dims)
    except Exception as exc:  # what a user sees: a guard, a suggested fix, or a crash
        elapsed = time.perf_counter() - start
        lines = [line.strip() for line in str(exc).splitlines()]
        guard = next((line for line in lines if "guard" in line), lines[0])
        guard = guard.split("satisfy the generated guard")[-1].strip(" .")
        fixes = []
        if "Suggested fixes:" in lines:
            for line in lines[lines.index("Suggested fixes:") + 1 :]:
                if not line:
                    break
                fixes.append(line)
        suggested = f"; suggests {', '.join(fixes)}" if fixes else ""
        return elapsed, f"{type(exc).__name__}, guard {guard[:110]}{suggested}"
    elapsed = time.perf_counter() - start
    ranges = {str(k): str(v) for k, v in program.range_constraints.items()}
    return elapsed, f"ranges {ranges}"


# From a small CNN to a deep one and two windowed-attention transformers.
PER_NODE = ("resnet18", "resnet50", "efficientnet_b7", "swin_t", "maxvit_t")


def per_node(runs: int) -> None:
    """The input-size pass alone per graph node: flat from resnet18 to efficientnet_b7."""
    from shapetrace.passes import sizing

    print(f"{'model':<18}{'nodes':>7}{'pass':>11}{'per node':>11}")
    for name in PER_NODE:
        context, report = _analysed(name)
        seconds = median_seconds(lambda context=context: sizing.run(context), runs)
        nodes = len(report.nodes)
        print(f"{name:<18}{nodes:>7}{seconds * 1000:>9.1f}ms{seconds * 1e6 / nodes:>9.0f}us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--full-sweep", action="store_true")
    parser.add_argument(
        "--per-node", action="store_true", help="only the pass's time per node, model by model"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    warnings.simplefilter("ignore")
    if args.per_node:
        per_node(args.runs)
        return

    start = time.perf_counter()
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import shapetrace  # noqa: F401

    print(f"import torch + torchvision + shapetrace: {time.perf_counter() - start:.2f} s\n")
    rows = []
    for name in MODELS:
        pass_alone, whole, domain = shapetrace_domain(name, args.runs)
        sweep, how, swept = brute_force(name, args.full_sweep)
        export_s, export_result = torch_export(name)
        rows.append((name, pass_alone, whole, domain, sweep, how, swept, export_s, export_result))

    print(f"{'model':<22}{'method':<36}{'time':>10}  result")
    for name, pass_alone, whole, domain, sweep, how, swept, export_s, export_result in rows:
        print(
            f"{name:<22}{'shapetrace input-size pass':<36}{pass_alone * 1000:>8.1f}ms  "
            f"H {domain['H']}, W {domain['W']}"
        )
        print(f"{'':<22}{'shapetrace.analyze (whole)':<36}{whole * 1000:>8.1f}ms")
        print(f"{'':<22}{'brute-force meta sweep H=1..1024':<36}{sweep:>9.1f}s  ({how}) H {swept}")
        print(
            f"{'':<22}{'torch.export, Dim H, W in 1..4096':<36}{export_s:>9.1f}s  {export_result}"
        )

    print(
        f"\n{'model':<22}{'nodes':>6}{'pass':>9}{'domain':>9}{'formulas':>10}{'aligned':>9}  found"
    )
    for name in BREAKDOWN:
        b = pass_breakdown(name, args.runs)
        print(
            f"{name:<22}{b['nodes']:>6}{b['pass']:>7.1f}ms{b['domain']:>7.1f}ms"
            f"{b['formulas']:>8.1f}ms{b['aligned']:>7.1f}ms  {b['found']}"
        )


if __name__ == "__main__":
    main()
