"""`shapetrace show` of a report from anywhere: any JSON value in any field of a valid report is
rendered (exit 0, or 1/3 when the report records a break) or refused in one line (exit 2);
never an internal error (exit 4). Derandomized in CI (tests/conftest.py); every example that
once found a bug stays below as an explicit `@example`."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shapetrace.cli import main


def valid_report() -> dict[str, Any]:
    """A small report with every field the views read, optional ones included."""
    node = {
        "name": "body.conv",
        "op": "call_module",
        "target": "body.conv",
        "module": "body.conv",
        "type": "Conv2d",
        "inputs": ["x"],
        "shape": [1, 4, 8, 8],
        "dtype": "float32",
        "params": 112,
        "rf": {"size": [3, 3], "stride": [1, 1], "padding": [1, 1]},
        "rf_covers_input": False,
        "rf_covers_input_up_to": [3, 3],
        "depends_on_input": "scales",
        "shape_formula": ["N", "4", "H", "W"],
        "macs": 7168,
        "flops": 14336,
        "activation_bytes": 1024,
        "missing": {"rf": "why"},
    }
    return {
        "schema": 1,
        "source": {
            "model": "m",
            "model_args": {},
            "input": ["1x3x8x8"],
            "mode": "eval",
            "trace": "fx",
            "versions": {"shapetrace": "0.1.0"},
        },
        "model": "m",
        "input": [1, 3, 8, 8],
        "nodes": [
            {
                "name": "x",
                "op": "placeholder",
                "target": "x",
                "module": None,
                "type": "Input",
                "inputs": [],
                "shape": [1, 3, 8, 8],
                "dtype": "float32",
                "params": 0,
            },
            node,
            {
                "name": "size",
                "op": "call_method",
                "target": "size",
                "module": None,
                "type": "size",
                "inputs": ["body.conv"],
                "shape": None,
                "dtype": None,
                "params": 0,
                "value": 1,
            },
        ],
        "modules": [
            {
                "path": "body",
                "type": "Block",
                "params": 112,
                "calls": 1,
                "shape": [1, 4, 8, 8],
                "rf": {"global": True},
                "depends_on_input": "scales",
                "macs": 7168,
                "flops": 1,
            },
            {
                "path": "body.conv",
                "type": "Conv2d",
                "params": 112,
                "calls": 1,
                "shape": [1, 4, 8, 8],
            },
        ],
        "totals": {
            "params": 112,
            "trainable_params": 112,
            "param_bytes": 448,
            "buffers": 0,
            "macs": 7168,
            "flops": 14336,
            "peak_activation_bytes": 1024,
            "uncounted": ["size"],
        },
        "dead_modules": [{"path": "dead", "type": "Linear", "params": 3}],
        "train_only_modules": [{"path": "aux", "type": "Linear", "params": 4}],
        "failure": {
            "node": "size",
            "module": None,
            "type": "size",
            "input_shapes": [[1]],
            "message": "size: broke",
            "kind": "rejected",
        },
        "domain": {
            "H": [[3, None]],
            "W": [[3, 64, 2]],
            "bounds": [
                {
                    "node": "body.conv",
                    "axis": "H",
                    "constraint": "H >= 3",
                    "kind": "min",
                    "value": 3,
                }
            ],
            "at": {"H": 8, "W": 8},
        },
        "verdict": "accepts H >= 3",
        "aligned_multiple": {"H": 1, "W": 2},
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            paths += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            paths += _paths(inner, (*prefix, i))
    return paths


PATHS = [p for p in _paths(valid_report()) if p]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)


def _replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(valid_report())
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def _show(data: Any, fmt: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "r.json"
        saved.write_text(json.dumps(data))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["show", str(saved), "--format", fmt])
    return code, err.getvalue()


def test_the_valid_report_renders_in_every_format() -> None:
    for fmt in ("table", "markdown", "json"):
        assert _show(valid_report(), fmt)[0] == 1  # it records a break


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    value=json_values,
    fmt=st.sampled_from(["table", "markdown", "json"]),
)
@example(path=("nodes",), value=5, fmt="table")
@example(path=("nodes", 1, "shape"), value={"a": "x"}, fmt="table")
@example(path=("input",), value="x", fmt="table")
@example(path=("totals", "params"), value=None, fmt="table")
@example(path=("nodes", 1, "rf", "size"), value=5, fmt="table")
@example(path=("domain", "H"), value=[[1]], fmt="table")
@example(path=("nodes", 1, "missing"), value=[], fmt="table")
@example(path=("dead_modules", 0), value=[], fmt="markdown")
@example(path=("failure", "kind"), value="other", fmt="table")
@example(path=("source",), value=[], fmt="table")
@example(path=("nodes", 0, "name"), value="body.conv", fmt="table")
@example(path=("nodes",), value=[], fmt="table")
@example(path=("source", "input"), value=None, fmt="table")
@example(path=("nodes", 1, "rf", "size"), value=None, fmt="table")
def test_show_never_ends_in_an_internal_error(path: tuple[Any, ...], value: Any, fmt: str) -> None:
    code, err = _show(_replaced(path, value), fmt)
    assert code in (0, 1, 2, 3), err
    assert len(err.strip().splitlines()) == (0 if code == 0 else 1), err
