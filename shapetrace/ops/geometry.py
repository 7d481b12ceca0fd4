"""Typed records of a bound call, read once for every pass: a window's kernel, stride, padding
and dilation per axis; a resampling's mode, scale and size; a padding's amounts per axis.

Values of tensor arguments (a functional conv's weight) are read through `shape_of`, so a pass
holding meta tensors and one holding symbolic tensors read the same record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shapetrace.ops.registry import Call

ShapeOf = Callable[[Any], Sequence[int]]


def _shape(value: Any) -> Sequence[int]:
    return tuple(int(d) for d in value.shape)


def ntuple(value: Any, rank: int) -> tuple[int, ...]:
    """`3` -> `(3, 3)`; `[3]` -> `(3, 3)`; `(3, 5)` stays."""
    if isinstance(value, int):
        return (value,) * rank
    items = tuple(int(v) for v in value)
    return items * rank if len(items) == 1 else items


class BindError(ValueError):
    """The call's arguments do not describe the op (a missing kernel, a rank that does not fit)."""


@dataclass(frozen=True)
class Window:
    """A sliding window over the last `rank` dims (for `slide`, over dim `dim`). `pads` are
    (before, after) per axis. `kind` is conv, conv_transpose, max, avg, lp, unpool (scatters
    each input unit to a window of the output, as a transposed conv does), unfold (im2col:
    `F.unfold`, output N x C*prod(kernel) x positions) or slide (`Tensor.unfold(dim, size,
    step)`: windows along one dim, the window as a new last dim)."""

    kind: str
    rank: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    ceil_mode: bool
    groups: int
    in_channels: int | None
    out_channels: int | None
    padding_mode: str
    output_size: tuple[int, ...] | None
    same: bool  # padding="same": the output keeps the input's size
    dim: int | None = None  # the windowed dim of a slide

    @property
    def transposed(self) -> bool:
        return self.kind in ("conv_transpose", "unpool")

    @property
    def padding(self) -> tuple[int, ...]:
        """The padding before each axis (symmetric except for padding="same" with an even
        total)."""
        return tuple(before for before, _ in self.pads)

    @property
    def weights_per_output(self) -> int:
        """Weights each output element of a convolution reads: Cin/groups x kernel."""
        if self.in_channels is None:
            raise BindError("a window without channels")
        size = self.in_channels // max(self.groups, 1)
        for k in self.kernel:
            size *= k
        return size


_POOL_KINDS = {
    "max_pool": "max",
    "avg_pool": "avg",
    "lp_pool": "lp",
    "unfold": "unfold",
    "tensor_unfold": "slide",
}


def window(call: Call, shape_of: ShapeOf = _shape) -> Window:
    """The window of a conv, transposed conv or pool call, in any spelling."""
    name = call.name
    if name == "tensor_unfold":
        return _slide(call)
    # Unpooling scatters each input to a window of the output, as a transposed conv does.
    if name == "max_unpool":
        kind = "unpool"
    elif bool(call.get("transposed", False)) or name == "conv_transpose":
        kind = "conv_transpose"
    else:
        kind = _POOL_KINDS.get(name, "conv")
    weight = call.get("weight")
    weight_shape = tuple(shape_of(weight)) if weight is not None and kind.startswith("conv") else ()
    rank = call.get("rank")
    if rank is None:
        kernel_arg = call.get("kernel_size")
        if weight_shape:
            rank = len(weight_shape) - 2
        elif isinstance(kernel_arg, (tuple, list)):
            rank = len(kernel_arg)
        else:
            raise BindError(f"{name}: no spatial rank")
    kernel_arg = call.get("kernel_size")
    if kernel_arg is None and weight_shape:
        kernel_arg = weight_shape[2:]
    if kernel_arg is None:
        raise BindError(f"{name}: no kernel size")
    kernel = ntuple(kernel_arg, rank)
    stride_arg = call.get("stride")
    if (kind in ("max", "avg", "lp") or name == "max_unpool") and stride_arg in (None, [], ()):
        stride = kernel
    else:
        stride = ntuple(1 if stride_arg is None else stride_arg, rank)
    dilation = ntuple(call.get("dilation", 1), rank)
    padding = call.get("padding", 0)
    same = padding == "same"
    if same:
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        pads = tuple((t // 2, t - t // 2) for t in totals)
    elif padding == "valid":
        pads = ((0, 0),) * rank
    else:
        pads = tuple((p, p) for p in ntuple(padding, rank))
    groups = int(call.get("groups", 1))
    in_channels = call.get("in_channels")
    out_channels = call.get("out_channels")
    if weight_shape and in_channels is None:
        if kind == "conv_transpose":
            in_channels, out_channels = weight_shape[0], weight_shape[1] * groups
        else:
            in_channels, out_channels = weight_shape[1] * groups, weight_shape[0]
    output_size = call.get("output_size")
    return Window(
        kind=kind,
        rank=rank,
        kernel=kernel,
        stride=stride,
        pads=pads,
        dilation=dilation,
        output_padding=ntuple(call.get("output_padding", 0), rank),
        ceil_mode=bool(call.get("ceil_mode", False)),
        groups=groups,
        in_channels=None if in_channels is None else int(in_channels),
        out_channels=None if out_channels is None else int(out_channels),
        padding_mode=str(call.get("padding_mode", "zeros")),
        output_size=None if output_size is None else tuple(output_size)[-rank:],
        same=same,
    )


def _slide(call: Call) -> Window:
    size, step = call.get("size"), call.get("step")
    if size is None or step is None:
        raise BindError("unfold: no size or step")
    return Window(
        kind="slide",
        rank=1,
        kernel=(int(size),),
        stride=(int(step),),
        pads=((0, 0),),
        dilation=(1,),
        output_padding=(0,),
        ceil_mode=False,
        groups=1,
        in_channels=None,
        out_channels=None,
        padding_mode="zeros",
        output_size=None,
        same=False,
        dim=int(call.get("dimension", 0)),
    )


@dataclass(frozen=True)
class Resample:
    """Interpolation (`kind` "interpolate") or pixel (un)shuffle by `factor`."""

    kind: str
    mode: str
    size: Any
    scale_factor: Any
    align_corners: bool | None
    recompute_scale_factor: bool | None
    antialias: bool
    factor: int = 1


def resample(call: Call) -> Resample:
    """The resampling a call does, in any spelling."""
    if call.name in ("pixel_shuffle", "pixel_unshuffle"):
        key = "upscale_factor" if call.name == "pixel_shuffle" else "downscale_factor"
        factor = call.get(key)
        if factor is None:
            raise BindError(f"{call.name}: no factor")
        return Resample(call.name, "nearest", None, None, None, None, False, int(factor))
    return Resample(
        kind="interpolate",
        mode=str(call.get("mode", "nearest")),
        size=call.get("size", call.get("output_size")),
        scale_factor=call.get("scale_factor"),
        align_corners=call.get("align_corners"),
        recompute_scale_factor=call.get("recompute_scale_factor"),
        antialias=bool(call.get("antialias", False)),
    )


@dataclass(frozen=True)
class Pad:
    """Padding of the trailing dims: `pads[i]` is (before, after) of the i-th padded dim,
    counted from the first padded dim to the last one."""

    pads: tuple[tuple[int, int], ...]
    mode: str
    value: float


def pad(call: Call) -> Pad:
    """The padding a call adds, from `F.pad`'s flat list (last dim first) or a module's."""
    amounts = call.get("pad")
    if amounts is None:
        amounts = call.get("padding")
    if amounts is None:
        raise BindError("pad: no amounts")
    if isinstance(amounts, int):
        rank = int(call.get("rank", 2))
        amounts = (amounts,) * (2 * rank)
    flat = [int(a) for a in amounts]
    pairs = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    return Pad(
        tuple(reversed(pairs)), str(call.get("mode", "constant")), float(call.get("value", 0.0))
    )
