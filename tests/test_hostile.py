"""Unusual but legal models: non-tensor outputs, in-place ops, modules shared between branches,
and a billion-parameter model analysed without allocating its weights."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import eager_module_calls

import shapetrace

DATA = Path(__file__).parent / "data"
MODELS = f"{DATA / 'user_models.py'}"
EXAMPLES = Path(__file__).parent.parent / "examples"


def _load(name: str) -> torch.nn.Module:
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_models_hostile", MODELS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)()


def test_forward_returning_a_dict_with_a_number() -> None:
    report = shapetrace.analyze(f"{MODELS}:ReturnsDict", "1x3x16x16")
    assert report.failure is None
    assert report.node("conv").shape == [1, 8, 14, 14]
    assert report.node("getitem").value == 8


def test_in_place_ops_keep_their_shapes() -> None:
    report = shapetrace.analyze(f"{MODELS}:InPlace", "1x3x16x16")
    assert [n.type for n in report.nodes[1:]] == ["Conv2d", "relu_", "add", "mul_"]
    assert {tuple(n.shape) for n in report.nodes[1:]} == {(1, 8, 16, 16)}


def test_module_shared_between_branches_is_counted_once_and_placed_in_both() -> None:
    report = shapetrace.analyze(f"{MODELS}:SharedBranches", "1x3x16x16")
    shared = [n for n in report.nodes if n.target == "shared"]
    assert [n.module for n in shared] == ["left.0", "right.1"]
    assert [n.shape for n in shared] == [[1, 3, 16, 16], [1, 3, 8, 8]]
    assert report.totals["params"] == 84
    model = _load("SharedBranches")
    calls = eager_module_calls(model, torch.randn(1, 3, 16, 16))
    assert calls[id(model.shared)] == [n.shape for n in shared]


def test_billion_parameter_decoder_is_analysed_on_meta() -> None:
    report = shapetrace.analyze(
        f"{EXAMPLES / 'decoder_lm.py'}:DecoderLM", "1x1024", model_args={"layers": 24}
    )
    width, vocab, context, layers = 2048, 50257, 2048, 24
    per_block = 2 * 2 * width + (width * 3 * width + 3 * width) + (width * width + width)
    per_block += (width * 4 * width + 4 * width) + (4 * width * width + width)
    expected = vocab * width + context * width + layers * per_block + 2 * width + width * vocab
    assert report.totals["params"] == expected > 1_300_000_000
    assert report.node("head").shape == [1, 1024, vocab]
    assert report.node("ids").dtype == "int64"


def test_optional_forward_argument_left_out_is_not_traced_as_a_tensor() -> None:
    without = shapetrace.analyze(f"{MODELS}:OptionalInput", "1x3x8x8")
    assert without.failure is None and "fc" not in {n.name for n in without.nodes}
    with_y = shapetrace.analyze(f"{MODELS}:OptionalInput", "1x3x8x8,y=1x10")
    assert with_y.failure is None and with_y.node("fc").shape == [1, 4]
    # The keyword tensor is taken literally, not completed from the first convolution.
    assert with_y.source["input"] == ["1x3x8x8", "y=1x10"]
    model = _load("OptionalInput").eval()
    with torch.no_grad():
        assert list(model(torch.randn(1, 3, 8, 8)).shape) == without.nodes[-1].shape
        real = model(torch.randn(1, 3, 8, 8), torch.randn(1, 10))
    assert list(real.shape) == with_y.nodes[-1].shape


def test_training_mode_batch_norm_rejects_one_value_per_channel_as_eager_does() -> None:
    report = shapetrace.analyze("resnet18", "32", train=True)
    assert report.failure is not None
    assert report.failure.node == "layer4.0.bn1"
    assert "more than 1 value per channel" in report.failure.message
    assert shapetrace.analyze("resnet18", "64", train=True).failure is None


# -- Hostile names: terminal escapes, rich markup and HTML in what the model or report says ----

# OSC 0 sets the window title, OSC 52 writes the clipboard; [link=...] would be a live link and
# [/x] a rich markup error; the HTML would run wherever Markdown is rendered.
TITLE = "\x1b]0;pwned\x07"
CLIPBOARD = "\x1b]52;c;ZXZpbA==\x07"
HOSTILE_PATH = "/tmp/[/x]/[link=https://evil.example]m.py:Net"
HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def hostile_report() -> shapetrace.Report:
    from shapetrace.report import Failure, Module, Node, Report

    block = f"body{TITLE}"
    conv = f"{block}.conv{CLIPBOARD}"
    nodes = [
        Node("x", "placeholder", "x", None, "Input", [], [1, 3, 8, 8], "float32"),
        Node(
            conv,
            "call_module",
            conv,
            conv,
            f"Conv[bold]{HTML}",
            ["x"],
            [1, 4, 8, 8],
            "float32",
            112,
            rf={"size": [3, 3], "stride": [1, 1]},
            depends_on_input="scales",
            macs=7168,
            activation_bytes=1024,
        ),
        Node(
            f"fc{HTML}",
            "call_module",
            "fc",
            "fc",
            "Linear",
            [conv],
            None,
            None,
            10,
            depends_on_input="bound",
        ),
    ]
    modules = [
        Module(block, f"Block{TITLE}", 112, 1, [1, 4, 8, 8]),
        Module(conv, "Conv2d", 112, 1, [1, 4, 8, 8]),
        Module("fc", "Linear", 10, 0),
    ]
    return Report(
        source={
            "model": HOSTILE_PATH,
            "input": [f"1x3x8x8{TITLE}"],
            "mode": "eval",
            "trace": f"fx{CLIPBOARD}",
        },
        model=f"{HOSTILE_PATH}{TITLE}",
        input=[1, 3, 8, 8],
        nodes=nodes,
        modules=modules,
        totals={
            "params": 122,
            "trainable_params": 122,
            "param_bytes": 488,
            "buffers": 0,
            "macs": 7168,
            "flops": 14336,
            "peak_activation_bytes": 1024,
            "uncounted": [f"attn{CLIPBOARD}"],
        },
        dead_modules=[
            {"path": f"dead{TITLE}[link=https://evil.example]x[/link]", "type": "X", "params": 3}
        ],
        failure=Failure(
            f"fc{HTML}",
            "fc",
            "Linear",
            [[1, 256]],
            f"fc{HTML}: [/x] received 256 features{CLIPBOARD}",
        ),
        domain={"H": [[8, 8]], "W": [[8, 8]], "bounds": []},
        verdict=f"Breaks at [link=https://evil.example]fc[/link]{TITLE} {HTML}",
    )


def assert_inert(text: str, *, colour: bool = False) -> None:
    """No OSC sequence, bell or C1 control reached the output; colour, if on, is plain CSI."""
    assert "\x1b]" not in text and "\x07" not in text and "\x9b" not in text
    if not colour:
        assert "\x1b" not in text
    else:
        assert all(text[i + 1] == "[" for i, c in enumerate(text) if c == "\x1b")


def test_table_tree_and_summary_show_escapes_and_markup_as_text(monkeypatch) -> None:
    import io

    from shapetrace.views import table

    report = hostile_report()
    for depth in (None, 1):
        plain_text = table.render_text(report, depth)
        assert_inert(plain_text)
        assert "[/x]" in plain_text and "[link=https://evil.example]" in plain_text
        assert "\\x1b]0;pwned\\x07" in plain_text  # shown, escaped
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = io.StringIO()
    table.render(report, file=coloured, width=200)
    assert "\x1b[" in coloured.getvalue()
    assert_inert(coloured.getvalue(), colour=True)  # no OSC 8 link from [link=...]
    monkeypatch.setattr(table, "LARGE", 0)  # the aligned plain-text path of big graphs
    assert_inert(table.render_text(report))


def test_markdown_escapes_html_in_every_cell_and_line() -> None:
    from shapetrace.views import markdown

    text = markdown.render(hostile_report())
    assert_inert(text)
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_show_renders_a_hostile_report_inert_and_says_one_line(tmp_path: Path, capsys) -> None:
    from shapetrace.cli import main

    folder = tmp_path / "[" / "x][link=https:e]"  # the path holds `[/x]`
    folder.mkdir(parents=True)
    saved = folder / f"r{TITLE}.json"
    saved.write_text(hostile_report().to_json())
    for fmt in ("table", "markdown", "json"):
        assert main(["show", str(saved), "--format", fmt]) == 1  # the report records a break
        out, err = capsys.readouterr()
        if fmt != "json":  # JSON keeps the names exact, escaped by JSON itself
            assert_inert(out)
        assert_inert(err)
        assert len(err.strip().splitlines()) == 1 and "[/x] received 256" in err
    assert main(["show", str(folder / f"missing{CLIPBOARD}.json")]) == 2
    err = capsys.readouterr().err
    assert_inert(err)
    assert "[/x]" in err and len(err.strip().splitlines()) == 1


def test_sweep_check_and_diff_views_show_names_inert() -> None:
    from shapetrace.tasks.diff import diff_reports
    from shapetrace.tasks.runner import CheckResult
    from shapetrace.tasks.sweep import Sweep, SweepRow
    from shapetrace.views import check, diff, sweep

    bad = CheckResult("8x8", "rejected", None, f"fc{TITLE}", f"{HTML} [/x]{CLIPBOARD}")
    assert_inert(check.line(bad))
    result = Sweep(
        f"{HOSTILE_PATH}{TITLE}",
        f"1x3x8x8{CLIPBOARD}",
        ["H", "W"],
        [SweepRow({"H": 8, "W": 8}, bad, False)],
        domain={
            "H": [[8, 8]],
            "W": [[8, 8]],
            "bounds": [{"node": f"fc{TITLE}", "axis": "H", "constraint": "c"}],
        },
        verdict=f"{HTML}{TITLE}",
    )
    for fmt in ("table", "markdown"):
        text = sweep.render(result, fmt)
        assert_inert(text)
        assert "<script>" not in text or fmt == "table"
    a, b = hostile_report(), hostile_report()
    b.nodes[1].shape = [1, 4, 4, 4]
    b.modules.append(shapetrace.report.Module(f"extra{TITLE}{HTML}", f"T{CLIPBOARD}", 1, 1))
    compared = diff_reports(a, b)
    assert not compared.same
    text = diff.render_text(compared)
    assert_inert(text)
    assert "[/x]" in text or "[link=" in text
    md = diff.render_markdown(compared)
    assert_inert(md)
    assert "<script>" not in md and "<img" not in md
