"""Every torchvision classification and detection model yields a full report at its usual input
size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

import shapetrace
from shapetrace.cli import main

CLASSIFIERS = torchvision.models.list_models(module=torchvision.models)
QUANTIZABLE = torchvision.models.list_models(module=torchvision.models.quantization)
VIDEO = torchvision.models.list_models(module=torchvision.models.video)
SEGMENTATION = torchvision.models.list_models(module=torchvision.models.segmentation)
DETECTION = torchvision.models.list_models(module=torchvision.models.detection)


def _param_count(name: str) -> int:
    from shapetrace.sources import resolve

    return sum(p.numel() for p in resolve(name).build().parameters())


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_full_report_at_default_size(name: str) -> None:
    report = shapetrace.analyze(name)
    assert report.failure is None
    size = 299 if name == "inception_v3" else None
    if size:
        assert report.input == [1, 3, size, size]
    assert report.nodes[-1].shape == [1, 1000]
    assert all(n.shape is not None for n in report.nodes if n.op == "call_module")
    assert report.totals["params"] == _param_count(name)


@pytest.mark.parametrize("name", QUANTIZABLE + VIDEO + SEGMENTATION)
def test_other_traceable_families_give_full_reports(name: str) -> None:
    report = shapetrace.analyze(name)
    assert report.failure is None
    last = report.nodes[-1]
    if name in VIDEO:
        assert len(report.input) == 5 and last.shape == [1, 400]
    elif name in SEGMENTATION:
        assert report.input == [1, 3, 520, 520] and last.shape == [1, 21, 520, 520]
    else:
        assert last.shape == [1, 1000]


def _cli_report(name: str, path: Path) -> tuple[int, dict[str, Any]]:
    """Exit code and JSON report of `shapetrace NAME -o report.json`, in process. (Read as JSON:
    `Report.load` rejects symbolic dims such as "Min(100, u9)" in shapes.)"""
    out = path / "report.json"
    code = main([name, "-o", str(out)])
    return code, json.loads(out.read_text(encoding="utf-8"))


def _module_shape(report: dict[str, Any], path: str) -> Any:
    return next(m["shape"] for m in report["modules"] if m["path"] == path)


def test_ssd_is_captured_up_to_its_per_class_loop(tmp_path: Path) -> None:
    """SSD's per-class loop makes more data-dependent sizes than the capture's limit: the
    capture ends at `postprocess_detections`, exactly, and the report says so (exit 0)."""
    code, report = _cli_report("ssd300_vgg16", tmp_path)
    assert code == 0
    assert report["source"]["trace"] == "symbolic" and report.get("failure") is None
    assert report["domain"] and report["verdict"]
    # Every map before the cut, as an eager forward gives it at 300x300 (the transform's size;
    # on meta: a CPU build and forward of SSD cost 8 s for the same shapes).
    with torch.device("meta"):
        model = torchvision.models.get_model("ssd300_vgg16", weights=None, weights_backbone=None)
    model.eval()
    with torch.no_grad():
        features = list(model.backbone(torch.empty(1, 3, 300, 300, device="meta")).values())
        head = model.head(features)
    assert _module_shape(report, "backbone") == [list(f.shape) for f in features]
    assert sorted(_module_shape(report, "head")) == sorted(list(t.shape) for t in head.values())
    last = report["nodes"][-1]
    assert (last["name"], last["shape"]) == ("postprocess_detections", None)
    reason = last["missing"]["shape"]
    assert "makes more data-dependent sizes than the capture's limit of 32, the 33rd" in reason
    assert "ssd.py:" in reason
    assert any(q["node"] == "postprocess_detections" for q in report["domain"]["open"])
    assert report["verdict"].startswith("Captured up to postprocess_detections")


@pytest.mark.slow
@pytest.mark.parametrize("name", DETECTION)
def test_every_detector_gets_a_full_symbolic_report(name: str, tmp_path: Path) -> None:
    code, report = _cli_report(name, tmp_path)
    assert code == 0
    assert report["source"]["trace"] == "symbolic" and report.get("failure") is None
    assert report["domain"] and report["verdict"]
    nodes = report["nodes"]
    # Data-dependent sizes are symbols (`Min(100, u9)`), unless the capture ends before any.
    symbolic = [n for n in nodes if "u" in str(n["shape"])]
    cut = [n for n in nodes if "not captured" in (n.get("missing") or {}).get("shape", "")]
    assert symbolic or cut
    if name.startswith(("maskrcnn", "keypointrcnn")):
        (row,) = cut
        assert "loops over a data-dependent number of items" in row["missing"]["shape"]
        assert "roi_heads.py:" in row["missing"]["shape"]
        assert symbolic
