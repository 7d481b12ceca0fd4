"""Structural diff: the code-review ResNet-50 against torchvision's, one model at two sizes,
alignment that ignores names, exit codes, and the three views."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from functools import cache

import pytest

import shapetrace
from shapetrace.cli.diff import run as run_diff
from shapetrace.report import Report
from shapetrace.tasks.diff import DiffResult, diff_reports
from shapetrace.views.diff import render_markdown, render_text


@cache
def report(name: str, size: str | None = None) -> Report:
    return shapetrace.analyze(name, size)


@cache
def review_vs_torchvision() -> DiffResult:
    return diff_reports(report("codereview_resnet50"), report("resnet50"))


def notable(result: DiffResult, start: str) -> list[str]:
    return [line for line in result.notable if line.startswith(start)]


def test_review_resnet_differs_by_batchnorm_only_in_torchvision() -> None:
    result = review_vs_torchvision()
    assert not result.same
    assert "BatchNorm2d 0 vs 53" in notable(result, "Op counts")[0]
    assert {m.type for m in result.modules_only_b} == {"BatchNorm2d"}
    assert len(result.modules_only_b) == 53


def test_review_resnet_strides_the_first_1x1_of_the_last_block_of_each_stage() -> None:
    (a,) = notable(review_vs_torchvision(), "Spatial downsampling, A")
    (b,) = notable(review_vs_torchvision(), "Spatial downsampling, B")
    assert "1st of 3 Conv2d (1x1) in the last block of layer_2, layer_3, layer_4" in a
    assert "2nd of 3 Conv2d (3x3) in the first block of layer2, layer3, layer4" in b


def test_review_resnet_has_a_convolution_on_every_shortcut() -> None:
    result = review_vs_torchvision()
    (line,) = notable(result, "Residual merges")
    assert "A 16 of 16 (Conv2d x16); B 4 of 16 (Conv2d + BatchNorm2d x4)" in line
    # Each dim_equalizer either pairs with torchvision's shortcut conv or has no counterpart.
    rows = [r for r in result.nodes if r.a and r.a.endswith("dim_equalizer")]
    assert len(rows) == 13  # the three down blocks never call theirs
    paired = {r.b for r in rows if r.status == "aligned"}
    assert paired == {f"layer{k}.0.downsample.0" for k in (1, 2, 3, 4)}
    only = {m.path for m in result.modules_only_a if m.type == "Conv2d"}
    assert {r.a for r in rows if r.status == "only_a"} <= only


def test_review_resnet_shares_one_relu_across_48_call_sites() -> None:
    result = review_vs_torchvision()
    (a,) = notable(result, "Modules called more than once, A")
    (b,) = notable(result, "Modules called more than once, B")
    assert a.startswith(
        "Modules called more than once, A: act_fn (ReLU) is one object called from 48 sites"
    )
    assert "16 ReLU objects each called 3 times by its owner" in b


def test_review_resnet_has_a_fixed_pool_and_two_classes() -> None:
    result = review_vs_torchvision()
    (pool,) = [r for r in result.nodes if r.a == "avgpool"]
    assert (pool.status, pool.type_a, pool.type_b) == ("aligned", "AvgPool2d", "AdaptiveAvgPool2d")
    assert "type" in pool.changes
    assert result.totals["output"] == [[1, 2], [1, 1000]]
    assert "Output: (1, 2) vs (1, 1000)" in result.notable


def test_same_model_at_twice_the_size_scales_spatial_dims_and_keeps_the_head() -> None:
    result = diff_reports(report("resnet50", "224"), report("resnet50", "448"))
    assert not result.same
    assert not result.modules_only_a and not result.modules_only_b
    rows = result.nodes
    assert all(r.status == "aligned" and r.a == r.b for r in rows)
    fixed = [r.a for r in rows if not r.changes]
    assert fixed == ["avgpool", "flatten", "fc"]
    assert {r.factor for r in rows if r.changes} == {"x2 on dims 2, 3"}
    macs_a, macs_b = result.totals["macs"]
    assert 3.99 < macs_b / macs_a < 4.0  # the fc does not grow
    peak_a, peak_b = result.totals["peak_activation_bytes"]
    assert peak_b == 4 * peak_a
    assert "Shapes unchanged: avgpool, flatten, fc" in result.notable


def test_alignment_ignores_names() -> None:
    original = report("resnet50", "64")
    renamed = Report.from_dict(json.loads(original.to_json()))
    mapping = {n.name: f"n{i}" for i, n in enumerate(renamed.nodes)}
    for node in renamed.nodes:
        node.inputs = [mapping[i] for i in node.inputs]
        node.name = mapping[node.name]
        node.module = node.module and "m." + node.module
        node.target = "m." + node.target
    for module in renamed.modules:
        module.path = "m." + module.path
    result = diff_reports(original, renamed)
    assert result.same
    assert [(r.a, r.b) for r in result.nodes] == [(n, mapping[n]) for n in mapping]


def test_one_extra_layer_is_the_only_difference() -> None:
    base = report("resnet50", "64")
    extra = Report.from_dict(json.loads(base.to_json()))
    index = next(i for i, n in enumerate(extra.nodes) if n.name == "layer2.0.relu")
    clone = dataclasses.replace(extra.nodes[index], name="layer2.0.extra", module="layer2.0.x")
    extra.nodes.insert(index + 1, clone)
    result = diff_reports(base, extra)
    assert [(r.status, r.b) for r in result.differences] == [("only_b", "layer2.0.extra")]


def test_exit_code_is_0_for_the_same_model_and_input_and_1_otherwise(tmp_path) -> None:
    out = tmp_path / "same.json"
    assert run_diff(["resnet18", "resnet18", "--input", "64", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["same"] is True and data["aligned"] == data["identical"]
    out = tmp_path / "sizes.md"
    args = ["resnet18", "resnet18", "--input", "64", "--input-b", "96", "-o", str(out)]
    assert run_diff(args) == 1
    assert "x1.5 on dims 2, 3" in out.read_text()


def test_usage_errors_are_raised_as_one_line_errors() -> None:
    from shapetrace.errors import UsageError

    with pytest.raises(UsageError):
        run_diff(["resnet18"])
    with pytest.raises(UsageError):
        run_diff(["resnet18", "resnet18", "-o", "diff.svg"])


def test_views_show_the_differences_a_reader_looks_for() -> None:
    result = review_vs_torchvision()
    text, markdown = render_text(result), render_markdown(result)
    for view in (text, markdown):
        assert "BatchNorm2d x53" in view
        assert "act_fn (ReLU) is one object called from 48 sites" in view
        assert "AvgPool2d" in view and "AdaptiveAvgPool2d" in view
        assert "only in A" in view and "only in B" in view
    assert "| `layer_1.0` | Conv2d | (1, 64, 112, 112) | `conv1` |" in markdown
    assert json.loads(result.to_json())["same"] is False


def test_diff_views_do_not_import_torch() -> None:
    code = (
        "import sys, shapetrace.views.diff, shapetrace.tasks.diff, shapetrace.cli.diff; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
