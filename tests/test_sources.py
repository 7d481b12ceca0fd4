"""Model sources: torchvision names, ours, files and import paths, and their errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import shapetrace
from shapetrace.errors import CannotAnalyse, UsageError

DATA = Path(__file__).parent / "data"
MODELS = f"{DATA / 'user_models.py'}"


def test_user_class_from_a_file_with_model_args() -> None:
    report = shapetrace.analyze(f"{MODELS}:TinyNet", "1x3x32x32", model_args={"width": 8})
    assert report.node("conv1").shape == [1, 8, 28, 28]
    assert report.node("view").shape == [1, 400]
    assert report.node("fc2").shape == [1, 10]
    assert report.totals["params"] == (3 * 8 * 25 + 8) + (8 * 16 * 25 + 16) + 48120 + 1210


def test_user_factory_function_and_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DATA))
    report = shapetrace.analyze("user_models:make_tiny", "32")
    assert report.node("fc2").shape == [1, 10]
    assert report.source["model"] == "user_models:make_tiny"


def test_conv1d_and_embedding_models_get_their_rank_and_dtype() -> None:
    conv = shapetrace.analyze(f"{MODELS}:Seq1d", "1x1x100")
    assert conv.node("conv").shape == [1, 4, 98]
    tokens = shapetrace.analyze(f"{MODELS}:TokenModel", "1x12")
    assert tokens.node("embed").shape == [1, 12, 32]
    assert tokens.node("ids").dtype == "int64"


def test_keyword_inputs_are_matched_by_name() -> None:
    report = shapetrace.analyze(f"{MODELS}:KeywordInput", "1x16,mask=1x4")
    assert report.node("mul").shape == [1, 4]
    with pytest.raises(UsageError, match="mask"):
        shapetrace.analyze(f"{MODELS}:KeywordInput", "1x16")


@pytest.mark.parametrize(
    ("spec", "args", "error", "text"),
    [
        ("resnet5", None, UsageError, "did you mean resnet50"),
        ("no/such/file.py:Net", None, UsageError, "no such file"),
        (f"{DATA / 'syntax_error.py'}:Net", None, UsageError, "syntax error"),
        (f"{DATA / 'import_error.py'}:Net", None, UsageError, "a_package_that_does_not_exist"),
        (f"{MODELS}:TinyNett", None, UsageError, "did you mean TinyNet"),
        (f"{MODELS}:NOT_A_MODEL", None, UsageError, "not an nn.Module"),
        (f"{MODELS}:TinyNet", {"depth": 3}, UsageError, "do not match"),
        (f"{MODELS}:Raises", None, CannotAnalyse, "broken constructor"),
        ("no_such_package.models:Net", None, UsageError, "cannot import"),
    ],
)
def test_bad_sources_fail_with_one_line(spec, args, error, text) -> None:
    with pytest.raises(error) as info:
        shapetrace.analyze(spec, "1x3x32x32", model_args=args)
    message = str(info.value)
    assert text in message and "\n" not in message


def test_value_dependent_control_flow_gives_a_partial_report_naming_the_module() -> None:
    report = shapetrace.analyze(f"{MODELS}:Branchy", "1x3x8x8")
    assert report.source["trace"] == "hooks"
    assert report.node("gate").shape == [1, 3, 8, 8]
    assert report.failure is not None and report.failure.kind == "unsupported"
    assert report.failure.message.startswith(
        "forward (Branchy): Python control flow that depends on a tensor's value"
    )
    nested = shapetrace.analyze(f"{MODELS}:WrapsBranchy", "1x3x8x8")
    assert nested.failure is not None
    assert nested.failure.message.startswith("inner (Branchy): Python control flow")


def test_untraceable_model_that_also_fails_eagerly_is_diagnosed_in_one_line() -> None:
    with pytest.raises(CannotAnalyse) as info:
        shapetrace.analyze(f"{MODELS}:BranchyFirst", "1x3x8x8")
    message = str(info.value)
    assert "torch.fx cannot trace Python control flow" in message
    assert "in BranchyFirst.forward()" in message and "\n" not in message


def test_user_models_need_an_input() -> None:
    with pytest.raises(UsageError, match="--input is required"):
        shapetrace.analyze(f"{MODELS}:TinyNet")


def test_live_module_is_left_untouched() -> None:
    spec = importlib.util.spec_from_file_location("user_models_live", MODELS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TinyNet()
    before = model.conv1.weight.detach().clone()
    report = shapetrace.analyze(model, "1x3x32x32")
    assert report.node("fc2").shape == [1, 10]
    assert model.conv1.weight.device.type == "cpu"
    assert (model.conv1.weight == before).all()


def test_building_on_meta_skips_weight_initialisation_and_restores_it() -> None:
    import torch.nn.init as init

    from shapetrace.sources import resolve

    before = {name: getattr(init, name) for name in ("kaiming_normal_", "uniform_", "zeros_")}
    calls: list[str] = []
    original = init.kaiming_normal_

    def counting(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append("kaiming_normal_")
        return original(tensor, *args, **kwargs)

    init.kaiming_normal_ = counting
    try:
        model = resolve("resnet18").build()
    finally:
        init.kaiming_normal_ = original
    assert calls == []  # 20 convs, none initialised on meta
    assert all(p.device.type == "meta" for p in model.parameters())
    assert {name: getattr(init, name) for name in before} == before


BROKEN = """
from pathlib import Path

from torch import nn

LOG = Path(__file__).with_suffix(".log")


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        with LOG.open("a") as log:
            log.write("built\\n")
        raise ValueError("bad config")
"""


def test_a_constructor_that_raises_its_own_error_runs_once(tmp_path: Path) -> None:
    from shapetrace.cli import main

    source = tmp_path / "broken.py"
    source.write_text(BROKEN)
    code = main([f"{source}:Broken", "--input", "1x3x8x8"])
    assert code in (2, 3)
    # Built once: only an error an op on meta tensors raises is worth a second, watched build.
    assert (tmp_path / "broken.log").read_text() == "built\n"
