"""The command line as users meet it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shapetrace", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_main_command_prints_the_resnet50_table_at_448() -> None:
    result = run("resnet50", "--input", "1x3x448x448")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("│")]
    layer4 = next(line for line in lines if line.split("│")[1].strip() == "layer4")
    assert "(1, 2048, 14, 14)" in layer4 and "14,964,736" in layer4
    fc = next(line for line in lines if line.split("│")[1].strip() == "fc")
    assert "(1, 1000)" in fc
    assert "Total params: 25,557,032" in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: no colour


def test_codereview_breaks_at_448_naming_fc_layer_and_runs_at_224() -> None:
    broken = run("codereview_resnet50", "--input", "1x3x448x448")
    line = assert_one_line_error(broken, 1)
    assert "fc_layer" in line and "131072" in line
    assert "breaks here" in broken.stdout  # the nodes up to the break are still shown
    fine = run("codereview_resnet50", "--input", "1x3x224x224", "--format", "json")
    assert fine.returncode == 0
    data = json.loads(fine.stdout)
    assert data["nodes"][-1]["name"] == "fc_layer" and data["nodes"][-1]["shape"] == [1, 2]


def test_depth_collapses_modules_into_rows_with_summed_params() -> None:
    result = run("resnet50", "--input", "224", "--depth", "1", "--format", "markdown")
    assert result.returncode == 0
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == [
        "`x`",
        "`conv1`",
        "`bn1`",
        "`relu`",
        "`maxpool`",
        "**`layer1`**",
        "**`layer2`**",
        "**`layer3`**",
        "**`layer4`**",
        "`avgpool`",
        "`flatten`",
        "`fc`",
    ]
    layer4 = rows[names.index("**`layer4`**") + 1]
    assert "(1, 2048, 7, 7)" in layer4 and "14,964,736" in layer4


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["resnet50", "--input", "1x3x-1x2"], 2, "malformed --input"),
        (["resnet50", "--input", "abc"], 2, "malformed --input"),
        (["resnet5"], 2, "did you mean resnet50"),
        (["resnet50", "--input", "1x1x224x224"], 1, "expects 3 input channels, got 1"),
        (["resnet50", "--bogus"], 2, "unrecognized arguments"),
        (["resnet50", "--depth", "x"], 2, "invalid int value"),
        (["resnet50", "-o", "out.xyz"], 2, "unknown suffix"),
        (
            [f"{DATA / 'user_models.py'}:TinyNet", "--input", "32", "--model-args", "{bad"],
            2,
            "not valid JSON",
        ),
        ([f"{DATA / 'user_models.py'}:Branchy", "--input", "8"], 3, "control flow"),
        ([f"{DATA / 'user_models.py'}:BranchyFirst", "--input", "8"], 3, "control flow"),
        ([f"{DATA / 'user_models.py'}:Raises", "--input", "8"], 3, "broken constructor"),
        (["show", "missing.json"], 2, "no such file"),
        (["show", str(DATA)], 2, "Is a directory"),
        (["show", str(DATA / "user_models.py")], 2, "not a shapetrace report"),
        (["alexnet", "-o", "/nonexistent-dir/r.txt"], 2, "cannot write /nonexistent-dir/r.txt"),
        (["resnet18", "--model-args", '{"bogus": 1}'], 2, "--model-args do not match resnet18"),
        (["resnet18", "--depth", "0"], 2, "must be at least 1"),
        (["check", "resnet18"], 2, "at least one --input"),
    ],
)
def test_bad_input_ends_in_one_line_and_the_documented_exit_code(args, code, text) -> None:
    line = assert_one_line_error(run(*args), code)
    assert text in line


def test_debug_shows_the_traceback() -> None:
    result = run(f"{DATA / 'user_models.py'}:Raises", "--input", "8", "--debug")
    assert result.returncode == 3 and "Traceback" in result.stderr


def test_json_report_renders_again_with_show_without_importing_torch(tmp_path: Path) -> None:
    saved = tmp_path / "report.json"
    assert run("codereview_resnet50", "--input", "224", "-o", str(saved)).returncode == 0
    code = (
        "import sys; from shapetrace.cli import main; "
        f"rc = main(['show', {str(saved)!r}, '--format', 'markdown', '--depth', '1']); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "| **`layer_5`** | Sequential | (1, 2048, 7, 7) | 23,346,176 |" in result.stdout
    assert "layer_2.2.dim_equalizer" in result.stdout


def test_help_and_version_do_not_import_torch() -> None:
    for argv in (["--help"], ["--version"]):
        script = (
            "import sys\nfrom shapetrace.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules\n"
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    version = run("--version")
    assert version.stdout.strip() == "shapetrace 0.1.0"


def test_output_suffix_picks_the_format(tmp_path: Path) -> None:
    for suffix, marker in ((".md", "| Layer |"), (".txt", "Layer"), (".json", '"schema": 1')):
        out = tmp_path / f"r{suffix}"
        assert run("alexnet", "-o", str(out)).returncode == 0
        assert marker in out.read_text()


def test_no_color_is_honoured_even_when_forced() -> None:
    result = run("alexnet", env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert result.returncode == 0 and "\x1b[" not in result.stdout


def test_list_models_includes_ours_and_torchvision() -> None:
    names = run("--list-models").stdout.split()
    assert {"codereview_resnet50", "stembodyhead_resnet50", "resnet50", "raft_small"} <= set(names)
