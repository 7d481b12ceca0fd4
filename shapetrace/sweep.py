"""`shapetrace sweep MODEL --sizes 32:1024:32`: the output shape at each input size, or the
node that breaks, beside the exact domain the input-size pass computes.

The model is built and traced once, as `shapetrace check` does; each size reruns the passes
on meta tensors. A sweep confirms the domain by running the shapes, size by size.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shapetrace.errors import EXIT_OK, EXIT_REJECTED, UsageError
from shapetrace.inputs import parse
from shapetrace.report import Report, format_shape
from shapetrace.sizecheck import CheckResult

MAX_SIZES = 10_000


@dataclass
class SweepRow:
    """One input size: what the shapes say, and what the domain says."""

    sizes: dict[str, int]  # per spatial axis, {"H": 224, "W": 224}
    result: CheckResult
    in_domain: bool | None  # None: the domain cannot tell (coupled axes without combinations)

    @property
    def agrees(self) -> bool | None:
        return None if self.in_domain is None else self.in_domain == self.result.accepted

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "size": r.size,
            **self.sizes,
            "status": r.status,
            "output_shape": r.output_shape,
            "node": r.node,
            "reason": r.reason,
            "in_domain": self.in_domain,
        }


@dataclass
class Sweep:
    """A sweep over input sizes, with the domain, verdict and aligned sizes of the base input."""

    model: str
    input: str  # the base input; each size replaces its spatial dims
    axes: list[str]
    rows: list[SweepRow] = field(default_factory=list)
    domain: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    aligned_multiple: dict[str, int] | None = None

    @property
    def all_accepted(self) -> bool:
        return all(row.result.accepted for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": self.input,
            "axes": self.axes,
            "sizes": [row.to_dict() for row in self.rows],
            "domain": self.domain,
            "aligned_multiple": self.aligned_multiple,
            "verdict": self.verdict,
        }


# -- sizes ----------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[tuple[int, ...]]:
    """`32:1024:32` (start:stop:step, stop included), `224:256` (step 1) or `224,256,448`
    (items may be `HxW`): the sizes to try, each a tuple of one size or one per axis."""
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts):
            raise UsageError(f"--sizes {text}: expected START:STOP[:STEP], e.g. 32:1024:32")
        start, stop, *rest = (int(p) for p in parts)
        step = rest[0] if rest else 1
        if start < 1 or step < 1 or stop < start:
            raise UsageError(f"--sizes {text}: needs 1 <= START <= STOP and STEP >= 1")
        if (stop - start) // step + 1 > MAX_SIZES:
            raise UsageError(f"--sizes {text}: more than {MAX_SIZES} sizes")
        return [(n,) for n in range(start, stop + 1, step)]
    sizes = []
    for item in text.split(","):
        dims = item.strip().split("x")
        if not all(d.isdigit() and int(d) >= 1 for d in dims):
            raise UsageError(f"--sizes {text}: '{item}' is not a size like 224 or 224x320")
        sizes.append(tuple(int(d) for d in dims))
    if len(sizes) > MAX_SIZES:
        raise UsageError(f"--sizes: more than {MAX_SIZES} sizes")
    return sizes


def spatial_sizes(
    size: tuple[int, ...], axes: Sequence[str], base: dict[str, int]
) -> dict[str, int]:
    """One `--sizes` item as a size per axis: a single number sets every axis but time."""
    if len(size) == len(axes):
        return dict(zip(axes, size, strict=True))
    frame = [a for a in axes if a != "T"]
    if len(size) == 1:
        return {a: size[0] if a in frame else base[a] for a in axes}
    if len(size) == len(frame):
        given = dict(zip(frame, size, strict=True))
        return {a: given.get(a, base[a]) for a in axes}
    raise UsageError(
        f"size {'x'.join(map(str, size))} does not fit the input's axes {', '.join(axes)}"
    )


def in_domain(domain: dict[str, Any], sizes: dict[str, int]) -> bool | None:
    """Does the domain accept these sizes? Axes a coupled bound ties together are judged by
    its combinations; None when such a bound lists none."""
    coupled = [b for b in domain.get("bounds", []) if b.get("kind") == "coupled"]
    tied: set[str] = set()
    for bound in coupled:
        axes = bound["axis"].split(",")
        if not all(a in sizes for a in axes):
            continue
        tied.update(axes)
        combos = bound.get("combinations")
        if combos is None:
            return None
        if not any(all(_member(c[a], sizes[a]) for a in axes) for c in combos):
            return None if bound.get("omitted") else False
    # Each combination lies inside the axes' own sets; the other axes are checked alone.
    return all(_member(domain[a], n) for a, n in sizes.items() if a not in tied)


def _member(segments: list[list[int | None]], n: int) -> bool:
    for seg in segments:
        lo, hi = seg[0], seg[1]
        step = seg[2] if len(seg) > 2 and seg[2] else 1
        if lo is not None and n >= lo and (hi is None or n <= hi) and (n - lo) % step == 0:
            return True
    return False


# -- running --------------------------------------------------------------------------------


def sweep(
    model_spec: Any,
    sizes: list[tuple[int, ...]],
    base_input: str | None = None,
    model_args: dict[str, Any] | None = None,
    *,
    train: bool = False,
    advance: Callable[[], None] | None = None,
) -> Sweep:
    """Analyse the model at each size (built and traced once) and at the base input.

    `model_spec` is anything `shapetrace.analyze` takes; `base_input` an `--input` spec whose
    spatial dims each size replaces (the model's usual input if None); `advance` is called
    after each size. Malformed sizes or inputs raise UsageError.
    """
    from shapetrace import analysis
    from shapetrace.capture import TraceFailure, trace
    from shapetrace.sizecheck import _result, _shape_of

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # builders warn about things that do not concern shapes
        source, model = analysis._model(model_spec, model_args)
        model.train(train)
        try:
            capture = trace(model)
        except TraceFailure:
            capture = None

        def run(spec: Any) -> tuple[Report, CheckResult]:
            if capture is None:  # the eager fallback analyses each size on its own
                report = analysis.analyze(model_spec, spec, model_args=model_args, train=train)
                return report, _result(report)
            first = analysis._first_layer_in_graph(capture)
            specs = analysis._input_specs(spec, source, first)
            report = analysis.run_passes(model, capture, specs, source, train)
            output = next(n for n in capture.graph_module.graph.nodes if n.op == "output")
            return report, _result(report, _shape_of(output.args[0], capture.names, report))

        base_report, _ = run(base_input)
        domain = base_report.domain or {}
        base = dict(domain.get("at", {}))
        axes = list(base)
        if not axes:
            raise UsageError(f"{source.spec}: the input has no spatial axes to sweep")
        base_specs = [str(s) for s in base_report.source.get("input", [])]
        result = Sweep(
            model=source.spec,
            input=", ".join(base_specs),
            axes=axes,
            domain=domain,
            verdict=base_report.verdict,
            aligned_multiple=base_report.aligned_multiple,
        )
        lead = list(base_report.input[: len(base_report.input) - len(axes)])
        first_spec = parse(base_specs[0])[0] if base_specs else None
        for size in sizes:
            per_axis = spatial_sizes(size, axes, base)
            dims = (*lead, *(per_axis[a] for a in axes))
            spec = str(replace(first_spec, dims=dims)) if first_spec else "x".join(map(str, dims))
            _, checked = run(",".join([spec, *base_specs[1:]]))
            result.rows.append(SweepRow(per_axis, checked, in_domain(domain, per_axis)))
            if advance is not None:
                advance()
    return result


# -- output ---------------------------------------------------------------------------------


def domain_text(domain: dict[str, Any], axes: Sequence[str]) -> str:
    """`H in [193, 224]; W >= 1`, progressions as `H in {16, 32, ...}`."""
    parts = []
    for axis in axes:
        items = []
        for seg in domain.get(axis, []):
            lo, hi = seg[0], seg[1]
            step = seg[2] if len(seg) > 2 else 1
            if step > 1:
                items.append(f"in {{{lo}, {lo + step}, ..." + ("}" if hi is None else f", {hi}}}"))
            elif hi is None:
                items.append(f">= {lo}")
            else:
                items.append(f"= {lo}" if hi == lo else f"in [{lo}, {hi}]")
        parts.append(f"{axis} " + (" or ".join(items) if items else "accepts nothing"))
    return "; ".join(parts)


def _columns(s: Sweep) -> list[list[str]]:
    rows = []
    for row in s.rows:
        r = row.result
        if r.accepted:
            what = format_shape(r.output_shape)
        else:
            verb = "" if r.status == "rejected" else "cannot tell past "
            what = f"{verb}{r.node}: {r.reason}"
        domain = {True: "accepts", False: "rejects", None: "?"}[row.in_domain]
        if row.agrees is False:
            domain += " (disagrees)"
        rows.append([r.size, r.status, what, domain])
    return rows


_HEADER = ["size", "status", "output shape, or where it breaks", "domain"]


def _footer(s: Sweep) -> list[str]:
    rejected = sum(not row.result.accepted for row in s.rows)
    limits = list(
        dict.fromkeys(b["node"] for b in s.domain.get("bounds", []) if b.get("kind") != "inexact")
    )
    set_by = f" (set by {', '.join(limits)})" if limits else ""
    lines = [f"Domain: {domain_text(s.domain, s.axes)}{set_by}"]
    for bound in s.domain.get("bounds", []):
        combos = bound.get("combinations")
        if bound.get("kind") == "coupled" and combos:
            axes = bound["axis"].split(",")
            shown = "; ".join(domain_text(c, axes).replace("; ", " with ") for c in combos[:8])
            tail = f"; and {len(combos) - 8} more" if len(combos) > 8 else ""
            lines.append(f"Coupled at {bound['node']}: {shown}{tail}")
    aligned = {a: m for a, m in (s.aligned_multiple or {}).items() if m > 1}
    if aligned and len(set(aligned.values())) == 1:
        lines.append(
            f"Aligned sizes: {', '.join(aligned)} multiples of {aligned[next(iter(aligned))]}"
        )
    elif aligned:
        lines.append(
            "Aligned sizes: " + ", ".join(f"{a} multiples of {m}" for a, m in aligned.items())
        )
    if s.verdict:
        lines.append(f"Verdict: {s.verdict}")
    lines.append(f"{len(s.rows) - rejected} of {len(s.rows)} sizes accepted.")
    return lines


def render_table(s: Sweep) -> str:
    """Aligned plain-text columns, then the domain, aligned sizes and verdict."""
    rows = [_HEADER, *_columns(s)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    lines = [f"{s.model} · input {s.input} · sweep of {', '.join(s.axes)}", ""]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join([*lines, "", *_footer(s)]) + "\n"


def render_markdown(s: Sweep) -> str:
    """A Markdown table, then the domain, aligned sizes and verdict."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"## {s.model}: sweep of {', '.join(s.axes)} (input {s.input})", ""]
    lines.append("| " + " | ".join(_HEADER) + " |")
    lines.append("|" + "---|" * len(_HEADER))
    for r in _columns(s):
        lines.append("| " + " | ".join(cell(c) for c in r) + " |")
    return "\n".join([*lines, "", *(f"{line}  " for line in _footer(s))]) + "\n"


def render(s: Sweep, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(s.to_dict(), indent=1) + "\n"
    return render_markdown(s) if fmt == "markdown" else render_table(s)


# -- command line ---------------------------------------------------------------------------


def run_sweep(argv: list[str]) -> int:
    """`shapetrace sweep MODEL --sizes ...`: print or write the sweep; 0 when every size is
    accepted, 1 otherwise."""
    import argparse

    from shapetrace.cli import (
        EXIT_CODES_HELP,
        TEXT_FORMATS,
        TEXT_SUFFIXES,
        _Parser,
        output_format,
    )
    from shapetrace.inputs import parse_model_args

    parser = _Parser(
        prog="shapetrace sweep",
        description="The output shape at each input size, or the node that breaks, beside the "
        "exact domain of accepted sizes; exit 1 if any size is rejected.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="MODEL", help="a torchvision name, codereview_resnet50, path.py:Name"
    )
    parser.add_argument(
        "--sizes",
        required=True,
        metavar="SIZES",
        help="START:STOP[:STEP] (stop included), or a list like 224,256,448 or 224x320",
    )
    parser.add_argument(
        "--input", "-i", metavar="SPEC", help="base input whose spatial dims each size replaces"
    )
    parser.add_argument("--model-args", metavar="JSON", help="keyword arguments for the model")
    parser.add_argument("--train", action="store_true", help="trace in training mode")
    parser.add_argument(
        "--format", "-f", choices=TEXT_FORMATS, help="output format (default: table)"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (.txt .md .json)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    fmt = output_format(args.format, args.output, TEXT_SUFFIXES)
    sizes = parse_sizes(args.sizes)
    with _progress(len(sizes)) as advance:
        result = sweep(
            args.model,
            sizes,
            args.input,
            parse_model_args(args.model_args),
            train=args.train,
            advance=advance,
        )
    text = render(result, fmt)
    try:
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output or 'stdout'}: {exc.strerror or exc}") from exc
    return EXIT_OK if result.all_accepted else EXIT_REJECTED


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None] | None]:
    """A progress bar on stderr while the sizes run, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sweeping sizes", total=total)
        yield lambda: bar.advance(task)
