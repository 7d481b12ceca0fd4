"""Size rules, one per op family of the op registry (`shapetrace.ops`).

A rule takes the propagator and the bound call (`ops.Call`: arguments by name, tensors as
`STensor`s, sizes as `Poly`s) and returns the call's value; it records constraints through
`Propagator.require`. Module, functional and method spellings of an op share its rule.
"""

from __future__ import annotations

from shapetrace.ops import Family
from shapetrace.passes.sizing.rules import features, ops, shape, spatial
from shapetrace.passes.sizing.tensors import Rule

FAMILY_RULES: dict[Family, Rule] = {**ops.RULES, **shape.RULES, **spatial.RULES, **features.RULES}

__all__ = ["FAMILY_RULES"]
