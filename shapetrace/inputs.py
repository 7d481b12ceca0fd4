"""Parsing `--input` specs. Pure Python: no torch import, so bad input fails fast.

Grammar: `SPEC[,SPEC...]`, each `[name=]D1xD2x...[:dtype]`. Shorthands (`448`, `HxW`, `CxHxW`)
are completed from the model's first layer by `complete()`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shapetrace.errors import UsageError, first_line

DTYPES: tuple[str, ...] = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64"}
_DIMS = re.compile(r"^[0-9]+(x[0-9]+)*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HELP = "expected sizes like 1x3x224x224, 224, 3x224x224 or 1x128:int64"


@dataclass(frozen=True)
class TensorSpec:
    """One input tensor: its shape, dtype and, for keyword inputs, the argument name."""

    dims: tuple[int, ...]
    dtype: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        text = "x".join(str(d) for d in self.dims)
        if self.dtype and self.dtype != "float32":
            text += f":{self.dtype}"
        return f"{self.name}={text}" if self.name else text


@dataclass(frozen=True)
class FirstLayer:
    """What the first parameterised layer tells about the expected input."""

    kind: str  # "conv", "linear", "embedding" or "unknown"
    channels: int | None = None
    spatial_rank: int = 2


def parse(text: str) -> list[TensorSpec]:
    """Parse one `--input` value into raw (maybe shorthand) tensor specs."""
    text = text.strip()
    if not text:
        raise UsageError(f"malformed --input '': {_HELP}")
    specs = []
    names: set[str] = set()
    for part in text.split(","):
        spec = _parse_one(part.strip(), text)
        if spec.name is not None:
            if spec.name in names:
                raise UsageError(
                    f"malformed --input {_quote(text)}: {_quote(spec.name)} is given twice"
                )
            names.add(spec.name)
        specs.append(spec)
    return specs


def _parse_one(part: str, whole: str) -> TensorSpec:
    name = None
    if "=" in part:
        name, part = part.split("=", 1)
        name = name.strip()
        if not _NAME.match(name):
            raise UsageError(
                f"malformed --input {_quote(whole)}: {_quote(name)} is not an argument name"
            )
    dtype = None
    if ":" in part:
        part, dtype = part.split(":", 1)
        dtype = _DTYPE_ALIASES.get(dtype.strip(), dtype.strip())
        if dtype not in DTYPES:
            raise UsageError(
                f"malformed --input {_quote(whole)}: unknown dtype {_quote(dtype)} "
                f"(one of {', '.join(DTYPES)})"
            )
    dims_text = part.strip().lower().replace("×", "x")
    if not _DIMS.match(dims_text):
        raise UsageError(f"malformed --input {_quote(whole)}: {_HELP}")
    digits = dims_text.split("x")
    if len(digits) > 8:
        raise UsageError(f"malformed --input {_quote(whole)}: at most 8 dimensions")
    if any(len(d.lstrip("0")) > len(str(MAX_ELEMENTS)) for d in digits):
        raise UsageError(f"--input {_short(whole)}: {_TOO_LARGE}")
    dims = tuple(int(d.lstrip("0") or "0") for d in digits)
    if any(d < 1 for d in dims):
        raise UsageError(f"malformed --input {_quote(whole)}: every size must be at least 1")
    return check_size(TensorSpec(dims=dims, dtype=dtype, name=name))


# torch counts a tensor's elements and bytes in int64: a shape beyond that is no input at all.
MAX_ELEMENTS = 2**63 - 1
_ITEM_BYTES = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2}
_TOO_LARGE = "too large: a tensor holds at most 2**63 - 1 bytes"


def check_size(spec: TensorSpec) -> TensorSpec:
    """`spec` itself, or UsageError when torch could not even describe a tensor that large."""
    item = _ITEM_BYTES.get(spec.dtype or "float32", 1)
    total = item
    for d in spec.dims:
        total *= d
        if total > MAX_ELEMENTS:
            raise UsageError(f"--input {_short(str(spec))}: {_TOO_LARGE}")
    return spec


def _short(text: str) -> str:
    """The user's text quoted on one line, its middle cut when it is long (a 5000-digit size)."""
    if len(text) > 60:
        text = f"{text[:28]}...{text[-28:]}"
    return _quote(text)


def complete(spec: TensorSpec, first: FirstLayer, default: TensorSpec | None = None) -> TensorSpec:
    """Fill the leading dimensions of a shorthand from the model's first layer."""
    dims = spec.dims
    k = len(dims)
    dtype = spec.dtype
    if first.kind == "conv" and first.channels is not None:
        rank = first.spatial_rank
        full = rank + 2
        c = first.channels
        if k >= full:
            pass  # a full shape is taken as given: the model, not a guess, says if it fits
        elif k == full - 1:
            dims = (1, *dims)
        elif k == rank:
            dims = (1, c, *dims)
        elif k == 1:
            spatial = [dims[0]] * rank
            if rank == 3 and default is not None and len(default.dims) == 5:
                spatial[0] = default.dims[2]  # a single size means the frame size; keep T
            dims = (1, c, *spatial)
        elif rank == 3 and k == 2 and default is not None and len(default.dims) == 5:
            dims = (1, c, default.dims[2], *dims)
        else:
            raise UsageError(
                f"--input {spec}: the model's first layer is a {rank}-d convolution over "
                f"{c} channels, so the input has {full} dims (N x C x {_axes(rank)})"
            )
    elif first.kind == "embedding":
        dtype = dtype or "int64"
        if k == 1:
            dims = (1, *dims)
    elif first.kind == "linear" and k == 1:
        dims = (1, *dims)
    return check_size(TensorSpec(dims=dims, dtype=dtype or "float32", name=spec.name))


def _quote(text: str) -> str:
    """The user's text in quotes, on one line whatever it contains."""
    return f"'{text}'" if text.isprintable() else repr(text)


def _axes(rank: int) -> str:
    return {1: "L", 2: "H x W", 3: "T x H x W"}.get(rank, "...")


def parse_model_args(text: str | None) -> dict[str, Any]:
    """`--model-args` JSON object -> keyword arguments."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--model-args is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise UsageError(
            f"--model-args is nested too deeply (at most {MAX_NESTING} levels)"
        ) from exc
    except ValueError as exc:  # an integer of more than 4300 digits
        raise UsageError(f"--model-args is not usable JSON: {first_line(exc)}") from exc
    if not isinstance(value, dict):
        raise UsageError("--model-args must be a JSON object, e.g. '{\"base_dim\": 32}'")
    if _depth(value) > MAX_NESTING:
        raise UsageError(f"--model-args is nested too deeply (at most {MAX_NESTING} levels)")
    return value


# Keyword arguments of a model are shallow; deeper nesting only risks recursion further on
# (copying, reporting) and is refused here.
MAX_NESTING = 32


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (json.loads accepts ~1000 levels)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest
