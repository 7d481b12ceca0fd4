"""--input parsing: shorthands completed from the first layer, bad specs rejected in one line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import shapetrace
from shapetrace.errors import UsageError
from shapetrace.inputs import FirstLayer, TensorSpec, complete, parse

CONV2D = FirstLayer("conv", 3, 2)


@pytest.mark.parametrize(
    ("text", "dims"),
    [
        ("1x3x448x448", (1, 3, 448, 448)),
        ("448", (1, 3, 448, 448)),
        ("448x320", (1, 3, 448, 320)),
        ("3x448x320", (1, 3, 448, 320)),
        ("2x3x64x64", (2, 3, 64, 64)),
    ],
)
def test_image_shorthands_complete_from_the_first_conv(text: str, dims: tuple[int, ...]) -> None:
    [spec] = parse(text)
    assert complete(spec, CONV2D).dims == dims


def test_dtype_names_and_several_tensors() -> None:
    specs = parse("1x3x520x960,1x3x520x960,mask=1x16:bool")
    assert [s.dims for s in specs] == [(1, 3, 520, 960), (1, 3, 520, 960), (1, 16)]
    assert specs[2] == TensorSpec((1, 16), "bool", "mask")
    assert parse("1x128:int64")[0].dtype == "int64"


def test_embedding_models_take_int64_token_ids() -> None:
    [spec] = parse("128")
    done = complete(spec, FirstLayer("embedding"))
    assert done.dims == (1, 128) and done.dtype == "int64"


def test_conv1d_and_video_ranks_come_from_the_first_layer() -> None:
    assert complete(parse("1x1x100")[0], FirstLayer("conv", 1, 1)).dims == (1, 1, 100)
    video = FirstLayer("conv", 3, 3)
    default = TensorSpec((1, 3, 16, 112, 112))
    assert complete(parse("1x3x16x224x224")[0], video).dims == (1, 3, 16, 224, 224)
    assert complete(parse("224")[0], video, default).dims == (1, 3, 16, 224, 224)


@pytest.mark.parametrize(
    "text", ["", "1x3x-4x4", "1x3x0x224", "axb", "1x3x224x224:float99", "1,,2", "1x", "x1", " = 1"]
)
def test_malformed_specs_raise_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    assert "\n" not in str(info.value)


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_usage_error_only(text: str) -> None:
    try:
        specs = parse(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert specs and all(d >= 1 for s in specs for d in s.dims)


@given(st.lists(st.integers(1, 4096), min_size=1, max_size=5))
def test_valid_dims_round_trip(dims: list[int]) -> None:
    [spec] = parse("x".join(map(str, dims)))
    assert list(spec.dims) == dims
    assert parse(str(spec)) == [spec]


def test_shorthand_of_a_wrong_rank_for_a_conv_model_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="5 dims"):
        complete(parse("224x224")[0], FirstLayer("conv", 3, 3))


def test_a_full_shape_of_another_rank_is_taken_as_given_and_rejected_by_the_model() -> None:
    report = shapetrace.analyze("resnet18", "1x2x3x4x5x6")
    assert report.source["input"] == ["1x2x3x4x5x6"]
    assert report.failure is not None and report.failure.node == "conv1"
