"""The op registry: one entry per op, covering all its spellings, with its arguments bound once.

An entry (`Op`) names its family, its positional parameters (input first) and every way a model
can call it: an `nn.Module` class, `torch.nn.functional.*`, `torch.*`, a tensor method, an
`operator.*` function, and the aten overload packets of graphs captured at that level.
`lookup` finds the entry of a graph node; `bind` turns the node's call into a `Call`: the
arguments by name, whatever spelling was used. Module attributes (`kernel_size`, `dim`, ...)
are bound as arguments, so the module and functional forms read the same.
"""

from __future__ import annotations

import builtins
import inspect
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import fx, nn

from shapetrace.ops.families import Family

Spelling = tuple[Any, Mapping[str, Any]]  # the object (or method name) and what it implies


@dataclass(frozen=True)
class Op:
    """One op in all its spellings. `params` are positional parameter names, input first; a
    name starting with `*` collects the remaining positional arguments (`x.view(2, 3)`)."""

    name: str
    family: Family
    params: tuple[str, ...] = ("input",)
    modules: tuple[Spelling, ...] = ()
    functions: tuple[Spelling, ...] = ()
    methods: tuple[Spelling, ...] = ()
    aten: tuple[str, ...] = ()

    def spellings(self) -> Iterator[tuple[str, Any]]:
        """Every spelling as (kind, object): kind is module, function, method or aten."""
        for obj, _ in self.modules:
            yield "module", obj
        for obj, _ in self.functions:
            yield "function", obj
        for obj, _ in self.methods:
            yield "method", obj
        for name in self.aten:
            yield "aten", name


@dataclass(frozen=True)
class Call:
    """One call of an op, its arguments bound by name. `input` is the first tensor argument;
    values are of whatever kind the caller passed (meta tensors, graph nodes, symbolic
    tensors). `module` is the called module, for module spellings."""

    op: Op
    args: Mapping[str, Any]
    spelling: Any = None
    module: nn.Module | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> Family:
        return self.op.family

    @property
    def name(self) -> str:
        return self.op.name

    def get(self, key: str, default: Any = None) -> Any:
        """An argument (or implied value) by name; `default` when absent or None."""
        value = self.args.get(key)
        if value is None:
            value = self.extra.get(key)
        return default if value is None else value

    @property
    def input(self) -> Any:
        return self.args.get("input")


# -- spellings ------------------------------------------------------------------------------


def _resolve(path: str) -> Any:
    """`F.relu`, `torch.add`, `nn.Conv2d`, `tv.StochasticDepth`, `operator.add`; None if this
    torch version lacks it."""
    roots: dict[str, Any] = {
        "F": F,
        "torch": torch,
        "nn": nn,
        "tv": torchvision.ops,
        "operator": operator,
        "math": math,
        "builtins": builtins,
        "_nn": torch._C._nn,
    }
    head, _, rest = path.partition(".")
    obj: Any = roots[head]
    for part in rest.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _sp(*paths: str, **implied: Any) -> tuple[Spelling, ...]:
    """Spellings by dotted path, each implying `implied` (a rank, a mode); missing ones are
    skipped, so the table reads the same on every torch version."""
    out = []
    for path in paths:
        obj = _resolve(path)
        if obj is not None:
            out.append((obj, dict(implied)))
    return tuple(out)


def _m(*names: str, **implied: Any) -> tuple[Spelling, ...]:
    return tuple((name, dict(implied)) for name in names)


def _ranked(kind: str, paths: Sequence[str]) -> tuple[Spelling, ...]:
    """`F.max_pool1d`, `F.max_pool2d`, ... with their spatial rank."""
    out: list[Spelling] = []
    for path in paths:
        for rank in (1, 2, 3):
            out.extend(_sp(path.format(rank=rank), rank=rank))
    return tuple(out)


_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_T = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_POOL = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_LP_POOL = ("input", "norm_type", "kernel_size", "stride", "ceil_mode")
_INTERPOLATE = (
    "input",
    "size",
    "scale_factor",
    "mode",
    "align_corners",
    "recompute_scale_factor",
    "antialias",
)
_ACTIVATION_NAMES = (
    "relu",
    "relu6",
    "leaky_relu",
    "prelu",
    "rrelu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "hardswish",
    "hardsigmoid",
    "hardtanh",
    "hardshrink",
    "softshrink",
    "tanhshrink",
    "threshold",
    "sigmoid",
    "logsigmoid",
    "tanh",
    "softplus",
    "softsign",
)
_ACTIVATION_MODULES = (
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "PReLU",
    "RReLU",
    "ELU",
    "SELU",
    "CELU",
    "GELU",
    "SiLU",
    "Mish",
    "Hardswish",
    "Hardsigmoid",
    "Hardtanh",
    "Hardshrink",
    "Softshrink",
    "Tanhshrink",
    "Threshold",
    "Sigmoid",
    "LogSigmoid",
    "Tanh",
    "Softplus",
    "Softsign",
)
_UNARY_MATH = (
    "exp",
    "log",
    "log2",
    "log10",
    "log1p",
    "expm1",
    "abs",
    "sqrt",
    "rsqrt",
    "neg",
    "sign",
    "erf",
    "erfc",
    "sin",
    "cos",
    "tan",
    "square",
    "reciprocal",
    "floor",
    "ceil",
    "round",
    "trunc",
    "frac",
    "nan_to_num",
    "clamp",
    "clip",
    "clamp_min",
    "clamp_max",
    "logical_not",
    "bitwise_not",
    "isnan",
    "isinf",
    "isfinite",
    "exp2",
)
_BINARY_MATH = (
    "add",
    "sub",
    "subtract",
    "mul",
    "multiply",
    "div",
    "divide",
    "true_divide",
    "floor_divide",
    "remainder",
    "fmod",
    "pow",
    "maximum",
    "minimum",
    "fmax",
    "fmin",
    "atan2",
    "hypot",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_and",
    "logical_or",
    "logical_xor",
    "bitwise_and",
    "bitwise_or",
    "bitwise_xor",
    "lerp",
    "where",
    "masked_fill",
    "addcmul",
    "addcdiv",
)
_OPERATORS = (
    "add",
    "iadd",
    "sub",
    "isub",
    "mul",
    "imul",
    "truediv",
    "itruediv",
    "floordiv",
    "ifloordiv",
    "mod",
    "pow",
    "neg",
    "pos",
    "abs",
    "invert",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and_",
    "or_",
    "xor",
    "iand",
    "ior",
)


def _elementwise_methods() -> tuple[Spelling, ...]:
    names = {*_UNARY_MATH, *_BINARY_MATH, *(n + "_" for n in (*_UNARY_MATH, *_BINARY_MATH))}
    names |= {"__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__neg__", "__pow__", "__eq__", "__ne__",
              "__lt__", "__le__", "__gt__", "__ge__", "hardswish", "gelu", "silu", "relu6",
              "leaky_relu", "softplus", "fill_", "zero_", "normal_", "uniform_", "bernoulli",
              "bernoulli_", "copy_", "lerp_", "sigmoid", "sigmoid_", "relu", "relu_",
              "tanh", "tanh_"}  # fmt: skip
    return _m(*sorted(names))


_TABLE: tuple[Op, ...] = (
    # -- identity and dropout ----------------------------------------------------------------
    Op(
        "identity",
        Family.IDENTITY,
        modules=_sp("nn.Identity"),
        functions=_sp("torch.clone", "torch.detach", "torch.Tensor.contiguous"),
        methods=_m(
            "contiguous",
            "clone",
            "detach",
            "to",
            "type",
            "float",
            "double",
            "half",
            "bfloat16",
            "int",
            "long",
            "bool",
            "cpu",
            "cuda",
            "requires_grad_",
            "detach_",
            "type_as",
        ),
        aten=("clone", "detach", "alias", "_to_copy", "lift_fresh_copy", "contiguous"),
    ),
    Op(
        "dropout",
        Family.DROPOUT,
        params=("input", "p", "training"),
        modules=_sp(
            "nn.Dropout",
            "nn.Dropout1d",
            "nn.Dropout2d",
            "nn.Dropout3d",
            "nn.AlphaDropout",
            "nn.FeatureAlphaDropout",
            "tv.StochasticDepth",
            "tv.DropBlock2d",
            "tv.DropBlock3d",
        ),
        functions=_sp(
            "F.dropout",
            "F.dropout1d",
            "F.dropout2d",
            "F.dropout3d",
            "F.alpha_dropout",
            "F.feature_alpha_dropout",
            "torch.dropout",
            "tv.stochastic_depth",
            "tv.drop_block2d",
            "tv.drop_block3d",
        ),
        aten=("dropout", "native_dropout"),
    ),
    # -- elementwise ----------------------------------------------------------------------
    Op(
        "activation",
        Family.ELEMENTWISE,
        modules=_sp(*(f"nn.{n}" for n in _ACTIVATION_MODULES)),
        functions=_sp(
            *(f"F.{n}" for n in _ACTIVATION_NAMES),
            *(
                f"_nn.{n}"
                for n in (
                    "hardswish",
                    "hardsigmoid",
                    "relu6",
                    "gelu",
                    "silu",
                    "leaky_relu",
                    "elu",
                    "softplus",
                    "mish",
                    "hardtanh",
                )
            ),
            "F.relu_",
            "F.elu_",
            "F.leaky_relu_",
            "F.hardtanh_",
            "torch.relu",
            "torch.relu_",
            "torch.sigmoid",
            "torch.tanh",
            "torch.sigmoid_",
            "torch.selu",
            "torch.celu",
            "torch.rrelu",
        ),
        aten=(
            "relu",
            "relu_",
            "gelu",
            "silu",
            "silu_",
            "sigmoid",
            "tanh",
            "hardswish",
            "hardswish_",
            "hardsigmoid",
            "hardtanh",
            "hardtanh_",
            "leaky_relu",
            "elu",
            "mish",
            "softplus",
            "threshold",
            "prelu",
            "_prelu_kernel",
            "log_sigmoid_forward",
        ),
    ),
    Op(
        "arithmetic",
        Family.ELEMENTWISE,
        params=("input", "other", "*more"),
        functions=_sp(
            *(f"operator.{n}" for n in _OPERATORS),
            *(f"torch.{n}" for n in (*_UNARY_MATH, *_BINARY_MATH)),
            *(f"torch.{n}_" for n in ("exp", "clamp")),
        ),
        methods=_elementwise_methods(),
        aten=(
            "add",
            "sub",
            "mul",
            "div",
            "pow",
            "neg",
            "abs",
            "exp",
            "log",
            "sqrt",
            "rsqrt",
            "clamp",
            "clamp_min",
            "clamp_max",
            "maximum",
            "minimum",
            "where",
            "masked_fill",
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "reciprocal",
            "erf",
            "sin",
            "cos",
            "sign",
            "floor",
            "ceil",
            "round",
            "remainder",
            "floor_divide",
            "logical_not",
            "logical_and",
            "logical_or",
            "bitwise_and",
            "bitwise_or",
            "add_",
            "mul_",
            "copy_",
            "fill_",
            "zero_",
            "_assert_tensor_metadata",
        ),
    ),
    # -- normalisation ----------------------------------------------------------------------
    Op(
        "batch_norm",
        Family.NORM,
        params=("input", "running_mean", "running_var", "weight", "bias", "training"),
        modules=_sp(
            "nn.BatchNorm1d",
            "nn.BatchNorm2d",
            "nn.BatchNorm3d",
            "nn.SyncBatchNorm",
            "nn.LazyBatchNorm1d",
            "nn.LazyBatchNorm2d",
            "nn.LazyBatchNorm3d",
            "tv.FrozenBatchNorm2d",
        ),
        functions=_sp("F.batch_norm", "torch.batch_norm"),
        aten=(
            "batch_norm",
            "_native_batch_norm_legit_no_training",
            "_native_batch_norm_legit",
            "native_batch_norm",
            "_native_batch_norm_legit_functional",
        ),
    ),
    Op(
        "instance_norm",
        Family.NORM,
        modules=_ranked("instance_norm", ("nn.InstanceNorm{rank}d",)),
        functions=_sp("F.instance_norm", "torch.instance_norm"),
        aten=("instance_norm",),
    ),
    Op(
        "group_norm",
        Family.NORM,
        params=("input", "num_groups", "weight", "bias", "eps"),
        modules=_sp("nn.GroupNorm"),
        functions=_sp("F.group_norm", "torch.group_norm"),
        aten=("group_norm", "native_group_norm"),
    ),
    Op(
        "layer_norm",
        Family.NORM,
        params=("input", "normalized_shape", "weight", "bias", "eps"),
        modules=_sp("nn.LayerNorm", "nn.RMSNorm"),
        functions=_sp("F.layer_norm", "torch.layer_norm", "F.rms_norm", "torch.rms_norm"),
        aten=("layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm"),
    ),
    Op(
        "local_response_norm",
        Family.NORM,
        params=("input", "size"),
        modules=_sp("nn.LocalResponseNorm", "nn.CrossMapLRN2d"),
        functions=_sp("F.local_response_norm"),
    ),
    # -- along one dim ----------------------------------------------------------------------
    Op(
        "softmax",
        Family.ALONG,
        params=("input", "dim"),
        modules=_sp("nn.Softmax", "nn.LogSoftmax", "nn.Softmin"),
        functions=_sp(
            "F.softmax",
            "F.log_softmax",
            "F.softmin",
            "torch.softmax",
            "torch.log_softmax",
        ),
        methods=_m("softmax", "log_softmax"),
        aten=("_softmax", "_log_softmax", "softmax", "log_softmax"),
    ),
    Op(
        "cumulative",
        Family.ALONG,
        params=("input", "dim"),
        functions=_sp("torch.cumsum", "torch.cumprod", "torch.logcumsumexp"),
        methods=_m("cumsum", "cumprod"),
        aten=("cumsum",),
    ),
    Op(
        "softmax2d",
        Family.ALONG,
        modules=_sp("nn.Softmax2d", dim=-3),
    ),
    Op(
        "normalize",
        Family.ALONG,
        params=("input", "p", "dim"),
        functions=_sp("F.normalize", dim=1),
    ),
    Op(
        "glu",
        Family.ALONG,
        params=("input", "dim"),
        modules=_sp("nn.GLU"),
        functions=_sp("F.glu", "_nn.glu", dim=-1),
        aten=("glu",),
    ),
    # -- windows ----------------------------------------------------------------------------
    Op(
        "conv",
        Family.WINDOW,
        params=_CONV,
        modules=(
            *_sp("nn.Conv1d", rank=1),
            *_sp("nn.Conv2d", rank=2),
            *_sp("nn.Conv3d", rank=3),
            *_sp("nn.LazyConv1d", rank=1),
            *_sp("nn.LazyConv2d", rank=2),
            *_sp("nn.LazyConv3d", rank=3),
            *_sp("tv.DeformConv2d", rank=2),
        ),
        functions=_ranked("conv", ("F.conv{rank}d",)),
        aten=("conv1d", "conv2d", "conv3d", "_convolution", "convolution"),
    ),
    Op(
        "conv_transpose",
        Family.WINDOW,
        params=_CONV_T,
        modules=(
            *_sp("nn.ConvTranspose1d", rank=1),
            *_sp("nn.ConvTranspose2d", rank=2),
            *_sp("nn.ConvTranspose3d", rank=3),
        ),
        functions=_ranked("conv_transpose", ("F.conv_transpose{rank}d",)),
        aten=("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"),
    ),
    Op(
        "max_pool",
        Family.WINDOW,
        params=_MAX_POOL,
        modules=_ranked("max_pool", ("nn.MaxPool{rank}d",)),
        functions=_ranked(
            "max_pool",
            ("F.max_pool{rank}d", "F.max_pool{rank}d_with_indices", "torch.max_pool{rank}d"),
        ),
        aten=(
            "max_pool1d",
            "max_pool2d",
            "max_pool3d",
            "max_pool2d_with_indices",
            "max_pool3d_with_indices",
        ),
    ),
    Op(
        "avg_pool",
        Family.WINDOW,
        params=_AVG_POOL,
        modules=_ranked("avg_pool", ("nn.AvgPool{rank}d",)),
        functions=(
            *_ranked("avg_pool", ("F.avg_pool{rank}d",)),
            *_sp("torch.avg_pool1d", rank=1),
        ),
        aten=("avg_pool1d", "avg_pool2d", "avg_pool3d"),
    ),
    Op(
        "max_unpool",
        Family.WINDOW,
        params=("input", "indices", "kernel_size", "stride", "padding", "output_size"),
        modules=_ranked("max_unpool", ("nn.MaxUnpool{rank}d",)),
        functions=_ranked("max_unpool", ("F.max_unpool{rank}d",)),
        aten=("max_unpool2d", "max_unpool3d"),
    ),
    Op(
        "lp_pool",
        Family.WINDOW,
        params=_LP_POOL,
        modules=_ranked("lp_pool", ("nn.LPPool{rank}d",)),
        functions=_ranked("lp_pool", ("F.lp_pool{rank}d",)),
    ),
    Op(
        "unfold",
        Family.WINDOW,
        params=("input", "kernel_size", "dilation", "padding", "stride"),
        modules=_sp("nn.Unfold", rank=2),
        functions=_sp("F.unfold", rank=2),
        aten=("im2col",),
    ),
    Op(
        "tensor_unfold",
        Family.WINDOW,
        params=("input", "dimension", "size", "step"),
        methods=_m("unfold", rank=1),
        aten=("unfold",),
    ),
    Op(
        "adaptive_pool",
        Family.ADAPTIVE,
        params=("input", "output_size", "return_indices"),
        modules=_ranked("adaptive", ("nn.AdaptiveAvgPool{rank}d", "nn.AdaptiveMaxPool{rank}d")),
        functions=_ranked(
            "adaptive",
            (
                "F.adaptive_avg_pool{rank}d",
                "F.adaptive_max_pool{rank}d",
                "F.adaptive_max_pool{rank}d_with_indices",
                "torch.adaptive_avg_pool{rank}d",
                "torch.adaptive_max_pool{rank}d",
                "_nn.adaptive_avg_pool{rank}d",
            ),
        ),
        aten=(
            "adaptive_avg_pool1d",
            "adaptive_avg_pool2d",
            "adaptive_avg_pool3d",
            "_adaptive_avg_pool2d",
            "_adaptive_avg_pool3d",
            "adaptive_max_pool1d",
            "adaptive_max_pool2d",
            "adaptive_max_pool3d",
        ),
    ),
    # -- resampling and padding ---------------------------------------------------------------
    Op(
        "interpolate",
        Family.RESAMPLE,
        params=_INTERPOLATE,
        modules=(
            *_sp("nn.Upsample"),
            *_sp("nn.UpsamplingNearest2d", mode="nearest"),
            *_sp("nn.UpsamplingBilinear2d", mode="bilinear", align_corners=True),
        ),
        functions=(
            *_sp("F.interpolate", "F.upsample"),
            *_sp("F.upsample_nearest", mode="nearest"),
            *_sp("F.upsample_bilinear", mode="bilinear", align_corners=True),
        ),
        aten=(
            "upsample_nearest1d",
            "upsample_nearest2d",
            "upsample_nearest3d",
            "upsample_bilinear2d",
            "upsample_bicubic2d",
            "upsample_linear1d",
            "upsample_trilinear3d",
            "_upsample_nearest_exact2d",
            "_upsample_bilinear2d_aa",
        ),
    ),
    Op(
        "pixel_shuffle",
        Family.RESAMPLE,
        params=("input", "upscale_factor"),
        modules=_sp("nn.PixelShuffle"),
        functions=_sp("F.pixel_shuffle", "torch.pixel_shuffle"),
        aten=("pixel_shuffle",),
    ),
    Op(
        "pixel_unshuffle",
        Family.RESAMPLE,
        params=("input", "downscale_factor"),
        modules=_sp("nn.PixelUnshuffle"),
        functions=_sp("F.pixel_unshuffle", "torch.pixel_unshuffle"),
        aten=("pixel_unshuffle",),
    ),
    Op(
        "pad",
        Family.PAD,
        params=("input", "pad", "mode", "value"),
        modules=(
            *_sp("nn.ZeroPad1d", "nn.ZeroPad2d", "nn.ZeroPad3d", mode="constant"),
            *_sp("nn.ConstantPad1d", "nn.ConstantPad2d", "nn.ConstantPad3d", mode="constant"),
            *_sp("nn.ReflectionPad1d", "nn.ReflectionPad2d", "nn.ReflectionPad3d", mode="reflect"),
            *_sp(
                "nn.ReplicationPad1d",
                "nn.ReplicationPad2d",
                "nn.ReplicationPad3d",
                mode="replicate",
            ),
            *_sp("nn.CircularPad1d", "nn.CircularPad2d", "nn.CircularPad3d", mode="circular"),
        ),
        functions=_sp("F.pad", "torch.constant_pad_nd"),
        aten=(
            "constant_pad_nd",
            "pad",
            "reflection_pad1d",
            "reflection_pad2d",
            "replication_pad2d",
        ),
    ),
    # -- layout -----------------------------------------------------------------------------
    Op(
        "flatten",
        Family.RESHAPE,
        params=("input", "start_dim", "end_dim"),
        modules=_sp("nn.Flatten"),
        functions=_sp("torch.flatten", "torch.ravel"),
        methods=_m("flatten", "ravel"),
        aten=("flatten",),
    ),
    Op(
        "unflatten",
        Family.RESHAPE,
        params=("input", "dim", "sizes"),
        modules=_sp("nn.Unflatten"),
        functions=_sp("torch.unflatten"),
        methods=_m("unflatten"),
        aten=("unflatten",),
    ),
    Op(
        "view",
        Family.RESHAPE,
        params=("input", "*shape"),
        functions=_sp("torch.reshape"),
        methods=_m("view", "reshape"),
        aten=("view", "reshape", "_unsafe_view", "_reshape_alias"),
    ),
    Op(
        "view_as",
        Family.RESHAPE,
        params=("input", "other"),
        methods=_m("view_as", "reshape_as"),
    ),
    Op(
        "squeeze",
        Family.RESHAPE,
        params=("input", "dim"),
        functions=_sp("torch.squeeze"),
        methods=_m("squeeze", "squeeze_"),
        aten=("squeeze",),
    ),
    Op(
        "unsqueeze",
        Family.RESHAPE,
        params=("input", "dim"),
        functions=_sp("torch.unsqueeze"),
        methods=_m("unsqueeze", "unsqueeze_"),
        aten=("unsqueeze",),
    ),
    Op(
        "permute",
        Family.PERMUTE,
        params=("input", "*dims"),
        modules=_sp("tv.Permute"),
        functions=_sp("torch.permute"),
        methods=_m("permute"),
        aten=("permute",),
    ),
    Op(
        "transpose",
        Family.PERMUTE,
        params=("input", "dim0", "dim1"),
        functions=_sp("torch.transpose", "torch.swapaxes", "torch.swapdims"),
        methods=_m("transpose", "swapaxes", "swapdims", "transpose_"),
        aten=("transpose", "swapaxes"),
    ),
    Op(
        "matrix_transpose",
        Family.PERMUTE,
        functions=_sp("torch.t", dim0=0, dim1=1),
        methods=_m("t", dim0=0, dim1=1),
        aten=("t",),
    ),
    Op(
        "movedim",
        Family.PERMUTE,
        params=("input", "source", "destination"),
        functions=_sp("torch.movedim", "torch.moveaxis"),
        methods=_m("movedim", "moveaxis"),
        aten=("movedim",),
    ),
    Op(
        "getitem",
        Family.INDEX,
        params=("input", "index"),
        functions=_sp("operator.getitem"),
        methods=_m("__getitem__"),
        aten=("slice", "select", "index"),
    ),
    Op(
        "narrow",
        Family.INDEX,
        params=("input", "dim", "start", "length"),
        functions=_sp("torch.narrow"),
        methods=_m("narrow"),
        aten=("narrow",),
    ),
    Op(
        "select",
        Family.INDEX,
        params=("input", "dim", "index"),
        functions=_sp("torch.select"),
        methods=_m("select"),
    ),
    Op(
        "index_select",
        Family.INDEX,
        params=("input", "dim", "index"),
        functions=_sp("torch.index_select", "torch.gather", "torch.take_along_dim"),
        methods=_m("index_select", "gather", "take_along_dim"),
        aten=("index_select", "gather"),
    ),
    Op(
        "split",
        Family.SPLIT,
        params=("input", "split_size_or_sections", "dim"),
        functions=_sp("torch.split"),
        methods=_m("split"),
        aten=("split", "split_with_sizes"),
    ),
    Op(
        "tensor_split",
        Family.SPLIT,
        params=("input", "indices_or_sections", "dim"),
        functions=_sp("torch.tensor_split"),
        methods=_m("tensor_split"),
        aten=("tensor_split",),
    ),
    Op(
        "chunk",
        Family.SPLIT,
        params=("input", "chunks", "dim"),
        functions=_sp("torch.chunk"),
        methods=_m("chunk"),
        aten=("chunk",),
    ),
    Op(
        "unbind",
        Family.SPLIT,
        params=("input", "dim"),
        functions=_sp("torch.unbind"),
        methods=_m("unbind"),
        aten=("unbind",),
    ),
    Op(
        "cat",
        Family.CONCAT,
        params=("tensors", "dim"),
        functions=_sp("torch.cat", "torch.concat", "torch.concatenate"),
        aten=("cat",),
    ),
    Op(
        "stack",
        Family.CONCAT,
        params=("tensors", "dim"),
        functions=_sp("torch.stack"),
        aten=("stack",),
    ),
    Op(
        "expand",
        Family.EXPAND,
        params=("input", "*sizes"),
        functions=_sp("torch.broadcast_to"),
        methods=_m("expand", "broadcast_to"),
        aten=("expand",),
    ),
    Op(
        "expand_as",
        Family.EXPAND,
        params=("input", "other"),
        methods=_m("expand_as"),
    ),
    Op(
        "repeat",
        Family.EXPAND,
        params=("input", "*sizes"),
        functions=_sp("torch.tile"),
        methods=_m("repeat", "tile"),
        aten=("repeat",),
    ),
    Op(
        "repeat_interleave",
        Family.EXPAND,
        params=("input", "repeats", "dim"),
        functions=_sp("torch.repeat_interleave"),
        methods=_m("repeat_interleave"),
        aten=("repeat_interleave",),
    ),
    Op(
        "flip",
        Family.REARRANGE,
        params=("input", "dims"),
        functions=(*_sp("torch.flip"), *_sp("torch.fliplr", dims=1), *_sp("torch.flipud", dims=0)),
        methods=_m("flip"),
        aten=("flip",),
    ),
    Op(
        "roll",
        Family.REARRANGE,
        params=("input", "shifts", "dims"),
        functions=_sp("torch.roll"),
        methods=_m("roll"),
        aten=("roll",),
    ),
    Op(
        "channel_shuffle",
        Family.REARRANGE,
        params=("input", "groups"),
        modules=_sp("nn.ChannelShuffle"),
        functions=_sp("F.channel_shuffle", "torch.channel_shuffle", "torch.native_channel_shuffle"),
        aten=("channel_shuffle",),
    ),
    # -- reductions and products ----------------------------------------------------------------
    Op(
        "norm",
        Family.REDUCE,
        params=("input", "p", "dim", "keepdim"),
        functions=_sp("torch.norm"),
        methods=_m("norm"),
    ),
    Op(
        "reduce",
        Family.REDUCE,
        params=("input", "dim", "keepdim"),
        functions=_sp(
            *(
                f"torch.{n}"
                for n in (
                    "sum",
                    "mean",
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
                    "all",
                    "any",
                    "median",
                    "nansum",
                    "nanmean",
                    "count_nonzero",
                )
            )
        ),
        methods=_m(
            "sum",
            "mean",
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
            "all",
            "any",
            "median",
            "nansum",
            "nanmean",
        ),
        aten=(
            "sum",
            "mean",
            "amax",
            "amin",
            "max",
            "min",
            "var",
            "std",
            "prod",
            "argmax",
            "argmin",
            "logsumexp",
            "norm",
            "linalg_vector_norm",
            "any",
            "all",
        ),
    ),
    Op(
        "linear",
        Family.LINEAR,
        params=("input", "weight", "bias"),
        modules=_sp("nn.Linear", "nn.LazyLinear"),
        functions=_sp("F.linear", "_nn.linear"),
        aten=("linear",),
    ),
    Op(
        "matmul",
        Family.MATMUL,
        params=("input", "other"),
        functions=_sp("torch.matmul", "operator.matmul", "torch.mm", "torch.bmm"),
        methods=_m("matmul", "mm", "bmm", "__matmul__"),
        aten=("matmul", "mm", "bmm"),
    ),
    Op(
        "addmm",
        Family.MATMUL,
        params=("bias", "input", "other"),
        functions=_sp("torch.addmm", "torch.baddbmm"),
        methods=_m("addmm", "baddbmm"),
        aten=("addmm", "baddbmm"),
    ),
    Op(
        "einsum",
        Family.MATMUL,
        params=("equation", "*operands"),
        functions=_sp("torch.einsum"),
        aten=("einsum",),
    ),
    Op(
        "multi_head_attention",
        Family.ATTENTION,
        params=("query", "key", "value"),
        modules=_sp("nn.MultiheadAttention"),
        functions=_sp("F.multi_head_attention_forward"),
    ),
    Op(
        "transformer",
        Family.ATTENTION,
        params=("input",),
        modules=_sp(
            "nn.TransformerEncoderLayer",
            "nn.TransformerDecoderLayer",
            "nn.TransformerEncoder",
            "nn.TransformerDecoder",
            "nn.Transformer",
        ),
    ),
    Op(
        "scaled_dot_product_attention",
        Family.ATTENTION,
        params=("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale"),
        functions=_sp("F.scaled_dot_product_attention"),
        aten=(
            "scaled_dot_product_attention",
            "_scaled_dot_product_flash_attention_for_cpu",
            "_scaled_dot_product_efficient_attention",
        ),
    ),
    Op(
        "embedding",
        Family.EMBEDDING,
        params=("input", "weight"),
        modules=_sp("nn.Embedding"),
        functions=_sp("F.embedding", "torch.embedding"),
        aten=("embedding",),
    ),
    # -- factories, size questions, checks ----------------------------------------------------
    Op(
        "factory",
        Family.FACTORY,
        params=("*size",),
        functions=_sp(
            "torch.zeros",
            "torch.ones",
            "torch.empty",
            "torch.rand",
            "torch.randn",
            "torch.full",
        ),
        aten=(
            "zeros",
            "ones",
            "empty",
            "full",
            "empty_strided",
            "scalar_tensor",
            "empty_permuted",
        ),
    ),
    Op(
        "arange",
        Family.FACTORY,
        params=("*args",),
        functions=_sp("torch.arange"),
        aten=("arange",),
    ),
    Op(
        "linspace",
        Family.FACTORY,
        params=("start", "end", "steps"),
        functions=_sp("torch.linspace", "torch.logspace"),
        aten=("linspace", "logspace"),
    ),
    Op(
        "tensor",
        Family.FACTORY,
        params=("data",),
        functions=_sp("torch.tensor", "torch.as_tensor", "torch.scalar_tensor"),
    ),
    Op(
        "new_tensor",
        Family.FACTORY,
        params=("input", "data"),
        methods=_m("new_tensor"),
    ),
    Op(
        "new_factory",
        Family.FACTORY,
        params=("input", "*size"),
        methods=_m("new_zeros", "new_ones", "new_empty", "new_full"),
        aten=("new_zeros", "new_ones", "new_empty", "new_full"),
    ),
    Op(
        "like_factory",
        Family.FACTORY,
        params=("input",),
        functions=_sp(
            "torch.zeros_like",
            "torch.ones_like",
            "torch.empty_like",
            "torch.rand_like",
            "torch.randn_like",
            "torch.full_like",
        ),
        aten=("zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like"),
    ),
    Op(
        "shape_query",
        Family.SHAPE_QUERY,
        params=("input", "dim"),
        functions=_sp(
            "builtins.getattr",
            "builtins.len",
            "math.floor",
            "math.ceil",
            "builtins.int",
            "builtins.float",
            "math.sqrt",
            "builtins.max",
            "builtins.min",
        ),
        methods=_m(
            "size",
            "dim",
            "ndimension",
            "numel",
            "nelement",
            "element_size",
            "get_device",
            "is_contiguous",
            "stride",
        ),
        aten=("sym_size", "sym_numel", "sym_stride", "sym_storage_offset"),
    ),
    Op(
        "assert",
        Family.ASSERT,
        params=("condition", "message"),
        functions=_sp("torch._assert"),
        aten=("_assert_async", "_assert_scalar", "sym_constrain_range_for_size"),
    ),
)


# -- lookup -----------------------------------------------------------------------------------


@dataclass
class _Index:
    functions: dict[Any, tuple[Op, Mapping[str, Any]]] = field(default_factory=dict)
    methods: dict[str, tuple[Op, Mapping[str, Any]]] = field(default_factory=dict)
    modules: dict[type, tuple[Op, Mapping[str, Any]]] = field(default_factory=dict)
    aten: dict[str, Op] = field(default_factory=dict)


def _build_index() -> _Index:
    index = _Index()
    for op in _TABLE:
        for obj, implied in op.functions:
            index.functions.setdefault(obj, (op, implied))
        for name, implied in op.methods:
            index.methods.setdefault(name, (op, implied))
        for cls, implied in op.modules:
            index.modules.setdefault(cls, (op, implied))
        for name in op.aten:
            index.aten.setdefault(name, op)
    return index


_INDEX = _build_index()


def ops() -> tuple[Op, ...]:
    """Every registered op."""
    return _TABLE


def families() -> set[Family]:
    """The families of the registered ops."""
    return {op.family for op in _TABLE}


@cache
def _module_entry(cls: type) -> tuple[Op, Mapping[str, Any]] | None:
    for base in cls.__mro__:
        if base in _INDEX.modules:
            return _INDEX.modules[base]
    return None


def _aten_name(target: Any) -> str | None:
    packet = getattr(target, "overloadpacket", None)
    if packet is None and isinstance(target, torch._ops.OpOverloadPacket):
        packet = target
    if packet is None:
        return None
    return str(getattr(packet, "__name__", "")).split(".")[-1] or None


@lru_cache(maxsize=1024)
def _pointwise(name: str) -> bool:
    """Whether PyTorch tags the aten op of this name as pointwise (elementwise)."""
    base = name.rstrip("_")
    if not base or base.startswith("_"):
        return False
    packet = getattr(torch.ops.aten, base, None)
    if packet is None:
        return False
    return any(torch.Tag.pointwise in getattr(packet, o).tags for o in packet.overloads())


# What an aten overload's name says and its arguments do not (upsampling modes).
_ATEN_IMPLIED: dict[str, Mapping[str, Any]] = {
    "upsample_nearest1d": {"mode": "nearest"},
    "upsample_nearest2d": {"mode": "nearest"},
    "upsample_nearest3d": {"mode": "nearest"},
    "_upsample_nearest_exact2d": {"mode": "nearest-exact"},
    "upsample_linear1d": {"mode": "linear"},
    "upsample_bilinear2d": {"mode": "bilinear"},
    "_upsample_bilinear2d_aa": {"mode": "bilinear", "antialias": True},
    "upsample_bicubic2d": {"mode": "bicubic"},
    "upsample_trilinear3d": {"mode": "trilinear"},
}

_POINTWISE = Op("pointwise", Family.ELEMENTWISE, params=("input", "other"))


def lookup_target(op: str, target: Any, module: nn.Module | None = None) -> Op | None:
    """The entry of a call: `op` is the fx node kind, `target` its target, `module` the called
    module of a call_module node. Torch functions and methods without an entry whose aten op
    is tagged pointwise are elementwise."""
    found = _spelling(op, target, module)
    return found[0] if found is not None else None


def _spelling(
    op: str, target: Any, module: nn.Module | None
) -> tuple[Op, Mapping[str, Any]] | None:
    if op == "call_module":
        kind: Any = type(module)
        return _module_entry(kind) if module is not None else None
    if op == "call_method":
        name = str(target)
        if name in _INDEX.methods:
            return _INDEX.methods[name]
        return (_POINTWISE, {}) if _pointwise(name) else None
    if op != "call_function":
        return None
    aten = _aten_name(target)
    if aten is not None:
        entry = _INDEX.aten.get(aten)
        if entry is not None:
            return entry, _ATEN_IMPLIED.get(aten, {})
        return (_POINTWISE, {}) if _pointwise(aten) else None
    try:
        hit = _INDEX.functions.get(target)
    except TypeError:  # an unhashable callable
        hit = None
    if hit is not None:
        return hit
    origin = str(getattr(target, "__module__", None) or "")
    if origin.split(".")[0] == "torch" and _pointwise(str(getattr(target, "__name__", ""))):
        return _POINTWISE, {}
    return None


def lookup(node: fx.Node, gm: fx.GraphModule | None = None) -> Op | None:
    """The registry entry of a graph node, or None (placeholders, outputs, unknown ops)."""
    module = gm.get_submodule(str(node.target)) if node.op == "call_module" and gm else None
    return lookup_target(node.op, node.target, module)


def bind(
    node: fx.Node,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    gm: fx.GraphModule | None = None,
) -> Call | None:
    """The node's call with its arguments by name (None when no entry knows the op). `args`
    and `kwargs` are the node's arguments as the caller holds them (values or nodes)."""
    module = gm.get_submodule(str(node.target)) if node.op == "call_module" and gm else None
    return bind_call(node.op, node.target, args, kwargs, module)


def bind_call(
    op: str,
    target: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    module: nn.Module | None = None,
) -> Call | None:
    """`bind` for a call described by its kind, target and (for modules) module."""
    found = _spelling(op, target, module)
    if found is None:
        return None
    entry, implied = found
    aten = _aten_name(target) if op == "call_function" else None
    if aten is not None:
        named = _bind_schema(target, args, kwargs)
    elif module is not None:
        named = _module_args(module)
        # The forward's own arguments (a transposed conv's output_size, MHA's key and value)
        # by the names of its signature; the first is also the op's input.
        kind: Any = type(module)
        forward = _forward_params(kind)
        for name, value in zip(forward, args, strict=False):
            named[name] = value
        named.update(kwargs)
        named["input"] = args[0] if args else kwargs.get(forward[0] if forward else "input")
    else:
        named = _bind_params(entry.params, args, kwargs)
    return Call(entry, named, target, module, implied)


def _bind_params(
    params: Sequence[str], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for i, name in enumerate(params):
        if name.startswith("*"):
            rest = list(args[i:])
            if len(rest) == 1 and isinstance(rest[0], (list, tuple, torch.Size)):
                rest = list(rest[0])
            named[name[1:]] = rest if rest else kwargs.get(name[1:])
            break
        if i < len(args):
            named[name] = args[i]
    for key, value in kwargs.items():
        named[_ALIASES.get(key, key)] = value
    return named


# Keyword names some spellings use for the same parameter.
_ALIASES = {"self": "input", "a": "input", "x": "input", "axis": "dim", "size": "size"}


def _bind_schema(target: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of an aten call by the names in its schema (`self` read as `input`)."""
    names = [a.name for a in target._schema.arguments]
    named = {("input" if n == "self" else n): v for n, v in zip(names, args, strict=False)}
    named.update({("input" if k == "self" else k): v for k, v in kwargs.items()})
    return named


@cache
def _forward_params(cls: Any) -> tuple[str, ...]:
    try:
        params = list(inspect.signature(cls.forward).parameters.values())
    except (TypeError, ValueError):
        return ("input",)
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params[1:] if p.kind in plain)


def _module_args(module: nn.Module) -> dict[str, Any]:
    """A module's configuration as call arguments: its public attributes and its weight."""
    named = {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("_") and not isinstance(v, (nn.Module, torch.Tensor))
    }
    weight = module._parameters.get("weight")
    if weight is not None:
        named["weight"] = weight
    return named
