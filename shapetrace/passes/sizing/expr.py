"""Integer expressions over size symbols: the sizes the input-size pass propagates.

A size is an integer polynomial (`Poly`) over atoms: the input's symbols (`N`, `H`, `W`, `T`,
`L`) and non-polynomial quantities built from polynomials (a floor division, a pooling size in
ceil mode, a min or max). Polynomials are kept canonical, so equal formulas compare equal, and
`Evaluator` computes them exactly at one assignment of the symbols.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction


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

_NO_VARS: frozenset[str] = frozenset()


class Poly:
    """An integer polynomial over atoms, kept canonical: sorted monomials, no zero terms.

    Polynomials are built by the thousand per analysis, most of them steps of a longer formula
    (`size + before + after - ...`): the canonical text `key` is rendered only when asked for,
    equality and hashing compare the canonical terms themselves, and sums and products with a
    constant reuse the terms, variables and opacity they already have."""

    __slots__ = ("_hash", "_key", "const", "opaque", "terms", "vars")

    terms: tuple[tuple[Mono, int], ...]
    const: int
    vars: frozenset[str]
    opaque: bool

    def __init__(self, terms: dict[Mono, int] | None = None, const: int = 0) -> None:
        self.const = const
        self._key: str | None = None
        self._hash: int | None = None
        if not terms:
            self.terms, self.vars, self.opaque = (), _NO_VARS, False
            return
        items = sorted(((m, c) for m, c in terms.items() if c), key=_mono_key)
        self.terms = tuple(items)
        self.vars = frozenset().union(*(a.vars for m, _ in items for a in m))
        self.opaque = any(a.opaque for m, _ in items for a in m)

    @staticmethod
    def _made(
        terms: tuple[tuple[Mono, int], ...], const: int, vars: frozenset[str], opaque: bool
    ) -> Poly:
        """A polynomial from terms already canonical, with their variables and opacity."""
        p = Poly.__new__(Poly)
        p.terms, p.const, p.vars, p.opaque = terms, const, vars, opaque
        p._key = p._hash = None
        return p

    @staticmethod
    def of(value: int | Poly) -> Poly:
        if isinstance(value, Poly):
            return value
        return Poly._made((), int(value), _NO_VARS, False)

    @staticmethod
    def atom(atom: Atom) -> Poly:
        return Poly._made((((atom,), 1),), 0, atom.vars, atom.opaque)

    @property
    def key(self) -> str:
        """The canonical text: equal formulas have equal keys."""
        key = self._key
        if key is None:
            key = self._key = _render(self.terms, self.const)
        return key

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash((self.terms, self.const))
        return h

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, Poly):
            return self.const == other.const and self.terms == other.terms
        return False

    def __repr__(self) -> str:
        return self.key

    @property
    def is_const(self) -> bool:
        return not self.terms

    def __add__(self, other: int | Poly) -> Poly:
        if not isinstance(other, Poly):
            return Poly._made(self.terms, self.const + int(other), self.vars, self.opaque)
        if not other.terms:
            return Poly._made(self.terms, self.const + other.const, self.vars, self.opaque)
        if not self.terms:
            return Poly._made(other.terms, self.const + other.const, other.vars, other.opaque)
        terms = dict(self.terms)
        for mono, coef in other.terms:
            terms[mono] = terms.get(mono, 0) + coef
        return Poly(terms, self.const + other.const)

    __radd__ = __add__

    def __neg__(self) -> Poly:
        # Negating keeps the order of the monomials (it does not depend on coefficients).
        return Poly._made(
            tuple((m, -c) for m, c in self.terms), -self.const, self.vars, self.opaque
        )

    def __sub__(self, other: int | Poly) -> Poly:
        if not isinstance(other, Poly):
            return Poly._made(self.terms, self.const - int(other), self.vars, self.opaque)
        return self + (-other)

    def __rsub__(self, other: int | Poly) -> Poly:
        return Poly.of(other) - self

    def _scaled(self, k: int) -> Poly:
        if not k:
            return Poly._made((), 0, _NO_VARS, False)
        if k == 1:
            return self
        return Poly._made(
            tuple((m, c * k) for m, c in self.terms), self.const * k, self.vars, self.opaque
        )

    def __mul__(self, other: int | Poly) -> Poly:
        if not isinstance(other, Poly):
            return self._scaled(int(other))
        if not other.terms:
            return self._scaled(other.const)
        if not self.terms:
            return other._scaled(self.const)
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


def absorb(p: Poly) -> Poly | None:
    """`floor(a/d) + r` as `floor((a + d*r)/d)` (for a lone floor with coefficient 1 or -1),
    the form canonical polynomials lose: `floor(N*(h - 3)*(w - 3)/25)`, not
    `floor(N*(h*w + 22*h + 22*w + 9)/25) - N*h - N*w`."""
    lone = [
        (mono[0], coef)
        for mono, coef in p.terms
        if len(mono) == 1 and isinstance(mono[0], Floor) and coef in (1, -1)
    ]
    if len(lone) != 1:
        return None
    ((atom, coef),) = lone
    assert isinstance(atom, Floor)
    rest = p - coef * Poly.atom(atom)
    if rest.is_const and not rest.const:
        return None
    return coef * Poly.atom(Floor(atom.num + coef * atom.den * rest, atom.den))


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
    """Evaluates polynomials at one assignment of the symbols, caching atom values (by the
    atom's key, which is what atoms compare by: a string hashes without a Python call)."""

    __slots__ = ("cache", "env")

    def __init__(self, env: dict[str, int]) -> None:
        self.env = env
        self.cache: dict[str, int] = {}

    def atom(self, atom: Atom) -> int:
        value = self.cache.get(atom.key)
        if value is None:
            value = self.cache[atom.key] = atom.compute(self)
        return value

    def poly(self, p: Poly) -> int:
        total = p.const
        cache = self.cache
        for mono, coef in p.terms:
            term = coef
            for a in mono:
                value = cache.get(a.key)
                if value is None:
                    value = cache[a.key] = a.compute(self)
                term *= value
            total += term
        return total
