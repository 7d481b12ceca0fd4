"""`shapetrace sweep MODEL --sizes 32:1024:32`: the output shape at each input size, or the
node that breaks, beside the exact domain the input-size pass computes.

The model is built and traced once (`runner.SizeRunner`, as `check` does) and analysed at the
base input. Each size is answered from that report's shape formulas and domain where they are
complete (an accepted size: no torch work); a rejected size runs the shape pass on meta tensors
for the node that breaks and why, and a size the formulas leave open runs every pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from shapetrace.domain import in_domain
from shapetrace.errors import UsageError
from shapetrace.inputs import parse
from shapetrace.tasks.runner import CheckResult, SizeRunner

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
    runner = SizeRunner(model_spec, model_args, train=train)
    source = runner.source
    base_report, _ = runner.run(base_input)
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
        checked = runner.check(",".join([spec, *base_specs[1:]]), base_report)
        # Labelled by the swept axes, also where the size's own report has no domain to say
        # which dims are spatial (a model the capture gave up on at that size).
        checked.size = "x".join(str(per_axis[a]) for a in axes)
        result.rows.append(SweepRow(per_axis, checked, in_domain(domain, per_axis)))
        if advance is not None:
            advance()
    return result
