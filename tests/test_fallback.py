"""Models fx cannot trace: per-module shapes from an eager meta run, or a named diagnosis."""

from __future__ import annotations

import subprocess
import sys

import torch
import torchvision
from helpers import eager_module_calls

import shapetrace


def test_raft_is_reported_per_module_and_matches_a_real_forward() -> None:
    report = shapetrace.analyze("raft_small", "1x3x128x128,1x3x128x128")
    assert report.source["trace"] == "hooks" and report.failure is None
    assert [n.name for n in report.nodes[:2]] == ["image1", "image2"]
    model = torchvision.models.get_model("raft_small", weights=None).eval()
    frames = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)
    calls = eager_module_calls(model, *frames)
    modules = dict(model.named_modules())
    seen: dict[int, int] = {}
    for node in report.nodes[2:]:
        module = modules[node.target]
        k = seen.get(id(module), 0)
        seen[id(module)] = k + 1
        assert node.shape == calls[id(module)][k], node.name
    assert len(report.nodes) > 100
    assert report.module("feature_encoder").shape == [2, 128, 16, 16]
    # Edges follow the tensors from one module to the next.
    assert report.node("feature_encoder.convnormrelu.0").inputs == []
    assert report.node("feature_encoder.convnormrelu.1").inputs == [
        "feature_encoder.convnormrelu.0"
    ]


def test_detector_is_reported_up_to_its_value_dependent_postprocessing() -> None:
    report = shapetrace.analyze("fasterrcnn_resnet50_fpn")
    assert report.source["trace"] == "hooks"
    assert report.module("backbone").shape == {
        "0": [1, 256, 200, 200],
        "1": [1, 256, 100, 100],
        "2": [1, 256, 50, 50],
        "3": [1, 256, 25, 25],
        "pool": [1, 256, 13, 13],
    }
    assert report.failure is not None and report.failure.kind == "unsupported"
    assert report.failure.module == "rpn"
    assert "nonzero" in report.failure.message


def test_cli_exits_3_for_a_partial_report_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shapetrace", "retinanet_resnet50_fpn", "--depth", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cannot analyse retinanet_resnet50_fpn past" in result.stderr
    assert "backbone" in result.stdout
