"""Regenerate docs/coverage.md: every torchvision model and ours, analysed at its usual input.

python scripts/coverage.py            # writes docs/coverage.md
python scripts/coverage.py --check    # exit 1 if a model lost its full report
python scripts/coverage.py --only ssd300_vgg16 maskrcnn_resnet50_fpn   # rerun those rows only
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torchvision

import shapetrace
from shapetrace.errors import ShapetraceError
from shapetrace.sources import torchvision_names
from shapetrace.zoo import ZOO

OUT = Path(__file__).resolve().parent.parent / "docs" / "coverage.md"


def analyse(name: str) -> tuple[str, str, int, str, float]:
    """(status, detail, nodes, trace method, seconds) for one model."""
    start = time.perf_counter()
    try:
        report = shapetrace.analyze(name)
    except ShapetraceError as exc:
        return "diagnosis", str(exc), 0, "-", time.perf_counter() - start
    seconds = time.perf_counter() - start
    method = report.source["trace"]
    if report.failure is None:
        return "full", _uncaptured(report), len(report.nodes), method, seconds
    detail = report.failure.message
    return "partial", detail, len(report.nodes), method, seconds


def _uncaptured(report: shapetrace.Report) -> str:
    """The call a symbolic capture ended at, for the note: `captured up to ...`."""
    for node in report.nodes:
        reason = (node.missing or {}).get("shape", "")
        if reason.startswith("not captured:"):
            # "not captured: F (name) loops over ... at file:line `code`; the capture ends ..."
            return "captured up to " + reason.removeprefix("not captured: ").split("; ")[0]
    return ""


Row = tuple[str, str, str, int, str, float, str]


def _previous_rows() -> list[Row]:
    """The rows of the current docs/coverage.md."""
    rows: list[Row] = []
    for line in OUT.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 7 or not cells[1].startswith("`"):
            continue
        family, name, status, nodes, method, seconds, note = cells
        note = note.replace("\\|", "|")
        rows.append((family, name.strip("`"), status, int(nodes), method, float(seconds), note))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--only", nargs="+", metavar="MODEL", help="rerun only these rows")
    args = parser.parse_args()
    families = {**{n: "shapetrace" for n in ZOO}, **torchvision_names()}
    previous = {r[1]: r for r in _previous_rows()} if args.only else {}
    rows = []
    for name in sorted(families, key=lambda n: (families[n], n)):
        if args.only and name not in args.only and name in previous:
            rows.append(previous[name])
            continue
        status, detail, nodes, method, seconds = analyse(name)
        rows.append((families[name], name, status, nodes, method, seconds, detail))
        print(f"{name:40s} {status:9s} {nodes:6d} {method:6s} {seconds:6.2f}s {detail[:60]}")
    full = sum(r[2] == "full" for r in rows)
    by_trace = {m: sum(r[4] == m for r in rows) for m in ("fx", "symbolic", "hooks")}
    lines = [
        "# Model coverage",
        "",
        "Every model shapetrace knows by name, analysed at its usual input (`shapetrace MODEL`).",
        "Regenerate with `python scripts/coverage.py` (about five minutes).",
        "",
        f"- {full} of {len(rows)} models: a full report. Captured with fx: {by_trace['fx']},"
        f" symbolic shapes: {by_trace['symbolic']}, hooks: {by_trace['hooks']}.",
        f"- Generated with shapetrace {shapetrace.__version__}, torch "
        f"{torch.__version__.split('+')[0]}, torchvision {torchvision.__version__.split('+')[0]},"
        f" Python {platform.python_version()}; times are one run each on a shared 2-core machine.",
        "- *trace*: which rung of the capture ladder (docs/capture.md) ran: `fx` is a full"
        " torch.fx graph; `symbolic` is torch.export with symbolic H, W for models fx cannot"
        " trace (every analysis; data-dependent sizes shown as `u0`, assumptions on them in"
        " `domain['open']`); `hooks` is the last resort: an eager run on meta tensors that"
        " reports every module call up to where it stops.",
        "- *partial*: the report holds every module up to the point named; what follows needs"
        " tensor values, which shapes alone cannot give.",
        "- *captured up to*: a `symbolic` report whose capture ends at a call the export cannot"
        " follow (a Python loop over a data-dependent number of detections, or more"
        " data-dependent sizes than the limit): everything before it is exact, the call is a row"
        " saying why, and what it computes is unknown (`domain['open']`, the verdict).",
        "",
        "| family | model | status | nodes | trace | time (s) | note |",
        "|---|---|---|---:|---|---:|---|",
    ]
    for family, name, status, nodes, method, seconds, detail in rows:
        note = detail.replace("|", "\\|")
        lines.append(
            f"| {family} | `{name}` | {status} | {nodes} | {method} | {seconds:.2f} | {note} |"
        )
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    if args.check:
        return 0 if all(r[2] != "diagnosis" for r in rows) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
