"""Shape pass: run the graph on meta tensors, recording each node's output, stopping at a break.

Meta tensors carry shapes and dtypes but no storage, so the cost does not grow with the input
size. The first node that raises becomes the failure; every node before it keeps its shape.
"""

from __future__ import annotations

import contextlib
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx import traceback as fx_traceback
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from shapetrace.errors import caused_by, first_line
from shapetrace.report import Failure


@dataclass
class NodeResult:
    """What one node produced: a shape summary, dtype, and (for non-tensors) the value."""

    shape: Any
    dtype: str | None
    value: Any = None


@dataclass
class ShapeResult:
    """Per-node results in graph order, the live values of the run, and the failure if any."""

    results: dict[fx.Node, NodeResult] = field(default_factory=dict)
    values: dict[fx.Node, Any] = field(default_factory=dict)
    failure: Failure | None = None
    fault: MetaFault | None = None


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) value, in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


def summarize(value: Any) -> NodeResult:
    """Turn a node's output into JSON-friendly shape, dtype and value."""
    if isinstance(value, torch.Tensor):
        return NodeResult([_dim(d) for d in value.shape], str(value.dtype).removeprefix("torch."))
    if isinstance(value, torch.Size):
        return NodeResult(None, None, [_dim(d) for d in value])
    if isinstance(value, torch.SymInt):
        return NodeResult(None, None, _dim(value))
    if isinstance(value, (tuple, list)):
        parts = [summarize(v) for v in value]
        if parts and all(p.shape is None for p in parts):
            return NodeResult(None, None, [p.value for p in parts])
        dtypes = {p.dtype for p in parts if p.dtype}
        return NodeResult([p.shape for p in parts], dtypes.pop() if len(dtypes) == 1 else None)
    if isinstance(value, dict):
        parts_d = {str(k): summarize(v) for k, v in value.items()}
        dtypes = {p.dtype for p in parts_d.values() if p.dtype}
        return NodeResult(
            {k: p.shape for k, p in parts_d.items()}, dtypes.pop() if len(dtypes) == 1 else None
        )
    if isinstance(value, (bool, int, float, str)) or value is None:
        return NodeResult(None, None, value)
    if isinstance(value, torch.dtype):
        return NodeResult(None, None, str(value).removeprefix("torch."))
    fields = getattr(value, "__dict__", None)
    if fields and any(isinstance(v, torch.Tensor) for v in fields.values()):
        # A container object (torchvision's ImageList): show the tensors it holds.
        return summarize({k: v for k, v in fields.items() if isinstance(v, torch.Tensor)})
    return NodeResult(None, None, None)


def _dim(d: Any) -> int | str:
    """A size as the report writes it: an int, or a data-dependent size by its symbol (`u0`)
    or formula (`2*u0`), as a symbolic-shape run gives it."""
    if isinstance(d, torch.SymInt):
        expr = d.node.expr
        return int(expr) if expr.is_number else str(expr)
    return int(d)


# -- why a meta run stopped ---------------------------------------------------------------


@dataclass(frozen=True)
class MetaFault:
    """An aten op raised while running on meta tensors, for a reason that lies with the meta
    run rather than with the model: `reason` is one of

    - "value": the op reads a tensor's value (`.item()`, `bool()`, `int()`; tagged
      `data_dependent_output`), e.g. Python control flow on a tensor;
    - "size": its output size depends on values (`nonzero`, boolean-mask indexing, `unique`;
      tagged `dynamic_output_shape`);
    - "device": it mixes meta tensors with real ones the forward created on another device;
    - "copy": it copies a meta tensor to a real device (`.tolist()`, `.numpy()`, `.cpu()`);
    - "kernel": the op has no meta implementation (NotImplementedError from the op).
    """

    op: str
    reason: str
    device: str = ""

    def describe(self) -> str:
        """The cause in plain words."""
        if self.reason == "value":
            return "reading a tensor's value (.item(), bool(), int(), float())"
        if self.reason == "size":
            return f"{self.op} gives an output size that depends on tensor values"
        if self.reason == "device":
            return (
                f"{self.op} mixes a {self.device} tensor created inside forward with meta "
                "tensors (shapetrace runs the model on the meta device)"
            )
        if self.reason == "copy":
            return f"{self.op} copies a meta tensor to {self.device}, which needs its values"
        return f"{self.op} has no meta-tensor implementation"


class MetaWatch(TorchDispatchMode):
    """Notes which aten op raised, and whether the meta run is to blame, deciding from the op's
    tags, the devices of its arguments and the exception's type: never from message text, so a
    reworded torch message changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self._raised: BaseException | None = None
        self._fault: MetaFault | None = None
        self._own_error: BaseException | None = None

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if exc is not self._raised:  # keep the innermost op an exception passed through
                try:
                    fault = _meta_fault(func, args, kwargs, exc)
                except Exception as own:
                    self._own_error = own
                    raise
                self._raised, self._fault = exc, fault
            raise

    def fault_of(self, exc: BaseException) -> MetaFault | None:
        """The meta run's fault behind `exc`, or None if the model itself raised it. An error
        that began in this watch (shapetrace's own code) is raised again, as an internal error."""
        if self._own_error is not None and caused_by(exc, self._own_error):
            raise exc
        if self._raised is None or not caused_by(exc, self._raised):
            return None
        return self._fault


def _meta_fault(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], exc: BaseException
) -> MetaFault | None:
    op = f"aten.{func.overloadpacket.__name__}"
    tags = set(getattr(func, "tags", ()))
    if torch.Tag.data_dependent_output in tags:
        return MetaFault(op, "value")
    if torch.Tag.dynamic_output_shape in tags:
        return MetaFault(op, "size")
    devices = {t.device.type for t in tensors_in([list(args), kwargs])}
    if "meta" in devices and len(devices) > 1:
        return MetaFault(op, "device", sorted(devices - {"meta"})[0])
    target = kwargs.get("device")
    if "meta" in devices and target is not None and torch.device(target).type != "meta":
        return MetaFault(op, "copy", torch.device(target).type)
    if "meta" in devices and isinstance(exc, NotImplementedError):
        return MetaFault(op, "kernel")
    return None


# -- the shape interpreter -----------------------------------------------------------------


class _ShapeInterpreter(fx.Interpreter):
    """Records every node's output. An exception raised while calling a node's target (the
    model's op, module or wrapped function) is the model's; any other is shapetrace's own."""

    def __init__(self, module: fx.GraphModule, out: ShapeResult, reuse: bool = False) -> None:
        super().__init__(module, garbage_collect_values=False)
        self.out = out
        self.reuse = reuse
        self.model_error: BaseException | None = None
        self.failed_node: fx.Node | None = None
        self._node: fx.Node | None = None
        self._layers: dict[str, Any] = {}  # call_module targets fetched (layers stay put)

    def _model_op(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            # Tensors the model's code creates without a device (torch.ones(...)) must be meta
            # too. Only its code runs under the device mode: the mode puts every tensor
            # operation, attribute reads included, through Python, and the pass's own
            # bookkeeping (shapes, strides, dtypes of every value) needs no default device.
            with torch.device("meta"):
                return call(*args, **kwargs)
        except Exception as exc:
            self.model_error = exc
            self.failed_node = self._node
            raise

    def call_function(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if (target is operator.add or target is torch.add) and len(args) == 2 and not kwargs:
            a, b = args
            if (
                type(a) is torch.Tensor
                and type(b) is torch.Tensor
                and a.dtype == b.dtype
                and a.shape == b.shape
                and a.device.type == "meta"
                and b.device.type == "meta"
                and _dense(a)
                and _dense(b)
            ):
                # A residual sum of two maps alike: its meta kernel runs in Python (0.1 ms a
                # call). A clone has its metadata: contiguous, same shape and dtype, and
                # an autograd history when either input has one (1 us).
                return (a if a.requires_grad or not b.requires_grad else b).clone()
        if (target is F.relu or target is torch.relu) and _not_inplace(args, kwargs):
            x = args[0]
            if (
                type(x) is torch.Tensor
                and x.device.type == "meta"
                and x.dtype in _FLOATS
                and _dense(x)
            ):
                # A functional ReLU: its meta kernel runs in Python (0.4 ms a call); a clone has
                # the output's metadata and autograd history.
                return x.clone()
        # fx hands over immutable containers; wrapped user functions may mutate their arguments.
        return self._model_op(target, *_mutable(args), **_mutable(kwargs))

    def call_method(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._model_op(super().call_method, target, args, kwargs)

    def call_module(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        module = self._layers.get(target)
        if module is None:
            module = self._layers[target] = self.fetch_attr(target)
        first = args[0] if args else None
        if (
            isinstance(module, _SHAPE_PRESERVING)
            and len(args) == 1
            and not kwargs
            and isinstance(first, torch.Tensor)
            and first.device.type == "meta"
            and _channels_fit(module, first)
        ):
            # Same shape out as in: skip the meta kernels (batch norm decomposes into dozens
            # of ops), keeping in-place modules' aliasing.
            aliases = getattr(module, "inplace", False) or (
                isinstance(module, _PASS_THROUGH) and not module.training
            )
            if aliases:
                return first
            # empty_like's meta kernel runs in Python; for a contiguous map a detached clone
            # (C++) is the same: contiguous, no autograd history.
            return first.detach().clone() if _dense(first) else torch.empty_like(first)
        pooled = _adaptive_pool_shape(module, args, kwargs)
        if pooled is not None:
            # The meta kernel of adaptive average pooling decomposes into a mean over every
            # window (4 ms a call); its output shape needs no kernel at all.
            return args[0].new_empty(pooled)
        # fx's call_module: the module fetched above, called with the arguments.
        return self._model_op(lambda: module(*args, **kwargs))

    def run_node(self, n: fx.Node) -> Any:
        self._node = n
        known = self._recorded(n) if self.reuse else None
        if known is not None:
            self.out.results[n] = summarize(known)
            self.out.values[n] = known
            return known
        if fx_traceback.has_preserved_node_meta():
            value = super().run_node(n)
        else:
            # fx's run_node without its context manager, which only sets the current node's
            # metadata for code that preserves it (none here): two generators per node.
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            value = getattr(self, n.op)(n.target, args, kwargs)
        self.out.results[n] = summarize(value)
        self.out.values[n] = value
        return value

    def _recorded(self, n: fx.Node) -> Any:
        """The output export recorded for an aten op (`meta["val"]`), as meta tensors at the
        sample sizes, where neither it nor the op's tensor inputs hold a data-dependent size:
        running its meta kernel again gives the same shape (1 ms a node on a fake tensor).
        None where the op must run: data-dependent sizes, non-tensor outputs, tensors on
        another device, outputs sharing an input's storage (the cost pass counts storages),
        nodes shapetrace added."""
        if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
            return None
        if any(r.alias_info is not None for r in n.target._schema.returns):
            return None  # a view or in-place op: its output shares its input's storage
        val = n.meta.get("val")
        if val is None:
            return None
        inputs: set[int] = set()
        for a in n.all_input_nodes:
            if a not in self.out.values or _has_symbols(self.out.values[a]):
                return None
            inputs.update(_storage_of(t) for t in tensors_in(a.meta.get("val")))
        # Export's values keep its views: an output on an input's storage (meshgrid's expanded
        # grids, an op without an alias annotation) must share it here too.
        if any(_storage_of(t) in inputs for t in tensors_in(val)):
            return None
        return _concrete(val)


def _concrete(val: Any) -> Any:
    """A recorded fake value as meta tensors of its sample sizes (backed symbols at their hints),
    or None where it holds anything else (an unbacked size, a number, None)."""
    if isinstance(val, torch.Tensor):
        if val.device.type != "meta":  # a tensor the model made on a device: its asserts check it
            return None
        shape = [_hint(d) for d in val.shape]
        stride = [_hint(d) for d in val.stride()]
        sizes = [d for d in shape if d is not None]
        steps = [d for d in stride if d is not None]
        if len(sizes) < len(shape) or len(steps) < len(stride):
            return None
        made = torch.empty_strided(sizes, steps, dtype=val.dtype, device="meta")
        if _hint(val.untyped_storage().nbytes()) != made.untyped_storage().nbytes():
            return None  # a storage larger than the tensor's extent: the op's own to make
        return made
    if isinstance(val, (tuple, list)) and val:
        parts = [_concrete(v) for v in val]
        if any(p is None for p in parts):
            return None
        return type(val)(parts)
    return None


def _storage_of(tensor: torch.Tensor) -> int:
    return int(tensor.untyped_storage()._cdata)


def _hint(d: Any) -> int | None:
    if isinstance(d, int):
        return d
    if isinstance(d, torch.SymInt):
        node = d.node
        if node.expr.is_number:
            return int(node.expr)
        if free_unbacked_symbols(node.expr):
            return None
        hint = node.hint
        return int(hint) if hint is not None else None
    return None


_SHAPE_PRESERVING = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)


_ADAPTIVE_AVG: dict[type, int] = {
    nn.AdaptiveAvgPool1d: 1,
    nn.AdaptiveAvgPool2d: 2,
    nn.AdaptiveAvgPool3d: 3,
}


def _adaptive_pool_shape(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int, ...] | None:
    """The output shape of an adaptive average pool on a well-formed meta input, else None
    (the real kernel then runs, and raises what it raises)."""
    rank = _ADAPTIVE_AVG.get(type(module))
    first = args[0] if args else None
    if rank is None or len(args) != 1 or kwargs or not isinstance(first, torch.Tensor):
        return None
    if first.device.type != "meta" or first.dim() not in (rank + 1, rank + 2):
        return None
    if any(d <= 0 for d in first.shape[-rank:]) or first.numel() == 0:
        return None
    size: Any = module.output_size
    wanted = (size,) * rank if isinstance(size, int) else tuple(size)
    if len(wanted) != rank:
        return None
    spatial = [first.shape[-rank + i] if w is None else int(w) for i, w in enumerate(wanted)]
    if any(d <= 0 for d in spatial):
        return None
    return (*first.shape[:-rank], *spatial)


_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _not_inplace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """`relu(x)`, `relu(x, False)` or `relu(x, inplace=False)`: one argument, not in place."""
    if len(args) == 1:
        return not kwargs or (len(kwargs) == 1 and kwargs.get("inplace", True) is False)
    return len(args) == 2 and args[1] is False and not kwargs


def _dense(x: torch.Tensor) -> bool:
    """Whether `x` has exactly the strides of a contiguous tensor of its shape."""
    expected = 1
    for size, stride in zip(reversed(x.shape), reversed(x.stride()), strict=True):
        if stride != expected:
            return False
        expected *= max(size, 1)
    return True


# Return their input itself (in eval), as the real modules do.
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d)


def _channels_fit(module: nn.Module, x: torch.Tensor) -> bool:
    """Batch norm checks its channels; let the real kernel raise when they do not fit."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.training:
            return False  # batch statistics need more than one value per channel: let it check
        expected = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}
        ranks = next((r for t, r in expected.items() if isinstance(module, t)), ())
        return x.dim() in ranks and x.shape[1] == module.num_features
    return True


def _mutable(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_mutable(v) for v in value)
    if isinstance(value, list):
        return [_mutable(v) for v in value]
    if isinstance(value, dict):
        return {k: _mutable(v) for k, v in value.items()}
    return value


def propagate(
    gm: fx.GraphModule,
    inputs: list[torch.Tensor],
    names: dict[fx.Node, str],
    sites: dict[fx.Node, str],
    *,
    symbolic: bool = False,
    reuse: bool = False,
) -> ShapeResult:
    """Run `gm` on meta `inputs`; on an error, describe the failing node in plain words.

    An error raised by one of the model's ops becomes `failure` ("unsupported" where the meta
    run, not the model, is to blame); an error in shapetrace's own code propagates.
    `symbolic=True` runs on fake tensors with a shape environment instead, so that an op whose
    output size depends on values (`nonzero`, a boolean mask) gives a symbol (`u0`), not a
    break: for graphs captured with symbolic shapes, which hold such ops. `reuse=True` (a
    graph torch.export captured at the sizes of `inputs`) takes an aten op's output from the
    node's recorded `meta["val"]` where no data-dependent size is involved (`_recorded`)."""
    out = ShapeResult()
    interp = _ShapeInterpreter(gm, out, reuse and symbolic)
    try:
        # (each of the model's calls runs with meta as the default device: `_model_op`)
        with _fake_mode(symbolic):
            interp.run(*inputs)
    except Exception as exc:
        failed = interp.failed_node
        if failed is None or interp.model_error is None or not caused_by(exc, interp.model_error):
            raise
        args = [out.values.get(a) for a in failed.all_input_nodes]
        module = gm.get_submodule(failed.target) if failed.op == "call_module" else None  # type: ignore[arg-type]
        name = names.get(failed, failed.name)
        fault = _replay(interp, failed)
        out.fault = fault
        if fault is not None:
            message, kind = f"{name}: {fault.describe()}", "unsupported"
        else:
            message, kind = explain(name, module, args, interp.model_error), "rejected"
        out.failure = Failure(
            node=name,
            module=sites.get(failed),
            type=type(module).__name__ if module is not None else op_label(failed),
            input_shapes=[summarize(a).shape for a in args],
            message=_resolve_proxies(message, gm, out),
            kind=kind,
        )
    if symbolic:
        # A value whose size is a symbol has no number a pass could compute with: the passes
        # see it as not reached (its row keeps the symbolic shape).
        for node in [n for n, v in out.values.items() if _has_symbols(v)]:
            del out.values[node]
    return out


def _has_symbols(value: Any) -> bool:
    if isinstance(value, torch.SymInt):
        return not value.node.expr.is_number
    if isinstance(value, torch.Tensor):
        return any(_has_symbols(d) for d in value.shape)
    if isinstance(value, (tuple, list)):
        return any(_has_symbols(v) for v in value)
    if isinstance(value, dict):
        return any(_has_symbols(v) for v in value.values())
    return False


def _fake_mode(symbolic: bool) -> Any:
    if not symbolic:
        return contextlib.nullcontext()
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    return FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)


def _replay(interp: _ShapeInterpreter, node: fx.Node) -> MetaFault | None:
    """Run the failed node once more under a MetaWatch, to learn which aten op raised and why.
    Only a failure pays for the watch; a run that succeeds never dispatches through Python."""
    watch = MetaWatch()
    try:
        with torch.device("meta"), watch:
            interp.run_node(node)
    except Exception as exc:
        return watch.fault_of(exc)
    return None


def _resolve_proxies(message: str, gm: fx.GraphModule, out: ShapeResult) -> str:
    """Messages formatted while tracing show `Proxy(getitem_2)`; show the value it had."""
    by_name = {node.name: node for node in gm.graph.nodes}

    def value_of(match: re.Match[str]) -> str:
        node = by_name.get(match.group(1))
        value = out.values.get(node) if node is not None else None
        return str(value) if isinstance(value, (int, float, bool)) else match.group(0)

    return re.sub(r"Proxy\(([A-Za-z0-9_]+)\)", value_of, message)


def op_label(node: fx.Node) -> str:
    """A short type name for a non-module node: the function or method called."""
    if node.op == "call_function":
        packet = getattr(node.target, "overloadpacket", None)  # aten: `add`, not `add.Tensor`
        return getattr(packet or node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return str(node.target)
    if node.op == "get_attr":
        return "Parameter"
    if node.op == "placeholder":
        return "Input"
    return node.op


def describe_module(module: nn.Module) -> str:
    """`Linear(2048 -> 2)`, `Conv2d(3 -> 64, k=7, s=2)`, `AvgPool2d(7, 1)`."""
    kind = type(module).__name__
    if isinstance(module, nn.Linear):
        return f"{kind}({module.in_features} -> {module.out_features})"
    if isinstance(module, nn.modules.conv._ConvNd):
        return f"{kind}({module.in_channels} -> {module.out_channels}, kernel {module.kernel_size})"
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d, nn.AvgPool1d, nn.MaxPool1d)):
        return f"{kind}({module.kernel_size}, {module.stride})"
    return kind


def explain(name: str, module: nn.Module | None, args: list[Any], exc: BaseException) -> str:
    """The cause of a break in plain words, from the module and the shapes it received."""
    first = args[0] if args else None
    text = first_line(exc)
    if (
        isinstance(module, nn.Linear)
        and isinstance(first, torch.Tensor)
        and first.dim() >= 1
        and first.shape[-1] != module.in_features
    ):
        return f"{name}: {describe_module(module)} received {first.shape[-1]} features"
    if isinstance(module, nn.modules.conv._ConvNd) and isinstance(first, torch.Tensor):
        rank = len(module.kernel_size)
        if first.dim() not in (rank + 1, rank + 2):
            return (
                f"{name}: {type(module).__name__} expects a {rank + 2}-d input "
                f"(N x C x {' x '.join('THW'[-rank:]) if rank > 1 else 'L'}), got {first.dim()}-d "
                f"{tuple(first.shape)}"
            )
        channels = first.shape[1] if first.dim() == rank + 2 else first.shape[0]
        if channels != module.in_channels:
            return (
                f"{name}: {type(module).__name__} expects {module.in_channels} input channels, "
                f"got {channels} (input {tuple(first.shape)})"
            )
    if (
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        and isinstance(first, torch.Tensor)
        and first.dim() >= 2
        and first.shape[1] != module.num_features
    ):
        return (
            f"{name}: {type(module).__name__} expects {module.num_features} channels, "
            f"got {first.shape[1]}"
        )
    if module is not None and isinstance(first, torch.Tensor) and _window_too_small(module, first):
        spatial = "x".join(str(d) for d in first.shape[2:])
        kernel = module.kernel_size
        need = f" needs at least a {_kernel_text(kernel)} map,"
        return f"{name}: {describe_module(module)}{need} received {spatial}"
    return f"{name}: {text}"


def _window_too_small(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether a window layer's (dilated) kernel is larger than its padded input, from the
    module's geometry and the shape it received."""
    kernel = getattr(module, "kernel_size", None)
    padding = getattr(module, "padding", 0)
    if kernel is None or (isinstance(padding, str) and padding != "valid"):
        return False  # no window, or "same" padding, which keeps the size
    rank = len(kernel) if isinstance(kernel, tuple) else x.dim() - 2
    if rank < 1 or x.dim() < rank + 1:
        return False
    sizes = x.shape[-rank:]
    k = _per_dim(kernel, rank)
    p = (0,) * rank if isinstance(padding, str) else _per_dim(padding, rank)
    d = _per_dim(getattr(module, "dilation", 1), rank)
    return any(n + 2 * pi < di * (ki - 1) + 1 for n, ki, pi, di in zip(sizes, k, p, d, strict=True))


def _per_dim(value: Any, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * rank


def _kernel_text(kernel: Any) -> str:
    if isinstance(kernel, int):
        return f"{kernel}x{kernel}"
    return "x".join(str(k) for k in kernel)
