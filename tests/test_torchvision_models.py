"""Every torchvision classification model yields a full report at its usual input size."""

from __future__ import annotations

import pytest
import torchvision

import shapetrace

CLASSIFIERS = torchvision.models.list_models(module=torchvision.models)
QUANTIZABLE = torchvision.models.list_models(module=torchvision.models.quantization)
VIDEO = torchvision.models.list_models(module=torchvision.models.video)
SEGMENTATION = torchvision.models.list_models(module=torchvision.models.segmentation)


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
