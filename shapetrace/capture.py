"""Capture a model as a torch.fx graph, named as torchvision's feature extraction names it.

Naming: a module call is named by its `named_modules()` path; any other node by the path of the
module whose forward created it plus the op (`layer1.0.add`); a repeated name gets `_1`, `_2`, ...
per name, not per graph. Every node also records its call site: the path through which its
module was reached, so a module shared by several parents shows up inside each of them.
"""

from __future__ import annotations

import math
import re
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision.ops
from torch import fx, nn

from shapetrace.errors import CannotAnalyse, caused_by, describe_exit

_FX_SUFFIX = re.compile(r"^(.+)_[0-9]+$")

# torchvision's basic layers, kept whole as torch.nn's are; its composite blocks
# (Conv2dNormActivation, SqueezeExcitation, MLP, FeaturePyramidNetwork) are traced through.
_TORCHVISION_LEAVES: tuple[type[nn.Module], ...] = (
    torchvision.ops.StochasticDepth,
    torchvision.ops.FrozenBatchNorm2d,
    torchvision.ops.DropBlock2d,
    torchvision.ops.DropBlock3d,
    torchvision.ops.DeformConv2d,
    torchvision.ops.RoIAlign,
    torchvision.ops.RoIPool,
    torchvision.ops.PSRoIAlign,
    torchvision.ops.PSRoIPool,
    torchvision.ops.MultiScaleRoIAlign,
    torchvision.ops.Permute,
)


def is_basic_layer(module: nn.Module) -> bool:
    """A layer kept whole: torch.nn's own modules (not containers) and torchvision's basic ops."""
    if isinstance(module, _TORCHVISION_LEAVES):
        return True
    origin = type(module).__module__
    in_torch_nn = origin.startswith(("torch.nn", "torch.ao.nn"))
    return in_torch_nn and not isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict))


@dataclass
class Capture:
    """A traced model: its graph, torchvision-style names, call sites and module calls.

    fx graphs call basic layers as `call_module` nodes. Graphs captured at the aten level
    (`method="symbolic"`) have none: `module_calls` maps the node giving each call's output to
    the module's path, and `hidden` holds nodes that are bookkeeping of that capture (the
    parameters a module call reads, runtime checks on data-dependent sizes, the guards on the
    input sizes): they run in every pass but are not report rows. `symbolic` is the
    `SymbolicCapture` the graph came from."""

    graph_module: fx.GraphModule
    names: dict[fx.Node, str]
    sites: dict[fx.Node, str]
    calls: Counter[str]
    module_outputs: dict[str, Any]
    called: set[int]
    used_tensors: set[int] = field(default_factory=set)
    method: str = "fx"
    module_calls: dict[fx.Node, str] = field(default_factory=dict)
    hidden: set[fx.Node] = field(default_factory=set)
    symbolic: Any = None
    # call_module targets already looked up (`module_of`), for this capture's graph module.
    _layers: dict[str, nn.Module] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def nodes(self) -> Iterator[fx.Node]:
        """Graph nodes in execution order, without the output node and hidden nodes."""
        for node in self.graph_module.graph.nodes:
            if node.op != "output" and node not in self.hidden:
                yield node

    def module_of(self, node: fx.Node) -> nn.Module | None:
        """The basic layer a node calls: a call_module's target, or the module whose call an
        aten-level node's output is."""
        if node.op == "call_module":
            target = str(node.target)
            found = self._layers.get(target)
            if found is None:
                found = self._layers[target] = self.graph_module.get_submodule(target)
            return found
        path = self.module_calls.get(node)
        if path is None:
            return None
        root = self.symbolic.model if self.symbolic is not None else self.graph_module
        return root.get_submodule(path)  # type: ignore[no-any-return]


class TraceFailure(Exception):
    """fx could not trace the model; `site` names the module being traced when it failed.

    `control_flow` says that the trace stopped because the forward used a traced value as a
    condition or iterated over it (fx asked the tracer for a bool or an iterator of a Proxy).
    """

    def __init__(
        self, cause: BaseException, site: str, module_type: str, control_flow: bool = False
    ) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.site = site
        self.module_type = module_type
        self.control_flow = control_flow


class _NamingTracer(fx.Tracer):
    def __init__(self, root: nn.Module) -> None:
        autowrap: Any = (math, torchvision.ops)  # torchvision.ops functions stay single nodes
        super().__init__(autowrap_modules=autowrap)
        self._scope_name = ""
        self._scope_site = ""
        self._scope_module: nn.Module = root
        self._counts: Counter[str] = Counter()
        self.names: dict[fx.Node, str] = {}
        self.sites: dict[fx.Node, str] = {}
        self.calls: Counter[str] = Counter()
        self.module_outputs: dict[str, Any] = {}
        self.called: set[int] = {id(root)}
        self.used_tensors: set[int] = set()
        self.failed_at: tuple[str, str] | None = None
        # What ended the trace, told apart by where it was raised rather than by its message.
        self.control_flow: BaseException | None = None
        self.own_error: BaseException | None = None

    def to_bool(self, obj: fx.Proxy) -> bool:
        try:
            return super().to_bool(obj)
        except Exception as exc:
            self.control_flow = exc
            raise

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        try:
            return super().iter(obj)
        except Exception as exc:
            self.control_flow = exc
            raise

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _TORCHVISION_LEAVES) or super().is_leaf_module(
            m, module_qualified_name
        )

    def _site_of(self, module: nn.Module, name: str) -> str:
        # The call site: where the calling module holds this child, if it holds it directly.
        for child_name, child in self._scope_module._modules.items():
            if child is module:
                return f"{self._scope_site}.{child_name}" if self._scope_site else child_name
        return name

    def call_module(
        self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        name = self.path_of_module(m)
        # An error in this bookkeeping is shapetrace's, not the model's: it is kept in
        # `own_error` (inline, not a context manager: this runs for every module call).
        try:
            site = self._site_of(m, name)
            saved = (self._scope_name, self._scope_site, self._scope_module)
            self._scope_name, self._scope_site, self._scope_module = name, site, m
            self.called.add(id(m))
            self.calls[site] += 1
        except Exception as exc:
            self.own_error = exc
            raise
        try:
            if self.is_leaf_module(m, name):
                # A layer kept whole runs its children inside its own forward (MultiheadAttention
                # reads out_proj's weights without calling it): they are used, not dead.
                if m._modules:
                    self.called.update(id(child) for child in m.modules())
                out = self.create_proxy("call_module", name, args, kwargs)
            else:
                out = forward(*args, **kwargs)
            self.module_outputs[site] = out
            return out
        except BaseException:
            if self.failed_at is None:  # the innermost module, where the trace broke
                self.failed_at = (site, type(m).__name__)
            raise
        finally:
            self._scope_name, self._scope_site, self._scope_module = saved

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        try:
            if isinstance(attr_val, torch.Tensor):
                self.used_tensors.add(id(attr_val))
        except Exception as exc:  # shapetrace's error, not the model's
            self.own_error = exc
            raise
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_node(  # type: ignore[override]
        self,
        kind: str,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
        type_expr: Any = None,
    ) -> fx.Node:
        # Every node, including tensor constants that fx adds without a proxy, gets a name.
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind == "output":
            return node
        try:
            if kind == "get_attr" and isinstance(target, str):
                tensor = _lookup(self.root, target)
                if isinstance(tensor, torch.Tensor):
                    self.used_tensors.add(id(tensor))
            self.names[node] = self._qualname(node)
            self.sites[node] = self._scope_site
        except Exception as exc:  # shapetrace's error, not the model's
            self.own_error = exc
            raise
        return node

    def _qualname(self, node: fx.Node) -> str:
        if node.op == "call_module":
            base = self._scope_name
        else:
            base = f"{self._scope_name}.{node.name}" if self._scope_name else node.name
        stripped = _FX_SUFFIX.match(base)
        if stripped:
            base = stripped.group(1)
        index = self._counts[base]
        self._counts[base] += 1
        return base if index == 0 else f"{base}_{index}"

    @property
    def where(self) -> tuple[str, str]:
        return self.failed_at or ("", type(self.root).__name__)


def _lookup(root: nn.Module, target: str) -> Any:
    # Plain dict lookups: getattr on a module is patched while tracing and would recurse.
    *owners, attr = target.split(".")
    module: Any = root
    for part in owners:
        module = module._modules.get(part) if isinstance(module, nn.Module) else None
        if module is None:
            return None
    for store in ("_parameters", "_buffers"):
        found = getattr(module, store, {}).get(attr)
        if found is not None:
            return found
    return vars(module).get(attr)


def trace(model: nn.Module, concrete_args: dict[str, Any] | None = None) -> Capture:
    """Trace `model` (in its current train/eval mode) with torchvision-style names."""
    tracer, graph = _traced(model, lambda t: t.trace(model, concrete_args=concrete_args))
    return _capture(model, tracer, graph)


def _capture(model: nn.Module, tracer: _NamingTracer, graph: fx.Graph) -> Capture:
    """The Capture of a traced graph: its GraphModule, names, sites and module calls."""
    # Compiling the graph's code can fail too (module names fx cannot quote).
    name = type(model).__name__
    graph_module = _traced(model, lambda t: fx.GraphModule(t.root, graph, name), tracer)[1]
    _remember_compiled(model, graph)
    _constants_to_meta(graph_module)
    # GraphModule copies the graph; map our names onto its nodes, which keep the same order.
    names: dict[fx.Node, str] = {}
    sites: dict[fx.Node, str] = {}
    for old, new in zip(graph.nodes, graph_module.graph.nodes, strict=True):
        if old in tracer.names:
            names[new] = tracer.names[old]
            sites[new] = tracer.sites[old]
    old_to_new = dict(zip(graph.nodes, graph_module.graph.nodes, strict=True))
    outputs = {site: _map_nodes(out, old_to_new) for site, out in tracer.module_outputs.items()}
    return Capture(
        graph_module=graph_module,
        names=names,
        sites=sites,
        calls=tracer.calls,
        module_outputs=outputs,
        called=tracer.called,
        used_tensors=tracer.used_tensors,
    )


# The last graph of each model that compiled into a GraphModule, by the model's id: a graph
# written the same way compiles too (see `called_modules`). An entry lives as long as its model.
_COMPILED: dict[int, tuple[weakref.ref[nn.Module], fx.Graph]] = {}


def _remember_compiled(model: nn.Module, graph: fx.Graph) -> None:
    key = id(model)
    try:
        ref = weakref.ref(model, lambda _: _COMPILED.pop(key, None))
    except TypeError:
        return  # a model that takes no weak reference: its graphs are always compiled
    _COMPILED[key] = (ref, graph)


def _compiled(model: nn.Module) -> fx.Graph | None:
    entry = _COMPILED.get(id(model))
    return entry[1] if entry is not None and entry[0]() is model else None


def _traced(
    model: nn.Module,
    step: Callable[[_NamingTracer], Any],
    tracer: _NamingTracer | None = None,
) -> tuple[_NamingTracer, Any]:
    """Run one step of a trace (tracing, or building the GraphModule), its errors told apart:
    shapetrace's own raise as they are, the model's become a `TraceFailure`, and a
    `sys.exit()` in forward a one-line `CannotAnalyse`."""
    tracer = tracer or _NamingTracer(model)
    try:
        return tracer, step(tracer)
    except Exception as exc:
        if tracer.own_error is not None and caused_by(exc, tracer.own_error):
            raise  # a bug of ours: an internal error, not an untraceable model
        site, module_type = tracer.where
        control_flow = tracer.control_flow is not None and caused_by(exc, tracer.control_flow)
        raise TraceFailure(exc, site, module_type, control_flow) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        # sys.exit() in the model's forward: not a trace failure to fall back from (the eager
        # run would call it again), and never a silent exit 0.
        site, module_type = tracer.where
        where = f"{site} ({module_type})" if site else module_type
        raise CannotAnalyse(f"the model {describe_exit(exc)} in forward, in {where}") from exc


def _constants_to_meta(gm: fx.GraphModule) -> None:
    """Tensors the forward creates while tracing (torch.ones(4)) become CPU constants; shapes are
    propagated on meta, so move them there."""
    for node in gm.graph.nodes:
        if node.op != "get_attr":
            continue
        owner_path, _, attr = str(node.target).rpartition(".")
        owner = gm.get_submodule(owner_path) if owner_path else gm
        value = getattr(owner, attr, None)
        if isinstance(value, torch.Tensor) and value.device.type != "meta":
            meta = value.to("meta")
            if isinstance(value, nn.Parameter):
                meta = nn.Parameter(meta, requires_grad=value.requires_grad)
            setattr(owner, attr, meta)


def _map_nodes(value: Any, mapping: dict[fx.Node, fx.Node]) -> Any:
    if isinstance(value, fx.Proxy):
        return mapping.get(value.node)
    if isinstance(value, (tuple, list)):
        return [_map_nodes(v, mapping) for v in value]
    if isinstance(value, dict):
        return {str(k): _map_nodes(v, mapping) for k, v in value.items()}
    return None


def called_modules(model: nn.Module, training: bool) -> tuple[set[int], set[int]] | None:
    """Ids of the modules and tensors a forward uses in the given mode (None if untraceable).

    Only the trace is needed, not its GraphModule: that is built (and its code compiled, which
    can fail) only when the graph is not written exactly as one of this model that compiled
    already, or reads a tensor that is not on meta (which building it would move there)."""
    was_training = model.training
    model.train(training)
    try:
        tracer, graph = _traced(model, lambda t: t.trace(model))
        compiled = _compiled(model)
        if compiled is None or not _same_code(graph, compiled) or _reads_real_tensors(graph, model):
            capture = _capture(model, tracer, graph)
            return capture.called, capture.used_tensors
    except TraceFailure:
        return None
    finally:
        model.train(was_training)
    return tracer.called, tracer.used_tensors


def _same_code(graph: fx.Graph, other: fx.Graph) -> bool:
    """Whether two graphs have the same nodes (names, ops, targets, arguments, types), so that
    fx writes the same code for both."""
    if len(graph.nodes) != len(other.nodes):
        return False
    if type(graph._codegen) is not type(other._codegen):
        return False
    index: dict[fx.Node, int] = {}
    index_other: dict[fx.Node, int] = {}
    try:
        for i, (x, y) in enumerate(zip(graph.nodes, other.nodes, strict=True)):
            if x.name != y.name or x.op != y.op or x.type != y.type:
                return False
            if not (x.target is y.target or (type(x.target) is str and x.target == y.target)):
                return False
            if not _same_arg(x.args, y.args, index, index_other):
                return False
            if not _same_arg(x.kwargs, y.kwargs, index, index_other):
                return False
            index[x], index_other[y] = i, i
    except Exception:
        return False  # arguments that do not compare: not known to be the same
    return True


_PLAIN = (int, float, str, bool, type(None), torch.dtype, torch.device)


def _same_arg(x: Any, y: Any, index: dict[fx.Node, int], index_other: dict[fx.Node, int]) -> bool:
    """Equal arguments of the same types all the way down (1 and 1.0 and True differ); a node
    by its position in its graph."""
    kind = type(x)
    if kind is not type(y):
        return False
    if kind is fx.Node:
        return index.get(x, -1) == index_other.get(y, -2)
    if kind in _PLAIN:
        return bool(x == y)
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(
            _same_arg(u, v, index, index_other) for u, v in zip(x, y, strict=True)
        )
    if isinstance(x, dict):
        return list(x) == list(y) and all(_same_arg(x[k], y[k], index, index_other) for k in x)
    if kind is slice:
        return _same_arg((x.start, x.stop, x.step), (y.start, y.stop, y.step), index, index_other)
    return x is y


def _reads_real_tensors(graph: fx.Graph, model: nn.Module) -> bool:
    """Whether a get_attr node reads a tensor not on meta (a GraphModule would move it)."""
    for node in graph.nodes:
        if node.op == "get_attr":
            value = _lookup(model, str(node.target))
            if isinstance(value, torch.Tensor) and value.device.type != "meta":
                return True
    return False
