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


# -- In-process: atomic outputs, exit codes, the table's width ----------------------------------


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`full_disk()`: from then on, files opened for writing under tmp_path take half of what is
    written, then fail with ENOSPC, as on a full disk."""
    import builtins
    import errno
    import io

    real_open = io.open

    class Filling:
        def __init__(self, handle) -> None:
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

    def fake_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        writing = any(m in mode for m in "wax+")
        if writing and isinstance(file, (str, os.PathLike)) and str(tmp_path) in str(file):
            return Filling(handle)
        return handle

    def fill() -> None:
        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)

    return fill


def _saved_report(folder: Path) -> Path:
    from test_views import _chain

    saved = folder / "saved.json"
    saved.write_text(_chain(3).to_json())
    return saved


@pytest.mark.parametrize("suffix", [".txt", ".md", ".json", ".dot", ".svg"])
def test_a_full_disk_leaves_an_existing_show_output_whole(
    tmp_path: Path, suffix: str, full_disk
) -> None:
    from shapetrace.cli import main

    saved = _saved_report(tmp_path)
    out = tmp_path / f"out{suffix}"
    out.write_text("the previous, complete output\n")
    full_disk()
    assert main(["show", str(saved), "-o", str(out)]) == 2
    assert out.read_text() == "the previous, complete output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["saved.json", out.name])


def test_sweep_and_diff_outputs_are_written_atomically(
    tmp_path: Path, full_disk, monkeypatch
) -> None:
    from shapetrace import outputs
    from shapetrace.cli import diff, sweep
    from shapetrace.tasks.sweep import Sweep

    out = tmp_path / "out.md"
    out.write_text("kept\n")
    full_disk()
    monkeypatch.setattr(
        "shapetrace.tasks.sweep.sweep", lambda *a, **k: Sweep("m", "1x3x8x8", ["H", "W"])
    )
    monkeypatch.setattr(sweep, "load_analysis", lambda: None, raising=False)
    written: list[str] = []
    real = outputs.write_text
    monkeypatch.setattr(outputs, "write_text", lambda p, t: (written.append(str(p)), real(p, t)))
    from shapetrace.cli import main

    assert main(["sweep", "m", "--sizes", "8", "-o", str(out)]) == 2
    assert out.read_text() == "kept\n" and written == [str(out)]
    from test_views import _chain

    from shapetrace.tasks.diff import diff_reports

    monkeypatch.setattr(
        "shapetrace.tasks.diff.diff_models", lambda *a, **k: diff_reports(_chain(2), _chain(3))
    )
    monkeypatch.setattr(diff, "load_analysis", lambda: None, raising=False)
    assert main(["diff", "a", "b", "-o", str(out)]) == 2
    assert out.read_text() == "kept\n" and written == [str(out)] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.md"]


def test_main_command_output_is_atomic(tmp_path: Path, full_disk, monkeypatch) -> None:
    from test_views import _chain

    from shapetrace.cli import analyze, main

    monkeypatch.setattr(analyze, "load_analysis", lambda: None, raising=False)
    monkeypatch.setattr("shapetrace.analysis.analyze", lambda *a, **k: _chain(2))
    out = tmp_path / "r.json"
    out.write_text("{}\n")
    full_disk()
    assert main(["chain", "-o", str(out)]) == 2
    assert out.read_text() == "{}\n"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`shapetrace ARGS` in-process: exit code, stdout, the one line on stderr."""
    from shapetrace.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) <= 1 and "Traceback" not in err, err
    return code, out, lines[0] if lines else ""


@pytest.mark.parametrize("sizes", ["²", "1:²", "224,²", "224x٣", "²:8"])
def test_malformed_sweep_sizes_are_usage_errors(capsys, sizes: str) -> None:
    code, _, line = cli(capsys, "sweep", "resnet18", "--sizes", sizes)
    assert code == 2 and "--sizes" in line


def test_sys_exit_from_code_shapetrace_does_not_guard_exits_3_in_one_line(
    capsys, monkeypatch
) -> None:
    from shapetrace.cli import analyze

    def exits(*args, **kwargs):
        raise SystemExit(0)

    monkeypatch.setattr(analyze, "load_analysis", lambda: None, raising=False)
    monkeypatch.setattr("shapetrace.analysis.analyze", exits)
    code, out, line = cli(capsys, "resnet18")
    assert code == 3 and out == ""
    assert line == "shapetrace: error: the model's code called sys.exit(0); nothing was analysed"


def test_help_still_ends_through_argparse(capsys) -> None:
    from shapetrace.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["sweep", "--help"])
    assert ended.value.code == 0 and "--sizes" in capsys.readouterr().out


def _report_data() -> dict:
    from test_views import _chain

    return json.loads(_chain(2).to_json())


@pytest.mark.parametrize(
    ("field", "change", "named"),
    [
        ("nodes", lambda d: 5, "nodes: expected a list, got an integer"),
        ("shape", lambda d: d["nodes"][1].update(shape={"a": "x"}), "nodes[1].shape"),
        ("input", lambda d: "x", "input: expected a list of integers, got a string"),
        ("totals", lambda d: d["totals"].update(params="many"), "totals.params"),
        ("modules", lambda d: d["modules"][0].update(path=None), "modules[0].path"),
        ("failure", lambda d: [], "failure: expected an object, got a list"),
        ("domain", lambda d: {"H": [[1]]}, "domain"),
        ("source", lambda d: d["source"].update(input="1x3x8x8"), "source.input"),
        ("rf", lambda d: d["nodes"][1].update(rf={"size": 5}), "nodes[1].rf"),
    ],
)
def test_show_of_a_report_with_wrong_field_types_names_the_field(
    tmp_path: Path, capsys, field: str, change, named: str
) -> None:
    data = _report_data()
    result = change(data)
    if result is not None:
        data[field] = result
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(data))
    code, _, line = cli(capsys, "show", str(saved))
    assert code == 2 and "not a shapetrace report" in line and named in line, line


def test_show_of_deeply_nested_json_is_a_usage_error(tmp_path: Path, capsys) -> None:
    saved = tmp_path / "deep.json"
    saved.write_text("[" * 100_000 + "]" * 100_000)
    code, _, line = cli(capsys, "show", str(saved))
    assert code == 2 and "not a shapetrace report" in line


def _pipe_closed_before_output(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run shapetrace with its stdout a pipe whose reader has already left."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "shapetrace", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=300,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "args", [["--list-models"], ["resnet18", "--depth", "1"], ["codereview_resnet50", "-i", "448"]]
)
def test_a_closed_pipe_ends_quietly_with_status_141(args: list[str]) -> None:
    result = _pipe_closed_before_output(*args)
    assert result.stderr == b""
    assert result.returncode == 141


def test_table_keeps_layer_shape_and_input_size_whole_at_80_columns() -> None:
    import io

    from test_views import _chain

    from shapetrace.views import table

    report = _chain(2)
    for node in report.nodes:
        node.shape = [1, 3, 224, 224]
        node.macs, node.rf, node.depends_on_input = (
            118_013_952,
            {"size": [7], "stride": [2]},
            "scales",
        )
        node.activation_bytes = 3_211_264
    report.totals.update(macs=4 * 118_013_952, flops=0, peak_activation_bytes=6_422_528)
    buffer = io.StringIO()
    table.render(report, file=buffer, color=False, width=80)
    text = buffer.getvalue()
    rows = [line for line in text.splitlines() if line.startswith(("│", "┃", "┏", "└"))]
    assert max(len(line) for line in rows) <= 80
    assert "…" not in "".join(rows).replace("body.0 …", "")
    assert "(1, 3, 224, 224)" in text and "body.1.relu" in text and "scales" in text
    assert "Not shown at 80 columns: RF size/stride" in text
    wide = io.StringIO()
    table.render(report, file=wide, color=False, width=200)
    assert "Not shown" not in wide.getvalue() and "RF size/stride" in wide.getvalue()
    assert "Activations" in wide.getvalue() and "3.1 MiB" in wide.getvalue()


def test_piped_table_honours_columns(monkeypatch, capsys) -> None:
    from test_views import _chain

    from shapetrace.views import table

    report = _chain(2)
    for node in report.nodes:
        node.shape, node.macs, node.rf = [1, 3, 224, 224], 118_013_952, {"size": [7], "stride": [2]}
    report.totals.update(macs=1, flops=2)
    monkeypatch.setenv("COLUMNS", "60")
    table.render(report)
    narrow = capsys.readouterr().out
    assert max(len(line) for line in narrow.splitlines() if line.startswith("│")) <= 60
    monkeypatch.delenv("COLUMNS")
    table.render(report)
    natural = capsys.readouterr().out
    assert "RF size/stride" in natural and "Not shown" not in natural


def test_mac_total_says_which_ops_it_could_not_count() -> None:
    from test_views import _chain

    from shapetrace.views.summary import totals_lines

    report = _chain(2)
    report.nodes[1].macs = 100
    report.nodes[3].missing = {"macs": "no cost formula"}
    report.nodes[3].type = "shifted_window_attention"
    report.totals.update(
        macs=100, flops=200, peak_activation_bytes=3 * 2**20, uncounted=["shifted_window_attention"]
    )
    lines = totals_lines(report)
    assert (
        "MACs: at least 100 (1 ops uncounted: shifted_window_attention); FLOPs: at least 200"
        in lines
    )
    assert "Peak activation memory: 3.0 MiB" in lines


def test_print_report_shows_the_table_and_repr_is_short() -> None:
    from test_views import _chain

    import shapetrace

    report = _chain(300)
    assert repr(report) == "<Report chain input (1, 4, 8, 8): 601 nodes, 6,000 params, ok>"
    text = str(report)
    assert text.startswith("chain · input 1x4x8x8") and "body.299.relu" in text
    assert "Total params: 6,000" in text
    assert "analyze" in dir(shapetrace)


def test_output_to_a_device_or_without_a_suffix_is_the_table_written_in_place(
    tmp_path: Path, capsys
) -> None:
    saved = _saved_report(tmp_path)
    before = os.stat("/dev/null")
    code, out, _ = cli(capsys, "show", str(saved), "-o", "/dev/null")
    after = os.stat("/dev/null")
    assert code == 0 and out == ""
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)  # still the device
    code, _, _ = cli(capsys, "show", str(saved), "-o", str(tmp_path / "plain"))
    assert code == 0 and "Total params: 60" in (tmp_path / "plain").read_text()
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "real.md")
    assert cli(capsys, "show", str(saved), "-o", str(link))[0] == 0
    assert link.is_symlink() and "| Layer |" in (tmp_path / "real.md").read_text()
