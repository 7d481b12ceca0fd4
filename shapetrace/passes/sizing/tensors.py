"""Symbolic tensors, the constraints ops put on sizes, and helpers shared by the size rules."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from shapetrace.ops import Call
from shapetrace.passes.shapes import describe_module
from shapetrace.passes.sizing.expr import Evaluator, Poly, Unknown

AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("T", "H", "W")}


BATCH = "N"


@dataclass(frozen=True)
class STensor:
    """A tensor known by its sizes: a polynomial per dim, and per dim the input axes it follows
    (`"H"`, `"H,W"` for a merge of spatial dims only, None for anything else)."""

    shape: tuple[Poly, ...]
    axes: tuple[str | None, ...]
    vmax: Poly | None = None  # largest value of an index tensor built by arange
    param: fx.Node | None = None  # the parameter it comes from through shape-only ops

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def like(self, shape: Sequence[Poly], axes: Sequence[str | None]) -> STensor:
        """A tensor derived by a shape-only op: keeps the parameter it comes from."""
        return STensor(tuple(shape), tuple(axes), None, self.param)


@dataclass(frozen=True)
class Pred:
    """A comparison of sizes, as `h == self.image_size` produces while tracing."""

    lhs: Poly
    rel: str
    rhs: Poly


Message = Callable[[Callable[[Poly], int]], str]


# Constraint kinds. All but "merge" make their node "bound" (see `Constraint.binding`).
KIND_TEXT = {
    "min": "needs a large enough map",
    "features": "needs an exact number of features",
    "view": "hard-coded view/reshape",
    "batch": "output keeps its batch and non-spatial dims",
    "fixed": "must match a fixed-size tensor",
    "merge": "merged sizes must agree",
    "assert": "torch._assert on a size",
    "index": "positions must fit an embedding table",
    "stats": "normalisation needs more than one value",
    "squeeze": "squeeze must drop the dims it dropped at the analysed size",
}


@dataclass
class Constraint:
    """`lhs rel rhs` (rel one of == >= <= != %) that a node needs, or any of `alternatives`."""

    node: fx.Node
    kind: str
    lhs: Poly
    rel: str
    rhs: Poly
    message: Message
    alternatives: list[Constraint] = field(default_factory=list)
    modulus: int = 0
    need: int = 0  # for "min": the least input size the node takes along that axis
    pattern: str = ""  # a hint for the verdict: "flatten" (features of a map), "posembed"
    expr: Poly = field(init=False, repr=False)
    key: str = field(init=False, repr=False)
    vars: frozenset[str] = field(init=False, repr=False)
    opaque: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.expr = self.lhs - self.rhs
        alts = ",".join(a.key for a in self.alternatives)
        self.key = f"{self.expr.key} {self.rel} {self.modulus}|{alts}"
        self.vars = self.expr.vars.union(*(a.vars for a in self.alternatives))
        self.opaque = self.expr.opaque or any(a.opaque for a in self.alternatives)

    @property
    def binding(self) -> bool:
        """Does this constraint make its node limit the input sizes?"""
        if self.kind == "merge":
            return False
        if self.kind == "min":
            return self.need > 1
        return True

    def holds(self, ev: Evaluator) -> bool:
        v = ev.poly(self.expr)
        if compare(v, self.rel, self.modulus):
            return True
        return any(a.holds(ev) for a in self.alternatives)


def compare(v: int, rel: str, modulus: int) -> bool:
    if rel == "==":
        return v == 0
    if rel == ">=":
        return v >= 0
    if rel == "<=":
        return v <= 0
    if rel == "!=":
        return v != 0
    return v % modulus == 0


class Unsupported(Exception):
    """No size rule for this call; the propagator falls back to observed shapes."""


# A rule meeting arguments it does not expect falls back too, rather than losing the report.
RULE_ERRORS = (
    Unsupported,
    Unknown,
    TypeError,
    ValueError,
    IndexError,
    KeyError,
    AttributeError,
    ZeroDivisionError,
)


def prod(values: Iterable[Poly]) -> Poly:
    out = Poly.of(1)
    for v in values:
        out = out * v
    return out


def ints(value: Any, rank: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * rank
    return tuple(int(v) for v in value)


def dim_index(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def merged_axis(dims: Sequence[Poly], axes: Sequence[str | None]) -> str | None:
    """The axes a merge of dims follows: spatial only if every non-unit dim is spatial."""
    kept = [a for d, a in zip(dims, axes, strict=True) if not (d.is_const and d.const == 1)]
    if not kept or any(a is None for a in kept):
        return None
    names = [n for a in kept if a for n in a.split(",")]
    return ",".join(dict.fromkeys(names))


def flat_args(values: Any) -> list[Any]:
    """The tensors among a call's arguments, in order."""
    out: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, STensor):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(values)
    return out


def no_message(value: Callable[[Poly], int]) -> str:
    return ""


def say(*parts: str | Poly) -> Message:
    """A message whose sizes are filled in when it is shown, at the sizes that break."""

    def message(value: Callable[[Poly], int]) -> str:
        return "".join(str(value(p)) if isinstance(p, Poly) else p for p in parts)

    return message


Rule = Callable[[Any, Call], Any]  # (Propagator, bound call) -> the call's value


def label(call: Call) -> str:
    """The call as users wrote it: `MaxPool2d`, `interpolate`, `view`."""
    if call.module is not None:
        return type(call.module).__name__
    spelling = call.spelling
    return spelling if isinstance(spelling, str) else getattr(spelling, "__name__", call.name)


def describe(call: Call, functional: str) -> str:
    """A module described by its configuration (`Conv2d(3 -> 64, kernel (7, 7))`), or the
    functional call's own description."""
    return describe_module(call.module) if call.module is not None else functional


def const_shape(value: Any) -> tuple[int, ...]:
    """The sizes of a weight: a module's parameter, or a symbolic tensor of fixed sizes."""
    if isinstance(value, torch.Tensor):
        return tuple(int(d) for d in value.shape)
    t = as_tensor(value)
    if any(d.vars for d in t.shape):
        raise Unsupported("a weight of varying size")
    return tuple(d.const for d in t.shape)


def as_tensor(value: Any) -> STensor:
    if not isinstance(value, STensor):
        raise Unsupported(f"a non-tensor input {type(value).__name__}")
    return value


def sizes_arg(args: Sequence[Any]) -> list[Any]:
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return list(args)
