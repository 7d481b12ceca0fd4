"""Shape formulas: how a node's size follows the input's, as text a person or Python can read.

A report's `shape_formula` (per node) and the `formula` of a coupled bound use this language:

- symbols `N` (batch), `H`, `W` (images), `T` (time, video), `L` (length, 1-d inputs);
- integers, `+`, `-`, `*`, parentheses;
- `floor(a/b)` and `ceil(a/b)` with `b` a positive integer: `a` divided by `b`, rounded down
  or up, on integers (`floor(a/b)` is Python's `a // b`, `ceil(a/b)` is `-(-a // b)`);
- `min(a, b)` and `max(a, b)`;
- in bound formulas only: comparisons (`==`, `!=`, `>=`, `<=`), `%` on integers, `and`, `or`.

`evaluate` and `holds` compute a formula exactly, at any size. Python's own `eval` gives the
same numbers with this environment, as long as every numerator stays below 2**53 (where a
float quotient of two integers can round across an integer):

    eval(formula, {"__builtins__": {}, **NAMES}, {"N": 1, "H": 224, "W": 224})

This module does not import torch.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
from collections.abc import Callable
from fractions import Fraction
from typing import Any

NAMES: dict[str, Callable[..., Any]] = {
    "floor": math.floor,
    "ceil": math.ceil,
    "min": min,
    "max": max,
}
"""The functions a formula calls, as Python's `eval` needs them."""

SYMBOLS = ("N", "T", "H", "W", "L")
"""The size symbols a formula may use."""

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: Fraction,  # exact: floor and ceil round the quotient without a float
    ast.Mod: operator.mod,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.GtE: operator.ge,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.Lt: operator.lt,
}


def evaluate(formula: str, **sizes: int) -> int:
    """The integer a shape formula gives at these sizes, computed exactly.

    >>> evaluate("ceil(H/32)", H=225)
    8
    """
    value = _eval(ast.parse(formula, mode="eval").body, sizes)
    if isinstance(value, bool) or Fraction(value).denominator != 1:
        raise ValueError(f"{formula!r} is not an integer at {sizes}: {value}")
    return int(value)


def holds(formula: str, **sizes: int) -> bool:
    """Whether a bound's formula (a comparison, or several joined by `and`/`or`) holds."""
    value = _eval(ast.parse(formula, mode="eval").body, sizes)
    if not isinstance(value, bool):
        raise ValueError(f"{formula!r} is not a condition")
    return value


def _eval(node: ast.expr, sizes: dict[str, int]) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in sizes:
            raise ValueError(f"no size given for {node.id}")
        return sizes[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, sizes)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, sizes), _eval(node.right, sizes))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in NAMES
        and not node.keywords
    ):
        return NAMES[node.func.id](*(_eval(a, sizes) for a in node.args))
    if isinstance(node, ast.Compare):
        values = [_eval(node.left, sizes), *(_eval(c, sizes) for c in node.comparators)]
        for op, (a, b) in zip(node.ops, itertools.pairwise(values), strict=True):
            if type(op) not in _COMPARE:
                raise ValueError(f"unsupported comparison {type(op).__name__}")
            if not _COMPARE[type(op)](a, b):
                return False
        return True
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, sizes) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    raise ValueError(f"not a shape formula: {ast.unparse(node)}")


# -- pre-parsed formulas --------------------------------------------------------------------

Compiled = Callable[[dict[str, int]], Any]
"""A formula (or a tuple of formulas) parsed once: call it with the sizes, as `evaluate` would."""


def compile_formulas(formulas: list[str]) -> Compiled:
    """Parse shape formulas once into one function of the sizes that returns their integers,
    exactly as `evaluate` computes each (`floor(a/b)` and `ceil(a/b)` on integers, `a/b`
    elsewhere as an exact fraction). Evaluating 200 pre-parsed formulas takes microseconds;
    `evaluate` parses its string at every call.

    The function is generated from the checked syntax tree, never from the text itself, so a
    formula read from a report can call nothing but the functions of this language. Raises
    ValueError on anything that is not a formula."""
    return compile_sources(sources(formulas))


def sources(formulas: list[str]) -> list[str]:
    """The Python text `compile_formulas` generates for each formula, checked: ValueError on
    anything that is not a formula. Checking many formulas this way and compiling them together
    (`compile_sources`) costs one `compile`, not one per formula."""
    try:
        return [_source(ast.parse(f, mode="eval").body) for f in formulas]
    except (SyntaxError, RecursionError, MemoryError) as exc:
        raise ValueError(f"not a shape formula: {exc}") from exc


def compile_sources(parts: list[str]) -> Compiled:
    """One function of the sizes computing every formula `sources` checked (see
    `compile_formulas`)."""
    code = compile(f"({', '.join(parts)},)", "<shape formula>", "eval")
    env: dict[str, Any] = {"__builtins__": {}, "_F": Fraction, "_min": min, "_max": max}

    def run(sizes: dict[str, int]) -> tuple[int, ...]:
        try:
            values = eval(code, env, sizes)  # generated from a checked syntax tree
        except NameError as exc:
            raise ValueError(f"no size given for {exc.name}") from exc
        out = []
        for value in values:
            if isinstance(value, Fraction):
                if value.denominator != 1:
                    raise ValueError(f"a shape formula is not an integer at {sizes}: {value}")
                value = value.numerator
            out.append(value)
        return tuple(out)

    return run


def _source(node: ast.expr) -> str:
    """Python text for one checked formula node: integers, size symbols, + - *, exact
    division, floor/ceil of a quotient, min and max."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return str(node.value)
    if isinstance(node, ast.Name) and node.id in SYMBOLS:
        return node.id
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        return f"({sign}{_source(node.operand)})"
    if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Mod):
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Mod: "%"}[type(node.op)]
        return f"({_source(node.left)} {symbol} {_source(node.right)})"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return f"_F({_source(node.left)}, {_source(node.right)})"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in NAMES
        and not node.keywords
    ):
        name = node.func.id
        if name in ("floor", "ceil"):
            if len(node.args) != 1:
                raise ValueError(f"{name} takes one argument")
            arg = node.args[0]
            if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Div):
                a, b = _source(arg.left), _source(arg.right)
                # Floor division is exact on integers and fractions alike.
                return f"({a} // {b})" if name == "floor" else f"(-((-{a}) // {b}))"
            inner = _source(arg)
            return f"({inner} // 1)" if name == "floor" else f"(-((-{inner}) // 1))"
        return f"_{name}({', '.join(_source(a) for a in node.args)})"
    raise ValueError(f"not a shape formula: {ast.unparse(node)}")
