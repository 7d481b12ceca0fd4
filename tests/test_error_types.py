"""Exit codes are decided by exception type and by which op raised, never by message text; a bug
in shapetrace's own code is an internal error (4), never the model's failure (1) or a model
shapetrace cannot analyse (3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import fx

import shapetrace
from shapetrace.cli import main

MODELS = Path(__file__).parent / "data" / "error_models.py"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in-process; the exit code and the one line it wrote to stderr."""
    code = main(list(args))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return code, lines[0]


def model(name: str) -> str:
    return f"{MODELS}:{name}"


# -- what torch 2.14 raises, pinned so that a change shows here first -----------------------


@pytest.mark.parametrize(
    "forward",
    [
        lambda x: x if x.sum() > 0 else -x,
        lambda x: bool(x),
        lambda x: [row for row in x],
    ],
)
def test_fx_raises_trace_error_for_control_flow_and_iteration(forward) -> None:
    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> object:
            return forward(x)

    with pytest.raises(fx.proxy.TraceError):
        fx.symbolic_trace(Net())


# -- the model's limits that are shapetrace's: exit 3 --------------------------------------


def test_value_dependent_branch_is_control_flow_from_the_tracer_not_from_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A torch release that rewords fx's message must not change the diagnosis.
    def reworded(self: fx.proxy.TracerBase, obj: fx.Proxy) -> bool:
        raise fx.proxy.TraceError("a reworded message")

    monkeypatch.setattr(fx.proxy.TracerBase, "to_bool", reworded)
    report = shapetrace.analyze(model("ValueBranch"), "1x3x8x8")
    assert report.source["trace"] == "hooks"
    assert report.node("conv").shape == [1, 4, 6, 6]
    assert report.failure is not None and report.failure.kind == "unsupported"
    assert "Python control flow that depends on a tensor's value" in report.failure.message


def test_value_dependent_branch_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, line = cli(capsys, model("ValueBranch"), "--input", "8")
    assert code == 3 and "control flow" in line


@pytest.mark.parametrize(
    ("name", "trace", "words"),
    [
        ("ToList", "fx", "copies a meta tensor to cpu"),
        ("CpuConstant", "fx", "mixes a cpu tensor created inside forward with meta tensors"),
        (
            "ShapeBranchCpuConstant",
            "hooks",
            "mixes a cpu tensor created inside forward with meta tensors",
        ),
        ("ItemSize", "hooks", "reading a tensor's value"),
    ],
)
def test_ops_the_meta_run_cannot_follow_are_unsupported_not_rejections(
    capsys: pytest.CaptureFixture[str], name: str, trace: str, words: str
) -> None:
    report = shapetrace.analyze(model(name), "1x3x8x8")
    assert report.source["trace"] == trace
    assert report.node("conv").shape == [1, 4, 6, 6]  # everything before the stop is kept
    assert report.failure is not None and report.failure.kind == "unsupported"
    assert words in report.failure.message
    code, line = cli(capsys, model(name), "--input", "1x3x8x8")
    assert code == 3 and words in line


@pytest.mark.parametrize(("name", "shape"), [("Nonzero", ["u0", 4]), ("BoolMask", ["u0"])])
def test_data_dependent_sizes_are_symbols_not_breaks(
    capsys: pytest.CaptureFixture[str], name: str, shape: list[object]
) -> None:
    # The meta run stops at nonzero and masks; the symbolic-shape capture carries them as u0.
    report = shapetrace.analyze(model(name), "1x3x8x8")
    assert report.source["trace"] == "symbolic" and report.failure is None
    assert report.node("conv").shape == [1, 4, 6, 6]
    assert report.nodes[-1].shape == shape
    assert any("u0" in q["reason"] for q in report.domain["open"])
    assert main([model(name), "--input", "1x3x8x8"]) == 0


# -- the model's own failures: exit 1, whatever they say --------------------------------------


def test_model_error_worded_like_a_meta_limit_is_still_the_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = shapetrace.analyze(model("RaisesMetaLikeText"), "1x3x8x8")
    assert report.failure is not None and report.failure.kind == "rejected"
    code, line = cli(capsys, model("RaisesMetaLikeText"), "--input", "1x3x8x8")
    assert code == 1 and "rejects input" in line


def test_untraceable_model_whose_layer_does_not_fit_is_rejected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The meta run's addmm raises a RuntimeError, as .item() does: the op decides, not the type.
    report = shapetrace.analyze(model("LoopThenWrongFeatures"), "4x7")
    assert report.source["trace"] == "hooks"
    assert report.failure is not None and report.failure.kind == "rejected"
    assert report.failure.module == "fc"
    code, _ = cli(capsys, model("LoopThenWrongFeatures"), "--input", "4x7")
    assert code == 1


def test_error_text_like_fx_control_flow_is_not_called_control_flow() -> None:
    # The model raises its own ValueError at every size: a rejection in its own words.
    report = shapetrace.analyze(model("ControlFlowText"), "1x3x8x8")
    assert report.failure is not None and report.failure.kind == "rejected"
    assert "Python control flow" not in report.failure.message


def test_too_small_input_is_explained_from_the_window_geometry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whatever torch's message says, the pool's kernel and the map it received decide.
    real = torch.nn.functional.max_pool2d

    def reworded(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if x.shape[-1] < 3:
            raise RuntimeError("reworded by a future torch")
        return real(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "max_pool2d", reworded)
    report = shapetrace.analyze("alexnet", "1x3x32x32")
    assert report.failure is not None and report.failure.kind == "rejected"
    assert report.failure.message == (
        "features.12: MaxPool2d(3, 2) needs at least a 3x3 map, received 1x1"
    )


# -- bugs of shapetrace's own: exit 4 -------------------------------------------------------


def _broken(*args: object, **kwargs: object) -> None:
    raise KeyError("a bug in shapetrace")


def test_bug_in_the_shape_interpreter_is_internal_not_a_rejection(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shapetrace.passes.shapes.summarize", _broken)
    code, line = cli(capsys, "resnet18", "--input", "64")
    assert code == 4 and line.startswith("shapetrace: internal error:")


def test_bug_in_the_tracer_is_internal_not_an_untraceable_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shapetrace.capture._NamingTracer._qualname", _broken)
    code, line = cli(capsys, "resnet18", "--input", "64")
    assert code == 4 and "internal error" in line


def test_bug_in_the_fallback_hooks_is_internal_not_a_model_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shapetrace.capture_hooks.tensors_in", _broken)
    code, line = cli(capsys, model("ValueBranch"), "--input", "8")
    assert code == 4 and "internal error" in line


def test_bug_in_the_meta_watch_is_internal_not_a_limit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shapetrace.passes.shapes._meta_fault", _broken)
    code, line = cli(capsys, model("Nonzero"), "--input", "1x3x8x8")
    assert code == 4 and "internal error" in line


def test_bug_while_moving_parameters_to_meta_is_internal_not_a_constructor_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # regnet's builder reads tensor values, so it is built with parameters moved as registered.
    real = torch.Tensor.to

    def to(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if args == ("meta",):
            raise KeyError("a bug in shapetrace")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    code, line = cli(capsys, "regnet_y_400mf")
    assert code == 4 and "internal error" in line


def test_bug_in_a_pass_is_internal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shapetrace.passes.shapes.explain", _broken)
    code, line = cli(capsys, "resnet18", "--input", "1x1x64x64")  # breaks: explain is asked
    assert code == 4 and "internal error" in line
