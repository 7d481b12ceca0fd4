"""Solving: the exact set of sizes along one direction at which each constraint holds.

Sizes are quasi-linear along one axis: past some `n0`, `f(n + P) = f(n) + D`. So a constraint
holds on an eventually periodic set that a few evaluations determine exactly. A product of two
varying sizes is not quasi-linear but is monotone, and is solved by search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from shapetrace.passes.sizing.expr import (
    Atom,
    CeilPool,
    Evaluator,
    Extreme,
    Floor,
    Mono,
    Opaque,
    Poly,
    Scaled,
    Sym,
    Unknown,
    absorb,
)
from shapetrace.passes.sizing.intset import IntSet, KRanges
from shapetrace.passes.sizing.tensors import Constraint, compare

LIMIT = 1 << 16  # largest period or threshold handled exactly


SEARCH_TOP = 1 << 40  # monotone searches look this far


def _k_solve(v0: int, step: int, rel: str) -> KRanges:
    """The k >= 0 with `v0 + k * step  rel  0`."""
    if rel == "<=":
        v0, step, rel = -v0, -step, ">="
    if step == 0:
        return [(0, None)] if compare(v0, rel, 0) else []
    if rel == "==":
        return [(-v0 // step, -v0 // step)] if -v0 % step == 0 and -v0 // step >= 0 else []
    if rel == ">=":
        if step > 0:
            return [(max(0, -(v0 // step)), None)]
        top = v0 // -step
        return [(0, top)] if top >= 0 else []
    # "!="
    if -v0 % step == 0 and -v0 // step >= 0:
        k = -v0 // step
        return [r for r in ((0, k - 1), (k + 1, None)) if r[1] is None or r[0] <= r[1]]
    return [(0, None)]


class Solver:
    """Sets of accepted sizes along one direction: the symbols in `vary` all equal n, the
    others keep the values in `fixed`."""

    def __init__(self, vary: Iterable[str], fixed: dict[str, int]) -> None:
        self.vary = frozenset(vary)
        self.fixed = fixed
        self._evs: dict[int, Evaluator] = {}
        self._periods: dict[Atom, tuple[int, int] | None] = {}
        # By constraint key: the domain and its attribution ask about the same constraints.
        self._allowed: dict[str, IntSet | Unknown | None] = {}

    def ev(self, n: int) -> Evaluator:
        ev = self._evs.get(n)
        if ev is None:
            env = dict(self.fixed)
            env.update(dict.fromkeys(self.vary, n))
            ev = self._evs[n] = Evaluator(env)
        return ev

    def value(self, poly: Poly, n: int) -> int:
        return self.ev(n).poly(poly)

    def period(self, poly: Poly) -> tuple[int, int] | None:
        """(P, n0) with `poly(n + P) - poly(n)` constant for n >= n0, or None."""
        period, start = 1, 1
        for mono, _ in poly.terms:
            varying = [a for a in mono if a.vars & self.vary]
            if len(varying) > 1:
                return None
            if varying:
                found = self._atom_period(varying[0])
                if found is None:
                    return None
                period, start = math.lcm(period, found[0]), max(start, found[1])
        if period > LIMIT or start > LIMIT:
            return None
        return period, start

    def _atom_period(self, atom: Atom) -> tuple[int, int] | None:
        if atom not in self._periods:
            self._periods[atom] = None  # guards against cycles; replaced below
            self._periods[atom] = self._compute_period(atom)
        return self._periods[atom]

    def _compute_period(self, atom: Atom) -> tuple[int, int] | None:
        if isinstance(atom, (Sym, Opaque)):
            return 1, 1
        if isinstance(atom, (Floor, CeilPool)):
            found = self.period(atom.num)
            if found is None:
                return None
            period, start = found
            den = atom.den if isinstance(atom, Floor) else atom.stride
            step = self.value(atom.num, start + period) - self.value(atom.num, start)
            return period * (den // math.gcd(den, step)), start
        if isinstance(atom, Extreme):
            return self._extreme_period(atom)
        return None

    def _extreme_period(self, atom: Extreme) -> tuple[int, int] | None:
        # Past the point where one side overtakes the other for good, max/min is that side.
        pa, pb = self.period(atom.a), self.period(atom.b)
        if pa is None or pb is None:
            return None
        period, start = math.lcm(pa[0], pb[0]), max(pa[1], pb[1])
        settled = start
        diff = atom.a - atom.b
        for r in range(period):
            n = start + r
            d0 = self.value(diff, n)
            step = self.value(diff, n + period) - d0
            k = 0
            if (step > 0 and d0 < 0) or (step < 0 and d0 > 0):
                k = -(d0 // step)  # the first k at which the sign of the difference turns
            settled = max(settled, n + k * period)
        return period, settled

    # -- sets ---------------------------------------------------------------------------
    def allowed(self, c: Constraint) -> IntSet | None:
        """Exactly the n at which `c` holds, or None when its sizes are not quasi-linear."""
        found = self._allowed.get(c.key, self)
        if found is self:
            try:
                found = self._allowed_now(c)
            except Unknown as exc:
                found = exc
            self._allowed[c.key] = found
        if isinstance(found, Unknown):
            raise found
        return found  # type: ignore[return-value]

    def _allowed_now(self, c: Constraint) -> IntSet | None:
        if c.opaque:
            return None
        result: IntSet | None = None
        for part in [c, *c.alternatives]:
            found = self.where(part.expr, part.rel, part.modulus)
            if found is None:
                return None
            result = found if result is None else result.union(found)
        return result

    def where(self, expr: Poly, rel: str, modulus: int = 0) -> IntSet | None:
        """Exactly the n at which `expr rel 0` holds (`expr % modulus == 0` for "%"), or None
        when `expr` is not quasi-linear in n."""
        found = self.period(expr)
        if found is None and rel == "%":
            return self._residues(expr, modulus)
        if found is None:
            return None
        period, start = found
        if rel == "%":
            # expr rises by `rise` per period, so its residues repeat after m / gcd(rise, m).
            rise = self.value(expr, start + period) - self.value(expr, start)
            period *= modulus // math.gcd(rise, modulus)
            if period > LIMIT:
                return None
        prefix: list[tuple[int, int]] = []
        for n in range(1, start):
            if compare(self.value(expr, n), rel, modulus):
                if prefix and prefix[-1][1] + 1 == n:
                    prefix[-1] = (prefix[-1][0], n)
                else:
                    prefix.append((n, n))
        classes: list[KRanges] = []
        for r in range(period):
            v0 = self.value(expr, start + r)
            if rel == "%":
                classes.append([(0, None)] if v0 % modulus == 0 else [])
                continue
            step = self.value(expr, start + r + period) - v0
            classes.append(_k_solve(v0, step, rel))
        return IntSet(start, prefix, period, classes).simplify()

    def _residues(self, expr: Poly, modulus: int) -> IntSet | None:
        """Where `expr % modulus == 0` for a polynomial in quasi-linear sizes (a product of
        two sizes when H and W move together): each size is `a(n0 + r + k*P) = a(n0 + r) +
        k*D`, so the polynomial modulo m repeats with period `P * m`."""
        period, start = 1, 1
        for mono, _ in expr.terms:
            for atom in mono:
                if atom.vars & self.vary:
                    found = self._atom_period(atom)
                    if found is None:
                        return None
                    period, start = math.lcm(period, found[0]), max(start, found[1])
        period *= modulus
        if period > LIMIT or start > LIMIT:
            return None
        prefix = [(n, n) for n in range(1, start) if self.value(expr, n) % modulus == 0]
        classes: list[KRanges] = [
            [(0, None)] if self.value(expr, start + r) % modulus == 0 else [] for r in range(period)
        ]
        return IntSet(start, _n_merge(prefix), period, classes).simplify()

    def solve(self, constraints: Iterable[Constraint]) -> tuple[IntSet, list[Constraint]]:
        """The sizes every constraint allows, and the constraints left out (not followed)."""
        accepted = IntSet.full()
        pending: list[Constraint] = []
        for c in constraints:
            try:
                if not (c.vars & self.vary):
                    if not c.holds(self.ev(1)):
                        return IntSet.empty(), []
                    continue
                found = self.allowed(c)
            except Unknown:
                found = None
            if found is None:
                pending.append(c)
                continue
            accepted = accepted.intersect(found)
            if accepted.is_empty():
                return accepted, []
        left_out = []
        for c in pending:
            try:
                found = self.monotone(c, accepted)
            except Unknown:
                found = None
            if found is None:
                left_out.append(c)
            else:
                accepted = accepted.intersect(found)
        return accepted, left_out

    def monotone(self, c: Constraint, within: IntSet) -> IntSet | None:
        """For sizes that are not quasi-linear (products of two varying sizes) but monotone:
        the interval where `c` holds, found by search from the least size still in play."""
        low = within.first()
        if c.alternatives or low is None or c.rel == "%" or c.opaque:
            return None
        sign = monotone_sign(c.expr, self.vary, self.ev(low), deep=True)
        if sign == 0:
            # `floor(x/25) - h - w` hides `floor((x - 25*h - 25*w)/25)`, which may rise.
            absorbed = absorb(c.expr)
            if absorbed is not None:
                sign = monotone_sign(absorbed, self.vary, self.ev(low), deep=True)
        if sign == 0:
            return None

        def f(n: int) -> int:
            return sign * self.value(c.expr, n)

        rel = c.rel if sign > 0 else {">=": "<=", "<=": ">="}.get(c.rel, c.rel)
        reach = first_true(lambda n: f(n) >= 0, low)  # first n with f(n) >= 0
        over = first_true(lambda n: f(n) > 0, low)  # first n with f(n) > 0
        if rel == ">=":
            return IntSet.empty() if reach is None else IntSet.interval(reach, None)
        if rel == "<=":
            return IntSet.interval(1, None if over is None else over - 1)
        zero = (
            IntSet.empty()
            if reach is None
            else IntSet.interval(reach, None if over is None else over - 1)
        )
        if rel == "==":
            return zero
        if reach is None:
            return IntSet.full()
        above = IntSet.empty() if over is None else IntSet.interval(over, None)
        return IntSet.interval(1, reach - 1).union(above)


def first_true(pred: Callable[[int], bool], low: int) -> int | None:
    if pred(low):
        return low
    step, top = 1, low
    while not pred(top + step):
        top += step
        step *= 2
        if top > SEARCH_TOP:
            return None
    lo, hi = top, top + step  # pred(lo) false, pred(hi) true
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def monotone_sign(poly: Poly, vary: frozenset[str], low: Evaluator, *, deep: bool = False) -> int:
    """+1 if poly never decreases as the sizes in `vary` grow from those `low` evaluates at,
    -1 if it never increases, 0 if this cannot be shown. `deep` also accepts a floor of a
    polynomial that only rises from `low` on (`floor((h - 3) * (w - 3) / 25)` from h, w >= 3)."""
    if _nondecreasing(poly, vary, low, deep):
        return 1
    return -1 if _nondecreasing(-poly, vary, low, deep) else 0


def _nondecreasing(poly: Poly, vary: frozenset[str], low: Evaluator, deep: bool = False) -> bool:
    # A polynomial, linear in each of its non-decreasing atoms, does not decrease from `low`
    # on if each partial derivative is >= 0 at `low` and does not decrease either.
    atoms = {a for mono, _ in poly.terms for a in mono if a.vars & vary}
    if not atoms:
        return True
    if not all(atom_monotone(a, vary) or (deep and _atom_rises(a, vary, low)) for a in atoms):
        return False
    if any(
        len({a for a in mono if a in atoms}) < sum(a in atoms for a in mono)
        for mono, _ in poly.terms
    ):
        return all(c >= 0 for mono, c in poly.terms if any(a in atoms for a in mono))
    for atom in atoms:
        partial: dict[Mono, int] = {}
        for mono, coef in poly.terms:
            if atom in mono:
                rest = list(mono)
                rest.remove(atom)
                partial[tuple(rest)] = partial.get(tuple(rest), 0) + coef
        const = partial.pop((), 0)
        derivative = Poly(partial, const)
        if low.poly(derivative) < 0 or not _nondecreasing(derivative, vary, low, deep):
            return False
    return True


def _atom_rises(atom: Atom, vary: frozenset[str], low: Evaluator) -> bool:
    """Does the atom not decrease from `low` on (floors, pools and min/max of polynomials
    that do not)?"""
    if isinstance(atom, (Floor, CeilPool)):
        return _nondecreasing(atom.num, vary, low, True)
    if isinstance(atom, Scaled):
        return atom.scale > 0 and _nondecreasing(atom.num, vary, low, True)
    if isinstance(atom, Extreme):
        return all(_nondecreasing(p, vary, low, True) for p in (atom.a, atom.b))
    return False


def atom_monotone(atom: Atom, vary: frozenset[str]) -> bool:
    if not (atom.vars & vary) or isinstance(atom, Sym):
        return True
    if isinstance(atom, (Floor, CeilPool, Scaled)):
        positive = not isinstance(atom, Scaled) or atom.scale > 0
        return (
            positive
            and all(c >= 0 for m, c in atom.num.terms if any(a.vars & vary for a in m))
            and all(atom_monotone(a, vary) for m, _ in atom.num.terms for a in m)
        )
    if isinstance(atom, Extreme):
        return all(
            atom_monotone(a, vary) and c >= 0
            for p in (atom.a, atom.b)
            for m, c in p.terms
            for a in m
        )
    return False


def _n_merge(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in points:
        if out and out[-1][1] + 1 == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out
