"""MkDocs plugin: `plugins: [search, shapetrace]` in mkdocs.yml, then in any page

    ```shapetrace resnet50 --input 224 --depth 1
    ```

is replaced at build time by the model's diagram (inline SVG, a tooltip per box), its table
and its verdict. The words after `shapetrace` (and any lines inside the block) are the CLI's:
MODEL, `--input`, `--depth`, `--model-args`, `--train`, `--rankdir`, `--theme`, and `--show`
(any of diagram, table, verdict; all by default).

Options in mkdocs.yml: `cache_dir` (default `.cache/shapetrace`, relative to mkdocs.yml; the
site folder is emptied on every build, so the cache lives outside it) and `paths` (folders put
on sys.path so `package.module:Name` finds the project's code; default `.`, the folder of
mkdocs.yml). A model that breaks, cannot be analysed, or a missing Graphviz `dot` is a
warning, never a failed build (unless `mkdocs build --strict`). See docs/mkdocs.md.
"""

from __future__ import annotations

import html
import re
import shlex
from pathlib import Path
from typing import Any

from mkdocs.config import config_options
from mkdocs.config.base import Config
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import BasePlugin, get_plugin_logger
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

from shapetrace.embed import Cache, Embedded, add_sys_paths, embed, request_from_args
from shapetrace.errors import ShapetraceError
from shapetrace.safetext import plain

log = get_plugin_logger(__name__)

_OPEN = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>.*)$")


class ShapetraceConfig(Config):
    """The plugin's options in mkdocs.yml."""

    cache_dir = config_options.Type(str, default=".cache/shapetrace")
    paths = config_options.ListOfItems(config_options.Type(str), default=["."])


class ShapetracePlugin(BasePlugin[ShapetraceConfig]):
    """Replaces each ```` ```shapetrace MODEL ...``` ```` block with the diagram and table."""

    def __init__(self) -> None:
        self.root = Path(".")
        self.cache = Cache(None)

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig | None:
        self.root = Path(config.config_file_path or "mkdocs.yml").resolve().parent
        self.cache = Cache(self.root / self.config.cache_dir)
        add_sys_paths(self.root / path for path in self.config.paths)
        return config

    def on_page_markdown(
        self, markdown: str, /, *, page: Page, config: MkDocsConfig, files: Files
    ) -> str | None:
        count = 0

        def render(words: str) -> str:
            nonlocal count
            count += 1
            base = Path(page.file.abs_src_path or self.root).parent
            try:
                request = request_from_args(shlex.split(words))
            except (ShapetraceError, ValueError, SystemExit) as exc:  # SystemExit: --help
                message = f"bad block `{plain(words)}`: {exc}"
                log.warning(f"{page.file.src_uri}: {message}")
                return _error_html(f"shapetrace: {message}")
            prefix = f"shapetrace-{page.file.src_uri}-{count}"
            result = embed(request, self.cache, base, re.sub(r"[^\w-]", "-", prefix))
            for message in result.warnings:  # the plugin's logger says `shapetrace: ` itself
                log.warning(f"{page.file.src_uri}: {message.removeprefix('shapetrace: ')}")
            return block_html(result)

        return replace_blocks(markdown, render)


def replace_blocks(markdown: str, render: Any) -> str:
    """`markdown` with each fenced block whose info string starts with `shapetrace` replaced by
    `render(words)`, the words after it and the block's lines. Other fenced blocks (showing the
    syntax, say) are left alone, with whatever they contain."""
    lines = markdown.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened:
            out.append(lines[i])
            i += 1
            continue
        fence = opened["fence"]
        closing = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        info = opened["info"].split(None, 1)
        if info and info[0] == "shapetrace":
            words = " ".join([info[1] if len(info) > 1 else "", *lines[i + 1 : end]])
            out.extend(["", render(words), ""])
        else:
            out.extend(lines[i : end + 1])
        i = end + 1
    return "\n".join(out)


def _text(text: str) -> str:
    return html.escape(plain(text), quote=True)


def _error_html(message: str) -> str:
    text = f"<p><strong>{_text(message)}</strong></p>"
    return f'<div class="shapetrace shapetrace-error">{text}</div>'


def table_html(result: Embedded) -> str:
    """The table as HTML, nesting shown by em spaces and module rows in bold."""
    columns, rows = result.table()
    head = "".join(f"<th>{_text(c.title)}</th>" for c in columns)
    body = []
    for row, cells in rows:
        parts = []
        for index, (column, cell) in enumerate(zip(columns, cells, strict=True)):
            text = _text(cell)
            if index == 0:
                text = "\u2003" * row.level + (
                    f"<strong>{text}</strong>" if row.kind != "node" else text
                )
            align = ' style="text-align: right"' if column.numeric else ""
            parts.append(f"<td{align}>{text}</td>")
        body.append(f"<tr>{''.join(parts)}</tr>")
    return (
        f'<table class="shapetrace-table"><caption>{_text(result.heading)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def block_html(result: Embedded) -> str:
    """One block's HTML, in one raw HTML block (no blank line, which would end it)."""
    if result.report is None:
        return _error_html(result.warnings[0] if result.warnings else "shapetrace: no report")
    parts = ['<div class="shapetrace">']
    show = result.request.show
    if "diagram" in show and result.svg is not None:
        parts.append(f'<div class="shapetrace-diagram">{result.svg}</div>')
    if "table" in show:
        parts.append(table_html(result))
        items = "".join(f"<li>{_text(line)}</li>" for line in result.totals())
        parts.append(f'<ul class="shapetrace-totals">{items}</ul>')
    if "verdict" in show:
        parts.extend(
            f'<p class="shapetrace-verdict">{_text(line)}</p>' for line in result.verdict()
        )
    parts.append("</div>")
    return "\n".join(line for line in "\n".join(parts).split("\n") if line.strip())
