"""Capture with symbolic shapes: the rung between fx and hooks, for models fx cannot trace.

`torch.export.export(strict=False)` runs the model's Python on fake tensors whose spatial sizes
are symbols (`Dim.DYNAMIC`), so shape-dependent Python runs once and leaves guards on those
symbols (`Eq(Mod(H, 32), 0)`), and data-dependent sizes (`nonzero`, boolean masks) become
unbacked symbols (`u0`). The result is an aten-level graph named as `capture.trace` names an fx
graph: a basic layer's output node by its module path (`layer1.0.conv1`), any other node by the
module path plus the op (`layer1.0.conv1.getitem`), repeated names suffixed `_1`, `_2`.

Guards say when this graph is the model's graph. Each is attributed to the model's own source
line and module and then classified by running the model eagerly on meta tensors at a size that
violates it and satisfies every other guard: `rejects` when the model raises there (its own
error message is kept), `path` when the model runs there but takes another path (captured in
turn, up to `max_paths`), `implied` when no size breaks it alone, `data` when it involves
data-dependent sizes. An `implied` guard is tried once more where it is the first guard to fail
(every `path` guard and every guard asked before it hold): `rejects` if the model raises there
from the call that asked it (a conv's own `H >= 5` ahead of a pool needing `H >= 6`). See
docs/capture.md for the measurements behind the choice of `torch.export` over
`make_fx(tracing_mode="symbolic")`.

Where the export cannot go on (Python looping over a data-dependent number of detections, or
more data-dependent sizes than the caller's limit) inside a call a module's forward makes, the
capture ends there: the graph is exact up to the values handed to that call, and
`SymbolicCapture.uncaptured` says which call, why, and at which line of the model's code.
Exports run one at a time (the patches on torch and the model's modules are process-wide).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import linecache
import logging
import math
import operator
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
from torch import fx, nn
from torch.export import Dim, ExportedProgram, export
from torch.fx.experimental.symbolic_shapes import (
    GuardOnDataDependentSymNode,
    ShapeEnv,
    free_unbacked_symbols,
)
from torch.utils._pytree import tree_flatten, tree_map

from shapetrace.capture import Capture, is_basic_layer
from shapetrace.passes.shapes import MetaFault, MetaWatch

_FX_SUFFIX = re.compile(r"^(.+)_[0-9]+$")
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_THIS_FILE = os.path.abspath(__file__)
# torch's stride and contiguity computations: their guards choose a memory layout, not a path
# of the model's, and no size is rejected by them.
_LAYOUT_DIR = os.path.join(_TORCH_DIR, "_prims_common")
# Frames between a Python `bool(h % 32)` and the shape env: SymInt/SymBool dunders.
_SYMBOLIC_DIR = os.path.join(_TORCH_DIR, "fx", "experimental")
_PASSING = {_THIS_FILE, os.path.join(_TORCH_DIR, "__init__.py")}
_SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass
class Guard:
    """One condition on the input sizes under which the captured graph is the model's graph.

    `expr` is over the symbols of `SymbolicCapture.symbols` (`H`, `W`); `text` is its printed
    form. `file`, `line`, `code` and `module` say which line of the model's own code (and the
    forward of which module path) asked the question. `kind` is `rejects`, `path`, `implied`,
    `data` or `unknown` (see the module docstring); `probe` the sizes tried and `message` what
    the model raised there."""

    expr: sympy.Basic
    text: str
    file: str | None = None
    line: int | None = None
    code: str | None = None
    module: str | None = None
    kind: str = "unknown"
    probe: dict[str, int] | None = None
    message: str | None = None
    own: bool = False
    assumed: bool = False

    def holds(self, sizes: Mapping[str, int]) -> bool | None:
        """Whether the guard holds at `sizes` (None if it involves data-dependent sizes)."""
        return _holds(self.expr, sizes)

    @property
    def where(self) -> str:
        loc = f"{self.file}:{self.line}" if self.file else "?"
        return f"{loc} in {self.module}" if self.module else loc


@dataclass
class Unbacked:
    """A data-dependent size (`u0`) and the nodes whose shapes contain it."""

    symbol: str
    nodes: list[str]
    module: str | None = None


@dataclass
class Uncaptured:
    """A call the capture left out: the export stopped inside it, so the graph ends at the
    tensors handed to it (`inputs`, the graph's outputs) and what the call and the rest of the
    forward do is unknown. `name` is its row's name (`transform.postprocess`), `function` its
    qualified name, `module` the module path whose forward made the call (None for the model's
    own), `called_at` that line (file:line); `file`, `line`, `code` the model's line where the
    export stopped, and `cause` why, in words."""

    name: str
    function: str
    module: str | None
    called_at: str | None
    file: str | None
    line: int | None
    code: str | None
    cause: str
    inputs: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """One sentence for the report: what is not captured, why, and what that leaves."""
        where = f"{os.path.basename(self.file)}:{self.line}" if self.file else "?"
        code = f" `{self.code}`" if self.code else ""
        return (
            f"not captured: {self.function} ({self.name}) {self.cause} at {where}{code}; the "
            "capture ends at the tensors passed to it, and what it and the rest of the forward "
            "compute is unknown"
        )


@dataclass
class SymbolicCapture:
    """An aten-level graph with symbolic spatial sizes, its `Capture` record, guards and
    unbacked symbols. `symbols` maps `H`, `W` (`H_1`, ... for further inputs) to the shape
    env's symbols; `sample` is the size captured at. `alternatives` are captures of the other
    paths found by probing `path` guards. `rejected` is what the model raised at the requested
    size when it was captured at another (`sample`); `inputs`, `spatial` and `images` are the
    arguments it was captured with, for a capture of the other train/eval mode. `uncaptured`
    is the call the export could not follow, where the graph ends (see `Uncaptured`)."""

    capture: Capture
    exported: ExportedProgram
    symbols: dict[str, sympy.Symbol]
    sample: dict[str, int]
    guards: list[Guard]
    unbacked: list[Unbacked]
    model: nn.Module
    alternatives: list[SymbolicCapture] = field(default_factory=list)
    checks: dict[fx.Node, Guard] = field(default_factory=dict)
    unchecked: list[Guard] = field(default_factory=list)
    rejected: BaseException | None = None
    inputs: tuple[Any, ...] = ()
    spatial: tuple[int, ...] = ()
    images: bool = False
    uncaptured: Uncaptured | None = None

    def on_path(self, sizes: Mapping[str, int]) -> bool:
        """Whether `sizes` take this capture's path (every `path` guard holds)."""
        return all(g.holds(sizes) is not False for g in self.guards if g.kind == "path")

    def accepts(self, sizes: Mapping[str, int]) -> bool | None:
        """Whether the model accepts `sizes`, from the guards alone; None where no captured
        path covers them or a guard cannot be decided."""
        for capture in (self, *self.alternatives):
            if capture.on_path(sizes):
                verdicts = [
                    g.holds(sizes) for g in capture.guards if g.kind not in ("path", "layout")
                ]
                # Guards are in the order the model asked them: a rejecting guard that fails
                # rejects unless an `implied` or `unknown` one asked before it fails too (the
                # model may have raised or turned off the path there).
                for g in capture.guards:
                    if g.kind == "rejects" and g.holds(sizes) is False:
                        return False
                    if g.kind in ("implied", "unknown") and g.holds(sizes) is not True:
                        break
                # An implied guard broken here was never probed alone: its verdict is unknown;
                # past a call the capture could not follow, so is the rest of the forward.
                if any(v is not True for v in verdicts) or capture.uncaptured is not None:
                    return None
                return True
        return None

    def rejection(self, sizes: Mapping[str, int]) -> Guard | None:
        """The first rejecting guard `sizes` violate on their path, with the model's message."""
        for capture in (self, *self.alternatives):
            if capture.on_path(sizes):
                for g in capture.guards:
                    if g.kind == "rejects" and g.holds(sizes) is False:
                        return g
        return None

    def shapes(self, sizes: Mapping[str, int]) -> dict[str, Any]:
        """Every node's output shape at `sizes` (unbacked dims stay symbols, e.g. `u0`)."""
        subs = {self.symbols[k]: v for k, v in sizes.items() if k in self.symbols}
        return {
            self.capture.names[n]: _shape_at(n.meta.get("val"), subs) for n in self.capture.nodes()
        }

    def formula(self, node: fx.Node) -> Any:
        """A node's shape with the spatial symbols named `H`, `W`: `(1, 8, H//2, W//2)`."""
        names = {
            sym: sympy.Symbol(k, integer=True, positive=True) for k, sym in self.symbols.items()
        }
        return _shape_at(node.meta.get("val"), names)


class SymbolicCaptureError(Exception):
    """torch.export could not capture the model at the sample size; `cause` says why, `site`
    which line of the model's own code was running (file:line), when known."""

    def __init__(self, cause: BaseException, site: str | None) -> None:
        super().__init__(f"{type(cause).__name__}: {_first_line(cause)}")
        self.cause = cause
        self.site = site
        self.over_budget = _caused_by_type(cause, _OverBudget)


class _OverBudget(Exception):
    """The export ran past the capture's CPU-time budget."""


class _TooManyUnbacked(_OverBudget):
    """The export made more data-dependent sizes than the capture's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} data-dependent sizes")
        self.limit = limit


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _caused_by_type(exc: BaseException, kind: type[BaseException]) -> bool:
    return _cause_of_type(exc, kind) is not None


def _cause_of_type(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# -- capture ---------------------------------------------------------------------------------


def capture_symbolic(
    model: nn.Module,
    inputs: Sequence[Any],
    spatial: Sequence[int] = (-2, -1),
    *,
    max_paths: int = 4,
    probe_limit: int = 256,
    budget: float | None = None,
    max_unbacked: int | None = None,
    images: bool = False,
) -> SymbolicCapture:
    """Capture `model(*inputs)` with the `spatial` dims of every input tensor symbolic.

    `inputs` are the positional arguments as the model takes them (meta tensors, or lists of
    them for detection models); the model's parameters may live on meta. Guards are classified
    by eager meta runs at sizes up to `probe_limit`; `path` guards lead to further captures, up
    to `max_paths` in all.

    `budget` bounds the CPU seconds an export with data-dependent sizes may take: one that
    runs longer (a detector looping over its 91 classes) raises `SymbolicCaptureError` with
    `over_budget` set as soon as the budget is spent, so the caller falls back at that cost.
    Further paths are captured only while the budget lasts. `max_unbacked` bounds the number
    of data-dependent sizes, deterministically: SSD's per-class loop makes 91. Past it, the
    capture ends at the call a module's forward made that is making them (`uncaptured`), or,
    outside any such call, raises `SymbolicCaptureError` with `over_budget` set.

    `images=True` for a model taking a list of images (torchvision's detectors): `inputs` is
    one batch (N x C x H x W), unbound into images, so the graph's input is the batch the
    report's input names."""
    deadline = None if budget is None else time.process_time() + budget
    limits = _Limits(deadline, max_unbacked)
    runner = _Unbatched(model) if images else model
    try:
        root = _capture_one(runner, model, tuple(inputs), spatial, probe_limit, limits)
    except SymbolicCaptureError as failed:
        root = _capture_elsewhere(runner, model, inputs, spatial, probe_limit, limits, failed)
    root.inputs, root.spatial, root.images = tuple(inputs), tuple(spatial), images
    queue = [root]
    seen: list[dict[str, int]] = [root.sample]
    while queue and 1 + len(root.alternatives) < max_paths:
        if deadline is not None and time.process_time() > deadline:
            break
        current = queue.pop(0)
        for guard in current.guards:
            probe = guard.probe
            if guard.kind != "path" or probe is None:
                continue
            if any(c.on_path(probe) for c in (root, *root.alternatives)) or probe in seen:
                continue
            seen.append(probe)
            try:
                other = _capture_one(
                    runner, model, _resized(inputs, spatial, probe), spatial, probe_limit, limits
                )
            except SymbolicCaptureError:
                continue
            root.alternatives.append(other)
            queue.append(other)
            if 1 + len(root.alternatives) >= max_paths:
                break
    return root


@dataclass
class _Limits:
    """When a capture with data-dependent sizes is given up: a CPU-time `deadline`
    (`time.process_time()`) and a number of data-dependent sizes."""

    deadline: float | None = None
    max_unbacked: int | None = None


def _capture_elsewhere(
    runner: nn.Module,
    model: nn.Module,
    inputs: Sequence[Any],
    spatial: Sequence[int],
    probe_limit: int,
    limits: _Limits,
    failed: SymbolicCaptureError,
) -> SymbolicCapture:
    """A model that rejects the requested size (its own check raised, not torch) is captured
    at a nearby size it may accept, so that its guards give the domain; `rejected` keeps what
    it raised at the requested size. Re-raises `failed` when no such size is found."""
    if failed.over_budget:
        raise failed
    error, fault = _meta_run(runner, tuple(inputs))
    if error is None or fault is not None:
        raise failed
    for sizes in _nearby_sizes(inputs, spatial):
        if limits.deadline is not None and time.process_time() > limits.deadline:
            break
        try:
            other = _resized(inputs, spatial, sizes)
            captured = _capture_one(runner, model, other, spatial, probe_limit, limits)
        except SymbolicCaptureError:
            continue
        captured.rejected = error
        return captured
    raise failed


def _nearby_sizes(inputs: Sequence[Any], spatial: Sequence[int]) -> list[dict[str, int]]:
    """The requested sizes rounded up to multiples of 8, 16, 32 and 64, then 224 and 256."""
    _, labels = _dynamic_shapes(tuple(inputs), spatial)
    tensors = [v for v in tree_flatten(list(inputs))[0] if isinstance(v, torch.Tensor)]
    sizes = {name: int(tensors[i].shape[d]) for i, d, name in labels}
    out: list[dict[str, int]] = []
    for step in (8, 16, 32, 64):
        out.append({k: -(-v // step) * step for k, v in sizes.items()})
    out += [dict.fromkeys(sizes, 224), dict.fromkeys(sizes, 256)]
    unique: list[dict[str, int]] = []
    for candidate in out:
        if candidate != sizes and candidate not in unique:
            unique.append(candidate)
    return unique


class _Unbatched(nn.Module):
    """Calls a model taking a list of images with the images of batched tensors. Its only
    child is the model, under a name `model_path` strips from every path."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        setattr(self, _WRAPPED, model)

    def forward(self, batch: torch.Tensor) -> Any:
        return getattr(self, _WRAPPED)(list(batch.unbind(0)))


_WRAPPED = "_shapetrace_images"


def _capture_one(
    runner: nn.Module,
    model: nn.Module,
    inputs: tuple[Any, ...],
    spatial: Sequence[int],
    probe_limit: int,
    limits: _Limits | None = None,
) -> SymbolicCapture:
    dynamic, labels = _dynamic_shapes(inputs, spatial)
    state = _CutState({id(m): p for p, m in model.named_modules()}, threading.get_ident())
    # The patches below are process-wide (ShapeEnv's methods, `torch.tensor`, the model's
    # namespaces): one export at a time.
    with (
        _EXPORT_LOCK,
        _guard_sites(model, state) as sites,
        _data_assumptions(model, limits or _Limits(), state) as assumed,
        _cut_points(model, runner, state),
        _quiet(),
        _no_stack_traces(),
    ):
        try:
            exported = export(runner, inputs, dynamic_shapes=dynamic, strict=False)
        except Exception as exc:
            raise SymbolicCaptureError(exc, _user_frame_of(exc)) from exc
    # Without `check_guards`, torch writes no `_guards_fn` checking the inputs (its code is
    # generated and compiled: 0.1 s of Mask R-CNN's 0.25 s here); the guards are read from
    # the shape env instead.
    gm = exported.module(check_guards=False)
    _drop_guard_fn(gm)
    cut = state.cut
    skip: set[str] = set()
    if cut is not None:
        if not _drop_uncaptured(gm, cut.inside):
            failure = cut.failure
            raise SymbolicCaptureError(failure, _user_frame_of(failure)) from failure
        # Guards and assumptions raised inside the call concern code the graph leaves out.
        skip = {text for text, site in sites.items() if cut.key in site.calls}
        assumed = [g for g in assumed if cut.key not in state.assumed_in.get(id(g), ())]
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    symbols, sample = _input_symbols(placeholders, labels)
    shape_env = _shape_env(placeholders)
    if shape_env is not None:
        _pinned_symbols(shape_env, placeholders, labels, symbols, sample)
    capture = _capture_record(model, gm)
    guards = _guards(shape_env, symbols, sites, skip) if shape_env is not None else []
    guards.extend(assumed)
    result = SymbolicCapture(
        capture=capture,
        exported=exported,
        symbols=symbols,
        sample=sample,
        guards=guards,
        unbacked=_unbacked(capture),
        model=model,
    )
    capture.symbolic = result
    _classify(result, runner, inputs, spatial, probe_limit)
    _tidy(result, placeholders, labels)
    if cut is not None:
        result.uncaptured = cut.record(capture)
    return result


_EXPORT_LOCK = threading.RLock()


# -- calls the export cannot follow -----------------------------------------------------------


@dataclass
class _CutState:
    """Shared by the patches of one export: the model's modules by id (`paths`), the exporting
    thread, the calls from a forward now running (innermost last), and the cut once made."""

    paths: dict[int, str]
    thread: int
    active: list[int] = field(default_factory=list)
    serial: int = 0
    cut: _Cut | None = None
    shape_env: ShapeEnv | None = None  # the export's, once it asks a question
    # The calls running when each assumption was made (by the Guard's id).
    assumed_in: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def mine(self) -> bool:
        return threading.get_ident() == self.thread


class _Cut(Exception):
    """A call made directly from a module's forward in which the export stopped on a
    data-dependent size; the runner catches it and returns the tensors handed to the call."""

    def __init__(
        self,
        key: int,
        name: str,
        function: str,
        module: str,
        values: list[torch.Tensor],
        failure: BaseException,
        cause: str,
        called_at: str,
        mark: fx.Node,
    ) -> None:
        super().__init__(f"{name}: {cause}")
        self.key, self.name, self.function, self.module = key, name, function, module
        self.values, self.failure, self.cause = values, failure, cause
        self.called_at = called_at
        # The tracer's last node when the call began; the names of the nodes it made after
        # (inside the call), once cut.
        self.mark = mark
        self.inside: set[str] = set()

    def record(self, capture: Capture) -> Uncaptured:
        file, line = _innermost_user_line(self.failure)
        code = linecache.getline(file, line).strip() if file and line else None
        output = next(n for n in capture.graph_module.graph.nodes if n.op == "output")
        rows = set(capture.nodes())
        names = [capture.names[n] for n in output.all_input_nodes if n in rows]
        taken = set(capture.names.values())
        name, index = self.name, 0
        while name in taken:
            index += 1
            name = f"{self.name}_{index}"
        return Uncaptured(
            name,
            self.function,
            self.module or None,
            self.called_at,
            file,
            line,
            code,
            self.cause,
            names,
        )


def _cut_cause(exc: BaseException, shape_env: ShapeEnv | None) -> str | None:
    """Why a call stops the export, in words; None when the failure is not one a cut answers:
    a time budget, an error of the model's, or a branch on a tensor's value (`if y.sum() > 0`:
    which path the model takes is not known, so the hooks run reports it as before)."""
    limit = _cause_of_type(exc, _TooManyUnbacked)
    if isinstance(limit, _TooManyUnbacked):
        return (
            f"makes more data-dependent sizes than the capture's limit of {limit.limit}, "
            f"the {_ordinal(limit.limit + 1)}"
        )
    guard = _cause_of_type(exc, GuardOnDataDependentSymNode)
    if guard is None:
        return None
    cond = getattr(guard, "cond", None)
    sizes: set[Any] = getattr(shape_env, "size_like", set())
    unbacked = free_unbacked_symbols(cond) if isinstance(cond, sympy.Basic) else set()
    if not unbacked or any(sym not in sizes for sym in unbacked):
        return None
    file, line = _innermost_user_line(guard)
    code = linecache.getline(file, line) if file and line else ""
    if re.search(r"\bfor\b", code):
        return f"loops over a data-dependent number of items ({cond})"
    return f"needs the data-dependent size {cond} as a Python number"


def _innermost_user_line(exc: BaseException) -> tuple[str | None, int | None]:
    site = _user_frame_of(exc)
    if site is None:
        return None, None
    file, _, line = site.rpartition(":")
    return file, int(line)


@contextlib.contextmanager
def _cut_points(model: nn.Module, runner: nn.Module, state: _CutState) -> Iterator[None]:
    """Let the export stop at a call it cannot follow, keeping everything before it.

    Every call a module's forward makes to a submodule, to a method of the model's classes or to
    a function of the modules defining them (`self.transform.postprocess(...)`,
    `keypointrcnn_inference(...)`) is watched: when the export fails inside it on a
    data-dependent size (a loop over detections, more data-dependent sizes than the limit), the
    innermost such call is cut: the runner returns the tensors the call was given, and the
    nodes made inside it are dropped, so the graph is exact up to it. The patches live for
    this context only."""
    patched_globals: list[tuple[Any, str, Any]] = []
    patched_methods: list[tuple[nn.Module, str]] = []
    previous = runner.__dict__.get("forward")
    # Each patch is listed before it is made, and all are undone in `finally`: an error or
    # an interrupt while patching leaves none of the model's code patched.
    try:
        namespaces = {
            sys.modules[type(m).__module__]
            for m in model.modules()
            if type(m).__module__ in sys.modules and not _is_torch_module(type(m).__module__)
        }
        for namespace in namespaces:
            for name, value in list(vars(namespace).items()):
                if (
                    inspect.isfunction(value)
                    and value.__module__ == namespace.__name__
                    and _is_users(value.__code__.co_filename)
                ):
                    patched_globals.append((namespace, name, value))
                    setattr(namespace, name, _watched(value, name, None, state))
        for module in model.modules():
            path = state.paths.get(id(module), "")
            done: set[str] = set(vars(module))
            for cls in type(module).__mro__:
                if _is_torch_module(cls.__module__) or cls.__module__ == "builtins":
                    continue
                for name, value in vars(cls).items():
                    if name in done or name == "forward" or name.startswith("__"):
                        continue
                    done.add(name)
                    if inspect.isfunction(value):
                        patched_methods.append((module, name))
                        module.__dict__[name] = _watched(value.__get__(module), name, path, state)
            scripted = isinstance(module, torch.jit.ScriptModule)
            if module is not model and not scripted and "forward" not in vars(module):
                patched_methods.append((module, "forward"))
                module.__dict__["forward"] = _watched(
                    module.forward, "forward", path, state, module
                )
        runner.__dict__["forward"] = _catching(runner.forward, state)
        yield
    finally:
        if previous is None:
            runner.__dict__.pop("forward", None)
        else:
            runner.__dict__["forward"] = previous
        for module, name in patched_methods:
            module.__dict__.pop(name, None)
        for namespace, name, value in patched_globals:
            setattr(namespace, name, value)


def _is_torch_module(name: str) -> bool:
    return name == "torch" or name.startswith("torch.")


def _watched(
    fn: Callable[..., Any],
    name: str,
    owner: str | None,
    state: _CutState,
    submodule: nn.Module | None = None,
) -> Any:
    """`fn` as a call the export may cut (see `_cut_points`). `owner` is the module path of
    a method's instance, None for a function; `submodule` is set for a submodule's forward
    (`self.head(x)` in its parent's forward), `owner` then being its path."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if state.cut is not None or not state.mine():
            return fn(*args, **kwargs)
        caller = sys._getframe(1)
        if submodule is not None:
            # Called through `Module.__call__`: the forward that made the call is further up.
            caller = _forward_frame(caller, state.paths)
        elif caller.f_code.co_name != "forward":
            return fn(*args, **kwargs)
        where = state.paths.get(id(caller.f_locals.get("self"))) if caller is not None else None
        if caller is None or where is None:
            return fn(*args, **kwargs)
        state.serial += 1
        key = state.serial
        values = [v for v in tree_flatten((args, kwargs))[0] if isinstance(v, torch.Tensor)]
        versions = [v._version for v in values]
        tracer = _module_tracer(caller)
        mark = next(reversed(tracer.graph.nodes), None) if tracer is not None else None
        state.active.append(key)
        try:
            return fn(*args, **kwargs)
        except _Cut:
            raise
        except Exception as exc:
            cause = _cut_cause(exc, state.shape_env)
            # A tensor changed in place inside the call no longer holds what it was given.
            changed = any(v._version != n for v, n in zip(values, versions, strict=True))
            if cause is None or changed or mark is None:
                raise
            base = where if owner is None else owner
            label = f"{base}.{name}" if base else name
            qualname = getattr(fn, "__qualname__", name)
            if submodule is not None and owner:
                label, qualname = owner, f"{type(submodule).__name__}.forward"
            at = f"{os.path.basename(caller.f_code.co_filename)}:{caller.f_lineno}"
            raise _Cut(key, label, qualname, where, values, exc, cause, at, mark) from exc
        finally:
            state.active.pop()

    return call


def _forward_frame(frame: Any, paths: Mapping[int, str]) -> Any:
    """The innermost frame of a model's module's forward at or above `frame`."""
    while frame is not None:
        if frame.f_code.co_name == "forward" and id(frame.f_locals.get("self")) in paths:
            return frame
        frame = frame.f_back
    return None


def _catching(forward: Callable[..., Any], state: _CutState) -> Any:
    """The runner's forward, returning the tensors handed to a cut call (see `_cut_points`)."""

    @functools.wraps(forward)
    def call(*args: Any, **kwargs: Any) -> Any:
        tracer = _module_tracer(sys._getframe(1))
        depth = len(tracer.module_stack) if tracer is not None else 0
        try:
            return forward(*args, **kwargs)
        except _Cut as cut:
            if tracer is None:
                raise
            # The tracer's module stack is pushed and popped around each module call, not in
            # a `finally`: pop what the calls the cut left unwound pushed.
            while len(tracer.module_stack) > depth:
                tracer.module_stack.popitem()
            after = False
            for node in tracer.graph.nodes:
                if after:
                    cut.inside.add(node.name)
                after = after or node is cut.mark
            state.cut = cut
            return tuple(cut.values)

    return call


def _module_tracer(frame: Any) -> Any:
    """The fx tracer whose `call_module` is running the runner (it keeps `module_stack`)."""
    while frame is not None:
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "call_module" else None
        if isinstance(getattr(owner, "module_stack", None), dict):
            return owner
        frame = frame.f_back
    return None


# Ops that return their input when nothing changes (`to` the tensor's own dtype).
_ALIASING = {
    torch.ops.aten.to.dtype,
    torch.ops.aten.to.device,
    torch.ops.aten.to.dtype_layout,
    torch.ops.aten.to.other,
    torch.ops.aten.alias.default,
    torch.ops.aten.detach.default,
}


def _same_tensor(a: fx.Node, b: fx.Node) -> bool:
    x, y = a.meta.get("val"), b.meta.get("val")
    return (
        isinstance(x, torch.Tensor)
        and isinstance(y, torch.Tensor)
        and x.dtype == y.dtype
        and x.device == y.device
        and x.shape == y.shape
    )


def _drop_uncaptured(gm: fx.GraphModule, names: set[str]) -> bool:
    """Erase the nodes made inside the cut call (`names`: the tracer made them after the call
    began; the exported graph keeps its names) and those using them; False when the graph's
    output uses one (the cut cannot stand)."""
    inside = {
        n for n in gm.graph.nodes if n.name in names and n.op not in ("placeholder", "output")
    }
    output = next(n for n in gm.graph.nodes if n.op == "output")
    for value in output.all_input_nodes:
        # A tensor handed to the call and returned as it was, though the call went through a
        # no-op on it (`anchors.to(anchors.dtype)`): the graph's output is that op's node.
        source = value
        while source in inside and source.target in _ALIASING and source.args:
            before = source.args[0]
            if not isinstance(before, fx.Node) or not _same_tensor(before, source):
                break
            source = before
        if source is not value and source not in inside:
            output.replace_input_with(value, source)
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            continue
        if node in inside or any(a in inside for a in node.all_input_nodes):
            if node.op == "output":
                return False
            inside.add(node)
    for node in reversed(list(gm.graph.nodes)):
        if node in inside:
            gm.graph.erase_node(node)
    return True  # (`_tidy` recompiles the graph module once, at the end)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.export logs its findings (data-dependent guards, unfound user frames) as
    warnings on stderr; the report says what matters, in one line where needed."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def _no_stack_traces() -> Iterator[None]:
    """The export records the Python stack of every node it makes (`meta["stack_trace"]`),
    which nothing here reads: guards and cuts take their lines from the live stack. Skipping
    it (torch's `fx.config.do_not_emit_stack_traces`) saves about 0.3 s of Mask R-CNN's
    export. Exports hold `_EXPORT_LOCK`, so the flag is set for one export at a time."""
    config = torch.fx.config
    previous = config.do_not_emit_stack_traces
    config.do_not_emit_stack_traces = True
    try:
        yield
    finally:
        config.do_not_emit_stack_traces = previous


def _spatial_labels(
    value: torch.Tensor, spatial: Sequence[int], index: int
) -> list[tuple[int, str]]:
    """The spatial dims of the `index`-th input tensor with their labels (`H`, `W`; `H_1`,
    `W_1` for the next tensor)."""
    dims = sorted({d % value.dim() for d in spatial if -value.dim() <= d < value.dim()})
    names = _SPATIAL_NAMES.get(len(dims), tuple(f"S{i}" for i in range(len(dims))))
    suffix = f"_{index}" if index else ""
    return [(d, name + suffix) for d, name in zip(dims, names, strict=True)]


def _dynamic_shapes(
    inputs: tuple[Any, ...], spatial: Sequence[int]
) -> tuple[tuple[Any, ...], list[tuple[int, int, str]]]:
    """`dynamic_shapes` marking the spatial dims of every tensor `Dim.AUTO` (guards do not
    fail the export, as named `Dim`s would; a dim the model pins to one value becomes static,
    where `DYNAMIC` would fail), and for each flattened tensor the labels of its dims (`H`,
    `W`; `H_1`, `W_1` for the next tensor)."""
    labels: list[tuple[int, int, str]] = []
    count = 0

    def mark(value: Any) -> Any:
        nonlocal count
        if not isinstance(value, torch.Tensor):
            return None
        dims = _spatial_labels(value, spatial, count)
        labels.extend((count, d, label) for d, label in dims)
        count += 1
        return {d: Dim.AUTO for d, _ in dims}

    return tuple(tree_map(mark, list(inputs))), labels


def _input_symbols(
    placeholders: list[fx.Node], labels: list[tuple[int, int, str]]
) -> tuple[dict[str, sympy.Symbol], dict[str, int]]:
    tensors = [n.meta["val"] for n in placeholders if isinstance(n.meta.get("val"), torch.Tensor)]
    symbols: dict[str, sympy.Symbol] = {}
    sample: dict[str, int] = {}
    for index, dim, name in labels:
        size = tensors[index].shape[dim]
        if isinstance(size, torch.SymInt):
            expr = size.node.expr
            if isinstance(expr, sympy.Symbol) and expr not in symbols.values():
                symbols[name] = expr
                sample[name] = int(size.node.hint)  # type: ignore[arg-type]
    return symbols, sample


def _pinned_symbols(
    shape_env: ShapeEnv,
    placeholders: list[fx.Node],
    labels: list[tuple[int, int, str]],
    symbols: dict[str, sympy.Symbol],
    sample: dict[str, int],
) -> None:
    """A dim the model pins to one value (`if x.shape[-1] != 32`, taken as equal) is static in
    the graph; its symbol survives in the guard `Eq(s0, 32)`. Name it too, so that guard
    reads `Eq(W, 32)` and is probed like the others."""
    tensors = [n.meta["val"] for n in placeholders if isinstance(n.meta.get("val"), torch.Tensor)]
    known = set(symbols.values())
    for index, dim, name in labels:
        if name in symbols:
            continue
        size = tensors[index].shape[dim]
        if isinstance(size, torch.SymInt) and size.node.expr.free_symbols:
            # Symbolic still: it shares a named symbol (a second image of the first's size).
            # Reading it as an int would add a guard pinning that symbol to its sample.
            continue
        value = int(size)
        for guard in shape_env.guards:
            expr = guard.expr
            if not isinstance(expr, sympy.Eq) or free_unbacked_symbols(expr):
                continue
            free = [f for f in expr.free_symbols if f not in known]
            # Only `Eq(s0, 32)`: pinning through a formula (`Eq(s0 - 2, 1)`) mislabels paths.
            if len(free) == 1 and isinstance(expr.lhs, sympy.Symbol):
                pinned = sympy.sympify(expr.xreplace({free[0]: sympy.Integer(value)}))
                if pinned in (sympy.true, True):
                    symbols[name] = free[0]
                    sample[name] = value
                    known.add(free[0])
                    break


def _shape_env(placeholders: list[fx.Node]) -> ShapeEnv | None:
    for node in placeholders:
        val = node.meta.get("val")
        mode = getattr(val, "fake_mode", None)
        if mode is not None and mode.shape_env is not None:
            return mode.shape_env  # type: ignore[no-any-return]
    return None


def _drop_guard_fn(gm: fx.GraphModule) -> None:
    """`ExportedProgram.module()` adds a `_guards_fn` call checking the inputs; not an op of the
    model's."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn":
            gm.graph.erase_node(node)
    if hasattr(gm, "_guards_fn"):
        delattr(gm, "_guards_fn")
    # No recompile here: `_tidy` recompiles once, after every change to the graph (each
    # recompile of a detector's 1,500 nodes generates and compiles its code, about 50 ms).


# -- names, sites, calls ---------------------------------------------------------------------


def _capture_record(model: nn.Module, gm: fx.GraphModule) -> Capture:
    """Torchvision-style names and call sites for an aten graph, from `nn_module_stack`."""
    modules = dict(model.named_modules(remove_duplicate=False))
    # The export reads every attribute at the top of its graph; fx reads one where the forward
    # uses it. Each read moves to just before its first use, so its row sits among its users'.
    # Users are never get_attr nodes, so moving reads leaves their users' order as it was.
    position = _position(gm.graph)
    for node in [n for n in gm.graph.nodes if n.op == "get_attr" and n.users]:
        first = min(node.users, key=position)
        first.prepend(node)
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    stacks = {n: list((n.meta.get("nn_module_stack") or {}).items()) for n in nodes}
    # The call of the innermost module each node ran in: (key with its `@n` call index, path).
    innermost = {n: (s[-1][0], s[-1][1][0]) if s else ("", "") for n, s in stacks.items()}
    last_of_call: dict[str, fx.Node] = {}
    calls: Counter[str] = Counter()
    seen_calls: set[str] = set()
    called = {id(model)}
    for node in nodes:
        for key, (path, _type) in stacks[node]:
            path = model_path(path)
            if path and key not in seen_calls:
                seen_calls.add(key)
                calls[path] += 1
            if path in modules:
                called.add(id(modules[path]))
        for key, _ in stacks[node]:
            last_of_call[key] = node  # the last node run inside each call: its output
    counts: Counter[str] = Counter()
    names: dict[fx.Node, str] = {}
    sites: dict[fx.Node, str] = {}
    module_outputs: dict[str, Any] = {}
    module_calls: dict[fx.Node, str] = {}
    for node in nodes:
        key, path = innermost[node]
        path = model_path(path)
        module = modules.get(path)
        is_call = (
            bool(path)
            and module is not None
            and is_basic_layer(module)
            and last_of_call.get(key) is node
        )
        if node.op == "placeholder":
            base = node.name
            sites[node] = ""
        elif node.op == "get_attr":
            # Read in its owner's forward, as an fx graph would place it.
            base = model_path(str(node.target))
            sites[node] = base.rpartition(".")[0]
        else:
            # `x.size(2)` is `size` in an fx graph, `sym_size_int` in aten's.
            op = _SIZE_METHODS.get(node.target) or _FX_SUFFIX.sub(r"\1", node.name)
            base = path if is_call else (f"{path}.{op}" if path else op)
            if node.op == "call_function" and _made_by_wrapper(stacks[node]):
                base = f"{_WRAPPED}.{op}"  # hidden below; the model's own ops keep fx's names
            sites[node] = path
            if is_call:
                module_calls[node] = path
        index = counts[base]
        counts[base] += 1
        names[node] = base if index == 0 else f"{base}_{index}"
    inside: dict[str, list[fx.Node]] = {}
    for node in nodes:
        for key, _ in stacks[node]:
            inside.setdefault(key, []).append(node)
    for key, node in last_of_call.items():
        path = model_path(dict(stacks[node])[key][0])
        if path:
            module_outputs[path] = _call_output(inside.get(key, []), node)
    used = _used_tensors(model, gm)
    # A module call's parameters are part of its row, as in an fx graph's call_module node.
    called_paths = set(module_calls.values())
    hidden = {
        n
        for n in nodes
        if n.op == "get_attr" and model_path(str(n.target)).rpartition(".")[0] in called_paths
    }
    # Constants export lifted out of the forward (`lifted_tensor_0`, a `torch.tensor(...)` the
    # forward builds) are not the model's tensors: fx would show the call, not an attribute.
    named = {p for p, _ in model.named_parameters(remove_duplicate=False)}
    named |= {p for p, _ in model.named_buffers(remove_duplicate=False)}
    hidden |= {n for n in nodes if n.op == "get_attr" and model_path(str(n.target)) not in named}
    # `_Unbatched` unbinding the batch into the list of images a detector takes: shapetrace's
    # plumbing, not the model's (an fx graph of the model would start at the list).
    hidden |= {n for n in nodes if n.op == "call_function" and _made_by_wrapper(stacks[n])}
    # Arguments left at their defaults (`scale=1.0`, `mask=None`) are constants of this graph.
    hidden |= {
        n
        for n in nodes
        if n.op == "placeholder" and not isinstance(n.meta.get("val"), torch.Tensor)
    }
    return Capture(
        graph_module=gm,
        names=names,
        sites=sites,
        calls=calls,
        module_outputs=module_outputs,
        called=called,
        used_tensors=used,
        method="symbolic",
        module_calls=module_calls,
        hidden=hidden,
    )


# -- the graph as the passes read it -----------------------------------------------------------

# Runtime checks export adds on data-dependent sizes (`u0 >= 0`) and on a tensor's dtype before
# a `to` (`_assert_tensor_metadata`): bookkeeping, not the model's.
_RUNTIME_CHECKS = {
    torch.ops.aten._assert_scalar.default,
    torch.ops.aten._assert_tensor_metadata.default,
    torch.ops.aten.sym_constrain_range_for_size.default,
    torch.ops.aten._assert_async.msg,
}
# Size questions as aten spells them, and as the model (and an fx graph) does.
_SIZE_METHODS = {
    torch.ops.aten.sym_size.int: "size",
    torch.ops.aten.sym_numel.default: "numel",
}


def _slice_index(dim: int = 0, start: Any = None, end: Any = None, step: Any = 1) -> tuple:
    if isinstance(end, int) and end >= sys.maxsize:
        end = None
    if start == 0:
        start = None
    return (*(slice(None),) * dim, slice(start, end, None if step == 1 else step))


def _select_index(dim: int, index: Any) -> tuple:
    return (*(slice(None),) * dim, index)


# Methods taking sizes as arguments, which aten takes as a list: `x.view(-1, 4)`.
_RESHAPES = {
    torch.ops.aten.view.default: "view",
    torch.ops.aten.reshape.default: "reshape",
    torch.ops.aten.repeat.default: "repeat",
}


# Basic indexing as aten spells it, and as the model (and an fx graph) does: `x[:, c : c + 1]`.
_INDEXING: dict[Any, Callable[..., tuple]] = {
    torch.ops.aten.slice.Tensor: _slice_index,
    torch.ops.aten.select.int: _select_index,
}


def _tidy(
    result: SymbolicCapture, placeholders: list[fx.Node], labels: list[tuple[int, int, str]]
) -> None:
    """Make the aten graph read as the passes read an fx graph: size questions as `x.size(d)`
    calls; runtime checks on data-dependent sizes hidden; and every guard that rejects sizes
    as a hidden `torch._assert` on the input's sizes, with the model's own message, so that
    the sizing pass takes it into the domain like any `torch._assert` in a model."""
    capture = result.capture
    graph = capture.graph_module.graph
    for node in graph.nodes:
        if node.op == "call_function" and node.target in _SIZE_METHODS:
            node.op, node.target = "call_method", _SIZE_METHODS[node.target]
        elif node.op == "call_function" and node.target == torch.ops.aten.index.Tensor:
            indices = [slice(None) if i is None else i for i in node.args[1]]
            node.args = (node.args[0], indices[0] if len(indices) == 1 else tuple(indices))
            node.target = operator.getitem
        elif node.op == "call_function" and node.target in _RESHAPES and not node.kwargs:
            # `x.view(-1, 1, 4)`, `x.repeat(n, 1)` as the model wrote it: aten's list of sizes
            # as arguments.
            node.op, node.target = "call_method", _RESHAPES[node.target]
            node.args = (node.args[0], *node.args[1])
        elif node.op == "call_function" and node.target in _INDEXING:
            node.args = (node.args[0], _INDEXING[node.target](*node.args[1:], **node.kwargs))
            node.kwargs = {}
            node.target = operator.getitem
    for node in reversed(list(graph.nodes)):
        if node.op not in ("call_function", "call_method"):
            continue
        if node.target in _RUNTIME_CHECKS or (
            node.users and all(u in capture.hidden for u in node.users)
        ):
            capture.hidden.add(node)
    tensors = [n for n in placeholders if isinstance(n.meta.get("val"), torch.Tensor)]
    dims = {name: (tensors[i], d) for i, d, name in labels if i < len(tensors)}
    anchor = next((n for n in graph.nodes if n.op not in ("placeholder", "get_attr")), None)
    for guard in result.guards:
        # An op's own check on its arguments (a pool's window) is the sizing pass's op rule.
        if guard.kind != "rejects" or not guard.own:
            continue
        parts = guard.expr.args if isinstance(guard.expr, sympy.And) else (guard.expr,)
        checks = []
        for part in parts:
            if anchor is None:
                break
            with graph.inserting_before(anchor):
                check = _emit_check(result, guard, part, dims)
            if check is None:
                break
            checks.append(check)
        if len(checks) == len(parts):
            result.checks.update(dict.fromkeys(checks, guard))
        else:
            for check in checks:
                _erase_check(capture, check)
            result.unchecked.append(guard)
    graph.lint()
    capture.graph_module.recompile()
    for unbacked in result.unbacked:
        visible = {capture.names[n] for n in capture.nodes()}
        unbacked.nodes = [name for name in unbacked.nodes if name in visible] or unbacked.nodes


_RELATIONS: dict[type, Callable[[Any, Any], Any]] = {
    sympy.Eq: operator.eq,
    sympy.Ne: operator.ne,
    sympy.Ge: operator.ge,
    sympy.Gt: operator.gt,
    sympy.Le: operator.le,
    sympy.Lt: operator.lt,
}


def _erase_check(capture: Capture, check: fx.Node) -> None:
    """Remove a check and the hidden nodes only it used."""
    graph = capture.graph_module.graph
    pending = [check]
    while pending:
        node = pending.pop()
        if node.users or node not in capture.hidden or node.op == "placeholder":
            continue
        inputs = node.all_input_nodes
        graph.erase_node(node)
        capture.hidden.discard(node)
        capture.names.pop(node, None)
        capture.sites.pop(node, None)
        pending.extend(inputs)


def _emit_check(
    result: SymbolicCapture,
    guard: Guard,
    expr: sympy.Basic,
    dims: Mapping[str, tuple[fx.Node, int]],
) -> fx.Node | None:
    """`torch._assert(<guard over x.size(d)>, message)` as hidden nodes; None when the guard
    uses a function without a Python operator (it then stays out of the graph)."""
    capture = result.capture
    graph = capture.graph_module.graph
    added: list[fx.Node] = []
    site = guard.module or ""

    def add(op: str, target: Any, args: tuple[Any, ...], label: str) -> fx.Node:
        node = graph.create_node(op, target, args)
        added.append(node)
        capture.hidden.add(node)
        capture.sites[node] = site
        capture.names[node] = f"{site}.{label}" if site else label
        return node

    def emit(expr: Any) -> Any:
        if isinstance(expr, sympy.Integer):
            return int(expr)
        if isinstance(expr, sympy.Symbol):
            if str(expr) not in dims:
                raise _NoOperator(str(expr))
            tensor, dim = dims[str(expr)]
            return add("call_method", "size", (tensor, dim), f"size_{expr}")
        relation = _RELATIONS.get(type(expr))
        if relation is not None:
            return add("call_function", relation, (emit(expr.lhs), emit(expr.rhs)), "check")
        binary = _BINARY.get(type(expr).__name__)
        if binary is not None:
            args = [emit(a) for a in expr.args]
            if len(args) != 2:
                raise _NoOperator(type(expr).__name__)
            return add("call_function", binary, (args[0], args[1]), type(expr).__name__.lower())
        if isinstance(expr, (sympy.Add, sympy.Mul)):
            fn = operator.add if isinstance(expr, sympy.Add) else operator.mul
            terms = [emit(a) for a in expr.args]
            value = terms[0]
            for term in terms[1:]:
                value = add("call_function", fn, (value, term), fn.__name__)
            return value
        raise _NoOperator(type(expr).__name__)

    try:
        condition = emit(expr)
    except _NoOperator:
        for node in reversed(added):
            graph.erase_node(node)
            capture.hidden.discard(node)
            capture.names.pop(node, None)
            capture.sites.pop(node, None)
        return None
    return add("call_function", torch._assert, (condition, guard.message or guard.text), "check")


class _NoOperator(Exception):
    """A guard uses a function no Python operator spells."""


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "Mod": operator.mod,
    "PythonMod": operator.mod,
    "FloorDiv": operator.floordiv,
    "Min": min,
    "Max": max,
}


def _call_output(members: list[fx.Node], last: fx.Node) -> Any:
    """What a module call returns: the values made inside it that are used after it (one
    node, or a list for a module returning several, like an FPN's maps); the last node run
    inside it when none are (an unused call)."""
    own = set(members)
    escaping = [
        n
        for n in members
        if n.op not in ("placeholder", "get_attr") and any(u not in own for u in n.users)
    ]
    tensors = [n for n in escaping if isinstance(n.meta.get("val"), torch.Tensor)]
    escaping = tensors or escaping
    if not escaping:
        return last
    return escaping[0] if len(escaping) == 1 else escaping


def _made_by_wrapper(stack: list[tuple[str, Any]]) -> bool:
    """Whether a node's `nn_module_stack` is `_Unbatched`'s own forward alone."""
    if len(stack) != 1:
        return False
    kind = stack[0][1][1]
    return str(getattr(kind, "__qualname__", kind)).endswith(_Unbatched.__qualname__)


def _position(graph: fx.Graph) -> Callable[[fx.Node], int]:
    order = {n: i for i, n in enumerate(graph.nodes)}
    return order.__getitem__


def model_path(path: str) -> str:
    """A module or attribute path of the captured graph as a path of the model
    (`_shapetrace_images.backbone.scale_weight` -> `backbone.scale_weight`)."""
    # nn_module_stack paths of modules reached through containers read `layer1.0`, sometimes
    # with export's `L['self']`-style prefixes stripped already; `@n` marks repeated calls.
    path = path.split("@")[0]
    # export's placeholder path for nodes it made outside any module (size questions).
    if path == _WRAPPED or path.startswith("_empty_nn_module_stack"):
        return ""
    return path.removeprefix(_WRAPPED + ".")


def _used_tensors(model: nn.Module, gm: fx.GraphModule) -> set[int]:
    named: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    used: set[int] = set()
    for node in gm.graph.nodes:
        target = model_path(str(node.target))
        # `ExportedProgram.module()` reads every parameter, used or not: only a read with
        # users is a use.
        if node.op == "get_attr" and target in named and node.users:
            used.add(id(named[target]))
    return used


def _unbacked(capture: Capture) -> list[Unbacked]:
    found: dict[str, Unbacked] = {}
    for node in capture.nodes():
        val = node.meta.get("val")
        for tensor in tree_flatten(val)[0]:
            if not isinstance(tensor, (torch.Tensor, torch.SymInt)):
                continue
            for sym in sorted(free_unbacked_symbols(tensor), key=str):
                entry = found.setdefault(
                    str(sym), Unbacked(str(sym), [], capture.sites.get(node) or None)
                )
                if capture.names[node] not in entry.nodes:
                    entry.nodes.append(capture.names[node])
    return list(found.values())


# -- guards ----------------------------------------------------------------------------------


@dataclass
class _Site:
    file: str | None
    line: int | None
    module: str | None
    layout: bool = False
    own: bool = False
    calls: tuple[int, ...] = ()  # the calls from a forward running then (see `_cut_points`)


# Values given to data-dependent sizes when a question about them must be answered: distinct
# and neither 0 nor 1, the sizes torch would otherwise specialise on (`numel() == 0` is False).
_GENERIC_SIZE = 64


@contextlib.contextmanager
def _data_assumptions(model: nn.Module, limits: _Limits, state: _CutState) -> Iterator[list[Guard]]:
    """Let the export go on where the model's Python asks a question about a data-dependent
    size that no symbol can answer, and record each answer as an assumption (a `data` guard
    with `assumed` set), attributed like any guard to the model's line and module.

    - A branch on such a size (`if boxes.numel() == 0:` in torchvision's `batched_nms`) takes
      the branch it takes for a generic non-empty size: every data-dependent size at
      `_GENERIC_SIZE` (distinct values, kept within the symbol's range).
    - `len(t)` of a tensor with a data-dependent first dim gives that dim as a symbol
      (Python's `len` must return an int), in the modules defining the model's classes.
    - `torch.tensor(h)` of a symbolic size on meta, which torch cannot build, is built as
      `torch.scalar_tensor(h)` (stacked for a list), keeping `h` a symbol.
    Once a size has been assumed, the capture's `deadline` (CPU time) is checked at each
    question the shape env answers: a model with data-dependent sizes whose export runs past
    it (a detector's per-class loop) is given up; one without them is not cut short."""
    assumed: list[Guard] = []
    paths = {id(m): p for p, m in model.named_modules()}
    original = ShapeEnv._evaluate_expr
    seen: set[str] = set()

    deadline = limits.deadline
    created = 0
    create_unbacked = ShapeEnv.create_unbacked_symint

    def unbacked_symint(self: ShapeEnv, *args: Any, **kwargs: Any) -> Any:
        nonlocal created
        # Past a cut, export goes over the graph it made again (the cut call's nodes too).
        if not state.mine() or state.cut is not None:
            return create_unbacked(self, *args, **kwargs)
        created += 1
        if limits.max_unbacked is not None and created > limits.max_unbacked:
            raise _TooManyUnbacked(limits.max_unbacked)
        return create_unbacked(self, *args, **kwargs)

    def evaluate(self: ShapeEnv, expr: Any, *args: Any, **kwargs: Any) -> Any:
        if not state.mine():
            return original(self, expr, *args, **kwargs)
        state.shape_env = self
        if assumed and deadline is not None and time.process_time() > deadline:
            raise _OverBudget("the export ran past its time budget")
        try:
            return original(self, expr, *args, **kwargs)
        except GuardOnDataDependentSymNode:
            if not isinstance(expr, sympy.logic.boolalg.Boolean) or _has_fallback(args, kwargs):
                raise
            value = _generic_answer(self, expr)
            if value is None:
                raise
            text = str(expr if value else sympy.Not(expr))
            if text not in seen:
                seen.add(text)
                site = _site_of_stack(paths, state.active)
                code = (
                    linecache.getline(site.file, site.line).strip()
                    if site.file and site.line
                    else None
                )
                guard = Guard(
                    expr if value else sympy.Not(expr),
                    text,
                    site.file,
                    site.line,
                    code,
                    site.module,
                    "data",
                    assumed=True,
                )
                assumed.append(guard)
                state.assumed_in[id(guard)] = site.calls
            return sympy.true if value else sympy.false

    modules = {
        sys.modules[type(m).__module__]
        for m in model.modules()
        if type(m).__module__ in sys.modules
    }
    patched = [m for m in modules if "len" not in vars(m)]
    tensor = torch.tensor

    def meta_tensor(data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        symbolic = (torch.SymInt, torch.SymFloat)
        device, dtype = kwargs.get("device"), kwargs.get("dtype")
        if device is None or torch.device(device).type != "meta" or args:
            return tensor(data, *args, **kwargs)
        if isinstance(data, symbolic):
            return torch.scalar_tensor(data, dtype=dtype, device=device)
        if (
            isinstance(data, (list, tuple))
            and data
            and all(isinstance(v, (int, float, *symbolic)) for v in data)
            and any(isinstance(v, symbolic) for v in data)
        ):
            items = [torch.scalar_tensor(v, dtype=dtype, device=device) for v in data]
            return torch.stack(items)
        return tensor(data, *args, **kwargs)

    ShapeEnv._evaluate_expr = evaluate  # type: ignore[method-assign,assignment]
    ShapeEnv.create_unbacked_symint = unbacked_symint  # type: ignore[method-assign]
    torch.tensor = meta_tensor  # type: ignore[assignment]
    for module in patched:
        module.len = _symbolic_len  # type: ignore[attr-defined]
    try:
        yield assumed
    finally:
        ShapeEnv._evaluate_expr = original  # type: ignore[method-assign]
        ShapeEnv.create_unbacked_symint = create_unbacked  # type: ignore[method-assign]
        torch.tensor = tensor
        for module in patched:
            if vars(module).get("len") is _symbolic_len:
                del module.len  # type: ignore[attr-defined]


def _symbolic_len(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value.shape[0]
    return len(value)


def _has_fallback(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Whether the question came from `guard_or_false`/`guard_or_true` (which answer it)."""
    fallback = kwargs.get("fallback_value", args[3] if len(args) > 3 else None)
    return fallback is not None


def _generic_answer(shape_env: ShapeEnv, expr: sympy.Basic) -> bool | None:
    """The answer at generic sizes; None when the question involves a data-dependent value
    that is not a size (`if y.sum() > 0`): no answer is more likely than the other."""
    unbacked = sorted(free_unbacked_symbols(expr), key=str)
    sizes: set[Any] = getattr(shape_env, "size_like", set())
    if not unbacked or any(sym not in sizes for sym in unbacked):
        return None
    subs: dict[sympy.Basic, Any] = {}
    for i, sym in enumerate(unbacked):
        value = _GENERIC_SIZE + i
        bounds = shape_env.var_to_range.get(sym)
        if bounds is not None:
            lower, upper = bounds.lower, bounds.upper
            if lower.is_finite and value < int(lower):
                value = int(lower)
            if upper.is_finite and value > int(upper):
                value = int(upper)
        subs[sym] = sympy.Integer(value)
    backed = getattr(shape_env, "backed_var_to_val", None) or shape_env.var_to_val
    answer = expr.xreplace(subs).xreplace(dict(backed))
    if answer in (sympy.true, True):
        return True
    if answer in (sympy.false, False):
        return False
    return None


@contextlib.contextmanager
def _guard_sites(model: nn.Module, state: _CutState) -> Iterator[dict[str, _Site]]:
    """Record, for each guard the shape env adds while exporting, the innermost line of code
    outside torch and the innermost module whose forward was running. torch's own `sloc`
    names the first frame outside a short list of torch files, which for a conv's size check is
    torch's conv; this walks the live stack instead."""
    sites: dict[str, _Site] = {}
    paths = {id(m): p for p, m in model.named_modules()}
    original: Callable[..., Any] | None = getattr(ShapeEnv, "_log_guard", None)
    if original is None:  # another torch: guards keep torch's own sloc
        yield sites
        return

    def log_guard(self: ShapeEnv, prefix: str, g: Any, *args: Any, **kwargs: Any) -> Any:
        key = str(g)
        if key not in sites and state.mine():
            sites[key] = _site_of_stack(paths, state.active)
        return original(self, prefix, g, *args, **kwargs)

    ShapeEnv._log_guard = log_guard  # type: ignore[method-assign]
    try:
        yield sites
    finally:
        ShapeEnv._log_guard = original  # type: ignore[method-assign]


def _is_users(filename: str) -> bool:
    path = os.path.abspath(filename)
    return not path.startswith(_TORCH_DIR) and path != _THIS_FILE and not filename.startswith("<")


def _site_of_stack(paths: Mapping[int, str], active: Sequence[int] = ()) -> _Site:
    frame: Any = sys._getframe(2)
    file = line = module = None
    layout = False
    own = None
    while frame is not None:
        code = frame.f_code
        name = code.co_filename
        if own is None and not name.startswith(_SYMBOLIC_DIR) and name not in _PASSING:
            # The first frame past torch's symbolic-int machinery: the model's own Python
            # (`if h % 32`), or an op of torch's checking its arguments.
            own = _is_users(name)
        if file is None and _is_users(name):
            file, line = name, frame.f_lineno
        if file is None and name.startswith(_LAYOUT_DIR):
            layout = True
        if module is None and code.co_name == "forward":
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in paths:
                module = paths[id(owner)]
        if file is not None and module is not None:
            break
        frame = frame.f_back
    return _Site(file, line, module, layout, bool(own), tuple(active))


def _user_frame_of(exc: BaseException) -> str | None:
    """The innermost line outside torch in `exc`'s traceback or in those it was raised from
    (export re-raises an error from its own frames)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = [f for f in _traceback_frames(current) if _is_users(f[0])]
        if frames:
            return f"{frames[-1][0]}:{frames[-1][1]}"
        current = current.__cause__ or current.__context__
    return None


def _traceback_frames(exc: BaseException) -> list[tuple[str, int]]:
    out = []
    tb = exc.__traceback__
    while tb is not None:
        out.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return out


def _guards(
    shape_env: ShapeEnv,
    symbols: Mapping[str, sympy.Symbol],
    sites: Mapping[str, _Site],
    skip: set[str] | frozenset[str] = frozenset(),
) -> list[Guard]:
    names = {sym: sympy.Symbol(k, integer=True, positive=True) for k, sym in symbols.items()}
    out: list[Guard] = []
    seen: set[str] = set()
    # Symbols the export found equal (a second image's size to the first's) are written as
    # the one kept, so that every guard is over the named input symbols. A symbol replaced by
    # a number (a width pinned by `if w != 32`) keeps its guard `Eq(W, 32)`.
    renamed = {k: v for k, v in shape_env.replacements.items() if isinstance(v, sympy.Symbol)}
    for shape_guard in shape_env.guards:
        original = shape_guard.expr
        expr = original.xreplace(renamed)
        text = str(expr.xreplace(names))
        if text in seen or expr in (sympy.true, True) or str(original) in skip:
            continue
        seen.add(text)
        site = sites.get(str(original))
        if site is None:
            loc = shape_guard.sloc.framework_loc
            site = _Site(getattr(loc, "filename", None), getattr(loc, "lineno", None), None)
        code = linecache.getline(site.file, site.line).strip() if site.file and site.line else None
        kind = "data" if free_unbacked_symbols(expr) else "layout" if site.layout else "unknown"
        out.append(
            Guard(
                expr.xreplace(names),
                text,
                site.file,
                site.line,
                code,
                site.module,
                kind,
                own=site.own,
            )
        )
    return out


def _holds(expr: sympy.Basic, sizes: Mapping[str, int]) -> bool | None:
    names = _symbol_names(expr)
    if any(n not in sizes for n in names):
        return None
    try:
        fn = _compiled(expr)
        return bool(fn(*(sizes[n] for n in names)))
    except Exception:  # a function the compiled form does not know: substitute instead
        symbols = sorted(expr.free_symbols, key=str)
        try:
            subs = {s: sympy.Integer(sizes[str(s)]) for s in symbols}
            return bool(sympy.sympify(expr.xreplace(subs)))
        except (TypeError, ArithmeticError):  # undecidable, or a division by zero there
            return None


_PYTHON_INT_OPS: dict[str, Any] = {
    "FloorDiv": operator.floordiv,
    "PythonMod": operator.mod,
    "Mod": operator.mod,
    "CleanDiv": operator.floordiv,
    "CeilDiv": lambda a, b: -(-a // b),
    "IntTrueDiv": operator.truediv,
    "FloatTrueDiv": operator.truediv,
    "Min": min,
    "Max": max,
    "floor": math.floor,
    "ceiling": math.ceil,
}


@functools.lru_cache(maxsize=4096)
def _symbol_names(expr: sympy.Basic) -> tuple[str, ...]:
    """The guard's symbols by name, sorted: probing asks this of each guard at many sizes."""
    return tuple(sorted(str(s) for s in expr.free_symbols))


@functools.lru_cache(maxsize=4096)
def _compiled(expr: sympy.Basic) -> Callable[..., Any]:
    """The guard as a Python function of its symbols (sorted by name): sympy substitution is
    ~1000x slower, and probing evaluates each guard at many sizes."""
    symbols = sorted(expr.free_symbols, key=str)
    return sympy.lambdify(symbols, expr, modules=[_PYTHON_INT_OPS, "math"])  # type: ignore[no-any-return]


def _classify(
    result: SymbolicCapture,
    model: nn.Module,
    inputs: Sequence[Any],
    spatial: Sequence[int],
    limit: int,
) -> None:
    """Decide each guard's kind by an eager meta run at a size violating it alone."""
    for guard in result.guards:
        if guard.kind in ("data", "layout"):
            continue
        others = [g for g in result.guards if g is not guard and g.kind not in ("data", "layout")]
        probe = _violating(guard, others, result.sample, limit)
        if probe is None:
            guard.kind = "implied"
            _probe_implied(guard, result, model, inputs, spatial, limit)
            continue
        guard.probe = probe
        error, fault = _meta_run(model, _resized(inputs, spatial, probe))
        if error is None:
            guard.kind = "path"
        elif fault is not None:
            guard.kind = "unknown"
            guard.message = f"{type(error).__name__}: {_first_line(error)}"
        else:
            guard.kind = "rejects"
            guard.message = f"{type(error).__name__}: {_first_line(error)}"


def _probe_implied(
    guard: Guard,
    result: SymbolicCapture,
    model: nn.Module,
    inputs: Sequence[Any],
    spatial: Sequence[int],
    limit: int,
) -> None:
    """An `implied` guard is `rejects` if the model raises, because of it, at a size where it
    is the first guard to fail: every guard asked before it and every `path` guard hold there
    (guards asked after it may fail too), so the model runs the captured path up to the
    question and raises. The error must come from the question's own call: a frame of the
    function asking it (`guard.file`, `guard.line`), inside the forward of `guard.module`.
    Anything else (the model runs there, or raises elsewhere) leaves it `implied`."""
    index = next(i for i, g in enumerate(result.guards) if g is guard)
    before = [
        g
        for i, g in enumerate(result.guards)
        if g.kind not in ("data", "layout") and (i < index or g.kind == "path")
    ]
    probe = _violating(guard, [g for g in before if g is not guard], result.sample, limit)
    if probe is None or guard.file is None or guard.line is None:
        return
    error, fault = _meta_run(model, _resized(inputs, spatial, probe))
    if error is None or fault is not None:
        return
    paths = {id(m): p for p, m in result.model.named_modules()}
    if not _raised_at(error, guard, paths):
        return
    guard.kind = "rejects"
    guard.probe = probe
    guard.message = f"{type(error).__name__}: {_first_line(error)}"


def _raised_at(error: BaseException, guard: Guard, paths: Mapping[int, str]) -> bool:
    """Whether `error` was raised from the function that asked `guard` (a traceback frame in
    `guard.file` whose code spans `guard.line`), with `guard.module`'s forward the innermost
    module forward on the way."""
    tb = error.__traceback__
    asked = False
    module: str | None = None
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        if code.co_filename == guard.file and any(
            line == guard.line for _, _, line in code.co_lines()
        ):
            asked = True
        if code.co_name == "forward" and id(frame.f_locals.get("self")) in paths:
            module = paths[id(frame.f_locals["self"])]
        tb = tb.tb_next
    return asked and module is not None and module == (guard.module or "")


def _violating(
    guard: Guard, others: list[Guard], sample: Mapping[str, int], limit: int
) -> dict[str, int] | None:
    """Sizes breaking `guard` and keeping every other guard: one symbol moved at a time, away
    from the sample outwards, then pairs moved together."""
    names = sorted(str(s) for s in guard.expr.free_symbols if str(s) in sample)
    candidates: list[dict[str, int]] = []
    for name in names:
        start = sample[name]
        for step in range(1, limit):
            for value in (start - step, start + step):
                if 1 <= value <= limit:
                    candidates.append({**sample, name: value})
    if len(names) == 2:
        a, b = names
        for step in range(1, limit):
            for value in (sample[a] - step, sample[a] + step):
                if 1 <= value <= limit and 1 <= sample[b] - sample[a] + value <= limit:
                    candidates.append({**sample, a: value, b: sample[b] - sample[a] + value})
    for sizes in candidates:
        if guard.holds(sizes) is False and all(g.holds(sizes) is not False for g in others):
            return sizes
    return None


def _resized(inputs: Sequence[Any], spatial: Sequence[int], sizes: Mapping[str, int]) -> tuple:
    count = 0

    def resize(value: Any) -> Any:
        nonlocal count
        if not isinstance(value, torch.Tensor):
            return value
        shape = list(value.shape)
        for d, label in _spatial_labels(value, spatial, count):
            shape[d] = sizes.get(label, shape[d])
        count += 1
        return torch.empty(shape, dtype=value.dtype, device="meta")

    return tuple(tree_map(resize, list(inputs)))


def _meta_run(
    model: nn.Module, inputs: tuple[Any, ...]
) -> tuple[BaseException | None, MetaFault | None]:
    """Run the model eagerly on meta tensors: the error it raised, if any, and whether the
    meta run rather than the model is to blame (data-dependent ops, `.item()`, constants on
    another device), decided by `MetaWatch` from aten op tags and devices."""
    watch = MetaWatch()
    try:
        with torch.no_grad(), watch:
            model(*inputs)
    except Exception as exc:
        return exc, watch.fault_of(exc)
    return None, None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _shape_at(val: Any, subs: Mapping[Any, Any]) -> Any:
    if isinstance(val, torch.Tensor):
        return tuple(_dim_at(d, subs) for d in val.shape)
    if isinstance(val, (list, tuple)):
        return [_shape_at(v, subs) for v in val]
    if isinstance(val, torch.SymInt):
        return _dim_at(val, subs)
    return None


def _dim_at(d: Any, subs: Mapping[Any, Any]) -> Any:
    if isinstance(d, torch.SymInt):
        expr = sympy.sympify(sympy.sympify(d.node.expr).xreplace(dict(subs)))
        return int(expr) if expr.is_number else expr
    return int(d)


__all__ = [
    "Guard",
    "SymbolicCapture",
    "SymbolicCaptureError",
    "Unbacked",
    "Uncaptured",
    "capture_symbolic",
]
