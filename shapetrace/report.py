"""The Report: plain, JSON-serialisable data that every view reads.

Nothing here imports torch, so a saved report renders without the model. The schema number
changes only when a field is renamed or changes meaning; new fields may appear at any time.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shapetrace.domain import in_domain
from shapetrace.formula import Compiled, compile_sources, sources

if TYPE_CHECKING:
    import networkx

SCHEMA = 1

# Fields that passes fill in; they are written only once a pass has set them.
_OPTIONAL_NODE_FIELDS = (
    "value",
    "rf",
    "rf_covers_input",
    "rf_covers_input_up_to",
    "depends_on_input",
    "shape_formula",
    "macs",
    "flops",
    "activation_bytes",
    "cost_per_element",
    "missing",
)
_OPTIONAL_MODULE_FIELDS = ("rf", "depends_on_input", "macs", "flops")


@dataclass
class Node:
    """One node of the traced graph, named as torchvision's feature extraction names it."""

    name: str
    op: str
    target: str
    module: str | None
    type: str
    inputs: list[str]
    shape: Any
    dtype: str | None
    params: int = 0
    value: Any = None
    rf: dict[str, Any] | None = None
    rf_covers_input: bool | None = None
    rf_covers_input_up_to: list[int | None] | None = None
    depends_on_input: str | None = None
    shape_formula: list[str] | None = None
    macs: int | None = None
    flops: int | None = None
    activation_bytes: int | None = None
    # [MACs, FLOPs] per element of the output, where the cost is that multiple at every size
    # (convolutions, pools, linear, elementwise, norms; [0, 0] for free ops): `Report.at`.
    cost_per_element: list[int] | None = None
    # Why a pass left one of its fields unset on this node: {"macs": "no cost formula for ..."}.
    missing: dict[str, str] | None = None

    def why_missing(self, field_name: str, reason: str) -> None:
        """Record why a pass could not fill `field_name` ("rf", "macs", "shape_formula")."""
        if self.missing is None:
            self.missing = {}
        self.missing.setdefault(field_name, reason)

    def to_dict(self) -> dict[str, Any]:
        """Core keys always; pass results only once computed."""
        data = asdict(self)
        for key in _OPTIONAL_NODE_FIELDS:
            if data[key] is None:
                del data[key]
        return data


@dataclass
class Module:
    """One entry of the module tree: a `named_modules()` path, or the call site of a shared one."""

    path: str
    type: str
    params: int
    calls: int
    shape: Any = None
    rf: dict[str, Any] | None = None
    depends_on_input: str | None = None
    macs: int | None = None
    flops: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in _OPTIONAL_MODULE_FIELDS:
            if data[key] is None:
                del data[key]
        return data

    @property
    def depth(self) -> int:
        return 0 if not self.path else self.path.count(".") + 1


@dataclass
class Failure:
    """Where and why the model breaks at the analysed input."""

    node: str
    module: str | None
    type: str
    input_shapes: list[Any]
    message: str
    kind: str = "rejected"  # or "unsupported": shapes alone cannot follow the model further


@dataclass
class Report:
    """Everything shapetrace knows about one model at one input."""

    source: dict[str, Any]
    model: str
    input: list[int]
    nodes: list[Node]
    modules: list[Module]
    totals: dict[str, Any]
    dead_modules: list[dict[str, Any]] = field(default_factory=list)
    train_only_modules: list[dict[str, Any]] = field(default_factory=list)
    failure: Failure | None = None
    domain: dict[str, Any] | None = None
    verdict: str | None = None
    aligned_multiple: dict[str, int] | None = None
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")

    # -- lookups -------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        """The node called `name` (KeyError if absent)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def module(self, path: str) -> Module:
        """The module entry at `path` (KeyError if absent)."""
        for m in self.modules:
            if m.path == path:
                return m
        raise KeyError(path)

    @property
    def ok(self) -> bool:
        """True when the model runs at the analysed input."""
        return self.failure is None

    # -- another input size, from the formulas ----------------------------------------------
    def at(self, size: str | tuple[int, ...] | list[int]) -> SizeAnswer:
        """The report's answer at another input size, from its shape formulas, cost multiples
        and domain alone: no torch, no model, a fraction of a millisecond.

        `size` is the full input (`"1x3x640x640"`, `(1, 3, 640, 640)`) or its spatial part as
        `--input` takes it (`"640"`, `"640x480"`, `(640, 480)`); only the batch and the
        spatial sizes may change. What the formulas cannot answer is None and says why in
        `unknown` (a node without a formula, a cost that does not scale with the output, a
        domain with open questions): then `complete` is False and `analyze` at that size is
        the answer. Raises ValueError for a size that does not fit the input."""
        return _answer_at(self, size)

    # -- text -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        status = "ok" if self.failure is None else f"breaks at {self.failure.node}"
        params = self.totals.get("params")
        count = f", {params:,} params" if isinstance(params, int) else ""
        return (
            f"<Report {self.model} input {format_shape(self.input)}: "
            f"{len(self.nodes)} nodes{count}, {status}>"
        )

    def __str__(self) -> str:
        """The terminal table as plain text (`print(report)`), as wide as the terminal."""
        return _notebook().text(self)

    # -- graphs, diagrams and notebooks ---------------------------------------------------
    def to_networkx(self) -> networkx.DiGraph:
        """The graph as a `networkx.DiGraph` for queries of your own: one graph node per node
        name, with the node's fields as attributes (`type`, `shape`, `params`, `macs`, ...),
        and an edge from each of its `inputs`. Imports networkx on first use."""
        import networkx

        graph = networkx.DiGraph(model=self.model, input=self.input)
        for node in self.nodes:
            graph.add_node(node.name, **asdict(node))
        for node in self.nodes:
            graph.add_edges_from((name, node.name) for name in node.inputs if name in graph)
        return graph

    def diagram(self, depth: int | None = None, **kw: Any) -> Any:
        """The architecture diagram as a `graphviz.Digraph`, for further styling or rendering.

        Keywords as `shapetrace.views.dot.diagram`: `rankdir`, `theme`.
        """
        return _notebook().diagram(self, depth, **kw)

    def _repr_svg_(self) -> str | None:
        """Jupyter shows a report as its diagram; None when Graphviz's `dot` is missing."""
        return _notebook().svg(self)

    def _repr_markdown_(self) -> str | None:
        """The Markdown table, only when `dot` is missing (Jupyter prefers Markdown to SVG)."""
        return _notebook().markdown(self)

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": self.schema,
            "source": self.source,
            "model": self.model,
            "input": self.input,
            "nodes": [n.to_dict() for n in self.nodes],
            "modules": [m.to_dict() for m in self.modules],
            "totals": self.totals,
            "dead_modules": self.dead_modules,
            "train_only_modules": self.train_only_modules,
            "failure": asdict(self.failure) if self.failure else None,
        }
        for key in ("domain", "verdict", "aligned_multiple"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data

    def to_json(self, indent: int | None = 1) -> str:
        """Serialise to JSON text (schema 1)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a Report from `to_dict()` output; unknown keys are ignored.

        A report is data from anywhere: every field the views read is checked for its type
        first, and a wrong one is a ValueError naming the field (`nodes[3].shape: ...`)."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ValueError(
                f"unsupported report schema {schema!r} (this shapetrace reads {SCHEMA})"
            )
        _check_report(data)
        node_keys = {f.name for f in fields(Node)}
        module_keys = {f.name for f in fields(Module)}
        failure = data.get("failure")
        return cls(
            schema=SCHEMA,
            source=data["source"],
            model=data["model"],
            input=data["input"],
            nodes=[Node(**{k: v for k, v in n.items() if k in node_keys}) for n in data["nodes"]],
            modules=[
                Module(**{k: v for k, v in m.items() if k in module_keys}) for m in data["modules"]
            ],
            totals=data["totals"],
            dead_modules=data.get("dead_modules", []),
            train_only_modules=data.get("train_only_modules", []),
            failure=Failure(**{k: v for k, v in failure.items() if k in _FAILURE_KEYS})
            if failure
            else None,
            domain=data.get("domain"),
            verdict=data.get("verdict"),
            aligned_multiple=data.get("aligned_multiple"),
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        """Parse JSON text written by `to_json()` (ValueError if it is not a report)."""
        try:
            data = json.loads(text)
        except RecursionError as exc:
            raise ValueError("nested too deeply to be a report") from exc
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ValueError(f"malformed report: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read a report saved as JSON."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


# -- answers at another size ------------------------------------------------------------------


@dataclass
class NodeAt:
    """One node at another input size: shape and cost where the formulas give them."""

    name: str
    type: str
    module: str | None
    shape: Any  # None: not a tensor, or unknown (then `unknown["shape"]` says why)
    macs: int | None
    flops: int | None
    unknown: dict[str, str] = field(default_factory=dict)  # field -> why it is not known


@dataclass
class SizeAnswer:
    """What a Report's formulas and domain say at another input size (`Report.at`)."""

    model: str
    input: list[int]
    sizes: dict[str, int]  # every symbol the formulas use: {"N": 1, "H": 640, "W": 640}
    accepted: bool | None  # None: the domain cannot tell (see `why`)
    why: str | None  # why `accepted` is None; for a rejected size, the domain edge it crosses
    nodes: list[NodeAt]
    totals: dict[str, Any]  # macs, flops (None when a node's is unknown), uncounted

    @property
    def ok(self) -> bool | None:
        return self.accepted

    @property
    def unknown(self) -> dict[str, dict[str, str]]:
        """Per node, the fields the formulas cannot give and why."""
        return {n.name: n.unknown for n in self.nodes if n.unknown}

    @property
    def complete(self) -> bool:
        """Whether acceptance, every shape and every counted cost are known exactly: the
        answer a meta run would give, without the run."""
        return self.accepted is not None and not any(n.unknown for n in self.nodes)

    def node(self, name: str) -> NodeAt:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def __repr__(self) -> str:
        status = {True: "accepted", False: "rejected", None: "undecided"}[self.accepted]
        unknown = len(self.unknown)
        tail = f", {unknown} nodes unknown" if unknown else ""
        return f"<SizeAnswer {self.model} input {format_shape(self.input)}: {status}{tail}>"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def report(self, base: Report) -> Report:
        """`base` (the report this answer came from) with this size's shapes and costs: the
        fields that do not follow from the formulas (receptive fields, activation bytes,
        module shapes and costs, failure) are cleared, and `source["estimated"]` says so."""
        by_name = {n.name: n for n in self.nodes}
        nodes = []
        for old in base.nodes:
            new = by_name[old.name]
            copy = Node(
                name=old.name,
                op=old.op,
                target=old.target,
                module=old.module,
                type=old.type,
                inputs=list(old.inputs),
                shape=new.shape,
                dtype=old.dtype,
                params=old.params,
                depends_on_input=old.depends_on_input,
                shape_formula=old.shape_formula,
                macs=new.macs,
                flops=new.flops,
                cost_per_element=old.cost_per_element,
                missing=dict(new.unknown) or None,
            )
            nodes.append(copy)
        modules = [
            Module(path=m.path, type=m.type, params=m.params, calls=m.calls) for m in base.modules
        ]
        totals = {
            k: v
            for k, v in base.totals.items()
            if k in ("params", "trainable_params", "param_bytes", "buffers")
        }
        if self.totals.get("macs") is not None:
            totals.update(macs=self.totals["macs"], flops=self.totals["flops"])
            totals["uncounted"] = list(self.totals.get("uncounted", []))
        source = dict(base.source, estimated="from the shape formulas of the report")
        source["input"] = ["x".join(map(str, self.input)), *base.source.get("input", [])[1:]]
        return Report(
            source=source,
            model=base.model,
            input=list(self.input),
            nodes=nodes,
            modules=modules,
            totals=totals,
            dead_modules=base.dead_modules,
            train_only_modules=base.train_only_modules,
            domain=base.domain,
            verdict=base.verdict,
            aligned_multiple=base.aligned_multiple,
        )


@dataclass
class _Formulas:
    """A report's shape formulas parsed once (`Report.at` keeps it on the report)."""

    compiled: Compiled | None
    spans: dict[str, tuple[int, int]]  # node name -> its dims in the compiled tuple
    broken: dict[str, str]  # node name -> why its formula cannot be evaluated


# Formulas parsed lately, by their text: the reports of one model at other sizes (the TUI's
# confirmed report after each size change) have the same formulas, parsed once.
_PARSED: dict[tuple[tuple[str, tuple[str, ...]], ...], _Formulas] = {}
_PARSED_KEEP = 8
_PARSED_LOCK = threading.Lock()


def _formulas(report: Report) -> _Formulas:
    cached = report.__dict__.get("_formulas")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    key = tuple((n.name, tuple(n.shape_formula)) for n in report.nodes if n.shape_formula)
    found = _PARSED.get(key)
    if found is None:
        found = _parse_formulas(report)
        with _PARSED_LOCK:  # `Report.at` may be called from several threads
            while len(_PARSED) >= _PARSED_KEEP:
                _PARSED.pop(next(iter(_PARSED)))
            _PARSED[key] = found
    report.__dict__["_formulas"] = found
    return found


def _parse_formulas(report: Report) -> _Formulas:
    parts: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    broken: dict[str, str] = {}
    for node in report.nodes:
        if not node.shape_formula:
            continue
        try:
            checked = sources(node.shape_formula)
        except ValueError as exc:
            broken[node.name] = f"its shape formula cannot be read: {exc}"
            continue
        spans[node.name] = (len(parts), len(parts) + len(checked))
        parts.extend(checked)
    return _Formulas(compile_sources(parts) if parts else None, spans, broken)


def _axes(report: Report) -> list[str]:
    return list((report.domain or {}).get("at", {}))


def _dims_at(report: Report, size: str | tuple[int, ...] | list[int]) -> list[int]:
    """The full input dims `size` asks for (see `Report.at`)."""
    if isinstance(size, str):
        from shapetrace.inputs import parse

        specs = parse(size)
        if len(specs) != 1:
            raise ValueError(f"{size!r}: give one input size")
        dims = list(specs[0].dims)
    else:
        dims = [int(d) for d in size]
    axes = _axes(report)
    base = list(report.input)
    if not axes:
        raise ValueError(f"{report.model}: the input has no spatial axes the formulas follow")
    if len(dims) == len(base):
        fixed = [i for i in range(1, len(base) - len(axes))]
        if any(dims[i] != base[i] for i in fixed):
            raise ValueError(
                f"{'x'.join(map(str, dims))}: only the batch and the spatial sizes may change "
                f"from {'x'.join(map(str, base))}; analyse the model at that input"
            )
        return dims
    lead = base[: len(base) - len(axes)]
    if len(dims) == len(axes):
        return [*lead, *dims]
    frame = [a for a in axes if a != "T"]
    if len(dims) == 1:
        spatial = base[len(lead) :]
        return [*lead, *(dims[0] if a in frame else n for a, n in zip(axes, spatial, strict=True))]
    raise ValueError(
        f"{'x'.join(map(str, dims))} does not fit the input {'x'.join(map(str, base))} "
        f"(spatial axes {', '.join(axes)})"
    )


def _answer_at(report: Report, size: str | tuple[int, ...] | list[int]) -> SizeAnswer:
    dims = _dims_at(report, size)
    axes = _axes(report)
    spatial = dict(zip(axes, dims[len(dims) - len(axes) :], strict=True))
    batch = dims[0] if len(dims) > len(axes) else None
    sizes = {"N": batch if batch is not None else 1, **spatial}
    same_batch = batch is None or batch == report.input[0]
    accepted, why = _accepted(report, spatial, same_batch)
    parsed = _formulas(report)
    values: tuple[int, ...] = ()
    failed: str | None = None
    if parsed.compiled is not None:
        try:
            values = parsed.compiled(sizes)
        except (ValueError, ZeroDivisionError, ArithmeticError) as exc:
            failed = f"the shape formulas cannot be evaluated here: {exc}"
    nodes: list[NodeAt] = []
    macs_total = flops_total = 0
    cost_known = True
    for node in report.nodes:
        unknown: dict[str, str] = {}
        shape: Any = None
        span = parsed.spans.get(node.name)
        if span is not None and failed is None:
            shape = list(values[span[0] : span[1]])
        elif span is not None:
            unknown["shape"] = failed or "no formula"
        elif node.name in parsed.broken:
            unknown["shape"] = parsed.broken[node.name]
        elif node.shape is None:
            if report.failure is not None:
                unknown["shape"] = "not reached at the analysed size"
        elif _spatial_free(node) and same_batch:
            # The formula writer skips a single tensor without a spatial size: the same at
            # every size where the model runs, at the analysed batch.
            shape = node.shape
        else:
            why_missing = (node.missing or {}).get("shape_formula")
            unknown["shape"] = why_missing or (
                "no shape formula (its shape does not follow the spatial size alone)"
                if not _spatial_free(node)
                else "no shape formula, and the batch changed"
            )
        macs = flops = None
        if node.macs is not None:
            per = node.cost_per_element
            if per is not None and per == [0, 0]:
                macs = flops = 0
            elif per is not None and isinstance(shape, list) and _flat_ints(shape):
                elements = math.prod(shape)
                macs, flops = elements * per[0], elements * per[1]
            elif per is None:
                unknown["macs"] = (
                    f"the cost of {node.type} does not follow from its output's size alone"
                )
            else:
                unknown["macs"] = "its shape is not known here"
        if node.macs is not None:
            if macs is None or flops is None:
                cost_known = False
            else:
                macs_total += macs
                flops_total += flops
        nodes.append(NodeAt(node.name, node.type, node.module, shape, macs, flops, unknown))
    totals = {
        "macs": macs_total if cost_known else None,
        "flops": flops_total if cost_known else None,
        "uncounted": list(report.totals.get("uncounted", [])),
    }
    return SizeAnswer(report.model, dims, sizes, accepted, why, nodes, totals)


def _spatial_free(node: Node) -> bool:
    return (
        node.depends_on_input in ("fixed", "bound")
        and isinstance(node.shape, list)
        and _flat_ints(node.shape)
        and not (node.missing or {}).get("shape_formula")
    )


def _flat_ints(shape: list[Any]) -> bool:
    return all(isinstance(d, int) and not isinstance(d, bool) for d in shape)


def _accepted(
    report: Report, spatial: dict[str, int], same_batch: bool
) -> tuple[bool | None, str | None]:
    """Whether the domain accepts the spatial sizes, and why not or why it cannot tell."""
    domain = report.domain
    if not domain or not all(a in domain for a in spatial):
        return None, "the report has no accepted domain"
    if domain.get("open"):
        ops = sorted({str(q.get("op") or q.get("node")) for q in domain["open"]})
        return None, f"the domain leaves questions open ({', '.join(ops)})"
    if not same_batch:
        return None, f"the domain is computed at batch {report.input[0]}"
    verdict = in_domain(domain, spatial)
    if verdict is None:
        return None, "a coupled bound lists no combinations"
    if verdict:
        return True, None
    crossed = [
        str(b.get("constraint") or b.get("node"))
        for b in domain.get("bounds", [])
        if b.get("axis") in spatial
        and (
            (b.get("kind") == "min" and spatial[b["axis"]] < b.get("value", 0))
            or (b.get("kind") == "max" and spatial[b["axis"]] > b.get("value", 0))
        )
    ]
    return False, "; ".join(crossed) or "outside the accepted domain"


class NotebookDisplay(Protocol):
    """How a Report draws itself (`Report.diagram`, Jupyter's `_repr_svg_`). The views provide
    it (`shapetrace.views.notebook`, installed by `import shapetrace`), so that this module
    never imports a view."""

    def diagram(self, report: Report, depth: int | None, **kw: Any) -> Any: ...

    def svg(self, report: Report) -> str | None: ...

    def markdown(self, report: Report) -> str | None: ...

    def text(self, report: Report) -> str: ...


_display: NotebookDisplay | None = None


def set_notebook_display(display: NotebookDisplay) -> None:
    """Make `display` draw every Report (the views call this)."""
    global _display
    _display = display


def _notebook() -> NotebookDisplay:
    if _display is None:
        raise RuntimeError("no notebook display installed: import shapetrace.views.notebook")
    return _display


def format_shape(shape: Any) -> str:
    """`[1, 3, 224, 224]` -> `(1, 3, 224, 224)`, `["u0", 4]` -> `(u0, 4)`; nested outputs are
    shown recursively."""
    if shape is None:
        return "-"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {format_shape(v)}" for k, v in shape.items()) + "}"
    # A tensor's sizes: integers, or expressions where they depend on values (`u0`).
    if isinstance(shape, list) and all(isinstance(d, (int, str)) for d in shape):
        return "(" + ", ".join(str(d) for d in shape) + ")"
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    return str(shape)


# -- checking a report read from a file ------------------------------------------------------

_FAILURE_KEYS = ("node", "module", "type", "input_shapes", "message", "kind")
ABSENT = "absent"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _bad(where: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{where}: expected {expected}, got {_kind(value)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _need(
    container: dict[str, Any], key: str, where: str, check: Any, expected: str, optional: Any
) -> None:
    """`optional`: False (required), ABSENT (may be left out, never null), True (may be left
    out or null)."""
    if key not in container:
        if optional:
            return
        raise ValueError(f"{where}.{key}: missing")
    value = container[key]
    if optional is True and value is None:
        return
    if not check(value):
        raise _bad(f"{where}.{key}", expected, value)


# A size a symbolic capture could not make a number: an expression in data-dependent sizes
# (`u0`, `Min(100, u9)`) or input sizes.
_SYMBOLIC_DIM = re.compile(r"[A-Za-z0-9_ ()+*/%,.-]{1,200}")


def _is_shape(value: object, depth: int = 0, in_dims: bool = False) -> bool:
    if depth > 64:
        return False
    if value is None or _is_int(value):
        return True
    if isinstance(value, str):
        # A size only, inside a tensor's list of sizes; never a whole shape or an entry's.
        return in_dims and _SYMBOLIC_DIM.fullmatch(value) is not None
    if isinstance(value, list):
        return all(_is_shape(v, depth + 1, True) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_shape(v, depth + 1) for k, v in value.items())
    return False


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_rf(value: object, depth: int = 0) -> bool:
    if not isinstance(value, dict) or depth > 8:
        return False
    for key in ("size", "stride", "padding"):
        axes = value.get(key, [])
        if not (
            isinstance(axes, list)
            and all(isinstance(v, (int, float, str)) or v is None for v in axes)
        ):
            return False
    return "flattened" not in value or _is_rf(value["flattened"], depth + 1)


def _is_span(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (2, 3)
        and all(v is None or _is_int(v) for v in value)
    )


def _is_domain(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    for axis, spans in value.items():
        if axis in ("bounds", "open"):
            if not (isinstance(spans, list) and all(isinstance(b, dict) for b in spans)):
                return False
        elif isinstance(spans, list) and not all(_is_span(s) for s in spans):
            return False
    return True


# (key, check, expected, optional) for each record; the views rely on these types.
_NODE_FIELDS: tuple[tuple[str, Any, str, Any], ...] = (
    ("name", lambda v: isinstance(v, str), "a string", False),
    ("op", lambda v: isinstance(v, str), "a string", False),
    ("target", lambda v: isinstance(v, str), "a string", False),
    ("module", lambda v: isinstance(v, str), "a string or null", True),
    ("type", lambda v: isinstance(v, str), "a string", False),
    ("inputs", _is_str_list, "a list of node names", False),
    ("shape", _is_shape, "a shape (a list of integers, nested lists or an object)", False),
    ("dtype", lambda v: isinstance(v, str), "a string or null", True),
    ("params", _is_int, "an integer", True),
    ("rf", _is_rf, "a receptive-field object", True),
    ("rf_covers_input", lambda v: isinstance(v, bool), "a boolean", True),
    (
        "rf_covers_input_up_to",
        lambda v: isinstance(v, list) and all(x is None or _is_int(x) for x in v),
        "a list of integers",
        True,
    ),
    ("depends_on_input", lambda v: isinstance(v, str), "a string", True),
    ("shape_formula", _is_str_list, "a list of strings", True),
    ("macs", _is_int, "an integer", True),
    ("flops", _is_int, "an integer", True),
    ("activation_bytes", _is_int, "an integer", True),
    (
        "cost_per_element",
        lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v),
        "a list of two integers",
        True,
    ),
    (
        "missing",
        lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
        "an object of strings",
        True,
    ),
)
_MODULE_FIELDS: tuple[tuple[str, Any, str, Any], ...] = (
    ("path", lambda v: isinstance(v, str), "a string", False),
    ("type", lambda v: isinstance(v, str), "a string", False),
    ("params", _is_int, "an integer", False),
    ("calls", _is_int, "an integer", False),
    ("shape", _is_shape, "a shape", True),
    ("rf", _is_rf, "a receptive-field object", True),
    ("depends_on_input", lambda v: isinstance(v, str), "a string", True),
    ("macs", _is_int, "an integer", True),
    ("flops", _is_int, "an integer", True),
)
_MODULE_REF_FIELDS: tuple[tuple[str, Any, str, Any], ...] = (
    ("path", lambda v: isinstance(v, str), "a string", False),
    ("params", _is_int, "an integer", False),
)
_FAILURE_FIELDS: tuple[tuple[str, Any, str, Any], ...] = (
    ("node", lambda v: isinstance(v, str), "a string", False),
    ("module", lambda v: isinstance(v, str), "a string or null", True),
    ("type", lambda v: isinstance(v, str), "a string", False),
    ("input_shapes", lambda v: isinstance(v, list), "a list", False),
    ("message", lambda v: isinstance(v, str), "a string", False),
    ("kind", lambda v: v in ("rejected", "unsupported"), '"rejected" or "unsupported"', True),
)
_TOTALS_FIELDS: tuple[tuple[str, Any, str, Any], ...] = (
    ("params", _is_int, "an integer", False),
    ("trainable_params", _is_int, "an integer", False),
    ("param_bytes", _is_int, "an integer", False),
    ("buffers", _is_int, "an integer", False),
    ("macs", _is_int, "an integer", ABSENT),
    ("flops", _is_int, "an integer", ABSENT),
    ("peak_activation_bytes", _is_int, "an integer", ABSENT),
    ("uncounted", _is_str_list, "a list of strings", ABSENT),
)
_SOURCE_FIELDS: tuple[tuple[str, Any, str, Any], ...] = (
    ("input", _is_str_list, "a list of strings", ABSENT),
    ("mode", lambda v: isinstance(v, str), "a string", ABSENT),
    ("trace", lambda v: isinstance(v, str), "a string", ABSENT),
    ("model", lambda v: isinstance(v, str), "a string", ABSENT),
    ("model_args", lambda v: isinstance(v, dict), "an object", ABSENT),
    ("captured_until", lambda v: isinstance(v, str), "a string", ABSENT),
)


def _check_record(record: object, where: str, spec: tuple[tuple[str, Any, str, Any], ...]) -> None:
    if not isinstance(record, dict):
        raise _bad(where, "an object", record)
    for key, check, expected, optional in spec:
        _need(record, key, where, check, expected, optional)


def _check_list(
    data: dict[str, Any], key: str, spec: tuple[tuple[str, Any, str, Any], ...]
) -> None:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise _bad(key, "a list", items)
    for i, item in enumerate(items):
        _check_record(item, f"{key}[{i}]", spec)


def _check_report(data: dict[str, Any]) -> None:
    """Raise ValueError naming the first field whose type the views cannot use."""
    for key in ("source", "model", "input", "nodes", "modules", "totals"):
        if key not in data:
            raise ValueError(f"{key}: missing")
    _check_record(data["source"], "source", _SOURCE_FIELDS)
    if not isinstance(data["model"], str):
        raise _bad("model", "a string", data["model"])
    if not (isinstance(data["input"], list) and all(_is_int(d) for d in data["input"])):
        raise _bad("input", "a list of integers", data["input"])
    _check_list(data, "nodes", _NODE_FIELDS)
    _check_list(data, "modules", _MODULE_FIELDS)
    _check_record(data["totals"], "totals", _TOTALS_FIELDS)
    _check_list(data, "dead_modules", _MODULE_REF_FIELDS)
    _check_list(data, "train_only_modules", _MODULE_REF_FIELDS)
    if data.get("failure") is not None:
        _check_record(data["failure"], "failure", _FAILURE_FIELDS)
    checks = (
        ("domain", _is_domain, "an object of [lo, hi] spans per axis"),
        ("verdict", lambda v: isinstance(v, str), "a string"),
        (
            "aligned_multiple",
            lambda v: isinstance(v, dict) and all(_is_int(x) for x in v.values()),
            "an object of integers",
        ),
    )
    for key, check, expected in checks:
        value = data.get(key)
        if value is not None and not check(value):
            raise _bad(key, expected, value)
