"""The per-size runner `check` and `sweep` share: a model built and traced once, then analysed
at any number of input sizes, only the passes rerunning per size.

torch is imported when a runner is made, not when this module is.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from shapetrace.report import Failure, Report, SizeAnswer


@dataclass
class CheckResult:
    """The verdict for one input size."""

    size: str  # the spatial size checked, "448x448" (the full shape for non-spatial inputs)
    status: str  # "accepted", "rejected", or "unknown" (shapes alone cannot follow the model)
    output_shape: Any = None
    node: str | None = None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def check_result(report: Report, output_shape: Any = None) -> CheckResult:
    """The verdict a report gives at its input: accepted with the model's output shape (the
    last shaped node's when `output_shape` is None), or the node that breaks and why."""
    size = _size_text(report)
    failure = report.failure
    cut = report.source.get("captured_until")
    if failure is None and isinstance(cut, str):
        # The capture ended at a call it could not follow: what the model returns is unknown.
        node = next((n for n in report.nodes if n.name == cut), None)
        reason = (node.missing or {}).get("shape") if node is not None else None
        return CheckResult(size, "unknown", node=cut, reason=reason or f"{cut} is not captured")
    if failure is None:
        shape = output_shape if output_shape is not None else _last_shape(report)
        return CheckResult(size, "accepted", output_shape=shape)
    return _failed(size, failure, "unknown" if failure.kind == "unsupported" else "rejected")


def _failed(size: str, failure: Failure, status: str = "rejected") -> CheckResult:
    """The verdict at `size` for a failure, its reason without the node's name it starts with."""
    reason = failure.message.removeprefix(f"{failure.node}: ")
    return CheckResult(size, status, node=failure.node, reason=reason)


class SizeRunner:
    """One model, built and traced once, analysed at each input size asked for.

    `model_spec` is anything `shapetrace.analyze` takes. A model fx cannot trace is analysed
    per size by `analyze` (the eager fallback). Malformed inputs raise UsageError.
    """

    def __init__(
        self, model_spec: Any, model_args: dict[str, Any] | None = None, *, train: bool = False
    ) -> None:
        from shapetrace import analysis
        from shapetrace.capture import TraceFailure, trace

        self._spec, self._model_args, self._train = model_spec, model_args, train
        with _quiet():
            self.source, self._model = analysis.model(model_spec, model_args)
            self._model.train(train)
            try:
                self._capture: Any = trace(self._model)
            except TraceFailure:
                self._capture = None
        self._finder: tuple[Report, _BreakFinder] | None = None  # for the last base report
        if self._capture is not None:
            self._first = analysis.first_layer_in_graph(self._capture)
            graph = self._capture.graph_module.graph
            self._output = next(n for n in graph.nodes if n.op == "output")

    def check(self, input_spec: Any, base: Report | None) -> CheckResult:
        """The verdict at `input_spec`, from `base`'s formulas and domain where they answer it
        (an accepted size: its output shapes; no torch work), else from shapes on meta
        tensors: a rejected size runs the shape pass alone for the breaking node and its
        reason, and anything the formulas leave open runs every pass, as `run` does."""
        from shapetrace import analysis

        if self._capture is None or base is None:
            return self.run(input_spec)[1]
        with _quiet():
            specs = analysis.input_specs(input_spec, self.source, self._first)
        if len(specs) != len(base.source.get("input", [])) or any(
            str(s) != str(b) for s, b in zip(specs[1:], base.source["input"][1:], strict=False)
        ):
            return self.run(input_spec)[1]
        try:
            answer = base.at(specs[0].dims)
        except ValueError:
            return self.run(input_spec)[1]
        # A dtype left out is float32, as the meta inputs are made.
        same_dtype = (specs[0].dtype or "float32") == (_first_dtype(base) or "float32")
        if answer.accepted is True and same_dtype:
            output = _answer_shape(self._output.args[0], self._capture.names, answer)
            if output is not _UNKNOWN:
                size = _size_text_of(list(specs[0].dims), base)
                return CheckResult(size, "accepted", output_shape=output)
        if answer.accepted is False:
            # The breaking node alone runs on inputs of the base report's dtype.
            failure = self._break_failure(specs, base, answer) if same_dtype else None
            if failure is None:
                failure = self._shapes_failure(specs, base)
            if failure is not None:
                return failure
        return self.run(input_spec)[1]

    def _break_failure(
        self, specs: list[Any], base: Report, answer: SizeAnswer
    ) -> CheckResult | None:
        """The verdict at a rejected size from its breaking node alone: the first constraint
        of the input-size pass the size violates (in graph order) names the node, and that one
        node runs on meta tensors of the sizes its inputs have there, so the reason is the
        message the whole shape pass would give (about 0.1 ms, not 5 ms). None when the node
        does not raise there (a break only the input-size pass sees, or a constraint that
        does not follow torch), or its inputs are not known from the formulas: then the
        shape pass runs."""
        capture = self._capture
        if capture.method == "symbolic" or any(s.name is not None for s in specs):
            return None
        finder = self._finder[1] if self._finder and self._finder[0] is base else None
        if finder is None:
            from shapetrace import analysis

            with _quiet():
                base_specs = analysis.input_specs(
                    ",".join(base.source["input"]), self.source, self._first
                )
            finder = _BreakFinder(self._model, capture, base_specs, base)
            self._finder = (base, finder)
        failure = finder.failure_at(answer.sizes)
        if failure is None:
            return None
        return _failed(_size_text_of(list(specs[0].dims), base), failure)

    def _shapes_failure(self, specs: list[Any], base: Report) -> CheckResult | None:
        """The shape pass alone at `specs`: the verdict when it breaks (as `run` would give
        it), None when it runs through (a break only the input-size pass sees) or cannot be
        run alone."""
        import torch

        from shapetrace.errors import user_code
        from shapetrace.passes.shapes import propagate

        capture = self._capture
        placeholders = [n for n in capture.nodes() if n.op == "placeholder"]
        if capture.method == "symbolic" or len(placeholders) != len(specs):
            return None
        if any(s.name is not None for s in specs):
            return None
        values = [
            torch.empty(s.dims, dtype=getattr(torch, s.dtype or "float32"), device="meta")
            for s in specs
        ]
        with _quiet(), user_code("the model", "in forward (running it on meta tensors)"):
            shapes = propagate(capture.graph_module, values, capture.names, capture.sites)
        if shapes.failure is None or shapes.fault is not None:
            return None
        return _failed(_size_text_of(list(specs[0].dims), base), shapes.failure)

    def run(self, input_spec: Any) -> tuple[Report, CheckResult]:
        """The report at `input_spec` (an `--input` value; None: the model's usual input) and
        its verdict."""
        from shapetrace import analysis

        with _quiet():
            if self._capture is None:
                report = analysis.analyze(
                    self._spec, input_spec, model_args=self._model_args, train=self._train
                )
                return report, check_result(report)
            specs = analysis.input_specs(input_spec, self.source, self._first)
            report = analysis.run_passes(
                self._model, self._capture, specs, self.source, self._train
            )
        output = _shape_of(self._output.args[0], self._capture.names, report)
        return report, check_result(report, output)


class _BreakFinder:
    """Which node breaks at a rejected size, and torch's own reason, without the shape pass.

    Made once per base report: the input-size pass's symbolic run at the base input (about
    20 ms for a ResNet-50) gives every constraint in graph order and every node's sizes as
    polynomials of N, H, W. At a size, the first violated constraint names the node; its
    inputs' sizes there are the polynomials evaluated; the node alone (a graph of its inputs
    and itself, made once per node) runs on meta tensors of those sizes through the shape
    pass's own interpreter, which words the failure as the whole pass would.
    """

    def __init__(self, model: Any, capture: Any, specs: list[Any], base: Report) -> None:
        import torch

        from shapetrace.errors import user_code
        from shapetrace.passes import PassContext
        from shapetrace.passes.shapes import propagate
        from shapetrace.passes.sizing import SizeAnalysis

        self._capture = capture
        values = [
            torch.empty(s.dims, dtype=getattr(torch, s.dtype or "float32"), device="meta")
            for s in specs
        ]
        gm = capture.graph_module
        with _quiet(), user_code("the model", "in forward (running it on meta tensors)"):
            shapes = propagate(gm, values, capture.names, capture.sites)
            # The pass reads the base report's failure only; a copy keeps the base untouched.
            context = PassContext(model, capture, shapes, replace(base), specs, values)
            self._sizes = SizeAnalysis(context)
        self._observed = shapes.values
        self._alone: dict[Any, Any] = {}
        self._by_name: dict[str, Any] | None = None

    def failure_at(self, sizes: dict[str, int]) -> Failure | None:
        """The failure the shape pass would report at `sizes` ({"N": 1, "H": 448, ...}), or
        None when the breaking node cannot be run alone or does not raise there."""
        from shapetrace.errors import user_code
        from shapetrace.passes.shapes import propagate
        from shapetrace.passes.sizing import Evaluator

        constraint = self._sizes.first_failure(sizes)
        if constraint is None:
            return None
        node = constraint.node
        evaluator = Evaluator(sizes)
        inputs = [
            _value_at(self._sizes.prop.values.get(a, _NOT_RUN), self._observed.get(a), evaluator)
            for a in node.all_input_nodes
        ]
        if any(v is _UNKNOWN for v in inputs):
            return None
        alone = self._alone.get(node)
        if alone is None:
            alone = self._alone[node] = _alone(self._capture, node)
        gm, names, sites = alone
        with _quiet(), user_code("the model", "in forward (running it on meta tensors)"):
            shapes = propagate(gm, inputs, names, sites)
        failure = shapes.failure
        if failure is None or shapes.fault is not None or failure.kind != "rejected":
            return None
        if "Proxy(" in failure.message:
            # A message formatted while tracing names graph values (`Proxy(getitem_2)`) that
            # the whole pass shows as their values: sizes here, from their polynomials.
            message = self._resolve_proxies(failure.message, evaluator)
            if message is None:
                return None
            failure = replace(failure, message=message)
        return failure

    def _resolve_proxies(self, message: str, evaluator: Any) -> str | None:
        """`message` with each `Proxy(name)` of a size replaced by its value at these sizes,
        as the shape pass shows it; None if one is not a size known here."""
        import re

        from shapetrace.passes.sizing import Poly

        if self._by_name is None:
            self._by_name = {n.name: n for n in self._capture.graph_module.graph.nodes}
        unresolved = False

        def value_of(match: re.Match[str]) -> str:
            nonlocal unresolved
            node = self._by_name.get(match.group(1)) if self._by_name else None
            symbolic = self._sizes.prop.values.get(node) if node is not None else None
            observed = self._observed.get(node) if node is not None else None
            if isinstance(symbolic, Poly) and type(observed) is int:
                return str(evaluator.poly(symbolic))
            unresolved = True
            return match.group(0)

        resolved = re.sub(r"Proxy\(([A-Za-z0-9_]+)\)", value_of, message)
        return None if unresolved else resolved


_NOT_RUN = object()
_RELATIONS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _alone(capture: Any, node: Any) -> tuple[Any, dict[Any, str], dict[Any, str]]:
    """A graph module that runs `node` alone: a placeholder per input node, then the node."""
    from torch import fx

    graph = fx.Graph()
    placeholders = {a: graph.placeholder(a.name) for a in node.all_input_nodes}
    copy = graph.node_copy(node, placeholders.__getitem__)
    graph.output(copy)
    gm = fx.GraphModule(capture.graph_module, graph)
    names = {p: capture.names.get(a, a.name) for a, p in placeholders.items()}
    names[copy] = capture.names.get(node, node.name)
    sites = {copy: capture.sites[node]} if capture.sites.get(node) else {}
    return gm, names, sites


def _value_at(symbolic: Any, observed: Any, evaluator: Any) -> Any:
    """A node's value at other sizes, from its symbolic value in the input-size pass and its
    value at the base input: tensors as meta tensors of the evaluated sizes (the base dtype),
    sizes as ints; `_UNKNOWN` for anything else, or a size below zero (an earlier break)."""
    import torch

    from shapetrace.passes.sizing import Poly
    from shapetrace.passes.sizing.tensors import Pred, STensor

    if isinstance(symbolic, STensor):
        if not isinstance(observed, torch.Tensor) or len(symbolic.shape) != observed.dim():
            return _UNKNOWN
        dims = [evaluator.poly(d) for d in symbolic.shape]
        if any(d < 0 for d in dims):
            return _UNKNOWN
        if list(observed.shape) == dims and observed.device.type == "meta":
            return observed
        return torch.empty(dims, dtype=observed.dtype, device="meta")
    if isinstance(symbolic, Poly):
        return evaluator.poly(symbolic) if isinstance(observed, int) else _UNKNOWN
    if isinstance(symbolic, Pred) and isinstance(observed, bool) and symbolic.rel in _RELATIONS:
        # A size compared while tracing (`h == self.image_size`, for a torch._assert).
        lhs, rhs = evaluator.poly(symbolic.lhs), evaluator.poly(symbolic.rhs)
        return _RELATIONS[symbolic.rel](lhs, rhs)
    if isinstance(symbolic, (list, tuple)) and isinstance(observed, (list, tuple)):
        if len(symbolic) != len(observed):
            return _UNKNOWN
        parts = [_value_at(s, o, evaluator) for s, o in zip(symbolic, observed, strict=True)]
        if any(p is _UNKNOWN for p in parts):
            return _UNKNOWN
        if isinstance(observed, torch.Size):
            return torch.Size(parts)
        return list(parts) if isinstance(observed, list) else tuple(parts)
    if symbolic is not _NOT_RUN and type(symbolic) in (int, float, bool, str, type(None)):
        return symbolic if symbolic == observed else _UNKNOWN
    return _UNKNOWN


@contextmanager
def _quiet() -> Iterator[None]:
    # Builders warn about weight initialisation and deprecations that do not concern shapes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


_UNKNOWN = object()


def _first_dtype(report: Report) -> str | None:
    from shapetrace.inputs import parse

    inputs = report.source.get("input", [])
    return parse(inputs[0])[0].dtype if inputs else None


def _answer_shape(value: Any, names: dict[Any, str], answer: SizeAnswer) -> Any:
    """The graph's output shapes from a formula answer; `_UNKNOWN` if one is not known."""
    if isinstance(value, (list, tuple)):
        shapes = [_answer_shape(v, names, answer) for v in value]
        return _UNKNOWN if any(s is _UNKNOWN for s in shapes) else shapes
    if isinstance(value, dict):
        found = {str(k): _answer_shape(v, names, answer) for k, v in value.items()}
        return _UNKNOWN if any(s is _UNKNOWN for s in found.values()) else found
    name = names.get(value)
    if name is None:
        return None
    node = answer.node(name)
    return _UNKNOWN if "shape" in node.unknown else node.shape


def _size_text_of(dims: list[int], report: Report) -> str:
    axes = [a for a in (report.domain or {}).get("at", {})]
    shown = dims[len(dims) - len(axes) :] if axes else dims
    return "x".join(str(d) for d in shown)


def _size_text(report: Report) -> str:
    return _size_text_of(list(report.input), report)


def _shape_of(value: Any, names: dict[Any, str], report: Report) -> Any:
    """The shapes of the graph's output value (a node, or a nest of nodes)."""
    if isinstance(value, (list, tuple)):
        return [_shape_of(v, names, report) for v in value]
    if isinstance(value, dict):
        return {str(k): _shape_of(v, names, report) for k, v in value.items()}
    name = names.get(value)
    return report.node(name).shape if name is not None else None


def _last_shape(report: Report) -> Any:
    """Without a graph (eager fallback): the last node with a shape."""
    shaped = [n for n in report.nodes if n.shape is not None]
    return shaped[-1].shape if shaped else None
