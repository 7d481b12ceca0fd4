"""Receptive-field pass: the field of every node with a spatial output, per spatial axis.

Definitions follow Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural
Networks" (Distill, 2019): the field of output unit i spans input pixels
`[i*stride - padding, i*stride - padding + size - 1]`. Fields are propagated on the fx graph, one
op at a time, in exact integer arithmetic; merges take the union of their branches.

So that transposed convolutions and upsampling stay exact, the field along an axis is kept as a
periodic pattern: units `0..q-1` each have a first and last input pixel, and unit `o + q` spans
the pixels of unit `o` moved by `shift`; the stride is `shift / q`. An ordinary convolutional
field has `q == 1`. An op is described by the first and last of its input units that each output
unit reads, plus the ratio `a / b` (input units per output unit) that makes this map periodic.

The spatial axes are those of the image input, the first placeholder with at least 3 dims
(N x C x *spatial). Each tensor also records which of its dims runs along which axis, so that a
permute (channel-last blocks) keeps the field, and a flatten that merges positions is reported as
`{"flattened": ...}`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import fx, nn

from shapetrace.passes import PassContext

# A layout entry: this dim holds several positions merged together (after a flatten).
FLAT = -1
# Periodic patterns longer than this are reported as unknown rather than carried along.
MAX_PERIOD = 4096


@dataclass(frozen=True, slots=True)
class Axis:
    """The field along one spatial axis: unit `m*q + r` spans input pixels
    `[lo[r] + m*shift, hi[r] + m*shift]`, with `q = len(lo)`."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    shift: int

    def start(self, unit: int) -> int:
        m, r = divmod(unit, len(self.lo))
        return self.lo[r] + m * self.shift

    def end(self, unit: int) -> int:
        m, r = divmod(unit, len(self.hi))
        return self.hi[r] + m * self.shift

    @property
    def stride(self) -> Fraction:
        return Fraction(self.shift, len(self.lo))

    @property
    def size(self) -> int:
        """The largest field among the units."""
        return max(h - lo + 1 for lo, h in zip(self.lo, self.hi, strict=True))


@dataclass(frozen=True, slots=True)
class Spatial:
    """Units with finite fields: one Axis per input spatial axis, and per tensor dim the axis it
    runs along (an int), FLAT, or None (batch, channels, features)."""

    axes: tuple[Axis, ...]
    layout: tuple[int | None, ...]
    misaligned: bool = False

    @property
    def intact(self) -> bool:
        """Every axis runs along a dim of its own."""
        return sorted(e for e in self.layout if e is not None) == list(range(len(self.axes)))


@dataclass(frozen=True, slots=True)
class Global:
    """Every unit depends on the whole input."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """The field cannot be derived; `op` names the op where it was lost."""

    op: str
    misaligned: bool = False


State = Spatial | Global | Unknown | None
# (a, b, reads): output unit o reads input units reads(o) = (first, last), or None if it reads
# none, and reads(o + b) = reads(o) + a.
UnitMap = tuple[int, int, Callable[[int], tuple[int, int] | None]]


# -- one axis ---------------------------------------------------------------------------------


def compose(axis: Axis, unit_map: UnitMap) -> Axis | None:
    """The field after an op, or None when a unit reads nothing or the pattern grows too long."""
    a, b, reads = unit_map
    q = len(axis.lo)
    g = math.gcd(a, q)
    # After `period` output units, the input units read have moved by whole input periods.
    period = b * q // g
    if period > MAX_PERIOD:
        return None
    lo, hi = [], []
    for o in range(period):
        span = reads(o)
        if span is None:
            return None
        lo.append(axis.start(span[0]))
        hi.append(axis.end(span[1]))
    return _shortest(lo, hi, axis.shift * (a // g))


def _shortest(lo: Sequence[int], hi: Sequence[int], shift: int) -> Axis:
    """The same pattern written with its shortest period."""
    period = len(lo)
    for q in range(1, period):
        if period % q or (shift * q) % period:
            continue
        step = shift * q // period
        if all(lo[o + q] == lo[o] + step and hi[o + q] == hi[o] + step for o in range(period - q)):
            return Axis(tuple(lo[:q]), tuple(hi[:q]), step)
    return Axis(tuple(lo), tuple(hi), shift)


def union(axes: Sequence[Axis]) -> tuple[Axis | None, bool]:
    """The union of branch fields, and whether the branches are misaligned (their strides or
    centres differ). None when the strides differ: the union then grows without bound."""
    first = axes[0]
    if all(a == first for a in axes[1:]):
        return first, False
    if any(a.shift * len(first.lo) != first.shift * len(a.lo) for a in axes[1:]):
        return None, True
    q = math.lcm(*(len(a.lo) for a in axes))
    lo = [min(a.start(o) for a in axes) for o in range(q)]
    hi = [max(a.end(o) for a in axes) for o in range(q)]
    misaligned = any(
        a.start(o) + a.end(o) != first.start(o) + first.end(o) for a in axes for o in range(q)
    )
    return _shortest(lo, hi, first.shift * q // len(first.lo)), misaligned


def window(kernel: int, stride: int, padding: int, dilation: int = 1) -> UnitMap:
    """Convolution and pooling: unit o reads `o*stride - padding + j*dilation`."""
    reach = (kernel - 1) * dilation
    return stride, 1, lambda o: (o * stride - padding, o * stride - padding + reach)


def transposed(kernel: int, stride: int, padding: int, dilation: int = 1) -> UnitMap:
    """Transposed convolution: unit o receives input unit i where
    `i*stride - padding + j*dilation == o`."""

    def reads(o: int) -> tuple[int, int] | None:
        hits = [
            (o + padding - j * dilation) // stride
            for j in range(kernel)
            if (o + padding - j * dilation) % stride == 0
        ]
        return (min(hits), max(hits)) if hits else None

    return 1, stride, reads


def adaptive(size_in: int, size_out: int) -> UnitMap:
    """Adaptive pooling: unit o reads `[floor(o*n/m), ceil((o+1)*n/m))`."""
    ratio = Fraction(size_in, size_out)

    def reads(o: int) -> tuple[int, int]:
        return (o * size_in) // size_out, -((-(o + 1) * size_in) // size_out) - 1

    return ratio.numerator, ratio.denominator, reads


def resample(ratio: Fraction, mode: str, align_corners: bool) -> UnitMap | None:
    """Interpolation with `ratio` input units per output unit, with PyTorch's source index
    (without its clamping at the borders). A tap whose weight is exactly zero, where the source
    falls on an input unit, is not read. None for a mode this pass does not know."""
    half = Fraction(1, 2)
    if mode in ("nearest", "nearest-exact"):
        offset = half if mode == "nearest-exact" else Fraction(0)

        def nearest(o: int) -> tuple[int, int]:
            i = math.floor((o + offset) * ratio)
            return i, i

        return ratio.numerator, ratio.denominator, nearest
    if mode not in ("linear", "bilinear", "trilinear", "bicubic"):
        return None
    taps = (1, 2) if mode == "bicubic" else (0, 1)

    def interpolated(o: int) -> tuple[int, int]:
        src = o * ratio if align_corners else (o + half) * ratio - half
        i = math.floor(src)
        return (i, i) if src == i else (i - taps[0], i + taps[1])

    # Ratio 0 (align_corners from a single unit): every output unit reads unit 0.
    return ratio.numerator, ratio.denominator, interpolated


def shifted(offset: int, step: int = 1) -> UnitMap:
    """Padding (offset = -left padding) and slicing: unit o reads `offset + o*step`."""
    return step, 1, lambda o: (offset + o * step, offset + o * step)


def _is_identity(unit_map: UnitMap) -> bool:
    a, b, reads = unit_map
    return a == 1 and b == 1 and reads(0) == (0, 0)


# -- covering the input -----------------------------------------------------------------------


def _centre2(axis: Axis, unit: int) -> int:
    """Twice the centre of a unit's field."""
    return axis.start(unit) + axis.end(unit)


def centre_unit(axis: Axis, size: int, units: int | None = None) -> int:
    """The unit whose field centre is nearest the centre of an input of `size` pixels (the lower
    one on a tie), among `units` units when that count is known."""
    target = size - 1  # twice the input's centre
    c = 0
    if axis.shift:
        c = max(0, round((target - _centre2(axis, 0)) / (2 * float(axis.stride))))
    while c > 0 and abs(target - _centre2(axis, c - 1)) <= abs(target - _centre2(axis, c)):
        c -= 1
    while abs(target - _centre2(axis, c + 1)) < abs(target - _centre2(axis, c)):
        c += 1
    return min(c, units - 1) if units else c


def covers(axis: Axis, size: int, units: int | None = None) -> bool:
    """Whether the centre unit's field covers all `size` input pixels."""
    c = centre_unit(axis, size, units)
    return axis.start(c) <= 0 and axis.end(c) >= size - 1


def covers_up_to(axis: Axis) -> int:
    """The largest input size whose centre unit's field covers the whole input (0 if none).

    Unit c is the centre unit for the sizes n with `2(n-1)` in `(C(c-1) + C(c), C(c) + C(c+1)]`,
    C being twice a field's centre; it covers them when its field starts at or before pixel 0
    and `n <= end(c) + 1`. Lower units end earlier, so the search stops as soon as a unit cannot
    beat the best size found.
    """
    if axis.shift == 0:  # every unit sees the same pixels
        return axis.end(0) + 1 if axis.start(0) <= 0 else 0
    q = len(axis.lo)
    last = max(((-lo) // axis.shift) * q + r for r, lo in enumerate(axis.lo))
    best = 0
    for c in range(last, -1, -1):
        limit = axis.end(c) + 1
        if limit <= best:
            break
        centre = _centre2(axis, c)
        high = min(limit, (centre + _centre2(axis, c + 1)) // 2 + 1)
        low = 1 if c == 0 else (_centre2(axis, c - 1) + centre) // 2 + 2
        if high >= low:
            best = max(best, high)
    return best


# -- report form ------------------------------------------------------------------------------


def _stride_text(axis: Axis) -> int | str:
    g = math.gcd(axis.shift, len(axis.lo))
    if g == len(axis.lo):
        return axis.shift // g
    return f"{axis.shift // g}/{len(axis.lo) // g}"


def to_rf(state: State) -> dict[str, Any] | None:
    """The JSON form of a field, as the Report carries it."""
    if state is None:
        return None
    if isinstance(state, Global):
        return {"global": True}
    if isinstance(state, Unknown):
        unknown: dict[str, Any] = {"unknown": state.op}
        if state.misaligned:
            unknown["misaligned"] = True
        return unknown
    rf: dict[str, Any] = {
        "size": [a.size for a in state.axes],
        "stride": [_stride_text(a) for a in state.axes],
        "padding": [-a.lo[0] for a in state.axes],
    }
    if any(len(a.lo) > 1 for a in state.axes):
        rf["uniform"] = False
    if not state.intact:
        rf = {"flattened": rf}
    if state.misaligned:
        rf["misaligned"] = True
    return rf


# -- what each op does to a field ---------------------------------------------------------------

# fmt: off
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish,
    nn.Hardshrink, nn.Softshrink, nn.Tanhshrink, nn.Softplus, nn.Softsign, nn.LogSigmoid,
    nn.Threshold,
)
# Normalisation mixes positions only through its statistics: by convention it passes the field.
_NORMS = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    nn.CrossMapLRN2d, nn.RMSNorm, torchvision.ops.FrozenBatchNorm2d,
)
_PASS_MODULES = (
    *_ACTIVATIONS, *_NORMS, nn.modules.dropout._DropoutNd, nn.Identity, nn.ChannelShuffle,
    nn.Softmax2d, torchvision.ops.StochasticDepth, torchvision.ops.DropBlock2d,
    torchvision.ops.DropBlock3d,
)
_PAD_MODULES = (
    nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd, nn.modules.padding._CircularPadNd,
)
_ATTENTION_MODULES = (
    nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
    nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer,
)
_MODULE_RANKS: dict[type, int] = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3,
    nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
    nn.LPPool1d: 1, nn.LPPool2d: 2, nn.LPPool3d: 3,
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
}
_PASS_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.hardtanh, F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu,
    F.selu, F.celu, F.gelu, F.silu, F.mish, F.sigmoid, F.tanh, F.softplus, F.dropout,
    F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.batch_norm, F.instance_norm,
    F.group_norm, F.layer_norm, F.local_response_norm, F.channel_shuffle,
    torchvision.ops.stochastic_depth,
}
_ARITHMETIC = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
    operator.mod, operator.pow, operator.neg, operator.pos, operator.abs, operator.iadd,
    operator.isub, operator.imul, operator.itruediv,
}
_CONV_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d}
_CONV_T_FUNCTIONS = {F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d}
_MAX_POOL_FUNCTIONS = {
    F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3,
    F.max_pool1d_with_indices: 1, F.max_pool2d_with_indices: 2, F.max_pool3d_with_indices: 3,
}
_AVG_POOL_FUNCTIONS = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3}
_LP_POOL_FUNCTIONS = {F.lp_pool1d: 1, F.lp_pool2d: 2, F.lp_pool3d: 3}
_ADAPTIVE_FUNCTIONS = {
    F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3,
    F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
}
# Keyword arguments each interpolation function implies.
_INTERPOLATE_FUNCTIONS: dict[Any, dict[str, Any]] = {
    F.interpolate: {}, F.upsample: {}, F.upsample_nearest: {"mode": "nearest"},
    F.upsample_bilinear: {"mode": "bilinear", "align_corners": True},
}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.unflatten}
_TRANSPOSE_FUNCTIONS = {torch.transpose, torch.swapaxes, torch.swapdims}
_SPLIT_FUNCTIONS = {torch.split: "split", torch.chunk: "chunk", torch.tensor_split: "split",
                    torch.unbind: "unbind"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min,
                     torch.std, torch.var, torch.logsumexp, torch.prod}
_ALONG_FUNCTIONS = {F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax, F.glu}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate, torch.stack}
_MATMUL_FUNCTIONS = {torch.matmul, operator.matmul, torch.bmm, torch.mm}
_ATTENTION_FUNCTIONS = {F.scaled_dot_product_attention, F.multi_head_attention_forward}

_PASS_METHODS = {"contiguous", "clone", "detach", "float", "double", "half", "bfloat16", "to",
                 "type", "type_as", "cpu", "cuda", "requires_grad_"}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze",
                    "view_as", "reshape_as"}
_TRANSPOSE_METHODS = {"transpose", "swapaxes", "swapdims"}
_SPLIT_METHODS = {"split": "split", "chunk": "chunk", "tensor_split": "split", "unbind": "unbind"}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "prod"}
_BROADCAST_METHODS = {"expand", "expand_as", "broadcast_to"}
_MATMUL_METHODS = {"matmul", "bmm", "mm"}

# Positional parameter names, for reading calls however their arguments were passed.
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation")
_CONV_T_ARGS = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups",
                "dilation")
_MAX_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation")
_AVG_POOL_ARGS = ("input", "kernel_size", "stride", "padding")
_LP_POOL_ARGS = ("input", "norm_type", "kernel_size", "stride")
_INTERPOLATE_ARGS = ("input", "size", "scale_factor", "mode", "align_corners",
                     "recompute_scale_factor", "antialias")
# fmt: on


@lru_cache(maxsize=512)
def _aten_pointwise(name: str) -> bool:
    """Whether PyTorch tags the aten op of this name as pointwise (elementwise)."""
    base = name.rstrip("_")
    if not base or base.startswith("_"):
        return False
    packet = getattr(torch.ops.aten, base, None)
    if packet is None:
        return False
    return any(torch.Tag.pointwise in getattr(packet, o).tags for o in packet.overloads())


class _Walk:
    """Propagates fields through the graph in execution order."""

    def __init__(self, context: PassContext) -> None:
        self.values = context.shapes.values
        self.modules = dict(context.capture.graph_module.named_modules())
        self.labels = {node: entry.type for node, entry in context.by_fx.items()}
        self.states: dict[fx.Node, State] = {}
        self.image: fx.Node | None = None
        for node in context.capture.nodes():
            value = self.values.get(node)
            if node.op == "placeholder" and isinstance(value, torch.Tensor) and value.dim() >= 3:
                self.image = node
                break

    # -- reading a call ---------------------------------------------------------------------
    def value(self, arg: Any) -> Any:
        """An argument with graph nodes replaced by the values they had."""
        return fx.node.map_aggregate(
            arg, lambda a: self.values.get(a) if isinstance(a, fx.Node) else a
        )

    def bind(self, node: fx.Node, names: Sequence[str]) -> dict[str, Any]:
        """The call's arguments by name, values resolved (except the input, kept as a node)."""
        bound = dict(zip(names, node.args, strict=False))
        bound.update(node.kwargs)
        return {k: v if k == "input" else self.value(v) for k, v in bound.items()}

    def source(self, node: fx.Node) -> fx.Node:
        first = node.args[0] if node.args else node.kwargs.get("input")
        if not isinstance(first, fx.Node):
            raise TypeError(f"{node.name} has no input node")
        return first

    def state_of(self, node: fx.Node) -> State:
        """The field of the op's (first) input."""
        return self.states.get(self.source(node))

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        value = self.values[node]
        return tuple(value.shape) if isinstance(value, torch.Tensor) else ()

    def unknown(self, node: fx.Node, misaligned: bool = False) -> Unknown:
        return Unknown(self.labels.get(node, node.name), misaligned)

    # -- dispatch ---------------------------------------------------------------------------
    def run(self, nodes: Sequence[fx.Node]) -> None:
        for node in nodes:
            if node in self.values:  # nodes past a failure have no value
                self.states[node] = self.transfer(node)

    def transfer(self, node: fx.Node) -> State:
        if node is self.image:
            rank = len(self.shape(node))
            pixel = Axis((0,), (0,), 1)
            return Spatial((pixel,) * (rank - 2), (None, None, *range(rank - 2)))
        if node.op not in ("call_module", "call_function", "call_method"):
            return None
        if all(self.states.get(a) is None for a in node.all_input_nodes):
            return None  # nothing here depends on the image
        if not _has_tensor(self.values[node]):
            return None  # sizes, shapes, flags
        try:
            if node.op == "call_module":
                return self.module_op(node, self.modules[str(node.target)])
            if node.op == "call_function":
                return self.function_op(node, node.target)
            return self.method_op(node, str(node.target))
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError):
            # A call written in a form this pass does not read: say so rather than guess.
            return self.unknown(node)

    def module_op(self, node: fx.Node, module: nn.Module) -> State:
        src = self.state_of(node)
        geometry: tuple[Any, ...]
        if isinstance(module, nn.modules.conv._ConvNd):
            geometry = (module.kernel_size, module.stride, module.padding, module.dilation)
            if module.transposed:
                return self.conv_transposed(node, src, *geometry)
            return self.conv(node, src, *geometry)
        if isinstance(module, _PASS_MODULES):
            return src
        if isinstance(
            module, nn.modules.pooling._AdaptiveAvgPoolNd | nn.modules.pooling._AdaptiveMaxPoolNd
        ):
            return self.adaptive_pool(node, src, _module_rank(module))
        if isinstance(module, nn.modules.pooling._MaxPoolNd):
            geometry = (module.kernel_size, module.stride, module.padding, module.dilation)
            return self.pool(node, src, _module_rank(module), *geometry)
        if isinstance(module, nn.modules.pooling._AvgPoolNd | nn.modules.pooling._LPPoolNd):
            padding = getattr(module, "padding", 0)  # LP pools have none
            geometry = (module.kernel_size, module.stride, padding, 1)
            return self.pool(node, src, _module_rank(module), *geometry)
        if isinstance(module, nn.Upsample):
            return self.interpolate(
                node,
                src,
                module.scale_factor,
                module.mode,
                module.align_corners,
                module.recompute_scale_factor,
                False,
            )
        if isinstance(module, nn.PixelShuffle):
            return self.pixel_shuffle(node, src, module.upscale_factor)
        if isinstance(module, nn.PixelUnshuffle):
            return self.pixel_unshuffle(node, src, module.downscale_factor)
        if isinstance(module, _PAD_MODULES):
            return self.pad(node, src, module.padding)
        if isinstance(module, torchvision.ops.Permute):
            return self.permute(src, module.dims)
        if isinstance(module, nn.Flatten | nn.Unflatten):
            return self.reshape(node)
        if isinstance(module, nn.Linear):
            return self.contract(src, -1)
        if isinstance(module, nn.Softmax | nn.LogSoftmax | nn.Softmin | nn.GLU):
            dim = module.dim
            if dim is None:  # PyTorch's legacy implicit dim
                dim = 0 if len(self.shape(node)) in (0, 1, 3) else 1
            return self.along(node, src, dim)
        if isinstance(module, _ATTENTION_MODULES):
            return Global()  # attention over all tokens
        return self.unknown(node)

    def function_op(self, node: fx.Node, f: Any) -> State:
        if f in _PASS_FUNCTIONS:
            return self.state_of(node)
        if f in _ARITHMETIC:
            return self.pointwise(node)
        if f in _CONV_FUNCTIONS or f in _CONV_T_FUNCTIONS:
            args = self.bind(node, _CONV_T_ARGS if f in _CONV_T_FUNCTIONS else _CONV_ARGS)
            kernel = tuple(args["weight"].shape[2:])
            geometry = (args.get("stride", 1), args.get("padding", 0), args.get("dilation", 1))
            src = self.states.get(args["input"])
            if f in _CONV_T_FUNCTIONS:
                return self.conv_transposed(node, src, kernel, *geometry)
            return self.conv(node, src, kernel, *geometry)
        for table, names in (
            (_MAX_POOL_FUNCTIONS, _MAX_POOL_ARGS),
            (_AVG_POOL_FUNCTIONS, _AVG_POOL_ARGS),
            (_LP_POOL_FUNCTIONS, _LP_POOL_ARGS),
        ):
            if f in table:
                args = self.bind(node, names)
                geometry = (args.get("stride"), args.get("padding", 0), args.get("dilation", 1))
                src = self.states.get(args["input"])
                return self.pool(node, src, table[f], args["kernel_size"], *geometry)
        if f in _ADAPTIVE_FUNCTIONS:
            return self.adaptive_pool(node, self.state_of(node), _ADAPTIVE_FUNCTIONS[f])
        if f in _INTERPOLATE_FUNCTIONS:
            args = {**self.bind(node, _INTERPOLATE_ARGS), **_INTERPOLATE_FUNCTIONS[f]}
            return self.interpolate(
                node,
                self.states.get(args["input"]),
                args.get("scale_factor"),
                args.get("mode", "nearest"),
                args.get("align_corners"),
                args.get("recompute_scale_factor"),
                bool(args.get("antialias")),
            )
        if f is F.pixel_shuffle or f is F.pixel_unshuffle:
            args = self.bind(node, ("input", "factor"))
            factor = args.get("factor") or args.get("upscale_factor") or args["downscale_factor"]
            if f is F.pixel_shuffle:
                return self.pixel_shuffle(node, self.state_of(node), factor)
            return self.pixel_unshuffle(node, self.state_of(node), factor)
        if f is F.pad:
            return self.pad(node, self.state_of(node), self.bind(node, ("input", "pad"))["pad"])
        if f is torch.permute:
            return self.permute(self.state_of(node), self.bind(node, ("input", "dims"))["dims"])
        if f in _TRANSPOSE_FUNCTIONS:
            return self.transpose(self.state_of(node), *self.value(node.args[1:3]))
        if f in _RESHAPE_FUNCTIONS:
            return self.reshape(node)
        if f in _SPLIT_FUNCTIONS:
            return self.split(node, _SPLIT_FUNCTIONS[f])
        if f in _REDUCE_FUNCTIONS:
            return self.reduce(node)
        if f in _ALONG_FUNCTIONS or f is F.normalize:
            params = ("input", "p", "dim") if f is F.normalize else ("input", "dim")
            return self.along(node, self.state_of(node), self.bind(node, params).get("dim", 1))
        if f in _CAT_FUNCTIONS:
            return self.cat(node)
        if f is operator.getitem:
            return self.getitem(node)
        if f is F.linear:
            return self.contract(self.state_of(node), -1)
        if f in _MATMUL_FUNCTIONS:
            return self.matmul(node)
        if f in _ATTENTION_FUNCTIONS:
            return Global()
        if getattr(f, "__module__", "").split(".")[0] == "torch" and _aten_pointwise(
            getattr(f, "__name__", "")
        ):
            return self.pointwise(node)
        return self.unknown(node)

    def method_op(self, node: fx.Node, name: str) -> State:
        if name in _PASS_METHODS:
            return self.state_of(node)
        if name in _RESHAPE_METHODS:
            return self.reshape(node)
        if name == "permute":
            dims = self.value(node.args[1:])
            if len(dims) == 1 and not isinstance(dims[0], int):
                dims = dims[0]
            return self.permute(self.state_of(node), dims)
        if name in _TRANSPOSE_METHODS:
            return self.transpose(self.state_of(node), *self.value(node.args[1:3]))
        if name in _SPLIT_METHODS:
            return self.split(node, _SPLIT_METHODS[name])
        if name in _REDUCE_METHODS:
            return self.reduce(node)
        if name in ("softmax", "log_softmax"):
            return self.along(node, self.state_of(node), self.bind(node, ("input", "dim"))["dim"])
        if name in _BROADCAST_METHODS:
            return self.merge(node, [self.source(node)])
        if name in _MATMUL_METHODS:
            return self.matmul(node)
        if _aten_pointwise(name):
            return self.pointwise(node)
        return self.unknown(node)

    # -- windows: convolution, pooling, resampling, padding -----------------------------------
    def windowed(self, node: fx.Node, src: State, maps: Sequence[UnitMap]) -> State:
        """Apply one unit map per dim to the last len(maps) dims."""
        if not isinstance(src, Spatial):
            return src
        layout = src.layout
        if len(layout) < len(maps):
            return self.unknown(node)
        axes = list(src.axes)
        for entry, unit_map in zip(layout[len(layout) - len(maps) :], maps, strict=True):
            if _is_identity(unit_map):
                continue
            if entry is None or entry == FLAT:
                return self.unknown(node)
            moved = compose(axes[entry], unit_map)
            if moved is None:
                return self.unknown(node)
            axes[entry] = moved
        return Spatial(tuple(axes), layout)

    def conv(
        self, node: fx.Node, src: State, kernel: Any, stride: Any, padding: Any, dilation: Any
    ) -> State:
        rank = len(kernel)
        k, s, d = _ntuple(kernel, rank), _ntuple(stride, rank), _ntuple(dilation, rank)
        if padding == "valid":
            p: tuple[int, ...] = (0,) * rank
        elif padding == "same":  # PyTorch pads the smaller half of an odd total on the left
            p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d, strict=True))
        else:
            p = _ntuple(padding, rank)
        return self.windowed(node, src, [window(*g) for g in zip(k, s, p, d, strict=True)])

    def conv_transposed(
        self, node: fx.Node, src: State, kernel: Any, stride: Any, padding: Any, dilation: Any
    ) -> State:
        rank = len(kernel)
        geometry = zip(
            _ntuple(kernel, rank),
            _ntuple(stride, rank),
            _ntuple(padding, rank),
            _ntuple(dilation, rank),
            strict=True,
        )
        return self.windowed(node, src, [transposed(*g) for g in geometry])

    def pool(
        self,
        node: fx.Node,
        src: State,
        rank: int,
        kernel: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
    ) -> State:
        k = _ntuple(kernel, rank)
        # ceil_mode and count_include_pad change the last unit and the weights, not the field.
        s = k if stride is None or stride == [] or stride == () else _ntuple(stride, rank)
        geometry = zip(k, s, _ntuple(padding, rank), _ntuple(dilation, rank), strict=True)
        return self.windowed(node, src, [window(*g) for g in geometry])

    def adaptive_pool(self, node: fx.Node, src: State, rank: int) -> State:
        size_in = self.shape(self.source(node))[-rank:]
        size_out = self.shape(node)[-rank:]
        if isinstance(src, Spatial) and all(m == 1 for m in size_out):
            pooled = src.layout[-rank:]
            if all(e in pooled for e in src.layout if e is not None):
                return Global()  # every position pooled into one
        maps = [adaptive(n, m) for n, m in zip(size_in, size_out, strict=True)]
        return self.windowed(node, src, maps)

    def interpolate(
        self,
        node: fx.Node,
        src: State,
        scale: Any,
        mode: str,
        corners: bool | None,
        recompute: bool | None,
        antialias: bool,
    ) -> State:
        size_in = self.shape(self.source(node))[2:]
        size_out = self.shape(node)[2:]
        if mode == "area":
            maps = [adaptive(n, m) for n, m in zip(size_in, size_out, strict=True)]
            return self.windowed(node, src, maps)
        if antialias:
            return self.unknown(node)
        # PyTorch uses the scale factor given, unless told to recompute it from the sizes.
        scales = None if scale is None or recompute else _ntuple_float(scale, len(size_out))
        maps = []
        for i, (n, m) in enumerate(zip(size_in, size_out, strict=True)):
            if corners and mode not in ("nearest", "nearest-exact"):
                ratio = Fraction(n - 1, m - 1) if m > 1 else Fraction(0)
            elif scales is not None:
                ratio = 1 / Fraction(scales[i]).limit_denominator(1 << 16)
            else:
                ratio = Fraction(n, m)
            unit_map = resample(ratio, mode, bool(corners))
            if unit_map is None:
                return self.unknown(node)
            maps.append(unit_map)
        return self.windowed(node, src, maps)

    def pixel_shuffle(self, node: fx.Node, src: State, factor: int) -> State:
        nearest = (1, factor, lambda o: (o // factor, o // factor))
        return self.windowed(node, src, [nearest, nearest])

    def pixel_unshuffle(self, node: fx.Node, src: State, factor: int) -> State:
        return self.windowed(node, src, [window(factor, factor, 0)] * 2)

    def pad(self, node: fx.Node, src: State, pad: Sequence[int]) -> State:
        lefts = list(pad[0::2])[::-1]  # F.pad lists (left, right) of the last dim first
        return self.windowed(node, src, [shifted(-left) for left in lefts])

    # -- layout: views, permutes, splits, indexing, reductions ----------------------------
    def reshape(self, node: fx.Node) -> State:
        src = self.state_of(node)
        if not isinstance(src, Spatial):
            return src
        layout = regroup(src.layout, self.shape(self.source(node)), self.shape(node))
        return self.unknown(node) if layout is None else Spatial(src.axes, layout)

    def permute(self, src: State, dims: Sequence[int]) -> State:
        if not isinstance(src, Spatial):
            return src
        rank = len(src.layout)
        return Spatial(src.axes, tuple(src.layout[d % rank] for d in dims))

    def transpose(self, src: State, a: int, b: int) -> State:
        if not isinstance(src, Spatial):
            return src
        layout = list(src.layout)
        a, b = a % len(layout), b % len(layout)
        layout[a], layout[b] = layout[b], layout[a]
        return Spatial(src.axes, tuple(layout))

    def split(self, node: fx.Node, kind: str) -> State:
        src = self.state_of(node)
        names = ("input", "dim") if kind == "unbind" else ("input", "sections", "dim")
        dim = self.bind(node, names).get("dim", 0)
        if not isinstance(src, Spatial):
            return src
        dim %= len(src.layout)
        if src.layout[dim] is not None:
            return self.unknown(node)  # pieces of an axis see different parts of the input
        if kind == "unbind":
            return Spatial(src.axes, src.layout[:dim] + src.layout[dim + 1 :])
        return src

    def getitem(self, node: fx.Node) -> State:
        container, index = node.args[0], node.args[1]
        if not isinstance(container, fx.Node):
            raise TypeError("getitem of a constant")
        src = self.states.get(container)
        if not isinstance(self.values.get(container), torch.Tensor):
            return src  # an element of a split, of a (values, indices) pair, ...
        if not isinstance(src, Spatial):
            return src
        return self.index(node, src, self.value(index), self.shape(container))

    def index(self, node: fx.Node, src: Spatial, index: Any, shape: tuple[int, ...]) -> State:
        items = list(index) if isinstance(index, (tuple, list)) else [index]
        if any(not isinstance(i, int | slice | None | type(Ellipsis)) for i in items):
            return self.unknown(node)  # indexing by tensors
        if Ellipsis in items:
            at = items.index(Ellipsis)
            used = sum(i is not None for i in items) - 1
            items[at : at + 1] = [slice(None)] * (len(shape) - used)
        layout: list[int | None] = []
        axes = list(src.axes)
        dim = 0
        for item in items:
            if item is None:
                layout.append(None)
                continue
            entry, size = src.layout[dim], shape[dim]
            dim += 1
            if isinstance(item, int):
                if entry is not None and size != 1:
                    return self.unknown(node)  # one row of positions: not the same for every unit
                continue
            start, stop, step = item.indices(size)
            if entry is not None and ((start, step) != (0, 1) or stop < size):
                # A crop or a strided slice: unit o is the input's unit start + o*step.
                moved = None
                if entry != FLAT and step >= 1:
                    moved = compose(axes[entry], shifted(start, step))
                if moved is None:
                    return self.unknown(node)
                axes[entry] = moved
            layout.append(entry)
        layout.extend(src.layout[dim:])
        return Spatial(tuple(axes), tuple(layout))

    def reduce(self, node: fx.Node) -> State:
        args = self.bind(node, ("input", "dim", "keepdim"))
        dims_arg = args.get("dim")
        if isinstance(dims_arg, torch.Tensor):  # torch.max(a, b): elementwise
            return self.pointwise(node)
        src = self.states.get(args["input"])
        if not isinstance(src, Spatial):
            return src
        rank = len(src.layout)
        dims = set(range(rank)) if dims_arg is None else {d % rank for d in _as_tuple(dims_arg)}
        positional = {d for d, e in enumerate(src.layout) if e is not None}
        if positional and positional <= dims:
            return Global()
        if positional & dims:
            return self.unknown(node)  # some axes reduced, others kept
        if args.get("keepdim"):
            return src
        return Spatial(src.axes, tuple(e for d, e in enumerate(src.layout) if d not in dims))

    def along(self, node: fx.Node, src: State, dim: int) -> State:
        """Ops that mix all units along one dim (softmax, normalize, GLU)."""
        if not isinstance(src, Spatial):
            return src
        dim %= len(src.layout)
        if src.layout[dim] is None:
            return src
        if sum(e is not None for e in src.layout) == 1:
            return Global()  # the only positional dim
        return self.unknown(node)

    def contract(self, src: State, dim: int) -> State:
        """A product summing over `dim` (Linear): global when that dim holds positions."""
        if isinstance(src, Spatial) and src.layout[dim] is not None:
            return Global()
        return src

    def matmul(self, node: fx.Node) -> State:
        left, right = node.args[0], node.args[1]
        states = [self.states.get(a) if isinstance(a, fx.Node) else None for a in (left, right)]
        if any(isinstance(s, Global) for s in states):
            return Global()
        for s in states:
            if isinstance(s, Unknown):
                return s
        a, b = states
        rank_b = len(self.shape(right)) if isinstance(right, fx.Node) else 0
        summed = [(a, -1), (b, -2 if rank_b >= 2 else -1)]
        if any(isinstance(s, Spatial) and s.layout[d] is not None for s, d in summed):
            return Global()  # summing over positions, as attention does
        if isinstance(a, Spatial) and b is None and rank_b >= 2:
            rank = len(self.shape(node))
            return Spatial(a.axes, ((None,) * rank + a.layout)[-rank:])
        return self.unknown(node)

    # -- merges -----------------------------------------------------------------------------
    def pointwise(self, node: fx.Node) -> State:
        tensors = [a for a in node.all_input_nodes if isinstance(self.values.get(a), torch.Tensor)]
        return self.merge(node, tensors)

    def merge(self, node: fx.Node, inputs: Sequence[fx.Node]) -> State:
        """Elementwise ops with broadcasting: the union of the inputs' fields."""
        out = self.shape(node)
        rank = len(out)
        fields: list[State] = []
        for arg in inputs:
            state = self.states.get(arg)
            if isinstance(state, Spatial):
                shape = self.shape(arg)
                pad = rank - len(shape)
                layout = (None,) * pad + state.layout
                sizes = (1,) * pad + shape
                if any(
                    e is not None and n == 1 != m
                    for e, n, m in zip(layout, sizes, out, strict=True)
                ):
                    # One position broadcast over many: not the same field for every unit.
                    return self.unknown(node)
                state = Spatial(state.axes, layout)
            fields.append(state)
        return self.combine(node, fields)

    def combine(self, node: fx.Node, fields: Sequence[State]) -> State:
        if any(isinstance(f, Global) for f in fields):
            return Global()
        for f in fields:
            if isinstance(f, Unknown):
                return f
        spatial = [f for f in fields if isinstance(f, Spatial)]
        if not spatial:
            return None
        layout = spatial[0].layout
        if len(spatial) == 1:
            return Spatial(spatial[0].axes, layout)
        if any(f.layout != layout for f in spatial[1:]):
            return self.unknown(node)
        axes = []
        misaligned = False
        for i in range(len(spatial[0].axes)):
            axis, off = union([f.axes[i] for f in spatial])
            if axis is None:
                return self.unknown(node, misaligned=True)
            axes.append(axis)
            misaligned |= off
        return Spatial(tuple(axes), layout, misaligned)

    def cat(self, node: fx.Node) -> State:
        tensors = node.args[0] if node.args else node.kwargs["tensors"]
        if not isinstance(tensors, list | tuple):
            raise TypeError("cat of a single node")
        dim = self.bind(node, ("tensors", "dim")).get("dim", 0)
        stack = node.target is torch.stack
        fields: list[State] = []
        for t in tensors:
            state = self.states.get(t) if isinstance(t, fx.Node) else None
            if isinstance(state, Spatial):
                d = dim % (len(state.layout) + stack)
                if stack:
                    state = Spatial(state.axes, (*state.layout[:d], None, *state.layout[d:]))
                elif state.layout[d] is not None and state.layout[d] != FLAT:
                    return self.unknown(node)  # joined along an axis: fields depend on the unit
            fields.append(state)
        return self.combine(node, fields)


def regroup(
    layout: tuple[int | None, ...], shape_in: Sequence[int], shape_out: Sequence[int]
) -> tuple[int | None, ...] | None:
    """The layout after a view, reshape, flatten or squeeze. Dims are matched in groups of equal
    element count; a group that merges or splits positions becomes FLAT. A dim of size 1 carries
    no layout, so squeezing it loses its axis. None if the shapes do not match up."""
    if tuple(shape_in) == tuple(shape_out):
        return layout
    if 0 in shape_in or 0 in shape_out:
        return None
    ins = [d for d, n in enumerate(shape_in) if n != 1]
    outs = [d for d, n in enumerate(shape_out) if n != 1]
    new: list[int | None] = [None] * len(shape_out)
    i = j = 0
    while i < len(ins) and j < len(outs):
        group_in, group_out = [ins[i]], [outs[j]]
        count_in, count_out = shape_in[ins[i]], shape_out[outs[j]]
        i, j = i + 1, j + 1
        while count_in != count_out:
            if count_in < count_out:
                if i == len(ins):
                    return None
                group_in.append(ins[i])
                count_in *= shape_in[ins[i]]
                i += 1
            else:
                if j == len(outs):
                    return None
                group_out.append(outs[j])
                count_out *= shape_out[outs[j]]
                j += 1
        if all(layout[d] is None for d in group_in):
            continue
        if len(group_in) == 1 and len(group_out) == 1:
            new[group_out[0]] = layout[group_in[0]]
        else:
            for d in group_out:
                new[d] = FLAT
    return tuple(new)


def _module_rank(module: nn.Module) -> int:
    for cls in type(module).__mro__:
        if cls in _MODULE_RANKS:
            return _MODULE_RANKS[cls]
    raise TypeError(type(module).__name__)


def _ntuple(value: Any, rank: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * rank
    items = tuple(int(v) for v in value)
    return items * rank if len(items) == 1 else items


def _ntuple_float(value: Any, rank: int) -> tuple[float, ...]:
    if isinstance(value, int | float):
        return (float(value),) * rank
    items = tuple(float(v) for v in value)
    return items * rank if len(items) == 1 else items


def _as_tuple(value: Any) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, tuple | list) and any(isinstance(v, torch.Tensor) for v in value)


# -- the pass ---------------------------------------------------------------------------------


def run(context: PassContext) -> None:
    """Set `rf`, `rf_covers_input` and `rf_covers_input_up_to` on every node with a spatial
    output (up to the break when the model fails), and `rf` on every module."""
    walk = _Walk(context)
    if walk.image is None:
        return
    walk.run(list(context.capture.nodes()))
    sizes = walk.shape(walk.image)[2:]
    # Many nodes share a field (a conv, its norm, its activation): answer each question once.
    covered: dict[tuple[Axis, int, int | None], bool] = {}
    largest: dict[Axis, int] = {}
    for node, state in walk.states.items():
        if state is None or not isinstance(walk.values[node], torch.Tensor):
            continue
        entry = context.by_fx[node]
        entry.rf = to_rf(state)
        if isinstance(state, Global):
            entry.rf_covers_input, entry.rf_covers_input_up_to = True, None
        elif isinstance(state, Spatial):
            shape = walk.shape(node)
            units: list[int | None] = [None] * len(state.axes)
            for d, e in enumerate(state.layout):
                if e is not None and e != FLAT:
                    units[e] = shape[d]
            keys = list(zip(state.axes, sizes, units, strict=True))
            for key in keys:
                if key not in covered:
                    covered[key] = covers(*key)
            for axis in state.axes:
                if axis not in largest:
                    largest[axis] = covers_up_to(axis)
            entry.rf_covers_input = all(covered[key] for key in keys)
            entry.rf_covers_input_up_to = [largest[a] for a in state.axes]
    for module in context.report.modules:
        module.rf = _module_rf(context, context.capture.module_outputs.get(module.path))


def _module_rf(context: PassContext, output: Any) -> dict[str, Any] | None:
    """The field of a module's output; of several outputs, the field they share, if they do."""
    nodes: list[fx.Node] = []
    fx.node.map_aggregate(output, lambda a: nodes.append(a) if isinstance(a, fx.Node) else None)
    fields = [context.by_fx[n].rf for n in nodes if n in context.by_fx]
    known = [f for f in fields if f is not None]
    if not known or any(f != known[0] for f in known[1:]):
        return None
    return dict(known[0])
