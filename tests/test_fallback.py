"""Models fx cannot trace: per-module shapes from an eager meta run, or a named diagnosis."""

from __future__ import annotations

import subprocess
import sys

import torch
import torchvision
from helpers import eager_module_calls

import shapetrace


def test_raft_is_captured_with_symbolic_shapes_and_matches_a_real_forward() -> None:
    # fx cannot trace RAFT's loops; torch.export can (about 25 s here: a slow capture).
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
