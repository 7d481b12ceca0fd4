"""Models fx cannot trace: per-module shapes from an eager meta run, or a named diagnosis."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from helpers import eager_module_calls
from torch import nn

import shapetrace
from shapetrace.cli import main


class Refine(nn.Module):
    """RAFT in small: a loop fx cannot trace (its count read from a shape) and a constant
    tensor built in forward (export lifts it as `lifted_tensor_0`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor([0.5])
        for _ in range(x.shape[1]):
            x = self.conv(x) * scale.to(x.device)
        return x


def test_a_loop_fx_cannot_trace_is_captured_with_symbolic_shapes() -> None:
    report = shapetrace.analyze(Refine(), "1x3x32x32")
    assert report.source["trace"] == "symbolic" and report.failure is None
    names = [n.name for n in report.nodes]
    assert names[0] == "x" and not [n for n in names if "lifted" in n]
    assert [n for n in names if n.startswith("conv")][:3] == ["conv", "conv_1", "conv_2"]
    assert report.nodes[-1].shape == [1, 3, 32, 32]


@pytest.mark.slow
def test_raft_is_captured_with_symbolic_shapes_and_matches_a_real_forward() -> None:
    # fx cannot trace RAFT's loops; torch.export can (about 25 s CPU: a slow capture).
    report = shapetrace.analyze("raft_small", "1x3x128x128,1x3x128x128")
    assert report.source["trace"] == "symbolic" and report.failure is None
    model = torchvision.models.get_model("raft_small", weights=None).eval()
    frames = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)
    calls = eager_module_calls(model, *frames)
    modules = dict(model.named_modules())
    checked = 0
    for entry in report.modules:
        module = modules[entry.path]
        if entry.calls == 1 and id(module) in calls and isinstance(entry.shape, list):
            assert entry.shape == calls[id(module)][0], entry.path
            checked += 1
    assert checked > 50
    assert report.module("feature_encoder").shape == [2, 128, 16, 16]
    assert not [n.name for n in report.nodes if "lifted" in n.name or "_empty_nn" in n.name]


@pytest.mark.slow
def test_detector_is_captured_past_its_value_dependent_postprocessing() -> None:
    report = shapetrace.analyze("fasterrcnn_resnet50_fpn")
    assert report.source["trace"] == "symbolic" and report.failure is None
    # The FPN's maps: the values leaving the backbone's call, in the order the graph computes
    # them (an aten graph keeps no dict keys).
    assert sorted(report.module("backbone").shape, reverse=True) == [
        [1, 256, 200, 200],
        [1, 256, 100, 100],
        [1, 256, 50, 50],
        [1, 256, 25, 25],
        [1, 256, 13, 13],
    ]
    reasons = [q["reason"] for q in report.domain["open"]]
    assert any(r.startswith("assumed") for r in reasons)


VALUE_BRANCH = """
import torch
from torch import nn


class ValueBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:
            y = self.head(y)
        return y
"""


def test_cli_exits_3_for_a_partial_report_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A branch on a tensor's value: fx cannot trace it, export assumes nothing about it (no
    # answer is more likely), and the meta run stops there: a hooks report, exit 3.
    source = tmp_path / "branch.py"
    source.write_text(VALUE_BRANCH)
    assert main([f"{source}:ValueBranch", "--input", "1x3x16x16", "--depth", "1"]) == 3
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cannot analyse" in err and "depends on a tensor's value" in err
    assert "conv" in out and "(1, 4, 14, 14)" in out
    report = shapetrace.analyze(f"{source}:ValueBranch", "1x3x16x16")
    assert report.source["trace"] == "hooks"
