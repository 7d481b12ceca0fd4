"""Size rules of layers that read channels or features and keep the spatial size: Linear,
normalisations, embeddings, attention; module and functional forms alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from shapetrace.ops import Call, Family
from shapetrace.passes.sizing.expr import Poly
from shapetrace.passes.sizing.tensors import (
    BATCH,
    Rule,
    STensor,
    Unsupported,
    as_tensor,
    const_shape,
    describe,
    label,
    prod,
    say,
)

if TYPE_CHECKING:
    from shapetrace.passes.sizing.propagate import Propagator


def _linear(p: Propagator, call: Call) -> STensor:
    x = as_tensor(call.input)
    out_features, in_features = const_shape(call.get("weight"))
    _features(p, x, in_features, describe(call, f"linear({in_features} -> {out_features})"))
    return x.like((*x.shape[:-1], Poly.of(out_features)), (*x.axes[:-1], None))


def _features(p: Propagator, x: STensor, features: int, desc: str) -> None:
    name = p.name
    got = x.shape[-1]
    pattern = "flatten" if got.vars - {BATCH} else ""
    p.require(
        "features",
        got,
        "==",
        features,
        say(f"{name}: {desc} received ", got, " features"),
        pattern=pattern,
    )


# -- normalisation ------------------------------------------------------------------------------


def _norm(p: Propagator, call: Call) -> STensor:
    x = as_tensor(call.input)
    kind = label(call)
    if call.name == "batch_norm":
        _channels(p, call, x, call.get("num_features"))
        if _batch_statistics(call):
            count = x.shape[0] * prod(x.shape[2:])
            _more_than_one(p, count, f"{kind} in training mode (per channel)")
    elif call.name == "instance_norm":
        if call.module is not None:
            own_stats = call.get("training", False) or not call.get("track_running_stats", False)
        else:
            own_stats = bool(call.get("use_input_stats", True))
        if own_stats:
            rank = int(call.get("rank", x.ndim - 2))
            _more_than_one(p, prod(x.shape[x.ndim - rank :]), f"{kind} (spatially)")
    elif call.name == "group_norm":
        _channels(p, call, x, call.get("num_channels"))
        groups = int(call.get("num_groups"))
        count = (x.shape[0] * x.shape[1]).floordiv(groups) * prod(x.shape[2:])
        _more_than_one(p, count, f"{kind} (per group)")
    elif call.name == "layer_norm":
        shape = call.get("normalized_shape")
        shape = [shape] if isinstance(shape, (int, Poly)) else list(shape)
        if not any(isinstance(s, Poly) and s.vars for s in shape):
            _normalized_shape(p, x, [int(Poly.of(s).const) for s in shape], kind)
    return x


def _batch_statistics(call: Call) -> bool:
    """Does a batch norm normalise by the batch's own statistics? A module does in training
    mode or without running statistics (a frozen one never); `F.batch_norm` when told to."""
    module = call.module
    if module is None:
        return bool(call.get("training", False))
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return False
    return module.training or (module.running_mean is None and module.running_var is None)


def _channels(p: Propagator, call: Call, x: STensor, count: int | None) -> None:
    if x.ndim >= 2 and count is not None:
        what = f"{label(call)} channels"
        p.equal_sizes(x.shape[1], Poly.of(count), what, kind="features")


def _more_than_one(p: Propagator, count: Poly, what: str) -> None:
    name = p.name
    p.require(
        "stats",
        count,
        "!=",
        1,
        say(f"{name}: {what} needs more than 1 value, gets ", count),
    )


def _normalized_shape(p: Propagator, x: STensor, shape: Sequence[int], desc: str) -> None:
    name = p.name
    for i, size in enumerate(shape):
        got = x.shape[x.ndim - len(shape) + i]
        p.require(
            "features",
            got,
            "==",
            int(size),
            say(f"{name}: {desc} normalises over {size}, gets ", got),
            pattern="flatten" if got.vars - {BATCH} else "",
        )


# -- embeddings and attention -----------------------------------------------------------------


def _embedding(p: Propagator, call: Call) -> STensor:
    x = as_tensor(call.input)
    num, dim = const_shape(call.get("weight"))
    desc = describe(call, f"embedding({num}, {dim})")
    if x.vmax is not None and x.vmax.vars - {BATCH}:
        name, top = p.name, x.vmax
        p.require(
            "index",
            top,
            "<=",
            num - 1,
            say(f"{name}: {desc} has {num} rows, gets position ", top),
            pattern="posembed",
        )
    return STensor((*x.shape, Poly.of(dim)), (*x.axes, None))


def _attention(p: Propagator, call: Call) -> Any:
    if call.name == "transformer":
        # A decoder (or nn.Transformer) answers in the shape of its target sequence.
        return as_tensor(call.get("tgt", call.input))
    q, k, v = (as_tensor(call.get(n)) for n in ("query", "key", "value"))
    if call.name == "scaled_dot_product_attention":
        p.equal_sizes(k.shape[-2], v.shape[-2], "attention keys and values")
        return STensor((*q.shape[:-1], v.shape[-1]), (*q.axes[:-1], None))
    embed_dim = call.get("embed_dim", call.get("embed_dim_to_check"))
    heads = call.get("num_heads")
    if embed_dim is None or heads is None:
        raise Unsupported("multi-head attention without its sizes")
    batch_first = bool(call.get("batch_first", False))
    seq = 1 if batch_first or q.ndim == 2 else 0
    p.equal_sizes(
        k.shape[seq if k.ndim == 3 else 0],
        v.shape[seq if v.ndim == 3 else 0],
        "attention keys and values",
    )
    out = q.like((*q.shape[:-1], Poly.of(embed_dim)), (*q.axes[:-1], None))
    if not call.get("need_weights", True):
        return (out, None)
    lq, lk = q.shape[seq if q.ndim == 3 else 0], k.shape[seq if k.ndim == 3 else 0]
    batch = [q.shape[0 if batch_first else 1]] if q.ndim == 3 else []
    per_head = [] if call.get("average_attn_weights", True) else [Poly.of(heads)]
    shape = [*batch, *per_head, lq, lk]
    return (out, STensor(tuple(shape), (None,) * len(shape)))


RULES: dict[Family, Rule] = {
    Family.LINEAR: _linear,
    Family.NORM: _norm,
    Family.EMBEDDING: _embedding,
    Family.ATTENTION: _attention,
}
