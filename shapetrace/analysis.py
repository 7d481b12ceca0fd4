"""The pipeline: source -> fx capture -> passes -> Report."""

from __future__ import annotations

import copy
import operator
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch._dispatch.python import enable_python_dispatcher

from shapetrace import __version__
from shapetrace.capture import Capture, TraceFailure, called_modules, trace
from shapetrace.capture_hooks import HookCapture, hook_run
from shapetrace.errors import CannotAnalyse, UsageError, first_line, user_code
from shapetrace.inputs import FirstLayer, TensorSpec, complete, parse
from shapetrace.passes import PassContext, cost, receptive, sizing
from shapetrace.passes import params as params_pass
from shapetrace.passes.shapes import ShapeResult, op_label, propagate, summarize
from shapetrace.report import Failure, Module, Node, Report
from shapetrace.sources import ModelSource, check_analysable, resolve, resolve_from_report

InputLike = str | Sequence[int] | Sequence[str | Sequence[int] | TensorSpec] | TensorSpec | None


def analyze(
    model_or_name: str | nn.Module,
    input_shape: InputLike = None,
    *,
    model_args: dict[str, Any] | None = None,
    train: bool = False,
    from_report: bool = False,
) -> Report:
    """Analyse a model at one input without running it.

    `model_or_name` is a torchvision model name, one of shapetrace's (`codereview_resnet50`,
    `stembodyhead_resnet50`, ...), `path/file.py:Name`, `package.module:Name`, or an
    `nn.Module`. `input_shape` is an `--input` spec (`"1x3x448x448"`, `"448"`), a tuple of ints,
    or a list of those for several inputs; None means the model's usual input.
    A model that breaks at this input still yields a Report, with `report.failure` set.

    `from_report=True` when the name and `model_args` come from a saved report (data from
    anywhere): only torchvision's and shapetrace's own models are rebuilt, no user code runs
    (`sources.resolve_from_report`).
    """
    with warnings.catch_warnings():
        # Builders warn about weight initialisation and deprecations that do not concern shapes.
        warnings.simplefilter("ignore")
        source, built = model(model_or_name, model_args, from_report=from_report)
        built.train(train)
        try:
            capture = trace(built)
        except TraceFailure as failure:
            return _analyze_symbolic(built, source, input_shape, failure, train)
        specs = input_specs(input_shape, source, first_layer_in_graph(capture))
        defaults = _unsupplied_defaults(capture, specs)
        if defaults:
            # Arguments left at their defaults (y=None) must not be traced as tensors.
            capture = trace(built, concrete_args=defaults)
        try:
            return run_passes(built, capture, specs, source, train)
        except _DataDependentSize as size:
            fallback = TraceFailure(size, "", type(built).__name__)
            return _analyze_symbolic(built, source, input_shape, fallback, train)


def model(
    model_or_name: str | nn.Module,
    model_args: dict[str, Any] | None,
    *,
    from_report: bool = False,
) -> tuple[ModelSource, nn.Module]:
    """The model to analyse and where it came from: a name resolved and built (only
    torchvision's and shapetrace's own when `from_report`), or a user's module copied to meta."""
    if from_report:
        source = resolve_from_report(model_or_name, model_args)
        return source, source.build()
    if isinstance(model_or_name, nn.Module):
        name = type(model_or_name).__name__
        check_analysable(name, model_or_name)
        model = _meta_copy(model_or_name)
        return ModelSource(name, lambda: model, family="object"), model
    if not isinstance(model_or_name, str):
        raise UsageError(
            f"analyze() takes a model name or an nn.Module, not {type(model_or_name).__name__}"
        )
    source = resolve(model_or_name, model_args)
    return source, source.build()


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of a user's model whose tensors live on meta: the original is left untouched and
    no weight is duplicated in memory."""
    memo: dict[int, Any] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in memo:
            continue
        meta = tensor.detach().to("meta")
        if isinstance(tensor, nn.Parameter):
            meta = nn.Parameter(meta, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = meta
    return copy.deepcopy(model, memo)


def diagnose_trace_failure(spec: str, failure: TraceFailure) -> str:
    """One line naming the construct fx could not trace, where, and what to do."""
    text = first_line(failure.cause)
    where = (
        f"in {failure.site} ({failure.module_type})"
        if failure.site
        else f"in {failure.module_type}.forward()"
    )
    if failure.control_flow:
        construct = "Python control flow that depends on a tensor's value"
    else:
        construct = f"{type(failure.cause).__name__}: {text}"
    return (
        f"{spec}: torch.fx cannot trace {construct} {where}; make that branch depend on "
        "shapes or module attributes, or pass the value as a constant"
    )


# -- inputs -------------------------------------------------------------------------------


def first_layer(modules: Iterable[nn.Module]) -> FirstLayer:
    """What the first parameterised layer expects, from modules in the order they run."""
    for module in modules:
        if isinstance(module, nn.modules.conv._ConvNd):
            return FirstLayer("conv", module.in_channels, len(module.kernel_size))
        if isinstance(module, nn.Embedding):
            return FirstLayer("embedding")
        if isinstance(module, nn.Linear):
            return FirstLayer("linear", module.in_features)
    return FirstLayer("unknown")


def first_layer_in_graph(capture: Capture) -> FirstLayer:
    """The first layer that runs, as a module call or a functional convolution on a weight the
    model holds (`F.conv2d(x, self.weight)`, an ECA-style stem)."""
    gm = capture.graph_module
    for node in capture.nodes():
        if node.op == "call_module":
            found = first_layer([gm.get_submodule(str(node.target))])
        elif node.op == "call_function" and node.target in _FUNCTIONAL_CONVS:
            found = _functional_conv(gm, node)
        else:
            continue
        if found.kind != "unknown":
            return found
    return FirstLayer("unknown")


_FUNCTIONAL_CONVS: dict[Any, int] = {
    torch.nn.functional.conv1d: 1,
    torch.nn.functional.conv2d: 2,
    torch.nn.functional.conv3d: 3,
    torch.conv1d: 1,
    torch.conv2d: 2,
    torch.conv3d: 3,
}


def _functional_conv(gm: fx.GraphModule, node: fx.Node) -> FirstLayer:
    """`F.convNd(x, weight, ..., groups)`: in_channels = weight.shape[1] * groups."""
    weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    groups = node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)
    if not isinstance(weight, fx.Node) or weight.op != "get_attr" or not isinstance(groups, int):
        return FirstLayer("unknown")
    owner, _, attr = str(weight.target).rpartition(".")
    tensor = getattr(gm.get_submodule(owner) if owner else gm, attr, None)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() < 3:
        return FirstLayer("unknown")
    rank = _FUNCTIONAL_CONVS[node.target]
    return FirstLayer("conv", int(tensor.shape[1]) * groups, rank)


def input_specs(input_shape: InputLike, source: ModelSource, first: FirstLayer) -> list[TensorSpec]:
    raw = _raw_specs(input_shape)
    defaults = source.default_inputs or []
    if not raw:
        if not defaults:
            raise UsageError(f"{source.spec}: --input is required for a model of your own")
        return list(defaults)
    # The first layer tells how to complete the first tensor's shorthand, and of any later
    # positional tensors written the same way (raft's two frames); others are taken literally.
    lead = raw[0]
    specs = []
    for i, spec in enumerate(raw):
        default = defaults[i] if i < len(defaults) else None
        if spec.name is None and len(spec.dims) == len(lead.dims) and lead.name is None:
            specs.append(complete(spec, first, default))
        else:
            specs.append(complete(spec, FirstLayer("unknown"), default))
    return specs


def _raw_specs(input_shape: InputLike) -> list[TensorSpec]:
    if input_shape is None:
        return []
    if isinstance(input_shape, TensorSpec):
        return [input_shape]
    if isinstance(input_shape, str):
        return parse(input_shape)
    items = list(input_shape)
    if all(isinstance(d, int) for d in items):
        return parse("x".join(str(d) for d in items))
    specs: list[TensorSpec] = []
    for item in items:
        specs.extend(_raw_specs(item))  # type: ignore[arg-type]
    return specs


def _unsupplied_defaults(capture: Capture, specs: list[TensorSpec]) -> dict[str, Any]:
    """Forward arguments that no --input tensor fills and that have a default."""
    placeholders = [n for n in capture.nodes() if n.op == "placeholder"]
    given = sum(s.name is None for s in specs)
    named = {s.name for s in specs if s.name is not None}
    return {
        str(node.target): node.args[0]
        for node in placeholders[given:]
        if str(node.target) not in named and node.args and not str(node.target).startswith("*")
    }


def _meta_inputs(capture: Capture, specs: list[TensorSpec]) -> list[Any]:
    """Meta tensors for the graph's placeholders, positional first, then by keyword."""
    placeholders = [n for n in capture.nodes() if n.op == "placeholder"]
    positional = [s for s in specs if s.name is None]
    keyword = {s.name: s for s in specs if s.name is not None}
    values: list[Any] = []
    for i, node in enumerate(placeholders):
        spec = positional[i] if i < len(positional) else keyword.pop(str(node.target), None)
        if spec is None:
            if node.args:
                values.append(node.args[0])  # the forward's default for this argument
                continue
            raise UsageError(
                f"the model's forward takes '{node.target}' too: add it to --input "
                f"(e.g. --input ...,{node.target}=1x16)"
            )
        values.append(
            torch.empty(spec.dims, dtype=getattr(torch, spec.dtype or "float32"), device="meta")
        )
    if len(positional) > len(placeholders):
        raise UsageError(
            f"--input gives {len(positional)} tensors but the model's forward takes "
            f"{len(placeholders)}"
        )
    if keyword:
        raise UsageError(f"the model's forward has no argument '{next(iter(keyword))}'")
    return values


# -- passes -------------------------------------------------------------------------------


def run_passes(
    model: nn.Module,
    capture: Capture,
    specs: list[TensorSpec],
    source: ModelSource,
    train: bool,
    values: list[Any] | None = None,
) -> Report:
    """Run every pass over a captured model and assemble the Report. `values` are the
    forward's arguments (by default, meta tensors for the graph's placeholders)."""
    if values is None:
        values = _meta_inputs(capture, specs)
    # The meta run and the passes call the model's forward and modules: sys.exit() there is
    # the model's, reported in one line (exit 3), never a silent exit 0.
    with user_code("the model", "in forward (running it on meta tensors)"):
        return _run_passes(model, capture, specs, values, source, train)


def _run_passes(
    model: nn.Module,
    capture: Capture,
    specs: list[TensorSpec],
    values: list[Any],
    source: ModelSource,
    train: bool,
) -> Report:
    symbolic = capture.method == "symbolic"
    # A graph export captured at these very sizes has every aten node's output recorded.
    recorded = symbolic and getattr(capture.symbolic, "rejected", True) is None
    shapes = propagate(
        capture.graph_module,
        values,
        capture.names,
        capture.sites,
        symbolic=symbolic,
        reuse=recorded,
    )
    if not symbolic and shapes.fault is not None and shapes.fault.reason == "size":
        # An output size that depends on values (nonzero, a mask) stops a meta run; a
        # capture with symbolic shapes carries it as a symbol (u0) instead.
        raise _DataDependentSize(shapes.fault.op)
    nodes = _nodes(capture, shapes)
    modules = _modules(model, capture, shapes)
    dead, train_only = _unused(model, capture, train)
    report = Report(
        source=_source_record(source, specs, train, capture.method),
        model=source.spec,
        input=list(specs[0].dims) if specs else [],
        nodes=nodes,
        modules=modules,
        totals=params_pass.totals(model),
        dead_modules=dead,
        train_only_modules=train_only,
        failure=shapes.failure,
    )
    context = PassContext(model, capture, shapes, report, specs, values)
    for analysis_pass in (receptive.run, sizing.run, cost.run):
        analysis_pass(context)
    return report


def _source_record(
    source: ModelSource, specs: list[TensorSpec], train: bool, method: str
) -> dict[str, Any]:
    return {
        "model": source.spec,
        "model_args": source.kwargs,
        "input": [str(s) for s in specs],
        "mode": "train" if train else "eval",
        "trace": method,
        "family": source.family,
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    import torchvision

    return {
        "shapetrace": __version__,
        "torch": torch.__version__.split("+")[0],
        "torchvision": torchvision.__version__.split("+")[0],
    }


def _target_text(node: fx.Node) -> str:
    target = node.target
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None) or ""
    module = {"_operator": "operator", "torch._C._nn": "torch.nn.functional"}.get(module, module)
    name = getattr(target, "__name__", str(target))
    if target in vars(operator).values():
        module = "operator"
    return f"{module}.{name}" if module else name


def _nodes(capture: Capture, shapes: ShapeResult) -> list[Node]:
    gm = capture.graph_module
    nodes = []
    for node in capture.nodes():
        result = shapes.results.get(node)
        module = capture.module_of(node)
        path = capture.module_calls.get(node)
        if path is not None and module is not None:
            # An aten-level node giving a module call's output: the row an fx graph's
            # call_module node would be, with the module's parameters counted here.
            op, target, kind = "call_module", path, type(module).__name__
            params = params_pass.unique_params(module)
        else:
            op, target = node.op, _target_text(node)
            if op == "get_attr" and capture.method == "symbolic":
                from shapetrace.capture_symbolic import model_path

                target = model_path(target)  # not the path through shapetrace's wrapper
            kind = type(module).__name__ if module is not None else op_label(node)
            params = params_pass.node_params(gm, node)
        nodes.append(
            Node(
                name=capture.names[node],
                op=op,
                target=target,
                module=capture.sites.get(node) or None,
                type=kind,
                inputs=[capture.names[a] for a in _visible_inputs(capture, node)],
                shape=result.shape if result else None,
                dtype=result.dtype if result else None,
                params=params,
                value=result.value if result else None,
            )
        )
    return nodes


def _visible_inputs(capture: Capture, node: fx.Node) -> list[fx.Node]:
    """The nodes a row reads, seen through hidden ones (a module call's parameters; the
    symbolic capture's unbinding of a batch into a detector's list of images reads the
    batch)."""
    found: list[fx.Node] = []
    pending = list(node.all_input_nodes)
    seen: set[fx.Node] = set()
    while pending:
        value = pending.pop(0)
        if value in seen:
            continue
        seen.add(value)
        if value in capture.hidden:
            pending.extend(value.all_input_nodes)
        else:
            found.append(value)
    return found


def _output_shape(value: Any, shapes: ShapeResult) -> Any:
    if isinstance(value, fx.Node):
        result = shapes.results.get(value)
        return result.shape if result else None
    if isinstance(value, list):
        return [_output_shape(v, shapes) for v in value]
    if isinstance(value, dict):
        return {k: _output_shape(v, shapes) for k, v in value.items()}
    return None


def _modules(model: nn.Module, capture: Capture, shapes: ShapeResult) -> list[Module]:
    return _module_entries(
        model,
        capture.calls,
        lambda path: _output_shape(capture.module_outputs.get(path), shapes),
    )


def _module_entries(
    model: nn.Module, calls: Mapping[str, int], shape_of: Callable[[str], Any]
) -> list[Module]:
    """Every module path: canonical `named_modules()` paths, plus call sites of shared ones."""
    entries: list[Module] = []
    seen: set[int] = set()
    for path, module in model.named_modules(remove_duplicate=False):
        if not path:
            continue
        canonical = id(module) not in seen
        seen.add(id(module))
        count = calls.get(path, 0)
        if not canonical and count == 0:
            continue
        entries.append(
            Module(
                path=path,
                type=type(module).__name__,
                params=params_pass.unique_params(module),
                calls=count,
                shape=shape_of(path) if count else None,
            )
        )
    return entries


def _unused(
    model: nn.Module, capture: Capture, train: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    this_called, this_used = capture.called, capture.used_tensors
    symbolic = capture.method == "symbolic"

    def unused(called: set[int], used: set[int]) -> list[tuple[str, nn.Module]]:
        found = params_pass.unused_modules(model, called, used)
        if symbolic:
            # An aten graph keeps no trace of a module without ops (Identity) or one whose
            # methods run but not its forward: only modules whose tensors go unread are known.
            found = [(p, m) for p, m in found if _owns_tensors(m)]
        return found

    if not train and not unused(this_called, this_used):
        return [], []  # the eval forward uses every module: no second trace needed
    if symbolic and capture.symbolic.uncaptured is not None:
        return [], []  # the capture ends before the forward does: no module is known dead
    if symbolic:
        other = _symbolic_called(model, capture.symbolic, training=not train)
        if other is None:
            return [], []  # the other mode could not be captured: no module is known dead
    else:
        other = called_modules(model, training=not train)
    if other is None:
        other = (set(), set())
    called_any = this_called | other[0]
    used_any = this_used | other[1]
    dead = unused(called_any, used_any)
    eval_called, eval_used = other if train else (this_called, this_used)
    not_in_eval = unused(eval_called, eval_used)
    dead_ids = {id(m) for _, m in dead}
    train_only = [(p, m) for p, m in not_in_eval if id(m) not in dead_ids]
    return (
        [params_pass.module_entry(p, m) for p, m in dead],
        [params_pass.module_entry(p, m) for p, m in train_only],
    )


def _owns_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


# -- second rung: symbolic shapes ------------------------------------------------------------


# Where a symbolic capture with data-dependent sizes stops: past this many such sizes
# (torchvision's R-CNNs, RetinaNet and FCOS make 6-10; SSD's per-class loop makes 91, at
# 12-18 CPU s) it ends at the call making them (SSD: at postprocess_detections), decided the
# same on every machine; and, as a safety net, past this many CPU seconds of export the hooks
# run takes over (the detectors take 3-6 s; docs/capture.md).
SYMBOLIC_MAX_UNBACKED = 32
SYMBOLIC_BUDGET = 20.0


class _DataDependentSize(Exception):
    """The fx graph's meta run met an output size that depends on tensor values."""


def _analyze_symbolic(
    model: nn.Module,
    source: ModelSource,
    input_shape: InputLike,
    failure: TraceFailure,
    train: bool,
) -> Report:
    """A model fx cannot trace, captured by torch.export with symbolic spatial sizes; the
    hooks run where that capture fails too."""
    from shapetrace.capture_symbolic import SymbolicCaptureError, capture_symbolic

    first = first_layer(model.modules())
    specs = input_specs(input_shape, source, first)
    tensors = [_meta_tensor(s) for s in specs]
    values = _bound_arguments(model, specs, tensors)
    if values is None or not tensors:
        return _analyze_with_hooks(model, source, input_shape, failure, train)
    try:
        with user_code("the model", _while_capturing(model)):
            captured = capture_symbolic(
                model,
                values,
                _spatial_dims(first, tensors[0]),
                budget=SYMBOLIC_BUDGET,
                max_unbacked=SYMBOLIC_MAX_UNBACKED,
                images=source.family == "detection",
            )
    except SymbolicCaptureError:
        return _analyze_with_hooks(model, source, input_shape, failure, train)
    # Ops on data-dependent sizes run as export ran them: torch's Python decompositions keep
    # such a size a symbol where a C++ kernel asks for its value (upsample on u0 detections).
    with (
        user_code("the model", "in forward (running it on meta tensors)"),
        enable_python_dispatcher(),
    ):
        report = _run_passes(model, captured.capture, specs, values, source, train)
    if captured.uncaptured is not None:
        _report_uncaptured(report, model, captured)
    if captured.rejected is not None and report.failure is None:
        # Captured at another size: the requested one is rejected by a check no guard spells.
        report.failure = Failure(
            node=report.nodes[0].name if report.nodes else "forward",
            module=None,
            type=type(model).__name__,
            input_shapes=[],
            message=f"{type(captured.rejected).__name__}: {first_line(captured.rejected)}",
            kind="rejected",
        )
    return report


def _report_uncaptured(report: Report, model: nn.Module, captured: Any) -> None:
    """The call the symbolic capture stopped at, in the report: a row without a shape (its
    `missing` says why), an entry in `domain["open"]`, and the verdict's first sentence."""
    cut = captured.uncaptured
    capture = captured.capture
    reason = cut.reason
    unreached = [
        p
        for p, m in params_pass.unused_modules(model, capture.called, capture.used_tensors)
        # A cut submodule call is the row itself, not a module the forward never reached.
        if _owns_tensors(m) and p != cut.name and not p.startswith(cut.name + ".")
    ]
    if len(unreached) == 1:
        reason += f"; {unreached[0]} was not reached before it, so whether the forward uses it"
    elif unreached:
        last = f"{len(unreached) - 3} more" if len(unreached) > 3 else unreached[-1]
        names = f"{', '.join(unreached[: min(3, len(unreached) - 1)])} and {last}"
        reason += f"; {names} were not reached before it, so whether the forward uses them"
    if unreached:
        reason += " is unknown"
    missing = {"shape": reason, "macs": reason}
    report.source["captured_until"] = cut.name
    report.nodes.append(
        Node(
            name=cut.name,
            op="call_function",
            target=cut.function,
            module=cut.module,
            type=cut.function,
            inputs=list(cut.inputs),
            shape=None,
            dtype=None,
            missing=missing,
        )
    )
    uncounted = report.totals.setdefault("uncounted", [])
    if cut.function not in uncounted:
        uncounted.append(cut.function)
    if report.domain is not None:
        # `cut`: no size is known to be accepted past it (`shapetrace.domain.in_domain`).
        report.domain.setdefault("open", []).append(
            {"node": cut.name, "reason": reason, "cut": True}
        )
    where = f"{os.path.basename(cut.file)}:{cut.line}" if cut.file else "an unknown line"
    lead = (
        f"Captured up to {cut.name}, which is not captured: it {cut.cause} at {where}. What it "
        "and the rest of the forward compute is unknown; what follows holds for the model up "
        "to that call."
    )
    report.verdict = f"{lead} {report.verdict}" if report.verdict else lead


def _bound_arguments(
    model: nn.Module, specs: list[TensorSpec], tensors: list[torch.Tensor]
) -> list[Any] | None:
    """The forward's arguments in order: positional tensors, keyword tensors in their places
    and defaults between them (export takes them positionally); None where the forward's
    signature cannot place them (keyword-only arguments, **kwargs)."""
    import inspect

    positional = [t for t, s in zip(tensors, specs, strict=True) if s.name is None]
    keyword = {s.name: t for t, s in zip(tensors, specs, strict=True) if s.name is not None}
    if not keyword:
        return positional
    try:
        bound = inspect.signature(model.forward).bind(*positional, **keyword)
    except (TypeError, ValueError):
        return None
    bound.apply_defaults()
    if bound.kwargs:
        return None
    return list(bound.args)


def _symbolic_called(
    model: nn.Module, symbolic: Any, training: bool
) -> tuple[set[int], set[int]] | None:
    """Ids of the modules and tensors the forward uses in the other mode, from a second
    symbolic capture (one path, within the budget); None where that capture fails (a
    detector in train mode wants targets)."""
    from shapetrace.capture_symbolic import SymbolicCaptureError, capture_symbolic

    was_training = model.training
    model.train(training)
    try:
        with user_code("the model", _while_capturing(model)):
            other = capture_symbolic(
                model,
                symbolic.inputs,
                symbolic.spatial,
                max_paths=1,
                budget=SYMBOLIC_BUDGET,
                max_unbacked=SYMBOLIC_MAX_UNBACKED,
                images=symbolic.images,
            )
    except SymbolicCaptureError:
        return None
    finally:
        model.train(was_training)
    if other.uncaptured is not None:
        return None  # that forward is captured only in part
    return other.capture.called, other.capture.used_tensors


def _spatial_dims(first: FirstLayer, x: torch.Tensor) -> tuple[int, ...]:
    """The dims made symbolic: a conv's spatial dims, an embedding's sequence; for other
    models the dims after batch and channels."""
    if first.kind == "conv" and x.dim() == first.spatial_rank + 2:
        return tuple(range(-first.spatial_rank, 0))
    if first.kind == "embedding":
        return (-1,)
    if first.kind == "linear":
        return ()
    return tuple(range(2 - x.dim(), 0)) if x.dim() > 2 else ()


# -- fallback: eager meta run with module hooks ----------------------------------------------


def _analyze_with_hooks(
    model: nn.Module,
    source: ModelSource,
    input_shape: InputLike,
    failure: TraceFailure,
    train: bool,
) -> Report:
    """Per-module shapes for a model fx cannot trace, or a one-line diagnosis."""
    specs = input_specs(input_shape, source, first_layer(model.modules()))
    tensors = [_meta_tensor(s) for s in specs]
    positional: list[Any] = [t for t, s in zip(tensors, specs, strict=True) if s.name is None]
    keyword = {s.name: t for t, s in zip(tensors, specs, strict=True) if s.name is not None}
    if source.family == "detection":
        positional = [[image for p in positional for image in p.unbind(0)]]
    hooks = hook_run(model, positional, keyword)
    rejected = hooks.error is not None and hooks.fault is None
    if not hooks.calls and not rejected:
        raise CannotAnalyse(diagnose_trace_failure(source.spec, failure))
    nodes = _input_nodes(model, specs) + _hook_nodes(hooks)
    report = Report(
        source=_source_record(source, specs, train, "hooks"),
        model=source.spec,
        input=list(specs[0].dims) if specs else [],
        nodes=nodes,
        modules=_module_entries(
            model,
            hooks.module_calls,
            lambda path: (
                summarize(hooks.module_outputs[path]).shape
                if path in hooks.module_outputs
                else None
            ),
        ),
        totals=params_pass.totals(model),
    )
    if hooks.error is not None:
        report.failure = _hook_failure(hooks, nodes, failure)
    return report


def _while_capturing(model: nn.Module) -> str:
    return f"in forward, in {type(model).__name__} (capturing it with symbolic sizes)"


def _meta_tensor(spec: TensorSpec) -> torch.Tensor:
    return torch.empty(spec.dims, dtype=getattr(torch, spec.dtype or "float32"), device="meta")


def _input_nodes(model: nn.Module, specs: list[TensorSpec]) -> list[Node]:
    import inspect

    try:
        names = [p for p in inspect.signature(model.forward).parameters if p != "self"]
    except (TypeError, ValueError):
        names = []
    nodes = []
    for i, spec in enumerate(specs):
        name = spec.name or (names[i] if i < len(names) else f"input_{i}")
        nodes.append(
            Node(name, "placeholder", name, None, "Input", [], list(spec.dims), spec.dtype)
        )
    return nodes


def _hook_nodes(hooks: HookCapture) -> list[Node]:
    nodes = []
    for call in hooks.calls:
        result = summarize(call.output) if call.output is not None else None
        nodes.append(
            Node(
                name=call.name,
                op="call_module",
                target=call.target,
                module=call.site or None,
                type=type(call.module).__name__,
                inputs=call.inputs,
                shape=result.shape if result else None,
                dtype=result.dtype if result else None,
                params=params_pass.unique_params(call.module),
            )
        )
    return nodes


def _hook_failure(hooks: HookCapture, nodes: list[Node], traced: TraceFailure) -> Failure:
    """Where the eager meta run stopped: an op the meta run cannot follow (unsupported), or a
    genuine rejection of the input."""
    error = hooks.error
    assert error is not None
    where = hooks.failed_site or "forward"
    kind = "rejected"
    cause = first_line(error)
    if hooks.fault is not None:
        kind = "unsupported"
        if traced.control_flow and hooks.fault.reason == "value":
            cause = "Python control flow that depends on a tensor's value (bool() of a tensor)"
        else:
            cause = hooks.fault.describe()
        cause += "; the modules before it are reported"
    failing = next(
        (n.name for n in nodes if n.module == hooks.failed_site and n.shape is None), where
    )
    return Failure(
        node=failing,
        module=hooks.failed_site or None,
        type=hooks.failed_type,
        input_shapes=[],
        message=f"{where} ({hooks.failed_type}): {cause}",
        kind=kind,
    )


__all__ = ["analyze", "summarize"]
