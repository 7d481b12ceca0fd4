"""Which nodes the accepted sizes are attributed to: as few as define the domain.

Several constraints often say the same thing, or one says more: code-review ResNet-50's
`AvgPool2d(7)` needs at least 7x7, and `fc_layer` needs exactly the 2048 features a 7x7 map
gives. Only `fc_layer` is needed to define the accepted sizes; the pool's constraint is implied.

The domain is solved again without each node's constraints, latest first (so of two nodes that
pin the same size, the first in graph order, where a run stops, is kept). A node whose removal
leaves the domain unchanged is implied by the ones kept. Sizes of real tensors are never
negative, and that is always known: every varying size of every node is at least 0 in every
solve (without it, `(h - 6)**2 == 1` would also admit `h = 5`, where the pool's output would be
-1 wide). The domain is compared along each axis, with the others at the reference size, and
along the diagonal, all axes together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import fx

from shapetrace.passes.sizing.expr import Poly, Unknown
from shapetrace.passes.sizing.intset import IntSet
from shapetrace.passes.sizing.solver import Solver
from shapetrace.passes.sizing.tensors import BATCH, Constraint, flat_args, no_message

if TYPE_CHECKING:  # the analysis computes its attribution on first use
    from shapetrace.passes.sizing.domain import SizeAnalysis

Domain = tuple[IntSet, ...]  # the sizes along each direction


@dataclass
class Attribution:
    """`bound`: the nodes, in graph order, whose constraints define the domain, none of them
    implied by the others; `implied`: each other node that constrains the sizes, with the
    bound nodes that imply its constraint (fewest that do); `inexact`: nodes whose
    constraints no solver follows exactly, counted as bound (nothing shows they are not)."""

    bound: list[fx.Node] = field(default_factory=list)
    implied: dict[fx.Node, list[fx.Node]] = field(default_factory=dict)
    inexact: list[fx.Node] = field(default_factory=list)

    @property
    def limiting(self) -> set[fx.Node]:
        return {*self.bound, *self.inexact}


def attribute(analysis: SizeAnalysis) -> Attribution:
    """The minimal set of bound nodes of `analysis`, and what the others are implied by."""
    return _Attributor(analysis).run()


class _Attributor:
    def __init__(self, analysis: SizeAnalysis) -> None:
        self.a = analysis
        axes = analysis.axes
        self.directions: list[Solver] = [analysis.solvers[axis] for axis in axes]
        if len(axes) > 1:
            others = {k: v for k, v in analysis.reference.items() if k not in axes}
            self.directions.append(Solver(axes, others))
        self._allowed: dict[tuple[int, str], IntSet | None] = {}
        self._segments_of: dict[int, tuple[IntSet, list[tuple[int, int | None, int]]]] = {}
        left = {c.key for c in analysis.left_out}
        self.by_node: dict[fx.Node, list[Constraint]] = {}
        self.inexact: list[fx.Node] = []
        for c in analysis.constraints:
            if c.node in analysis.tainted:
                continue
            if c.key in left or c.opaque:
                if c.node not in self.inexact:
                    self.inexact.append(c.node)
                continue
            group = self.by_node.setdefault(c.node, [])
            if all(x.key != c.key for x in group):
                group.append(c)
        self.nonnegative = nonnegative_sizes(analysis)

    def run(self) -> Attribution:
        if not self.a.axes:
            return Attribution(inexact=self.inexact)
        base = self.solve([])
        # Nodes whose every constraint holds wherever sizes are not negative (a padded
        # convolution, a residual add of equal maps) never limit anything. Many nodes share
        # a constraint (every padded 3x3 conv on one map size): each is checked once.
        held: dict[str, bool] = {}

        def limits(c: Constraint) -> bool:
            found = held.get(c.key)
            if found is None:
                found = held[c.key] = self.holds(c, base)
            return not found

        candidates = [n for n, group in self.by_node.items() if any(limits(c) for c in group)]
        everything = _key(self.solve([c for n in candidates for c in self.by_node[n]]))
        kept = list(candidates)
        for node in reversed(candidates):
            if _key(self.solve(self.constraints(kept, without=node))) == everything:
                kept.remove(node)
        if all(sizes.is_empty() for sizes in self.solve(self.constraints(kept))):
            return Attribution(kept, {}, self.inexact)  # nothing accepted: nothing to explain
        # Listed as implied: what could limit sizes by itself (not a map merely non-empty).
        implied = {
            n: self.implying(n, kept)
            for n in candidates
            if n not in kept and any(c.kind != "min" or c.need > 1 for c in self.by_node[n])
        }
        return Attribution(kept, implied, self.inexact)

    def constraints(self, nodes: list[fx.Node], without: fx.Node | None = None) -> list[Constraint]:
        return [c for n in nodes if n is not without for c in self.by_node[n]]

    def implying(self, node: fx.Node, bound: list[fx.Node]) -> list[fx.Node]:
        """The fewest bound nodes (latest dropped first) that imply `node`'s constraints."""
        own = self.by_node[node]
        kept = list(bound)
        for other in reversed(bound):
            rest = self.constraints(kept, without=other)
            if _key(self.solve(rest)) == _key(self.solve(rest + own)):
                kept.remove(other)
        return kept

    def holds(self, c: Constraint, where: Domain) -> bool:
        """Does `c` hold on every size of `where`?"""
        for i, sizes in enumerate(where):
            if sizes.is_empty():
                continue
            allowed = self.allowed(i, c)
            if allowed is None:
                return False
            if sizes.intersect(allowed).segments() != self._segments(sizes):
                return False
        return True

    def _segments(self, sizes: IntSet) -> list[tuple[int, int | None, int]]:
        """`sizes.segments()`, computed once per set (the set is kept, so its id stays its
        own)."""
        found = self._segments_of.get(id(sizes))
        if found is None:
            found = (sizes, sizes.segments())
            self._segments_of[id(sizes)] = found
        return found[1]

    def allowed(self, i: int, c: Constraint) -> IntSet | None:
        """The sizes along direction `i` at which `c` holds (None: not quasi-linear)."""
        key = (i, c.key)
        if key not in self._allowed:
            try:
                self._allowed[key] = self.directions[i].allowed(c)
            except Unknown:
                self._allowed[key] = None
        return self._allowed[key]

    def solve(self, constraints: list[Constraint]) -> Domain:
        """The sizes along each direction that `constraints` and non-negative sizes allow."""
        out = []
        for i, solver in enumerate(self.directions):
            found = IntSet.full()
            pending = []
            for c in [*self.nonnegative, *constraints]:
                if not (c.vars & solver.vary):
                    try:
                        if not c.holds(solver.ev(1)):
                            found = IntSet.empty()
                    except Unknown:
                        pass
                    continue
                allowed = self.allowed(i, c)
                if allowed is None:
                    pending.append(c)
                else:
                    found = found.intersect(allowed)
            # Products of varying sizes: monotone, searched from the least size still in play.
            for c in pending:
                if found.is_empty():
                    break
                try:
                    searched = solver.monotone(c, found)
                except Unknown:
                    searched = None
                if searched is not None:
                    found = found.intersect(searched)
            out.append(found)
        return tuple(out)


def _key(domain: Domain) -> tuple[list[tuple[int, int | None, int]], ...]:
    return tuple(sizes.segments() for sizes in domain)


def nonnegative_sizes(analysis: SizeAnalysis) -> list[Constraint]:
    """Every varying size of every node, at least 0, once per formula."""
    # Keyed by the size itself: `d >= 0` has the key of `d`, so one constraint is built per
    # formula rather than per dim of every node.
    found: dict[Poly, Constraint] = {}
    zero = Poly.of(0)
    tainted = analysis.tainted
    for node, value in analysis.prop.values.items():
        if node in tainted:
            continue
        for t in flat_args(value):
            for d in t.shape:
                if d in found or d.opaque or not (d.vars - {BATCH}):
                    continue
                found[d] = Constraint(node, "min", d, ">=", zero, no_message)
    return list(found.values())
