"""Tests of `shapetrace sweep`: per size, the output shape or the breaking node, beside the
domain. Each row comes from the shapes propagated at that size; the domain column from the
input-size pass at the base input, so the two are independent and must agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_sizing import UNet
from torch import nn

from shapetrace.cli.sweep import run as run_sweep
from shapetrace.domain import in_domain
from shapetrace.errors import UsageError
from shapetrace.tasks.runner import SizeRunner
from shapetrace.tasks.sweep import parse_sizes, spatial_sizes, sweep

SIZES = ("--sizes", "160:256:16")
TINY = str(Path(__file__).parent / "data" / "user_models.py") + ":TinyNet"


def test_ranges_include_their_stop_and_lists_take_hxw_items() -> None:
    sizes = parse_sizes("32:1024:32")
    assert len(sizes) == 32 and sizes[0] == (32,) and sizes[-1] == (1024,)
    assert parse_sizes("160:170:16") == [(160,)]
    assert parse_sizes("5:7") == [(5,), (6,), (7,)]
    assert parse_sizes("224,256x320, 448") == [(224,), (256, 320), (448,)]
    for bad in ("0:10", "10:5", "32:64:0", "a,b", "224x", "1:2:3:4", "-4"):
        with pytest.raises(UsageError):
            parse_sizes(bad)


def test_one_size_sets_every_axis_but_time() -> None:
    assert spatial_sizes((64,), ["H", "W"], {"H": 1, "W": 2}) == {"H": 64, "W": 64}
    assert spatial_sizes((64, 32), ["H", "W"], {}) == {"H": 64, "W": 32}
    assert spatial_sizes((64,), ["T", "H", "W"], {"T": 16}) == {"T": 16, "H": 64, "W": 64}
    assert spatial_sizes((8, 64, 32), ["T", "H", "W"], {}) == {"T": 8, "H": 64, "W": 32}
    with pytest.raises(UsageError):
        spatial_sizes((1, 2, 3), ["H", "W"], {})


def test_coupled_axes_are_judged_by_their_combinations() -> None:
    domain = {
        "H": [[8, 9]],
        "W": [[8, 9]],
        "bounds": [
            {
                "node": "fc",
                "axis": "H,W",
                "kind": "coupled",
                "combinations": [{"H": [[4, 5]], "W": [[16, 17]]}, {"H": [[8, 9]], "W": [[8, 9]]}],
            }
        ],
    }
    assert in_domain(domain, {"H": 4, "W": 17})
    assert not in_domain(domain, {"H": 4, "W": 9})
    assert in_domain({"H": [[16, None, 16]], "W": [[1, None]], "bounds": []}, {"H": 48, "W": 3})
    assert not in_domain({"H": [[16, None, 16]], "W": [[1, None]]}, {"H": 40, "W": 3})
    unknown = {**domain, "bounds": [{**domain["bounds"][0], "combinations": None}]}
    del unknown["bounds"][0]["combinations"]
    assert in_domain(unknown, {"H": 4, "W": 17}) is None


def test_codereview_sweep_names_the_breaking_node_per_size_in_agreement_with_the_domain() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shapetrace", "sweep", "codereview_resnet50", *SIZES, "-f", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    data = json.loads(result.stdout)
    assert data["domain"]["H"] == [[193, 224]] and data["domain"]["W"] == [[193, 224]]
    rows = data["sizes"]
    assert [r["size"] for r in rows] == [f"{n}x{n}" for n in range(160, 257, 16)]
    for row in rows:
        inside = 193 <= row["H"] <= 224
        assert row["in_domain"] == inside
        assert (row["status"] == "accepted") == inside, row
        if inside:
            assert row["output_shape"] == [1, 2] and row["node"] is None
        else:
            # Below 193 the fixed 7x7 pool gets a smaller map; above 224 fc_layer gets more.
            assert row["node"] == ("avgpool" if row["H"] < 193 else "fc_layer"), row
    assert rows[-1]["reason"] == "Linear(2048 -> 2) received 8192 features"


def test_table_lists_each_size_with_the_domain_and_exits_1_on_a_rejection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_sweep([TINY, "--sizes", "28,32,16x112,64", "--input", "1x3x32x32"])
    out, err = capsys.readouterr()
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"{TINY} · input 1x3x32x32 · sweep of H, W")
    rows = {line.split()[0]: line.split() for line in lines[3:7]}
    assert rows["28x28"][1:3] == ["rejected", "view:"] and rows["28x28"][-1] == "rejects"
    assert rows["32x32"][1:] == ["accepted", "(1,", "10)", "accepts"]
    # Only the coupled bound's combinations know that 16x112 works.
    assert rows["16x112"][1] == "accepted" and rows["16x112"][-1] == "accepts"
    assert rows["64x64"][1] == "rejected" and rows["64x64"][-1] == "rejects"
    assert "Domain: H in [32, 35]; W in [32, 35] (set by view)" in out
    assert "Coupled at view: H in [16, 19] with W in [112, 115]" in out
    assert "2 of 4 sizes accepted." in out


def test_markdown_and_json_files_and_exit_0_when_every_size_is_accepted(tmp_path: Path) -> None:
    md, js = tmp_path / "sweep.md", tmp_path / "sweep.json"
    assert run_sweep([TINY, "--sizes", "32:35", "--input", "1x3x32x32", "-o", str(md)]) == 0
    text = md.read_text()
    assert "| size | status | output shape, or where it breaks | domain |" in text
    assert text.count("| accepted | (1, 10) | accepts |") == 4
    assert run_sweep([TINY, "--sizes", "32,36", "--input", "1x3x32x32", "-o", str(js)]) == 1
    data = json.loads(js.read_text())
    assert [r["status"] for r in data["sizes"]] == ["accepted", "rejected"]
    assert data["aligned_multiple"] == {"H": 4, "W": 4}
    for target in ("sweep.svg", "missing/sweep.json"):  # no such format; no such folder
        with pytest.raises(UsageError):
            run_sweep([TINY, "--sizes", "32", "--input", "1x3x32x32", "-o", str(tmp_path / target)])


def _unet() -> nn.Module:
    return UNet(levels=4, in_channels=1, width=2).eval()


@pytest.mark.parametrize(
    ("model", "base", "sizes"),
    [
        # Below 193 the 7x7 pool breaks; above 224 fc_layer gets too many features.
        ("codereview_resnet50", None, [32, 100, 192, 193, 224, 225, 256, 448, 4096]),
        # Skip concatenations: multiples of 16 only; a size below 16 breaks in a pool.
        (_unet, "1x1x64x48", [1, 8, 15, 16, 17, 40, 48, 64]),
        # torch._assert on the image size: the message quotes the size it got.
        ("vit_b_16", None, [16, 223, 224, 240]),
    ],
    ids=["codereview", "unet", "vit"],
)
def test_each_swept_size_gets_the_verdict_and_reason_of_every_pass_run_at_that_size(
    model: Any, base: str | None, sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweep answers a rejected size from its breaking node alone; the whole shape pass
    # (`_shapes_failure`) is only the fallback, and is not needed for these models.
    whole_pass: list[Any] = []
    shapes_failure = SizeRunner._shapes_failure
    monkeypatch.setattr(
        SizeRunner,
        "_shapes_failure",
        lambda self, *args: whole_pass.append(args) or shapes_failure(self, *args),
    )
    spec = model() if callable(model) else model
    result = sweep(spec, [(n,) for n in sizes], base)
    # Independent of the formulas: every pass at each size, as `check` runs its first size.
    runner = SizeRunner(spec)
    lead = (base or "1x3x224x224").split("x")[:-2]
    rejected = 0
    for row, n in zip(result.rows, sizes, strict=True):
        whole = runner.run("x".join([*lead, str(n), str(n)]))[1]
        assert row.result == whole, n
        rejected += not whole.accepted
    assert whole_pass == []
    assert rejected >= 3


class FlatHead(nn.Module):
    """A 3x3 conv and a Linear sized for 32x32 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 30 * 30, 2)

    def forward(self, x: Any) -> Any:
        return self.fc(self.c(x).flatten(1))


@pytest.mark.parametrize("size", ["1x3x40x40:float16", "1x3x40x40:int64", "1x3x40x40"])
def test_a_rejected_size_with_another_dtype_is_judged_in_that_dtype(size: str) -> None:
    runner = SizeRunner(FlatHead())
    base, _ = runner.run("1x3x32x32")
    quick = runner.check(size, base)
    whole = runner.run(size)[1]
    assert quick.status == whole.status == "rejected"
    assert (quick.node, quick.reason) == (whole.node, whole.reason)
    # float32 breaks at the Linear; half and long inputs already at the conv's float weights
    assert quick.node == ("fc" if ":" not in size else "c")


CUT_MODEL = '''
import torch
from torch import nn


class Pasted(nn.Module):
    """Hands its detections to a method that loops over them: the capture ends there."""

    def __init__(self):
        super().__init__()
        self.score = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        boxes = torch.nonzero(self.score(x) > 0).float()
        return self.paste(boxes)

    def paste(self, boxes):
        return torch.stack([b.sum() for b in boxes])
'''


def test_sizes_shapes_alone_cannot_decide_exit_3_as_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shapetrace.cli import main

    source = tmp_path / "pasted.py"
    source.write_text(CUT_MODEL)
    spec = f"{source}:Pasted"
    code = main(["sweep", spec, "--input", "1x3x16x16", "--sizes", "16,24", "-f", "json"])
    rows = json.loads(capsys.readouterr().out)["sizes"]
    assert [r["status"] for r in rows] == ["unknown", "unknown"]
    assert [r["size"] for r in rows] == ["16x16", "24x24"]
    assert all(r["node"] == "paste" for r in rows)
    assert code == 3
    assert main(["check", spec, "--input", "1x3x16x16"]) == 3
