"""`shapetrace check MODEL --input A --input B`: is each input size accepted, and if not, which
node breaks and why. The model is built and traced once; each size reruns only the passes.
"""

from __future__ import annotations

from typing import Any

from shapetrace.report import Report
from shapetrace.tasks.runner import CheckResult, SizeRunner


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
    runner = SizeRunner(model_spec, model_args, train=train)
    results: list[CheckResult] = []
    base: Report | None = None
    for text in inputs:
        if base is None:
            # The first size runs every pass; later ones are answered from its formulas and
            # domain where those are complete (see `SizeRunner.check`).
            base, result = runner.run(text)
            results.append(result)
        else:
            results.append(runner.check(text, base))
    return results


def exit_code(results: list[CheckResult]) -> int:
    """0 when every size is accepted, 1 otherwise (the CLI's exit status)."""
    return 0 if all(r.accepted for r in results) else 1
