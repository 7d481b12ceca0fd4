"""The accepted domain per axis, per-node dependence on the input size, and the bounds that
explain each edge of the domain."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import fx

from shapetrace.passes import PassContext
from shapetrace.passes.sizing.attribution import Attribution, attribute
from shapetrace.passes.sizing.coupling import Combination, Coupling, coupled
from shapetrace.passes.sizing.expr import Evaluator, Mono, Poly, Sym, Unknown
from shapetrace.passes.sizing.formulas import FormulaWriter, factor
from shapetrace.passes.sizing.intset import IntSet
from shapetrace.passes.sizing.paths import Paths
from shapetrace.passes.sizing.propagate import Propagator
from shapetrace.passes.sizing.solver import LIMIT, Solver
from shapetrace.passes.sizing.tensors import BATCH, KIND_TEXT, Constraint, flat_args


class SizeAnalysis:
    """The accepted sizes per axis, each with the other axes at a reference size that is
    accepted (the analysed input when it is), and what limits them."""

    def __init__(self, context: PassContext) -> None:
        self.context = context
        self.prop = Propagator(context)
        self.prop.run()
        self.axes = self.prop.axes
        self.constraints = self.prop.constraints
        # Constraints past a call without a size rule rest on guessed sizes: they prove
        # nothing, so the domain is built from the others and left open.
        self.tainted = _downstream(self.prop.gm.graph, {n for n, _ in self.prop.notes})
        unique: dict[str, Constraint] = {}
        for c in self.constraints:
            if c.node not in self.tainted:
                unique.setdefault(c.key, c)
        self.unique = list(unique.values())
        self.env0 = self.prop.env0
        self.reference = self._reference() if not self.prop.notes else dict(self.env0)
        self.sets: dict[str, IntSet] = {}
        self.solvers: dict[str, Solver] = {}
        self.left_out: list[Constraint] = []
        for axis in self.axes:
            solver = Solver({axis}, {k: v for k, v in self.reference.items() if k != axis})
            found, left = solver.solve(self.unique)
            self.sets[axis], self.solvers[axis] = found, solver
            self.left_out += [c for c in left if c not in self.left_out]
        # What no rule decides; then `sets` holds only what is proven (the analysed size, if
        # it ran) and `possible` the sizes the rules that are known leave possible.
        self.open = self._open()
        self.guard_sites: dict[str, str] = {}  # guard text -> `file:line` that asked it
        self.possible = dict(self.sets)
        if self.open:
            ran = context.report.failure is None and self.first_failure(self.env0) is None
            for axis in self.axes:
                n = self.reference[axis]
                self.sets[axis] = IntSet.interval(n, n) if ran else IntSet.empty()
        elif context.capture.symbolic is not None and self.prop.exported is not None:
            # The graph of a capture by torch.export is the model's only where its guards
            # hold: elsewhere the sizes are another path's, known only as far as the
            # capture's other paths and its checks tell.
            paths = Paths(context.capture.symbolic, self.prop.exported, self.reference)
            for axis in self.axes:
                self.sets[axis], self.possible[axis] = paths.sets(axis, self.sets[axis])
            self.open = paths.questions(self)
            self.guard_sites = paths.sites
        # The sizes each axis's own constraints allow, whatever the other axes: at the
        # reference batch (`own`, where coupled constraints pick their combinations) and at
        # any batch (`free`, where formulas may be simplified).
        self._bounds: list[dict[str, Any]] | None = None
        self._attribution: Attribution | None = None
        self.own: dict[str, IntSet] = {}
        self.free: dict[str, IntSet] = {}
        for axis in self.axes:
            solver = self.solvers[axis]
            needed = self._projection(axis)
            own, _ = solver.solve(c for c in self.unique if not c.vars - {axis, BATCH})
            free, _ = solver.solve(c for c in self.unique if not c.vars - {axis})
            self.own[axis], self.free[axis] = own.intersect(needed), free.intersect(needed)

    def _projection(self, axis: str) -> IntSet:
        """Sizes of `axis` that constraints over several axes leave possible whatever the
        others: a product of sizes along different axes equal to a constant `t` needs each
        factor to divide `t` (`(H - 6)*(W - 6) == 36` needs `H - 6` in 1, 2, 3, 4, 6, ...)."""
        found = IntSet.full()
        solver = Solver({axis}, {})
        for c in self.unique:
            if c.rel != "==" or c.alternatives or c.opaque:
                continue
            if len(c.vars - {BATCH}) < 2 or axis not in c.vars:
                continue
            expr = _without_batch(c.expr)
            content, parts = factor(expr - expr.const)
            target = -expr.const
            if len(parts) < 2 or target == 0 or target % content:
                continue
            quotient = abs(target // content)
            if quotient > LIMIT:
                continue
            for part in parts:
                if part.vars != {axis}:
                    continue
                allowed = IntSet.empty()
                for d in _divisors(quotient):
                    for value in (d, -d):
                        exact = solver.where(part - value, "==")
                        if exact is None:
                            break
                        allowed = allowed.union(exact)
                    else:
                        continue
                    break
                else:
                    found = found.intersect(allowed)
        return found

    def _open(self) -> list[dict[str, Any]]:
        names = self.prop.names
        out = [
            {"node": names.get(node, node.name), "op": label, "reason": text}
            for node, text, label in self.prop.unruled
        ]
        out += [
            {
                "node": names.get(c.node, c.node.name),
                "reason": f"a constraint no solver follows exactly: {c.lhs} {c.rel} {c.rhs}",
            }
            for c in self.left_out
        ]
        return out

    def first_failure(self, env: dict[str, int]) -> Constraint | None:
        """The first constraint, in graph order, that the sizes in `env` violate."""
        # Past a call without a size rule a constraint is a guess: it never breaks.
        return self._first_violated(env, lambda c: not c.opaque and c.node not in self.tainted)

    def _first_violated(
        self, env: dict[str, int], counts: Callable[[Constraint], bool]
    ) -> Constraint | None:
        ev = Evaluator(env)
        for c in self.constraints:
            if not counts(c):
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
    def samples(self, axis: str) -> list[int]:
        segments = self.possible[axis].segments()
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
            for n in self.samples(axis):
                try:
                    values = tuple(solver.value(d, n) for d in dims)
                except Unknown:
                    break
                if seen is None:
                    seen = values
                elif values != seen:
                    return True
        return False

    @property
    def attribution(self) -> Attribution:
        """The fewest nodes the domain is attributed to, and what implies the others."""
        if self._attribution is None:
            self._attribution = attribute(self)
        return self._attribution

    def dependence(self) -> dict[fx.Node, str]:
        """`bound` for the nodes the domain is attributed to; else `scales` when the node's
        shape involves a spatial axis (or, where no rule gives its sizes, follows one), and
        `fixed` when it does not, even where the domain is a single size."""
        bound = self.attribution.limiting
        axes = set(self.axes)
        out: dict[fx.Node, str] = {}
        for node, value in self.prop.values.items():
            if node in bound:
                out[node] = "bound"
                continue
            tensors = flat_args(value)
            dims = [(d, ax) for t in tensors for d, ax in zip(t.shape, t.axes, strict=True)]
            if not dims:
                continue
            # A size without a rule scales when its dim follows an input axis.
            if any(d.vars & axes or (d.opaque and ax is not None) for d, ax in dims):
                out[node] = "scales"
            elif not any(d.opaque for d, _ in dims):
                out[node] = "fixed"
        return out

    # -- bounds --------------------------------------------------------------------------
    def _in_graph_order(self, nodes: set[fx.Node]) -> list[fx.Node]:
        return [n for n in self.prop.gm.graph.nodes if n in nodes]

    def env_at(self, axis: str, n: int) -> dict[str, int]:
        return {**self.reference, axis: n}

    def why(self, axis: str, n: int, bound: bool = False) -> Constraint | None:
        """The first constraint that rejects `axis` = n (`bound`: of a bound node)."""
        env = self.env_at(axis, n)
        if not bound:
            return self.first_failure(env)
        limiting = set(self.attribution.bound)
        return self._first_violated(env, lambda c: c.node in limiting and not c.opaque)

    def message(self, c: Constraint, env: dict[str, int]) -> str:
        ev = Evaluator(env)
        try:
            return c.message(ev.poly)
        except Unknown:
            return f"{self.prop.names.get(c.node, c.node.name)}: {KIND_TEXT[c.kind]}"

    def bounds(self) -> list[dict[str, Any]]:
        """What limits the domain: each edge and step per axis, the constraints that couple
        axes, and what is not followed exactly (computed once). An edge found at a node whose
        constraint others imply (the first to fail there) names them in `implied_by`."""
        if self._bounds is None:
            self._bounds = self._find_bounds()
            implied = self.implied_names()
            for entry in self._bounds:
                if entry["node"] in implied:
                    entry["implied_by"] = implied[entry["node"]]
        return self._bounds

    def implied_names(self) -> dict[str, list[str]]:
        """Each implied node's name, with the names of the bound nodes that imply it."""
        names = self.prop.names
        return {
            names.get(node, node.name): [names.get(b, b.name) for b in by]
            for node, by in self.attribution.implied.items()
        }

    def _find_bounds(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        names = self.prop.names
        for axis in self.axes:
            found = self.possible[axis]
            segments = found.segments()
            if not segments:
                c = self.why(axis, self.reference[axis])
                if c is not None:
                    entries.append(
                        self._entry(
                            c,
                            axis,
                            f"no {axis} is accepted",
                            self.env_at(axis, self.reference[axis]),
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
                c = self.why(axis, n)
                if c is None:
                    continue
                kind = "periodic" if "steps" in text else "min" if ">=" in text else "max"
                env = self.env_at(axis, n)
                entry = self._entry(c, axis, f"{text}: at {axis} = {n}", env, kind)
                entry["value"] = value
                entries.append(entry)
        entries += self._coupled()
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

    def _coupled(self) -> list[dict[str, Any]]:
        """One entry per node whose constraints tie axes together: the constraints as a
        formula and, for two axes, the exact combinations of sizes the node admits."""
        groups: dict[tuple[fx.Node, tuple[str, ...]], list[Constraint]] = {}
        for c in self.unique:
            spatial = tuple(a for a in self.axes if a in c.vars)
            if len(spatial) > 1 and not c.opaque:
                groups.setdefault((c.node, spatial), []).append(c)
        writer = FormulaWriter(self, everywhere=True)
        entries = []
        for (node, spatial), group in groups.items():
            found = Coupling(self, spatial, group).combinations() if len(spatial) == 2 else None
            if found is not None and not coupled(found, spatial[1]):
                continue
            if found is None and not any(self._couples(c, list(spatial)) for c in group):
                continue
            conditions = [writer.constraint(c) for c in group]
            formula = (
                " and ".join(f"({t})" if " or " in t else t for t in conditions if t)
                if all(conditions)
                else None
            )
            text = formula or " and ".join(f"{c.lhs} {c.rel} {c.rhs}" for c in group)
            entry: dict[str, Any] = {
                "node": self.prop.names.get(node, node.name),
                "axis": ",".join(spatial),
                "constraint": f"couples {' and '.join(spatial)}: {text}; {_admits(found)}",
                "kind": "coupled",
            }
            if formula:
                entry["formula"] = formula
            if found is not None:
                entry["combinations"] = [_combination(c) for c in found[:MAX_LISTED]]
                if len(found) > MAX_LISTED:
                    entry["omitted"] = len(found) - MAX_LISTED
                entry["sets"] = {
                    axis: _segments(_union(c.sets[axis] for c in found)) for axis in spatial
                }
            entries.append(entry)
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
            "constraint": f"{text}, {self.message(c, env)}",
            "kind": kind,
        }

    def domain(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for axis in self.axes:
            data[axis] = _segments(self.sets[axis])
        data["bounds"] = self.bounds()
        data["at"] = {a: self.reference[a] for a in self.axes}
        limiting = self._in_graph_order(self.attribution.limiting)
        data["attribution"] = {
            "bound": [self.prop.names.get(n, n.name) for n in limiting],
            "implied": self.implied_names(),
        }
        if self.open:
            data["open"] = self.open
            data["possible"] = {a: _segments(self.possible[a]) for a in self.axes}
        return data


MAX_LISTED = 64  # combinations listed in a coupled bound


def _segments(found: IntSet) -> list[list[int | None]]:
    """A set as the report writes it: `[lo, hi]`, or `[lo, hi, step]` for a progression."""
    return [[lo, hi] if step == 1 else [lo, hi, step] for lo, hi, step in found.segments()]


def _union(sets: Iterable[IntSet]) -> IntSet:
    out = IntSet.empty()
    for s in sets:
        out = out.union(s)
    return out


def _combination(c: Combination) -> dict[str, Any]:
    entry: dict[str, Any] = {axis: _segments(s) for axis, s in c.sets.items()}
    if c.map is not None:
        entry["map"] = list(c.map)
    return entry


def _admits(found: list[Combination] | None) -> str:
    if found is None:
        return "each axis's set holds with the other axes at the reference size"
    maps = [c.map for c in found]
    if len(found) <= 12 and all(m is not None for m in maps):
        return "admits maps " + ", ".join(f"{m[0]}x{m[1]}" for m in maps if m is not None)
    return f"admits {len(found)} combinations of sizes (see combinations)"


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def _downstream(graph: fx.Graph, sources: set[fx.Node]) -> set[fx.Node]:
    """The nodes that read, directly or not, a value of `sources` (and the sources)."""
    found = set(sources)
    if not found:
        return found
    for node in graph.nodes:
        if node not in found and any(n in found for n in node.all_input_nodes):
            found.add(node)
    return found


def _without_batch(p: Poly) -> Poly:
    """`p / N` when N divides every term (`3136*N*h*w - 200704*N` is zero where `3136*h*w -
    200704` is, N being at least 1), else `p`."""
    batch = Sym(BATCH)
    if p.const or not all(batch in mono for mono, _ in p.terms):
        return p
    terms: dict[Mono, int] = {}
    for mono, coef in p.terms:
        rest = list(mono)
        rest.remove(batch)
        terms[tuple(rest)] = coef
    const = terms.pop((), 0)
    return Poly(terms, const)
