"""Size rules of ops that compute: identities, elementwise ops (broadcasting) and Python
arithmetic on sizes, ops along one dim, reductions, matrix products, factories, questions about
sizes, and `torch._assert`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch

from shapetrace.ops import Call, Family
from shapetrace.passes.sizing.expr import Poly, poly_max, poly_min
from shapetrace.passes.sizing.tensors import (
    AXIS_NAMES,
    BATCH,
    Pred,
    Rule,
    STensor,
    Unsupported,
    as_tensor,
    dim_index,
    flat_args,
    label,
    prod,
    say,
    sizes_arg,
)

if TYPE_CHECKING:
    from shapetrace.passes.sizing.propagate import Propagator


def _same(p: Propagator, call: Call) -> STensor:
    """The input itself (identities, dropout): index bounds and parameters pass through."""
    return as_tensor(call.input)


def _reshaped(p: Propagator, call: Call) -> STensor:
    """A tensor of the input's shape (softmax, cumsum, flip, roll, channel shuffle)."""
    x = as_tensor(call.input)
    if call.name == "glu":
        return _glu(p, x, int(call.get("dim", -1)))
    return x.like(x.shape, x.axes)


def _glu(p: Propagator, x: STensor, dim: int) -> STensor:
    d = dim_index(dim, x.ndim)
    size = x.shape[d]
    p.require(
        "view",
        size,
        "%",
        0,
        say(f"{p.name}: glu halves dim {d}, which needs an even size, gets ", size),
        modulus=2,
    )
    shape = list(x.shape)
    shape[d] = size.floordiv(2)
    return x.like(shape, x.axes)


# -- elementwise, and Python arithmetic on sizes ----------------------------------------------


def _elementwise(p: Propagator, call: Call) -> Any:
    tensors = list({id(t): t for t in flat_args(list(call.args.values()))}.values())
    if len(tensors) == 1:
        return tensors[0].like(tensors[0].shape, tensors[0].axes)
    if tensors:
        return p.broadcast(tensors, label(call))
    fn = call.spelling
    if not callable(fn):
        raise Unsupported("an op without tensors")
    operands = [call.args[k] for k in ("input", "other") if k in call.args]
    operands += list(call.args.get("more") or ())
    return fn(*(_Size(v) if isinstance(v, Poly) else v for v in operands))


def _operand(value: Any) -> Poly:
    if isinstance(value, _Size):
        return value.p
    if isinstance(value, (int, Poly)):
        return Poly.of(value)
    raise Unsupported(f"{type(value).__name__} arithmetic on a size")


def _divisor(value: Any) -> int:
    d = _operand(value)
    if d.is_const and d.const > 0:
        return d.const
    raise Unsupported("division by a size")


def _compare(x: Poly, rel: str, other: Any, holds: Callable[[int, int], bool]) -> Any:
    y = _operand(other)
    if not (x - y).vars:
        return holds(x.const, y.const)
    return Pred(x, rel, y)


class _Size:
    """A size as Python sees it, so that a traced `h // 2`, `h - 1` or `h == 224` runs the
    model's own operator: `+ - *`, `//` and `%` by a constant, comparisons (a `Pred` unless
    both sides are known). True division and powers have no size rule."""

    __slots__ = ("p",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, p: Poly) -> None:
        self.p = p

    def __add__(self, o: Any) -> Poly:
        return self.p + _operand(o)

    def __radd__(self, o: Any) -> Poly:
        return _operand(o) + self.p

    def __sub__(self, o: Any) -> Poly:
        return self.p - _operand(o)

    def __rsub__(self, o: Any) -> Poly:
        return _operand(o) - self.p

    def __mul__(self, o: Any) -> Poly:
        return self.p * _operand(o)

    def __rmul__(self, o: Any) -> Poly:
        return _operand(o) * self.p

    def __floordiv__(self, o: Any) -> Poly:
        return self.p.floordiv(_divisor(o))

    def __mod__(self, o: Any) -> Poly:
        return self.p.mod(_divisor(o))

    def __truediv__(self, o: Any) -> Poly:
        raise Unsupported("true division of a size")

    __rtruediv__ = __pow__ = __rpow__ = __rfloordiv__ = __rmod__ = __truediv__

    def __neg__(self) -> Poly:
        return -self.p

    def __pos__(self) -> Poly:
        return self.p

    def __eq__(self, o: object) -> Any:  # type: ignore[override]
        return _compare(self.p, "==", o, lambda a, b: a == b)

    def __ne__(self, o: object) -> Any:  # type: ignore[override]
        return _compare(self.p, "!=", o, lambda a, b: a != b)

    def __lt__(self, o: Any) -> Any:
        return _compare(self.p, "<", o, lambda a, b: a < b)

    def __le__(self, o: Any) -> Any:
        return _compare(self.p, "<=", o, lambda a, b: a <= b)

    def __gt__(self, o: Any) -> Any:
        return _compare(self.p, ">", o, lambda a, b: a > b)

    def __ge__(self, o: Any) -> Any:
        return _compare(self.p, ">=", o, lambda a, b: a >= b)


def _assert(p: Propagator, call: Call) -> None:
    cond, message = call.args.get("condition"), call.get("message", "")
    if isinstance(cond, Pred):
        name = p.name
        lhs, rhs, rel = cond.lhs, cond.rhs, cond.rel
        if rel in ("<", ">"):
            rhs, rel = rhs + (-1 if rel == "<" else 1), rel + "="
        p.require(
            "assert",
            lhs,
            rel,
            rhs,
            say(f"{name}: torch._assert requires {cond.lhs} {cond.rel} {cond.rhs}, gets ", lhs),
        )
    elif cond is False:
        name = p.name
        p.require("assert", 0, "==", 1, say(f"{name}: torch._assert fails: {message}"))


# -- reductions and products --------------------------------------------------------------------


def _reduce(p: Propagator, call: Call) -> Any:
    x = as_tensor(call.input)
    dim = call.args.get("dim")
    other = dim if isinstance(dim, STensor) else call.args.get("other")
    if isinstance(other, STensor):  # torch.max(a, b) is elementwise
        return p.broadcast([x, other], label(call))
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return STensor((), ())
    dim_list = list(dim) if isinstance(dim, (list, tuple)) else [dim]
    dims = {dim_index(d, x.ndim) for d in dim_list}
    keepdim = bool(call.get("keepdim", False))
    shape = [
        Poly.of(1) if d in dims else s for d, s in enumerate(x.shape) if keepdim or d not in dims
    ]
    axes = [None if d in dims else a for d, a in enumerate(x.axes) if keepdim or d not in dims]
    out = STensor(tuple(shape), tuple(axes))
    key = tuple(dim_list) if isinstance(dim, (list, tuple)) else dim
    return (out, out) if _gives_indices(call.spelling, x.ndim, key) else out


@lru_cache(maxsize=256)
def _gives_indices(spelling: Any, ndim: int, dim: Any) -> bool:
    """Does the reduction return (values, indices) (`max`, `min`, `median` along a dim)? Asked
    of torch itself, on a small meta tensor."""
    fn = getattr(torch.Tensor, spelling, None) if isinstance(spelling, str) else spelling
    if fn is None:
        return False
    try:
        out = fn(torch.empty((2,) * max(ndim, 1), device="meta"), dim)
    except Exception:  # any refusal of the probe means no pair
        return False
    return isinstance(out, tuple)


def _products(p: Propagator, call: Call) -> STensor:
    if call.name == "einsum":
        return _einsum(p, call.get("equation"), call.get("operands", ()))
    out = _matmul(p, call.input, call.get("other"))
    bias = call.args.get("bias")
    if isinstance(bias, STensor):  # addmm, baddbmm
        return p.broadcast([bias, out], label(call))
    return out


def _matmul(p: Propagator, a: Any, b: Any) -> STensor:
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim < 1 or b.ndim < 1:
        raise Unsupported("matmul of scalars")
    inner_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    got = a.shape[-1]
    name = p.name
    if got != inner_b:
        kind = "merge" if got.vars - {BATCH} and inner_b.vars - {BATCH} else "features"
        p.require(
            kind,
            got,
            "==",
            inner_b,
            say(f"{name}: matmul needs ", inner_b, " columns, gets ", got),
            pattern="flatten" if kind == "features" else "",
        )
    left = a.shape[:-1]
    right = [b.shape[-1]] if b.ndim >= 2 else []
    batch_a = STensor(a.shape[:-2], a.axes[:-2]) if a.ndim > 2 else None
    batch_b = STensor(b.shape[:-2], b.axes[:-2]) if b.ndim > 2 else None
    if batch_a is not None and batch_b is not None:
        batch = p.broadcast([batch_a, batch_b], "matmul")
        rows = [a.shape[-2]] if a.ndim >= 2 else []
        shape = [*batch.shape, *rows, *right]
        axes = [*batch.axes, *([a.axes[-2]] if a.ndim >= 2 else []), *([None] * len(right))]
    elif batch_b is not None:
        rows = [a.shape[-2]] if a.ndim >= 2 else []
        shape = [*b.shape[:-2], *rows, *right]
        axes = [*b.axes[:-2], *([a.axes[-2]] if a.ndim >= 2 else []), *([None] * len(right))]
    else:
        shape = [*left, *right]
        axes = [*a.axes[:-1], *([None] * len(right))]
    return STensor(tuple(shape), tuple(axes))


def _einsum(p: Propagator, equation: Any, operands: Sequence[Any]) -> STensor:
    tensors = [as_tensor(t) for t in sizes_arg(list(operands))]
    spec = str(equation).replace(" ", "")
    if "..." in spec or "->" not in spec:
        raise Unsupported("einsum with an ellipsis or an implicit output")
    inputs, output = spec.split("->")
    sizes: dict[str, tuple[Poly, str | None]] = {}
    for letters, t in zip(inputs.split(","), tensors, strict=True):
        if len(letters) != t.ndim:
            raise Unsupported("einsum operand of another rank")
        for letter, d, ax in zip(letters, t.shape, t.axes, strict=True):
            if letter in sizes:
                if not (d.is_const and d.const == 1):
                    p.equal_sizes(sizes[letter][0], d, f"einsum index {letter}")
            else:
                sizes[letter] = (d, ax)
    return STensor(tuple(sizes[c][0] for c in output), tuple(sizes[c][1] for c in output))


# -- factories ----------------------------------------------------------------------------------


def _factory(p: Propagator, call: Call) -> STensor:
    if call.name in ("factory", "new_factory"):
        shape = tuple(Poly.of(d) for d in _sizes(call.get("size", ())))
        return STensor(shape, (None,) * len(shape))
    if call.name == "like_factory":
        x = as_tensor(call.input)
        return STensor(x.shape, x.axes)
    if call.name == "arange":
        return _arange(call)
    if call.name == "linspace":
        return STensor((Poly.of(call.get("steps")),), (None,))
    data = call.get("data")  # tensor, new_tensor: the shape of the data
    if isinstance(data, STensor):
        return STensor(data.shape, (None,) * data.ndim)
    shape = _data_shape(data)
    return STensor(shape, (None,) * len(shape))


def _sizes(value: Any) -> list[Any]:
    """A factory's sizes: `zeros(2, 3)`, `zeros((2, 3))`, `full((2, 3), 0.5)`."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if items and isinstance(items[0], (list, tuple)):
        return list(items[0])
    return items


def _data_shape(data: Any) -> tuple[Poly, ...]:
    if isinstance(data, (list, tuple)):
        inner = _data_shape(data[0]) if data else ()
        return (Poly.of(len(data)), *inner)
    return ()


def _arange(call: Call) -> STensor:
    """`arange(end)`, `arange(start, end[, step])`, positional or by name (aten's
    `arange.start(start, end)` binds them by name)."""
    positional = list(call.get("args", ()))
    named = {k: call.args.get(k) for k in ("start", "end", "step")}
    given = [*positional, *(v for v in named.values() if v is not None)]
    if any(not isinstance(a, (int, Poly)) or isinstance(a, bool) for a in given):
        # A float bound (`arange(1.5, w)`) counts differently; dropping it shifts the others.
        raise Unsupported("arange with bounds that are not sizes")
    if len(positional) == 1 and named["end"] is None:
        named["end"] = positional[0]
    else:
        for key, value in zip([k for k, v in named.items() if v is None], positional, strict=False):
            named[key] = value
    start, end, step = named["start"] or 0, named["end"], named["step"] or 1
    if end is None or not isinstance(start, (int, Poly)) or not isinstance(end, (int, Poly)):
        raise Unsupported("arange with bounds that are not sizes")
    if not isinstance(step, int) or step <= 0:
        raise Unsupported("arange with a varying or negative step")
    s, e = Poly.of(start), Poly.of(end)
    length = (e - s + step - 1).floordiv(step)
    # A range over a size follows that size's axes (`arange(x.shape[-1])` follows W).
    axes = [a for names in AXIS_NAMES.values() for a in names if a in length.vars]
    axis = ",".join(dict.fromkeys(axes)) or None
    return STensor((length,), (axis,), s + (length - 1) * step)


# -- questions about sizes ------------------------------------------------------------------


class _SizeView:
    """A tensor's query API over its symbolic sizes (`x.size(2)`, `x.shape`, `x.dim()`,
    `x.numel()`, `x.mT`); any other attribute is the value observed at the analysed size,
    when that is not a tensor (a dtype, a device)."""

    def __init__(self, p: Propagator, x: STensor) -> None:
        self._p, self._x = p, x

    @property
    def shape(self) -> tuple[Poly, ...]:
        return self._x.shape

    @property
    def ndim(self) -> int:
        return self._x.ndim

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim_index(dim, self.ndim)]

    def dim(self) -> int:
        return self.ndim

    ndimension = dim

    def numel(self) -> Poly:
        return prod(self.shape)

    nelement = numel

    def __len__(self) -> int:
        first = self.shape[0]
        if first.vars:
            raise Unsupported("len() of a varying dim")
        return first.const

    @property
    def T(self) -> STensor:
        x = self._x
        return x.like(x.shape[::-1], x.axes[::-1])

    @property
    def mT(self) -> STensor:
        x = self._x
        order = [*range(x.ndim - 2), x.ndim - 1, x.ndim - 2]
        return x.like([x.shape[d] for d in order], [x.axes[d] for d in order])

    def __getattr__(self, attr: str) -> Any:
        value = self._p.observed.get(self._p.node)
        if value is None or isinstance(value, torch.Tensor):
            raise Unsupported(f"tensor attribute {attr}")
        return value


def _query(p: Propagator, call: Call) -> Any:
    x, rest = call.input, [v for k, v in call.args.items() if k != "input"]
    spelling = call.spelling
    if isinstance(x, STensor):
        view = _SizeView(p, x)
        if isinstance(spelling, str):
            method = getattr(_SizeView, spelling, None)
            if not callable(method):
                raise Unsupported(f"Tensor.{spelling}")
            return method(view, *rest)
        return spelling(view, *rest)
    values = [x, *rest]
    if not any(isinstance(v, Poly) for v in values):
        return spelling(*values)
    if len(values) == 1 and _keeps_integers(spelling):
        return x  # int(), math.floor and math.ceil of a size
    if len(values) == 2 and all(isinstance(v, (int, Poly)) for v in values):
        pick = _picks(spelling)
        if pick is not None:
            return pick(Poly.of(values[0]), Poly.of(values[1]))
    raise Unsupported(f"{label(call)} of a size")


@lru_cache(maxsize=64)
def _keeps_integers(fn: Any) -> bool:
    """Does `fn` return every integer unchanged, as an int (int, floor, ceil)?"""
    try:
        return all(type(r := fn(k)) is int and r == k for k in (-3, 0, 7))
    except (TypeError, ValueError):
        return False


@lru_cache(maxsize=64)
def _picks(fn: Any) -> Callable[[Poly, Poly], Poly] | None:
    """`poly_max` for a function of two integers that returns the larger, `poly_min` for
    one that returns the smaller."""
    try:
        low, high = fn(0, 1), fn(1, 0)
    except (TypeError, ValueError):
        return None
    if low == high == 1:
        return poly_max
    if low == high == 0:
        return poly_min
    return None


RULES: dict[Family, Rule] = {
    Family.IDENTITY: _same,
    Family.DROPOUT: _same,
    Family.ELEMENTWISE: _elementwise,
    Family.ALONG: _reshaped,
    Family.REARRANGE: _reshaped,
    Family.REDUCE: _reduce,
    Family.MATMUL: _products,
    Family.FACTORY: _factory,
    Family.SHAPE_QUERY: _query,
    Family.ASSERT: _assert,
}
