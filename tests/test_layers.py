"""The package's layers import in one direction, with no cycles, lazy imports included.

From the bottom: the torch-free contract (the Report, formulas, domains, `--input` parsing,
errors); the pipeline (sources, capture, ops, passes, analysis: every module not named below);
the tasks (check, sweep, diff on one per-size runner); the views; the package itself (its public
API: `shapetrace.analyze`, `shapetrace.Report`); the CLI on top. Each module's imports are read
with `ast`, at module level, inside functions and under TYPE_CHECKING alike (those last are
left out of the cycle check only: they never run).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import networkx

PACKAGE = Path(__file__).parent.parent / "shapetrace"

LAYERS = ("contract", "pipeline", "tasks", "views", "api", "cli")
CONTRACT = {
    "shapetrace.domain",
    "shapetrace.errors",
    "shapetrace.formula",
    "shapetrace.inputs",
    "shapetrace.report",
    "shapetrace.version",
}
# Modules that never import torch, not even inside a function; the TUI's worker asks the
# analysis API for a fresh report, so that one call may.
TORCH = {"torch", "torchvision"}
WORKER = ("shapetrace.views.tui.request", "analyse")
# Tasks return data: they neither parse arguments nor render.
NOT_IN_TASKS = {"argparse", "rich", "graphviz", "textual"}
# Private helpers of analysis.py that the per-size runner still calls, until analysis.py
# (another change in flight) makes them public.
PENDING_PRIVATE: set[tuple[str, str, str]] = set()


def layer(module: str) -> str:
    if module in CONTRACT:
        return "contract"
    if module == "shapetrace":
        return "api"
    for prefix, name in (
        ("shapetrace.tasks", "tasks"),
        ("shapetrace.views", "views"),
        ("shapetrace.cli", "cli"),
        ("shapetrace.__main__", "cli"),
        *((f"shapetrace.{m}", "cli") for m in ("embed", "sphinx", "mkdocs", "precommit")),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "pipeline"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # a module of the package, or a third-party top-level package
    line: int
    function: str | None  # the enclosing function of a lazy import
    type_checking: bool  # under `if TYPE_CHECKING:`, never run


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def sources() -> dict[str, tuple[ast.Module, bool]]:
    """Each module of the package: its syntax tree, and whether it is a package."""
    return {
        module_name(path): (ast.parse(path.read_text(encoding="utf-8")), path.name == "__init__.py")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = sources()[module][1]
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _own(name: str) -> str | None:
    """The longest module of the package that `name` (a dotted import path) lies in."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in sources():
            return ".".join(parts[:end])
    return None


@cache
def reexports() -> dict[tuple[str, str], str]:
    """(package, name) -> the module a package's `__init__` takes `name` from, so that
    `from shapetrace import __version__` depends on shapetrace.version, not on the package."""
    found = {}
    for module, (tree, is_package) in sources().items():
        if not is_package:
            continue
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                origin = _absolute(module, node)
                for alias in node.names:
                    target = _own(f"{origin}.{alias.name}") or _own(origin)
                    if target is not None:
                        found[(module, alias.asname or alias.name)] = target
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [_own(a.name) or a.name.split(".")[0] for a in node.names]
    origin = _absolute(module, node)
    if _own(origin) is None:
        return [origin.split(".")[0]]
    targets = []
    for alias in node.names:
        if f"{origin}.{alias.name}" in sources():
            targets.append(f"{origin}.{alias.name}")
        else:
            targets.append(reexports().get((origin, alias.name), _own(origin) or origin))
    return targets


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.functions: list[str] = []
        self.type_checking = False
        self.found: list[Import] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        before, self.type_checking = self.type_checking, self.type_checking or guarded
        for child in node.body:
            self.visit(child)
        self.type_checking = before
        for child in node.orelse:
            self.visit(child)

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        function = self.functions[0] if self.functions else None
        for target in _targets(self.module, node):
            self.found.append(
                Import(self.module, target, node.lineno, function, self.type_checking)
            )

    visit_Import = visit_ImportFrom = _import


@cache
def imports() -> list[Import]:
    found = []
    for module, (tree, _) in sources().items():
        collector = _Collector(module)
        collector.visit(tree)
        found += [i for i in collector.found if i.target != module]
    return found


def internal(found: list[Import]) -> list[Import]:
    return [i for i in found if i.target in sources()]


def graph(found: list[Import]) -> networkx.DiGraph:
    g = networkx.DiGraph()
    g.add_nodes_from(sources())
    g.add_edges_from((i.source, i.target) for i in found)
    return g


def test_the_layer_map_names_modules_that_exist() -> None:
    modules = set(sources())
    assert modules >= CONTRACT
    assert {"shapetrace.analysis", "shapetrace.tasks.runner", "shapetrace.cli"} <= modules
    assert {layer(m) for m in modules} == set(LAYERS)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        f"{i.source} ({layer(i.source)}) imports {i.target} ({layer(i.target)}), line {i.line}"
        for i in internal(imports())
        if rank[layer(i.target)] > rank[layer(i.source)]
    ]
    assert upward == []


def test_no_import_cycles_lazy_imports_included() -> None:
    # Imports under TYPE_CHECKING never run: annotations may name each other's types.
    runs = graph([i for i in internal(imports()) if not i.type_checking])
    cycles = sorted(" -> ".join([*c, c[0]]) for c in networkx.simple_cycles(runs))
    assert cycles == []


def test_contract_and_views_never_import_torch() -> None:
    # From these modules every import counts, lazy ones too (bar the worker's); from the
    # modules they reach, only those run when the module is imported.
    torch_free = {m for m in sources() if layer(m) in ("contract", "views")}
    runs = [
        i
        for i in imports()
        if not i.type_checking
        and (i.function is None or (i.source in torch_free and (i.source, i.function) != WORKER))
    ]
    reach = graph(runs)
    leaks = {
        m: sorted(networkx.descendants(reach, m) & TORCH)
        for m in sorted(torch_free)
        if networkx.descendants(reach, m) & TORCH
    }
    assert leaks == {}
    worker = [i for i in imports() if (i.source, i.function) == WORKER]
    assert [i.target for i in worker] == ["shapetrace.analysis"]


def test_tasks_neither_parse_arguments_nor_render() -> None:
    found = [
        f"{i.source} imports {i.target}"
        for i in imports()
        if layer(i.source) in ("contract", "tasks") and i.target in NOT_IN_TASKS
    ]
    assert found == []


def _private_uses(module: str, tree: ast.Module) -> set[tuple[str, str, str]]:
    """(module, other module, name) for each `_name` of another module this one uses."""
    aliases: dict[str, str] = {}
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _own(_absolute(module, node)):
            origin = _absolute(module, node)
            for alias in node.names:
                if f"{origin}.{alias.name}" in sources():
                    aliases[alias.asname or alias.name] = f"{origin}.{alias.name}"
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    used.add((module, origin, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in sources():
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            used.add((module, aliases[node.value.id], node.attr))
    return used


def test_no_module_uses_a_private_helper_of_another() -> None:
    used = set()
    for module, (tree, _) in sources().items():
        used |= _private_uses(module, tree)
    assert sorted(used - PENDING_PRIVATE) == []
    assert sorted(PENDING_PRIVATE - used) == [], "no longer used: drop from PENDING_PRIVATE"
