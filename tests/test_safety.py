"""Safe by default (issue 16): opening a report runs no code, weights are never unpickled, the
model's own sys.exit() is no false pass, and hostile input sizes and arguments end with the
documented exit code and one line, never an internal error (4) or a silent 0."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import shapetrace
from shapetrace.cli import main
from shapetrace.errors import CannotAnalyse, UsageError
from shapetrace.report import Report
from shapetrace.sources import resolve_from_report

DATA = Path(__file__).parent / "data"
HOSTILE = DATA / "hostile_models.py"
PACKAGE = Path(shapetrace.__file__).parent


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: the exit code, the one line on stderr, and stdout."""
    code = main(list(args))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return code, lines[0], captured.out


def hostile(name: str) -> str:
    return f"{HOSTILE}:{name}"


def evil_file(tmp_path: Path) -> tuple[Path, Path]:
    """A model file that leaves a marker behind when it is imported or its model is built."""
    marker = tmp_path / "ran"
    source = tmp_path / "evil.py"
    source.write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "def Net(**kwargs):\n"
        f"    Path({str(marker)!r}).write_text('built')\n"
    )
    return source, marker


# -- 1. opening a report runs no code ---------------------------------------------------------


@pytest.mark.parametrize("spec", ["{file}:Net", "os:system", "subprocess:run", "{file}", "a/b.py"])
def test_report_naming_code_of_its_own_is_refused_without_running_it(
    tmp_path: Path, spec: str
) -> None:
    source, marker = evil_file(tmp_path)
    spec = spec.format(file=source)
    with pytest.raises(UsageError, match="name it on the command line") as info:
        resolve_from_report(spec, {"command": f"touch {marker}"})
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="name it on the command line"):
        shapetrace.analyze(spec, "1x3x8x8", model_args={"args": ["true"]}, from_report=True)
    assert not marker.exists()


def test_report_rebuilds_torchvision_and_shapetraces_own_models() -> None:
    assert resolve_from_report("resnet18", {"num_classes": 10}).family == "classification"
    assert resolve_from_report("codereview_resnet50", None).family == "zoo"
    report = shapetrace.analyze("resnet18", "64", model_args={"num_classes": 10}, from_report=True)
    assert report.node("fc").shape == [1, 10]


@pytest.mark.parametrize(
    "model_args", [{"norm_layer": nn.Identity}, {"x": {1: 2}}, "num_classes=10", {"x": object()}]
)
def test_report_model_args_must_be_plain_json(model_args: object) -> None:
    with pytest.raises(UsageError, match="plain JSON"):
        resolve_from_report("resnet18", model_args)


def test_tui_reanalysis_of_a_report_runs_no_code(tmp_path: Path) -> None:
    from shapetrace.views.tui.request import analyse, request_for

    source, marker = evil_file(tmp_path)
    data = json.loads((DATA / "tui" / "resnet50_448.json").read_text())
    data["source"].update(model=f"{source}:Net", model_args={}, family="user")
    report = Report.from_json(json.dumps(data))
    with pytest.raises(UsageError, match="name it on the command line"):
        analyse(request_for(report, "1x3x64x64"))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("system", "is a builtin_function_or_method, not an nn.Module class"),
        ("print_it", "is a builtin_function_or_method, not an nn.Module class"),
        ("NotAModule", "is the class NotAModule, which is not an nn.Module"),
        ("callable_object", "is a Callable_, not an nn.Module class"),
        ("SHOUT", "is a str, not an nn.Module class"),
    ],
)
def test_command_line_spec_calls_only_module_classes_and_functions(
    capsys: pytest.CaptureFixture[str], name: str, words: str
) -> None:
    code, line, out = cli(capsys, hostile(name), "--input", "1x3x8x8")
    assert code == 2 and words in line and out == ""


def test_import_path_to_a_builtin_is_refused_before_it_is_called(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, line, out = cli(capsys, "os:system", "--model-args", '{"command": "echo RAN"}')
    assert code == 2 and "os:system is a builtin_function_or_method" in line
    assert "RAN" not in out


def test_function_returning_something_else_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, line, _ = cli(capsys, hostile("returns_a_string"), "--input", "1x3x8x8")
    assert code == 2 and "returned str, not a torch.nn.Module" in line


# -- 2. weights are never unpickled -------------------------------------------------------------


class _Planted:
    """Unpickling this leaves a marker: what a poisoned checkpoint in the cache would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "model_args",
    ['{"weights": "DEFAULT"}', '{"weights": "IMAGENET1K_V1"}', '{"pretrained": true}'],
)
def test_weights_arguments_are_dropped_never_loaded_nor_downloaded(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    model_args: str,
) -> None:
    from torchvision.models import ResNet18_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "unpickled"
    cached = tmp_path / "hub" / "checkpoints" / Path(ResNet18_Weights.DEFAULT.url).name
    cached.parent.mkdir(parents=True)
    torch.save(_Planted(marker), cached)
    code, line, out = cli(capsys, "resnet18", "--input", "64", "--model-args", model_args)
    assert code == 0 and not marker.exists()
    assert "Downloading" not in out
    key = next(iter(json.loads(model_args)))
    assert line.startswith(
        "shapetrace: weights are not loaded (shapes do not depend on them): ignoring " + key
    )


def test_weights_enum_and_backbone_weights_from_python_are_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchvision.models import ResNet50_Weights
    from torchvision.models.segmentation import FCN_ResNet50_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: a load would download
    report = shapetrace.analyze(
        "fcn_resnet50",
        "64",
        model_args={
            "weights": FCN_ResNet50_Weights.DEFAULT,
            "weights_backbone": ResNet50_Weights.DEFAULT,
        },
    )
    assert report.failure is None and report.source["model_args"] == {}
    err = capsys.readouterr().err
    assert "ignoring weights=COCO_WITH_VOC_LABELS_V1, weights_backbone=IMAGENET1K_V2" in err
    assert not (tmp_path / "hub").exists()


def test_no_weights_are_loaded_while_a_torchvision_model_is_built() -> None:
    from torchvision.models import ResNet18_Weights

    from shapetrace.sources import _no_checkpoints

    with _no_checkpoints("resnet18"), pytest.raises(UsageError, match="never loads weights"):
        ResNet18_Weights.DEFAULT.get_state_dict()


def test_shapetrace_never_calls_torch_load_without_weights_only() -> None:
    calls = [
        f"{path.relative_to(PACKAGE)}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for line in path.read_text().splitlines()
        if re.search(r"\btorch\.load\(|\bload_state_dict_from_url\(|\bpickle\.loads?\(", line)
        and "weights_only=True" not in line
    ]
    assert calls == []


# -- 6. the model's sys.exit() is no false pass -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("ExitsInConstructor", "ExitsInConstructor called sys.exit(0) in its constructor"),
        ("ExitsInForward", "the model called sys.exit(0) in forward, in ExitsInForward"),
        ("ExitsInMetaRun", "the model called sys.exit(0) in forward (running it on meta"),
        ("ExitsAfterLoop", "the model called sys.exit(0) in forward, in ExitsAfterLoop"),
        ("RaisesBaseException", "the model raised Stop in forward"),
    ],
)
@pytest.mark.parametrize("command", [[], ["check"]])
def test_sys_exit_in_the_model_exits_3_with_one_line(
    capsys: pytest.CaptureFixture[str], command: list[str], name: str, words: str
) -> None:
    code, line, out = cli(capsys, *command, hostile(name), "--input", "1x3x8x8")
    assert code == 3 and words in line
    assert out == ""


def test_sys_exit_while_importing_a_model_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, line, _ = cli(capsys, f"{DATA / 'exits_at_import.py'}:Net", "--input", "8")
    assert code == 2 and "exits_at_import.py: importing it called sys.exit(0)" in line


def test_ctrl_c_in_the_model_is_still_an_interrupt() -> None:
    class Interrupts(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        shapetrace.analyze(Interrupts(), "1x3x8x8")


# -- 7. hostile sizes and arguments: documented exit codes -------------------------------------


@pytest.mark.parametrize(
    "size",
    ["1000000000", "9" * 5000, f"1x3x{2**63}x8", f"1x3x{2**64}x8", f"1x3x{2**62}x{2**62}"],
    ids=["1e9-square", "5000-digits", "2**63", "2**64", "product-above-int64"],
)
def test_sizes_no_tensor_can_hold_are_usage_errors(
    capsys: pytest.CaptureFixture[str], size: str
) -> None:
    code, line, _ = cli(capsys, "resnet18", "--input", size)
    assert code == 2 and "too large: a tensor holds at most 2**63 - 1 bytes" in line
    assert len(line) < 200


def test_large_but_addressable_size_is_analysed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resnet18", "--input", "1x3x1000000000x7", "--format", "json"]) == 0
    report = Report.from_json(capsys.readouterr().out)
    assert report.module("layer4").shape == [1, 512, 31250000, 1]


@pytest.mark.parametrize(
    ("model_args", "words"),
    [
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
        ('{"a":' * 40 + "1" + "}" * 40, "nested too deeply"),
        ('{"num_classes": ' + "9" * 5000 + "}", "Exceeds the limit"),
    ],
    ids=["100000-deep", "40-deep", "5000-digit-int"],
)
def test_hostile_model_args_are_usage_errors(
    capsys: pytest.CaptureFixture[str], model_args: str, words: str
) -> None:
    code, line, _ = cli(capsys, "resnet18", "--model-args", model_args)
    assert code == 2 and words in line


def test_keyword_input_given_twice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{DATA / 'user_models.py'}:KeywordInput"
    code, line, _ = cli(capsys, spec, "--input", "x=1x16,x=1x16,mask=1x4")
    assert code == 2 and "'x' is given twice" in line


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_module_cannot_be_analysed(capsys: pytest.CaptureFixture[str]) -> None:
    code, line, _ = cli(capsys, hostile("scripted"), "--input", "1x3x8x8")
    assert code == 3 and "is a TorchScript module (RecursiveScriptModule)" in line
    with pytest.raises(CannotAnalyse, match="TorchScript"):
        shapetrace.analyze(torch.jit.script(nn.Conv2d(3, 4, 3)), "1x3x8x8")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("ContainsItself", "module 'me' is the model itself"),
        ("make_contains_itself", "module 'me' is the model itself"),
        ("ContainsAncestor", "module 'block.owner' is the model itself"),
    ],
)
def test_module_containing_itself_cannot_be_analysed(
    capsys: pytest.CaptureFixture[str], name: str, words: str
) -> None:
    code, line, _ = cli(capsys, hostile(name), "--input", "1x3x8x8")
    assert code == 3 and words in line


def test_live_module_containing_itself_is_refused_before_it_is_copied() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU()))
    model[1].add_module("loop", model[1])
    with pytest.raises(CannotAnalyse, match=re.escape("module '1.loop' is '1'")):
        shapetrace.analyze(model, "1x3x8x8")


# -- 9. an explicit input is never second-guessed -------------------------------------------------


def test_full_shape_is_taken_as_given_when_the_first_module_conv_is_a_conv1d(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = shapetrace.analyze(hostile("ECAStem"), "1x3x32x32")
    assert report.failure is None
    assert report.node("conv1d").shape == [1, 1, 8]
    assert report.nodes[-1].shape == [1, 8, 30, 30]
    code = main([hostile("ECAStem"), "--input", "1x3x32x32", "--format", "json"])
    assert code == 0


def test_shorthand_is_completed_from_a_functional_conv_stem() -> None:
    report = shapetrace.analyze(hostile("ECAStem"), "32")
    assert report.input == [1, 3, 32, 32]
    assert report.nodes[-1].shape == [1, 8, 30, 30]


# -- item 8: training mode ------------------------------------------------------------------


def test_training_mode_models_with_namedtuple_outputs_are_analysed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # googlenet returns GoogLeNetOutputs(logits, aux_logits2, aux_logits1) in training.
    assert main(["googlenet", "--train", "--depth", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "Called only in training: aux1, aux2" in captured.out
    report = shapetrace.analyze("googlenet", "2x3x224x224", train=True)
    assert report.failure is None and report.node("fc") is not None
    # inception_v3's auxiliary head pools to 1x1: training-mode batch norm needs a batch of 2.
    code, line, _ = cli(capsys, "inception_v3", "--train")
    assert code == 1 and "more than 1 value per channel" in line
    assert shapetrace.analyze("inception_v3", "2x3x299x299", train=True).failure is None
