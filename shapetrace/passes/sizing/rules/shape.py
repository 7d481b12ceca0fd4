"""Size rules of ops that move sizes between dims without computing on them: flatten, view,
reshape, permute, indexing, squeeze, expand, repeat, cat, stack, chunk, and size queries."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torchvision.ops
from torch import nn

from shapetrace.passes.shapes import op_label
from shapetrace.passes.sizing.expr import Poly, Unknown, poly_max, poly_min
from shapetrace.passes.sizing.tensors import (
    BATCH,
    Rule,
    STensor,
    Unsupported,
    as_tensor,
    dim_index,
    merged_axis,
    prod,
    say,
    sizes_arg,
)

if TYPE_CHECKING:
    from shapetrace.passes.sizing.propagate import Propagator


def _flatten_module(p: Propagator, m: nn.Flatten, x: Any, *_: Any, **__: Any) -> STensor:
    return _flatten(as_tensor(x), m.start_dim, m.end_dim)


def _flatten(x: STensor, start: int = 0, end: int = -1) -> STensor:
    if x.ndim == 0:
        return x.like((Poly.of(1),), (None,))
    start, end = dim_index(start, x.ndim), dim_index(end, x.ndim)
    dims, axes = x.shape[start : end + 1], x.axes[start : end + 1]
    shape = (*x.shape[:start], prod(dims), *x.shape[end + 1 :])
    new_axes = (*x.axes[:start], merged_axis(dims, axes), *x.axes[end + 1 :])
    return x.like(shape, new_axes)


def _unflatten_module(p: Propagator, m: nn.Unflatten, x: Any, *_: Any, **__: Any) -> STensor:
    return _unflatten(p, as_tensor(x), m.dim, m.unflattened_size)


def _unflatten(p: Propagator, x: STensor, dim: int, sizes: Sequence[Any]) -> STensor:
    dim = dim_index(dim, x.ndim)
    target = [*x.shape[:dim], *sizes, *x.shape[dim + 1 :]]
    return _reshape(p, x, target, "unflatten")


def _getattr(p: Propagator, obj: Any, attr: str, *default: Any) -> Any:
    if isinstance(obj, STensor):
        if attr == "shape":
            return obj.shape
        if attr == "ndim":
            return obj.ndim
        if attr in ("T", "mT") and obj.ndim >= 2:
            return _transpose(p, obj, -2, -1)
        value = p.observed.get(p.node)
        if value is None or isinstance(value, torch.Tensor):
            raise Unsupported(f"tensor attribute {attr}")
        return value
    return getattr(obj, attr, *default)


def _getitem(p: Propagator, obj: Any, index: Any) -> Any:
    if isinstance(obj, STensor):
        return _index(p, obj, index)
    if isinstance(index, Poly):
        raise Unsupported("indexing with a size")
    return obj[index]


def _clip_index(value: Any, size: Poly) -> Poly:
    v = Poly.of(value)
    if v.is_const and v.const < 0:
        return poly_max(size + v, Poly.of(0))
    return poly_min(v, size)


def _index(p: Propagator, x: STensor, index: Any) -> STensor:
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(it, (STensor, bool, list)) for it in items):
        raise Unsupported("advanced indexing")
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (x.ndim - consumed)
    shape: list[Poly] = []
    axes: list[str | None] = []
    d = 0
    name = p.name
    for it in items:
        if it is None:
            shape.append(Poly.of(1))
            axes.append(None)
            continue
        size = x.shape[d]
        if isinstance(it, (int, Poly)):
            i = Poly.of(it)
            if size.vars - {BATCH} and i.is_const:
                least = i.const + 1 if i.const >= 0 else -i.const
                p.require(
                    "min",
                    size,
                    ">=",
                    least,
                    say(f"{name}: index {i} is out of range for size ", size),
                    need=least,
                )
            d += 1
            continue
        if not isinstance(it, slice):
            raise Unsupported(f"index {type(it).__name__}")
        step = 1 if it.step is None else it.step
        if not isinstance(step, int) or step < 1:
            raise Unsupported("a slice with a varying or negative step")
        start = Poly.of(0) if it.start is None else _clip_index(it.start, size)
        stop = size if it.stop is None else _clip_index(it.stop, size)
        length = stop if start.is_const and start.const == 0 else poly_max(stop - start, Poly.of(0))
        shape.append((length + step - 1).floordiv(step))
        axes.append(x.axes[d])
        d += 1
    shape += list(x.shape[d:])
    axes += list(x.axes[d:])
    return STensor(tuple(shape), tuple(axes), x.vmax, x.param)


def _reshape(p: Propagator, x: STensor, target: Sequence[Any], what: str) -> STensor:
    sizes = [Poly.of(t) for t in target]
    total = prod(x.shape)
    infer = [i for i, t in enumerate(sizes) if t.is_const and t.const == -1]
    if len(infer) > 1:
        raise Unsupported("a view with two -1")
    known = prod(t for i, t in enumerate(sizes) if i not in infer)
    name = p.name
    text = "(" + ", ".join(str(t) if isinstance(t, int) else "*" for t in target) + ")"
    hard = "view" if not (known.vars - {BATCH}) else "merge"
    if infer:
        inferred = total.exact_div(known)
        if inferred is None:
            if not known.is_const:
                raise Unsupported(f"{what} with a varying size and -1")
            p.require(
                "view",
                total,
                "%",
                0,
                say(
                    f"{name}: {what}{text} cannot split ",
                    total,
                    f" elements into rows of {known.const}",
                ),
                modulus=known.const,
            )
            inferred = total.floordiv(known.const)
        sizes[infer[0]] = inferred
    elif total != known:
        p.require(
            hard,
            total,
            "==",
            known,
            say(f"{name}: {what}{text} needs ", known, " elements, gets ", total),
        )
    axes = _regroup_axes(p, x, sizes)
    return STensor(tuple(sizes), tuple(axes), x.vmax, x.param)


def _regroup_axes(p: Propagator, x: STensor, out: Sequence[Poly]) -> list[str | None]:
    """Which input axes each dim of a reshape follows, grouping dims with equal products."""
    axes: list[str | None] = [None] * len(out)

    def value(d: Poly) -> int | None:
        try:
            return p.ev0.poly(d)
        except Unknown:
            return None

    i = j = 0
    while i < x.ndim and j < len(out):
        gi, gj = [i], [j]
        a, b = x.shape[i], out[j]
        while a != b:
            va, vb = value(a), value(b)
            if va is None or vb is None:
                return axes
            if va < vb and gi[-1] + 1 < x.ndim:
                gi.append(gi[-1] + 1)
                a = a * x.shape[gi[-1]]
            elif vb < va and gj[-1] + 1 < len(out):
                gj.append(gj[-1] + 1)
                b = b * out[gj[-1]]
            else:
                break
        if a != b and value(a) != value(b):
            return axes
        merged = merged_axis([x.shape[k] for k in gi], [x.axes[k] for k in gi])
        if len(gj) == 1:
            axes[gj[0]] = merged if a == b else None
        elif len(gi) == 1:
            for k in gj:
                axes[k] = x.axes[gi[0]] if out[k] == x.shape[gi[0]] else None
        i, j = gi[-1] + 1, gj[-1] + 1
    return axes


def _view(p: Propagator, x: Any, *shape: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    if shape and isinstance(shape[0], torch.dtype):
        raise Unsupported("view as another dtype")
    return _reshape(p, x, sizes_arg(shape), "view")


def _reshape_rule(p: Propagator, x: Any, *shape: Any, **kwargs: Any) -> STensor:
    x = as_tensor(x)
    target = sizes_arg(shape) if shape else list(kwargs["shape"])
    return _reshape(p, x, target, "reshape")


def _like(p: Propagator, x: Any, other: Any, *_: Any, **__: Any) -> STensor:
    other = as_tensor(other)
    return _reshape(p, as_tensor(x), list(other.shape), "view_as")


def _permute(p: Propagator, x: Any, *dims: Any, **kwargs: Any) -> STensor:
    x = as_tensor(x)
    order = [dim_index(int(d), x.ndim) for d in (sizes_arg(dims) if dims else kwargs["dims"])]
    return x.like([x.shape[d] for d in order], [x.axes[d] for d in order])


def _transpose(p: Propagator, x: Any, d0: int = 0, d1: int = 1, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    order = list(range(x.ndim))
    a, b = dim_index(d0, x.ndim), dim_index(d1, x.ndim)
    order[a], order[b] = order[b], order[a]
    return x.like([x.shape[d] for d in order], [x.axes[d] for d in order])


def _unsqueeze(p: Propagator, x: Any, dim: int, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    d = dim + x.ndim + 1 if dim < 0 else dim
    return STensor(
        (*x.shape[:d], Poly.of(1), *x.shape[d:]), (*x.axes[:d], None, *x.axes[d:]), x.vmax, x.param
    )


def _squeeze(p: Propagator, x: Any, dim: Any = None, *_: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    if dim is None:
        dims = set(range(x.ndim))
    elif isinstance(dim, (list, tuple)):
        dims = {dim_index(d, x.ndim) for d in dim}
    else:
        dims = {dim_index(dim, x.ndim)}
    keep = []
    name = p.name
    for d in range(x.ndim):
        size = x.shape[d]
        if d in dims and size.vars - {BATCH}:
            p.require(
                "squeeze",
                size,
                ">=",
                2,
                say(f"{name}: squeeze drops a dim of size ", size),
                need=2,
            )
        if d not in dims or size.vars or size.const != 1:
            keep.append(d)
    return STensor(tuple(x.shape[d] for d in keep), tuple(x.axes[d] for d in keep), x.vmax, x.param)


def _size(p: Propagator, x: Any, dim: Any = None, *_: Any, **__: Any) -> Any:
    x = as_tensor(x)
    return x.shape if dim is None else x.shape[dim_index(dim, x.ndim)]


def _ndim(p: Propagator, x: Any, *_: Any, **__: Any) -> int:
    return as_tensor(x).ndim


def _numel(p: Propagator, x: Any, *_: Any, **__: Any) -> Poly:
    return prod(as_tensor(x).shape)


def _expand(p: Propagator, x: Any, *sizes: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    target = [Poly.of(s) for s in sizes_arg(sizes)]
    lead = len(target) - x.ndim
    shape, axes = [], []
    for i, t in enumerate(target):
        src = x.shape[i - lead] if i >= lead else None
        axis = x.axes[i - lead] if i >= lead else None
        if src is None or (t.is_const and t.const == -1):
            shape.append(src if src is not None else t)
        else:
            if not (src.is_const and src.const == 1):
                p.equal_sizes(src, t, f"expand dim {i}")
            shape.append(t)
        axes.append(axis)
    return STensor(tuple(shape), tuple(axes), x.vmax, x.param)


def _expand_as(p: Propagator, x: Any, other: Any, *_: Any, **__: Any) -> STensor:
    return _expand(p, x, *as_tensor(other).shape)


def _repeat(p: Propagator, x: Any, *sizes: Any, **__: Any) -> STensor:
    x = as_tensor(x)
    reps = [Poly.of(s) for s in sizes_arg(sizes)]
    lead = len(reps) - x.ndim
    shape = [r if i < lead else x.shape[i - lead] * r for i, r in enumerate(reps)]
    axes = [None if i < lead else x.axes[i - lead] for i in range(len(reps))]
    return STensor(tuple(shape), tuple(axes), x.vmax, x.param)


def _cat(p: Propagator, tensors: Any, dim: int = 0, *_: Any, **kwargs: Any) -> STensor:
    parts = [as_tensor(t) for t in tensors]
    dim = dim_index(kwargs.get("axis", dim), parts[0].ndim)
    first = parts[0]
    shape, axes = list(first.shape), list(first.axes)
    for t in parts[1:]:
        for d in range(first.ndim):
            if d != dim:
                p.equal_sizes(shape[d], t.shape[d], f"cat needs equal sizes in dim {d}")
                axes[d] = axes[d] or t.axes[d]
        shape[dim] = shape[dim] + t.shape[dim]
    axes[dim] = None
    return STensor(tuple(shape), tuple(axes))


def _stack(p: Propagator, tensors: Any, dim: int = 0, *_: Any, **__: Any) -> STensor:
    parts = [as_tensor(t) for t in tensors]
    first = parts[0]
    for t in parts[1:]:
        for d in range(first.ndim):
            p.equal_sizes(first.shape[d], t.shape[d], f"stack needs equal sizes in dim {d}")
    dim = dim + first.ndim + 1 if dim < 0 else dim
    return STensor(
        (*first.shape[:dim], Poly.of(len(parts)), *first.shape[dim:]),
        (*first.axes[:dim], None, *first.axes[dim:]),
    )


def _chunks(p: Propagator, x: Any, count: int, dim: int = 0, *_: Any, **__: Any) -> Any:
    x = as_tensor(x)
    d = dim_index(dim, x.ndim)
    size = x.shape[d]
    if size.vars:
        raise Unsupported("chunk along a varying dim")
    if op_label(p.node) == "chunk":
        step = -(-size.const // count)
        pieces = [min(step, size.const - s) for s in range(0, size.const, step)]
    else:
        parts = count if isinstance(count, (list, tuple)) else None
        pieces = (
            list(parts)
            if parts
            else [min(count, size.const - s) for s in range(0, size.const, count)]
        )
    return tuple(x.like([*x.shape[:d], Poly.of(n), *x.shape[d + 1 :]], x.axes) for n in pieces)


def _unbind(p: Propagator, x: Any, dim: int = 0, *_: Any, **__: Any) -> Any:
    x = as_tensor(x)
    d = dim_index(dim, x.ndim)
    if x.shape[d].vars:
        raise Unsupported("unbind along a varying dim")
    part = STensor((*x.shape[:d], *x.shape[d + 1 :]), (*x.axes[:d], *x.axes[d + 1 :]))
    return tuple(part for _ in range(x.shape[d].const))


def _permute_module(p: Propagator, m: Any, x: Any, *_: Any, **__: Any) -> STensor:
    return _permute(p, x, *m.dims)


def _flatten_call(p: Propagator, x: Any, start_dim: int = 0, end_dim: int = -1) -> STensor:
    return _flatten(as_tensor(x), start_dim, end_dim)


MODULE_RULES: list[tuple[type | tuple[type, ...], Rule]] = [
    (nn.Flatten, _flatten_module),
    (nn.Unflatten, _unflatten_module),
    (torchvision.ops.Permute, _permute_module),
]

FUNCTION_RULES: dict[Any, Rule] = {
    operator.getitem: _getitem,
    getattr: _getattr,
    torch.flatten: _flatten_call,
    torch.cat: _cat,
    torch.concat: _cat,
    torch.concatenate: _cat,
    torch.stack: _stack,
    torch.reshape: _reshape_rule,
    torch.permute: _permute,
    torch.transpose: _transpose,
    torch.swapaxes: _transpose,
    torch.unsqueeze: _unsqueeze,
    torch.squeeze: _squeeze,
    torch.chunk: _chunks,
    torch.split: _chunks,
    torch.unbind: _unbind,
}

METHOD_RULES: dict[str, Rule] = {
    "size": _size,
    "dim": _ndim,
    "ndimension": _ndim,
    "numel": _numel,
    "nelement": _numel,
    "view": _view,
    "reshape": _reshape_rule,
    "view_as": _like,
    "reshape_as": _like,
    "flatten": _flatten_call,
    "unflatten": lambda p, x, dim, sizes: _unflatten(p, as_tensor(x), dim, sizes),
    "permute": _permute,
    "transpose": _transpose,
    "swapaxes": _transpose,
    "t": lambda p, x: _transpose(p, x, 0, 1),
    "unsqueeze": _unsqueeze,
    "squeeze": _squeeze,
    "expand": _expand,
    "expand_as": _expand_as,
    "repeat": _repeat,
    "chunk": _chunks,
    "split": _chunks,
    "unbind": _unbind,
    "__getitem__": _getitem,
}
