"""Tests of `Report.at`: a new input size answered from the report's shape formulas, cost
multiples and domain, without torch, checked against real `analyze` runs at those sizes
(shapes and MACs equal exactly where the answer claims to know them)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from test_sizing import UNet

import shapetrace
from shapetrace.formula import compile_formulas, evaluate
from shapetrace.report import Report


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    yield
    torch.set_num_threads(threads)


FORMULAS = [
    "N",
    "3",
    "ceil(H/32)",
    "floor((H - 1)/2) + 1",
    "2048*(ceil(H/32) - 6)*(ceil(W/32) - 6)",
    "min(H, W) - max(1, floor(W/3))",
    "-H + 2*W",
    "ceil((H + 1)/3)",
]


def test_pre_parsed_formulas_give_what_evaluate_gives() -> None:
    run = compile_formulas(FORMULAS)
    for n, h, w in itertools.product((1, 3), range(1, 80, 3), range(1, 50, 7)):
        expected = tuple(evaluate(f, N=n, H=h, W=w) for f in FORMULAS)
        assert run({"N": n, "H": h, "W": w}) == expected


@pytest.mark.parametrize(
    "text", ["__import__('os')", "H**2", "x.y", "open('f')", "H if W else 1", "(lambda: 1)()"]
)
def test_anything_but_a_formula_is_refused_before_it_runs(text: str) -> None:
    with pytest.raises(ValueError):
        compile_formulas([text])


def test_a_missing_size_or_a_fraction_is_an_error() -> None:
    with pytest.raises(ValueError):
        compile_formulas(["H + T"])({"H": 2})
    with pytest.raises(ValueError):
        compile_formulas(["H/2"])({"H": 3})


def check_against_analyze(model: Any, base: str, sizes: list[Any]) -> list[Any]:
    """Each size from the formulas, then from `analyze`: acceptance, every known shape and cost
    equal. Returns the answers."""
    report = shapetrace.analyze(model, base)
    answers = []
    for size in sizes:
        answer = report.at(size)
        answers.append(answer)
        real = shapetrace.analyze(model, "x".join(map(str, answer.input)))
        if answer.accepted is not None:
            assert answer.accepted == (real.failure is None), (size, real.failure)
        if answer.accepted is not True:
            continue
        for node in answer.nodes:
            truth = real.node(node.name)
            if "shape" not in node.unknown:
                assert node.shape == truth.shape, (size, node.name)
            if "macs" not in node.unknown:
                assert (node.macs, node.flops) == (truth.macs, truth.flops), (size, node.name)
        if answer.totals["macs"] is not None:
            assert answer.totals["macs"] == real.totals["macs"]
            assert answer.totals["flops"] == real.totals["flops"]
    return answers


def test_resnet50_at_new_sizes_equals_analyze() -> None:
    answers = check_against_analyze(
        "resnet50", "1x3x224x224", ["1x3x640x640", "97x130", (33, 33), "1"]
    )
    for answer in answers:
        assert answer.accepted is True
        # Every shape is known; the adaptive pool's cost is the one left to a meta run.
        assert set(answer.unknown) == {"avgpool"} and set(answer.unknown["avgpool"]) == {"macs"}
        assert answer.totals["macs"] is None and not answer.complete
    assert answers[0].node("layer4.2.relu_2").shape == [1, 2048, 20, 20]


def test_codereview_resnet50_is_complete_inside_its_domain_and_rejected_outside() -> None:
    answers = check_against_analyze(
        "codereview_resnet50", "1x3x224x224", ["200x208", "193", "160", "448", "225"]
    )
    assert [a.accepted for a in answers] == [True, True, False, False, False]
    assert answers[0].complete and answers[0].node("fc_layer").shape == [1, 2]
    assert "fc_layer" in str(answers[3].why) and "avgpool" in str(answers[2].why)


def test_efficientnet_b0_at_new_sizes_equals_analyze() -> None:
    answers = check_against_analyze("efficientnet_b0", "1x3x224x224", ["320", "97x130", "33"])
    assert all(a.accepted for a in answers)
    kinds = {t for a in answers for n in a.nodes if n.unknown for t in [n.type]}
    assert kinds == {"AdaptiveAvgPool2d"}  # squeeze-excite pools: cost left unknown


def test_unet_periodic_domain_and_shapes_equal_analyze() -> None:
    model = UNet(levels=4, in_channels=1, width=2).eval()
    answers = check_against_analyze(model, "1x1x64x64", ["48x80", "50x64", "16", "8"])
    assert [a.accepted for a in answers] == [True, False, True, False]
    assert answers[0].complete


def test_sizes_are_spelled_as_input_takes_them_and_channels_may_not_change() -> None:
    report = shapetrace.analyze("resnet50", "1x3x224x224")
    assert report.at("640").input == report.at((640, 640)).input == [1, 3, 640, 640]
    assert report.at("640x480").sizes == {"N": 1, "H": 640, "W": 480}
    batch = report.at("4x3x64x64")
    assert batch.accepted is None and "batch" in str(batch.why)
    assert batch.node("layer4.2.relu_2").shape == [4, 2048, 2, 2]
    assert "shape" in batch.node("fc").unknown  # no formula: known only at the analysed batch
    with pytest.raises(ValueError):
        report.at("1x1x224x224")
    with pytest.raises(ValueError):
        report.at("1x2x3")


def test_a_saved_report_answers_without_torch_and_open_domains_stay_undecided() -> None:
    report = Report.from_json(shapetrace.analyze("resnet18", "1x3x224x224").to_json())
    answer = report.at("512")
    assert answer.accepted is True and answer.node("layer4.1.relu_1").shape == [1, 512, 16, 16]
    assert report.node("conv1").cost_per_element == [147, 294]
    data = report.to_dict()
    assert data["domain"] is not None
    data["domain"] = {**data["domain"], "open": [{"node": "x", "op": "kron", "reason": "?"}]}
    opened = Report.from_dict(data).at("512")
    assert opened.accepted is None and "kron" in str(opened.why) and not opened.complete


def test_an_estimated_report_renders_with_the_new_shapes() -> None:
    report = shapetrace.analyze("resnet18", "1x3x224x224")
    estimated = report.at("448").report(report)
    assert estimated.input == [1, 3, 448, 448]
    assert estimated.node("layer4.1.relu_1").shape == [1, 512, 14, 14]
    assert "estimated" in estimated.source
    Report.from_json(estimated.to_json())
