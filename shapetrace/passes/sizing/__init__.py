"""Input-size pass: which nodes depend on the input's spatial size, the exact sizes a model
accepts, the node that limits them, and a verdict in plain words.

The graph is re-propagated once with symbolic sizes: the batch `N` and each spatial axis
(`H`, `W`; `T`, `H`, `W` for video; `L` for 1-d) are symbols, and every size is an integer
polynomial over them and over floor divisions of such polynomials (a convolution's output is
`floor((H + 2p - d(k-1) - 1) / s) + 1`). Per-op rules work from module attributes, not from
observed shapes, so the graph is followed past a break. Each op that can reject a size adds a
constraint: a map at least as large as a kernel, a Linear's `in_features`, a merge of equal
sizes, a hard-coded view, a `torch._assert`, the output keeping its batch. An op without a
rule keeps its observed shapes and is listed in the domain's bounds as inexact.

Such sizes are quasi-linear along one axis: past some `n0`, `f(n + P) = f(n) + D`. So each
constraint holds on an eventually periodic set that a few evaluations determine exactly
(`IntSet`), and the accepted domain is their intersection. A product of two varying sizes
(a flattened map when H and W move together) is not quasi-linear but is monotone, and is
solved by search. Cost does not depend on the sizes.

Modules: `expr` (size expressions), `intset` (periodic sets), `tensors` (symbolic tensors and
constraints), `rules` (per-op size rules), `propagate` (the symbolic run), `solver` (sets per
constraint), `domain` (the accepted sizes and their bounds), `formulas` (shape formulas and
aligned sizes), `verdict` (the sentence).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import fx

from shapetrace.passes import PassContext
from shapetrace.passes.shapes import op_label
from shapetrace.passes.sizing.domain import SizeAnalysis
from shapetrace.passes.sizing.expr import Evaluator, Poly, Sym
from shapetrace.passes.sizing.formulas import FormulaWriter, aligned_multiple, aligned_sets
from shapetrace.passes.sizing.guards import open_questions, quote_guards
from shapetrace.passes.sizing.intset import IntSet
from shapetrace.passes.sizing.tensors import Constraint
from shapetrace.passes.sizing.verdict import Verdict
from shapetrace.report import Failure

__all__ = ["Evaluator", "IntSet", "Poly", "SizeAnalysis", "Sym", "run"]


_SILENT_BREAKS = ("batch", "index", "squeeze")


def run(context: PassContext) -> None:
    """Annotate the report: `depends_on_input` and `shape_formula` per node,
    `depends_on_input` per module, `domain`, `aligned_multiple` and `verdict`.

    `depends_on_input` is `breaks` for the node the report's failure names, `bound` for the
    fewest nodes whose constraints define the accepted sizes (others implied by them are
    listed in `domain["attribution"]`), else `scales` or `fixed` by the node's shape formula.

    A size that runs on meta tensors but folds spatial elements into the batch, or indexes
    past an embedding table, is a break too: it becomes the report's failure."""
    analysis = SizeAnalysis(context)
    quote_guards(analysis)
    report = context.report
    if report.failure is None:
        c = analysis.first_failure(analysis.env0)
        if c is not None and c.kind in _SILENT_BREAKS:
            report.failure = _failure(context, analysis, c)
    dependence = analysis.dependence()
    broken = _failing_node(context, report.failure)
    if broken is not None:
        dependence[broken] = "breaks"
    for node, dep in dependence.items():
        target = context.by_fx.get(node)
        if target is not None:
            target.depends_on_input = dep
    _annotate_modules(context, dependence)
    writer = FormulaWriter(analysis)
    for node, formula in writer.shapes().items():
        target = context.by_fx.get(node)
        if target is not None:
            target.shape_formula = formula
    for node, reason in writer.missing.items():
        target = context.by_fx.get(node)
        if target is not None:
            target.why_missing("shape_formula", reason)
    aligned = aligned_sets(analysis)
    multiples = {a: m for a, s in aligned.items() if (m := aligned_multiple(s)) is not None}
    report.aligned_multiple = multiples or None
    report.domain = analysis.domain() if analysis.axes else {"bounds": []}
    report.verdict = Verdict(analysis, multiples).text(report.failure)
    open_questions(context)


def _failure(context: PassContext, analysis: SizeAnalysis, c: Constraint) -> Failure:
    node = c.node
    report_node = context.by_fx.get(node)
    observed = [context.shapes.results.get(n) for n in node.all_input_nodes]
    return Failure(
        node=analysis.prop.names.get(node, node.name),
        module=report_node.module if report_node is not None else None,
        type=report_node.type if report_node is not None else op_label(node),
        input_shapes=[r.shape if r is not None else None for r in observed],
        message=analysis.message(c, analysis.env0),
    )


def _failing_node(context: PassContext, failure: Failure | None) -> fx.Node | None:
    if failure is None:
        return None
    for node, target in context.by_fx.items():
        if target.name == failure.node:
            return node
    return None


def _annotate_modules(context: PassContext, dependence: dict[fx.Node, str]) -> None:
    """A module holding the break `breaks`, else one holding a bound node is `bound`, else
    its output's state (`scales` if any output scales)."""
    inside: dict[str, set[str]] = {}
    for node, dep in dependence.items():
        if dep not in ("bound", "breaks"):
            continue
        site = context.capture.sites.get(node, "")
        while site:
            inside.setdefault(site, set()).add(dep)
            site = site.rpartition(".")[0]
    for module in context.report.modules:
        states = inside.get(module.path, set())
        if states:
            module.depends_on_input = "breaks" if "breaks" in states else "bound"
            continue
        outputs = _output_nodes(context.capture.module_outputs.get(module.path))
        deps = {dependence.get(n) for n in outputs} - {None}
        if deps:
            module.depends_on_input = "scales" if "scales" in deps else "fixed"


def _output_nodes(value: Any) -> Iterator[fx.Node]:
    if isinstance(value, fx.Node):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _output_nodes(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _output_nodes(v)
