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
