"""Cost pass: multiply-accumulates, FLOPs and activation memory of every node, from shapes only.

Each node's cost follows from the module or function it calls (by type and by the identity of the
function, never by a class name) and the meta tensors it received and produced, so the pass costs
the same for any input size. An op without a formula is listed in `totals["uncounted"]` and keeps
no `macs`, never a silent zero. The conventions are written out in docs/cost.md.
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import fx, nn

from shapetrace.passes import PassContext
from shapetrace.passes.shapes import tensors_in
from shapetrace.report import Node, Report

Cost = tuple[int, int]  # (macs, flops)
ZERO: Cost = (0, 0)

# -- op families ----------------------------------------------------------------------------

# One flop per output element: activations, normalisation, softmax, arithmetic on tensors.
_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Tanhshrink,
    nn.Threshold,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.GLU,
    nn.Softmax,
    nn.Softmax2d,
    nn.LogSoftmax,
    nn.Softmin,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
    torchvision.ops.FrozenBatchNorm2d,
)
_ELEMENTWISE_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {
        operator.add,
        operator.iadd,
        operator.sub,
        operator.isub,
        operator.mul,
        operator.imul,
        operator.truediv,
        operator.itruediv,
        operator.floordiv,
        operator.mod,
        operator.pow,
        operator.neg,
        operator.abs,
        operator.eq,
        operator.ne,
        operator.lt,
        operator.le,
        operator.gt,
        operator.ge,
        operator.and_,
        operator.or_,
        operator.invert,
        torch.add,
        torch.sub,
        torch.subtract,
        torch.mul,
        torch.multiply,
        torch.div,
        torch.divide,
        torch.true_divide,
        torch.pow,
        torch.sqrt,
        torch.rsqrt,
        torch.square,
        torch.reciprocal,
        torch.exp,
        torch.log,
        torch.abs,
        torch.neg,
        torch.sin,
        torch.cos,
        torch.erf,
        torch.clamp,
        torch.clip,
        torch.maximum,
        torch.minimum,
        torch.where,
        torch.masked_fill,
        torch.sigmoid,
        torch.tanh,
        torch.relu,
        torch.relu_,
        torch.softmax,
        torch.log_softmax,
        torch.layer_norm,
        torch.batch_norm,
        torch.group_norm,
        torch.instance_norm,
        F.relu,
        F.relu_,
        F.relu6,
        F.leaky_relu,
        F.prelu,
        F.rrelu,
        F.elu,
        F.selu,
        F.celu,
        F.gelu,
        F.silu,
        F.mish,
        F.hardswish,
        F.hardsigmoid,
        F.hardtanh,
        F.hardshrink,
        F.softshrink,
        F.tanhshrink,
        F.threshold,
        F.sigmoid,
        F.logsigmoid,
        F.tanh,
        F.softplus,
        F.softsign,
        F.glu,
        F.softmax,
        F.log_softmax,
        F.softmin,
        F.layer_norm,
        F.batch_norm,
        F.group_norm,
        F.instance_norm,
        F.local_response_norm,
        F.rms_norm,
        F.normalize,
    }
)
_ELEMENTWISE_METHODS = frozenset(
    {
        "add",
        "add_",
        "sub",
        "sub_",
        "mul",
        "mul_",
        "div",
        "div_",
        "pow",
        "sqrt",
        "rsqrt",
        "square",
        "reciprocal",
        "exp",
        "log",
        "abs",
        "neg",
        "sin",
        "cos",
        "erf",
        "clamp",
        "clamp_",
        "clip",
        "maximum",
        "minimum",
        "where",
        "masked_fill",
        "masked_fill_",
        "sigmoid",
        "sigmoid_",
        "tanh",
        "tanh_",
        "relu",
        "relu_",
        "softmax",
        "log_softmax",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
    }
)

# One flop per input element: reductions.
_REDUCTION_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {
        torch.sum,
        torch.mean,
        torch.amax,
        torch.amin,
        torch.max,
        torch.min,
        torch.prod,
        torch.norm,
        torch.var,
        torch.std,
        torch.logsumexp,
        torch.argmax,
        torch.argmin,
    }
)
_REDUCTION_METHODS = frozenset(
    {"sum", "mean", "amax", "amin", "max", "min", "prod", "norm", "var", "std", "logsumexp"}
    | {"argmax", "argmin"}
)

# Zero cost by definition: shape bookkeeping, views, copies and lookups do no arithmetic.
_ZERO_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Embedding,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.ChannelShuffle,
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.modules.padding._CircularPadNd,
    torchvision.ops.Permute,
)
_ZERO_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {
        operator.getitem,
        builtins.getattr,
        torch.flatten,
        torch.reshape,
        torch.permute,
        torch.transpose,
        torch.t,
        torch.movedim,
        torch.squeeze,
        torch.unsqueeze,
        torch.cat,
        torch.concat,
        torch.stack,
        torch.split,
        torch.chunk,
        torch.unbind,
        torch.narrow,
        torch.select,
        torch.flip,
        torch.roll,
        torch.tile,
        torch.gather,
        torch.index_select,
        torch.clone,
        torch.zeros,
        torch.ones,
        torch.empty,
        torch.full,
        torch.arange,
        torch.zeros_like,
        torch.ones_like,
        torch.empty_like,
        torch.full_like,
        torch.channel_shuffle,
        torch.pixel_shuffle,
        torch.pixel_unshuffle,
        F.pad,
        F.embedding,
        F.pixel_shuffle,
        F.pixel_unshuffle,
    }
)
_ZERO_METHODS = frozenset(
    {
        "size",
        "dim",
        "numel",
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "flatten",
        "unflatten",
        "permute",
        "transpose",
        "t",
        "movedim",
        "contiguous",
        "expand",
        "expand_as",
        "squeeze",
        "unsqueeze",
        "split",
        "chunk",
        "unbind",
        "narrow",
        "select",
        "flip",
        "roll",
        "repeat",
        "tile",
        "gather",
        "index_select",
        "clone",
        "detach",
        "to",
        "type",
        "type_as",
        "float",
        "half",
        "double",
        "int",
        "long",
        "bool",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "zero_",
        "fill_",
        "__getitem__",
    }
)

# Dropout and its kin return their input unchanged in eval (zero cost), a masked copy in training.
_DROPOUT_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.dropout._DropoutNd,
    torchvision.ops.StochasticDepth,
    torchvision.ops.DropBlock2d,
    torchvision.ops.DropBlock3d,
)
_DROPOUT_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {
        F.dropout,
        F.dropout1d,
        F.dropout2d,
        F.dropout3d,
        F.alpha_dropout,
        F.feature_alpha_dropout,
        torch.dropout,
        torchvision.ops.stochastic_depth,
    }
)

_MATMUL_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {torch.matmul, operator.matmul, torch.mm, torch.bmm}
)
_MATMUL_METHODS = frozenset({"matmul", "mm", "bmm", "__matmul__"})
_ADDMM_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({torch.addmm, torch.baddbmm})
_CONV_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({F.conv1d, F.conv2d, F.conv3d})
_CONV_TRANSPOSE_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d}
)

# Pools: spatial rank of each type, for kernels given as a single int.
_POOL_MODULES: tuple[tuple[type[nn.Module], int], ...] = (
    (nn.MaxPool1d, 1),
    (nn.MaxPool2d, 2),
    (nn.MaxPool3d, 3),
    (nn.AvgPool1d, 1),
    (nn.AvgPool2d, 2),
    (nn.AvgPool3d, 3),
)
_ADAPTIVE_POOL_MODULES: tuple[tuple[type[nn.Module], int], ...] = (
    (nn.AdaptiveMaxPool1d, 1),
    (nn.AdaptiveMaxPool2d, 2),
    (nn.AdaptiveMaxPool3d, 3),
    (nn.AdaptiveAvgPool1d, 1),
    (nn.AdaptiveAvgPool2d, 2),
    (nn.AdaptiveAvgPool3d, 3),
)
_POOL_FUNCTIONS: dict[Callable[..., Any], int] = {
    F.max_pool1d: 1,
    F.max_pool2d: 2,
    F.max_pool3d: 3,
    F.avg_pool1d: 1,
    F.avg_pool2d: 2,
    F.avg_pool3d: 3,
    torch.max_pool1d: 1,
    torch.max_pool2d: 2,
    torch.max_pool3d: 3,
    torch.avg_pool1d: 1,
}
_ADAPTIVE_POOL_FUNCTIONS: dict[Callable[..., Any], int] = {
    F.adaptive_max_pool1d: 1,
    F.adaptive_max_pool2d: 2,
    F.adaptive_max_pool3d: 3,
    F.adaptive_avg_pool1d: 1,
    F.adaptive_avg_pool2d: 2,
    F.adaptive_avg_pool3d: 3,
}


# -- the pass -------------------------------------------------------------------------------


def run(context: PassContext) -> None:
    """Set `macs`, `flops` and `activation_bytes` on nodes, `macs`/`flops` on modules, and the
    totals `macs`, `flops`, `peak_activation_bytes` and `uncounted`."""
    gm = context.capture.graph_module
    values = context.shapes.values
    uncounted: list[str] = []
    for fx_node, node in context.by_fx.items():
        if fx_node not in values:  # not reached: the model broke earlier
            continue
        cost = node_cost(gm, fx_node, values)
        if cost is None:
            if node.type not in uncounted:
                uncounted.append(node.type)
        else:
            node.macs, node.flops = cost
    reached = [n for n in context.capture.nodes() if n in values]
    per_node, peak = activation_memory(reached, values, _weight_storages(gm, reached, values))
    for fx_node, size in per_node.items():
        context.by_fx[fx_node].activation_bytes = size
    _module_sums(context.report)
    counted = [n for n in context.report.nodes if n.macs is not None]
    context.report.totals.update(
        macs=sum(n.macs or 0 for n in counted),
        flops=sum(n.flops or 0 for n in counted),
        peak_activation_bytes=peak,
        uncounted=uncounted,
    )


def node_cost(gm: fx.GraphModule, node: fx.Node, values: dict[fx.Node, Any]) -> Cost | None:
    """(MACs, FLOPs) of one executed node; None when shapetrace has no formula for its op."""
    out = values[node]
    if node.op in ("placeholder", "get_attr", "output"):
        return ZERO
    if not tensors_in(out):  # shape arithmetic: size(), getattr, int maths, asserts
        return ZERO
    args = fx.node.map_arg(node.args, lambda a: values.get(a))
    kwargs = fx.node.map_arg(node.kwargs, lambda a: values.get(a))
    if node.op == "call_module":
        return module_cost(gm.get_submodule(str(node.target)), args, kwargs, out)
    if node.op == "call_function":
        return function_cost(node.target, args, kwargs, out)
    if node.op == "call_method":
        return method_cost(str(node.target), args, kwargs, out)
    return None


def module_cost(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> Cost | None:
    """Cost of calling a leaf module on `args` (meta tensors) that returned `out`."""
    first, result = _first_tensor(args, kwargs), _first_tensor(out)
    if isinstance(module, nn.modules.conv._ConvTransposeNd) and first is not None:
        # Every input element is scattered through Cout/groups x kernel weights.
        return _mac(first.numel() * math.prod(module.weight.shape[1:]))
    if isinstance(module, nn.modules.conv._ConvNd) and result is not None:
        # weight is (Cout, Cin/groups, *kernel): each output element reads Cin/groups x kernel.
        return _mac(result.numel() * math.prod(module.weight.shape[1:]))
    if isinstance(module, nn.Linear) and result is not None:
        return _mac(result.numel() * module.in_features)
    if isinstance(module, nn.MultiheadAttention):
        return _mha_cost(module, args, kwargs)
    for pool, rank in _POOL_MODULES:
        if isinstance(module, pool) and result is not None:
            return _pool_cost(result, module.kernel_size, rank)  # type: ignore[arg-type]
    for pool, rank in _ADAPTIVE_POOL_MODULES:
        if isinstance(module, pool) and first is not None and result is not None:
            return _adaptive_pool_cost(first, result, rank)
    if isinstance(module, _ELEMENTWISE_MODULES):
        return 0, _numel(out)
    if isinstance(module, _DROPOUT_MODULES):
        return _dropout_cost(first, out)
    if isinstance(module, _ZERO_MODULES):
        return ZERO
    return None


def function_cost(
    target: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> Cost | None:
    """Cost of a call_function node, chosen by the identity of the function called."""
    tensors = _tensor_args(args, kwargs)
    result = _first_tensor(out)
    first = tensors[0] if tensors else None
    if target in _ZERO_FUNCTIONS:
        return ZERO
    if target in _MATMUL_FUNCTIONS and len(tensors) >= 2 and result is not None:
        return _matmul_cost(tensors[0], result)
    if target in _ADDMM_FUNCTIONS and len(tensors) >= 3 and result is not None:
        return _matmul_cost(tensors[1], result)
    if target is F.linear and len(tensors) >= 2 and result is not None:
        return _mac(result.numel() * tensors[1].shape[-1])
    if target in _CONV_FUNCTIONS and len(tensors) >= 2 and result is not None:
        return _mac(result.numel() * math.prod(tensors[1].shape[1:]))
    if target in _CONV_TRANSPOSE_FUNCTIONS and len(tensors) >= 2:
        return _mac(tensors[0].numel() * math.prod(tensors[1].shape[1:]))
    if target is F.scaled_dot_product_attention and len(tensors) >= 3:
        return _sdpa_cost(tensors[0], tensors[1], tensors[2])
    if target is torch.einsum and args and isinstance(args[0], str):
        operands = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
        return _einsum_cost(args[0], [t for t in operands if isinstance(t, torch.Tensor)], out)
    if target in _POOL_FUNCTIONS and result is not None:
        kernel = args[1] if len(args) > 1 else kwargs.get("kernel_size")
        return _pool_cost(result, kernel, _POOL_FUNCTIONS[target])
    if target in _ADAPTIVE_POOL_FUNCTIONS and first is not None and result is not None:
        return _adaptive_pool_cost(first, result, _ADAPTIVE_POOL_FUNCTIONS[target])
    if target in _ELEMENTWISE_FUNCTIONS:
        return 0, _numel(out)
    if target in _REDUCTION_FUNCTIONS and first is not None:
        return 0, max(first.numel(), _numel(out))
    if target in _DROPOUT_FUNCTIONS:
        return _dropout_cost(first, out)
    return None


def method_cost(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost | None:
    """Cost of a call_method node (`x.view(...)`, `x.add_(y)`), by the method called."""
    tensors = _tensor_args(args, kwargs)
    result = _first_tensor(out)
    if name in _ZERO_METHODS:
        return ZERO
    if name in _MATMUL_METHODS and len(tensors) >= 2 and result is not None:
        return _matmul_cost(tensors[0], result)
    if name in _ELEMENTWISE_METHODS:
        return 0, _numel(out)
    if name in _REDUCTION_METHODS and tensors:
        return 0, max(tensors[0].numel(), _numel(out))
    return None


# -- formulas -------------------------------------------------------------------------------


def _mac(macs: int) -> Cost:
    return macs, 2 * macs


def _matmul_cost(a: torch.Tensor, result: torch.Tensor) -> Cost:
    # Each output element is a dot product over a's last dimension (broadcast batch included).
    return _mac(max(result.numel(), 1) * a.shape[-1])


def _sdpa_cost(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Cost:
    rows = q.numel() // max(q.shape[-1], 1)  # batch x heads x L
    scores = rows * k.shape[-2]
    macs = scores * q.shape[-1] + scores * v.shape[-1]  # Q K^T, then weights x V
    return macs, 2 * macs + scores  # plus one flop per score for the softmax


def _mha_cost(
    m: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Cost | None:
    """In-projection, Q K^T, weights x V and out-projection, derived from the input shapes."""
    names = ("query", "key", "value")
    query, key, value = (
        args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names)
    )
    if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor):
        return None
    if not isinstance(value, torch.Tensor):
        return None
    length, batch = _seq_batch(m, query)
    source, _ = _seq_batch(m, key)
    value_len, _ = _seq_batch(m, value)
    embed = m.embed_dim
    in_proj = batch * (
        length * embed * embed + source * m.kdim * embed + value_len * m.vdim * embed
    )
    source += int(m.bias_k is not None) + int(m.add_zero_attn)  # extra key/value positions
    scores = batch * m.num_heads * length * source
    attention = 2 * batch * length * source * embed  # heads x head_dim == embed_dim
    out_proj = batch * length * embed * embed
    macs = in_proj + attention + out_proj
    return macs, 2 * macs + scores


def _seq_batch(m: nn.MultiheadAttention, x: torch.Tensor) -> tuple[int, int]:
    if x.dim() == 2:  # unbatched (L, E)
        return x.shape[0], 1
    if m.batch_first:
        return x.shape[1], x.shape[0]
    return x.shape[0], x.shape[1]


def _pool_cost(result: torch.Tensor, kernel: Any, rank: int) -> Cost:
    window = math.prod(kernel) if isinstance(kernel, (tuple, list)) else kernel**rank
    return 0, result.numel() * window


def _adaptive_pool_cost(first: torch.Tensor, result: torch.Tensor, rank: int) -> Cost:
    """Exact sum of the adaptive windows: along each axis, output i reads input
    [floor(i*In/Out), ceil((i+1)*In/Out))."""
    reads = result.numel() // max(math.prod(result.shape[-rank:]), 1)
    for size_in, size_out in zip(first.shape[-rank:], result.shape[-rank:], strict=True):
        reads *= sum(
            -((-(i + 1) * size_in) // size_out) - (i * size_in) // size_out for i in range(size_out)
        )
    return 0, reads


def _einsum_cost(equation: str, operands: list[torch.Tensor], out: Any) -> Cost | None:
    """One or two operands: one MAC per point of the contraction's iteration space, after
    summing out indices that only one operand carries. More operands: no formula."""
    if not 1 <= len(operands) <= 2:
        return None
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        return None
    widest = max(
        t.dim() - len(term.replace("...", "")) for term, t in zip(terms, operands, strict=True)
    )
    sizes: dict[str, int] = {}
    labels: list[str] = []
    for term, tensor in zip(terms, operands, strict=True):
        expanded = _expand_ellipsis(term, tensor.dim(), widest)
        labels.append(expanded)
        for label, size in zip(expanded, tensor.shape, strict=True):
            sizes[label] = max(sizes.get(label, 1), size)
    if arrow:
        kept = set(_expand_ellipsis(rhs, len(rhs.replace("...", "")) + widest, widest))
    else:
        every = "".join(labels)
        kept = {c for c in every if every.count(c) == 1 or not c.isalpha()}
    if len(operands) == 1:
        reduced = any(c not in kept for c in labels[0])
        return 0, operands[0].numel() if reduced else 0
    flops = 0
    shared = set(labels[0]) & set(labels[1])
    space = set()
    for term, tensor in zip(labels, operands, strict=True):
        own = {c for c in term if c not in kept and c not in shared}
        if own:  # torch sums these out before contracting
            flops += tensor.numel()
        space |= set(term) - own
    macs = math.prod(sizes[c] for c in space)
    return macs, 2 * macs + flops


def _expand_ellipsis(term: str, dims: int, widest: int) -> str:
    """Replace `...` by one private label per broadcast axis, aligned from the right."""
    if "..." not in term:
        return term
    head, tail = term.split("...")
    count = dims - len(head) - len(tail)
    return head + "".join(chr(0x100 + widest - count + j) for j in range(count)) + tail


def _dropout_cost(first: torch.Tensor | None, out: Any) -> Cost:
    # In eval, dropout and stochastic depth hand back their input object: nothing is computed.
    if first is not None and _first_tensor(out) is first:
        return ZERO
    return 0, _numel(out)


# -- activation memory ----------------------------------------------------------------------


def activation_memory(
    order: list[fx.Node], values: dict[fx.Node, Any], weights: set[int]
) -> tuple[dict[fx.Node, int], int]:
    """Bytes each node allocates and the peak of live activations over an inference pass.

    A node's bytes are those of the storages its output creates: a view or an in-place op
    shares its input's storage and adds nothing. A storage lives from the node that creates it
    until the last node that reads any tensor sharing it; graph inputs are held by the caller
    and graph outputs are returned, so both live for the whole pass. `weights` are storages of
    parameters and buffers, which are not activations.
    """
    index = {node: i for i, node in enumerate(order)}
    end = len(order)
    size: dict[int, int] = {}
    born: dict[int, int] = {}
    dies: dict[int, int] = {}
    per_node: dict[fx.Node, int] = {}
    for i, node in enumerate(order):
        last = i
        for user in node.users:
            last = max(last, end if user.op == "output" else index.get(user, i))
        if node.op == "placeholder":
            last = end
        created = 0
        for key, nbytes in _storages(values[node]):
            if key in weights:
                continue
            if key not in born:
                born[key], size[key] = i, nbytes
                created += nbytes
            dies[key] = max(dies.get(key, last), last)
        per_node[node] = created
    change = [0] * (end + 2)
    for key, nbytes in size.items():
        change[born[key]] += nbytes
        change[dies[key] + 1] -= nbytes
    live = peak = 0
    for i in range(end + 1):
        live += change[i]
        peak = max(peak, live)
    return per_node, peak


def _weight_storages(
    gm: fx.GraphModule, order: list[fx.Node], values: dict[fx.Node, Any]
) -> set[int]:
    keys = {_storage_key(t) for t in [*gm.parameters(), *gm.buffers()]}
    for node in order:
        if node.op == "get_attr":
            keys.update(key for key, _ in _storages(values[node]))
    return keys


def _storage_key(tensor: torch.Tensor) -> int:
    # The address of the storage object, shared by views and in-place results even on meta.
    return int(tensor.untyped_storage()._cdata)


def _storages(value: Any) -> Iterator[tuple[int, int]]:
    for tensor in tensors_in(value):
        storage = tensor.untyped_storage()
        yield int(storage._cdata), int(storage.nbytes())


# -- module sums ----------------------------------------------------------------------------


def _module_sums(report: Report) -> None:
    """A module's cost is the sum over the counted nodes called from inside it. A shared
    module's own entry (calls == 0, its calls listed under their call sites) sums the nodes
    that call it, wherever from."""
    by_site: dict[str, list[Node]] = {}
    by_target: dict[str, list[Node]] = {}
    for node in report.nodes:
        if node.macs is None:
            continue
        for prefix in _prefixes(node.module):
            by_site.setdefault(prefix, []).append(node)
        if node.op == "call_module":
            for prefix in _prefixes(node.target):
                by_target.setdefault(prefix, []).append(node)
    for module in report.modules:
        members = by_site.get(module.path)
        if not members and module.calls == 0:
            members = by_target.get(module.path)
        if members:
            module.macs = sum(n.macs or 0 for n in members)
            module.flops = sum(n.flops or 0 for n in members)


def _prefixes(path: str | None) -> list[str]:
    if not path:
        return []
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


# -- helpers --------------------------------------------------------------------------------


def _tensor_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    return tensors_in(list(args) + list(kwargs.values()))


def _first_tensor(*values: Any) -> torch.Tensor | None:
    for value in values:
        found = tensors_in(value)
        if found:
            return found[0]
    return None


def _numel(value: Any) -> int:
    return sum(t.numel() for t in tensors_in(value))
