"""Size rules of ops that change a map's spatial size: sliding windows (convolutions, transposed
convolutions, pools, unfold), adaptive pools, resampling (interpolation, pixel (un)shuffle) and
padding. The geometry of each comes from the op registry, whatever the spelling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shapetrace import ops
from shapetrace.ops import Call, Family
from shapetrace.passes.sizing.expr import Evaluator, Poly, ceil_pool, scaled
from shapetrace.passes.sizing.tensors import (
    BATCH,
    Rule,
    STensor,
    Unsupported,
    as_tensor,
    const_shape,
    describe,
    label,
    merged_axis,
    prod,
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


# -- sliding windows --------------------------------------------------------------------------


def _window(p: Propagator, call: Call) -> Any:
    x = as_tensor(call.input)
    w = ops.window(call, const_shape)
    if w.kind == "slide":
        return _slide(p, x, w)
    if w.kind == "unfold":
        return _im2col(p, x, w)
    if w.kind.startswith("conv") or w.kind == "unpool":
        return _conv(p, call, x, w)
    return _pool(p, call, x, w)


def _conv(p: Propagator, call: Call, x: STensor, w: ops.Window) -> STensor:
    ch, first = _spatial_split(x, w.rank)
    desc = describe(call, f"conv{w.rank}d(kernel {w.kernel})")
    if w.in_channels is not None:
        p.equal_sizes(
            x.shape[ch], Poly.of(w.in_channels), f"{desc} input channels", kind="features"
        )
    shape = list(x.shape)
    if w.out_channels is not None:
        shape[ch] = Poly.of(w.out_channels)
    for i in range(w.rank):
        d = first + i
        size, axis = x.shape[d], p.axis_of(x, d)
        k, s, dil = w.kernel[i], w.stride[i], w.dilation[i]
        before, after = w.pads[i]
        if w.transposed:
            least = (size - 1) * s - before - after + dil * (k - 1) + 1
            if w.output_size is None:
                shape[d] = least + w.output_padding[i]
                continue
            # output_size picks one of the `s` sizes the transposed conv can give; unpooling
            # takes any size strictly within a stride of its default.
            shape[d] = out = Poly.of(w.output_size[i])
            kind = "merge" if out.vars - {BATCH} and least.vars - {BATCH} else "fixed"
            top = least + (s - 1)
            if w.kind == "unpool":
                least = least - (s - 1)
            message = say(f"{p.name}: {desc} can give ", least, " to ", top, ", not ", out)
            p.require(kind, out, ">=", least, message)
            p.require(kind, out, "<=", top, message)
            continue
        if w.padding_mode != "zeros":
            _pad_mode_limit(p, size, before, after, w.padding_mode, axis)
        if w.same:
            shape[d] = size
            continue
        shape[d] = (size + before + after - dil * (k - 1) - 1).floordiv(s) + 1
        p.need_positive(shape[d], size, desc, axis, max(1, dil * (k - 1) + 1 - before - after))
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


def _pool(p: Propagator, call: Call, x: STensor, w: ops.Window) -> Any:
    _, first = _spatial_split(x, w.rank)
    kernel, stride = call.get("kernel_size"), call.get("stride")
    desc = describe(call, f"{w.kind}_pool{w.rank}d({kernel}, {stride or kernel})")
    shape = list(x.shape)
    for i in range(w.rank):
        d = first + i
        size = x.shape[d]
        k, s, pad, dil = w.kernel[i], w.stride[i], w.padding[i], w.dilation[i]
        shape[d] = _pool_size(size, k, s, pad, dil, w.ceil_mode)
        need = _least_input(k, s, pad, dil, w.ceil_mode)
        p.need_positive(shape[d], size, desc, p.axis_of(x, d), need)
        if need == 1:  # padding alone would give an empty map an output: pools refuse it
            _non_empty(p, size, desc, p.axis_of(x, d))
    out = x.like(shape, x.axes)
    return (out, out) if call.get("return_indices", False) else out


def _non_empty(p: Propagator, size: Poly, desc: str, axis: str) -> None:
    name = p.name
    p.require(
        "min", size, ">=", 1, say(f"{name}: {desc} needs a non-empty map along {axis}, gets ", size)
    )


def _blocks(p: Propagator, x: STensor, d: int, w: ops.Window, i: int, desc: str) -> Poly:
    """Window positions along dim `d` (axis `i` of the window): unfold's blocks."""
    size = x.shape[d]
    k, s, dil = w.kernel[i], w.stride[i], w.dilation[i]
    before, after = w.pads[i]
    out = (size + before + after - dil * (k - 1) - 1).floordiv(s) + 1
    p.need_positive(out, size, desc, p.axis_of(x, d), max(1, dil * (k - 1) + 1 - before - after))
    return out


def _im2col(p: Propagator, x: STensor, w: ops.Window) -> STensor:
    """`F.unfold`: N x C x H x W -> N x C*kh*kw x (blocks along H times blocks along W)."""
    ch, first = _spatial_split(x, w.rank)
    desc = f"unfold(kernel {w.kernel})"
    blocks = [_blocks(p, x, first + i, w, i, desc) for i in range(w.rank)]
    spatial = list(x.axes[first:])
    channels = x.shape[ch] * prod(Poly.of(k) for k in w.kernel)
    return STensor(
        (*x.shape[:ch], channels, prod(blocks)),
        (*x.axes[:ch], None, merged_axis(blocks, spatial)),
    )


def _slide(p: Propagator, x: STensor, w: ops.Window) -> STensor:
    """`x.unfold(dim, size, step)`: windows along one dim, each window a new last dim."""
    assert w.dim is not None
    d = w.dim + x.ndim if w.dim < 0 else w.dim
    out = _blocks(p, x, d, w, 0, f"unfold({w.dim}, {w.kernel[0]}, {w.stride[0]})")
    shape = [*x.shape[:d], out, *x.shape[d + 1 :], Poly.of(w.kernel[0])]
    return x.like(shape, [*x.axes, None])


# -- adaptive pools ---------------------------------------------------------------------------


def _adaptive(p: Propagator, call: Call) -> Any:
    x = as_tensor(call.input)
    output_size = call.args.get("output_size")
    rank = call.get("rank")
    if rank is None:
        rank = len(output_size) if isinstance(output_size, (list, tuple)) else x.ndim - 2
    if x.ndim < rank + 1:
        raise Unsupported(f"a {x.ndim}-d input to a {rank}-d adaptive pool")
    first = x.ndim - rank  # any leading dims
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
    return (out, out) if call.get("return_indices", False) else out


# -- resampling ---------------------------------------------------------------------------------


def _resample(p: Propagator, call: Call) -> STensor:
    x = as_tensor(call.input)
    r = ops.resample(call)
    if r.kind == "pixel_shuffle":
        shape = list(x.shape)
        shape[-3] = shape[-3].floordiv(r.factor * r.factor)
        shape[-2], shape[-1] = shape[-2] * r.factor, shape[-1] * r.factor
        return x.like(shape, x.axes)
    if r.kind == "pixel_unshuffle":
        return _pixel_unshuffle(p, call, x, r.factor)
    return _interpolate(p, x, r.size, r.scale_factor)


def _pixel_unshuffle(p: Propagator, call: Call, x: STensor, r: int) -> STensor:
    shape = list(x.shape)
    name = p.name
    for d in (-2, -1):
        size = x.shape[d]
        p.require(
            "view",
            size,
            "%",
            0,
            say(f"{name}: {label(call)}({r}) needs sizes divisible by {r}, gets ", size),
            modulus=r,
        )
        shape[d] = size.floordiv(r)
    shape[-3] = shape[-3] * (r * r)
    return x.like(shape, x.axes)


def _interpolate(p: Propagator, x: STensor, size: Any, scale_factor: Any) -> STensor:
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
        _non_empty(p, src, "interpolate", p.axis_of(x, d))
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


# -- padding ------------------------------------------------------------------------------------


def _pad(p: Propagator, call: Call) -> STensor:
    x = as_tensor(call.input)
    amounts = call.get("pad")
    if isinstance(amounts, (list, tuple)) and any(isinstance(a, Poly) for a in amounts):
        # Pads computed from sizes (`(w - W % w) % w` in windowed attention).
        pairs = [(Poly.of(amounts[i]), Poly.of(amounts[i + 1])) for i in range(0, len(amounts), 2)]
        pads, mode = pairs[::-1], str(call.get("mode", "constant"))
    else:
        geometry = ops.pad(call)
        pads = [(Poly.of(a), Poly.of(b)) for a, b in geometry.pads]
        mode = geometry.mode
    shape = list(x.shape)
    first = x.ndim - len(pads)
    for i, (left, right) in enumerate(pads):
        d = first + i
        if left.is_const and right.is_const:
            _pad_mode_limit(p, x.shape[d], left.const, right.const, mode, p.axis_of(x, d))
        shape[d] = x.shape[d] + left + right
    return x.like(shape, x.axes)


RULES: dict[Family, Rule] = {
    Family.WINDOW: _window,
    Family.ADAPTIVE: _adaptive,
    Family.RESAMPLE: _resample,
    Family.PAD: _pad,
}
