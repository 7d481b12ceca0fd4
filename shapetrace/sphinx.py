"""Sphinx extension: `extensions = ["shapetrace.sphinx"]`, then in any page

.. code-block:: rst

    .. shapetrace:: resnet50
       :input: 1x3x224x224
       :depth: 2
       :show: diagram, table, verdict

draws the model's diagram (inline SVG, with a tooltip per box), its table and its verdict at
build time. Options as the CLI's: `:input:`, `:depth:`, `:model-args:`, `:train:`,
`:rankdir:`, `:theme:`, and `:show:` (any of diagram, table, verdict; all by default).

A model that breaks at the input, a model that cannot be analysed and a missing Graphviz `dot`
are Sphinx warnings (type `shapetrace`), never a failed build. Analyses are cached on disk
(`shapetrace_cache_dir`, by default `shapetrace/` in the doctree folder), keyed by the model,
its arguments, the input and the content of a user model's source; a page that uses a model
file of the project is read again when that file changes. See docs/sphinx.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from shapetrace.embed import RANKDIRS, SHOW, THEMES, Cache, Embedded, Request, embed, parse_show
from shapetrace.errors import UsageError
from shapetrace.version import __version__

logger = logging.getLogger(__name__)

_CACHES: dict[str, Cache] = {}


def _show(text: str | None) -> tuple[str, ...]:
    try:
        return parse_show(text or "")
    except UsageError as exc:
        raise ValueError(str(exc)) from exc


def _choice(values: tuple[str, ...]) -> Any:
    return lambda text: directives.choice(text, values)


def cache_for(app: Sphinx) -> Cache:
    """The build's analysis cache: `shapetrace_cache_dir` (relative to the conf.py folder), or
    `shapetrace/` in the doctree folder."""
    setting = app.config.shapetrace_cache_dir
    folder = Path(app.confdir, setting) if setting else Path(app.doctreedir, "shapetrace")
    return _CACHES.setdefault(str(folder.resolve()), Cache(folder))


class ShapetraceDirective(SphinxDirective):
    """`.. shapetrace:: MODEL` with the CLI's options."""

    required_arguments = 1
    has_content = False
    option_spec = {  # noqa: RUF012 (docutils reads it from the class)
        "input": directives.unchanged_required,
        "depth": directives.positive_int,
        "show": _show,
        "model-args": directives.unchanged_required,
        "train": directives.flag,
        "rankdir": _choice(RANKDIRS),
        "theme": _choice(THEMES),
    }

    def run(self) -> list[nodes.Node]:
        request = Request(
            model=self.arguments[0],
            input=self.options.get("input"),
            model_args=self.options.get("model-args"),
            train="train" in self.options,
            depth=self.options.get("depth"),
            show=self.options.get("show", SHOW),
            rankdir=self.options.get("rankdir"),
            theme=self.options.get("theme", "light"),
        )
        serial = self.env.new_serialno("shapetrace")
        result = embed(
            request,
            cache_for(self.env.app),
            base=Path(self.env.doc2path(self.env.docname)).parent,
            root=Path(self.env.srcdir),
            id_prefix=f"shapetrace-{serial}",
        )
        for path in result.files:
            self.env.note_dependency(str(path))
        for message in result.warnings:
            logger.warning(message, location=self.get_location(), type="shapetrace")
        return [_container(result)]


def _container(result: Embedded) -> nodes.container:
    box = nodes.container(classes=["shapetrace"])
    if result.report is None:
        note = nodes.admonition(classes=["warning"])
        note += nodes.title(text="shapetrace")
        note += nodes.paragraph(text=result.warnings[0] if result.warnings else "no report")
        box += note
        return box
    show = result.request.show
    if "diagram" in show and result.svg is not None:
        html = f'<div class="shapetrace-diagram">{result.svg}</div>'
        box += nodes.raw("", html, format="html")
    if "table" in show:
        box += _table(result)
        box += _bullets(result.totals())
    if "verdict" in show:
        for line in result.verdict():
            box += nodes.paragraph(text=line, classes=["shapetrace-verdict"])
    return box


def _row(cells: list[str], strong: bool = False) -> nodes.row:
    """A table row; `strong` sets its first cell in bold."""
    row = nodes.row()
    for index, text in enumerate(cells):
        paragraph = nodes.paragraph()
        bold = strong and index == 0 and text
        paragraph += nodes.strong(text=text) if bold else nodes.Text(text)
        row += nodes.entry("", paragraph)
    return row


def _table(result: Embedded) -> nodes.table:
    columns, rows = result.table()
    table = nodes.table(classes=["shapetrace-table"])
    table += nodes.title(text=result.heading)
    group = nodes.tgroup(cols=len(columns))
    table += group
    for _ in columns:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    head += _row([c.title for c in columns])
    group += head
    body = nodes.tbody()
    for row, cells in rows:
        # Module rows in bold; nesting shown by em spaces, as in the Markdown view.
        cells = ["\u2003" * row.level + cells[0], *cells[1:]]
        body += _row(cells, strong=row.kind != "node")
    group += body
    return table


def _bullets(lines: list[str]) -> nodes.bullet_list:
    items = nodes.bullet_list()
    for line in lines:
        items += nodes.list_item("", nodes.paragraph(text=line))
    return items


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the `shapetrace` directive and the `shapetrace_cache_dir` setting."""
    app.add_config_value("shapetrace_cache_dir", None, "", types=[str, type(None)])
    app.add_directive("shapetrace", ShapetraceDirective)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
