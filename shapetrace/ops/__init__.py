"""The op registry: what every pass knows about an op, in one place.

`lookup(node, gm)` gives a node's entry (`Op`: name, family, spellings); `bind(node, args,
kwargs, gm)` its call with arguments by name (`Call`); `window`, `resample` and `pad` read the
typed geometry of windows, resampling and padding from a bound call. Passes implement one rule
per `Family`.
"""

from shapetrace.ops.families import Family
from shapetrace.ops.geometry import BindError, Pad, Resample, Window, ntuple, pad, resample, window
from shapetrace.ops.registry import Call, Op, bind, bind_call, families, lookup, lookup_target, ops

__all__ = [
    "BindError",
    "Call",
    "Family",
    "Op",
    "Pad",
    "Resample",
    "Window",
    "bind",
    "bind_call",
    "families",
    "lookup",
    "lookup_target",
    "ntuple",
    "ops",
    "pad",
    "resample",
    "window",
]
