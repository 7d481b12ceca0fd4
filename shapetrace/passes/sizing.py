"""Input-size pass: which nodes depend on the input's spatial size, the exact sizes a model
accepts, the node that limits them, and a verdict in plain words.

The graph is re-propagated once with symbolic sizes: the batch `N` and each spatial axis
(`H`, `W`; `T`, `H`, `W` for video; `L` for 1-d) are symbols, and every size is an integer
polynomial over them and over floor divisions of such polynomials (a convolution's output is
`floor((H + 2p - d(k-1) - 1) / s) + 1`). Per-op rules work from module attributes, not from
observed shapes, so the graph is followed past a break. Each op that can reject a size adds a
constraint: a map at least as large as a kernel, a Linear's `in_features`, a merge of equal
sizes, a hard-coded view, a `torch._assert`, the output keeping its batch. An op without a
rule keeps its observed shapes and is listed in the domain's bounds as inexact.

Such sizes are quasi-linear along one axis: past some `n0`, `f(n + P) = f(n) + D`. So each
constraint holds on an eventually periodic set that a few evaluations determine exactly
(`IntSet`), and the accepted domain is their intersection. A product of two varying sizes
(a flattened map when H and W move together) is not quasi-linear but is monotone, and is
solved by search. Cost does not depend on the sizes.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
from torch import fx, nn

from shapetrace.passes import PassContext
from shapetrace.passes.shapes import describe_module, op_label
from shapetrace.report import Failure

# -- integer expressions over size symbols ------------------------------------------------


class Atom:
    """A non-polynomial integer quantity: a symbol, a floor division, a pool in ceil mode, ...

    Atoms compare by their canonical text `key`, so equal formulas built twice are equal."""

    __slots__ = ("_hash", "key", "opaque", "vars")

    def __init__(self, key: str, vars: frozenset[str], opaque: bool = False) -> None:
        self.key = key
        self.vars = vars
        self.opaque = opaque  # depends on a size no rule explains
        self._hash = hash(key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Atom) and other.key == self.key)

    def __lt__(self, other: Atom) -> bool:
        return self.key < other.key

    def __repr__(self) -> str:
        return self.key

    def compute(self, ev: Evaluator) -> int:
        raise NotImplementedError


class Sym(Atom):
    """A size symbol of the input: `N`, `H`, `W`, `T` or `L`."""

    __slots__ = ()

    def __init__(self, name: str) -> None:
        super().__init__(name, frozenset((name,)))

    def compute(self, ev: Evaluator) -> int:
        return ev.env[self.key]


class Floor(Atom):
    """`floor(num / den)`, den >= 2, built only through `Poly.floordiv` (which normalises)."""

    __slots__ = ("den", "num")

    def __init__(self, num: Poly, den: int) -> None:
        text = num.key if len(num.terms) == 1 and not num.const else f"({num.key})"
        super().__init__(f"floor({text}/{den})", num.vars, num.opaque)
        self.num, self.den = num, den

    def compute(self, ev: Evaluator) -> int:
        return ev.poly(self.num) // self.den


class CeilPool(Atom):
    """A pooling size in ceil mode: `floor((x + add) / s) + 1`, minus one when the last window
    would start past the input and left padding (ATen's `pooling_output_shape_pad_lr`)."""

    __slots__ = ("add", "left", "num", "stride")

    def __init__(self, num: Poly, add: int, stride: int, left: int) -> None:
        super().__init__(f"ceilpool({num}; {add}, {stride}, {left})", num.vars, num.opaque)
        self.num, self.add, self.stride, self.left = num, add, stride, left

    def compute(self, ev: Evaluator) -> int:
        x = ev.poly(self.num)
        out = (x + self.add) // self.stride + 1
        if (out - 1) * self.stride >= x + self.left:
            out -= 1
        return out


class Scaled(Atom):
    """`floor(x * scale)` computed in double precision, as interpolate does, for a scale whose
    exact fraction is too long to treat as a floor division."""

    __slots__ = ("num", "scale")

    def __init__(self, num: Poly, scale: float) -> None:
        super().__init__(f"floor(({num})*{scale!r})", num.vars, num.opaque)
        self.num, self.scale = num, scale

    def compute(self, ev: Evaluator) -> int:
        return math.floor(float(ev.poly(self.num)) * self.scale)


class Extreme(Atom):
    """`max(a, b)` (a broadcast of two varying sizes) or `min(a, b)` (a slice with a varying
    stop)."""

    __slots__ = ("a", "b", "pick")

    def __init__(self, pick: Callable[[int, int], int], a: Poly, b: Poly) -> None:
        a, b = sorted((a, b), key=lambda p: p.key)
        super().__init__(f"{pick.__name__}({a}, {b})", a.vars | b.vars, a.opaque or b.opaque)
        self.pick, self.a, self.b = pick, a, b

    def compute(self, ev: Evaluator) -> int:
        return self.pick(ev.poly(self.a), ev.poly(self.b))


class Opaque(Atom):
    """A size no rule explains; it keeps the value observed at the analysed input."""

    __slots__ = ("value",)

    def __init__(self, label: str, value: int | None) -> None:
        super().__init__(f"?{label}", frozenset(), True)
        self.value = value

    def compute(self, ev: Evaluator) -> int:
        if self.value is None:
            raise Unknown(self.key)
        return self.value


class Unknown(Exception):
    """Raised when a formula depends on a size no rule explains and nothing observed it."""


Mono = tuple[Atom, ...]


class Poly:
    """An integer polynomial over atoms, kept canonical: sorted monomials, no zero terms."""

    __slots__ = ("_hash", "const", "key", "opaque", "terms", "vars")

    def __init__(self, terms: dict[Mono, int] | None = None, const: int = 0) -> None:
        items = sorted(((m, c) for m, c in (terms or {}).items() if c), key=_mono_key)
        self.terms: tuple[tuple[Mono, int], ...] = tuple(items)
        self.const = const
        self.key = _render(self.terms, const)
        self._hash = hash(self.key)
        self.vars = frozenset().union(*(a.vars for m, _ in items for a in m))
        self.opaque = any(a.opaque for m, _ in items for a in m)

    @staticmethod
    def of(value: int | Poly) -> Poly:
        return value if isinstance(value, Poly) else Poly(None, int(value))

    @staticmethod
    def atom(atom: Atom) -> Poly:
        return Poly({(atom,): 1})

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Poly):
            return self is other or self.key == other.key
        return False

    def __repr__(self) -> str:
        return self.key

    @property
    def is_const(self) -> bool:
        return not self.terms

    def __add__(self, other: int | Poly) -> Poly:
        other = Poly.of(other)
        terms = dict(self.terms)
        for mono, coef in other.terms:
            terms[mono] = terms.get(mono, 0) + coef
        return Poly(terms, self.const + other.const)

    __radd__ = __add__

    def __neg__(self) -> Poly:
        return Poly({m: -c for m, c in self.terms}, -self.const)

    def __sub__(self, other: int | Poly) -> Poly:
        return self + (-Poly.of(other))

    def __rsub__(self, other: int | Poly) -> Poly:
        return Poly.of(other) - self

    def __mul__(self, other: int | Poly) -> Poly:
        other = Poly.of(other)
        terms: dict[Mono, int] = {}
        left = [*self.terms, ((), self.const)]
        right = [*other.terms, ((), other.const)]
        for m1, c1 in left:
            for m2, c2 in right:
                if c1 and c2:
                    mono = tuple(sorted(m1 + m2))
                    terms[mono] = terms.get(mono, 0) + c1 * c2
        const = terms.pop((), 0)
        return Poly(terms, const)

    __rmul__ = __mul__

    def floordiv(self, den: int) -> Poly:
        """`floor(self / den)`, normalised: whole multiples leave the floor, common factors
        cancel, and nested floors of a lone floor collapse (floor(floor(x/a)/b) = floor(x/ab))."""
        if den == 1:
            return self
        if den < 0:
            return (-self).floordiv(-den)
        whole: dict[Mono, int] = {}
        rest: dict[Mono, int] = {}
        for mono, coef in self.terms:
            q, r = divmod(coef, den)
            whole[mono] = q
            if r:
                rest[mono] = r
        q_const, r_const = divmod(self.const, den)
        if not rest:
            return Poly(whole, q_const)
        g = math.gcd(den, *rest.values())
        if g > 1:
            rest = {m: c // g for m, c in rest.items()}
            r_const //= g
            den //= g
        outer = Poly(whole, q_const)
        if len(rest) == 1:
            ((mono, coef),) = rest.items()
            if coef == 1 and len(mono) == 1 and isinstance(mono[0], Floor):
                inner = mono[0]
                return outer + (inner.num + r_const * inner.den).floordiv(inner.den * den)
        return outer + Poly.atom(Floor(Poly(rest, r_const), den))

    def mod(self, den: int) -> Poly:
        return self - self.floordiv(den) * den

    def exact_div(self, other: Poly) -> Poly | None:
        """`self / other` when other is a constant or a monomial dividing every term exactly."""
        if other.is_const:
            c = other.const
            if c and self.const % c == 0 and all(k % c == 0 for _, k in self.terms):
                return Poly({m: k // c for m, k in self.terms}, self.const // c)
            return None
        if len(other.terms) != 1 or other.const or self.const:
            return None
        ((div_mono, div_coef),) = other.terms
        terms: dict[Mono, int] = {}
        for mono, coef in self.terms:
            rest = list(mono)
            for a in div_mono:
                if a not in rest:
                    return None
                rest.remove(a)
            if coef % div_coef:
                return None
            terms[tuple(rest)] = coef // div_coef
        const = terms.pop((), 0)
        return Poly(terms, const)


def _mono_key(item: tuple[Mono, int]) -> tuple[int, str]:
    return (len(item[0]), "*".join(a.key for a in item[0]))


def _render(terms: tuple[tuple[Mono, int], ...], const: int) -> str:
    parts = []
    for mono, coef in terms:
        body = "*".join(a.key for a in mono)
        parts.append(body if coef == 1 else f"-{body}" if coef == -1 else f"{coef}*{body}")
    if const or not parts:
        parts.append(str(const))
    text = " + ".join(parts)
    return text.replace("+ -", "- ")


def _pick_max(a: int, b: int) -> int:
    return max(a, b)


def _pick_min(a: int, b: int) -> int:
    return min(a, b)


_pick_max.__name__ = "max"
_pick_min.__name__ = "min"


def poly_max(a: Poly, b: Poly) -> Poly:
    if a == b:
        return a
    if a.is_const and b.is_const:
        return Poly.of(max(a.const, b.const))
    return Poly.atom(Extreme(_pick_max, a, b))


def poly_min(a: Poly, b: Poly) -> Poly:
    if a == b:
        return a
    if a.is_const and b.is_const:
        return Poly.of(min(a.const, b.const))
    return Poly.atom(Extreme(_pick_min, a, b))


def ceil_pool(x: Poly, add: int, stride: int, left: int) -> Poly:
    """The ceil-mode pooling size; a plain floor division when the adjustment cannot fire."""
    if x.is_const:
        return Poly.of(CeilPool(x, add, stride, left).compute(Evaluator({})))
    if add < left:  # the last window always starts inside: (out - 1) * s <= x + add
        return (x + add).floordiv(stride) + 1
    return Poly.atom(CeilPool(x, add, stride, left))


def scaled(x: Poly, scale: float) -> Poly:
    """`floor(x * scale)` as interpolate computes it (in double precision)."""
    frac = Fraction(scale)
    if frac.denominator <= 1 << 16 and abs(frac.numerator) <= 1 << 16:
        # The double product is exact for these scales at any size below 2**36.
        return (x * frac.numerator).floordiv(frac.denominator)
    if x.is_const:
        return Poly.of(math.floor(float(x.const) * scale))
    return Poly.atom(Scaled(x, scale))


class Evaluator:
    """Evaluates polynomials at one assignment of the symbols, caching atom values."""

    __slots__ = ("cache", "env")

    def __init__(self, env: dict[str, int]) -> None:
        self.env = env
        self.cache: dict[Atom, int] = {}

    def atom(self, atom: Atom) -> int:
        value = self.cache.get(atom)
        if value is None:
            value = self.cache[atom] = atom.compute(self)
        return value

    def poly(self, p: Poly) -> int:
        total = p.const
        for mono, coef in p.terms:
            term = coef
            for a in mono:
                term *= self.atom(a)
            total += term
        return total


# -- eventually periodic sets of sizes ----------------------------------------------------

KRanges = list[tuple[int, int | None]]  # disjoint sorted ranges of k >= 0; None: unbounded


def _k_intersect(a: KRanges, b: KRanges) -> KRanges:
    out: KRanges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        ha, hb = a[i][1], b[j][1]
        hi = hb if ha is None else ha if hb is None else min(ha, hb)
        if hi is None or lo <= hi:
            out.append((lo, hi))
        if hb is None or (ha is not None and ha < hb):
            i += 1
        else:
            j += 1
    return out


def _k_union(a: KRanges, b: KRanges) -> KRanges:
    out: KRanges = []
    for lo, hi in sorted(a + b, key=lambda r: r[0]):
        if out and (out[-1][1] is None or lo <= out[-1][1] + 1):
            last_lo, last_hi = out[-1]
            out[-1] = (last_lo, None if last_hi is None or hi is None else max(last_hi, hi))
        else:
            out.append((lo, hi))
    return out


def _k_shift(ranges: KRanges, shift: int, scale: int) -> KRanges:
    """The k' with `shift + k' * scale` in `ranges`, k' >= 0."""
    out: KRanges = []
    for lo, hi in ranges:
        new_lo = max(0, -((shift - lo) // scale))
        new_hi = None if hi is None else (hi - shift) // scale
        if new_hi is None or new_lo <= new_hi:
            out.append((new_lo, new_hi))
    return out


@dataclass
class IntSet:
    """A set of positive integers, eventually periodic: explicit `prefix` ranges below `base`,
    then for each residue r < `period` the k-ranges with `base + r + k * period` in the set."""

    base: int
    prefix: list[tuple[int, int]]
    period: int
    classes: list[KRanges]

    @staticmethod
    def full() -> IntSet:
        return IntSet(1, [], 1, [[(0, None)]])

    @staticmethod
    def empty() -> IntSet:
        return IntSet(1, [], 1, [[]])

    @staticmethod
    def interval(lo: int, hi: int | None) -> IntSet:
        lo = max(lo, 1)
        if hi is not None and hi < lo:
            return IntSet.empty()
        return IntSet(1, [], 1, [[(lo - 1, None if hi is None else hi - 1)]])

    def is_empty(self) -> bool:
        return not self.prefix and not any(self.classes)

    def contains(self, n: int) -> bool:
        if n < self.base:
            return any(lo <= n <= hi for lo, hi in self.prefix)
        r, k = (n - self.base) % self.period, (n - self.base) // self.period
        return any(lo <= k and (hi is None or k <= hi) for lo, hi in self.classes[r])

    def rebase(self, base: int) -> IntSet:
        """The same set with explicit ranges up to `base` (>= self.base)."""
        if base <= self.base:
            return self
        shift = base - self.base
        extra = []
        for r, ranges in enumerate(self.classes):
            for lo, hi in ranges:
                top = (shift - r - 1) // self.period
                for k in range(lo, top + 1 if hi is None else min(hi, top) + 1):
                    extra.append(self.base + r + k * self.period)
        prefix = list(self.prefix)
        for n in sorted(extra):
            if prefix and prefix[-1][1] + 1 == n:
                prefix[-1] = (prefix[-1][0], n)
            else:
                prefix.append((n, n))
        classes = []
        for r in range(self.period):
            q, r0 = divmod(shift + r, self.period)
            classes.append(_k_shift(self.classes[r0], q, 1))
        return IntSet(base, prefix, self.period, classes)

    def reperiod(self, period: int) -> IntSet:
        """The same set described with a period that is a multiple of the current one."""
        if period == self.period:
            return self
        m = period // self.period
        classes = []
        for r in range(period):
            q, r0 = divmod(r, self.period)
            classes.append(_k_shift(self.classes[r0], q, m))
        return IntSet(self.base, self.prefix, period, classes)

    def _aligned(self, other: IntSet) -> tuple[IntSet, IntSet]:
        base = max(self.base, other.base)
        period = math.lcm(self.period, other.period)
        return (
            self.rebase(base).reperiod(period),
            other.rebase(base).reperiod(period),
        )

    def intersect(self, other: IntSet) -> IntSet:
        a, b = self._aligned(other)
        prefix = _n_intersect(a.prefix, b.prefix)
        classes = [_k_intersect(x, y) for x, y in zip(a.classes, b.classes, strict=True)]
        return IntSet(a.base, prefix, a.period, classes).simplify()

    def union(self, other: IntSet) -> IntSet:
        a, b = self._aligned(other)
        prefix = _n_union(a.prefix, b.prefix)
        classes = [_k_union(x, y) for x, y in zip(a.classes, b.classes, strict=True)]
        return IntSet(a.base, prefix, a.period, classes).simplify()

    def simplify(self) -> IntSet:
        """Shrink the period when the residue classes repeat with a shorter one."""
        period = self.period
        for p in _divisors(period):
            if p == period:
                break
            candidate = self._coarse(p)
            if candidate is not None and candidate.reperiod(period).classes == self.classes:
                return candidate
        return self

    def _coarse(self, p: int) -> IntSet | None:
        # Residue r0 of period p gathers residues r0 + q*p of the current period: its element
        # j (n = base + r0 + j*p) is element k = j // m of residue r0 + (j % m)*p.
        m = self.period // p
        classes: list[KRanges] = []
        for r0 in range(p):
            lows: list[int] = []
            highs: list[int | None] = []
            for q in range(m):
                ranges = self.classes[r0 + q * p]
                if len(ranges) > 1:
                    return None
                if ranges:
                    lo, hi = ranges[0]
                    lows.append(q + lo * m)
                    highs.append(None if hi is None else q + hi * m)
            if not lows:
                classes.append([])
            elif None in highs:
                classes.append([(min(lows), None)])
            else:
                classes.append([(min(lows), max(h for h in highs if h is not None))])
        return IntSet(self.base, self.prefix, p, classes)

    def first(self) -> int | None:
        if self.prefix:
            return self.prefix[0][0]
        best = [
            self.base + r + ranges[0][0] * self.period
            for r, ranges in enumerate(self.classes)
            if ranges
        ]
        return min(best) if best else None

    def nearest(self, n: int) -> int | None:
        """The element closest to n (the smaller one on a tie)."""
        best: int | None = None
        candidates = [x for lo, hi in self.prefix for x in (lo, hi, min(max(n, lo), hi))]
        for r, ranges in enumerate(self.classes):
            for lo, hi in ranges:
                k = (n - self.base - r) // self.period
                for kk in (lo, k, k + 1, hi):
                    if kk is not None and kk >= lo and (hi is None or kk <= hi):
                        candidates.append(self.base + r + kk * self.period)
        for x in candidates:
            if (
                best is None
                or abs(x - n) < abs(best - n)
                or (abs(x - n) == abs(best - n) and x < best)
            ):
                best = x
        return best

    def segments(self) -> list[tuple[int, int | None, int]]:
        """The set as `(lo, hi_or_None, step)` progressions, step 1 for plain intervals."""
        out: list[tuple[int, int | None, int]] = [(lo, hi, 1) for lo, hi in self.prefix]
        P = self.period
        if P == 1:
            out += [
                (self.base + lo, None if hi is None else self.base + hi, 1)
                for lo, hi in self.classes[0]
            ]
            return _merge_segments(out)
        # Blocks of k over which the same residues are present.
        cuts = {0}
        for ranges in self.classes:
            for lo, hi in ranges:
                cuts.add(lo)
                if hi is not None:
                    cuts.add(hi + 1)
        edges = sorted(cuts)
        for i, k0 in enumerate(edges):
            k1 = edges[i + 1] if i + 1 < len(edges) else None
            present = [r for r in range(P) if _k_has(self.classes[r], k0)]
            if not present:
                continue
            start = self.base + k0 * P
            end = None if k1 is None else self.base + k1 * P - 1
            if len(present) == P:
                out.append((start, end, 1))
                continue
            runs = _runs(present)
            periods = None if k1 is None else k1 - k0
            if periods is not None and periods * len(runs) <= 8:
                for k in range(k0, k0 + periods):
                    for a, b in runs:
                        out.append((self.base + k * P + a, self.base + k * P + b, 1))
            else:
                for r in present:
                    out.append((start + r, None if end is None else end - (P - 1 - r), P))
        return _merge_segments(out)


def _k_has(ranges: KRanges, k: int) -> bool:
    return any(lo <= k and (hi is None or k <= hi) for lo, hi in ranges)


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] + 1 == v:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _n_intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(lo, hi) for lo, hi in _k_intersect(list(a), list(b)) if hi is not None]


def _n_union(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(lo, hi) for lo, hi in _k_union(list(a), list(b)) if hi is not None]


def _merge_segments(
    segments: list[tuple[int, int | None, int]],
) -> list[tuple[int, int | None, int]]:
    ordered = sorted(segments, key=lambda s: (s[2] != 1, s[0] % s[2] if s[2] > 1 else 0, s[0]))
    out: list[tuple[int, int | None, int]] = []
    for lo, hi, step in ordered:
        if out:
            plo, phi, pstep = out[-1]
            same = pstep == step and (step == 1 or plo % step == lo % step)
            if same and phi is not None and lo <= phi + step:
                out[-1] = (plo, None if hi is None else max(phi, hi), step)
                continue
        # A single element is an interval of one.
        if hi is not None and lo == hi:
            step = 1
        out.append((lo, hi, step))
    return sorted(out, key=lambda s: s[0])


# -- symbolic tensors and constraints -------------------------------------------------------

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
    "squeeze": "squeeze must not drop a varying dim",
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
        if _compare(v, self.rel, self.modulus):
            return True
        return any(a.holds(ev) for a in self.alternatives)


def _compare(v: int, rel: str, modulus: int) -> bool:
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
_RULE_ERRORS = (
    Unsupported,
    Unknown,
    TypeError,
    ValueError,
    IndexError,
    KeyError,
    AttributeError,
    ZeroDivisionError,
)


def _prod(values: Iterable[Poly]) -> Poly:
    out = Poly.of(1)
    for v in values:
        out = out * v
    return out


def _ints(value: Any, rank: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * rank
    return tuple(int(v) for v in value)


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def _merged_axis(dims: Sequence[Poly], axes: Sequence[str | None]) -> str | None:
    """The axes a merge of dims follows: spatial only if every non-unit dim is spatial."""
    kept = [a for d, a in zip(dims, axes, strict=True) if not (d.is_const and d.const == 1)]
    if not kept or any(a is None for a in kept):
        return None
    names = [n for a in kept if a for n in a.split(",")]
    return ",".join(dict.fromkeys(names))


def _flat_args(values: Any) -> list[Any]:
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


# -- symbolic propagation --------------------------------------------------------------------


class Propagator:
    """Runs the graph once on `STensor`s, collecting the constraints each op puts on sizes."""

    def __init__(self, context: PassContext) -> None:
        self.context = context
        capture = context.capture
        self.gm = capture.graph_module
        self.names = capture.names
        self.observed = context.shapes.values
        self.values: dict[fx.Node, Any] = {}
        self.constraints: list[Constraint] = []
        self.notes: list[tuple[fx.Node, str]] = []
        self.first_seen: dict[Poly, fx.Node] = {}
        self.output: Any = None
        self.node: fx.Node = next(iter(self.gm.graph.nodes))
        self.axes, self.input_node, self.env0 = self._layout()
        self.ev0 = Evaluator(self.env0)

    # -- setup --------------------------------------------------------------------------
    def _layout(self) -> tuple[tuple[str, ...], fx.Node | None, dict[str, int]]:
        """The spatial axes of the first input, from the first conv (or embedding) layer."""
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        first = placeholders[0] if placeholders else None
        value = self.observed.get(first) if first is not None else None
        if not isinstance(value, torch.Tensor) and self.context.inputs:
            value = self.context.inputs[0]
        env: dict[str, int] = {}
        if first is None or not isinstance(value, torch.Tensor) or value.dim() < 2:
            return (), None, env
        # Without a conv, embedding or linear layer to tell, N x C x spatial... is assumed.
        rank = value.dim() - 2 if value.is_floating_point() else 0
        for node in self.gm.graph.nodes:
            if node.op != "call_module":
                continue
            module = self.gm.get_submodule(str(node.target))
            if isinstance(module, nn.modules.conv._ConvNd):
                rank = len(module.kernel_size) if value.dim() == len(module.kernel_size) + 2 else 0
                break
            if isinstance(module, nn.Embedding):
                rank = 1 if value.dim() == 2 else 0
                break
            if isinstance(module, nn.Linear) and first in node.all_input_nodes:
                rank = 0
                break
        names = AXIS_NAMES.get(rank, ())
        env[BATCH] = int(value.shape[0])
        for name, size in zip(names, value.shape[value.dim() - rank :], strict=True):
            env[name] = int(size)
        return names, first, env

    def _input(self, node: fx.Node) -> Any:
        value = self.observed.get(node)
        if node is self.input_node:
            assert isinstance(value, torch.Tensor) or self.context.inputs
            tensor = value if isinstance(value, torch.Tensor) else self.context.inputs[0]
            rank = len(self.axes)
            shape = [Poly.atom(Sym(BATCH))]
            shape += [Poly.of(int(d)) for d in tensor.shape[1 : tensor.dim() - rank]]
            shape += [Poly.atom(Sym(a)) for a in self.axes]
            axes: list[str | None] = [None] * (tensor.dim() - rank) + list(self.axes)
            return STensor(tuple(shape), tuple(axes))
        return self._constant(value, node)

    def _constant(self, value: Any, node: fx.Node | None = None) -> Any:
        if isinstance(value, torch.Tensor):
            shape = tuple(Poly.of(int(d)) for d in value.shape)
            return STensor(shape, (None,) * len(shape), None, node)
        if isinstance(value, (list, tuple)):
            return type(value)(self._constant(v, node) for v in value)
        return value

    # -- running ------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.node = node
            if node.op == "output":
                self._check_output(fx.node.map_arg(node.args[0], self.values.__getitem__))
                continue
            if node.op == "placeholder":
                value = self._input(node)
            elif node.op == "get_attr":
                value = self._constant(_lookup(self.gm, str(node.target)), node)
            else:
                args = fx.node.map_arg(node.args, self.values.__getitem__)
                kwargs = fx.node.map_arg(node.kwargs, self.values.__getitem__)
                try:
                    value = self._call(node, args, kwargs)
                except _RULE_ERRORS as exc:
                    value = self._fallback(node, args, kwargs, exc)
            self.values[node] = value
            for t in _flat_args(value):
                for d in t.shape:
                    if d.vars and d not in self.first_seen:
                        self.first_seen[d] = node

    def _call(self, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if node.op == "call_module":
            module = self.gm.get_submodule(str(node.target))
            for types, rule in _MODULE_RULES:
                if isinstance(module, types):
                    return rule(self, module, *args, **kwargs)
            raise Unsupported(type(module).__name__)
        if node.op == "call_method":
            method = _METHOD_RULES.get(str(node.target))
            if method is None:
                raise Unsupported(f"Tensor.{node.target}")
            return method(self, *args, **kwargs)
        function = _FUNCTION_RULES.get(node.target)
        if function is None:
            raise Unsupported(op_label(node))
        return function(self, *args, **kwargs)

    def _fallback(self, node: fx.Node, args: Any, kwargs: Any, exc: BaseException) -> Any:
        """Observed shapes for a call without a rule: exact when no input size varies,
        otherwise an elementwise guess or opaque sizes, noted in the domain's bounds."""
        tensors = _flat_args((args, kwargs))
        observed = self.observed.get(node)
        varying = any(d.vars - {BATCH} for t in tensors for d in t.shape) or any(
            isinstance(v, Poly) and v.vars - {BATCH} for v in _flat_scalars((args, kwargs))
        )
        if not varying and observed is not None:
            return self._constant(observed)
        what = str(exc) if isinstance(exc, Unsupported) else f"{type(exc).__name__}: {exc}"
        if (
            isinstance(observed, torch.Tensor)
            and tensors
            and self._at0(tensors[0].shape) == list(observed.shape)
        ):
            self.notes.append((node, f"no size rule for {what}; assumed to keep its input's shape"))
            return tensors[0]
        self.notes.append((node, f"no size rule for {what}; sizes after it are not followed"))
        return self._opaque(observed, self.names.get(node, node.name))

    def _opaque(self, value: Any, label: str) -> Any:
        if isinstance(value, torch.Tensor):
            shape = tuple(
                Poly.atom(Opaque(f"{label}[{i}]", int(d))) for i, d in enumerate(value.shape)
            )
            return STensor(shape, (None,) * len(shape))
        if isinstance(value, (list, tuple)):
            return type(value)(self._opaque(v, f"{label}.{i}") for i, v in enumerate(value))
        if value is None:
            return STensor((Poly.atom(Opaque(label, None)),), (None,))
        return value

    def _at0(self, shape: Sequence[Poly]) -> list[int] | None:
        try:
            return [self.ev0.poly(d) for d in shape]
        except (Unknown, KeyError):
            return None

    # -- constraints --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.names.get(self.node, self.node.name)

    def require(
        self,
        kind: str,
        lhs: Poly | int,
        rel: str,
        rhs: Poly | int,
        message: Message,
        **options: Any,
    ) -> None:
        """Record a constraint; one that cannot depend on the spatial sizes is only kept when
        it fails (the break then holds at every size)."""
        c = self.make(kind, lhs, rel, rhs, message, **options)
        if not (c.vars - {BATCH}):
            try:
                if c.holds(self.ev0):
                    return
            except Unknown:
                return
        self.constraints.append(c)

    def make(
        self,
        kind: str,
        lhs: Poly | int,
        rel: str,
        rhs: Poly | int,
        message: Message,
        *,
        alternatives: Sequence[Constraint] = (),
        modulus: int = 0,
        need: int = 0,
        pattern: str = "",
        node: fx.Node | None = None,
    ) -> Constraint:
        return Constraint(
            node or self.node,
            kind,
            Poly.of(lhs),
            rel,
            Poly.of(rhs),
            message,
            list(alternatives),
            modulus,
            need,
            pattern,
        )

    def axis_of(self, t: STensor, i: int) -> str:
        return t.axes[i] or f"dim {i}"

    def need_positive(self, out: Poly, size: Poly, what: str, axis: str, need: int) -> None:
        """An op whose output along `axis` must be at least 1 (a kernel larger than the map)."""
        name = self.name
        self.require(
            "min",
            out,
            ">=",
            1,
            _say(f"{name}: {what} needs at least {need} along {axis}, gets ", size),
            need=need,
        )

    def equal_sizes(self, a: Poly, b: Poly, what: str, *, kind: str = "") -> None:
        """Two sizes that must agree (a cat, a Linear's features, a hard-coded size)."""
        if a == b:
            return
        name = self.name
        if not kind:
            kind = "merge" if a.vars - {BATCH} and b.vars - {BATCH} else "fixed"
        self.require(kind, a, "==", b, _say(f"{name}: {what}: ", a, " vs ", b))

    # -- broadcasting -------------------------------------------------------------------
    def broadcast(self, tensors: Sequence[STensor], what: str) -> STensor:
        """Elementwise broadcasting: dims agree or one is 1."""
        ndim = max(t.ndim for t in tensors)
        shape: list[Poly] = []
        axes: list[str | None] = []
        name = self.name
        for i in range(ndim):
            dims = [
                (t.shape[t.ndim - ndim + i], t.axes[t.ndim - ndim + i], t)
                for t in tensors
                if t.ndim - ndim + i >= 0
            ]
            size, axis, _ = dims[0]
            for other, other_axis, _ in dims[1:]:
                axis = axis or other_axis
                if other == size or (other.is_const and other.const == 1):
                    continue
                if size.is_const and size.const == 1:
                    size = other
                    continue
                a, b = size, other
                param = any(x.param is not None and not d.vars for d, _, x in dims)
                if a.vars - {BATCH} and b.vars - {BATCH}:
                    kind, out = "merge", poly_max(a, b)
                else:
                    kind, out = "fixed", b if a.vars else a
                alts = [
                    self.make(kind, a, "==", 1, _no_message),
                    self.make(kind, b, "==", 1, _no_message),
                ]
                self.require(
                    kind,
                    a,
                    "==",
                    b,
                    _say(f"{name}: {what} needs equal sizes (or 1) in dim {i}: ", a, " vs ", b),
                    alternatives=alts,
                    pattern="posembed" if param else "",
                )
                size = out
            shape.append(size)
            axes.append(axis)
        return STensor(tuple(shape), tuple(axes))

    # -- output -------------------------------------------------------------------------
    def _check_output(self, value: Any) -> None:
        """Accepted means the output keeps its batch and every non-spatial dim; a dim that
        breaks this is blamed on the node that first produced it (a view folding the map)."""
        self.output = value
        for t in _flat_args(value):
            for i, d in enumerate(t.shape):
                if not (d.vars - {BATCH}) or (t.axes[i] is not None and BATCH not in d.vars):
                    continue
                origin = self.first_seen.get(d, self.node)
                name = self.names.get(origin, origin.name)
                if BATCH in d.vars:
                    target = Poly.atom(Sym(BATCH))
                    text = "folds spatial elements into the batch"
                else:
                    try:
                        target = Poly.of(self.ev0.poly(d))
                    except Unknown:
                        continue
                    text = "makes a non-spatial dim depend on the input size"
                self.require(
                    "batch",
                    d,
                    "==",
                    target,
                    _say(f"{name}: {text}: output dim {i} is ", d, ", not ", target),
                    node=origin,
                )


def _no_message(value: Callable[[Poly], int]) -> str:
    return ""


def _say(*parts: str | Poly) -> Message:
    """A message whose sizes are filled in when it is shown, at the sizes that break."""

    def message(value: Callable[[Poly], int]) -> str:
        return "".join(str(value(p)) if isinstance(p, Poly) else p for p in parts)

    return message


def _lookup(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _flat_scalars(values: Any) -> list[Any]:
    out: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        else:
            out.append(v)

    walk(values)
    return out


# -- size rules: modules ----------------------------------------------------------------------

Rule = Callable[..., Any]


def _tensor(value: Any) -> STensor:
    if not isinstance(value, STensor):
        raise Unsupported(f"a non-tensor input {type(value).__name__}")
    return value


def _spatial_split(x: STensor, rank: int) -> tuple[int, int]:
    """Index of the channel dim and of the first spatial dim of a (batched or not) input."""
    if x.ndim not in (rank + 1, rank + 2):
        raise Unsupported(f"a {x.ndim}-d input to a {rank}-d op")
    first = x.ndim - rank
    return first - 1, first


def _conv(p: Propagator, m: nn.modules.conv._ConvNd, x: Any, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    rank = len(m.kernel_size)
    ch, first = _spatial_split(x, rank)
    desc = describe_module(m)
    p.equal_sizes(x.shape[ch], Poly.of(m.in_channels), f"{desc} input channels", kind="features")
    shape = list(x.shape)
    shape[ch] = Poly.of(m.out_channels)
    transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
    for i in range(rank):
        d = first + i
        size, axis = x.shape[d], p.axis_of(x, d)
        k, s, dil = m.kernel_size[i], m.stride[i], m.dilation[i]
        # padding="same" (None here) keeps the size; "valid" is no padding.
        pad = (
            m.padding[i] if not isinstance(m.padding, str) else 0 if m.padding == "valid" else None
        )
        if transposed:
            out_pad = m.output_padding[i]
            assert pad is not None
            shape[d] = (size - 1) * s - 2 * pad + dil * (k - 1) + out_pad + 1
            continue
        if pad is None:
            shape[d] = size
            continue
        mode = getattr(m, "padding_mode", "zeros")
        if mode != "zeros" and pad:
            _pad_mode_limit(p, size, pad, pad, mode, axis)
        shape[d] = (size + 2 * pad - dil * (k - 1) - 1).floordiv(s) + 1
        p.need_positive(shape[d], size, desc, axis, max(1, dil * (k - 1) + 1 - 2 * pad))
    return x.like(shape, x.axes)


def _pad_mode_limit(p: Propagator, size: Poly, left: int, right: int, mode: str, axis: str) -> None:
    """Reflect padding needs pads smaller than the map; circular ones no larger than it."""
    name = p.name
    for pad in {left, right}:
        if pad <= 0 or mode not in ("reflect", "circular"):
            continue
        need = pad + 1 if mode == "reflect" else pad
        p.require(
            "min",
            size,
            ">=",
            need,
            _say(
                f"{name}: {mode} padding of {pad} needs at least {need} along {axis}, gets ", size
            ),
            need=need,
        )


def _pool_size(size: Poly, k: int, s: int, pad: int, dil: int, ceil_mode: bool) -> Poly:
    keff = dil * (k - 1) + 1
    if ceil_mode:
        return ceil_pool(size, 2 * pad - keff + s - 1, s, pad)
    return (size + 2 * pad - keff).floordiv(s) + 1


def _least_input(k: int, s: int, pad: int, dil: int, ceil_mode: bool) -> int:
    ev = Evaluator({})
    for n in range(1, dil * (k - 1) + 2):
        if ev.poly(_pool_size(Poly.of(n), k, s, pad, dil, ceil_mode)) >= 1:
            return n
    return dil * (k - 1) + 1


def _pool(
    p: Propagator,
    x: Any,
    rank: int,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    desc: str,
    indices: bool,
) -> Any:
    x = _tensor(x)
    _, first = _spatial_split(x, rank)
    ks = _ints(kernel, rank)
    ss = _ints(stride if stride not in (None, [], ()) else kernel, rank)
    ps, ds = _ints(padding, rank), _ints(dilation, rank)
    shape = list(x.shape)
    for i in range(rank):
        d = first + i
        size = x.shape[d]
        shape[d] = _pool_size(size, ks[i], ss[i], ps[i], ds[i], ceil_mode)
        need = _least_input(ks[i], ss[i], ps[i], ds[i], ceil_mode)
        p.need_positive(shape[d], size, desc, p.axis_of(x, d), need)
    out = x.like(shape, x.axes)
    return (out, out) if indices else out


def _pool_module(p: Propagator, m: nn.Module, x: Any, *_: Any, **__: Any) -> Any:
    rank = {"1d": 1, "2d": 2, "3d": 3}[type(m).__name__[-2:].lower()]
    return _pool(
        p,
        x,
        rank,
        m.kernel_size,
        m.stride,
        m.padding,
        getattr(m, "dilation", 1),
        bool(m.ceil_mode),
        describe_module(m),
        bool(getattr(m, "return_indices", False)),
    )


def _adaptive(x: Any, rank: int, output_size: Any, indices: bool) -> Any:
    x = _tensor(x)
    _, first = _spatial_split(x, rank)
    sizes = (
        [output_size] * rank
        if isinstance(output_size, int) or output_size is None
        else list(output_size)
    )
    shape = list(x.shape)
    for i, s in enumerate(sizes):
        if s is not None:
            shape[first + i] = Poly.of(s)
    out = x.like(shape, x.axes)
    return (out, out) if indices else out


def _adaptive_module(p: Propagator, m: nn.Module, x: Any, *_: Any, **__: Any) -> Any:
    rank = {"1d": 1, "2d": 2, "3d": 3}[type(m).__name__[-2:].lower()]
    return _adaptive(x, rank, m.output_size, bool(getattr(m, "return_indices", False)))


def _linear_features(p: Propagator, x: STensor, features: int, desc: str) -> None:
    name = p.name
    got = x.shape[-1]
    pattern = "flatten" if got.vars - {BATCH} else ""
    p.require(
        "features",
        got,
        "==",
        features,
        _say(f"{name}: {desc} received ", got, " features"),
        pattern=pattern,
    )


def _linear(p: Propagator, m: nn.Linear, x: Any, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    _linear_features(p, x, m.in_features, describe_module(m))
    return x.like((*x.shape[:-1], Poly.of(m.out_features)), (*x.axes[:-1], None))


def _same(p: Propagator, m: nn.Module, x: Any, *_: Any, **__: Any) -> STensor:
    return _tensor(x)


def _channels(p: Propagator, m: nn.Module, x: STensor, count: int) -> None:
    if x.ndim >= 2:
        p.equal_sizes(x.shape[1], Poly.of(count), f"{type(m).__name__} channels", kind="features")


def _more_than_one(p: Propagator, count: Poly, what: str) -> None:
    name = p.name
    p.require(
        "stats",
        count,
        "!=",
        1,
        _say(f"{name}: {what} needs more than 1 value, gets ", count),
    )


def _batch_norm(
    p: Propagator, m: nn.modules.batchnorm._BatchNorm, x: Any, *_: Any, **__: Any
) -> STensor:
    x = _tensor(x)
    _channels(p, m, x, m.num_features)
    if m.training or (m.running_mean is None and m.running_var is None):
        _more_than_one(
            p, x.shape[0] * _prod(x.shape[2:]), f"{type(m).__name__} in training mode (per channel)"
        )
    return x


def _instance_norm(
    p: Propagator, m: nn.modules.instancenorm._InstanceNorm, x: Any, *_: Any, **__: Any
) -> STensor:
    x = _tensor(x)
    if m.training or not m.track_running_stats:
        rank = {"1d": 1, "2d": 2, "3d": 3}[type(m).__name__[-2:].lower()]
        _more_than_one(p, _prod(x.shape[x.ndim - rank :]), f"{type(m).__name__} (spatially)")
    return x


def _group_norm(p: Propagator, m: nn.GroupNorm, x: Any, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    _channels(p, m, x, m.num_channels)
    count = (x.shape[0] * x.shape[1]).floordiv(m.num_groups) * _prod(x.shape[2:])
    _more_than_one(p, count, "GroupNorm (per group)")
    return x


def _normalized_shape(p: Propagator, x: STensor, shape: Sequence[int], desc: str) -> None:
    name = p.name
    for i, size in enumerate(shape):
        got = x.shape[x.ndim - len(shape) + i]
        p.require(
            "features",
            got,
            "==",
            int(size),
            _say(f"{name}: {desc} normalises over {size}, gets ", got),
            pattern="flatten" if got.vars - {BATCH} else "",
        )


def _layer_norm(p: Propagator, m: Any, x: Any, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    _normalized_shape(p, x, m.normalized_shape, type(m).__name__)
    return x


def _flatten_module(p: Propagator, m: nn.Flatten, x: Any, *_: Any, **__: Any) -> STensor:
    return _flatten(_tensor(x), m.start_dim, m.end_dim)


def _flatten(x: STensor, start: int = 0, end: int = -1) -> STensor:
    if x.ndim == 0:
        return x.like((Poly.of(1),), (None,))
    start, end = _dim(start, x.ndim), _dim(end, x.ndim)
    dims, axes = x.shape[start : end + 1], x.axes[start : end + 1]
    shape = (*x.shape[:start], _prod(dims), *x.shape[end + 1 :])
    new_axes = (*x.axes[:start], _merged_axis(dims, axes), *x.axes[end + 1 :])
    return x.like(shape, new_axes)


def _unflatten_module(p: Propagator, m: nn.Unflatten, x: Any, *_: Any, **__: Any) -> STensor:
    return _unflatten(p, _tensor(x), m.dim, m.unflattened_size)


def _unflatten(p: Propagator, x: STensor, dim: int, sizes: Sequence[Any]) -> STensor:
    dim = _dim(dim, x.ndim)
    target = [*x.shape[:dim], *sizes, *x.shape[dim + 1 :]]
    return _reshape(p, x, target, "unflatten")


def _upsample_module(p: Propagator, m: nn.Upsample, x: Any, *_: Any, **__: Any) -> STensor:
    return _interpolate(p, x, m.size, m.scale_factor)


def _interpolate(
    p: Propagator, x: Any, size: Any = None, scale_factor: Any = None, *_: Any, **__: Any
) -> STensor:
    x = _tensor(x)
    rank = x.ndim - 2
    shape = list(x.shape)
    name = p.name
    for i in range(rank):
        d = 2 + i
        if size is not None:
            out = Poly.of(size if not isinstance(size, (list, tuple)) else size[i])
        elif scale_factor is not None:
            scale = scale_factor if not isinstance(scale_factor, (list, tuple)) else scale_factor[i]
            out = scaled(x.shape[d], float(scale))
        else:
            raise Unsupported("interpolate without size or scale_factor")
        src = x.shape[d]
        need = 1
        if size is None:
            ev = Evaluator({})
            while need < 1 << 12 and ev.poly(scaled(Poly.of(need), float(scale))) < 1:
                need += 1
        p.require(
            "min",
            out,
            ">=",
            1,
            _say(f"{name}: interpolate gives an empty output (", src, " -> ", out, ")"),
            need=need,
        )
        shape[d] = out
    return x.like(shape, x.axes)


def _pad_module(p: Propagator, m: Any, x: Any, *_: Any, **__: Any) -> STensor:
    mode = {
        "Reflection": "reflect",
        "Replication": "replicate",
        "Circular": "circular",
    }.get(type(m).__name__.split("Pad")[0], "constant")
    return _pad(p, x, list(m.padding), mode)


def _pad(
    p: Propagator, x: Any, pad: Sequence[Any], mode: str = "constant", *_: Any, **__: Any
) -> STensor:
    x = _tensor(x)
    shape = list(x.shape)
    for j in range(len(pad) // 2):
        d = x.ndim - 1 - j
        left, right = Poly.of(pad[2 * j]), Poly.of(pad[2 * j + 1])
        if left.is_const and right.is_const:
            _pad_mode_limit(p, x.shape[d], left.const, right.const, mode, p.axis_of(x, d))
        shape[d] = x.shape[d] + left + right
    return x.like(shape, x.axes)


def _embedding_lookup(p: Propagator, x: Any, num: int, dim: int, desc: str) -> STensor:
    x = _tensor(x)
    if x.vmax is not None and x.vmax.vars - {BATCH}:
        name, top = p.name, x.vmax
        p.require(
            "index",
            top,
            "<=",
            num - 1,
            _say(f"{name}: {desc} has {num} rows, gets position ", top),
            pattern="posembed",
        )
    return STensor((*x.shape, Poly.of(dim)), (*x.axes, None))


def _embedding(p: Propagator, m: nn.Embedding, x: Any, *_: Any, **__: Any) -> STensor:
    return _embedding_lookup(p, x, m.num_embeddings, m.embedding_dim, describe_module(m))


def _attention(
    p: Propagator,
    m: nn.MultiheadAttention,
    query: Any,
    key: Any,
    value: Any,
    *_: Any,
    need_weights: bool = True,
    average_attn_weights: bool = True,
    **__: Any,
) -> Any:
    q, k, v = _tensor(query), _tensor(key), _tensor(value)
    seq = 1 if m.batch_first or q.ndim == 2 else 0
    p.equal_sizes(
        k.shape[seq if k.ndim == 3 else 0],
        v.shape[seq if v.ndim == 3 else 0],
        "attention keys and values",
    )
    out = q.like((*q.shape[:-1], Poly.of(m.embed_dim)), (*q.axes[:-1], None))
    if not need_weights:
        return (out, None)
    lq, lk = q.shape[seq if q.ndim == 3 else 0], k.shape[seq if k.ndim == 3 else 0]
    batch = [q.shape[0 if m.batch_first else 1]] if q.ndim == 3 else []
    heads = [] if average_attn_weights else [Poly.of(m.num_heads)]
    shape = [*batch, *heads, lq, lk]
    return (out, STensor(tuple(shape), (None,) * len(shape)))


def _first_input(p: Propagator, m: nn.Module, x: Any, *_: Any, **__: Any) -> STensor:
    return _tensor(x)


def _pixel_shuffle(p: Propagator, m: nn.PixelShuffle, x: Any, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    r = m.upscale_factor
    shape = list(x.shape)
    shape[-3] = shape[-3].floordiv(r * r)
    shape[-2], shape[-1] = shape[-2] * r, shape[-1] * r
    return x.like(shape, x.axes)


def _pixel_unshuffle(p: Propagator, m: nn.PixelUnshuffle, x: Any, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    r = m.downscale_factor
    shape = list(x.shape)
    name = p.name
    for d in (-2, -1):
        size = x.shape[d]
        p.require(
            "view",
            size,
            "%",
            0,
            _say(f"{name}: PixelUnshuffle({r}) needs sizes divisible by {r}, gets ", size),
            modulus=r,
        )
        shape[d] = size.floordiv(r)
    shape[-3] = shape[-3] * (r * r)
    return x.like(shape, x.axes)


def _elementwise_types() -> tuple[type, ...]:
    from torch.nn.modules import activation, dropout

    kinds = [
        t
        for mod in (activation, dropout)
        for t in vars(mod).values()
        if isinstance(t, type)
        and issubclass(t, nn.Module)
        and t not in (nn.MultiheadAttention, nn.Module)
    ]
    kinds += [nn.Identity, nn.LocalResponseNorm, nn.CrossMapLRN2d, nn.ChannelShuffle]
    return tuple(kinds)


_MODULE_RULES: list[tuple[type | tuple[type, ...], Rule]] = [
    (nn.modules.conv._ConvNd, _conv),
    (
        (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d),
        _pool_module,
    ),
    (
        (
            nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d,
            nn.AdaptiveAvgPool3d,
            nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d,
        ),
        _adaptive_module,
    ),
    (nn.Linear, _linear),
    (nn.modules.batchnorm._BatchNorm, _batch_norm),
    (nn.modules.instancenorm._InstanceNorm, _instance_norm),
    (nn.GroupNorm, _group_norm),
    ((nn.LayerNorm, nn.RMSNorm), _layer_norm),
    (nn.Flatten, _flatten_module),
    (nn.Unflatten, _unflatten_module),
    (nn.Upsample, _upsample_module),
    (
        (
            nn.modules.padding._ConstantPadNd,
            nn.modules.padding._ReflectionPadNd,
            nn.modules.padding._ReplicationPadNd,
            nn.modules.padding._CircularPadNd,
        ),
        _pad_module,
    ),
    (nn.Embedding, _embedding),
    (nn.MultiheadAttention, _attention),
    (
        (
            nn.TransformerEncoderLayer,
            nn.TransformerDecoderLayer,
            nn.TransformerEncoder,
            nn.TransformerDecoder,
        ),
        _first_input,
    ),
    (nn.PixelShuffle, _pixel_shuffle),
    (nn.PixelUnshuffle, _pixel_unshuffle),
    (_elementwise_types(), _same),
]


def _torchvision_rules() -> list[tuple[type | tuple[type, ...], Rule]]:
    import torchvision.ops

    def permute(p: Propagator, m: Any, x: Any, *_: Any, **__: Any) -> STensor:
        return _permute(p, x, *m.dims)

    def deform(p: Propagator, m: Any, x: Any, *_: Any, **__: Any) -> STensor:
        return _conv(p, m, x)

    return [
        (torchvision.ops.Permute, permute),
        (torchvision.ops.DeformConv2d, deform),
        (
            (
                torchvision.ops.StochasticDepth,
                torchvision.ops.FrozenBatchNorm2d,
                torchvision.ops.DropBlock2d,
                torchvision.ops.DropBlock3d,
            ),
            _same,
        ),
    ]


_MODULE_RULES += _torchvision_rules()


# -- size rules: functions and methods -------------------------------------------------------


def _scalar(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if not isinstance(a, Poly) and not isinstance(b, Poly):
        return fn(a, b)
    if isinstance(a, float) or isinstance(b, float) or a is None or b is None:
        raise Unsupported("float arithmetic on a size")
    x, y = Poly.of(a), Poly.of(b)
    if fn is operator.add:
        return x + y
    if fn is operator.sub:
        return x - y
    if fn is operator.mul:
        return x * y
    if fn in (operator.floordiv, operator.mod) and y.is_const and y.const > 0:
        return x.floordiv(y.const) if fn is operator.floordiv else x.mod(y.const)
    raise Unsupported(f"{fn.__name__} of sizes")


def _binary(fn: Callable[[Any, Any], Any]) -> Rule:
    def rule(p: Propagator, a: Any, b: Any = None, *_: Any, **__: Any) -> Any:
        tensors = [v for v in (a, b) if isinstance(v, STensor)]
        if tensors:
            return p.broadcast(tensors, fn.__name__)
        return _scalar(fn, a, b)

    return rule


def _compare_rule(rel: str, fn: Callable[[Any, Any], Any]) -> Rule:
    def rule(p: Propagator, a: Any, b: Any, *_: Any, **__: Any) -> Any:
        if isinstance(a, STensor) or isinstance(b, STensor):
            tensors = [v for v in (a, b) if isinstance(v, STensor)]
            return p.broadcast(tensors, fn.__name__)
        if isinstance(a, Poly) or isinstance(b, Poly):
            x, y = Poly.of(a), Poly.of(b)
            if not (x - y).vars:
                return fn(x.const, y.const)
            return Pred(x, rel, y)
        return fn(a, b)

    return rule


def _assert(p: Propagator, cond: Any, message: Any = "", *_: Any, **__: Any) -> None:
    if isinstance(cond, Pred):
        name = p.name
        lhs, rhs, rel = cond.lhs, cond.rhs, cond.rel
        if rel in ("<", ">"):
            rhs, rel = rhs + (-1 if rel == "<" else 1), rel + "="
        p.require(
            "assert",
            lhs,
            rel,
            rhs,
            _say(f"{name}: torch._assert requires {cond.lhs} {cond.rel} {cond.rhs}, gets ", lhs),
        )
    elif cond is False:
        name = p.name
        p.require("assert", 0, "==", 1, _say(f"{name}: torch._assert fails: {message}"))


def _getattr(p: Propagator, obj: Any, attr: str, *default: Any) -> Any:
    if isinstance(obj, STensor):
        if attr == "shape":
            return obj.shape
        if attr == "ndim":
            return obj.ndim
        if attr in ("T", "mT") and obj.ndim >= 2:
            return _transpose(p, obj, -2, -1)
        value = p.observed.get(p.node)
        if value is None or isinstance(value, torch.Tensor):
            raise Unsupported(f"tensor attribute {attr}")
        return value
    return getattr(obj, attr, *default)


def _getitem(p: Propagator, obj: Any, index: Any) -> Any:
    if isinstance(obj, STensor):
        return _index(p, obj, index)
    if isinstance(index, Poly):
        raise Unsupported("indexing with a size")
    return obj[index]


def _clip_index(value: Any, size: Poly) -> Poly:
    v = Poly.of(value)
    if v.is_const and v.const < 0:
        return poly_max(size + v, Poly.of(0))
    return poly_min(v, size)


def _index(p: Propagator, x: STensor, index: Any) -> STensor:
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(it, (STensor, bool, list)) for it in items):
        raise Unsupported("advanced indexing")
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (x.ndim - consumed)
    shape: list[Poly] = []
    axes: list[str | None] = []
    d = 0
    name = p.name
    for it in items:
        if it is None:
            shape.append(Poly.of(1))
            axes.append(None)
            continue
        size = x.shape[d]
        if isinstance(it, (int, Poly)):
            i = Poly.of(it)
            if size.vars - {BATCH} and i.is_const:
                least = i.const + 1 if i.const >= 0 else -i.const
                p.require(
                    "min",
                    size,
                    ">=",
                    least,
                    _say(f"{name}: index {i} is out of range for size ", size),
                    need=least,
                )
            d += 1
            continue
        if not isinstance(it, slice):
            raise Unsupported(f"index {type(it).__name__}")
        step = 1 if it.step is None else it.step
        if not isinstance(step, int) or step < 1:
            raise Unsupported("a slice with a varying or negative step")
        start = Poly.of(0) if it.start is None else _clip_index(it.start, size)
        stop = size if it.stop is None else _clip_index(it.stop, size)
        length = stop if start.is_const and start.const == 0 else poly_max(stop - start, Poly.of(0))
        shape.append((length + step - 1).floordiv(step))
        axes.append(x.axes[d])
        d += 1
    shape += list(x.shape[d:])
    axes += list(x.axes[d:])
    return STensor(tuple(shape), tuple(axes), x.vmax, x.param)


def _sizes_arg(args: Sequence[Any]) -> list[Any]:
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return list(args)


def _reshape(p: Propagator, x: STensor, target: Sequence[Any], what: str) -> STensor:
    sizes = [Poly.of(t) for t in target]
    total = _prod(x.shape)
    infer = [i for i, t in enumerate(sizes) if t.is_const and t.const == -1]
    if len(infer) > 1:
        raise Unsupported("a view with two -1")
    known = _prod(t for i, t in enumerate(sizes) if i not in infer)
    name = p.name
    text = "(" + ", ".join(str(t) if isinstance(t, int) else "*" for t in target) + ")"
    hard = "view" if not (known.vars - {BATCH}) else "merge"
    if infer:
        inferred = total.exact_div(known)
        if inferred is None:
            if not known.is_const:
                raise Unsupported(f"{what} with a varying size and -1")
            p.require(
                "view",
                total,
                "%",
                0,
                _say(
                    f"{name}: {what}{text} cannot split ",
                    total,
                    f" elements into rows of {known.const}",
                ),
                modulus=known.const,
            )
            inferred = total.floordiv(known.const)
        sizes[infer[0]] = inferred
    elif total != known:
        p.require(
            hard,
            total,
            "==",
            known,
            _say(f"{name}: {what}{text} needs ", known, " elements, gets ", total),
        )
    axes = _regroup_axes(p, x, sizes)
    return STensor(tuple(sizes), tuple(axes), x.vmax, x.param)


def _regroup_axes(p: Propagator, x: STensor, out: Sequence[Poly]) -> list[str | None]:
    """Which input axes each dim of a reshape follows, grouping dims with equal products."""
    axes: list[str | None] = [None] * len(out)

    def value(d: Poly) -> int | None:
        try:
            return p.ev0.poly(d)
        except Unknown:
            return None

    i = j = 0
    while i < x.ndim and j < len(out):
        gi, gj = [i], [j]
        a, b = x.shape[i], out[j]
        while a != b:
            va, vb = value(a), value(b)
            if va is None or vb is None:
                return axes
            if va < vb and gi[-1] + 1 < x.ndim:
                gi.append(gi[-1] + 1)
                a = a * x.shape[gi[-1]]
            elif vb < va and gj[-1] + 1 < len(out):
                gj.append(gj[-1] + 1)
                b = b * out[gj[-1]]
            else:
                break
        if a != b and value(a) != value(b):
            return axes
        merged = _merged_axis([x.shape[k] for k in gi], [x.axes[k] for k in gi])
        if len(gj) == 1:
            axes[gj[0]] = merged if a == b else None
        elif len(gi) == 1:
            for k in gj:
                axes[k] = x.axes[gi[0]] if out[k] == x.shape[gi[0]] else None
        i, j = gi[-1] + 1, gj[-1] + 1
    return axes


def _view(p: Propagator, x: Any, *shape: Any, **__: Any) -> STensor:
    x = _tensor(x)
    if shape and isinstance(shape[0], torch.dtype):
        raise Unsupported("view as another dtype")
    return _reshape(p, x, _sizes_arg(shape), "view")


def _reshape_rule(p: Propagator, x: Any, *shape: Any, **kwargs: Any) -> STensor:
    x = _tensor(x)
    target = _sizes_arg(shape) if shape else list(kwargs["shape"])
    return _reshape(p, x, target, "reshape")


def _like(p: Propagator, x: Any, other: Any, *_: Any, **__: Any) -> STensor:
    other = _tensor(other)
    return _reshape(p, _tensor(x), list(other.shape), "view_as")


def _permute(p: Propagator, x: Any, *dims: Any, **kwargs: Any) -> STensor:
    x = _tensor(x)
    order = [_dim(int(d), x.ndim) for d in (_sizes_arg(dims) if dims else kwargs["dims"])]
    return x.like([x.shape[d] for d in order], [x.axes[d] for d in order])


def _transpose(p: Propagator, x: Any, d0: int = 0, d1: int = 1, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    order = list(range(x.ndim))
    a, b = _dim(d0, x.ndim), _dim(d1, x.ndim)
    order[a], order[b] = order[b], order[a]
    return x.like([x.shape[d] for d in order], [x.axes[d] for d in order])


def _identity(p: Propagator, x: Any, *_: Any, **__: Any) -> Any:
    return _tensor(x)


def _elementwise(p: Propagator, *args: Any, **kwargs: Any) -> STensor:
    tensors = _flat_args((args, kwargs))
    if not tensors:
        raise Unsupported("an op without tensors")
    return p.broadcast(tensors, op_label(p.node))


def _unsqueeze(p: Propagator, x: Any, dim: int, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    d = dim + x.ndim + 1 if dim < 0 else dim
    return STensor(
        (*x.shape[:d], Poly.of(1), *x.shape[d:]), (*x.axes[:d], None, *x.axes[d:]), x.vmax, x.param
    )


def _squeeze(p: Propagator, x: Any, dim: Any = None, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    if dim is None:
        dims = set(range(x.ndim))
    elif isinstance(dim, (list, tuple)):
        dims = {_dim(d, x.ndim) for d in dim}
    else:
        dims = {_dim(dim, x.ndim)}
    keep = []
    name = p.name
    for d in range(x.ndim):
        size = x.shape[d]
        if d in dims and size.vars - {BATCH}:
            p.require(
                "squeeze",
                size,
                ">=",
                2,
                _say(f"{name}: squeeze drops a dim of size ", size),
                need=2,
            )
        if d not in dims or size.vars or size.const != 1:
            keep.append(d)
    return STensor(tuple(x.shape[d] for d in keep), tuple(x.axes[d] for d in keep), x.vmax, x.param)


def _size(p: Propagator, x: Any, dim: Any = None, *_: Any, **__: Any) -> Any:
    x = _tensor(x)
    return x.shape if dim is None else x.shape[_dim(dim, x.ndim)]


def _ndim(p: Propagator, x: Any, *_: Any, **__: Any) -> int:
    return _tensor(x).ndim


def _numel(p: Propagator, x: Any, *_: Any, **__: Any) -> Poly:
    return _prod(_tensor(x).shape)


def _expand(p: Propagator, x: Any, *sizes: Any, **__: Any) -> STensor:
    x = _tensor(x)
    target = [Poly.of(s) for s in _sizes_arg(sizes)]
    lead = len(target) - x.ndim
    shape, axes = [], []
    for i, t in enumerate(target):
        src = x.shape[i - lead] if i >= lead else None
        axis = x.axes[i - lead] if i >= lead else None
        if src is None or (t.is_const and t.const == -1):
            shape.append(src if src is not None else t)
        else:
            if not (src.is_const and src.const == 1):
                p.equal_sizes(src, t, f"expand dim {i}")
            shape.append(t)
        axes.append(axis)
    return STensor(tuple(shape), tuple(axes), x.vmax, x.param)


def _expand_as(p: Propagator, x: Any, other: Any, *_: Any, **__: Any) -> STensor:
    return _expand(p, x, *_tensor(other).shape)


def _repeat(p: Propagator, x: Any, *sizes: Any, **__: Any) -> STensor:
    x = _tensor(x)
    reps = [Poly.of(s) for s in _sizes_arg(sizes)]
    lead = len(reps) - x.ndim
    shape = [r if i < lead else x.shape[i - lead] * r for i, r in enumerate(reps)]
    axes = [None if i < lead else x.axes[i - lead] for i in range(len(reps))]
    return STensor(tuple(shape), tuple(axes), x.vmax, x.param)


def _reduce(
    p: Propagator, x: Any, dim: Any = None, keepdim: bool = False, *_: Any, **kwargs: Any
) -> Any:
    x = _tensor(x)
    dim = kwargs.get("axis", dim)
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return STensor((), ())
    dims = {_dim(d, x.ndim) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
    keepdim = bool(kwargs.get("keepdim", keepdim))
    shape = [
        Poly.of(1) if d in dims else s for d, s in enumerate(x.shape) if keepdim or d not in dims
    ]
    axes = [None if d in dims else a for d, a in enumerate(x.axes) if keepdim or d not in dims]
    out = STensor(tuple(shape), tuple(axes))
    method = op_label(p.node)
    if method in ("max", "min", "median", "mode", "sort", "topk", "kthvalue"):
        return (out, out)
    return out


def _cat(p: Propagator, tensors: Any, dim: int = 0, *_: Any, **kwargs: Any) -> STensor:
    parts = [_tensor(t) for t in tensors]
    dim = _dim(kwargs.get("axis", dim), parts[0].ndim)
    first = parts[0]
    shape, axes = list(first.shape), list(first.axes)
    for t in parts[1:]:
        for d in range(first.ndim):
            if d != dim:
                p.equal_sizes(shape[d], t.shape[d], f"cat needs equal sizes in dim {d}")
                axes[d] = axes[d] or t.axes[d]
        shape[dim] = shape[dim] + t.shape[dim]
    axes[dim] = None
    return STensor(tuple(shape), tuple(axes))


def _stack(p: Propagator, tensors: Any, dim: int = 0, *_: Any, **__: Any) -> STensor:
    parts = [_tensor(t) for t in tensors]
    first = parts[0]
    for t in parts[1:]:
        for d in range(first.ndim):
            p.equal_sizes(first.shape[d], t.shape[d], f"stack needs equal sizes in dim {d}")
    dim = dim + first.ndim + 1 if dim < 0 else dim
    return STensor(
        (*first.shape[:dim], Poly.of(len(parts)), *first.shape[dim:]),
        (*first.axes[:dim], None, *first.axes[dim:]),
    )


def _chunks(p: Propagator, x: Any, count: int, dim: int = 0, *_: Any, **__: Any) -> Any:
    x = _tensor(x)
    d = _dim(dim, x.ndim)
    size = x.shape[d]
    if size.vars:
        raise Unsupported("chunk along a varying dim")
    if op_label(p.node) == "chunk":
        step = -(-size.const // count)
        pieces = [min(step, size.const - s) for s in range(0, size.const, step)]
    else:
        parts = count if isinstance(count, (list, tuple)) else None
        pieces = (
            list(parts)
            if parts
            else [min(count, size.const - s) for s in range(0, size.const, count)]
        )
    return tuple(x.like([*x.shape[:d], Poly.of(n), *x.shape[d + 1 :]], x.axes) for n in pieces)


def _unbind(p: Propagator, x: Any, dim: int = 0, *_: Any, **__: Any) -> Any:
    x = _tensor(x)
    d = _dim(dim, x.ndim)
    if x.shape[d].vars:
        raise Unsupported("unbind along a varying dim")
    part = STensor((*x.shape[:d], *x.shape[d + 1 :]), (*x.axes[:d], *x.axes[d + 1 :]))
    return tuple(part for _ in range(x.shape[d].const))


def _matmul(p: Propagator, a: Any, b: Any, *_: Any, **__: Any) -> STensor:
    a, b = _tensor(a), _tensor(b)
    if a.ndim < 1 or b.ndim < 1:
        raise Unsupported("matmul of scalars")
    inner_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    got = a.shape[-1]
    name = p.name
    if got != inner_b:
        kind = "merge" if got.vars - {BATCH} and inner_b.vars - {BATCH} else "features"
        p.require(
            kind,
            got,
            "==",
            inner_b,
            _say(f"{name}: matmul needs ", inner_b, " columns, gets ", got),
            pattern="flatten" if kind == "features" else "",
        )
    left = a.shape[:-1]
    right = [b.shape[-1]] if b.ndim >= 2 else []
    batch_a = STensor(a.shape[:-2], a.axes[:-2]) if a.ndim > 2 else None
    batch_b = STensor(b.shape[:-2], b.axes[:-2]) if b.ndim > 2 else None
    if batch_a is not None and batch_b is not None:
        batch = p.broadcast([batch_a, batch_b], "matmul")
        rows = [a.shape[-2]] if a.ndim >= 2 else []
        shape = [*batch.shape, *rows, *right]
        axes = [*batch.axes, *([a.axes[-2]] if a.ndim >= 2 else []), *([None] * len(right))]
    elif batch_b is not None:
        rows = [a.shape[-2]] if a.ndim >= 2 else []
        shape = [*b.shape[:-2], *rows, *right]
        axes = [*b.axes[:-2], *([a.axes[-2]] if a.ndim >= 2 else []), *([None] * len(right))]
    else:
        shape = [*left, *right]
        axes = [*a.axes[:-1], *([None] * len(right))]
    return STensor(tuple(shape), tuple(axes))


def _linear_fn(p: Propagator, x: Any, weight: Any, *_: Any, **__: Any) -> STensor:
    x, w = _tensor(x), _tensor(weight)
    features = w.shape[-1]
    if features.vars:
        raise Unsupported("a linear with a varying weight")
    _linear_features(p, x, features.const, f"linear({features.const} -> {w.shape[0]})")
    return STensor((*x.shape[:-1], w.shape[0]), (*x.axes[:-1], None))


def _conv_fn(
    p: Propagator,
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *_: Any,
    **__: Any,
) -> STensor:
    x, w = _tensor(x), _tensor(weight)
    rank = w.ndim - 2
    if any(d.vars for d in w.shape) or isinstance(padding, str):
        raise Unsupported("a functional conv with varying weights or string padding")
    ch, first = _spatial_split(x, rank)
    ks = [d.const for d in w.shape[2:]]
    ss, ps, ds = _ints(stride, rank), _ints(padding, rank), _ints(dilation, rank)
    shape = list(x.shape)
    shape[ch] = w.shape[0]
    for i in range(rank):
        d = first + i
        size = x.shape[d]
        shape[d] = (size + 2 * ps[i] - ds[i] * (ks[i] - 1) - 1).floordiv(ss[i]) + 1
        p.need_positive(
            shape[d],
            size,
            f"conv{rank}d(kernel {tuple(ks)})",
            p.axis_of(x, d),
            max(1, ds[i] * (ks[i] - 1) + 1 - 2 * ps[i]),
        )
    return x.like(shape, x.axes)


def _pool_fn(rank: int, kind: str) -> Rule:
    def rule(
        p: Propagator,
        x: Any,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        *rest: Any,
        **kwargs: Any,
    ) -> Any:
        if kind == "max":
            dilation = rest[0] if rest else kwargs.get("dilation", 1)
            ceil_mode = rest[1] if len(rest) > 1 else kwargs.get("ceil_mode", False)
            indices = rest[2] if len(rest) > 2 else kwargs.get("return_indices", False)
        else:
            dilation, indices = 1, False
            ceil_mode = rest[0] if rest else kwargs.get("ceil_mode", False)
        desc = f"{kind}_pool{rank}d({kernel_size}, {stride or kernel_size})"
        return _pool(
            p, x, rank, kernel_size, stride, padding, dilation, bool(ceil_mode), desc, bool(indices)
        )

    return rule


def _adaptive_fn(rank: int) -> Rule:
    def rule(
        p: Propagator, x: Any, output_size: Any, return_indices: bool = False, *_: Any, **__: Any
    ) -> Any:
        return _adaptive(x, rank, output_size, bool(return_indices))

    return rule


def _pad_fn(p: Propagator, x: Any, pad: Any, mode: str = "constant", *_: Any, **__: Any) -> STensor:
    return _pad(p, x, list(pad), mode)


def _layer_norm_fn(p: Propagator, x: Any, normalized_shape: Any, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    shape = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    if any(isinstance(s, Poly) and s.vars for s in shape):
        return x
    _normalized_shape(p, x, [int(Poly.of(s).const) for s in shape], "layer_norm")
    return x


def _batch_norm_fn(p: Propagator, x: Any, *args: Any, **kwargs: Any) -> STensor:
    x = _tensor(x)
    training = args[4] if len(args) > 4 else kwargs.get("training", False)
    if training:
        _more_than_one(p, x.shape[0] * _prod(x.shape[2:]), "batch_norm in training mode")
    return x


def _group_norm_fn(p: Propagator, x: Any, num_groups: int, *_: Any, **__: Any) -> STensor:
    x = _tensor(x)
    count = (x.shape[0] * x.shape[1]).floordiv(num_groups) * _prod(x.shape[2:])
    _more_than_one(p, count, "group_norm (per group)")
    return x


def _embedding_fn(p: Propagator, x: Any, weight: Any, *_: Any, **__: Any) -> STensor:
    w = _tensor(weight)
    if any(d.vars for d in w.shape):
        raise Unsupported("an embedding with a varying table")
    num, dim = w.shape[0].const, w.shape[1].const
    return _embedding_lookup(p, x, num, dim, f"embedding({num}, {dim})")


def _arange(p: Propagator, *args: Any, **kwargs: Any) -> STensor:
    values = [a for a in args if isinstance(a, (int, Poly))]
    if "end" in kwargs:
        values = [*values, kwargs["end"]] if values else [0, kwargs["end"]]
    if "start" in kwargs:
        values = [kwargs["start"], *values]
    start, end, step = (
        (0, values[0], 1)
        if len(values) == 1
        else (values[0], values[1], values[2] if len(values) > 2 else 1)
    )
    if not isinstance(step, int) or step <= 0:
        raise Unsupported("arange with a varying or negative step")
    s, e = Poly.of(start), Poly.of(end)
    length = (e - s + step - 1).floordiv(step)
    return STensor((length,), (None,), s + (length - 1) * step)


def _factory(p: Propagator, *size: Any, **kwargs: Any) -> STensor:
    dims = _sizes_arg(size) if size else list(kwargs.get("size", ()))
    if dims and isinstance(dims[-1], float):
        dims = dims[:-1]  # torch.full(size, value)
    shape = tuple(Poly.of(d) for d in dims)
    return STensor(shape, (None,) * len(shape))


def _full(p: Propagator, size: Any, *_: Any, **__: Any) -> STensor:
    return _factory(p, *list(size))


def _new_factory(p: Propagator, x: Any, *size: Any, **kwargs: Any) -> STensor:
    return _factory(p, *size, **kwargs)


def _sdpa(p: Propagator, q: Any, k: Any, v: Any, *_: Any, **__: Any) -> STensor:
    q, k, v = _tensor(q), _tensor(k), _tensor(v)
    p.equal_sizes(k.shape[-2], v.shape[-2], "attention keys and values")
    return STensor((*q.shape[:-1], v.shape[-1]), (*q.axes[:-1], None))


def _einsum(p: Propagator, equation: Any, *operands: Any, **__: Any) -> STensor:
    tensors = [_tensor(t) for t in _sizes_arg(operands)]
    spec = str(equation).replace(" ", "")
    if "..." in spec or "->" not in spec:
        raise Unsupported("einsum with an ellipsis or an implicit output")
    inputs, output = spec.split("->")
    sizes: dict[str, tuple[Poly, str | None]] = {}
    for letters, t in zip(inputs.split(","), tensors, strict=True):
        if len(letters) != t.ndim:
            raise Unsupported("einsum operand of another rank")
        for letter, d, ax in zip(letters, t.shape, t.axes, strict=True):
            if letter in sizes:
                if not (d.is_const and d.const == 1):
                    p.equal_sizes(sizes[letter][0], d, f"einsum index {letter}")
            else:
                sizes[letter] = (d, ax)
    return STensor(tuple(sizes[c][0] for c in output), tuple(sizes[c][1] for c in output))


def _math_identity(p: Propagator, x: Any, *_: Any, **__: Any) -> Any:
    if isinstance(x, Poly):
        return x
    raise Unsupported("math on a non-size")


def _function_rules() -> dict[Any, Rule]:
    import torch.nn.functional as F

    rules: dict[Any, Rule] = {
        operator.add: _binary(operator.add),
        operator.iadd: _binary(operator.add),
        operator.sub: _binary(operator.sub),
        operator.isub: _binary(operator.sub),
        operator.mul: _binary(operator.mul),
        operator.imul: _binary(operator.mul),
        operator.truediv: _binary(operator.truediv),
        operator.floordiv: _binary(operator.floordiv),
        operator.mod: _binary(operator.mod),
        operator.pow: _binary(operator.pow),
        operator.matmul: _matmul,
        operator.neg: lambda p, x: _elementwise(p, x) if isinstance(x, STensor) else -x,
        operator.eq: _compare_rule("==", operator.eq),
        operator.ne: _compare_rule("!=", operator.ne),
        operator.ge: _compare_rule(">=", operator.ge),
        operator.le: _compare_rule("<=", operator.le),
        operator.gt: _compare_rule(">", operator.gt),
        operator.lt: _compare_rule("<", operator.lt),
        operator.getitem: _getitem,
        getattr: _getattr,
        torch._assert: _assert,
        torch.flatten: lambda p, x, start_dim=0, end_dim=-1: _flatten(
            _tensor(x), start_dim, end_dim
        ),
        torch.cat: _cat,
        torch.concat: _cat,
        torch.concatenate: _cat,
        torch.stack: _stack,
        torch.reshape: _reshape_rule,
        torch.permute: _permute,
        torch.transpose: _transpose,
        torch.swapaxes: _transpose,
        torch.unsqueeze: _unsqueeze,
        torch.squeeze: _squeeze,
        torch.matmul: _matmul,
        torch.bmm: _matmul,
        torch.mm: _matmul,
        torch.arange: _arange,
        torch.zeros: _factory,
        torch.ones: _factory,
        torch.empty: _factory,
        torch.randn: _factory,
        torch.rand: _factory,
        torch.full: _full,
        torch.chunk: _chunks,
        torch.split: _chunks,
        torch.unbind: _unbind,
        torch.einsum: _einsum,
        F.linear: _linear_fn,
        F.layer_norm: _layer_norm_fn,
        F.batch_norm: _batch_norm_fn,
        F.group_norm: _group_norm_fn,
        F.embedding: _embedding_fn,
        F.pad: _pad_fn,
        F.interpolate: _interpolate,
        F.upsample: _interpolate,
        F.scaled_dot_product_attention: _sdpa,
        F.conv1d: _conv_fn,
        F.conv2d: _conv_fn,
        F.conv3d: _conv_fn,
        F.adaptive_avg_pool1d: _adaptive_fn(1),
        F.adaptive_avg_pool2d: _adaptive_fn(2),
        F.adaptive_avg_pool3d: _adaptive_fn(3),
        F.adaptive_max_pool1d: _adaptive_fn(1),
        F.adaptive_max_pool2d: _adaptive_fn(2),
        F.adaptive_max_pool3d: _adaptive_fn(3),
        F.max_pool1d: _pool_fn(1, "max"),
        F.max_pool2d: _pool_fn(2, "max"),
        F.max_pool3d: _pool_fn(3, "max"),
        F.avg_pool1d: _pool_fn(1, "avg"),
        F.avg_pool2d: _pool_fn(2, "avg"),
        F.avg_pool3d: _pool_fn(3, "avg"),
        math.floor: _math_identity,
        math.ceil: _math_identity,
        int: _math_identity,
    }
    for reduce_name in (
        "mean",
        "sum",
        "amax",
        "amin",
        "max",
        "min",
        "std",
        "var",
        "prod",
        "argmax",
        "argmin",
        "logsumexp",
        "norm",
        "all",
        "any",
    ):
        rules[getattr(torch, reduce_name)] = _reduce
    elementwise = [
        "relu",
        "relu_",
        "sigmoid",
        "tanh",
        "exp",
        "log",
        "abs",
        "sqrt",
        "rsqrt",
        "neg",
        "sign",
        "erf",
        "clamp",
        "clip",
        "sin",
        "cos",
        "softmax",
        "log_softmax",
        "dropout",
        "pow",
        "add",
        "sub",
        "mul",
        "div",
        "true_divide",
        "maximum",
        "minimum",
        "where",
        "zeros_like",
        "ones_like",
        "empty_like",
        "rand_like",
        "randn_like",
        "full_like",
        "roll",
        "flip",
        "cumsum",
        "nan_to_num",
        "square",
        "channel_shuffle",
        "sigmoid_",
        "masked_fill",
        "clamp_min",
        "clamp_max",
        "exp_",
        "floor",
        "ceil",
        "round",
    ]
    for fn_name in elementwise:
        rules[getattr(torch, fn_name)] = _elementwise
    for fn_name in (
        "relu",
        "relu6",
        "elu",
        "selu",
        "celu",
        "gelu",
        "silu",
        "mish",
        "hardswish",
        "hardsigmoid",
        "hardtanh",
        "leaky_relu",
        "sigmoid",
        "tanh",
        "softmax",
        "log_softmax",
        "softmin",
        "softplus",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "normalize",
        "prelu",
        "local_response_norm",
        "threshold",
        "logsigmoid",
        "tanhshrink",
        "softsign",
        "relu_",
        "instance_norm",
    ):
        rules[getattr(F, fn_name)] = _elementwise
    for name in ("hardswish", "hardsigmoid", "relu6", "gelu", "silu", "leaky_relu", "elu"):
        fn = getattr(torch._C._nn, name, None)
        if fn is not None:
            rules[fn] = _elementwise
    import torchvision.ops

    rules[torchvision.ops.stochastic_depth] = _elementwise
    return rules


_FUNCTION_RULES = _function_rules()


def _method_rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {
        "size": _size,
        "dim": _ndim,
        "ndimension": _ndim,
        "numel": _numel,
        "nelement": _numel,
        "view": _view,
        "reshape": _reshape_rule,
        "view_as": _like,
        "reshape_as": _like,
        "flatten": lambda p, x, start_dim=0, end_dim=-1: _flatten(_tensor(x), start_dim, end_dim),
        "unflatten": lambda p, x, dim, sizes: _unflatten(p, _tensor(x), dim, sizes),
        "permute": _permute,
        "transpose": _transpose,
        "swapaxes": _transpose,
        "t": lambda p, x: _transpose(p, x, 0, 1),
        "unsqueeze": _unsqueeze,
        "squeeze": _squeeze,
        "expand": _expand,
        "expand_as": _expand_as,
        "repeat": _repeat,
        "chunk": _chunks,
        "split": _chunks,
        "unbind": _unbind,
        "matmul": _matmul,
        "bmm": _matmul,
        "mm": _matmul,
        "new_zeros": _new_factory,
        "new_ones": _new_factory,
        "new_empty": _new_factory,
        "new_full": lambda p, x, size, *_, **__: _factory(p, *list(size)),
        "__getitem__": _getitem,
        "to": _identity,
        "type": _identity,
        "type_as": _identity,
    }
    for name in (
        "mean",
        "sum",
        "amax",
        "amin",
        "max",
        "min",
        "std",
        "var",
        "prod",
        "argmax",
        "argmin",
        "logsumexp",
        "norm",
        "all",
        "any",
        "median",
    ):
        rules[name] = _reduce
    for name in (
        "contiguous",
        "clone",
        "detach",
        "float",
        "half",
        "double",
        "int",
        "long",
        "bool",
        "cpu",
        "cuda",
        "requires_grad_",
        "relu",
        "relu_",
        "sigmoid",
        "sigmoid_",
        "tanh",
        "exp",
        "log",
        "abs",
        "sqrt",
        "rsqrt",
        "neg",
        "softmax",
        "log_softmax",
        "clamp",
        "clamp_",
        "clamp_min",
        "clip",
        "masked_fill",
        "masked_fill_",
        "add",
        "add_",
        "sub",
        "sub_",
        "mul",
        "mul_",
        "div",
        "div_",
        "pow",
        "fill_",
        "zero_",
        "sign",
        "erf",
        "floor",
        "ceil",
        "round",
        "roll",
        "flip",
        "cumsum",
        "square",
        "sin",
        "cos",
        "normal_",
        "uniform_",
        "bernoulli_",
        "bernoulli",
        "maximum",
        "minimum",
        "where",
        "hardswish",
        "gelu",
        "sigmoid",
        "nan_to_num",
    ):
        rules[name] = _elementwise
    return rules


_METHOD_RULES = _method_rules()


# -- solving: the set of sizes each constraint allows -----------------------------------------

LIMIT = 1 << 16  # largest period or threshold handled exactly
SEARCH_TOP = 1 << 40  # monotone searches look this far


def _k_solve(v0: int, step: int, rel: str) -> KRanges:
    """The k >= 0 with `v0 + k * step  rel  0`."""
    if rel == "<=":
        v0, step, rel = -v0, -step, ">="
    if step == 0:
        return [(0, None)] if _compare(v0, rel, 0) else []
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
            if step > 0 and d0 < 0:
                k = -(d0 // step)
            elif step < 0 and d0 > 0:
                k = -(-d0 // step)
            settled = max(settled, n + k * period)
        return period, settled

    # -- sets ---------------------------------------------------------------------------
    def allowed(self, c: Constraint) -> IntSet | None:
        """Exactly the n at which `c` holds, or None when its sizes are not quasi-linear."""
        if c.opaque:
            return None
        result: IntSet | None = None
        for part in [c, *c.alternatives]:
            found = self._allowed_one(part)
            if found is None:
                return None
            result = found if result is None else result.union(found)
        return result

    def _allowed_one(self, c: Constraint) -> IntSet | None:
        found = self.period(c.expr)
        if found is None:
            return None
        period, start = found
        if c.rel == "%":
            period *= c.modulus
            if period > LIMIT:
                return None
        prefix: list[tuple[int, int]] = []
        for n in range(1, start):
            if _compare(self.value(c.expr, n), c.rel, c.modulus):
                if prefix and prefix[-1][1] + 1 == n:
                    prefix[-1] = (prefix[-1][0], n)
                else:
                    prefix.append((n, n))
        classes: list[KRanges] = []
        for r in range(period):
            v0 = self.value(c.expr, start + r)
            if c.rel == "%":
                classes.append([(0, None)] if v0 % c.modulus == 0 else [])
                continue
            step = self.value(c.expr, start + r + period) - v0
            classes.append(_k_solve(v0, step, c.rel))
        return IntSet(start, prefix, period, classes).simplify()

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
                found = self._monotone(c, accepted)
            except Unknown:
                found = None
            if found is None:
                left_out.append(c)
            else:
                accepted = accepted.intersect(found)
        return accepted, left_out

    def _monotone(self, c: Constraint, within: IntSet) -> IntSet | None:
        """For sizes that are not quasi-linear (products of two varying sizes) but monotone:
        the interval where `c` holds, found by search from the least size still in play."""
        low = within.first()
        if c.alternatives or low is None or c.rel == "%" or c.opaque:
            return None
        sign = _monotone_sign(c.expr, self.vary, self.ev(low))
        if sign == 0:
            return None

        def f(n: int) -> int:
            return sign * self.value(c.expr, n)

        rel = c.rel if sign > 0 else {">=": "<=", "<=": ">="}.get(c.rel, c.rel)
        reach = _first_true(lambda n: f(n) >= 0, low)  # first n with f(n) >= 0
        over = _first_true(lambda n: f(n) > 0, low)  # first n with f(n) > 0
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


def _first_true(pred: Callable[[int], bool], low: int) -> int | None:
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


def _monotone_sign(poly: Poly, vary: frozenset[str], low: Evaluator) -> int:
    """+1 if poly never decreases as n grows from the size `low` evaluates at, -1 if it never
    increases, 0 if this cannot be shown."""
    if _nondecreasing(poly, vary, low):
        return 1
    return -1 if _nondecreasing(-poly, vary, low) else 0


def _nondecreasing(poly: Poly, vary: frozenset[str], low: Evaluator) -> bool:
    # A polynomial, linear in each of its non-decreasing atoms, does not decrease from `low`
    # on if each partial derivative is >= 0 at `low` and does not decrease either.
    atoms = {a for mono, _ in poly.terms for a in mono if a.vars & vary}
    if not atoms:
        return True
    if not all(_atom_monotone(a, vary) for a in atoms):
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
        if low.poly(derivative) < 0 or not _nondecreasing(derivative, vary, low):
            return False
    return True


def _atom_monotone(atom: Atom, vary: frozenset[str]) -> bool:
    if not (atom.vars & vary) or isinstance(atom, Sym):
        return True
    if isinstance(atom, (Floor, CeilPool, Scaled)):
        positive = not isinstance(atom, Scaled) or atom.scale > 0
        return (
            positive
            and all(c >= 0 for m, c in atom.num.terms if any(a.vars & vary for a in m))
            and all(_atom_monotone(a, vary) for m, _ in atom.num.terms for a in m)
        )
    if isinstance(atom, Extreme):
        return all(
            _atom_monotone(a, vary) and c >= 0
            for p in (atom.a, atom.b)
            for m, c in p.terms
            for a in m
        )
    return False


# -- the domain, per-node dependence and the verdict ------------------------------------------

Segment = list[int | None]


class SizeAnalysis:
    """The accepted sizes per axis, each with the other axes at a reference size that is
    accepted (the analysed input when it is), and what limits them."""

    def __init__(self, context: PassContext) -> None:
        self.context = context
        self.prop = Propagator(context)
        self.prop.run()
        self.axes = self.prop.axes
        self.constraints = self.prop.constraints
        unique: dict[str, Constraint] = {}
        for c in self.constraints:
            unique.setdefault(c.key, c)
        self.unique = list(unique.values())
        self.env0 = self.prop.env0
        self.reference = self._reference()
        self.sets: dict[str, IntSet] = {}
        self.solvers: dict[str, Solver] = {}
        self.left_out: list[Constraint] = []
        for axis in self.axes:
            solver = Solver({axis}, {k: v for k, v in self.reference.items() if k != axis})
            found, left = solver.solve(self.unique)
            self.sets[axis], self.solvers[axis] = found, solver
            self.left_out += [c for c in left if c not in self.left_out]

    def first_failure(self, env: dict[str, int]) -> Constraint | None:
        """The first constraint, in graph order, that the sizes in `env` violate."""
        ev = Evaluator(env)
        for c in self.constraints:
            if c.opaque:
                continue
            try:
                if not c.holds(ev):
                    return c
            except Unknown:
                continue
        return None

    def _reference(self) -> dict[str, int]:
        env = dict(self.env0)
        if not self.axes or self.first_failure(env) is None:
            return env
        # Try equal sizes on the frame axes first (the usual square input), then move one
        # axis at a time to its nearest accepted size.
        frame = [a for a in self.axes if a != "T"]
        solver = Solver(frame, {k: v for k, v in env.items() if k not in frame})
        square, _ = solver.solve(self.unique)
        near = square.nearest(max(env[a] for a in frame))
        if near is not None:
            candidate = {**env, **dict.fromkeys(frame, near)}
            if self.first_failure(candidate) is None:
                return candidate
        for _ in range(2):
            for axis in self.axes:
                fixed = {k: v for k, v in env.items() if k != axis}
                found, _ = Solver({axis}, fixed).solve(self.unique)
                near = found.nearest(env[axis])
                if near is not None:
                    env[axis] = near
            if self.first_failure(env) is None:
                return env
        return dict(self.env0)

    # -- per node ------------------------------------------------------------------------
    def _samples(self, axis: str) -> list[int]:
        segments = self.sets[axis].segments()
        if not segments:
            return [1, 2, 3, 1 << 20]
        points = set()
        for lo, hi, step in segments:
            points.add(lo)
            points.add(hi if hi is not None else lo + step * (1 << 20))
        return sorted(points)

    def varies(self, dims: Sequence[Poly]) -> bool:
        """Does any of these sizes change over the accepted sizes?"""
        for axis in self.axes:
            if not any(axis in d.vars for d in dims):
                continue
            solver, seen = self.solvers[axis], None
            for n in self._samples(axis):
                try:
                    values = tuple(solver.value(d, n) for d in dims)
                except Unknown:
                    break
                if seen is None:
                    seen = values
                elif values != seen:
                    return True
        return False

    def dependence(self) -> dict[fx.Node, str]:
        bound = {c.node for c in self.constraints if c.binding}
        out: dict[fx.Node, str] = {}
        for node, value in self.prop.values.items():
            if node in bound:
                out[node] = "bound"
                continue
            dims = [d for t in _flat_args(value) for d in t.shape]
            if dims and not any(d.opaque for d in dims):
                out[node] = "scales" if self.varies(dims) else "fixed"
        return out

    # -- bounds --------------------------------------------------------------------------
    def _env(self, axis: str, n: int) -> dict[str, int]:
        return {**self.reference, axis: n}

    def _why(self, axis: str, n: int) -> Constraint | None:
        return self.first_failure(self._env(axis, n))

    def _message(self, c: Constraint, env: dict[str, int]) -> str:
        ev = Evaluator(env)
        try:
            return c.message(ev.poly)
        except Unknown:
            return f"{self.prop.names.get(c.node, c.node.name)}: {KIND_TEXT[c.kind]}"

    def bounds(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        names = self.prop.names
        for axis in self.axes:
            found = self.sets[axis]
            segments = found.segments()
            if not segments:
                c = self._why(axis, self.reference[axis])
                if c is not None:
                    entries.append(
                        self._entry(
                            c,
                            axis,
                            f"no {axis} is accepted",
                            self._env(axis, self.reference[axis]),
                            "none",
                        )
                    )
                continue
            edges: list[tuple[str, int, int]] = []
            for lo, hi, step in segments:
                if step > 1:
                    edges.append((f"{axis} steps by {step} from {lo}", lo + 1, lo))
                    continue
                if lo > 1 and not found.contains(lo - 1):
                    edges.append((f"{axis} >= {lo}", lo - 1, lo))
                if hi is not None and not found.contains(hi + 1):
                    edges.append((f"{axis} <= {hi}", hi + 1, hi))
            for text, n, value in edges[:8]:
                c = self._why(axis, n)
                if c is None:
                    continue
                kind = "periodic" if "steps" in text else "min" if ">=" in text else "max"
                env = self._env(axis, n)
                entry = self._entry(c, axis, f"{text}: at {axis} = {n}", env, kind)
                entry["value"] = value
                entries.append(entry)
        for c in self.unique:
            spatial = sorted(c.vars & set(self.axes))
            if len(spatial) > 1 and not c.opaque and self._couples(c, spatial):
                entries.append(
                    {
                        "node": names.get(c.node, c.node.name),
                        "axis": ",".join(spatial),
                        "constraint": (
                            f"couples {' and '.join(spatial)}: {c.lhs} {c.rel} {c.rhs}; each "
                            "axis's set holds with the other axes at the reference size"
                        ),
                        "kind": "coupled",
                    }
                )
        for node, text in self.prop.notes:
            entries.append(
                {
                    "node": names.get(node, node.name),
                    "axis": "*",
                    "constraint": text,
                    "kind": "inexact",
                }
            )
        for c in self.left_out:
            entries.append(
                {
                    "node": names.get(c.node, c.node.name),
                    "axis": "*",
                    "constraint": f"not followed exactly: {c.lhs} {c.rel} {c.rhs}",
                    "kind": "inexact",
                }
            )
        return entries

    def _couples(self, c: Constraint, spatial: list[str]) -> bool:
        """Would another size of one axis let `c` accept other sizes of another axis?
        (`h * w == 24` does: 4x6, 3x8, ...; `2048 * h * w == 2048` does not: 1x1 only.)"""
        for axis in spatial:
            try:
                base = self.solvers[axis].allowed(c)
            except Unknown:
                return True
            for other in spatial:
                if other == axis:
                    continue
                # Probe sizes of `other` that its own constraints allow (a negative map size
                # times a negative one would satisfy a product spuriously).
                alone = [x for x in self.unique if axis not in x.vars]
                own, _ = Solver(
                    {other}, {k: v for k, v in self.reference.items() if k != other}
                ).solve(alone)
                ref = self.reference[other]
                probes = {*range(1, 17), *(ref * k // 8 for k in range(1, 33))} - {0, ref}
                for n in sorted(p for p in probes if own.contains(p)):
                    fixed = {k: v for k, v in self.reference.items() if k != axis}
                    fixed[other] = n
                    try:
                        moved = Solver({axis}, fixed).allowed(c)
                    except Unknown:
                        return True
                    if base is None or moved is None:
                        return True
                    if not moved.is_empty() and moved.segments() != base.segments():
                        return True
        return False

    def _entry(
        self, c: Constraint, axis: str, text: str, env: dict[str, int], kind: str
    ) -> dict[str, Any]:
        return {
            "node": self.prop.names.get(c.node, c.node.name),
            "axis": axis,
            "constraint": f"{text}, {self._message(c, env)}",
            "kind": kind,
        }

    def domain(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for axis in self.axes:
            data[axis] = [
                [lo, hi] if step == 1 else [lo, hi, step]
                for lo, hi, step in self.sets[axis].segments()
            ]
        data["bounds"] = self.bounds()
        data["at"] = {a: self.reference[a] for a in self.axes}
        return data


# -- verdict ----------------------------------------------------------------------------------

_FIXED_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_POOLS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


class Verdict:
    """The answer in plain words: what limits the input size, the sizes accepted, the fix."""

    def __init__(self, analysis: SizeAnalysis) -> None:
        self.a = analysis
        self.prop = analysis.prop
        self.capture = analysis.context.capture
        self.gm = self.capture.graph_module
        self.ref = Evaluator(analysis.reference)

    # -- naming --------------------------------------------------------------------------
    def name(self, node: fx.Node) -> str:
        return self.prop.names.get(node, node.name)

    def alias(self, node: fx.Node) -> str:
        """The outermost module whose output is this node (`layer_5`), else the node's name."""
        paths = [p for p, out in self.capture.module_outputs.items() if out is node and p]
        return min(paths, key=lambda p: (p.count("."), len(p))) if paths else self.name(node)

    def module(self, node: fx.Node) -> nn.Module | None:
        if node.op == "call_module":
            return self.gm.get_submodule(str(node.target))
        return None

    # -- graph patterns ------------------------------------------------------------------
    def map_before(self, node: fx.Node) -> fx.Node | None:
        """The last spatial map on the way into `node` (what a flatten or view consumed)."""
        current: fx.Node | None = node
        for _ in range(64):
            if current is None:
                return None
            inputs = [
                n for n in current.all_input_nodes if isinstance(self.prop.values.get(n), STensor)
            ]
            if not inputs:
                return None
            # Follow the varying operand (not a parameter added to it).
            varying = [
                n for n in inputs if any(d.vars - {BATCH} for d in self.prop.values[n].shape)
            ]
            current = (varying or inputs)[0]
            value = self.prop.values[current]
            spatial = [
                d
                for d, ax in zip(value.shape, value.axes, strict=True)
                if ax is not None and "," not in ax
            ]
            if len(spatial) == len(self.a.axes) and any(d.vars - {BATCH} for d in spatial):
                return current
        return None

    def is_fixed_pool(self, node: fx.Node) -> bool:
        if isinstance(self.module(node), _FIXED_POOLS):
            return True
        return node.op == "call_function" and op_label(node) in (
            "max_pool1d",
            "max_pool2d",
            "max_pool3d",
            "avg_pool1d",
            "avg_pool2d",
            "avg_pool3d",
            "_max_pool1d",
            "_max_pool2d",
            "_max_pool3d",
            "fn",
        )

    def spatial(self, node: fx.Node) -> list[tuple[str, Poly]]:
        value = self.prop.values.get(node)
        if not isinstance(value, STensor):
            return []
        return [
            (ax, d)
            for ax, d in zip(value.axes, value.shape, strict=True)
            if ax is not None and "," not in ax
        ]

    def size_at_ref(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.ref.poly(d) for _, d in self.spatial(node))

    def size_over_domain(self, node: fx.Node) -> str:
        """`7x7` when the map has one size at every accepted input, else its ranges."""
        parts = []
        for axis, dim in self.spatial(node):
            solver = self.a.solvers.get(axis)
            if solver is None:
                return "x".join(str(v) for v in self.size_at_ref(node))
            values = sorted({solver.value(dim, n) for n in self.a._samples(axis)})
            unbounded = any(hi is None for _, hi, _ in self.a.sets[axis].segments())
            if not values:
                parts.append("?")
            elif unbounded and len(values) > 1:
                parts.append(f"{values[0]}+")
            elif len(values) == 1:
                parts.append(str(values[0]))
            else:
                parts.append(f"{values[0]}..{values[-1]}")
        return "x".join(parts)

    # -- sentences -----------------------------------------------------------------------
    def accepts(self) -> str:
        axes = self.a.axes
        texts = {a: _set_text(self.a.sets[a].segments()) for a in axes}
        if len(set(texts.values())) == 1:
            text = texts[axes[0]]
            if text == "none":
                return "accepts no size"
            every = "every " if text.startswith(">=") else ""
            return f"accepts {every}{', '.join(axes)} {text}"
        return "accepts " + " and ".join(f"{a} {t}" for a, t in texts.items())

    def reasons(self) -> tuple[list[str], list[str]]:
        """One sentence per recognised cause, and the fixes, first the ones breaking now."""
        failing = self.a.first_failure(self.a.env0)
        binding = [c for c in self.a.constraints if c.binding and c.vars & set(self.a.axes)]
        binding.sort(
            key=lambda c: c is not failing and c.node is not getattr(failing, "node", None)
        )
        reasons: list[str] = []
        fixes: list[str] = []
        seen: set[tuple[fx.Node, str]] = set()
        asserts = [c for c in binding if c.kind == "assert"]
        if asserts:
            checks = " and ".join(dict.fromkeys(f"{c.lhs} {c.rel} {c.rhs}" for c in asserts))
            reasons.append(f"torch._assert at {self.name(asserts[0].node)} requires {checks}")
            fixes.append("relax the size checks in torch._assert")
        for c in binding:
            key = (c.node, c.kind)
            if key in seen or c.kind in ("assert", "min", "merge", "stats"):
                continue
            seen.add(key)
            found = self.explain(c)
            if found is not None and found[0] not in reasons:
                reason, fix = found
                reasons.append(reason)
                if fix and fix not in fixes:
                    fixes.append(fix)
            if len(reasons) >= 3:
                break
        return reasons, fixes

    def limits(self) -> str | None:
        """What sets the edges of the domain, when no recognised pattern does."""
        for axis in self.a.axes:
            segments = self.a.sets[axis].segments()
            if not segments:
                continue
            lo, hi, step = segments[0]
            probe = lo - 1 if lo > 1 else hi + 1 if hi is not None and step == 1 else None
            if step > 1:
                probe = lo + 1
            if probe is None:
                continue
            c = self.a._why(axis, probe)
            if c is None:
                continue
            message = self.a._message(c, self.a._env(axis, probe))
            what = "The smallest size is" if probe < lo else "The accepted sizes are"
            return f"{what} set by {message} at {axis} = {probe}"
        return None

    def explain(self, c: Constraint) -> tuple[str, str] | None:
        node = c.node
        name = self.name(node)
        if c.kind == "features":
            target = c.rhs.const if c.rhs.is_const else c.rhs
            where = self.map_before(node)
            if where is None:
                return f"{name} expects {target} features", ""
            if self.is_fixed_pool(where) and where.all_input_nodes:
                source = where.all_input_nodes[0]
                return (
                    f"{name} expects {target} features, which arrive only when "
                    f"{self.alias(source)} is {self.size_over_domain(source)}",
                    self.pool_fix(where),
                )
            size = self.size_at_ref(where)
            return (
                f"{name} expects {target} features, which arrive only when {self.alias(where)} "
                f"is {self.size_over_domain(where)}",
                f"put {self.adaptive(size)} before the flatten into {name}",
            )
        if c.kind in ("view", "batch") and op_label(node) in (
            "view",
            "reshape",
            "flatten",
            "unflatten",
        ):
            where = self.map_before(node)
            call = self.call_text(node)
            if where is None:
                return f"{name} hard-codes {call}", ""
            size = self.size_at_ref(where)
            fix = ""
            if self.feeds_linear(node):
                fix = (
                    f"replace {call} with torch.flatten(x, 1) and put {self.adaptive(size)} "
                    "before it"
                )
            return (
                f"{name} hard-codes {call}, which fits only when {self.alias(where)} is "
                f"{self.size_over_domain(where)}",
                fix,
            )
        if c.pattern == "posembed":
            param = self.param_of(node)
            label = param or "a fixed-size table"
            where = self.map_before(node)
            fits = (
                (f", which fits only when {self.alias(where)} is {self.size_over_domain(where)}")
                if where is not None
                else ""
            )
            return (
                f"{name} adds a fixed-size positional embedding ({label}){fits}",
                f"interpolate {label} to the input's token grid (as timm's "
                "resample_abs_pos_embed does)",
            )
        text = self.a._message(c, self.a.reference)
        return (text or f"{name}: {KIND_TEXT[c.kind]}"), ""

    def pool_fix(self, pool: fx.Node) -> str:
        module = self.module(pool)
        size = self.size_at_ref(pool)
        if module is not None:
            path = str(pool.target)
            return f"replace {path} = {describe_module(module)} with {self.adaptive(size)}"
        return (
            f"replace {op_label(pool)} at {self.name(pool)} with "
            f"adaptive_{op_label(pool).replace('max_', 'max_').split('_pool')[0]}"
            f"_pool{len(size)}d(x, {size if len(size) > 1 else size[0]})"
        )

    def adaptive(self, size: tuple[int, ...]) -> str:
        rank = len(size)
        if rank == 1:
            return f"AdaptiveAvgPool1d({size[0]})"
        return f"AdaptiveAvgPool{rank}d({size})"

    def call_text(self, node: fx.Node) -> str:
        """`view(-1, 400)`, `reshape(N, 8, 8, 7, 7, 64)`: sizes by their formulas."""
        args = []
        for arg in node.args[1:]:
            for a in arg if isinstance(arg, (list, tuple)) else [arg]:
                value = self.prop.values.get(a) if isinstance(a, fx.Node) else a
                args.append(value.key if isinstance(value, Poly) else repr(value))
        return f"{op_label(node)}({', '.join(args)})"

    def feeds_linear(self, node: fx.Node) -> bool:
        """Does this node reach a Linear through ops that keep the last dim?"""
        frontier, seen = [node], {node}
        while frontier:
            current = frontier.pop()
            for user in current.users:
                if user in seen:
                    continue
                seen.add(user)
                module = self.module(user)
                if isinstance(module, nn.Linear) or op_label(user) == "linear":
                    return True
                if isinstance(module, _elementwise_types()) or op_label(user) in (
                    "dropout",
                    "relu",
                    "contiguous",
                    "flatten",
                    "view",
                    "reshape",
                ):
                    frontier.append(user)
        return False

    def param_of(self, node: fx.Node) -> str | None:
        for n in node.all_input_nodes:
            value = self.prop.values.get(n)
            if isinstance(value, STensor) and value.param is not None:
                return str(value.param.target)
        if node.op == "call_module":
            return f"{node.target}.weight"
        return None

    def free(self) -> str:
        """What makes a model without limits accept every size."""
        for node in self.gm.graph.nodes:
            module = self.module(node)
            if not (isinstance(module, nn.Linear) or op_label(node) == "linear"):
                continue
            path = self.path_to_map(node)
            if len(path) < 2:
                continue
            reducer = path[-2]
            features = module.in_features if isinstance(module, nn.Linear) else "its"
            return (
                f"Fully convolutional up to {self.alias(reducer)}; {self.reducer_text(reducer)} "
                f"gives {self.name(node)} {features} features at any size"
            )
        output = _flat_args(self.prop.output)
        if any(ax is not None for t in output for ax in t.axes):
            return "No layer fixes the input size; the output scales with it"
        return "No layer fixes the input size"

    def path_to_map(self, node: fx.Node) -> list[fx.Node]:
        """The nodes from `node`'s input back to (and including) the last spatial map."""
        where = self.map_before(node)
        if where is None:
            return []
        path: list[fx.Node] = []
        current = node
        while current is not where and len(path) < 64:
            inputs = [
                n for n in current.all_input_nodes if isinstance(self.prop.values.get(n), STensor)
            ]
            if not inputs:
                return []
            varying = [
                n for n in inputs if any(d.vars - {BATCH} for d in self.prop.values[n].shape)
            ]
            current = (varying or inputs)[0]
            path.append(current)
        return path

    def reducer_text(self, node: fx.Node) -> str:
        module = self.module(node)
        size = self.size_at_ref(node)
        shown = size if len(size) > 1 else size[0] if size else ""
        if module is not None:
            return f"{type(module).__name__}({shown})"
        label = op_label(node)
        if label.startswith("adaptive"):
            return f"{label}(x, {shown})"
        return f"{label} over {', '.join(self.a.axes)}"

    def text(self, report_failure: Failure | None) -> str:
        parts: list[str] = []
        if report_failure is not None:
            size = "x".join(str(self.a.env0[a]) for a in self.a.axes) or "this input"
            message = report_failure.message
            parts.append(f"Breaks at {size}: {message}{'' if message[-1:] in '.!?' else '.'}")
        if not self.a.axes:
            parts.append("The input has no spatial axes, so its size is fixed by the first layer.")
            return " ".join(parts)
        reasons, fixes = self.reasons()
        everything = all(self.a.sets[a].segments() == [(1, None, 1)] for a in self.a.axes)
        constant = self.a.first_failure(self.a.reference)
        if constant is not None and not (constant.vars - {BATCH}):
            # A break no input size avoids (wrong channels, a fixed mismatch).
            message = self.a._message(constant, self.a.reference)
            parts.append(f"No input size avoids it: {message}.")
            return " ".join(parts)
        if reasons:
            lead = "; ".join(reasons)
        elif everything:
            lead = self.free()
        else:
            lead = self.limits() or "The input size is limited"
        parts.append(f"{lead}: {self.accepts()}.")
        if fixes:
            parts.append("Fix: " + "; ".join(fixes) + ".")
        kinds = {b["kind"] for b in self.a.bounds()}
        if "coupled" in kinds:
            parts.append("Some sizes couple the axes; see the domain's bounds.")
        if "periodic" in kinds:
            parts.append("Only some sizes in a period are accepted; see the domain's bounds.")
        if "inexact" in kinds:
            parts.append("Some ops have no size rule, so the domain may be inexact.")
        return " ".join(parts)


def _set_text(segments: list[tuple[int, int | None, int]]) -> str:
    if not segments:
        return "none"
    if len(segments) == 1:
        lo, hi, step = segments[0]
        if step == 1:
            return f">= {lo}" if hi is None else f"= {lo}" if lo == hi else f"in [{lo}, {hi}]"
    parts = []
    for lo, hi, step in segments[:6]:
        if step > 1:
            tail = "..." if hi is None else f"..., {hi}"
            parts.append(f"{{{lo}, {lo + step}, {tail}}}")
        else:
            parts.append(f"[{lo}, {'inf' if hi is None else hi}]" if hi != lo else f"{{{lo}}}")
    more = " or more" if len(segments) > 6 else ""
    return "in " + " or ".join(parts) + more


# -- entry point ------------------------------------------------------------------------------

_SILENT_BREAKS = ("batch", "index", "squeeze")


def run(context: PassContext) -> None:
    """Annotate the report: `depends_on_input` per node and module, `domain`, `verdict`.

    A size that runs on meta tensors but folds spatial elements into the batch, or indexes
    past an embedding table, is a break too: it becomes the report's failure."""
    analysis = SizeAnalysis(context)
    report = context.report
    dependence = analysis.dependence()
    for node, dep in dependence.items():
        target = context.by_fx.get(node)
        if target is not None:
            target.depends_on_input = dep
    _annotate_modules(context, dependence)
    if report.failure is None:
        c = analysis.first_failure(analysis.env0)
        if c is not None and c.kind in _SILENT_BREAKS:
            report.failure = _failure(context, analysis, c)
    report.domain = analysis.domain() if analysis.axes else {"bounds": []}
    report.verdict = Verdict(analysis).text(report.failure)


def _failure(context: PassContext, analysis: SizeAnalysis, c: Constraint) -> Failure:
    node = c.node
    report_node = context.by_fx.get(node)
    observed = [context.shapes.results.get(n) for n in node.all_input_nodes]
    return Failure(
        node=analysis.prop.names.get(node, node.name),
        module=report_node.module if report_node is not None else None,
        type=report_node.type if report_node is not None else op_label(node),
        input_shapes=[r.shape if r is not None else None for r in observed],
        message=analysis._message(c, analysis.env0),
    )


def _annotate_modules(context: PassContext, dependence: dict[fx.Node, str]) -> None:
    bound_sites: set[str] = set()
    for node, dep in dependence.items():
        if dep != "bound":
            continue
        site = context.capture.sites.get(node, "")
        while site:
            bound_sites.add(site)
            site = site.rpartition(".")[0]
    for module in context.report.modules:
        if module.path in bound_sites:
            module.depends_on_input = "bound"
            continue
        outputs = _output_nodes(context.capture.module_outputs.get(module.path))
        deps = {dependence.get(n) for n in outputs} - {None}
        if deps:
            module.depends_on_input = "scales" if "scales" in deps else "fixed"


def _output_nodes(value: Any) -> Iterator[fx.Node]:
    if isinstance(value, fx.Node):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _output_nodes(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _output_nodes(v)
