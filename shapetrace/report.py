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
        """Rebuild a Report from `to_dict()` output; unknown keys are ignored."""
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ValueError(
                f"unsupported report schema {schema!r} (this shapetrace reads {SCHEMA})"
            )
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
            failure=Failure(**failure) if failure else None,
            domain=data.get("domain"),
            verdict=data.get("verdict"),
            aligned_multiple=data.get("aligned_multiple"),
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        """Parse JSON text written by `to_json()` (ValueError if it is not a report)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, AttributeError) as exc:
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
