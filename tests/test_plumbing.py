"""Accepted sizes on everyday tensor plumbing (crops, squeeze, views from `x.shape`, chunk,
pixel unshuffle, unpooling, broadcasting), each checked against a brute-force forward on meta
tensors over every size along each axis, and shape formulas against the meta shapes."""

from __future__ import annotations

from collections.abc import Iterable

import plumbing_models as pm
import pytest
import torch
from test_sizing import assert_domain_matches, members, runs, sweep
from torch import nn

import shapetrace
from shapetrace.domain import domain_text, in_domain
from shapetrace.formula import evaluate
from shapetrace.report import Report

SIZES = range(1, 81)


def analyse(model: nn.Module, shape: str) -> Report:
    return shapetrace.analyze(model, shape)


def accepted(model: nn.Module, shapes: Iterable[tuple[int, ...]]) -> set[tuple[int, ...]]:
    meta = model.to("meta").eval()
    return {s for s in shapes if runs(meta, s, [None] * len(_out_shape(meta, s)))}


def _out_shape(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        with torch.no_grad():
            return tuple(model(torch.zeros(shape, device="meta")).shape)
    except Exception:
        return ()


def assert_formulas_match_meta(model: nn.Module, report: Report, sizes: Iterable[int]) -> None:
    """Every node's shape formula equals the meta shape at each accepted square size."""
    meta = model.to("meta").eval()
    checked = 0
    for n in sizes:
        shape = (*report.input[:2], n, n)
        if not runs(meta, shape, [None] * len(_out_shape(meta, shape))):
            continue
        again = shapetrace.analyze(model, "x".join(map(str, shape)))
        truth = {node.name: node.shape for node in again.nodes}
        for node in report.nodes:
            if node.shape_formula is None or node.name not in truth:
                continue
            values = [evaluate(f, N=shape[0], H=n, W=n) for f in node.shape_formula]
            assert values == truth[node.name], (node.name, n, node.shape_formula)
            checked += 1
    assert checked


def test_squeeze_of_a_height_that_became_one_is_accepted_where_it_works() -> None:
    model = pm.OcrHead()
    report = analyse(model, "1x3x8x64")
    assert report.failure is None
    assert report.domain is not None and report.domain["H"] == [[8, 15]]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, None, 5))


def test_a_crop_by_slicing_then_linear_accepts_exactly_one_size() -> None:
    model = pm.CropThenLinear()
    report = analyse(model, "1x3x12x12")
    assert report.domain is not None
    assert report.domain["H"] == [[12, 12]] and report.domain["W"] == [[12, 12]]
    crop = next(n for n in report.nodes if n.type == "getitem")
    assert crop.shape_formula == ["N", "2", "H - 6", "W - 6"]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 4))


def test_last_columns_slice_has_an_exact_formula() -> None:
    model = pm.LastColumns()
    report = analyse(model, "1x3x16x16")
    assert report.domain is not None and report.domain["W"] == [[1, None]]
    assert_formulas_match_meta(model, report, range(1, 12))


def test_valid_unet_with_centre_cropped_skips_accepts_every_size_from_16() -> None:
    model = pm.ValidUNet()
    report = analyse(model, "1x3x60x60")
    assert report.domain is not None and report.domain["H"] == [[16, None]]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 2, None, None))
    assert_formulas_match_meta(model, report, (16, 17, 30, 31))


def test_a_view_built_from_x_shape_accepts_every_even_size() -> None:
    model = pm.SpaceToDepth()
    report = analyse(model, "1x3x16x16")
    assert report.domain is not None and report.domain["H"] == [[2, None, 2]]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 4, None, None))


def test_transposed_conv_with_output_size_accepts_every_size() -> None:
    model = pm.UpToSkip()
    report = analyse(model, "1x3x15x15")
    assert report.domain is not None and report.domain["H"] == [[1, None]]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 3, None, None))


def test_chunk_along_the_height_accepts_what_a_real_forward_accepts() -> None:
    # 3 rows split into 2 + 1, and the 1-row half broadcasts: accepted; 5 = 3 + 2 is not.
    model = pm.SplitRows()
    report = analyse(model, "1x3x16x16")
    assert report.domain is not None and report.domain["H"] == [[2, 4], [6, None, 2]]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 3, None, None))


def test_pixel_unshuffle_accepts_even_sizes() -> None:
    model = pm.Unshuffle()
    report = analyse(model, "1x3x16x16")
    assert report.domain is not None and report.domain["H"] == [[2, None, 2]]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 4, None, None))


def test_unpooling_to_the_input_size_is_exact() -> None:
    model = pm.PoolUnpool()
    report = analyse(model, "1x3x16x16")
    assert report.domain is not None and report.domain["H"] == [[2, None]]
    assert not report.domain.get("open")
    assert "inexact" not in (report.verdict or "")
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 3, None, None))


def test_a_one_row_map_broadcasts_in_an_add() -> None:
    model = pm.BroadcastAdd()
    report = analyse(model, "1x3x16x16")
    assert report.domain is not None and report.domain["H"] == [[1, 2], [4, None, 2]]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 3, None, None))


def test_squeeze_after_a_global_pool_drops_the_batch_at_n_1() -> None:
    report = analyse(pm.SqueezeAll(), "1x3x16x16")
    assert report.failure is not None and report.failure.node == "squeeze"
    assert "batch" in report.failure.message
    assert analyse(pm.SqueezeAll(), "2x3x16x16").failure is None


@pytest.mark.parametrize("size", [32, 36, 52])
def test_lenet_domain_does_not_depend_on_the_analysed_size(size: int) -> None:
    report = analyse(pm.LeNet(), f"1x3x{size}x{size}")
    assert report.domain is not None
    assert report.domain["H"] == [[32, 35]] and report.domain["W"] == [[32, 35]]
    verdict = report.verdict or ""
    assert "AdaptiveAvgPool2d((5, 5))" in verdict
    assert "262141" not in verdict and ".." not in verdict


@pytest.mark.parametrize(
    ("model", "node", "possible"),
    [(pm.OwnFunction(), "drop_last_row", [[3, None]]), (pm.Kron(), "kron", [[1, None]])],
)
def test_an_op_without_a_size_rule_leaves_the_domain_open_beyond_the_analysed_size(
    model: nn.Module, node: str, possible: list[list[int | None]]
) -> None:
    report = analyse(model, "1x3x16x16")
    assert report.domain is not None
    assert report.domain["H"] == [[16, 16]] and report.domain["W"] == [[16, 16]]
    assert [e["node"] for e in report.domain["open"]] == [node]
    assert report.domain["possible"] == {"H": possible, "W": possible}
    assert (report.verdict or "").startswith(
        f"Accepts 16x16; beyond it unknown: {node} has no size rule."
    )
    # What is claimed holds: 16 runs, and what the known rules exclude does not.
    meta = model.to("meta")
    for axis in "HW":
        brute = sweep(meta, report, axis, range(1, 41), (1, 4, None, None))
        assert 16 in brute and brute <= members(possible, range(1, 41))
    # Checks and the table's domain line say unknown beyond it, never rejected.
    assert in_domain(report.domain, {"H": 16, "W": 16}) is True
    assert in_domain(report.domain, {"H": 32, "W": 32}) is None
    assert in_domain(report.domain, {"H": 1, "W": 1}) is (False if possible[0][0] > 1 else None)
    assert domain_text(report) == (
        f"H in [16, 16], W in [16, 16]; beyond it unknown: {node} left open"
    )


def test_a_map_added_to_a_fixed_one_is_accepted_where_sizes_agree_or_broadcast() -> None:
    model = pm.AddFixedMap()
    report = analyse(model, "1x3x16x16")
    assert report.domain is not None and report.domain["H"] == [[3, 3], [16, 16]]
    assert_domain_matches(model.to("meta"), report, SIZES, (1, 4, None, None))
    # Its reason in numbers where it fails, not at the analysed size where it holds.
    assert "14 vs 14" not in (report.verdict or "")
    assert "2 vs 14 at H = 4" in (report.verdict or "")
