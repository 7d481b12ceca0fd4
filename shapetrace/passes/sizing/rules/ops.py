"""Size rules of ops that compute: arithmetic on sizes and tensors (broadcasting), comparisons
and `torch._assert`, reductions, matmul and einsum, factories such as arange, and the long
tail of elementwise functions and methods."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
import torchvision.ops

from shapetrace.passes.shapes import op_label
from shapetrace.passes.sizing.expr import Poly
from shapetrace.passes.sizing.tensors import (
    BATCH,
    Pred,
    Rule,
    STensor,
    Unsupported,
    as_tensor,
    dim_index,
    flat_args,
    say,
    sizes_arg,
)

if TYPE_CHECKING:
    from shapetrace.passes.sizing.propagate import Propagator


def _scalar(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if not isinstance(a, Poly) and not isinstance(b, Poly):
        return fn(a, b)
    if isinstance(a, float) or isinstance(b, float) or a is None or b is None:
        raise Unsupported("float arithmetic on a size")
    x, y = Poly.of(a), Poly.of(b)
    if fn is operator.add:
        return x + y
    if fn is operator.sub:
        return x - y
    if fn is operator.mul:
        return x * y
    if fn in (operator.floordiv, operator.mod) and y.is_const and y.const > 0:
        return x.floordiv(y.const) if fn is operator.floordiv else x.mod(y.const)
    raise Unsupported(f"{fn.__name__} of sizes")


def _binary(fn: Callable[[Any, Any], Any]) -> Rule:
    def rule(p: Propagator, a: Any, b: Any = None, *_: Any, **__: Any) -> Any:
        tensors = [v for v in (a, b) if isinstance(v, STensor)]
        if tensors:
            return p.broadcast(tensors, fn.__name__)
        return _scalar(fn, a, b)

    return rule


def _compare_rule(rel: str, fn: Callable[[Any, Any], Any]) -> Rule:
    def rule(p: Propagator, a: Any, b: Any, *_: Any, **__: Any) -> Any:
        if isinstance(a, STensor) or isinstance(b, STensor):
            tensors = [v for v in (a, b) if isinstance(v, STensor)]
            return p.broadcast(tensors, fn.__name__)
        if isinstance(a, Poly) or isinstance(b, Poly):
            x, y = Poly.of(a), Poly.of(b)
            if not (x - y).vars:
                return fn(x.const, y.const)
            return Pred(x, rel, y)
        return fn(a, b)

    return rule


def _assert(p: Propagator, cond: Any, message: Any = "", *_: Any, **__: Any) -> None:
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


def _identity(p: Propagator, x: Any, *_: Any, **__: Any) -> Any:
    return as_tensor(x)


def _elementwise(p: Propagator, *args: Any, **kwargs: Any) -> STensor:
    tensors = flat_args((args, kwargs))
    if not tensors:
        raise Unsupported("an op without tensors")
    return p.broadcast(tensors, op_label(p.node))


def _reduce(
    p: Propagator, x: Any, dim: Any = None, keepdim: bool = False, *_: Any, **kwargs: Any
) -> Any:
    x = as_tensor(x)
    dim = kwargs.get("axis", dim)
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return STensor((), ())
    dims = {dim_index(d, x.ndim) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
    keepdim = bool(kwargs.get("keepdim", keepdim))
    shape = [
        Poly.of(1) if d in dims else s for d, s in enumerate(x.shape) if keepdim or d not in dims
    ]
    axes = [None if d in dims else a for d, a in enumerate(x.axes) if keepdim or d not in dims]
    out = STensor(tuple(shape), tuple(axes))
    method = op_label(p.node)
    if method in ("max", "min", "median", "mode", "sort", "topk", "kthvalue"):
        return (out, out)
    return out


def _matmul(p: Propagator, a: Any, b: Any, *_: Any, **__: Any) -> STensor:
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


def _arange(p: Propagator, *args: Any, **kwargs: Any) -> STensor:
    values = [a for a in args if isinstance(a, (int, Poly))]
    if "end" in kwargs:
        values = [*values, kwargs["end"]] if values else [0, kwargs["end"]]
    if "start" in kwargs:
        values = [kwargs["start"], *values]
    start, end, step = (
        (0, values[0], 1)
        if len(values) == 1
        else (values[0], values[1], values[2] if len(values) > 2 else 1)
    )
    if not isinstance(step, int) or step <= 0:
        raise Unsupported("arange with a varying or negative step")
    s, e = Poly.of(start), Poly.of(end)
    length = (e - s + step - 1).floordiv(step)
    return STensor((length,), (None,), s + (length - 1) * step)


def _factory(p: Propagator, *size: Any, **kwargs: Any) -> STensor:
    dims = sizes_arg(size) if size else list(kwargs.get("size", ()))
    if dims and isinstance(dims[-1], float):
        dims = dims[:-1]  # torch.full(size, value)
    shape = tuple(Poly.of(d) for d in dims)
    return STensor(shape, (None,) * len(shape))


def _full(p: Propagator, size: Any, *_: Any, **__: Any) -> STensor:
    return _factory(p, *list(size))


def _new_factory(p: Propagator, x: Any, *size: Any, **kwargs: Any) -> STensor:
    return _factory(p, *size, **kwargs)


def _einsum(p: Propagator, equation: Any, *operands: Any, **__: Any) -> STensor:
    tensors = [as_tensor(t) for t in sizes_arg(operands)]
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


def _math_identity(p: Propagator, x: Any, *_: Any, **__: Any) -> Any:
    if isinstance(x, Poly):
        return x
    raise Unsupported("math on a non-size")


_REDUCTIONS = (
    "mean",
    "sum",
    "amax",
    "amin",
    "max",
    "min",
    "std",
    "var",
    "prod",
    "argmax",
    "argmin",
    "logsumexp",
    "norm",
    "all",
    "any",
)
_ELEMENTWISE_TORCH = (
    "relu",
    "relu_",
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "abs",
    "sqrt",
    "rsqrt",
    "neg",
    "sign",
    "erf",
    "clamp",
    "clip",
    "sin",
    "cos",
    "softmax",
    "log_softmax",
    "dropout",
    "pow",
    "add",
    "sub",
    "mul",
    "div",
    "true_divide",
    "maximum",
    "minimum",
    "where",
    "zeros_like",
    "ones_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "full_like",
    "roll",
    "flip",
    "cumsum",
    "nan_to_num",
    "square",
    "channel_shuffle",
    "sigmoid_",
    "masked_fill",
    "clamp_min",
    "clamp_max",
    "exp_",
    "floor",
    "ceil",
    "round",
)
_ELEMENTWISE_FUNCTIONAL = (
    "relu",
    "relu6",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "hardswish",
    "hardsigmoid",
    "hardtanh",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "softmin",
    "softplus",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "normalize",
    "prelu",
    "local_response_norm",
    "threshold",
    "logsigmoid",
    "tanhshrink",
    "softsign",
    "relu_",
    "instance_norm",
)
_ELEMENTWISE_NN = ("hardswish", "hardsigmoid", "relu6", "gelu", "silu", "leaky_relu", "elu")
_ELEMENTWISE_METHODS = (
    "contiguous",
    "clone",
    "detach",
    "float",
    "half",
    "double",
    "int",
    "long",
    "bool",
    "cpu",
    "cuda",
    "requires_grad_",
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "exp",
    "log",
    "abs",
    "sqrt",
    "rsqrt",
    "neg",
    "softmax",
    "log_softmax",
    "clamp",
    "clamp_",
    "clamp_min",
    "clip",
    "masked_fill",
    "masked_fill_",
    "add",
    "add_",
    "sub",
    "sub_",
    "mul",
    "mul_",
    "div",
    "div_",
    "pow",
    "fill_",
    "zero_",
    "sign",
    "erf",
    "floor",
    "ceil",
    "round",
    "roll",
    "flip",
    "cumsum",
    "square",
    "sin",
    "cos",
    "normal_",
    "uniform_",
    "bernoulli_",
    "bernoulli",
    "maximum",
    "minimum",
    "where",
    "hardswish",
    "gelu",
    "sigmoid",
    "nan_to_num",
)


def _function_rules() -> dict[Any, Rule]:
    rules: dict[Any, Rule] = {
        operator.add: _binary(operator.add),
        operator.iadd: _binary(operator.add),
        operator.sub: _binary(operator.sub),
        operator.isub: _binary(operator.sub),
        operator.mul: _binary(operator.mul),
        operator.imul: _binary(operator.mul),
        operator.truediv: _binary(operator.truediv),
        operator.floordiv: _binary(operator.floordiv),
        operator.mod: _binary(operator.mod),
        operator.pow: _binary(operator.pow),
        operator.matmul: _matmul,
        operator.neg: lambda p, x: _elementwise(p, x) if isinstance(x, STensor) else -x,
        operator.eq: _compare_rule("==", operator.eq),
        operator.ne: _compare_rule("!=", operator.ne),
        operator.ge: _compare_rule(">=", operator.ge),
        operator.le: _compare_rule("<=", operator.le),
        operator.gt: _compare_rule(">", operator.gt),
        operator.lt: _compare_rule("<", operator.lt),
        torch._assert: _assert,
        torch.matmul: _matmul,
        torch.bmm: _matmul,
        torch.mm: _matmul,
        torch.arange: _arange,
        torch.zeros: _factory,
        torch.ones: _factory,
        torch.empty: _factory,
        torch.randn: _factory,
        torch.rand: _factory,
        torch.full: _full,
        torch.einsum: _einsum,
        math.floor: _math_identity,
        math.ceil: _math_identity,
        int: _math_identity,
    }
    for name in _REDUCTIONS:
        rules[getattr(torch, name)] = _reduce
    for name in _ELEMENTWISE_TORCH:
        rules[getattr(torch, name)] = _elementwise
    for name in _ELEMENTWISE_FUNCTIONAL:
        rules[getattr(F, name)] = _elementwise
    for name in _ELEMENTWISE_NN:
        fn = getattr(torch._C._nn, name, None)
        if fn is not None:
            rules[fn] = _elementwise
    rules[torchvision.ops.stochastic_depth] = _elementwise
    return rules


def _method_rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {
        "matmul": _matmul,
        "bmm": _matmul,
        "mm": _matmul,
        "new_zeros": _new_factory,
        "new_ones": _new_factory,
        "new_empty": _new_factory,
        "new_full": lambda p, x, size, *_, **__: _factory(p, *list(size)),
        "to": _identity,
        "type": _identity,
        "type_as": _identity,
    }
    for name in (*_REDUCTIONS, "median"):
        rules[name] = _reduce
    for name in _ELEMENTWISE_METHODS:
        rules[name] = _elementwise
    return rules


FUNCTION_RULES = _function_rules()
METHOD_RULES = _method_rules()
