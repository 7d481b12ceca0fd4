"""The Report: plain, JSON-serialisable data that every view reads.

Nothing here imports torch, so a saved report renders without the model. The schema number
changes only when a field is renamed or changes meaning; new fields may appear at any time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

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
    """`[1, 3, 224, 224]` -> `(1, 3, 224, 224)`; nested outputs are shown recursively."""
    if shape is None:
        return "-"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {format_shape(v)}" for k, v in shape.items()) + "}"
    if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
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


def _is_shape(value: object, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if value is None or _is_int(value):
        return True
    if isinstance(value, list):
        return all(_is_shape(v, depth + 1) for v in value)
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
        if axis == "bounds":
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
