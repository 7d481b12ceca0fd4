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

from shapetrace.report import Report


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
