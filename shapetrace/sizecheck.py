"""`shapetrace check MODEL --input A --input B`: is each input size accepted, and if not, which
node breaks and why. The model is built and traced once; each size reruns only the passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shapetrace.report import Report, format_shape


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

    def line(self) -> str:
        """`224x224: accepted, output (1, 2)` or `448x448: rejected at fc_layer: <why>`."""
        if self.accepted:
            return f"{self.size}: accepted, output {format_shape(self.output_shape)}"
        verb = "rejected at" if self.status == "rejected" else "cannot tell past"
        return f"{self.size}: {verb} {self.node}: {self.reason}"


def check_sizes(
    model_spec: Any,
    inputs: list[str],
    model_args: dict[str, Any] | None = None,
    *,
    train: bool = False,
) -> list[CheckResult]:
    """Check each `--input` value (`"448"`, `"1x3x448x448"`, ...) against the model.

    A size is accepted when the model runs at it and its output keeps the batch and every
    non-spatial dim (see the input-size pass); otherwise the result names the breaking node.
    `model_spec` is anything `shapetrace.analyze` takes. Malformed inputs raise UsageError.
    """
    from shapetrace import analysis
    from shapetrace.capture import TraceFailure, trace

    source, model = analysis._model(model_spec, model_args)
    model.train(train)
    try:
        capture = trace(model)
    except TraceFailure:
        # Models fx cannot trace are analysed per size by the eager fallback.
        return [
            _result(analysis.analyze(model_spec, text, model_args=model_args, train=train))
            for text in inputs
        ]
    first = analysis._first_layer_in_graph(capture)
    results = []
    for text in inputs:
        specs = analysis._input_specs(text, source, first)
        report = analysis.run_passes(model, capture, specs, source, train)
        output = next(n for n in capture.graph_module.graph.nodes if n.op == "output")
        results.append(_result(report, _shape_of(output.args[0], capture.names, report)))
    return results


def _result(report: Report, output_shape: Any = None) -> CheckResult:
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


def exit_code(results: list[CheckResult]) -> int:
    """0 when every size is accepted, 1 otherwise (the CLI's exit status)."""
    return 0 if all(r.accepted for r in results) else 1
