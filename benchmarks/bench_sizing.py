"""Time shapetrace's input-size domain against a brute-force meta sweep and torch.export.

    python benchmarks/bench_sizing.py               # sweep estimated from 50 sizes
    python benchmarks/bench_sizing.py --full-sweep  # sweep every size 1..1024 (minutes)
    python benchmarks/bench_sizing.py --runs 11

For resnet50 and codereview_resnet50:
- shapetrace: the input-size pass alone (`sizing.run` on an analysed model: symbolic
  propagation, the exact domain per axis, bounds, verdict), median of `--runs`; and the whole
  `shapetrace.analyze` call for scale.
- brute force: the model's own forward on meta tensors at H = 1..1024 (W = 224), one call per
  size, as a user would sweep; timed on 50 evenly spread sizes and scaled to 1024 unless
  `--full-sweep`. One axis only: the other costs the same again.
- torch.export with H and W as `Dim`s (1..4096): its time and the range or guard it reports.
Never part of CI: the figures depend on the machine (it is shared: check `uptime`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("resnet50", "codereview_resnet50")


def median_seconds(call: Callable[[], object], runs: int) -> float:
    """Median wall time of `runs` calls after one warm-up."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(name: str, device: str) -> Any:
    import torch
    import torchvision

    from shapetrace.zoo import ZOO

    with torch.device(device):
        model = ZOO[name]() if name in ZOO else torchvision.models.get_model(name, weights=None)
    return model.eval()


def shapetrace_domain(name: str, runs: int) -> tuple[float, float, dict[str, Any]]:
    """(median seconds of the pass alone, of the whole analyze, the domain)."""
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
    context = contexts[0]
    pass_alone = median_seconds(lambda: original(context), runs)
    whole = median_seconds(lambda: shapetrace.analyze(name), max(3, runs // 2))
    assert report.domain is not None
    return pass_alone, whole, {k: report.domain[k] for k in ("H", "W")}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--full-sweep", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    warnings.simplefilter("ignore")

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


if __name__ == "__main__":
    main()
