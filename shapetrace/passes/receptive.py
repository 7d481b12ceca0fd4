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

Every call is read through the op registry (`shapetrace.ops`): `FAMILY_RULES` holds one rule
per op family, so every spelling of an op (module, functional, method, aten) reads the same.
Where a field cannot be derived the node's `rf` is `{"unknown": ...}` and `missing["rf"]` says
why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import torch
from torch import fx

from shapetrace import ops
from shapetrace.ops import Call, Family
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
    """The field cannot be derived; `op` names the op where it was lost (its type), `at` the
    node, `reason` why."""

    op: str
    misaligned: bool = False
    reason: str = ""
    at: str = ""


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


class _Lost(Exception):
    """The field of this node cannot be derived; the message says why, for the user."""

    def __init__(self, reason: str, misaligned: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.misaligned = misaligned


_CALLS = ("call_module", "call_function", "call_method")
# Errors of reading a call written in a form a rule does not expect (BindError is a ValueError).
_UNREADABLE = (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError)


class _Walk:
    """Propagates fields through the graph in execution order."""

    def __init__(self, context: PassContext) -> None:
        self.values = context.shapes.values
        self.capture = context.capture
        self.graph_module = context.capture.graph_module
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

    def arg(self, call: Call, name: str, default: Any = None) -> Any:
        """An argument's value, graph nodes resolved."""
        return self.value(call.get(name, default))

    def resolved(self, call: Call) -> Call:
        """The call with every argument's value, for the registry's typed geometry."""
        return replace(call, args={k: self.value(v) for k, v in call.args.items()})

    def state(self, arg: Any) -> State:
        return self.states.get(arg) if isinstance(arg, fx.Node) else None

    def source(self, call: Call) -> fx.Node:
        """The node of the op's input tensor."""
        if not isinstance(call.input, fx.Node):
            raise _Lost(f"the input of {call.name} is not a tensor of the graph")
        return call.input

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        value = self.values[node]
        return tuple(value.shape) if isinstance(value, torch.Tensor) else ()

    def tensors(self, node: fx.Node) -> list[fx.Node]:
        """The node's tensor arguments."""
        return [a for a in node.all_input_nodes if isinstance(self.values.get(a), torch.Tensor)]

    # -- dispatch ---------------------------------------------------------------------------
    def run(self, nodes: Sequence[fx.Node]) -> None:
        for node in nodes:
            if node in self.values:  # nodes past a failure have no value
                try:
                    self.states[node] = self.transfer(node)
                except _Lost as lost:
                    label = self.labels.get(node, node.name)
                    self.states[node] = Unknown(label, lost.misaligned, lost.reason, node.name)

    def transfer(self, node: fx.Node) -> State:
        if node is self.image:
            rank = len(self.shape(node))
            pixel = Axis((0,), (0,), 1)
            return Spatial((pixel,) * (rank - 2), (None, None, *range(rank - 2)))
        if node.op not in _CALLS:
            return None
        if all(self.states.get(a) is None for a in node.all_input_nodes):
            return None  # nothing here depends on the image
        if not _has_tensor(self.values[node]):
            return None  # sizes, shapes, flags
        try:
            if node.op == "call_module" and node.args:
                # Norms, dropout, activations: rules that read no configuration (`passes`: the
                # field of the first argument; `elementwise`: of the tensor arguments) run
                # without binding the module's configuration through the registry.
                module = self.capture.module_of(node)  # looked up once per analysis
                entry = ops.lookup_target(node.op, node.target, module)
                rule = FAMILY_RULES.get(entry.family) if entry is not None else None
                if entry is not None and rule is _Walk.passes:
                    first = node.args[0]
                    if not isinstance(first, fx.Node):
                        raise _Lost(f"the input of {entry.name} is not a tensor of the graph")
                    return self.states.get(first)
                if rule is _Walk.elementwise:
                    return self.merge(self.tensors(node), self.shape(node))
                call = ops.bind_call(node.op, node.target, node.args, node.kwargs, module)
            else:
                call = ops.bind(node, node.args, node.kwargs, self.graph_module)
            if call is None:
                what = _called(node, self.graph_module)
                raise _Lost(f"{what} is not an op shapetrace knows, so its field is not derived")
            return FAMILY_RULES[call.family](self, node, call)
        except _UNREADABLE as error:
            # A call written in a form this pass does not read: say so rather than guess.
            what = _called(node, self.graph_module)
            raise _Lost(f"a call of {what} in a form this pass does not read ({error})") from error

    # -- rules, one per family --------------------------------------------------------------
    def passes(self, node: fx.Node, call: Call) -> State:
        """Identity, dropout and normalisation (which mixes positions only through its
        statistics: by convention it keeps the field)."""
        return self.state(self.source(call))

    def elementwise(self, node: fx.Node, call: Call) -> State:
        return self.merge(self.tensors(node), self.shape(node))

    def along(self, node: fx.Node, call: Call) -> State:
        """Ops that mix all units along one dim (softmax, normalize, GLU), or accumulate along
        it (cumsum)."""
        src = self.state(self.source(call))
        if not isinstance(src, Spatial):
            return src
        dim = self.arg(call, "dim")
        if dim is None:  # PyTorch's legacy implicit softmax dim
            dim = 0 if len(src.layout) in (0, 1, 3) else 1
        dim %= len(src.layout)
        if src.layout[dim] is None:
            return src
        if call.name == "cumulative":
            raise _Lost("a running total along a spatial axis: each unit sees a different extent")
        if sum(e is not None for e in src.layout) == 1:
            return Global()  # the only positional dim
        raise _Lost(f"{call.name} mixes positions along one spatial axis and not the others")

    def window(self, node: fx.Node, call: Call) -> State:
        """Convolution, transposed convolution, pooling, im2col (`F.unfold`) and windows along
        one dim (`Tensor.unfold`), from the registry's typed window."""
        if call.get("offset") is not None:
            raise _Lost("a deformable convolution samples where its offsets point: no fixed field")
        src = self.state(self.source(call))
        geometry = ops.window(self.resolved(call))
        maps = [
            (transposed if geometry.transposed else window)(k, s, before, d)
            for k, s, (before, _), d in zip(
                geometry.kernel, geometry.stride, geometry.pads, geometry.dilation, strict=True
            )
        ]
        if geometry.kind == "slide":
            return self.slide(src, geometry.dim or 0, maps[0])
        out = self.windowed(src, maps)
        if geometry.kind == "unfold" and isinstance(out, Spatial):
            # N x C x H x W -> N x C*kh*kw x L: the positions of every window, flattened.
            if any(e is not None for e in out.layout[:-2]):
                raise _Lost("im2col over a tensor whose channels run along a spatial axis")
            return Spatial(out.axes, (*out.layout[:-3], None, FLAT))
        return out

    def slide(self, src: State, dim: int, unit_map: UnitMap) -> State:
        """`Tensor.unfold(dim, size, step)`: dim `dim` counts windows, a new last dim holds the
        offset within each window (a feature, as channels are)."""
        if not isinstance(src, Spatial):
            return src
        dim %= len(src.layout)
        entry = src.layout[dim]
        axes = list(src.axes)
        if entry == FLAT:
            raise _Lost("windows over positions that a flatten merged")
        if entry is not None:
            moved = compose(axes[entry], unit_map)
            if moved is None:
                raise _Lost("the windows' field does not repeat regularly")
            axes[entry] = moved
        return Spatial(tuple(axes), (*src.layout, None))

    def adaptive(self, node: fx.Node, call: Call) -> State:
        src = self.state(self.source(call))
        rank = call.get("rank")
        if rank is None:
            rank = len(self.arg(call, "output_size"))
        size_in = self.shape(self.source(call))[-rank:]
        out = self.values[node]
        if isinstance(out, tuple | list):  # (values, indices)
            out = out[0]
        size_out = tuple(out.shape)[-rank:]
        if isinstance(src, Spatial) and all(m == 1 for m in size_out):
            pooled = src.layout[-rank:]
            if all(e in pooled for e in src.layout if e is not None):
                return Global()  # every position pooled into one
        maps = [adaptive(n, m) for n, m in zip(size_in, size_out, strict=True)]
        return self.windowed(src, maps)

    def resample(self, node: fx.Node, call: Call) -> State:
        """Interpolation and pixel (un)shuffle, from the registry's typed resampling."""
        src = self.state(self.source(call))
        how = ops.resample(self.resolved(call))
        factor = how.factor
        if how.kind == "pixel_shuffle":
            nearest = (1, factor, lambda o: (o // factor, o // factor))
            return self.windowed(src, [nearest, nearest])
        if how.kind == "pixel_unshuffle":
            return self.windowed(src, [window(factor, factor, 0)] * 2)
        size_in = self.shape(self.source(call))[2:]
        size_out = self.shape(node)[2:]
        if how.mode == "area":
            return self.windowed(
                src, [adaptive(n, m) for n, m in zip(size_in, size_out, strict=True)]
            )
        if how.antialias:
            raise _Lost("antialiased resampling: its filter widens with the scale")
        # PyTorch uses the scale factor given, unless told to recompute it from the sizes.
        scale = how.scale_factor
        scales = (
            None
            if scale is None or how.recompute_scale_factor
            else _ntuple_float(scale, len(size_out))
        )
        corners = bool(how.align_corners)
        maps = []
        for i, (n, m) in enumerate(zip(size_in, size_out, strict=True)):
            if corners and how.mode not in ("nearest", "nearest-exact"):
                ratio = Fraction(n - 1, m - 1) if m > 1 else Fraction(0)
            elif scales is not None:
                ratio = 1 / Fraction(scales[i]).limit_denominator(1 << 16)
            else:
                ratio = Fraction(n, m)
            unit_map = resample(ratio, how.mode, corners)
            if unit_map is None:
                raise _Lost(f"interpolation mode {how.mode!r} has no field rule")
            maps.append(unit_map)
        return self.windowed(src, maps)

    def pad(self, node: fx.Node, call: Call) -> State:
        amounts = ops.pad(self.resolved(call))
        return self.windowed(self.state(self.source(call)), [shifted(-b) for b, _ in amounts.pads])

    def windowed(self, src: State, maps: Sequence[UnitMap]) -> State:
        """Apply one unit map per dim to the last len(maps) dims."""
        if not isinstance(src, Spatial):
            return src
        layout = src.layout
        if len(layout) < len(maps):
            raise _Lost("a window over more dims than the tensor has")
        axes = list(src.axes)
        for entry, unit_map in zip(layout[len(layout) - len(maps) :], maps, strict=True):
            if _is_identity(unit_map):
                continue
            if entry is None or entry == FLAT:
                raise _Lost("a window over a dim that does not run along one spatial axis")
            moved = compose(axes[entry], unit_map)
            if moved is None:
                raise _Lost(
                    f"the field does not repeat within {MAX_PERIOD} units, or a unit reads nothing"
                )
            axes[entry] = moved
        return Spatial(tuple(axes), layout)

    # -- layout: views, permutes, indexing, splits, joins -----------------------------------
    def reshape(self, node: fx.Node, call: Call) -> State:
        source = self.source(call)
        src = self.state(source)
        if not isinstance(src, Spatial):
            return src
        layout = regroup(src.layout, self.shape(source), self.shape(node))
        if layout is None:
            raise _Lost("a reshape whose dims do not group into the input's")
        return Spatial(src.axes, layout)

    def permute(self, node: fx.Node, call: Call) -> State:
        src = self.state(self.source(call))
        if not isinstance(src, Spatial):
            return src
        rank = len(src.layout)
        if call.name == "permute":
            order = [d % rank for d in _as_tuple(self.arg(call, "dims"))]
        elif call.name == "movedim":
            order = _moved(rank, self.arg(call, "source"), self.arg(call, "destination"))
        else:  # transpose, t()
            order = list(range(rank))
            a, b = self.arg(call, "dim0", 0) % rank, self.arg(call, "dim1", 1) % rank
            order[a], order[b] = order[b], order[a]
        return Spatial(src.axes, tuple(src.layout[d] for d in order))

    def index(self, node: fx.Node, call: Call) -> State:
        """Indexing (getitem), narrow, select, and index_select / gather along one dim."""
        container = self.source(call)
        src = self.state(container)
        if not isinstance(self.values.get(container), torch.Tensor):
            return src  # an element of a split, of a (values, indices) pair, ...
        if not isinstance(src, Spatial):
            return src
        shape = self.shape(container)
        if call.name == "index_select":
            dim = self.arg(call, "dim")
            if dim is None or src.layout[dim % len(shape)] is not None:
                raise _Lost(f"{call.name} picks positions by a tensor of indices")
            return src
        if "indices" in call.args:  # aten's index
            raise _Lost("indexing by tensors picks positions by value")
        if "dim" in call.args:  # narrow, select, and aten's slice and select
            dim = self.arg(call, "dim", 0) % len(shape)
            if call.name == "narrow":
                start = self.arg(call, "start", 0)
                if start < 0:
                    start += shape[dim]
                item: Any = slice(start, start + self.arg(call, "length"))
            elif "index" in call.args:
                item = self.arg(call, "index")
            else:
                item = slice(self.arg(call, "start"), self.arg(call, "end"), self.arg(call, "step"))
            return self.indexed(src, [*[slice(None)] * dim, item], shape)
        return self.indexed(src, self.arg(call, "index"), shape)

    def indexed(self, src: Spatial, index: Any, shape: tuple[int, ...]) -> State:
        items = list(index) if isinstance(index, tuple | list) else [index]
        if any(not isinstance(i, int | slice | None | type(Ellipsis)) for i in items):
            raise _Lost("indexing by tensors picks positions by value")
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
                    raise _Lost(
                        "one row of positions is picked: the field is not the same for every unit"
                    )
                continue
            start, stop, step = item.indices(size)
            if entry is not None and ((start, step) != (0, 1) or stop < size):
                # A crop or a strided slice: unit o is the input's unit start + o*step.
                moved = None
                if entry != FLAT and step >= 1:
                    moved = compose(axes[entry], shifted(start, step))
                if moved is None:
                    raise _Lost("a slice of positions that a flatten merged")
                axes[entry] = moved
            layout.append(entry)
        layout.extend(src.layout[dim:])
        return Spatial(tuple(axes), tuple(layout))

    def split(self, node: fx.Node, call: Call) -> State:
        src = self.state(self.source(call))
        if not isinstance(src, Spatial):
            return src
        dim = self.arg(call, "dim", 0) % len(src.layout)
        if src.layout[dim] is not None:
            raise _Lost("pieces of a spatial axis see different parts of the input")
        if call.name == "unbind":
            return Spatial(src.axes, src.layout[:dim] + src.layout[dim + 1 :])
        return src

    def concat(self, node: fx.Node, call: Call) -> State:
        tensors = call.get("tensors")
        if not isinstance(tensors, list | tuple):
            raise TypeError("a join of a single node")
        dim = self.arg(call, "dim", 0)
        stack = call.name == "stack"
        fields: list[State] = []
        for t in tensors:
            state = self.state(t)
            if isinstance(state, Spatial):
                d = dim % (len(state.layout) + stack)
                if stack:
                    state = Spatial(state.axes, (*state.layout[:d], None, *state.layout[d:]))
                elif state.layout[d] is not None and state.layout[d] != FLAT:
                    raise _Lost("tensors joined along a spatial axis: fields depend on the unit")
            fields.append(state)
        return self.combine(fields)

    def expand(self, node: fx.Node, call: Call) -> State:
        """Broadcasts (expand), tiles (repeat) and repeats of each element (repeat_interleave)."""
        source = self.source(call)
        if call.name in ("expand", "expand_as"):
            return self.merge([source], self.shape(node))
        src = self.state(source)
        if not isinstance(src, Spatial):
            return src
        if call.name == "repeat":
            sizes = [int(s) for s in self.arg(call, "sizes", call.get("repeats"))]
            layout = (None,) * (len(sizes) - len(src.layout)) + src.layout
            if any(e is not None and r != 1 for e, r in zip(layout, sizes, strict=True)):
                raise _Lost("a spatial axis tiled: units of different tiles see the same pixels")
            return Spatial(src.axes, layout)
        dim = self.arg(call, "dim")
        if dim is None:  # the flattened input, each element repeated
            positional = any(e is not None for e in src.layout)
            return Spatial(src.axes, (FLAT if positional else None,))
        dim %= len(src.layout)
        entry = src.layout[dim]
        if entry is None:
            return src
        repeats = self.arg(call, "repeats")
        if entry == FLAT or not isinstance(repeats, int):
            raise _Lost("positions repeated a varying number of times")
        moved = compose(src.axes[entry], (1, repeats, lambda o: (o // repeats, o // repeats)))
        if moved is None:
            raise _Lost(f"the field does not repeat within {MAX_PERIOD} units")
        axes = list(src.axes)
        axes[entry] = moved
        return Spatial(tuple(axes), src.layout)

    def rearrange(self, node: fx.Node, call: Call) -> State:
        """Flip, roll and channel shuffle: elements moved within the same shape."""
        src = self.state(self.source(call))
        if not isinstance(src, Spatial):
            return src
        rank = len(src.layout)
        if call.name == "channel_shuffle":
            moved: Any = (1,)
        else:
            moved = self.arg(call, "dims")
            if moved is None:  # roll of the flattened tensor
                moved = range(rank)
        if any(src.layout[d % rank] is not None for d in _as_tuple(moved)):
            raise _Lost(f"{call.name} moves positions along a spatial axis")
        return src

    # -- reductions and products ------------------------------------------------------------
    def reduce(self, node: fx.Node, call: Call) -> State:
        dims_arg = self.arg(call, "dim")
        if isinstance(dims_arg, torch.Tensor):  # torch.max(a, b): elementwise
            return self.merge(self.tensors(node), self.shape(node))
        src = self.state(self.source(call))
        if not isinstance(src, Spatial):
            return src
        rank = len(src.layout)
        dims = set(range(rank)) if dims_arg is None else {d % rank for d in _as_tuple(dims_arg)}
        positional = {d for d, e in enumerate(src.layout) if e is not None}
        if positional and positional <= dims:
            return Global()
        if positional & dims:
            raise _Lost("some spatial axes reduced and others kept")
        if self.arg(call, "keepdim"):
            return src
        return Spatial(src.axes, tuple(e for d, e in enumerate(src.layout) if d not in dims))

    def linear(self, node: fx.Node, call: Call) -> State:
        """A product summing over the last dim: global when that dim holds positions."""
        src = self.state(self.source(call))
        if isinstance(src, Spatial) and src.layout[-1] is not None:
            return Global()
        return src

    def matmul(self, node: fx.Node, call: Call) -> State:
        if call.name == "einsum":
            return self.einsum(call)
        left, right, bias = call.input, call.get("other"), call.get("bias")
        if "mat2" in call.args:  # aten's names: mm(self, mat2), addmm(self, mat1, mat2)
            right = call.get("mat2")
            if "mat1" in call.args:
                left, bias = call.get("mat1"), call.input
        states = [self.state(left), self.state(right)]
        if self.state(bias) is not None:
            states.append(self.state(bias))
            if not any(isinstance(s, Global | Unknown) for s in states):
                raise _Lost("a product added to a tensor that depends on the image")
        if any(isinstance(s, Global) for s in states):
            return Global()
        for s in states:
            if isinstance(s, Unknown):
                return s
        a, b = states[:2]
        rank_b = len(self.shape(right)) if isinstance(right, fx.Node) else 0
        summed = [(a, -1), (b, -2 if rank_b >= 2 else -1)]
        if any(isinstance(s, Spatial) and s.layout[d] is not None for s, d in summed):
            return Global()  # summing over positions, as attention does
        if isinstance(a, Spatial) and b is None and rank_b >= 2:
            rank = len(self.shape(node))
            return Spatial(a.axes, ((None,) * rank + a.layout)[-rank:])
        raise _Lost("a product of two tensors that both depend on the image")

    def einsum(self, call: Call) -> State:
        equation = str(self.arg(call, "equation")).replace(" ", "")
        operands = call.get("operands") or []
        states = [self.state(o) for o in operands]
        if any(isinstance(s, Global) for s in states):
            return Global()
        for s in states:
            if isinstance(s, Unknown):
                return s
        if "..." in equation or "->" not in equation:
            raise _Lost("an einsum with an ellipsis or an implicit output")
        inputs, output = equation.split("->")
        found: dict[str, int | None] = {}
        summed_positions = False
        for letters, state in zip(inputs.split(","), states, strict=True):
            if not isinstance(state, Spatial):
                continue
            for letter, entry in zip(letters, state.layout, strict=True):
                if entry is None:
                    continue
                if letter not in output:
                    summed_positions = True
                elif found.setdefault(letter, entry) != entry:
                    raise _Lost("an einsum pairing different spatial axes")
        if summed_positions:
            return Global()  # summing over positions, as attention does
        spatial = [s for s in states if isinstance(s, Spatial)]
        if len(spatial) != 1 or any(len(set(t)) != len(t) for t in inputs.split(",")):
            raise _Lost("an einsum of several tensors that depend on the image")
        return Spatial(spatial[0].axes, tuple(found.get(letter) for letter in output))

    def attention(self, node: fx.Node, call: Call) -> State:
        return Global()  # attention over all tokens

    def embedding(self, node: fx.Node, call: Call) -> State:
        """A lookup per index: the indices' field, with the embedding as a new last dim."""
        src = self.state(call.get("indices", call.input))  # aten: embedding(weight, indices)
        if not isinstance(src, Spatial):
            return src
        return Spatial(src.axes, (*src.layout, None))

    def factory(self, node: fx.Node, call: Call) -> State:
        """New tensors: their values do not depend on the image, unless a tensor is their data
        (`torch.tensor(t)`, `x.new_tensor(t)`)."""
        data = call.get("data")
        return self.state(data) if isinstance(data, fx.Node) else None

    def shape_query(self, node: fx.Node, call: Call) -> State:
        raise _Lost(f"{_called(node, self.graph_module)} returns a tensor here, not a size")

    def check(self, node: fx.Node, call: Call) -> State:
        return None  # asserts return nothing

    # -- merges -----------------------------------------------------------------------------
    def merge(self, inputs: Sequence[fx.Node], out: tuple[int, ...]) -> State:
        """Elementwise ops with broadcasting to shape `out`: the union of the inputs' fields."""
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
                    raise _Lost(
                        "one position broadcast over many: not the same field for every unit"
                    )
                state = Spatial(state.axes, layout)
            fields.append(state)
        return self.combine(fields)

    def combine(self, fields: Sequence[State]) -> State:
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
            raise _Lost("branches whose dims run along different axes are merged")
        axes = []
        misaligned = False
        for i in range(len(spatial[0].axes)):
            axis, off = union([f.axes[i] for f in spatial])
            if axis is None:
                raise _Lost("branches of different strides are merged", misaligned=True)
            axes.append(axis)
            misaligned |= off
        return Spatial(tuple(axes), layout, misaligned)


Rule = Callable[[_Walk, fx.Node, Call], State]

# One rule per op family: the registry says which family each op, in all its spellings, is of.
FAMILY_RULES: dict[Family, Rule] = {
    Family.IDENTITY: _Walk.passes,
    Family.DROPOUT: _Walk.passes,
    Family.NORM: _Walk.passes,
    Family.ELEMENTWISE: _Walk.elementwise,
    Family.ALONG: _Walk.along,
    Family.WINDOW: _Walk.window,
    Family.ADAPTIVE: _Walk.adaptive,
    Family.RESAMPLE: _Walk.resample,
    Family.PAD: _Walk.pad,
    Family.RESHAPE: _Walk.reshape,
    Family.PERMUTE: _Walk.permute,
    Family.INDEX: _Walk.index,
    Family.SPLIT: _Walk.split,
    Family.CONCAT: _Walk.concat,
    Family.EXPAND: _Walk.expand,
    Family.REARRANGE: _Walk.rearrange,
    Family.REDUCE: _Walk.reduce,
    Family.LINEAR: _Walk.linear,
    Family.MATMUL: _Walk.matmul,
    Family.ATTENTION: _Walk.attention,
    Family.EMBEDDING: _Walk.embedding,
    Family.FACTORY: _Walk.factory,
    Family.SHAPE_QUERY: _Walk.shape_query,
    Family.ASSERT: _Walk.check,
}


def _called(node: fx.Node, gm: fx.GraphModule) -> str:
    """What a node calls, as a user would write it (functions with their module, so that an
    opaque torchvision function says where it lives)."""
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    name = str(getattr(node.target, "__name__", node.target))
    origin = getattr(node.target, "__module__", None)
    return f"{origin}.{name}" if origin and origin != "builtins" else name


def _moved(rank: int, source: Any, destination: Any) -> list[int]:
    """The dims order after `movedim(source, destination)`."""
    src = [d % rank for d in _as_tuple(source)]
    dst = [d % rank for d in _as_tuple(destination)]
    order: list[int | None] = [None] * rank
    for s, d in zip(src, dst, strict=True):
        order[d] = s
    rest = iter(d for d in range(rank) if d not in src)
    return [next(rest) if d is None else d for d in order]


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
    # By field object (kept alive in walk.states) and output shape.
    answers: dict[tuple[int, tuple[int, ...]], tuple[bool, list[int]]] = {}
    for node, state in walk.states.items():
        if state is None or not isinstance(walk.values[node], torch.Tensor):
            continue
        entry = context.by_fx[node]
        entry.rf = to_rf(state)
        if isinstance(state, Unknown):
            if state.at == node.name:
                entry.why_missing("rf", state.reason)
            else:
                entry.why_missing("rf", f"its field is lost at {state.at}: {state.reason}")
        if isinstance(state, Global):
            entry.rf_covers_input, entry.rf_covers_input_up_to = True, None
        elif isinstance(state, Spatial):
            shape = walk.shape(node)
            # A conv, its norm and its activation share one field object and one shape.
            answer = answers.get((id(state), shape))
            if answer is None:
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
                answer = (all(covered[key] for key in keys), [largest[a] for a in state.axes])
                answers[(id(state), shape)] = answer
            entry.rf_covers_input = answer[0]
            entry.rf_covers_input_up_to = list(answer[1])
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
