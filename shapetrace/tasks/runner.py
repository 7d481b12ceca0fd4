"""The per-size runner `check` and `sweep` share: a model built and traced once, then analysed
at any number of input sizes, only the passes rerunning per size.

torch is imported when a runner is made, not when this module is.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shapetrace.report import Report, SizeAnswer


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
    if failure is None:
        shape = output_shape if output_shape is not None else _last_shape(report)
        return CheckResult(size, "accepted", output_shape=shape)
    status = "unknown" if failure.kind == "unsupported" else "rejected"
    reason = failure.message
    prefix = f"{failure.node}: "
    if reason.startswith(prefix):
        reason = reason[len(prefix) :]
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
        if answer.accepted is True and specs[0].dtype == _first_dtype(base):
            output = _answer_shape(self._output.args[0], self._capture.names, answer)
            if output is not _UNKNOWN:
                size = _size_text_of(list(specs[0].dims), base)
                return CheckResult(size, "accepted", output_shape=output)
        if answer.accepted is False:
            failure = self._shapes_failure(specs, base)
            if failure is not None:
                return failure
        return self.run(input_spec)[1]

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
        size = _size_text_of(list(specs[0].dims), base)
        failure = shapes.failure
        reason = failure.message
        prefix = f"{failure.node}: "
        if reason.startswith(prefix):
            reason = reason[len(prefix) :]
        return CheckResult(size, "rejected", node=failure.node, reason=reason)

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
    dims = report.input
    axes = [a for a in (report.domain or {}).get("at", {})]
    shown = dims[len(dims) - len(axes) :] if axes else dims
    return "x".join(str(d) for d in shown)


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
