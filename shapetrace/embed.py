"""What the Sphinx directive and the MkDocs plugin share: one request (model, input, view
options, as the CLI takes them), its analysis through an on-disk cache, and the pieces a docs
page shows: the diagram as inline SVG, the table's cells, the totals and the verdict.

The cache stores each Report as JSON under a key made of everything the analysis depends on:
the model spec, `--model-args`, `--input`, `--train`, the versions of shapetrace, torch and
torchvision, the content of shapetrace's own source, and for a user model the content of its
file (and the Python files beside it) or of its package. A hit reads the JSON back and never
imports torch. The rendered SVG is cached beside it, keyed also by depth, rankdir and theme.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapetrace import outputs
from shapetrace.errors import ShapetraceError, UsageError, first_line
from shapetrace.inputs import parse_model_args
from shapetrace.report import Report
from shapetrace.safetext import plain
from shapetrace.version import __version__
from shapetrace.views.dot import INSTALL_HINT, diagram, dot_available, render
from shapetrace.views.summary import diagnosis_lines, heading, totals_lines
from shapetrace.views.tree import Column, Row, build_rows, cell_text, columns_for

SHOW = ("diagram", "table", "verdict")
RANKDIRS = ("TB", "LR", "BT", "RL")
THEMES = ("light", "dark")


@dataclass(frozen=True)
class Request:
    """One diagram/table on a docs page: the CLI's model options and view options."""

    model: str
    input: str | None = None
    model_args: str | None = None  # JSON, as --model-args
    train: bool = False
    depth: int | None = None
    show: tuple[str, ...] = SHOW
    rankdir: str | None = None
    theme: str = "light"

    def analysis_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": self.input,
            "model_args": parse_model_args(self.model_args),
            "train": self.train,
        }


def parse_show(text: str) -> tuple[str, ...]:
    """`diagram, table` -> ("diagram", "table"); UsageError naming the parts that are unknown."""
    parts = tuple(p for p in re.split(r"[\s,]+", text.strip()) if p)
    unknown = [p for p in parts if p not in SHOW]
    if unknown or not parts:
        raise UsageError(
            f"show: unknown part {', '.join(unknown) or '(none)'}; use any of {', '.join(SHOW)}"
        )
    return parts


def request_from_args(argv: list[str]) -> Request:
    """A request from CLI-style arguments (`resnet50 --input 224 --depth 1 --show table`)."""
    from shapetrace.cli import options

    parser = options.parser("shapetrace", "a shapetrace block", exit_codes=False)
    parser.add_argument("model", metavar="MODEL")
    options.add_model_options(parser)
    parser.add_argument("--depth", type=options.positive_int)
    parser.add_argument("--rankdir", choices=RANKDIRS)
    parser.add_argument("--theme", choices=THEMES, default="light")
    parser.add_argument("--show", type=parse_show, default=SHOW)
    args = parser.parse_args(argv)
    return Request(
        model=args.model,
        input=args.input,
        model_args=args.model_args,
        train=args.train,
        depth=args.depth,
        show=args.show,
        rankdir=args.rankdir,
        theme=args.theme,
    )


# -- the files a user model is made of ------------------------------------------------------


def resolve_spec(spec: str, base: Path, root: Path | None = None) -> tuple[str, list[Path]]:
    """The spec to analyse (a file path made absolute against `base`, or against `root` when
    it starts with `/` and `root` is given, as Sphinx reads paths) and the source files whose
    content the analysis depends on: none for a named model."""
    where, colon, _ = spec.rpartition(":")
    if not colon:
        return spec, []
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if root is not None and where.startswith("/"):
            path = root / where.lstrip("/")
        elif not path.is_absolute():
            path = base / path
        absolute = f"{path}:{spec.rpartition(':')[2]}"
        # The file's folder is on sys.path while it loads: its neighbours may be imported.
        return absolute, sorted(path.parent.glob("*.py")) if path.exists() else []
    return spec, _package_files(where.split(".")[0])


_INSTALLED = re.compile(r"[/\\](site|dist)-packages[/\\]")


def _package_files(top: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported
    except (ImportError, ValueError):
        return []
    if spec is None or _INSTALLED.search(spec.origin or ""):
        return []  # installed code changes with its version, not under the docs' feet
    if spec.submodule_search_locations:
        return sorted(
            path
            for folder in spec.submodule_search_locations
            for path in Path(folder).rglob("*.py")
        )
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


def _digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


# Modules that neither analyse nor draw: editing them keeps the cache.
_NOT_IN_KEY = ("embed.py", "sphinx.py", "mkdocs.py", "precommit.py", "cli")


def _own_source() -> str:
    """shapetrace's own code changes what an analysis says while its version stays the same."""
    package = Path(__file__).parent
    stats = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] in _NOT_IN_KEY:
            continue
        stat = path.stat()
        stats.append(f"{path.relative_to(package)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(stats).encode()).hexdigest()


def _versions() -> dict[str, str]:
    found = {"shapetrace": __version__}
    for name in ("torch", "torchvision"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "none"
    return found


# -- the cache ------------------------------------------------------------------------------


def _forget(spec: str) -> None:
    """Drop the docs project's own package of `pkg.mod:Name` from sys.modules, so that a
    long-lived docs server (sphinx-autobuild, mkdocs serve) imports the edited code, not the
    module it imported before. Installed packages (torch, torchvision) are never dropped."""
    where, colon, _ = spec.rpartition(":")
    if not colon or where.endswith(".py"):
        return
    top = where.split(".")[0]
    if top == "shapetrace":
        return
    module = sys.modules.get(top)
    location = getattr(module, "__file__", None) or ""
    if module is None or not location or _INSTALLED.search(location):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _analyze(spec: str, fields: dict[str, Any]) -> Report:
    from shapetrace.analysis import analyze

    _forget(spec)

    return analyze(spec, fields["input"], model_args=fields["model_args"], train=fields["train"])


@dataclass
class Cache:
    """Reports and SVGs on disk in `folder` (nothing on disk when None), and in memory for the
    process. `analysed` counts the analyses actually run, `hits` the reports read back."""

    folder: Path | None
    analysed: int = 0
    hits: int = 0
    _reports: dict[str, Report] = field(default_factory=dict)
    _fixed: str = field(default="", init=False)

    def key(
        self, request: Request, base: Path, root: Path | None = None
    ) -> tuple[str, str, list[Path]]:
        """(cache key, spec to analyse, source files of a user model); paths as resolve_spec."""
        spec, files = resolve_spec(request.model, base, root)
        if not self._fixed:
            self._fixed = json.dumps([_versions(), _own_source()])
        text = json.dumps(
            [self._fixed, spec, request.analysis_fields() | {"model": spec}, _digest(files)],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32], spec, files

    def report(
        self, request: Request, base: Path, root: Path | None = None
    ) -> tuple[Report, str, list[Path]]:
        """The request's Report, its cache key and the files it depends on; analyses only on a
        miss. Raises what `shapetrace.analyze` raises (ShapetraceError for the user's errors)."""
        key, spec, files = self.key(request, base, root)
        report = self._reports.get(key)
        path = self.folder / f"{key}.json" if self.folder else None
        if report is None and path is not None and path.exists():
            try:
                report = Report.from_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                report = None  # a damaged entry is analysed again
        if report is not None:
            self.hits += 1
        else:
            fields = request.analysis_fields()
            report = _analyze(spec, fields)
            self.analysed += 1
            if spec != request.model:  # show the spec as written, not the absolute path
                report.model = request.model
                report.source["model"] = request.model
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                outputs.write_text(path, report.to_json())
        self._reports[key] = report
        return report, key, files

    def svg(self, report: Report, key: str, request: Request) -> str:
        """The diagram as SVG text (UsageError when Graphviz's dot is missing)."""
        view = json.dumps([key, request.depth, request.rankdir, request.theme])
        name = hashlib.sha256(view.encode()).hexdigest()[:32]
        path = self.folder / f"{name}.svg" if self.folder else None
        if path is not None and path.exists():
            return path.read_text(encoding="utf-8")
        graph = diagram(report, depth=request.depth, rankdir=request.rankdir, theme=request.theme)
        text = render(graph, "svg").decode("utf-8")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            outputs.write_text(path, text)
        return text


# -- what a page shows ----------------------------------------------------------------------


@dataclass
class Embedded:
    """The pieces of one request for a page, and the warnings the build should show."""

    request: Request
    report: Report | None = None
    svg: str | None = None  # inline-ready <svg> element
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def heading(self) -> str:
        return heading(self.report) if self.report is not None else plain(self.request.model)

    def table(self) -> tuple[list[Column], list[tuple[Row, list[str]]]]:
        """The table's columns, and each row with its cells' plain text."""
        assert self.report is not None
        rows = build_rows(self.report, self.request.depth)
        columns = columns_for(self.report, rows)
        return columns, [(row, [cell_text(row, c.key) for c in columns]) for row in rows]

    def totals(self) -> list[str]:
        return totals_lines(self.report) if self.report is not None else []

    def verdict(self) -> list[str]:
        return diagnosis_lines(self.report) if self.report is not None else []


def embed(
    request: Request, cache: Cache, base: Path, id_prefix: str, root: Path | None = None
) -> Embedded:
    """Analyse (or read from the cache) and render one request; never raises for the model's
    or the user's errors: they become warnings, and what could be shown is shown. Relative
    model files are found from `base` (from `root` when they start with `/`)."""
    result = Embedded(request)
    name = plain(request.model)
    try:
        report, key, result.files = cache.report(request, base, root)
    except ShapetraceError as exc:
        result.warnings.append(f"shapetrace: {name}: {exc}")
        return result
    except Exception as exc:  # a docs build shows the problem and goes on
        result.warnings.append(
            f"shapetrace: {name}: internal error: {type(exc).__name__}: {first_line(exc)}"
        )
        return result
    result.report = report
    if report.failure is not None:
        shown = ", ".join(report.source.get("input", [])) or "x".join(map(str, report.input))
        verb = "cannot be analysed past" if report.failure.kind == "unsupported" else "breaks at"
        result.warnings.append(
            plain(f"shapetrace: {name} {verb} input {shown}: {report.failure.message}")
        )
    if "diagram" in request.show:
        if not dot_available():
            result.warnings.append(
                f"shapetrace: {name}: no diagram, Graphviz's dot is missing ({INSTALL_HINT})"
            )
        else:
            try:
                result.svg = inline_svg(cache.svg(report, key, request), id_prefix)
            except UsageError as exc:
                result.warnings.append(f"shapetrace: {name}: no diagram: {exc}")
    return result


_SVG_START = re.compile(r"<svg\b")
_IDS = re.compile(r'(\bid="|href="#|url\(#)')
_SIZE = re.compile(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"')


def inline_svg(svg: str, prefix: str) -> str:
    """Graphviz's SVG made fit for the middle of an HTML page: no XML prolog or DOCTYPE, every
    id prefixed (several diagrams on one page), scaled down to the page's width."""
    start = _SVG_START.search(svg)
    body = svg[start.start() :] if start else svg
    body = _IDS.sub(lambda m: f"{m.group(1)}{prefix}-", body)
    return _SIZE.sub(
        r'<svg width="\1pt" height="\2pt" style="max-width: 100%; height: auto"', body, count=1
    ).strip()


def add_sys_paths(paths: Iterable[Path]) -> None:
    """Put the docs project's folders on sys.path so `package.module:Name` imports its code."""
    for path in paths:
        text = str(path.resolve())
        if text not in sys.path:
            sys.path.insert(0, text)
