"""The domain of a capture by `torch.export`: where its graph is the model's, and what the
model does at the other sizes.

The capture's guards are the conditions under which its graph is the model's graph
(`shapetrace.capture_symbolic`). Along one axis, the other axes at the reference size:

- where every `path`, `implied` and `unknown` guard holds, the sizes are this graph's: the
  size rules (and the `rejects` guards no rule spells) decide them exactly;
- where a `path` guard fails, the model takes another path: a captured one decides them by
  its own guards (as `SymbolicCapture.accepts` does), an uncaptured one leaves them unknown;
- where an `implied` guard fails (no size breaking it alone was found, so nothing says whether
  the model raises or takes another path there) or an `unknown` one (not tried on meta), the
  sizes are unknown, except where a `rejects` guard asked before it fails (the guards are in
  the order the model asked them, and the model raised at that one first).

`layout` guards choose memory layouts, not paths; `data` guards are about data-dependent
sizes, not H and W (they are listed in the domain's `open` all the same).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from shapetrace.passes.sizing.exported import WINDOW, GuardSet, Known, SizeNames
from shapetrace.passes.sizing.intset import IntSet

if TYPE_CHECKING:
    from shapetrace.passes.sizing.domain import SizeAnalysis

_ON_PATH = ("path", "implied", "unknown")


class Paths:
    """The sets of sizes a symbolic capture (and the other paths it captured) decides."""

    def __init__(self, symbolic: Any, names: SizeNames, reference: dict[str, int]) -> None:
        self.symbolic = symbolic
        self.names = names
        self.reference = reference
        self.captures = [(symbolic, names)] + [
            (alt, SizeNames(alt, names.axes)) for alt in symbolic.alternatives
        ]
        self.known: dict[tuple[int, str], dict[int, Known]] = {}  # (capture, axis) -> guard
        self.unknown: dict[str, IntSet] = {}
        self.sites: dict[str, str] = {}  # guard text -> `file:line` of each open question

    def _guards(self, index: int, axis: str) -> dict[int, Known]:
        key = (index, axis)
        if key not in self.known:
            capture, names = self.captures[index]
            sets = GuardSet(names, axis, self.reference)
            # Checks already in the captured graph are the size rules' (other paths have none).
            checked = {id(g) for g in capture.checks.values()} if index == 0 else set()
            self.known[key] = {
                id(g): sets.known(g)
                for g in capture.guards
                if g.kind in _ON_PATH or (g.kind == "rejects" and id(g) not in checked)
            }
        return self.known[key]

    def sets(self, axis: str, rules: IntSet) -> tuple[IntSet, IntSet]:
        """(proven, possible) along `axis`: the sizes known to be accepted, and those not
        known to be rejected. `rules` is what the size rules allow on the captured graph."""
        accepted, rejected = IntSet.empty(), IntSet.empty()
        for index, (capture, names) in enumerate(self.captures):
            known = self._guards(index, axis)
            on = Known.everywhere()
            checks = Known.everywhere()
            for g in capture.guards:
                if id(g) not in known:
                    continue
                if g.kind in _ON_PATH:
                    on = on.both(known[id(g)])
                else:
                    checks = checks.both(known[id(g)])
            if index == 0:
                # The captured graph: its size rules, and the model's checks no rule spells.
                checks = checks.both(Known.exact(rules))
            ok = on.holds.intersect(checks.holds)
            pinned = names.pinned.get(axis)
            if pinned is not None:
                # The graph's sizes hold at the pinned size alone; the guards still say where
                # the model rejects others (a second input fixing the size: `Eq(H, 64)`).
                ok = ok.intersect(IntSet.interval(pinned, pinned))
            if index > 0 and capture.uncaptured is not None:
                # Another path whose capture ended at a call it could not follow proves no
                # size accepted (the captured graph's own cut is marked in `open`).
                ok = IntSet.empty()
            accepted = accepted.union(ok)
            rejected = rejected.union(on.holds.intersect(checks.fails))
            rejected = rejected.union(self._rejected_in_order(index, axis))
        possible = rejected.complement()
        self.unknown[axis] = possible.intersect(accepted.complement())
        return accepted, possible

    def _rejected_in_order(self, index: int, axis: str) -> IntSet:
        """Sizes a `rejects` guard rejects before any `implied` or `unknown` guard asked after
        it is reached: guards are in the order the model asked them, so where every `path`
        guard and every guard asked before a rejecting one hold and it fails, the model raises
        there (as it did at its probe) whatever the later guards say."""
        capture, names = self.captures[index]
        sets = GuardSet(names, axis, self.reference)
        known = self._guards(index, axis)

        def of(g: Any) -> Known:
            return known[id(g)] if id(g) in known else sets.known(g)

        path = Known.everywhere()
        for g in capture.guards:
            if g.kind == "path":
                path = path.both(of(g))
        asked = Known.everywhere()
        out = IntSet.empty()
        for g in capture.guards:
            if g.kind == "rejects":
                out = out.union(path.holds.intersect(asked.holds).intersect(of(g).fails))
            elif g.kind in ("implied", "unknown"):
                asked = asked.both(of(g))
        return out

    def questions(self, analysis: SizeAnalysis) -> list[dict[str, Any]]:
        """One `open` entry per guard (of the captured graph, then of the other paths
        captured) that leaves sizes unknown, and per axis the export fixed."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, (capture, names) in enumerate(self.captures):
            for axis, n in names.pinned.items():
                unknown = self.unknown.get(axis)
                if unknown is None or unknown.is_empty() or f"pinned {axis}" in seen:
                    continue
                seen.add(f"pinned {axis}")
                reason = (
                    f"the export fixed {axis} at {n} (the size is not symbolic in its graph), "
                    f"so its graph is the model's only at {axis} = {n}: other sizes are unknown"
                )
                out.append({"node": "", "reason": reason, "pinned": axis})
            for g in capture.guards:
                if g.text in seen or (g.kind not in _ON_PATH and g.kind != "rejects"):
                    continue
                how = self._leaves_unknown(index, g, analysis.axes)
                if how is not None:
                    seen.add(g.text)
                    out.append(question(self.symbolic, g, how))
                    self.sites[g.text] = where_text(g).split(" ", 1)[0]
        if not out and any(not u.is_empty() for u in self.unknown.values()):
            out.append({"node": "", "reason": "sizes the captured paths leave undecided"})
        return out

    def _leaves_unknown(self, index: int, g: Any, axes: tuple[str, ...]) -> str | None:
        """How the guard was decided ("exact", "evaluated", "unnamed") if sizes where it
        fails (or, for a check, where it is undecided) are unknown; else None."""
        leaves = False
        how = "exact"
        for axis in axes:
            unknown = self.unknown.get(axis)
            known = self._guards(index, axis).get(id(g))
            if unknown is None or known is None:
                continue
            if known.how != "exact":
                how = known.how
            if g.kind == "rejects":
                unsure = known.holds.union(known.fails).complement()
            else:
                unsure = known.holds.complement()
            if not unknown.intersect(unsure).is_empty():
                leaves = True
        return how if leaves else None


def question(symbolic: Any, guard: Any, how: str = "exact") -> dict[str, Any]:
    """The `open` entry for a guard: what the model does where it fails, as far as known."""
    where = where_text(guard)
    if guard.kind == "path":
        probe = guard.probe or {}
        at = "x".join(str(v) for v in probe.values())
        covered = [c for c in symbolic.alternatives if c.on_path(probe)]
        if covered:
            verdict = symbolic.accepts(probe)
            taken = {True: "accepted", False: "rejected", None: "undecided"}[verdict]
            reason = (
                f"where {guard.text} fails the model takes another path ({where}), captured "
                f"too: {at} is {taken} there"
            )
        else:
            reason = (
                f"where {guard.text} fails the model takes another path ({where}), not "
                "captured: sizes there are unknown"
            )
    elif guard.kind == "rejects":
        reason = f"the model rejects sizes where {guard.text} fails ({where})"
    elif guard.kind == "implied":
        reason = (
            f"where {guard.text} fails ({where}) the model may raise or take another path: no "
            "size breaking it alone was found, so sizes there are unknown"
        )
    else:
        cause = f": {guard.message}" if guard.message else ""
        reason = f"sizes where {guard.text} fails could not be tried on meta ({where}){cause}"
    if how == "evaluated":
        reason += f"; no formula writes it exactly, so it was evaluated at sizes up to {WINDOW}"
    elif how == "unnamed":
        reason += "; it is over a size torch did not name, known only where it was captured"
    return {"node": guard.module or "", "guard": guard.text, "reason": reason}


def where_text(guard: Any) -> str:
    loc = f"{os.path.basename(guard.file)}:{guard.line}" if guard.file else "?"
    code = f" `{guard.code}`" if guard.code else ""
    return f"{loc}{code}"


__all__ = ["Paths", "question", "where_text"]
