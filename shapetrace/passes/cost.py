"""Cost pass: multiply-accumulates, FLOPs and activation memory of every node, from shapes only.

Every call node goes through the op registry (`shapetrace.ops`): `ops.bind` gives the op's entry
and its arguments by name, whatever spelling the model used, and the entry's family picks the
rule in `FAMILY_RULES`. The node's cost follows from its bound arguments and the meta tensors
it received and produced, so the pass costs the same for any input size. Where no formula
applies the node keeps no `macs`, never a silent zero: its type is listed in
`totals["uncounted"]` and the node says why. The conventions are written out in docs/cost.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import fx, nn

from shapetrace import ops
from shapetrace.ops import Family
from shapetrace.passes import PassContext
from shapetrace.passes.shapes import tensors_in
from shapetrace.report import Report

Cost = tuple[int, int]  # (macs, flops)
ZERO: Cost = (0, 0)


class NoFormula(Exception):
    """No cost formula applies to a call; the message says why, in words a user can read."""


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
        try:
            # A module call's layer as the capture already looked it up.
            layer = context.capture.module_of(fx_node) if fx_node.op == "call_module" else None
            (node.macs, node.flops), per_element = _cost_and_scaling(gm, fx_node, values, layer)
            node.cost_per_element = per_element
        except NoFormula as why:
            node.why_missing("macs", str(why))
            if node.type not in uncounted:
                uncounted.append(node.type)
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


def node_cost(gm: fx.GraphModule, node: fx.Node, values: dict[fx.Node, Any]) -> Cost:
    """(MACs, FLOPs) of one executed node, by the rule of its op's family; raises `NoFormula`
    (saying why) when no formula applies."""
    return _cost_and_scaling(gm, node, values)[0]


def _cost_and_scaling(
    gm: fx.GraphModule,
    node: fx.Node,
    values: dict[fx.Node, Any],
    module: nn.Module | None = None,
) -> tuple[Cost, list[int] | None]:
    """The node's cost and, where its rule makes the cost a fixed multiple of its output's
    elements at every size, that multiple as `[macs, flops]` per output element (else None):
    `Report.at` scales the cost to a new size with it, no torch needed."""
    out = values[node]
    if node.op in ("placeholder", "get_attr", "output"):
        return ZERO, [0, 0]
    if not tensors_in(out):  # shape arithmetic: size(), getattr, int maths, asserts
        return ZERO, [0, 0]
    if module is None and node.op == "call_module":
        module = gm.get_submodule(str(node.target))
    if module is not None and node.args:
        # Norms and activations: rules that read no argument and no configuration (the
        # output's elements) need no binding of the module's configuration.
        entry = ops.lookup_target(node.op, node.target, module)
        rule = FAMILY_RULES.get(entry.family) if entry is not None else None
        if entry is not None and rule in _OUTPUT_ONLY:
            plain = ops.Call(entry, {}, node.target, module, {})
            cost = FAMILY_RULES[plain.family](plain, out)
            return cost, _per_element(plain, out, cost)
    args = fx.node.map_arg(node.args, lambda a: values.get(a))
    kwargs = fx.node.map_arg(node.kwargs, lambda a: values.get(a))
    call = ops.bind_call(node.op, node.target, args, kwargs, module)
    if call is None:
        raise NoFormula(f"{_called(node, gm)}: not an op shapetrace knows, so no cost formula")
    window = None
    try:
        if call.family is Family.WINDOW:
            window = ops.window(call)  # read once, for the cost and its multiple
            cost = _window_cost(call, out, window)
        else:
            cost = FAMILY_RULES[call.family](call, out)
    except ops.BindError as error:
        raise NoFormula(f"{call.name}: {error}") from error
    return cost, _per_element(call, out, cost, window)


# Families whose cost is the same multiple of the output's elements at every input size (or
# zero): convolutions and windowed pools (per element: the window), linear layers (per
# element: in_features), elementwise ops, norms, softmax-like ops, interpolation taps.
# Adaptive pools (windows that change with the size), reductions, matmul, einsum and attention
# (whose inner dimension may scale) are left without a multiple.
_PROPORTIONAL = {
    Family.IDENTITY,
    Family.DROPOUT,
    Family.ELEMENTWISE,
    Family.NORM,
    Family.ALONG,
    Family.LINEAR,
    Family.PAD,
    Family.RESHAPE,
    Family.PERMUTE,
    Family.INDEX,
    Family.SPLIT,
    Family.CONCAT,
    Family.EXPAND,
    Family.REARRANGE,
    Family.EMBEDDING,
    Family.FACTORY,
    Family.SHAPE_QUERY,
    Family.ASSERT,
}


def _per_element(
    call: ops.Call, out: Any, cost: Cost, window: ops.Window | None = None
) -> list[int] | None:
    """`[macs, flops]` per output element when the rule that gave `cost` is that multiple of
    the output's elements at any size, else None (`window`: the call's, if already read)."""
    if cost == ZERO and call.family in FAMILY_RULES and FAMILY_RULES[call.family] is _free:
        return [0, 0]
    if call.family in _PROPORTIONAL:
        pass
    elif call.family is Family.WINDOW:
        if (window or ops.window(call)).kind not in ("conv", "max", "avg", "unfold", "slide"):
            return None  # a transposed conv scales with its input, an Lp pool with both
    elif call.family is Family.RESAMPLE:
        resample = ops.resample(call)
        if resample.kind == "interpolate" and resample.mode not in (
            *_TAPS,
            "nearest",
            "nearest-exact",
        ):
            return None  # area (an adaptive pool)
    else:
        return None
    found = tensors_in(out)
    if len(found) != 1:
        return None
    elements = found[0].numel()
    if elements == 0:
        return [0, 0] if cost == ZERO else None
    macs, flops = cost
    if macs % elements or flops % elements:
        return None
    return [macs // elements, flops // elements]


def _called(node: fx.Node, gm: fx.GraphModule) -> str:
    """What the node calls, as a user would name it."""
    if node.op == "call_module":
        return f"leaf module {type(gm.get_submodule(str(node.target))).__name__}"
    if node.op == "call_method":
        return f"tensor method .{node.target}()"
    name = getattr(node.target, "__qualname__", None) or str(node.target)
    origin = str(getattr(node.target, "__module__", None) or "")
    if origin and origin.split(".")[0] != "torch":
        # fx records other libraries' functions only when they are wrapped (fx.wrap): whole.
        return f"{origin}.{name}, traced as one opaque call"
    return f"function {origin}.{name}" if origin else f"function {name}"


# -- rules, one per family ------------------------------------------------------------------


def _free(call: ops.Call, out: Any) -> Cost:
    """Views, copies, lookups, padding, factories and size questions do no arithmetic."""
    return ZERO


def _per_output_element(call: ops.Call, out: Any) -> Cost:
    """Elementwise ops and normalisation: one flop per output element."""
    return 0, _numel(out)


def _dropout(call: ops.Call, out: Any) -> Cost:
    # In eval, dropout and stochastic depth hand back their input object: nothing is computed.
    if _first_tensor(out) is _first_tensor(call.input):
        return ZERO
    return 0, _numel(out)


def _along(call: ops.Call, out: Any) -> Cost:
    """Softmax, normalize, GLU: one flop per output element. A cumulative scan has no
    convention yet."""
    if call.name == "cumulative":
        raise NoFormula("a cumulative scan (cumsum, cumprod) has no cost convention yet")
    return 0, _numel(out)


def _window(call: ops.Call, out: Any) -> Cost:
    return _window_cost(call, out, ops.window(call))


def _window_cost(call: ops.Call, out: Any, window: ops.Window) -> Cost:
    result, first = _first_tensor(out), _first_tensor(call.input)
    if result is None or first is None:
        raise NoFormula(f"{call.name}: no tensor input or output")
    kernel = math.prod(window.kernel)
    if window.kind == "conv":
        # Each output element reads Cin/groups x kernel weights.
        return _mac(result.numel() * window.weights_per_output)
    if window.kind == "conv_transpose":
        # Every input element is scattered through Cout/groups x kernel weights.
        if window.out_channels is None:
            raise NoFormula(f"{call.name}: no output channels")
        return _mac(first.numel() * (window.out_channels // max(window.groups, 1)) * kernel)
    if window.kind in ("max", "avg"):
        return 0, result.numel() * kernel  # every window element read, padding included
    if window.kind == "lp":
        # x^p per input element, the window sums, then the p-th root per output element.
        return 0, first.numel() + result.numel() * (kernel + 1)
    return ZERO  # unpooling, unfold (im2col) and Tensor.unfold move elements: no arithmetic


def _adaptive(call: ops.Call, out: Any) -> Cost:
    result, first = _first_tensor(out), _first_tensor(call.input)
    if result is None or first is None:
        raise NoFormula(f"{call.name}: no tensor input or output")
    return _adaptive_pool_cost(first, result, int(call.get("rank", result.dim() - 2)))


# Interpolation taps per output element and spatial axis.
_TAPS = {"linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4}


def _resample(call: ops.Call, out: Any) -> Cost:
    resample = ops.resample(call)
    result, first = _first_tensor(out), _first_tensor(call.input)
    if resample.kind != "interpolate" or resample.mode in ("nearest", "nearest-exact"):
        return ZERO  # pixel (un)shuffle and nearest neighbours move elements, compute nothing
    if result is None or first is None:
        raise NoFormula(f"{call.name}: no tensor input or output")
    rank = result.dim() - 2
    if resample.mode == "area":  # an adaptive average pool
        return _adaptive_pool_cost(first, result, rank)
    if resample.mode not in _TAPS:
        raise NoFormula(f"interpolate: no cost convention for mode {resample.mode!r}")
    if resample.antialias and any(
        o < i for o, i in zip(result.shape[2:], first.shape[2:], strict=True)
    ):
        raise NoFormula("interpolate: antialiased downsampling widens its filter with the scale")
    return _mac(result.numel() * _TAPS[resample.mode] ** rank)


def _reduce(call: ops.Call, out: Any) -> Cost:
    """One flop per input element (or per output element of a binary max/min)."""
    first = _first_tensor(call.input)
    if first is None:
        raise NoFormula(f"{call.name}: no tensor input")
    return 0, max(first.numel(), _numel(out))


def _linear(call: ops.Call, out: Any) -> Cost:
    result, weight = _first_tensor(out), call.get("weight")
    if result is None or not isinstance(weight, torch.Tensor):
        raise NoFormula("linear: no weight tensor")
    return _mac(result.numel() * weight.shape[-1])


def _matmul(call: ops.Call, out: Any) -> Cost:
    if call.name == "einsum":
        equation, operands = call.get("equation"), call.get("operands", [])
        tensors = [t for t in operands if isinstance(t, torch.Tensor)]
        if not isinstance(equation, str) or len(tensors) != len(operands):
            raise NoFormula("einsum: no equation or a non-tensor operand")
        return _einsum_cost(equation, tensors)
    # matmul, mm, bmm, and addmm/baddbmm (whose `input` is the first factor, after the bias).
    first, result = call.input, _first_tensor(out)
    if not isinstance(first, torch.Tensor) or result is None:
        raise NoFormula(f"{call.name}: no tensor operands")
    return _matmul_cost(first, result)


def _attention(call: ops.Call, out: Any) -> Cost:
    query, key, value = call.get("query"), call.get("key"), call.get("value")
    if call.name == "transformer":
        raise NoFormula(
            "a whole nn.Transformer* block called as one leaf: its layers are not counted"
        )
    if not all(isinstance(t, torch.Tensor) for t in (query, key, value)):
        raise NoFormula(f"{call.name}: query, key or value is not a tensor")
    if call.name == "scaled_dot_product_attention":
        return _sdpa_cost(query, key, value)
    if isinstance(call.module, nn.MultiheadAttention):
        return _mha_cost(call.module, query, key, value)
    raise NoFormula(f"{call.name}: projection weights are not read from the functional form")


FAMILY_RULES: dict[Family, Callable[[ops.Call, Any], Cost]] = {
    Family.IDENTITY: _free,
    Family.DROPOUT: _dropout,
    Family.ELEMENTWISE: _per_output_element,
    Family.NORM: _per_output_element,
    Family.ALONG: _along,
    Family.WINDOW: _window,
    Family.ADAPTIVE: _adaptive,
    Family.RESAMPLE: _resample,
    Family.PAD: _free,
    Family.RESHAPE: _free,
    Family.PERMUTE: _free,
    Family.INDEX: _free,
    Family.SPLIT: _free,
    Family.CONCAT: _free,
    Family.EXPAND: _free,
    Family.REARRANGE: _free,
    Family.REDUCE: _reduce,
    Family.LINEAR: _linear,
    Family.MATMUL: _matmul,
    Family.ATTENTION: _attention,
    Family.EMBEDDING: _free,
    Family.FACTORY: _free,
    Family.SHAPE_QUERY: _free,
    Family.ASSERT: _free,
}
"""The cost rule of each op family: (call, output) -> (MACs, FLOPs), or `NoFormula`."""

# Rules that read only the output (not the call's arguments or configuration).
_OUTPUT_ONLY = (_free, _per_output_element)


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
    m: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> Cost:
    """In-projection, Q K^T, weights x V and out-projection, derived from the input shapes."""
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


def _adaptive_pool_cost(first: torch.Tensor, result: torch.Tensor, rank: int) -> Cost:
    """Exact sum of the adaptive windows: along each axis, output i reads input
    [floor(i*In/Out), ceil((i+1)*In/Out))."""
    reads = result.numel() // max(math.prod(result.shape[-rank:]), 1)
    for size_in, size_out in zip(first.shape[-rank:], result.shape[-rank:], strict=True):
        reads *= sum(
            -((-(i + 1) * size_in) // size_out) - (i * size_in) // size_out for i in range(size_out)
        )
    return 0, reads


def _einsum_cost(equation: str, operands: list[torch.Tensor]) -> Cost:
    """One or two operands: one MAC per point of the contraction's iteration space, after
    summing out indices that only one operand carries. More operands: no formula."""
    if not 1 <= len(operands) <= 2:
        raise NoFormula(f"einsum of {len(operands)} operands: no formula (one or two only)")
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise NoFormula("einsum: the equation does not match its operands")
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


# -- activation memory ----------------------------------------------------------------------


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
    # Per path: [MACs, FLOPs] of the counted nodes inside it, summed as the nodes are read.
    by_site: dict[str, list[int]] = {}
    by_target: dict[str, list[int]] = {}
    for node in report.nodes:
        if node.macs is None:
            continue
        macs, flops = node.macs or 0, node.flops or 0
        for prefix in _prefixes(node.module):
            _add(by_site, prefix, macs, flops)
        if node.op == "call_module":
            for prefix in _prefixes(node.target):
                _add(by_target, prefix, macs, flops)
    for module in report.modules:
        sums = by_site.get(module.path)
        if sums is None and module.calls == 0:
            sums = by_target.get(module.path)
        if sums is not None:
            module.macs, module.flops = sums


def _add(sums: dict[str, list[int]], path: str, macs: int, flops: int) -> None:
    found = sums.get(path)
    if found is None:
        sums[path] = [macs, flops]
    else:
        found[0] += macs
        found[1] += flops


def _prefixes(path: str | None) -> list[str]:
    if not path:
        return []
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


# -- helpers --------------------------------------------------------------------------------


def _first_tensor(*values: Any) -> torch.Tensor | None:
    for value in values:
        found = tensors_in(value)
        if found:
            return found[0]
    return None


def _numel(value: Any) -> int:
    return sum(t.numel() for t in tensors_in(value))
