"""Coupled axes: the exact combinations of two axes' sizes that constraints over both admit.

A constraint such as `8 * floor(H/2) * floor((W - 3)/6) == 192` (a Linear after a fixed pool)
depends on H only through a few sizes of H alone, its leaves (`floor(H/2)`). Along H these are
constant on runs of sizes, so the sizes of H fall into classes; within a class the constraint
is one over W alone, whose exact set the solver finds. Walking the classes from the smallest
size each axis's own constraints accept gives the accepted pairs as a union of products
`{H in X_i} x {W in Y_i}`. The walk stops once every constraint is decided for all larger
sizes (a sum of non-decreasing sizes that already exceeds its target stays above it), and
gives up (None) when that cannot be shown within a bounded number of classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shapetrace.passes.sizing.expr import (
    Atom,
    CeilPool,
    Evaluator,
    Extreme,
    Floor,
    Poly,
    Scaled,
    Unknown,
)
from shapetrace.passes.sizing.formulas import absorb, factor
from shapetrace.passes.sizing.intset import IntSet
from shapetrace.passes.sizing.solver import Solver, atom_monotone, first_true, monotone_sign
from shapetrace.passes.sizing.tensors import Constraint

if TYPE_CHECKING:
    from shapetrace.passes.sizing.domain import SizeAnalysis

MAX_CLASSES = 4096  # classes of one axis walked before giving up


@dataclass
class Combination:
    """Sizes of two axes accepted together: every pair from `sets`; `map` is the size of the
    one map per axis that the constraints read, when it is a single value here."""

    sets: dict[str, IntSet]
    map: tuple[int, int] | None = None


class Coupling:
    """The pairs of sizes of axes `x` and `y` that `constraints` admit, the other axes at the
    reference size, among the sizes each axis's own constraints accept."""

    def __init__(self, analysis: SizeAnalysis, axes: Sequence[str], constraints: list[Constraint]):
        self.a = analysis
        self.x, self.y = axes
        self.constraints = constraints
        spatial = set(analysis.axes)
        self.leaves = {axis: _leaves(constraints, axis, spatial) for axis in axes}
        self.factors = self._factors()

    def combinations(self) -> list[Combination] | None:
        """The accepted pairs as products of sets, or None when they cannot be found exactly."""
        try:
            return self._walk()
        except Unknown:
            return None

    def _walk(self) -> list[Combination] | None:
        own_x, own_y = self.a.own[self.x], self.a.own[self.y]
        x, y_min = own_x.first(), own_y.first()
        if x is None or y_min is None or any(c.alternatives for c in self.constraints):
            return [] if x is None or y_min is None else None
        monotone = all(atom_monotone(leaf, frozenset({self.x})) for leaf in self.leaves[self.x])
        found: list[Combination] = []
        for _ in range(MAX_CLASSES):
            settled = self._settled(x, y_min)
            if settled is False:
                return _merge(found)
            values = self._leaf_values(self.x, x)
            end: int | None = x
            if settled:
                end = None
            elif monotone:
                change = first_true(self._changes(values), x + 1)
                end = None if change is None else change - 1
            ys = self._y_sizes(x)
            if ys is None:
                return None
            xs = own_x.intersect(IntSet.interval(x, end))
            if not ys.is_empty():
                sizes = self._map(x, ys) if end is not None else None
                found.append(Combination({self.x: xs, self.y: ys}, sizes))
            if end is None:
                return _merge(found)
            following = own_x.intersect(IntSet.interval(end + 1, None)).first()
            if following is None:
                return _merge(found)
            x = following
        return None

    def _env(self, **sizes: int) -> dict[str, int]:
        return {**self.a.reference, **sizes}

    def _leaf_values(self, axis: str, n: int) -> tuple[int, ...]:
        ev = Evaluator(self._env(**{axis: n}))
        return tuple(ev.atom(leaf) for leaf in self.leaves[axis])

    def _changes(self, values: tuple[int, ...]) -> Callable[[int], bool]:
        return lambda n: self._leaf_values(self.x, n) != values

    def _y_sizes(self, x: int) -> IntSet | None:
        fixed = {k: v for k, v in self._env(**{self.x: x}).items() if k != self.y}
        # Divisibility last: its sets have long periods, and an empty set stops the solve.
        ordered = sorted(self.constraints, key=lambda c: c.rel == "%")
        found, left = Solver({self.y}, fixed).solve(ordered)
        return None if left else self.a.own[self.y].intersect(found)

    def _settled(self, x: int, y: int) -> bool | None:
        """False if some constraint fails at every size from (x, y) up, True if all hold
        there, None if that cannot be shown. A constraint whose size never decreases (or
        never increases) as both axes grow is decided once it passes its target."""
        low = Evaluator(self._env(**{self.x: x, self.y: y}))
        vary = frozenset({self.x, self.y})
        decided = []
        for c in self.constraints:
            sign = 0 if c.rel == "%" else self._sign(c.expr, vary, low)
            if sign == 0:
                decided.append(False)
                continue
            value = sign * low.poly(c.expr)
            rel = c.rel if sign > 0 else {">=": "<=", "<=": ">="}.get(c.rel, c.rel)
            if value > 0 and rel in ("==", "<="):
                return False  # past the target and moving away from it
            decided.append(value > 0 or (rel == ">=" and value == 0))
        return True if all(decided) else None

    @staticmethod
    def _sign(expr: Poly, vary: frozenset[str], low: Evaluator) -> int:
        # A canonical polynomial hides that `floor(h*w/25) - h - w` is floor((h*w - 25*h -
        # 25*w)/25); that form rises once h, w pass 25.
        sign = monotone_sign(expr, vary, low, deep=True)
        absorbed = absorb(expr) if sign == 0 else None
        return sign if absorbed is None else monotone_sign(absorbed, vary, low, deep=True)

    def _factors(self) -> dict[str, Poly] | None:
        """For a lone constraint on a product of sizes (`8*floor(H/2)*(floor((W + 3)/6) - 1)
        == 192`), the size along each axis it multiplies: the map sizes a pair stands for."""
        if len(self.constraints) != 1:
            return None
        _, parts = factor(self.constraints[0].lhs)
        spatial = set(self.a.axes)
        out: dict[str, Poly] = {}
        for part in parts:
            axes = part.vars & spatial
            if len(axes) > 1:
                return None
            for axis in axes:
                out[axis] = out[axis] * part if axis in out else part
        return out if set(out) == {self.x, self.y} else None

    def _map(self, x: int, ys: IntSet) -> tuple[int, int] | None:
        if self.factors is None:
            return None
        sizes: list[int] = []
        for lo, hi, step in ys.segments():
            if hi is None or hi - lo > 4096 * step:
                return None
            sizes += range(lo, hi + 1, step)
        along_y = {Evaluator(self._env(**{self.y: n})).poly(self.factors[self.y]) for n in sizes}
        if len(along_y) != 1:
            return None
        return Evaluator(self._env(**{self.x: x})).poly(self.factors[self.x]), along_y.pop()


def coupled(found: list[Combination], axis: str) -> bool:
    """Does the set of pairs fail to be a product (some size of one axis changes which sizes
    of the other are accepted)?"""
    return len({tuple(c.sets[axis].segments()) for c in found}) > 1


def _merge(found: list[Combination]) -> list[Combination]:
    """Neighbouring combinations with the same sizes of the second axis, as one."""
    out: list[Combination] = []
    for c in found:
        if out and _same_second(out[-1], c):
            first = next(iter(c.sets))
            merged = {**c.sets, first: out[-1].sets[first].union(c.sets[first])}
            out[-1] = Combination(merged, None)
        else:
            out.append(c)
    return out


def _same_second(a: Combination, b: Combination) -> bool:
    second = list(a.sets)[1]
    return a.sets[second].segments() == b.sets[second].segments()


def _leaves(constraints: list[Constraint], axis: str, spatial: set[str]) -> list[Atom]:
    """The largest sub-sizes of the constraints that depend on `axis` and no other axis."""
    found: dict[Atom, None] = {}

    def walk(p: Poly) -> None:
        for mono, _ in p.terms:
            for atom in mono:
                axes = atom.vars & spatial
                if axes == {axis}:
                    found[atom] = None
                elif axis in axes:
                    for inner in _inner(atom):
                        walk(inner)

    for c in constraints:
        walk(c.expr)
    return list(found)


def _inner(atom: Atom) -> list[Poly]:
    if isinstance(atom, (Floor, CeilPool, Scaled)):
        return [atom.num]
    if isinstance(atom, Extreme):
        return [atom.a, atom.b]
    return []
