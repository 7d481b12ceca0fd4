"""Size rules of ops that move sizes between dims without computing on them: reshapes, permutes,
indexing, splits, concatenations, expands and repeats."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import fx

from shapetrace.ops import Call, Family
from shapetrace.passes.sizing.expr import Poly, Unknown, poly_max, poly_min
from shapetrace.passes.sizing.tensors import (
    BATCH,
    Rule,
    STensor,
    Unsupported,
    as_tensor,
    dim_index,
    label,
    merged_axis,
    prod,
    say,
    sizes_arg,
)

if TYPE_CHECKING:
    from shapetrace.passes.sizing.propagate import Propagator


# -- reshape ------------------------------------------------------------------------------------


def _reshape_family(p: Propagator, call: Call) -> STensor:
    x = as_tensor(call.input)
    if call.name == "flatten":
        return _flatten(x, int(call.get("start_dim", 0)), int(call.get("end_dim", -1)))
    if call.name == "unflatten":
        sizes = call.get("sizes", call.get("unflattened_size"))
        d = dim_index(int(call.get("dim")), x.ndim)
        return _reshape(p, x, [*x.shape[:d], *sizes, *x.shape[d + 1 :]], "unflatten")
    if call.name == "view":
        shape = sizes_arg(list(call.get("shape", ())))
        if any(isinstance(s, torch.dtype) for s in shape):
            raise Unsupported("view as another dtype")
        return _reshape(p, x, shape, label(call))
    if call.name == "view_as":
        return _reshape(p, x, list(as_tensor(call.get("other")).shape), label(call))
    if call.name == "unsqueeze":
        dim = int(call.get("dim"))
        d = dim + x.ndim + 1 if dim < 0 else dim
        return STensor(
            (*x.shape[:d], Poly.of(1), *x.shape[d:]),
            (*x.axes[:d], None, *x.axes[d:]),
            x.vmax,
            x.param,
        )
    return _squeeze(p, x, call.args.get("dim"))


def _flatten(x: STensor, start: int = 0, end: int = -1) -> STensor:
    if x.ndim == 0:
        return x.like((Poly.of(1),), (None,))
    start, end = dim_index(start, x.ndim), dim_index(end, x.ndim)
    dims, axes = x.shape[start : end + 1], x.axes[start : end + 1]
    shape = (*x.shape[:start], prod(dims), *x.shape[end + 1 :])
    new_axes = (*x.axes[:start], merged_axis(dims, axes), *x.axes[end + 1 :])
    return x.like(shape, new_axes)


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
            # A dim split in parts (`h // 2, 2`): the parts that vary follow it.
            for k in gj:
                axes[k] = x.axes[gi[0]] if out[k].vars - {BATCH} else None
        i, j = gi[-1] + 1, gj[-1] + 1
    return axes


def _squeeze(p: Propagator, x: STensor, dim: Any) -> STensor:
    """A squeezed dim goes only where it is 1, so the traced graph, built on the dims the
    analysed size squeezed, needs each varying one to be 1 exactly where it was 1 then."""
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
        if d not in dims:
            keep.append(d)
        elif dim is None and BATCH in size.vars:
            # squeeze() drops a batch of one as well: the output then has no batch dim.
            message = say(f"{name}: squeeze() drops the batch dim at N = ", size)
            p.require("batch", size, ">=", 2, message)
            keep.append(d)
        elif size.vars - {BATCH}:
            if p.ev0.poly(size) == 1:
                message = say(f"{name}: squeeze removes dim {d} only while it is 1, gets ", size)
                p.require("squeeze", size, "==", 1, message)
                continue
            message = say(f"{name}: squeeze drops a dim of size ", size)
            p.require("squeeze", size, "!=", 1, message)  # an empty dim stays too
            keep.append(d)
        elif size.vars or size.const != 1:
            keep.append(d)
    return STensor(tuple(x.shape[d] for d in keep), tuple(x.axes[d] for d in keep), x.vmax, x.param)


# -- permute ------------------------------------------------------------------------------------


def _permute_family(p: Propagator, call: Call) -> STensor:
    x = as_tensor(call.input)
    order = list(range(x.ndim))
    if call.name == "permute":
        order = [dim_index(int(d), x.ndim) for d in sizes_arg(list(call.get("dims")))]
        if sorted(order) != list(range(x.ndim)):
            raise Unsupported(f"permute of {len(order)} dims on a {x.ndim}-d tensor")
    elif call.name == "movedim":
        source, dest = call.get("source"), call.get("destination")
        sources = [dim_index(int(d), x.ndim) for d in _listed(source)]
        dests = [dim_index(int(d), x.ndim) for d in _listed(dest)]
        rest = iter(d for d in range(x.ndim) if d not in sources)
        placed = dict(zip(dests, sources, strict=True))
        order = [placed[i] if i in placed else next(rest) for i in range(x.ndim)]
    else:  # transpose, matrix_transpose
        a = dim_index(int(call.get("dim0", 0)), x.ndim)
        b = dim_index(int(call.get("dim1", 1)), x.ndim)
        order[a], order[b] = order[b], order[a]
    return x.like([x.shape[d] for d in order], [x.axes[d] for d in order])


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# -- indexing -----------------------------------------------------------------------------------


def _index_family(p: Propagator, call: Call) -> Any:
    x = call.input
    if call.name == "getitem":
        index = call.args.get("index")
        if isinstance(x, STensor):
            return _index(p, x, index)
        if isinstance(index, Poly):
            raise Unsupported("indexing with a size")
        return x[index]
    x = as_tensor(x)
    d = dim_index(int(call.get("dim", 0)), x.ndim)
    if call.name == "narrow":
        return _narrow(p, x, d, call.get("start", 0), call.get("length"))
    if call.name == "select":
        return _index(p, x, (*[slice(None)] * d, call.get("index")))
    # index_select (a 1-d index along `dim`), gather and take_along_dim (the index's shape)
    index = as_tensor(call.get("index"))
    if index.ndim != x.ndim or x.ndim == 1:
        shape, axes = list(x.shape), list(x.axes)
        # The new dim follows what the index's length follows (`arange(w)` follows W).
        shape[d] = index.shape[0] if index.ndim else Poly.of(1)
        axes[d] = index.axes[0] if index.ndim else None
        return STensor(tuple(shape), tuple(axes))
    return STensor(index.shape, index.axes)


def _clip_index(value: Any, size: Poly) -> Poly:
    v = Poly.of(value)
    if v.is_const and v.const < 0:
        return poly_max(size + v, Poly.of(0))
    return poly_min(v, size)


def _slice_length(start: Any, stop: Any, size: Poly) -> Poly:
    """The length of `[start:stop]` along a dim of `size`, as Python clips the bounds, in its
    shortest form when both bounds are constants: `[2:-2]` is `max(size - 4, 0)`, `[-4:]` is
    `min(size, 4)`. A varying bound is taken as counted from the start (a crop offset)."""
    a = 0 if start is None else start
    b = stop
    if isinstance(a, int) and (b is None or isinstance(b, int)):
        zero = Poly.of(0)
        if a >= 0:
            if b is None:
                return poly_max(size - a, zero) if a else size
            if b >= 0:
                return zero if b <= a else poly_max(poly_min(size, Poly.of(b)) - a, zero)
            return poly_max(size + (b - a), zero)
        if b is None:
            return poly_min(size, Poly.of(-a))
        if b < 0:
            return zero if b <= a else poly_max(poly_min(size, Poly.of(-a)) + b, zero)
    begin = Poly.of(0) if start is None else _clip_index(start, size)
    end = size if stop is None else _clip_index(stop, size)
    return end if begin.is_const and begin.const == 0 else poly_max(end - begin, Poly.of(0))


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
        length = _slice_length(it.start, it.stop, size)
        shape.append((length + step - 1).floordiv(step))
        axes.append(x.axes[d])
        d += 1
    shape += list(x.shape[d:])
    axes += list(x.axes[d:])
    return STensor(tuple(shape), tuple(axes), x.vmax, x.param)


def _narrow(p: Propagator, x: STensor, d: int, start: Any, length: Any) -> STensor:
    """`x.narrow(d, start, length)`: `length` elements from `start` (negative: from the end),
    which must lie inside the dim."""
    size, axis, name = x.shape[d], p.axis_of(x, d), p.name
    begin, count = Poly.of(start), Poly.of(length)
    text = f"{name}: narrow({d}, {start}, {length}) needs at least "
    if begin.is_const and begin.const < 0:
        least = -begin.const
        p.require(
            "min",
            size,
            ">=",
            least,
            say(text, Poly.of(least), f" along {axis}, gets ", size),
            need=least,
        )
        begin = size + begin
    end = begin + count
    need = end.const if end.is_const else 0
    p.require("min", size, ">=", end, say(text, end, f" along {axis}, gets ", size), need=need)
    shape = list(x.shape)
    shape[d] = count
    return x.like(shape, x.axes)


# -- splits and joins -----------------------------------------------------------------------------


def _split_family(p: Propagator, call: Call) -> Any:
    x = as_tensor(call.input)
    d = dim_index(int(call.get("dim", 0)), x.ndim)
    size = x.shape[d]
    name, axis = p.name, p.axis_of(x, d)
    if call.name == "unbind":
        count = _pieces_seen(p, size)
        part = STensor((*x.shape[:d], *x.shape[d + 1 :]), (*x.axes[:d], *x.axes[d + 1 :]))
        read = _indices_read(p.node)
        if read is not None and read < count:
            # `x.unbind(1)[0]`: only the first pieces are read (an unpacking reads them all),
            # so any size giving that many pieces will do.
            p.require(
                "min",
                size,
                ">=",
                read,
                say(f"{name}: unbind along {axis} gives fewer than the {read} pieces read: ", size),
                need=read,
            )
        else:
            p.equal_sizes(size, Poly.of(count), f"unbind into {count} pieces along {axis}")
        return tuple(part for _ in range(count))
    if call.name == "tensor_split":
        pieces = _tensor_split(size, call.get("indices_or_sections"))
    elif call.name == "chunk":
        step = (size + int(call.get("chunks")) - 1).floordiv(int(call.get("chunks")))
        chunks = int(call.get("chunks"))
        pieces = _even_pieces(
            p, size, step, f"chunk({chunks}) along {axis}", at_most=False, empty=chunks
        )
    else:
        sizes = call.get("split_size_or_sections")
        if isinstance(sizes, (list, tuple)):
            pieces = [Poly.of(k) for k in sizes]
            total = prod_sum(pieces)
            if total != size:
                p.require(
                    "view" if not total.vars - {BATCH} else "merge",
                    size,
                    "==",
                    total,
                    say(
                        f"{name}: split into {list(sizes)} needs ",
                        total,
                        f" along {axis}, gets ",
                        size,
                    ),
                )
        else:
            pieces = _even_pieces(p, size, Poly.of(sizes), f"split({sizes}) along {axis}")
    return tuple(x.like([*x.shape[:d], k, *x.shape[d + 1 :]], x.axes) for k in pieces)


def _indices_read(node: fx.Node) -> int | None:
    """How many leading pieces of a split the graph reads, when it reads each by a constant
    index `[i]`, i >= 0 (a negative index depends on their number); else None."""
    indices = []
    for user in node.users:
        index = user.args[1] if user.target is operator.getitem and len(user.args) > 1 else None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            return None
        indices.append(index)
    return max(indices) + 1 if indices else None


def prod_sum(values: Sequence[Poly]) -> Poly:
    total = Poly.of(0)
    for v in values:
        total = total + v
    return total


def _pieces_seen(p: Propagator, size: Poly, step: Poly | None = None) -> int:
    """How many pieces the split gives at the analysed size: the traced graph reads that many
    (as observed, or computed when the run broke before it)."""
    observed = p.observed.get(p.node)
    if isinstance(observed, (list, tuple)):
        return len(observed)
    n = p.ev0.poly(size)
    return n if step is None else -(-n // p.ev0.poly(step))


def _even_pieces(
    p: Propagator, size: Poly, step: Poly, what: str, *, at_most: bool = True, empty: int = 1
) -> list[Poly]:
    """Pieces of `step` and a shorter last one. Along a varying dim their number varies, but
    the traced graph (the model's unpacking) reads the number seen at the analysed size, so
    that number must come out: the last piece is not empty and (`at_most`, unless the op
    cannot give more) there is no piece more."""
    if size.is_const and step.is_const:
        n, k = size.const, step.const
        if n == 0:
            return [Poly.of(0)] * empty
        return [Poly.of(min(k, n - s)) for s in range(0, n, k)]
    count = _pieces_seen(p, size, step)
    last = size - step * (count - 1)
    name = p.name
    fewer = say(
        f"{name}: {what} gives fewer than the {count} pieces the model reads at size ", size
    )
    # An empty dim gives `empty` empty pieces.
    nothing = [p.make("min", size, "==", 0, fewer)] if count == empty else []
    p.require("min", last, ">=", 1, fewer, need=count, alternatives=nothing)
    if at_most:
        more = say(
            f"{name}: {what} gives more than the {count} pieces the model reads at size ", size
        )
        p.require("view", last, "<=", step, more)
    return [*([step] * (count - 1)), last]


def _tensor_split(size: Poly, sections: Any) -> list[Poly]:
    if isinstance(sections, (list, tuple)):
        bounds = [Poly.of(0), *(_clip_split(b, size) for b in sections), size]
        return [poly_max(b - a, Poly.of(0)) for a, b in itertools.pairwise(bounds)]
    count = int(sections)
    # The first size % count pieces are one longer: floor((size + count - 1 - i) / count).
    return [(size + (count - 1 - i)).floordiv(count) for i in range(count)]


def _clip_split(value: Any, size: Poly) -> Poly:
    b = int(value)
    return poly_max(size + b, Poly.of(0)) if b < 0 else poly_min(Poly.of(b), size)


def _concat_family(p: Propagator, call: Call) -> STensor:
    parts = [as_tensor(t) for t in call.get("tensors")]
    dim = int(call.get("dim", 0))
    first = parts[0]
    if call.name == "stack":
        for t in parts[1:]:
            for d in range(first.ndim):
                p.equal_sizes(first.shape[d], t.shape[d], f"stack needs equal sizes in dim {d}")
        dim = dim + first.ndim + 1 if dim < 0 else dim
        return STensor(
            (*first.shape[:dim], Poly.of(len(parts)), *first.shape[dim:]),
            (*first.axes[:dim], None, *first.axes[dim:]),
        )
    dim = dim_index(dim, first.ndim)
    shape, axes = list(first.shape), list(first.axes)
    for t in parts[1:]:
        for d in range(first.ndim):
            if d != dim:
                p.equal_sizes(shape[d], t.shape[d], f"cat needs equal sizes in dim {d}")
                axes[d] = axes[d] or t.axes[d]
        shape[dim] = shape[dim] + t.shape[dim]
    axes[dim] = None
    return STensor(tuple(shape), tuple(axes))


# -- expand and repeat ----------------------------------------------------------------------------


def _expand_family(p: Propagator, call: Call) -> STensor:
    x = as_tensor(call.input)
    if call.name == "expand_as":
        return _expand(p, x, list(as_tensor(call.get("other")).shape))
    if call.name == "expand":
        return _expand(p, x, sizes_arg(list(call.get("sizes", call.get("size", ())))))
    if call.name == "repeat_interleave":
        return _repeat_interleave(x, call.get("repeats"), call.args.get("dim"))
    reps = [Poly.of(s) for s in sizes_arg(list(call.get("sizes", call.get("dims", ()))))]
    reps = [Poly.of(1)] * (x.ndim - len(reps)) + reps  # tile pads the repeats with ones
    lead = len(reps) - x.ndim
    shape = [r if i < lead else x.shape[i - lead] * r for i, r in enumerate(reps)]
    axes = [None if i < lead else x.axes[i - lead] for i in range(len(reps))]
    return STensor(tuple(shape), tuple(axes), x.vmax, x.param)


def _expand(p: Propagator, x: STensor, sizes: Sequence[Any]) -> STensor:
    target = [Poly.of(s) for s in sizes]
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


def _repeat_interleave(x: STensor, repeats: Any, dim: Any) -> STensor:
    if not isinstance(repeats, (int, Poly)):
        raise Unsupported("repeat_interleave by a tensor of counts")
    if dim is None:
        return STensor((prod(x.shape) * Poly.of(repeats),), (None,))
    d = dim_index(int(dim), x.ndim)
    shape = list(x.shape)
    shape[d] = shape[d] * Poly.of(repeats)
    return STensor(tuple(shape), x.axes)


RULES: dict[Family, Rule] = {
    Family.RESHAPE: _reshape_family,
    Family.PERMUTE: _permute_family,
    Family.INDEX: _index_family,
    Family.SPLIT: _split_family,
    Family.CONCAT: _concat_family,
    Family.EXPAND: _expand_family,
}
