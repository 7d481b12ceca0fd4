"""Eventually periodic sets of positive integers: the exact sets of sizes a constraint allows.

`IntSet` lists explicit ranges below a base, then per residue class modulo a period the ranges
of k with `base + r + k * period` in the set. Intersections and unions stay exact, and a set
lists itself as `(lo, hi_or_None, step)` progressions for the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def _k_complement(ranges: Sequence[tuple[int, int | None]], low: int, high: int | None) -> KRanges:
    """The k in [low, high] (high None: unbounded) outside `ranges`."""
    out: KRanges = []
    start: int | None = low
    for lo, hi in ranges:
        if start is not None and lo > start:
            out.append((start, lo - 1 if high is None else min(lo - 1, high)))
        start = None if hi is None else max(start or 0, hi + 1)
        if start is None:
            break
    if start is not None and (high is None or start <= high):
        out.append((start, high))
    return [(lo, hi) for lo, hi in out if hi is None or lo <= hi]


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

    def complement(self) -> IntSet:
        """The positive integers not in the set."""
        prefix = _k_complement(self.prefix, 1, self.base - 1)
        classes = [_k_complement(ranges, 0, None) for ranges in self.classes]
        return IntSet(
            self.base, [(lo, hi) for lo, hi in prefix if hi is not None], self.period, classes
        )

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
