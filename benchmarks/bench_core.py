"""Time shapetrace's core analysis against torchinfo and torchview on resnet50.

    python benchmarks/bench_core.py            # print the tables
    python benchmarks/bench_core.py --write    # and update the core section of docs/performance.md

Each tool, device and size runs in a fresh subprocess, so peak memory (ru_maxrss) belongs to that
measurement alone and no tool warms another's caches. This parent process never imports torch:
its resident size would otherwise leak into the children's ru_maxrss across fork/exec.
Never part of CI: it takes minutes and the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_MD = ROOT / "docs" / "performance.md"
SECTION_TITLE = "## Core analysis: resnet50 against torchinfo and torchview"
RESNET50_PARAMS = 25_557_032

# name -> what the subprocess calls; the order is the order of the tables.
TOOLS = {
    "shapetrace": 'shapetrace.analyze("resnet50", "1x3xSxS")',
    "shapetrace-module": "shapetrace.analyze(model, ...) on a CPU-built resnet50()",
    "torchinfo-cpu": 'torchinfo.summary(model, input_size, device="cpu", verbose=0)',
    "torchinfo-meta": 'torchinfo.summary(model, input_size, device="meta", verbose=0)',
    "torchview-cpu": 'torchview.draw_graph(model, input_size=..., device="cpu")',
    "torchview-meta": 'torchview.draw_graph(model, input_size=..., device="meta")',
}


# ---------------------------------------------------------------- worker (one tool, one size)


def _maxrss_mb() -> float:
    import resource

    # Linux reports kilobytes, macOS bytes.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def worker(
    tool: str, size: int, runs: int, slow_after: float, slow_runs: int, threads: int
) -> None:
    """Import, then time `tool` at `size`, printing one JSON line per event for the parent."""
    start = time.perf_counter()
    import torch
    import torchvision

    if threads:
        torch.set_num_threads(threads)

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    if tool.startswith("shapetrace"):
        import shapetrace
        import shapetrace.analysis  # analyze() imports torch lazily: pay for it here, not timed

        versions["shapetrace"] = shapetrace.__version__
    elif tool.startswith("torchinfo"):
        import torchinfo

        versions["torchinfo"] = _dist_version("torchinfo")
    else:
        import torchview

        versions["torchview"] = _dist_version("torchview")
    _emit(
        event="ready",
        import_s=time.perf_counter() - start,
        baseline_mb=_maxrss_mb(),
        threads=torch.get_num_threads(),
        versions=versions,
    )

    shape = (1, 3, size, size)
    spec = "x".join(map(str, shape))

    def one_run() -> tuple[float | None, float]:
        """(model construction seconds or None, call seconds) for one fresh model."""
        build = None
        if tool != "shapetrace":
            t0 = time.perf_counter()
            model = torchvision.models.resnet50()
            build = time.perf_counter() - t0
        t0 = time.perf_counter()
        if tool == "shapetrace":
            out: Any = shapetrace.analyze("resnet50", spec)
        elif tool == "shapetrace-module":
            out = shapetrace.analyze(model, spec)
        elif tool.startswith("torchinfo"):
            device = tool.split("-")[1]
            out = torchinfo.summary(model, input_size=shape, device=device, verbose=0)
        else:
            device = tool.split("-")[1]
            out = torchview.draw_graph(model, input_size=shape, device=device)
        call = time.perf_counter() - t0
        _check(tool, out)
        return build, call

    build, call = one_run()
    _emit(event="run", build_s=build, call_s=call)
    extra = runs if call < slow_after else slow_runs - 1
    for _ in range(extra):
        build, call = one_run()
        _emit(event="run", build_s=build, call_s=call)
    _emit(event="done", peak_mb=_maxrss_mb())


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _check(tool: str, out: Any) -> None:
    """Fail loudly if a tool returned without doing the work being timed."""
    if tool.startswith("shapetrace"):
        ok = out.failure is None and out.totals["params"] == RESNET50_PARAMS
    elif tool.startswith("torchinfo"):
        ok = out.total_params == RESNET50_PARAMS
    else:
        ok = "layer4" in out.visual_graph.source or "Linear" in out.visual_graph.source
    if not ok:
        raise SystemExit(f"{tool} returned an incomplete result")


# ---------------------------------------------------------------- parent


@dataclass
class Measurement:
    """One tool at one size, pooled over the rounds (one fresh subprocess per round)."""

    tool: str
    size: int
    timed: list[float] = field(default_factory=list)  # the calls the median is taken over
    firsts: list[float] = field(default_factory=list)  # each round's first call
    builds: list[float] = field(default_factory=list)
    colds: list[float] = field(default_factory=list)  # import + first build + first call
    baselines: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # 1-minute load average at each start
    versions: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    slow: bool = False  # first call took 10 s or more: measured once per round, not repeated
    stopped: str | None = None  # why a round was cut short, in words for the table

    @property
    def median(self) -> float | None:
        return statistics.median(self.timed) if self.timed else None

    @property
    def build(self) -> float | None:
        return statistics.median(self.builds) if self.builds else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _env() -> dict[str, str]:
    """The environment for subprocesses: this checkout's shapetrace first on the path."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def measure(result: Measurement, args: argparse.Namespace) -> None:
    """Run one worker subprocess and add its figures to `result`, killing it if one call
    exceeds the timeout or its memory the cap."""
    result.loads.append(os.getloadavg()[0])
    cmd = [sys.executable, __file__, "--worker", result.tool, str(result.size)]
    cmd += ["--runs", str(args.runs), "--slow-runs", str(args.slow_runs)]
    cmd += ["--threads", str(args.threads)]
    calls: list[float] = []
    import_s = first_build = 0.0
    # stderr goes to a file: a pipe nobody reads could fill with warnings and stall the worker.
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True, env=_env())
        for event in _events(proc, result, args):
            if event["event"] == "ready":
                import_s = event["import_s"]
                result.baselines.append(event["baseline_mb"])
                result.versions = event["versions"]
                result.threads = event["threads"]
            elif event["event"] == "run":
                if event["build_s"] is not None:
                    result.builds.append(event["build_s"])
                    first_build = first_build or event["build_s"]
                calls.append(event["call_s"])
            else:
                result.peaks.append(event["peak_mb"])
        if proc.wait() != 0 and not result.stopped:
            errors.seek(0)
            tail = errors.read().strip().splitlines()[-1:] or ["no message"]
            result.stopped = f"failed: {tail[0]}"
    if not calls:
        return
    result.firsts.append(calls[0])
    result.colds.append(import_s + first_build + calls[0])
    # A fast tool's first call is a warm-up, reported apart; a slow tool's single call is kept.
    result.slow = result.slow or calls[0] >= 10
    result.timed += calls if calls[0] >= 10 else calls[1:]


def _events(
    proc: subprocess.Popen[str], result: Measurement, args: argparse.Namespace
) -> Iterator[dict[str, Any]]:
    """The worker's JSON events; stops the worker (and says why in `result`) when the gap
    between two events exceeds the timeout or its resident memory the cap."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    last = time.monotonic()
    while True:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            rss = _rss_mb(proc.pid)
            if rss is not None and rss > args.rss_cap_gb * 1024:
                result.stopped = f"stopped: RSS > {args.rss_cap_gb:g} GB"
            elif time.monotonic() - last > args.timeout:
                result.stopped = f"stopped: > {args.timeout:g} s"
            if result.stopped:
                proc.kill()
                return
            continue
        if line is None:
            return
        last = time.monotonic()
        yield json.loads(line)


def cold_shapetrace(repeats: int) -> dict[str, float]:
    """Fresh processes: `import shapetrace`, then the first analyze (which imports torch)."""
    code = (
        "import time, json\n"
        "t0 = time.perf_counter(); import shapetrace; t1 = time.perf_counter()\n"
        "shapetrace.analyze('resnet50', '1x3x448x448'); t2 = time.perf_counter()\n"
        "print(json.dumps([t1 - t0, t2 - t1]))\n"
    )
    imports, firsts, totals = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
        )
        totals.append(time.perf_counter() - t0)
        imp, first = json.loads(out.stdout.strip().splitlines()[-1])
        imports.append(imp)
        firsts.append(first)
    return {
        "import": statistics.median(imports),
        "first": statistics.median(firsts),
        "process": statistics.median(totals),
    }


def cli_wall(repeats: int) -> float:
    """Wall time of `shapetrace resnet50 --input 1x3x448x448`, as a user types it."""
    script = Path(sys.executable).with_name("shapetrace")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "shapetrace"]
    cmd += ["resnet50", "--input", "1x3x448x448"]
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=_env(), check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


# ---------------------------------------------------------------- report


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _times(ratio: float) -> str:
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.1f}x"


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else _times(value / base)


def tables(results: list[Measurement], cold: dict[str, float], cli: float) -> str:
    """The Markdown tables of one benchmark run."""
    base = {m.size: m.median for m in results if m.tool == "shapetrace"}
    out = [
        "| size | tool | call (median) | runs | first call | model build (median) "
        "| call / shapetrace | (build + call) / shapetrace | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        call = _s(m.median) if m.median is not None else (m.stopped or "-")
        with_build = m.median + m.build if m.median is not None and m.build is not None else None
        load = f"{min(m.loads):.1f}-{max(m.loads):.1f}" if m.loads else "-"
        out.append(
            f"| {m.size} | {m.tool} | {call} | {len(m.timed)} | {_s(_median(m.firsts))} "
            f"| {_s(m.build)} | {_ratio(m.median, base.get(m.size))} "
            f"| {_ratio(with_build, base.get(m.size))} | {load} |"
        )
    out += [
        "",
        "Peak memory (ru_maxrss, MB) of each subprocess (largest over the rounds): the baseline "
        "is taken after importing torch, torchvision and the tool; the peak covers every call, "
        "model construction included.",
        "",
        "| size | tool | import baseline | peak | peak - baseline |",
        "|---|---|---:|---:|---:|",
    ]
    for m in results:
        baseline = _median(m.baselines)
        peak = max(m.peaks) if m.peaks else None
        delta = peak - baseline if peak is not None and baseline is not None else None
        shown = _mb(peak) if peak is not None else (m.stopped or "-")
        out.append(f"| {m.size} | {m.tool} | {_mb(baseline)} | {shown} | {_mb(delta)} |")
    out += [
        "",
        "One-off costs (fresh processes, medians):",
        "",
        "| what | time |",
        "|---|---:|",
        f"| `import shapetrace` (lazy: torch not yet imported) | {_s(cold['import'])} |",
        f"| first `analyze('resnet50', '1x3x448x448')`, torch import included | "
        f"{_s(cold['first'])} |",
        f"| whole `python -c` process for the two lines above | {_s(cold['process'])} |",
        f"| CLI `shapetrace resnet50 --input 1x3x448x448`, wall | {_s(cli)} |",
    ]
    out += [
        f"| {m.tool} at 448: import torch + torchvision + tool, build, first call "
        f"| {_s(_median(m.colds))} |"
        for m in results
        if m.size == 448 and m.colds
    ]
    return "\n".join(out)


def headline(results: list[Measurement]) -> list[str]:
    """One sentence per size comparing shapetrace's median with each other tool's."""
    lines = []
    base = {m.size: m.median for m in results if m.tool == "shapetrace" and m.median}
    for size, own in sorted(base.items()):
        parts = []
        for m in results:
            if m.size != size or m.tool == "shapetrace":
                continue
            if m.median is None:
                parts.append(f"{m.tool} {m.stopped}")
            elif 1 / 1.1 < m.median / own < 1.1:
                parts.append(f"{m.tool} takes about as long as shapetrace")
            elif m.median > own:
                parts.append(f"shapetrace is {_times(m.median / own)} faster than {m.tool}")
            else:
                parts.append(f"{m.tool} is {_times(own / m.median)} faster than shapetrace")
        lines.append(f"- at {size}x{size}: " + "; ".join(parts) + ".")
    return lines


def machine(results: list[Measurement], load: tuple[str, str]) -> str:
    versions: dict[str, str] = {}
    threads = None
    for m in results:
        versions.update(m.versions)
        threads = threads or m.threads
    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = names[0] if names else cpu
    except OSError:
        pass
    tools = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return (
        f"{datetime.date.today().isoformat()}; {os.cpu_count()} cores ({cpu}), torch threads "
        f"{threads}; Python {platform.python_version()}; {tools}. Load average (1 min) "
        f"{load[0]} before, {load[1]} after: the machine is shared, so expect noise."
    )


def section(
    results: list[Measurement],
    cold: dict[str, float],
    cli: float,
    meta: str,
    rounds: int,
    runs: int,
    threads: int,
) -> str:
    slow = [f"{m.tool} at {m.size}" for m in results if m.slow]
    notes = [
        SECTION_TITLE,
        "",
        "Run: `pip install -r benchmarks/requirements.txt`, then "
        "`python benchmarks/bench_core.py --write` (15 to 20 minutes on 2 cores; "
        "`--rounds 1 --sizes 224 448` for a quick look).",
        "",
        f"Measured {meta}",
        "",
        "What is timed, for resnet50 with an input of 1x3xSxS:",
        "",
    ]
    notes += [f"- **{tool}**: `{call}`" for tool, call in TOOLS.items()]
    notes += [
        "",
        "shapetrace's figure includes building the model (on the meta device, so no weights are "
        "allocated or initialised); the others are called on a `torchvision.models.resnet50()` "
        "built on CPU as their users would, and that construction is timed apart (model build). "
        "`shapetrace-module` is shapetrace given that same CPU-built model.",
        f"Each tool and size ran in a fresh subprocess once per round, in {rounds} "
        f"round{'s' * (rounds > 1)}, interleaved so that a burst of other work on the shared "
        "machine hits every tool alike. "
        f"In each subprocess a warm-up call (its median over the rounds is the first call "
        f"column) is followed by {runs} timed calls, each on a freshly built model; the call "
        "column is the median of the timed calls of all rounds (runs column). A tool whose "
        "first call takes 10 s or more is not repeated within a round: "
        + (", ".join(slow) if slow else "none here")
        + ". A call is stopped after the timeout or the memory cap, and the table says so. "
        "Every worker runs torch with "
        + (f"{threads} intra-op thread{'s' * (threads > 1)}" if threads else "its default threads")
        + " (`--threads`): on this shared machine two OpenMP threads stall whenever another "
        "process holds a core (on 2026-11-23, torchinfo on CPU at 224 took 2.1 s with two threads "
        "and 0.13 s with one, side by side at load 1-2), so one thread gives reproducible "
        "figures; on an idle machine the CPU forward of torchinfo and torchview can be up to "
        "about twice as fast as shown. "
        "The load column is the range of the 1-minute load average as the subprocesses "
        f"started: above {os.cpu_count()} (the core count) other work competed for the CPU.",
        "",
        "Headline:",
        "",
        *headline(results),
        "",
        "Reading the figures:",
        "",
        "- shapetrace's cost does not depend on the input size: shapes flow through meta "
        "tensors and no activation is ever allocated.",
        "- torchinfo and torchview on CPU run a real forward pass: their time and memory grow "
        "with the input (at 4096x4096 several GB and about a minute here).",
        "- On meta both run the forward on meta tensors too, but both create the input with "
        "`torch.rand(*size)` on CPU before moving it (`get_input_tensor` in each): at 4096x4096 "
        "that is a 201 MB tensor filled with random numbers, which is where their time and "
        "memory at that size go.",
        "- `shapetrace` by name builds resnet50 on meta inside the timed call; "
        "`shapetrace-module` copies a model the user already built onto meta, which here is "
        "quicker than building it, but the user paid the CPU construction (model build column) "
        "first.",
        "",
        tables(results, cold, cli),
        "",
    ]
    return "\n".join(notes)


def write_section(text: str) -> None:
    """Replace the core section of docs/performance.md, leaving other sections as they are."""
    page = PERFORMANCE_MD.read_text() if PERFORMANCE_MD.exists() else ""
    if not page:
        page = (
            "# Performance\n\n"
            "Speed is measured in benchmarks, never asserted in timed tests. Each section below "
            "is written by one script under `benchmarks/`, which compares shapetrace with the "
            "tools a user would pick instead, on the same model and size in one run. Figures are "
            "medians: the machine is shared and noisy.\n\n"
        )
    start = page.find(SECTION_TITLE)
    if start < 0:
        page = page.rstrip("\n") + "\n\n" + text
    else:
        end = page.find("\n## ", start + len(SECTION_TITLE))
        page = page[:start] + text + ("" if end < 0 else "\n" + page[end + 1 :])
    PERFORMANCE_MD.write_text(page.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 4096])
    parser.add_argument("--tools", nargs="+", choices=list(TOOLS), default=list(TOOLS))
    parser.add_argument("--rounds", type=int, default=3, help="subprocesses per tool and size")
    parser.add_argument("--runs", type=int, default=5, help="timed calls after the warm-up")
    parser.add_argument(
        "--slow-runs", type=int, default=1, help="runs in all when the first takes >= 10 s"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads in each worker (0: torch's default); see the README",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per call")
    parser.add_argument("--rss-cap-gb", type=float, default=12, help="stop a worker above this")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes for cold costs")
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--worker", nargs=2, metavar=("TOOL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.runs, 10.0, args.slow_runs, args.threads)
        return

    load_before = f"{os.getloadavg()[0]:.2f}"
    results = [Measurement(tool, size) for size in args.sizes for tool in args.tools]
    for round_ in range(1, args.rounds + 1):
        for result in results:
            measure(result, args)
            print(
                f"round {round_}  {result.tool:18} {result.size:5}  median "
                f"{_s(result.median):>9}  n={len(result.timed)}  {result.stopped or ''}",
                file=sys.stderr,
                flush=True,
            )
    cold = cold_shapetrace(args.repeats)
    cli = cli_wall(args.repeats)
    meta = machine(results, (load_before, f"{os.getloadavg()[0]:.2f}"))
    text = section(results, cold, cli, meta, args.rounds, args.runs, args.threads)
    print(text)
    if args.write:
        write_section(text)
        print(f"wrote {PERFORMANCE_MD.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
