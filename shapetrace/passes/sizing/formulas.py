"""Shape formulas per node, and the aligned input sizes.

A node's sizes are polynomials over atoms (see `expr`). Its `shape_formula` writes them in the
small language of `shapetrace.formula`: the symbols, integers, `+ - *`, `floor(a/b)`,
`ceil(a/b)`, `min` and `max`. Floor divisions are already collapsed when the polynomials are
built (`floor(floor(x/2)/2) = floor(x/4)`); here a floor that rounds up is written as a ceil
(`floor((H + 31)/32) = ceil(H/32)`), a pool in ceil mode becomes a `min` of two floors, a
product of sizes along different axes is written as a product, and, for shapes (which need only
hold at accepted sizes), a `min`/`max` one side of which always wins, or a size that is a plain
`floor(a*n/q) + b` on every size its axis's own constraints accept, is rewritten so. A size no
formula writes exactly (an interpolation by a float factor, an op without a size rule) leaves
its node without a formula.

Aligned sizes are those at which every spatial map is exactly the input size divided by its
cumulative stride, plus the fixed border an unpadded layer trims: `d(n) = n * r + b`, with `r`
the map's slope and `b` its offset at the first multiple of its period, where no floor rounds.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

from torch import fx

from shapetrace.passes.sizing.exported import Data
from shapetrace.passes.sizing.expr import (
    Atom,
    CeilPool,
    Extreme,
    Floor,
    Mono,
    Poly,
    Sym,
    absorb,
    poly_max,
    poly_min,
)
from shapetrace.passes.sizing.intset import IntSet
from shapetrace.passes.sizing.solver import Solver
from shapetrace.passes.sizing.tensors import BATCH, Constraint, STensor, flat_args

if TYPE_CHECKING:
    from shapetrace.passes.sizing.domain import SizeAnalysis


class FormulaWriter:
    """Writes sizes as formulas, simplified against the sizes each axis can take."""

    def __init__(self, analysis: SizeAnalysis, *, everywhere: bool = False) -> None:
        """`everywhere`: formulas exact at every size, not only at accepted ones (nothing is
        rewritten by the sizes an axis's constraints allow), as a bound's formula must be."""
        self.a = analysis
        self.everywhere = everywhere
        self._atoms: dict[Atom, Poly | None] = {}
        self._texts: dict[Poly, str | None] = {}
        self.missing: dict[fx.Node, str] = {}  # why `shapes` wrote no formula for a node

    # -- simplification ------------------------------------------------------------------
    def simplify(self, p: Poly) -> Poly | None:
        """`p` over symbols, floors and min/max only, or None if no formula writes it."""
        out = Poly.of(p.const)
        for mono, coef in p.terms:
            term = Poly.of(coef)
            for atom in mono:
                found = self._atom(atom)
                if found is None:
                    return None
                term = term * found
            out = out + term
        return out

    def _atom(self, atom: Atom) -> Poly | None:
        if atom not in self._atoms:
            self._atoms[atom] = self._rewrite(atom)
        return self._atoms[atom]

    def _rewrite(self, atom: Atom) -> Poly | None:
        if isinstance(atom, Sym):
            return Poly.atom(atom)
        if isinstance(atom, Floor):
            num = self.simplify(atom.num)
            return None if num is None else num.floordiv(atom.den)
        if isinstance(atom, CeilPool):
            x = self.simplify(atom.num)
            if x is None:
                return None
            # out = q + 1, less one when the last window would start past the input, i.e.
            # when q >= t: q <= t always holds when add - left < stride, so min(q + 1, t).
            q = (x + atom.add).floordiv(atom.stride)
            t = (x + atom.left + atom.stride - 1).floordiv(atom.stride)
            if atom.add - atom.left < atom.stride:
                return self._extreme(poly_min(q + 1, t))
            return self._extreme(poly_min(q + 1, poly_max(q, t)))
        if isinstance(atom, Extreme):
            a, b = self.simplify(atom.a), self.simplify(atom.b)
            if a is None or b is None:
                return None
            pick = poly_max if atom.pick.__name__ == "max" else poly_min
            return self._extreme(pick(a, b))
        return None  # Scaled (float rounding) and Opaque (no size rule)

    def _extreme(self, p: Poly) -> Poly:
        """A min/max replaced by the side that wins wherever its axis can be."""
        atom = p.terms[0][0][0] if len(p.terms) == 1 and not p.const else None
        if self.everywhere or not isinstance(atom, Extreme) or p.terms[0] != ((atom,), 1):
            return p
        diff = atom.a - atom.b
        if len(diff.vars) != 1 or BATCH in diff.vars:
            return p
        (axis,) = diff.vars
        own = self.a.free.get(axis)
        if own is None:
            return p
        solver = Solver({axis}, {})
        below = solver.where(diff + 1, "<=")  # a < b
        above = solver.where(diff - 1, ">=")  # a > b
        a_wins = atom.pick.__name__ == "max"
        if below is not None and own.intersect(below).is_empty():
            return atom.a if a_wins else atom.b
        if above is not None and own.intersect(above).is_empty():
            return atom.b if a_wins else atom.a
        return p

    # -- text ----------------------------------------------------------------------------
    def text(self, p: Poly) -> str | None:
        """The formula of one size, or None."""
        if p not in self._texts:
            simple = self.simplify(p)
            self._texts[p] = None if simple is None else render(self._linear(simple))
        return self._texts[p]

    def _linear(self, p: Poly) -> Poly:
        """A size along one axis written as `floor(a*n/q) + b` (`a*n + b` when q is 1) when
        that is shorter and equal at every size the axis's own constraints allow: `H` for
        `8*floor(H/8)` and `floor(H/4)` for `2*floor(H/8)` where only multiples of 8 pass."""
        if self.everywhere or len(p.vars) != 1 or BATCH in p.vars or p.is_const:
            return p
        (axis,) = p.vars
        own = self.a.free.get(axis)
        solver = Solver({axis}, {})
        period = solver.period(p)
        if own is None or period is None:
            return p
        step, start = period
        slope = Fraction(solver.value(p, start + step) - solver.value(p, start), step)
        first = -(-start // step) * step
        line = (Poly.atom(Sym(axis)) * slope.numerator).floordiv(slope.denominator)
        line = line + (solver.value(p, first) - solver.value(line, first))
        if len(render(line)) >= len(render(p)):
            return p
        differs = solver.where(p - line, "!=")
        if differs is None or not own.intersect(differs).is_empty():
            return p
        return line

    def constraint(self, c: Constraint) -> str | None:
        """A constraint as a condition (`8*floor(H/2)*floor(W/3) == 192`), or None."""
        parts = []
        for part in (c, *c.alternatives):
            if part.rel == "%":
                expr = self.text(part.expr)
                parts.append(None if expr is None else f"({expr}) % {part.modulus} == 0")
            else:
                lhs, rhs = self.text(part.lhs), self.text(part.rhs)
                parts.append(None if lhs is None or rhs is None else f"{lhs} {part.rel} {rhs}")
        if any(t is None for t in parts):
            return None
        return " or ".join(t for t in parts if t is not None)

    def shapes(self) -> dict[fx.Node, list[str]]:
        """`shape_formula` for every node whose single tensor output has a spatial dim, and
        whose sizes follow from size rules alone (not past a call without one). Why the
        others that would have one are without it is left in `missing`."""
        out: dict[fx.Node, list[str]] = {}
        self.missing = {}
        if not self.a.axes:
            return out
        guessed = dict(self.a.prop.notes)
        tainted: dict[fx.Node, fx.Node] = {}  # node -> the call without a size rule before it
        spatial = set(self.a.axes)
        for node, value in self.a.prop.values.items():
            origin = (
                node
                if node in guessed
                else next((tainted[n] for n in node.all_input_nodes if n in tainted), None)
            )
            if origin is not None:
                tainted[node] = origin
            if not isinstance(value, STensor):
                continue
            if not any(
                ax is not None or d.vars & spatial or d.opaque
                for d, ax in zip(value.shape, value.axes, strict=True)
            ):
                continue
            if origin is not None:
                self.missing[node] = (
                    guessed[node]
                    if origin is node
                    else f"follows {self.a.prop.names.get(origin, origin.name)}, which has "
                    "no size rule"
                )
                continue
            texts = [self.text(d) for d in value.shape]
            atoms = {a for d in value.shape for m, _ in d.terms for a in m}
            data = sorted(a.key for a in atoms if isinstance(a, Data))
            if all(t is not None for t in texts):
                out[node] = [t for t in texts if t is not None]
            elif data:
                self.missing[node] = f"a size that depends on tensor values ({', '.join(data)})"
            else:
                self.missing[node] = "a size no formula writes exactly (a float scale factor)"
        return out


def render(p: Poly) -> str:
    """A polynomial over symbols, floors and min/max as a formula: `ceil(H/32) - 1`, a
    product of sizes along different axes as a product (`2048*(ceil(H/32) - 6)*(...)`), and
    a floor plus other terms as one floor when that is shorter."""
    texts = [_product(p)]
    absorbed = absorb(p)
    if absorbed is not None:
        texts.append(_product(absorbed))
    return min(texts, key=len)


_ORDER = "NTHWL"  # factors of a product are written in this order of their symbols


def _product(p: Poly) -> str:
    content, factors = factor(p)
    if len(factors) < 2:
        return _sum(p)
    factors.sort(key=lambda f: min(_ORDER.find(v) for v in f.vars))
    texts = [render(f) for f in factors]
    texts = [f"({t})" if _is_sum(t) or t.startswith("-") else t for t in texts]
    lead = "" if content == 1 else "-" if content == -1 else f"{content}*"
    return lead + "*".join(texts)


def _sum(p: Poly) -> str:
    parts: list[str] = []
    for mono, coef in p.terms:
        body = "*".join(_factor(a) for a in mono)
        parts.append(body if coef == 1 else f"-{body}" if coef == -1 else f"{coef}*{body}")
    if p.const or not parts:
        parts.append(str(p.const))
    text = parts[0]
    for part in parts[1:]:
        text += f" - {part[1:]}" if part.startswith("-") else f" + {part}"
    return text


def factor(p: Poly) -> tuple[int, list[Poly]]:
    """`p = content * f1 * f2 * ...` with each factor over the atoms of other symbols; one
    factor (`p` itself) when the coefficients do not split."""
    groups = _groups(p)
    if len(groups) < 2 or p.is_const:
        return 1, [p]
    first = groups[0]
    table: dict[tuple[Mono, Mono], int] = {}
    rows: dict[Mono, None] = {}
    cols: dict[Mono, None] = {}
    for mono, coef in [*p.terms, ((), p.const)]:
        if not coef:
            continue
        row = tuple(a for a in mono if a.vars <= first)
        col = tuple(a for a in mono if not a.vars <= first)
        table[row, col] = coef
        rows[row] = cols[col] = None
    (r0, c0), pivot = next(iter(table.items()))
    for r in rows:
        for c in cols:
            if table.get((r, c), 0) * pivot != table.get((r, c0), 0) * table.get((r0, c), 0):
                return 1, [p]
    left = _primitive({r: table.get((r, c0), 0) for r in rows})
    right = _primitive({c: table.get((r0, c), 0) for c in cols})
    content = pivot // (_coef(left, r0) * _coef(right, c0))
    inner, rest = factor(right)
    return content * inner, [left, *rest]


def _groups(p: Poly) -> list[frozenset[str]]:
    """The symbols of p's atoms, grouped so that no atom spans two groups."""
    groups: list[frozenset[str]] = []
    for mono, _ in p.terms:
        for atom in mono:
            merged = atom.vars
            for g in [g for g in groups if g & merged]:
                groups.remove(g)
                merged = merged | g
            groups.append(merged)
    return groups


def _primitive(coefs: dict[Mono, int]) -> Poly:
    """The polynomial with these coefficients over their gcd, its leading term positive."""
    g = math.gcd(*coefs.values())
    out = Poly({m: c // g for m, c in coefs.items() if m}, coefs.get((), 0) // g)
    lead = out.terms[0][1] if out.terms else out.const
    return -out if lead < 0 else out


def _coef(p: Poly, mono: Mono) -> int:
    return p.const if not mono else dict(p.terms)[mono]


def _factor(atom: Atom) -> str:
    if isinstance(atom, Sym):
        return atom.key
    if isinstance(atom, Floor):
        num, den = atom.num, atom.den
        if num.const == den - 1:
            # floor((x + d - 1)/d) = ceil(x/d) for every integer x.
            return f"ceil({_fraction(num - num.const, den)})"
        return f"floor({_fraction(num, den)})"
    if isinstance(atom, Extreme):
        a, b = (atom.b, atom.a) if atom.a.is_const else (atom.a, atom.b)  # `min(W, 4)`
        return f"{atom.pick.__name__}({render(a)}, {render(b)})"
    raise ValueError(f"no formula for {atom}")


def _fraction(num: Poly, den: int) -> str:
    text = render(num)
    return f"({text})/{den}" if _is_sum(text) else f"{text}/{den}"


def _is_sum(text: str) -> bool:
    """Does the formula add or subtract outside any parentheses?"""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in "+-" and i > 0 and text[i - 1] == " ":
            return True
    return False


# -- aligned sizes ---------------------------------------------------------------------------


def aligned_sets(analysis: SizeAnalysis) -> dict[str, IntSet]:
    """Per axis, the sizes at which every spatial map along it is `n * r + b` exactly (see
    the module's docstring); axes whose maps are not all quasi-linear are left out."""
    out: dict[str, IntSet] = {}
    if analysis.prop.notes:
        return out  # some maps are not followed: whether they divide evenly is unknown
    for axis in analysis.axes:
        dims: dict[str, Poly] = {}
        for value in analysis.prop.values.values():
            for t in flat_args(value):
                for d, ax in zip(t.shape, t.axes, strict=True):
                    if ax == axis and d.vars == {axis} and not d.opaque:
                        dims.setdefault(d.key, d)
        found = _aligned(axis, list(dims.values()))
        if found is not None:
            out[axis] = found
    return out


def _aligned(axis: str, dims: list[Poly]) -> IntSet | None:
    solver = Solver({axis}, {})
    n = Poly.atom(Sym(axis))
    found = IntSet.full()
    for d in dims:
        period = solver.period(d)
        if period is None:
            return None
        step, start = period
        rise = solver.value(d, start + step) - solver.value(d, start)
        if rise == 0:
            continue  # a size that stops following the input (a crop to a constant)
        # The offset at the first multiple of the period, where no floor rounds (n = 0 for
        # a net padded to keep sizes).
        slope = Fraction(rise, step)
        first = -(-start // step) * step
        offset = (solver.value(d, first) - slope * first) * slope.denominator
        exact = solver.where(slope.denominator * d - slope.numerator * n - int(offset), "==")
        if exact is None:
            return None
        found = found.intersect(exact)
    return found


def aligned_multiple(found: IntSet) -> int | None:
    """m when the set ends in every multiple of m (from some size on), else None."""
    segments = found.segments()
    if not segments:
        return None
    lo, hi, step = segments[-1]
    if hi is not None or lo % step:
        return None
    return step
