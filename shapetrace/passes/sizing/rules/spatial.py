"""Size rules of ops that change a map's spatial size: convolutions, pools (fixed and
adaptive), padding, interpolation, pixel (un)shuffle; module and functional forms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
import torchvision.ops
from torch import nn

from shapetrace.passes.shapes import describe_module
from shapetrace.passes.sizing.expr import Evaluator, Poly, ceil_pool, scaled
from shapetrace.passes.sizing.tensors import (
    Rule,
    STensor,
    Unsupported,
    as_tensor,
    ints,
    say,
)

if TYPE_CHECKING:
    from shapetrace.passes.sizing.propagate import Propagator


def _spatial_split(x: STensor, rank: int) -> tuple[int, int]:
    """Index of the channel dim and of the first spatial dim of a (batched or not) input."""
    if x.ndim not in (rank + 1, rank + 2):
        raise Unsupported(f"a {x.ndim}-d input to a {rank}-d op")
    first = x.ndim - rank
    return first - 1, first


def _conv(p: Propagator, m: nn.modules.conv._ConvNd, x: Any, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    rank = len(m.kernel_size)
    ch, first = _spatial_split(x, rank)
    desc = describe_module(m)
    p.equal_sizes(x.shape[ch], Poly.of(m.in_channels), f"{desc} input channels", kind="features")
    shape = list(x.shape)
    shape[ch] = Poly.of(m.out_channels)
    transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
    for i in range(rank):
        d = first + i
        size, axis = x.shape[d], p.axis_of(x, d)
        k, s, dil = m.kernel_size[i], m.stride[i], m.dilation[i]
        # padding="same" (None here) keeps the size; "valid" is no padding.
        pad = (
            m.padding[i] if not isinstance(m.padding, str) else 0 if m.padding == "valid" else None
        )
        if transposed:
            out_pad = m.output_padding[i]
            assert pad is not None
            shape[d] = (size - 1) * s - 2 * pad + dil * (k - 1) + out_pad + 1
            continue
        if pad is None:
            shape[d] = size
            continue
        mode = getattr(m, "padding_mode", "zeros")
        if mode != "zeros" and pad:
            _pad_mode_limit(p, size, pad, pad, mode, axis)
        shape[d] = (size + 2 * pad - dil * (k - 1) - 1).floordiv(s) + 1
        p.need_positive(shape[d], size, desc, axis, max(1, dil * (k - 1) + 1 - 2 * pad))
    return x.like(shape, x.axes)


def _pad_mode_limit(p: Propagator, size: Poly, left: int, right: int, mode: str, axis: str) -> None:
    """Reflect padding needs pads smaller than the map; circular ones no larger than it."""
    name = p.name
    for pad in {left, right}:
        if pad <= 0 or mode not in ("reflect", "circular"):
            continue
        need = pad + 1 if mode == "reflect" else pad
        p.require(
            "min",
            size,
            ">=",
            need,
            say(f"{name}: {mode} padding of {pad} needs at least {need} along {axis}, gets ", size),
            need=need,
        )


def _pool_size(size: Poly, k: int, s: int, pad: int, dil: int, ceil_mode: bool) -> Poly:
    keff = dil * (k - 1) + 1
    if ceil_mode:
        return ceil_pool(size, 2 * pad - keff + s - 1, s, pad)
    return (size + 2 * pad - keff).floordiv(s) + 1


def _least_input(k: int, s: int, pad: int, dil: int, ceil_mode: bool) -> int:
    ev = Evaluator({})
    for n in range(1, dil * (k - 1) + 2):
        if ev.poly(_pool_size(Poly.of(n), k, s, pad, dil, ceil_mode)) >= 1:
            return n
    return dil * (k - 1) + 1


def _pool(
    p: Propagator,
    x: Any,
    rank: int,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    desc: str,
    indices: bool,
) -> Any:
    x = as_tensor(x)
    _, first = _spatial_split(x, rank)
    ks = ints(kernel, rank)
    ss = ints(stride if stride not in (None, [], ()) else kernel, rank)
    ps, ds = ints(padding, rank), ints(dilation, rank)
    shape = list(x.shape)
    for i in range(rank):
        d = first + i
        size = x.shape[d]
        shape[d] = _pool_size(size, ks[i], ss[i], ps[i], ds[i], ceil_mode)
        need = _least_input(ks[i], ss[i], ps[i], ds[i], ceil_mode)
        p.need_positive(shape[d], size, desc, p.axis_of(x, d), need)
    out = x.like(shape, x.axes)
    return (out, out) if indices else out


def _pool_module(p: Propagator, m: nn.Module, x: Any, *_: Any, **__: Any) -> Any:
    rank = {"1d": 1, "2d": 2, "3d": 3}[type(m).__name__[-2:].lower()]
    return _pool(
        p,
        x,
        rank,
        m.kernel_size,
        m.stride,
        m.padding,
        getattr(m, "dilation", 1),
        bool(m.ceil_mode),
        describe_module(m),
        bool(getattr(m, "return_indices", False)),
    )


def _adaptive(x: Any, rank: int, output_size: Any, indices: bool) -> Any:
    x = as_tensor(x)
    _, first = _spatial_split(x, rank)
    sizes = (
        [output_size] * rank
        if isinstance(output_size, int) or output_size is None
        else list(output_size)
    )
    shape = list(x.shape)
    for i, s in enumerate(sizes):
        if s is not None:
            shape[first + i] = Poly.of(s)
    out = x.like(shape, x.axes)
    return (out, out) if indices else out


def _adaptive_module(p: Propagator, m: nn.Module, x: Any, *_: Any, **__: Any) -> Any:
    rank = {"1d": 1, "2d": 2, "3d": 3}[type(m).__name__[-2:].lower()]
    return _adaptive(x, rank, m.output_size, bool(getattr(m, "return_indices", False)))


def _upsample_module(p: Propagator, m: nn.Upsample, x: Any, *_: Any, **__: Any) -> STensor:
    return _interpolate(p, x, m.size, m.scale_factor)


def _interpolate(
    p: Propagator, x: Any, size: Any = None, scale_factor: Any = None, *_: Any, **__: Any
) -> STensor:
    x = as_tensor(x)
    rank = x.ndim - 2
    shape = list(x.shape)
    name = p.name
    for i in range(rank):
        d = 2 + i
        if size is not None:
            out = Poly.of(size if not isinstance(size, (list, tuple)) else size[i])
        elif scale_factor is not None:
            scale = scale_factor if not isinstance(scale_factor, (list, tuple)) else scale_factor[i]
            out = scaled(x.shape[d], float(scale))
        else:
            raise Unsupported("interpolate without size or scale_factor")
        src = x.shape[d]
        need = 1
        if size is None:
            ev = Evaluator({})
            while need < 1 << 12 and ev.poly(scaled(Poly.of(need), float(scale))) < 1:
                need += 1
        p.require(
            "min",
            out,
            ">=",
            1,
            say(f"{name}: interpolate gives an empty output (", src, " -> ", out, ")"),
            need=need,
        )
        shape[d] = out
    return x.like(shape, x.axes)


def _pad_module(p: Propagator, m: Any, x: Any, *_: Any, **__: Any) -> STensor:
    mode = {
        "Reflection": "reflect",
        "Replication": "replicate",
        "Circular": "circular",
    }.get(type(m).__name__.split("Pad")[0], "constant")
    return _pad(p, x, list(m.padding), mode)


def _pad(
    p: Propagator, x: Any, pad: Sequence[Any], mode: str = "constant", *_: Any, **__: Any
) -> STensor:
    x = as_tensor(x)
    shape = list(x.shape)
    for j in range(len(pad) // 2):
        d = x.ndim - 1 - j
        left, right = Poly.of(pad[2 * j]), Poly.of(pad[2 * j + 1])
        if left.is_const and right.is_const:
            _pad_mode_limit(p, x.shape[d], left.const, right.const, mode, p.axis_of(x, d))
        shape[d] = x.shape[d] + left + right
    return x.like(shape, x.axes)


def _pixel_shuffle(p: Propagator, m: nn.PixelShuffle, x: Any, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    r = m.upscale_factor
    shape = list(x.shape)
    shape[-3] = shape[-3].floordiv(r * r)
    shape[-2], shape[-1] = shape[-2] * r, shape[-1] * r
    return x.like(shape, x.axes)


def _pixel_unshuffle(p: Propagator, m: nn.PixelUnshuffle, x: Any, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    r = m.downscale_factor
    shape = list(x.shape)
    name = p.name
    for d in (-2, -1):
        size = x.shape[d]
        p.require(
            "view",
            size,
            "%",
            0,
            say(f"{name}: PixelUnshuffle({r}) needs sizes divisible by {r}, gets ", size),
            modulus=r,
        )
        shape[d] = size.floordiv(r)
    shape[-3] = shape[-3] * (r * r)
    return x.like(shape, x.axes)


def _conv_fn(
    p: Propagator,
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *_: Any,
    **__: Any,
) -> STensor:
    x, w = as_tensor(x), as_tensor(weight)
    rank = w.ndim - 2
    if any(d.vars for d in w.shape) or isinstance(padding, str):
        raise Unsupported("a functional conv with varying weights or string padding")
    ch, first = _spatial_split(x, rank)
    ks = [d.const for d in w.shape[2:]]
    ss, ps, ds = ints(stride, rank), ints(padding, rank), ints(dilation, rank)
    shape = list(x.shape)
    shape[ch] = w.shape[0]
    for i in range(rank):
        d = first + i
        size = x.shape[d]
        shape[d] = (size + 2 * ps[i] - ds[i] * (ks[i] - 1) - 1).floordiv(ss[i]) + 1
        p.need_positive(
            shape[d],
            size,
            f"conv{rank}d(kernel {tuple(ks)})",
            p.axis_of(x, d),
            max(1, ds[i] * (ks[i] - 1) + 1 - 2 * ps[i]),
        )
    return x.like(shape, x.axes)


def _pool_fn(rank: int, kind: str) -> Rule:
    def rule(
        p: Propagator,
        x: Any,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        *rest: Any,
        **kwargs: Any,
    ) -> Any:
        if kind == "max":
            dilation = rest[0] if rest else kwargs.get("dilation", 1)
            ceil_mode = rest[1] if len(rest) > 1 else kwargs.get("ceil_mode", False)
            indices = rest[2] if len(rest) > 2 else kwargs.get("return_indices", False)
        else:
            dilation, indices = 1, False
            ceil_mode = rest[0] if rest else kwargs.get("ceil_mode", False)
        desc = f"{kind}_pool{rank}d({kernel_size}, {stride or kernel_size})"
        return _pool(
            p, x, rank, kernel_size, stride, padding, dilation, bool(ceil_mode), desc, bool(indices)
        )

    return rule


def _adaptive_fn(rank: int) -> Rule:
    def rule(
        p: Propagator, x: Any, output_size: Any, return_indices: bool = False, *_: Any, **__: Any
    ) -> Any:
        return _adaptive(x, rank, output_size, bool(return_indices))

    return rule


def _pad_fn(p: Propagator, x: Any, pad: Any, mode: str = "constant", *_: Any, **__: Any) -> STensor:
    return _pad(p, x, list(pad), mode)


def _deform(p: Propagator, m: Any, x: Any, *_: Any, **__: Any) -> STensor:
    return _conv(p, m, x)


MODULE_RULES: list[tuple[type | tuple[type, ...], Rule]] = [
    (nn.modules.conv._ConvNd, _conv),
    (
        (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d),
        _pool_module,
    ),
    (
        (
            nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d,
            nn.AdaptiveAvgPool3d,
            nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d,
        ),
        _adaptive_module,
    ),
    (nn.Upsample, _upsample_module),
    (
        (
            nn.modules.padding._ConstantPadNd,
            nn.modules.padding._ReflectionPadNd,
            nn.modules.padding._ReplicationPadNd,
            nn.modules.padding._CircularPadNd,
        ),
        _pad_module,
    ),
    (nn.PixelShuffle, _pixel_shuffle),
    (nn.PixelUnshuffle, _pixel_unshuffle),
    (torchvision.ops.DeformConv2d, _deform),
]

FUNCTION_RULES: dict[Any, Rule] = {
    F.pad: _pad_fn,
    F.interpolate: _interpolate,
    F.upsample: _interpolate,
    F.conv1d: _conv_fn,
    F.conv2d: _conv_fn,
    F.conv3d: _conv_fn,
    F.adaptive_avg_pool1d: _adaptive_fn(1),
    F.adaptive_avg_pool2d: _adaptive_fn(2),
    F.adaptive_avg_pool3d: _adaptive_fn(3),
    F.adaptive_max_pool1d: _adaptive_fn(1),
    F.adaptive_max_pool2d: _adaptive_fn(2),
    F.adaptive_max_pool3d: _adaptive_fn(3),
    F.max_pool1d: _pool_fn(1, "max"),
    F.max_pool2d: _pool_fn(2, "max"),
    F.max_pool3d: _pool_fn(3, "max"),
    F.avg_pool1d: _pool_fn(1, "avg"),
    F.avg_pool2d: _pool_fn(2, "avg"),
    F.avg_pool3d: _pool_fn(3, "avg"),
}
