"""Per-op size rules, gathered into the tables the propagator dispatches on.

A rule takes the propagator and the call's arguments, with tensors as `STensor`s, and returns
the call's value; it records constraints through `Propagator.require`. A module rule is picked
by `isinstance`, a function rule by the called object, a method rule by the method's name.
"""

from __future__ import annotations

from typing import Any

from shapetrace.passes.sizing.rules import features, ops, shape, spatial
from shapetrace.passes.sizing.tensors import Rule

MODULE_RULES: list[tuple[type | tuple[type, ...], Rule]] = [
    *spatial.MODULE_RULES,
    *features.MODULE_RULES,
    *shape.MODULE_RULES,
]
FUNCTION_RULES: dict[Any, Rule] = {
    **ops.FUNCTION_RULES,
    **shape.FUNCTION_RULES,
    **features.FUNCTION_RULES,
    **spatial.FUNCTION_RULES,
}
METHOD_RULES: dict[str, Rule] = {**ops.METHOD_RULES, **shape.METHOD_RULES}
