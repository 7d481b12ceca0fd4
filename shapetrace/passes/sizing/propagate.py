"""Symbolic propagation: the graph run once on `STensor`s, collecting constraints.

Each call is bound by the op registry (`shapetrace.ops`) and handed to its family's size rule
(see `rules`); a call the registry does not know keeps the shapes observed at the analysed
input and is noted, so the domain's bounds can say it is inexact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from shapetrace import ops
from shapetrace.passes import PassContext
from shapetrace.passes.shapes import op_label
from shapetrace.passes.sizing.exported import NoFormula, SizeNames
from shapetrace.passes.sizing.expr import Evaluator, Opaque, Poly, Sym, Unknown, poly_max
from shapetrace.passes.sizing.rules import FAMILY_RULES
from shapetrace.passes.sizing.tensors import (
    AXIS_NAMES,
    BATCH,
    RULE_ERRORS,
    Constraint,
    Message,
    STensor,
    Unsupported,
    flat_args,
    no_message,
    say,
)


class Propagator:
    """Runs the graph once on `STensor`s, collecting the constraints each op puts on sizes."""

    def __init__(self, context: PassContext) -> None:
        self.context = context
        capture = context.capture
        self.gm = capture.graph_module
        self.names = capture.names
        self.observed = context.shapes.values
        self.values: dict[fx.Node, Any] = {}
        self.constraints: list[Constraint] = []
        self.notes: list[tuple[fx.Node, str]] = []
        self.unruled: list[tuple[fx.Node, str, str]] = []  # (node, note, the op as written)
        self.first_seen: dict[Poly, fx.Node] = {}
        self.output: Any = None
        self.node: fx.Node = next(iter(self.gm.graph.nodes))
        self.axes, self.input_node, self.env0 = self._layout()
        self.ev0 = Evaluator(self.env0)
        symbolic = capture.symbolic
        # A capture by torch.export knows every node's sizes as formulas in H, W.
        self.exported = SizeNames(symbolic, self.axes) if symbolic is not None else None
        self._captured: Evaluator | None = None  # sizes at the size the export captured

    # -- setup --------------------------------------------------------------------------
    def _layout(self) -> tuple[tuple[str, ...], fx.Node | None, dict[str, int]]:
        """The spatial axes of the first input, from the first conv (or embedding) layer."""
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        first = placeholders[0] if placeholders else None
        value = self.observed.get(first) if first is not None else None
        if not isinstance(value, torch.Tensor) and self.context.inputs:
            value = self.context.inputs[0]
        env: dict[str, int] = {}
        if first is None or not isinstance(value, torch.Tensor) or value.dim() < 2:
            return (), None, env
        # Without a conv, embedding or linear layer to tell, N x C x spatial... is assumed.
        rank = value.dim() - 2 if value.is_floating_point() else 0
        symbolic = self.context.capture.symbolic
        spatial = getattr(symbolic, "spatial", ()) if symbolic is not None else ()
        if spatial and len(spatial) < value.dim():
            # A capture by torch.export made these dims symbolic (an aten graph has no
            # modules to tell): a conv's spatial dims, an embedding's sequence.
            rank = len(spatial)
        for node in self.gm.graph.nodes:
            if node.op != "call_module":
                continue
            module = self.gm.get_submodule(str(node.target))
            if isinstance(module, nn.modules.conv._ConvNd):
                rank = len(module.kernel_size) if value.dim() == len(module.kernel_size) + 2 else 0
                break
            if isinstance(module, nn.Embedding):
                rank = 1 if value.dim() == 2 else 0
                break
            if isinstance(module, nn.Linear) and first in node.all_input_nodes:
                rank = 0
                break
        names = AXIS_NAMES.get(rank, ())
        env[BATCH] = int(value.shape[0])
        for name, size in zip(names, value.shape[value.dim() - rank :], strict=True):
            env[name] = int(size)
        return names, first, env

    def _input(self, node: fx.Node) -> Any:
        value = self.observed.get(node)
        if node is self.input_node:
            assert isinstance(value, torch.Tensor) or self.context.inputs
            tensor = value if isinstance(value, torch.Tensor) else self.context.inputs[0]
            rank = len(self.axes)
            shape = [Poly.atom(Sym(BATCH))]
            shape += [Poly.of(int(d)) for d in tensor.shape[1 : tensor.dim() - rank]]
            shape += [Poly.atom(Sym(a)) for a in self.axes]
            axes: list[str | None] = [None] * (tensor.dim() - rank) + list(self.axes)
            return STensor(tuple(shape), tuple(axes))
        return self._constant(value, node)

    def _constant(self, value: Any, node: fx.Node | None = None) -> Any:
        if isinstance(value, torch.Tensor):
            shape = tuple(Poly.of(int(d)) for d in value.shape)
            return STensor(shape, (None,) * len(shape), None, node)
        if isinstance(value, (list, tuple)):
            return _same_kind(value, [self._constant(v, node) for v in value])
        return value

    # -- running ------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.node = node
            if node.op == "output":
                self._check_output(fx.node.map_arg(node.args[0], self.values.__getitem__))
                continue
            if node.op == "placeholder":
                value = self._input(node)
            elif node.op == "get_attr":
                value = self._constant(_lookup(self.gm, str(node.target)), node)
            else:
                args = fx.node.map_arg(node.args, self.values.__getitem__)
                kwargs = fx.node.map_arg(node.kwargs, self.values.__getitem__)
                try:
                    value = self._call(node, args, kwargs)
                except RULE_ERRORS as exc:
                    value = self._fallback(node, args, kwargs, exc)
                else:
                    value = self._checked(node, value)
            self.values[node] = value
            for t in flat_args(value):
                for d in t.shape:
                    if d.vars and d not in self.first_seen:
                        self.first_seen[d] = node

    def _call(self, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        module = self.context.capture.module_of(node) if node.op == "call_module" else None
        call = ops.bind_call(node.op, node.target, args, kwargs, module)
        if call is None:
            raise Unsupported(_unknown(node, self.gm))
        return FAMILY_RULES[call.family](self, call)

    def _fallback(self, node: fx.Node, args: Any, kwargs: Any, exc: BaseException) -> Any:
        """Sizes for a call without a rule: in a capture by torch.export, the export's own
        formulas (exact, and its guards cover where the op is valid); otherwise the observed
        shapes, exact when no input size varies, else an elementwise guess or opaque sizes,
        noted in the domain's bounds."""
        tensors = flat_args((args, kwargs))
        observed = self.observed.get(node)
        exported, why = self._exported(node)
        if why is None:
            return exported
        varying = any(d.vars - {BATCH} for t in tensors for d in t.shape) or any(
            isinstance(v, Poly) and v.vars - {BATCH} for v in _flat_scalars((args, kwargs))
        )
        if not varying and observed is not None:
            return self._constant(observed)
        op = _unknown(node, self.gm)
        # A rule's own error (an index out of range, a type it does not take) is no reason
        # a user can act on: the call is named as one the rules do not cover.
        what = str(exc) if isinstance(exc, Unsupported) else f"{op} called this way"
        if why:
            what = f"{what} ({why})"
        self.unruled.append((node, f"no size rule for {what}", op))
        if (
            isinstance(observed, torch.Tensor)
            and tensors
            and self._at0(tensors[0].shape) == list(observed.shape)
        ):
            self.notes.append((node, f"no size rule for {what}; assumed to keep its input's shape"))
            return tensors[0]
        self.notes.append((node, f"no size rule for {what}; sizes after it are not followed"))
        return self._opaque(observed, self.names.get(node, node.name))

    def _checked(self, node: fx.Node, value: Any) -> Any:
        """In a capture by torch.export, a rule's tensor whose sizes differ from the export's
        at the captured size gives way to the export's (the export ran the op)."""
        if self.exported is None or not isinstance(value, STensor):
            return value
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.dim() != value.ndim:
            return value
        if self._captured is None:
            self._captured = Evaluator({**self.env0, **self.exported.captured})
        try:
            ours = [self._captured.poly(d) for d in value.shape]
        except Unknown:
            return value
        theirs = [d.node.hint if isinstance(d, torch.SymInt) else int(d) for d in val.shape]
        if None in theirs or ours == theirs:
            return value
        exported, why = self._exported(node)
        return exported if why is None else value

    def _exported(self, node: fx.Node) -> tuple[Any, str | None]:
        """The node's value from the export's metadata, and None; or why there is none ("" in
        a graph not captured by torch.export)."""
        if self.exported is None or "val" not in node.meta:
            return None, ""
        try:
            return self.exported.value(node.meta["val"]), None
        except NoFormula:
            return None, f"its size {_printed(node.meta['val'])} has no exact formula"

    def _opaque(self, value: Any, label: str) -> Any:
        if isinstance(value, torch.Tensor):
            shape = tuple(
                Poly.atom(Opaque(f"{label}[{i}]", int(d))) for i, d in enumerate(value.shape)
            )
            return STensor(shape, (None,) * len(shape))
        if isinstance(value, (list, tuple)):
            return _same_kind(value, [self._opaque(v, f"{label}.{i}") for i, v in enumerate(value)])
        if value is None:
            return STensor((Poly.atom(Opaque(label, None)),), (None,))
        return value

    def _at0(self, shape: Sequence[Poly]) -> list[int] | None:
        try:
            return [self.ev0.poly(d) for d in shape]
        except (Unknown, KeyError):
            return None

    # -- constraints --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.names.get(self.node, self.node.name)

    def require(
        self,
        kind: str,
        lhs: Poly | int,
        rel: str,
        rhs: Poly | int,
        message: Message,
        **options: Any,
    ) -> None:
        """Record a constraint; one that cannot depend on the spatial sizes is only kept when
        it fails (the break then holds at every size)."""
        c = self.make(kind, lhs, rel, rhs, message, **options)
        if not (c.vars - {BATCH}):
            try:
                if c.holds(self.ev0):
                    return
            except Unknown:
                return
        self.constraints.append(c)

    def make(
        self,
        kind: str,
        lhs: Poly | int,
        rel: str,
        rhs: Poly | int,
        message: Message,
        *,
        alternatives: Sequence[Constraint] = (),
        modulus: int = 0,
        need: int = 0,
        pattern: str = "",
        node: fx.Node | None = None,
    ) -> Constraint:
        return Constraint(
            node or self.node,
            kind,
            Poly.of(lhs),
            rel,
            Poly.of(rhs),
            message,
            list(alternatives),
            modulus,
            need,
            pattern,
        )

    def axis_of(self, t: STensor, i: int) -> str:
        return t.axes[i] or f"dim {i}"

    def need_positive(self, out: Poly, size: Poly, what: str, axis: str, need: int) -> None:
        """An op whose output along `axis` must be at least 1 (a kernel larger than the map)."""
        name = self.name
        self.require(
            "min",
            out,
            ">=",
            1,
            say(f"{name}: {what} needs at least {need} along {axis}, gets ", size),
            need=need,
        )

    def equal_sizes(self, a: Poly, b: Poly, what: str, *, kind: str = "") -> None:
        """Two sizes that must agree (a cat, a Linear's features, a hard-coded size)."""
        if a == b:
            return
        name = self.name
        if not kind:
            kind = "merge" if a.vars - {BATCH} and b.vars - {BATCH} else "fixed"
        self.require(kind, a, "==", b, say(f"{name}: {what}: ", a, " vs ", b))

    # -- broadcasting -------------------------------------------------------------------
    def broadcast(self, tensors: Sequence[STensor], what: str) -> STensor:
        """Elementwise broadcasting: dims agree or one is 1."""
        ndim = max(t.ndim for t in tensors)
        shape: list[Poly] = []
        axes: list[str | None] = []
        name = self.name
        for i in range(ndim):
            dims = [
                (t.shape[t.ndim - ndim + i], t.axes[t.ndim - ndim + i], t)
                for t in tensors
                if t.ndim - ndim + i >= 0
            ]
            size, axis, _ = dims[0]
            for other, other_axis, _ in dims[1:]:
                axis = axis or other_axis
                if other == size or (other.is_const and other.const == 1):
                    continue
                if size.is_const and size.const == 1:
                    size = other
                    continue
                a, b = size, other
                param = any(x.param is not None and not d.vars for d, _, x in dims)
                if a.vars - {BATCH} and b.vars - {BATCH}:
                    kind, out = "merge", poly_max(a, b)
                else:
                    kind, out = "fixed", b if a.vars else a
                alts = [
                    self.make(kind, a, "==", 1, no_message),
                    self.make(kind, b, "==", 1, no_message),
                ]
                self.require(
                    kind,
                    a,
                    "==",
                    b,
                    say(f"{name}: {what} needs equal sizes (or 1) in dim {i}: ", a, " vs ", b),
                    alternatives=alts,
                    pattern="posembed" if param else "",
                )
                size = out
            shape.append(size)
            axes.append(axis)
        return STensor(tuple(shape), tuple(axes))

    # -- output -------------------------------------------------------------------------
    def _check_output(self, value: Any) -> None:
        """Accepted means the output keeps its batch and every non-spatial dim; a dim that
        breaks this is blamed on the node that first produced it (a view folding the map)."""
        self.output = value
        for t in flat_args(value):
            for i, d in enumerate(t.shape):
                if not (d.vars - {BATCH}) or (t.axes[i] is not None and BATCH not in d.vars):
                    continue
                origin = self.first_seen.get(d, self.node)
                name = self.names.get(origin, origin.name)
                if BATCH in d.vars:
                    target = Poly.atom(Sym(BATCH))
                    text = "folds spatial elements into the batch"
                else:
                    try:
                        target = Poly.of(self.ev0.poly(d))
                    except Unknown:
                        continue
                    text = "makes a non-spatial dim depend on the input size"
                self.require(
                    "batch",
                    d,
                    "==",
                    target,
                    say(f"{name}: {text}: output dim {i} is ", d, ", not ", target),
                    node=origin,
                )


def _unknown(node: fx.Node, gm: fx.GraphModule) -> str:
    """How a call the registry does not know is named in the domain's notes."""
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return op_label(node)


def _printed(val: Any) -> str:
    """A value's sizes as the export wrote them."""
    if isinstance(val, torch.Tensor):
        return "(" + ", ".join(str(d) for d in val.shape) + ")"
    if isinstance(val, (list, tuple)):
        return "[" + ", ".join(_printed(v) for v in val) + "]"
    return str(val)


def _lookup(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _flat_scalars(values: Any) -> list[Any]:
    out: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        else:
            out.append(v)

    walk(values)
    return out


def _same_kind(value: list[Any] | tuple[Any, ...], items: list[Any]) -> Any:
    """`items` in a container of `value`'s kind: a list, a tuple or a namedtuple (googlenet's
    training outputs), whose constructor takes the fields one by one."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*items)
    return type(value)(items)
