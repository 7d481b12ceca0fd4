"""Docs and CI integrations, each through the real tool: a Sphinx project and a MkDocs site
built in a temporary folder (one analysis cache shared by both, so resnet18 is analysed once),
and the pre-commit hook run by `pre-commit try-repo` against this repository."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shapetrace.embed
from shapetrace.embed import inline_svg, request_from_args
from shapetrace.mkdocs import replace_blocks
from shapetrace.precommit import configured
from shapetrace.precommit import main as precommit_main

REPO = Path(__file__).resolve().parent.parent

# A model of the docs project's own code, breaking at 64: fc expects a 30x30 map.
NETS = """
from torch import nn


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear({features}, 2)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))
"""
BREAK = "fc: Linear(3600 -> 2) received 15376 features"
RESNET_VERDICT = "Verdict: Fully convolutional up to avgpool; AdaptiveAvgPool2d((1, 1))"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A docs project: its package `tinynets` and a shared analysis cache."""
    root = tmp_path_factory.mktemp("project")
    (root / "tinynets").mkdir()
    (root / "tinynets" / "__init__.py").write_text("", encoding="utf-8")
    (root / "tinynets" / "nets.py").write_text(NETS.format(features=3600), encoding="utf-8")
    return root


class Counting:
    """Wraps the analysis to count the analyses that actually run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = shapetrace.embed._analyze

        def counted(spec: str, fields: dict[str, Any]) -> Any:
            self.calls.append(spec)
            return real(spec, fields)

        monkeypatch.setattr(shapetrace.embed, "_analyze", counted)


def _sphinx_build(root: Path, fresh: bool) -> tuple[str, str]:
    from sphinx.application import Sphinx

    warnings = io.StringIO()
    src = root / "sphinx"
    app = Sphinx(
        str(src),
        str(src),
        str(root / "_build" / "html"),
        str(root / "_build" / "doctrees"),
        "html",
        status=None,
        warning=warnings,
        freshenv=fresh,
    )
    app.build()
    html = (root / "_build" / "html" / "index.html").read_text(encoding="utf-8")
    return html, warnings.getvalue()


@pytest.fixture(scope="module")
def sphinx_project(project: Path) -> Path:
    src = project / "sphinx"
    src.mkdir()
    (src / "conf.py").write_text(
        textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(project)!r})
            extensions = ["shapetrace.sphinx"]
            shapetrace_cache_dir = {str(project / "cache")!r}
        """),
        encoding="utf-8",
    )
    (src / "index.rst").write_text(
        textwrap.dedent("""
            Models
            ======

            .. shapetrace:: resnet18
               :input: 64
               :depth: 1

            .. shapetrace:: tinynets.nets:Small
               :input: 64
               :show: table, verdict

            .. shapetrace:: no_such_model
        """),
        encoding="utf-8",
    )
    return project


def test_sphinx_directive_draws_diagram_table_and_verdict_and_warns_without_failing(
    sphinx_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting(monkeypatch)
    html, warnings = _sphinx_build(sphinx_project, fresh=True)
    # resnet18's diagram inline, each box with its record on hover, and its verdict.
    assert "<svg" in html and "<?xml" not in html
    assert 'xlink:title="layer4 (Sequential)&#10;shape: (1, 512, 2, 2)' in html
    assert "formula: (N, 512, ceil(H/32), ceil(W/32))" in html
    assert RESNET_VERDICT in html
    assert '<table class="shapetrace-table' in html and "layer4" in html
    # The project's own model breaks at 64: a warning with the reason, and the page is built.
    assert f"tinynets.nets:Small breaks at input 1x3x64x64: {BREAK}" in warnings
    assert "Breaks: " + BREAK.replace("->", "-&gt;") in html
    assert "no_such_model: unknown model 'no_such_model'" in warnings
    assert "[shapetrace]" in warnings
    # An error is not cached: a fix elsewhere (conf.py's sys.path) must show at the next build.
    assert sorted(counting.calls) == ["no_such_model", "resnet18", "tinynets.nets:Small"]


def test_sphinx_rebuild_reads_unchanged_models_from_the_cache_and_edited_ones_again(
    sphinx_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sphinx_build(sphinx_project, fresh=False)  # analyses, unless the test above ran
    counting = Counting(monkeypatch)
    html, _ = _sphinx_build(sphinx_project, fresh=True)  # every page read again
    assert counting.calls == ["no_such_model"] and RESNET_VERDICT in html
    counting.calls.clear()
    # Editing the model's file makes Sphinx read the page again and shapetrace analyse it anew.
    nets = sphinx_project / "tinynets" / "nets.py"
    nets.write_text(NETS.format(features=15376), encoding="utf-8")
    try:
        html, warnings = _sphinx_build(sphinx_project, fresh=False)
    finally:
        nets.write_text(NETS.format(features=3600), encoding="utf-8")
    assert counting.calls == ["tinynets.nets:Small", "no_such_model"]
    assert "breaks at" not in warnings and "Breaks: " not in html


@pytest.fixture
def plugin_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        yield caplog


def test_mkdocs_plugin_replaces_blocks_with_diagram_and_table(
    sphinx_project: Path, monkeypatch: pytest.MonkeyPatch, plugin_logs: pytest.LogCaptureFixture
) -> None:
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    root = sphinx_project / "mk"
    (root / "docs").mkdir(parents=True)
    (root / "mkdocs.yml").write_text(
        "site_name: models\nplugins:\n  - shapetrace:\n      cache_dir: ../cache\n"
        "      paths: [..]\n",
        encoding="utf-8",
    )
    (root / "docs" / "index.md").write_text(
        textwrap.dedent("""
            # Models

            ```shapetrace resnet18 --input 64 --depth 1
            ```

            ```shapetrace tinynets.nets:Small --input 64 --show verdict
            ```

            ````markdown
            ```shapetrace left_alone
            ```
            ````
        """),
        encoding="utf-8",
    )
    counting = Counting(monkeypatch)
    build(load_config(config_file=str(root / "mkdocs.yml")))
    # The cache is shared with the Sphinx build when it ran first in this process (xdist may
    # run it elsewhere): at most the two blocks are analysed, and a rebuild analyses nothing.
    assert set(counting.calls) <= {"resnet18", "tinynets.nets:Small"}
    first = len(counting.calls)
    build(load_config(config_file=str(root / "mkdocs.yml")))
    assert len(counting.calls) == first
    html = (root / "site" / "index.html").read_text(encoding="utf-8")
    assert "<svg" in html and 'xlink:title="layer4 (Sequential)' in html
    assert RESNET_VERDICT in html and '<table class="shapetrace-table">' in html
    assert "Breaks: " + BREAK.replace("->", "-&gt;") in html
    assert "shapetrace left_alone" in html  # a block inside another fence is text
    messages = [r.getMessage() for r in plugin_logs.records]
    assert any(
        f"index.md: tinynets.nets:Small breaks at input 1x3x64x64: {BREAK}" in m for m in messages
    )


def test_fenced_blocks_other_than_shapetrace_are_kept_verbatim() -> None:
    text = "a\n~~~shapetrace resnet18\n--depth 1\n~~~\n```python\nx = 1\n```\n"
    out = replace_blocks(text, lambda words: f"<{words.strip()}>")
    assert out == "a\n\n<resnet18 --depth 1>\n\n```python\nx = 1\n```\n"
    assert request_from_args(["resnet18", "--input", "64", "--show", "table, verdict"]).show == (
        "table",
        "verdict",
    )


def test_inline_svg_drops_the_prolog_and_prefixes_ids() -> None:
    svg = '<?xml version="1.0"?>\n<!DOCTYPE svg>\n'
    svg += '<svg width="10pt" height="5pt"><g id="node1"/></svg>'
    out = inline_svg(svg, "p")
    assert out.startswith('<svg width="10pt" height="5pt" style="max-width: 100%')
    assert 'id="p-node1"' in out


def test_pre_commit_hook_reads_the_model_and_sizes_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.shapetrace.check]\nmodel = "pkg.nets:Net"\ninput = ["224", 448]\n'
        "model-args = {width = 2}\n",
        encoding="utf-8",
    )
    assert configured(tmp_path / "pyproject.toml") == [
        ["pkg.nets:Net", "--input", "224", "--input", "448", "--model-args", '{"width": 2}']
    ]


def test_pre_commit_hook_without_a_model_says_where_to_name_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert precommit_main([]) == 2
    assert "[tool.shapetrace.check]" in capsys.readouterr().err


def test_pre_commit_try_repo_refuses_a_commit_that_breaks_a_size(tmp_path: Path) -> None:
    repo = tmp_path / "user-repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text(
        '[tool.shapetrace.check]\nmodel = "codereview_resnet50"\ninput = ["224", "448"]\n',
        encoding="utf-8",
    )
    (repo / "train.py").write_text("print('train')\n", encoding="utf-8")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=env)
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "shapetrace-check"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "224x224: accepted, output (1, 2)" in out
    assert "448x448: rejected at fc_layer: Linear(2048 -> 2) received 131072 features" in out
