"""Size rules of layers that read channels or features and keep the spatial size: Linear,
normalisations, embeddings, attention, elementwise layers; module and functional forms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
import torchvision.ops
from torch import nn

from shapetrace.passes.shapes import describe_module
from shapetrace.passes.sizing.expr import Poly
from shapetrace.passes.sizing.tensors import (
    BATCH,
    Rule,
    STensor,
    Unsupported,
    as_tensor,
    prod,
    say,
)

if TYPE_CHECKING:
    from shapetrace.passes.sizing.propagate import Propagator


def _linear_features(p: Propagator, x: STensor, features: int, desc: str) -> None:
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


def _linear(p: Propagator, m: nn.Linear, x: Any, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    _linear_features(p, x, m.in_features, describe_module(m))
    return x.like((*x.shape[:-1], Poly.of(m.out_features)), (*x.axes[:-1], None))


def _same(p: Propagator, m: nn.Module, x: Any, *_: Any, **__: Any) -> STensor:
    return as_tensor(x)


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
        say(f"{name}: {what} needs more than 1 value, gets ", count),
    )


def _batch_norm(
    p: Propagator, m: nn.modules.batchnorm._BatchNorm, x: Any, *_: Any, **__: Any
) -> STensor:
    x = as_tensor(x)
    _channels(p, m, x, m.num_features)
    if m.training or (m.running_mean is None and m.running_var is None):
        _more_than_one(
            p, x.shape[0] * prod(x.shape[2:]), f"{type(m).__name__} in training mode (per channel)"
        )
    return x


def _instance_norm(
    p: Propagator, m: nn.modules.instancenorm._InstanceNorm, x: Any, *_: Any, **__: Any
) -> STensor:
    x = as_tensor(x)
    if m.training or not m.track_running_stats:
        rank = {"1d": 1, "2d": 2, "3d": 3}[type(m).__name__[-2:].lower()]
        _more_than_one(p, prod(x.shape[x.ndim - rank :]), f"{type(m).__name__} (spatially)")
    return x


def _group_norm(p: Propagator, m: nn.GroupNorm, x: Any, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    _channels(p, m, x, m.num_channels)
    count = (x.shape[0] * x.shape[1]).floordiv(m.num_groups) * prod(x.shape[2:])
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
            say(f"{name}: {desc} normalises over {size}, gets ", got),
            pattern="flatten" if got.vars - {BATCH} else "",
        )


def _layer_norm(p: Propagator, m: Any, x: Any, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    _normalized_shape(p, x, m.normalized_shape, type(m).__name__)
    return x


def _embedding_lookup(p: Propagator, x: Any, num: int, dim: int, desc: str) -> STensor:
    x = as_tensor(x)
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
    q, k, v = as_tensor(query), as_tensor(key), as_tensor(value)
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
    return as_tensor(x)


def elementwise_types() -> tuple[type, ...]:
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


def _linear_fn(p: Propagator, x: Any, weight: Any, *_: Any, **__: Any) -> STensor:
    x, w = as_tensor(x), as_tensor(weight)
    features = w.shape[-1]
    if features.vars:
        raise Unsupported("a linear with a varying weight")
    _linear_features(p, x, features.const, f"linear({features.const} -> {w.shape[0]})")
    return STensor((*x.shape[:-1], w.shape[0]), (*x.axes[:-1], None))


def _layer_norm_fn(p: Propagator, x: Any, normalized_shape: Any, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    shape = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    if any(isinstance(s, Poly) and s.vars for s in shape):
        return x
    _normalized_shape(p, x, [int(Poly.of(s).const) for s in shape], "layer_norm")
    return x


def _batch_norm_fn(p: Propagator, x: Any, *args: Any, **kwargs: Any) -> STensor:
    x = as_tensor(x)
    training = args[4] if len(args) > 4 else kwargs.get("training", False)
    if training:
        _more_than_one(p, x.shape[0] * prod(x.shape[2:]), "batch_norm in training mode")
    return x


def _group_norm_fn(p: Propagator, x: Any, num_groups: int, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    count = (x.shape[0] * x.shape[1]).floordiv(num_groups) * prod(x.shape[2:])
    _more_than_one(p, count, "group_norm (per group)")
    return x


def _embedding_fn(p: Propagator, x: Any, weight: Any, *_: Any, **__: Any) -> STensor:
    w = as_tensor(weight)
    if any(d.vars for d in w.shape):
        raise Unsupported("an embedding with a varying table")
    num, dim = w.shape[0].const, w.shape[1].const
    return _embedding_lookup(p, x, num, dim, f"embedding({num}, {dim})")


def _sdpa(p: Propagator, q: Any, k: Any, v: Any, *_: Any, **__: Any) -> STensor:
    q, k, v = as_tensor(q), as_tensor(k), as_tensor(v)
    p.equal_sizes(k.shape[-2], v.shape[-2], "attention keys and values")
    return STensor((*q.shape[:-1], v.shape[-1]), (*q.axes[:-1], None))


MODULE_RULES: list[tuple[type | tuple[type, ...], Rule]] = [
    (nn.Linear, _linear),
    (nn.modules.batchnorm._BatchNorm, _batch_norm),
    (nn.modules.instancenorm._InstanceNorm, _instance_norm),
    (nn.GroupNorm, _group_norm),
    ((nn.LayerNorm, nn.RMSNorm), _layer_norm),
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
    (elementwise_types(), _same),
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

FUNCTION_RULES: dict[Any, Rule] = {
    F.linear: _linear_fn,
    F.layer_norm: _layer_norm_fn,
    F.batch_norm: _batch_norm_fn,
    F.group_norm: _group_norm_fn,
    F.embedding: _embedding_fn,
    F.scaled_dot_product_attention: _sdpa,
}
