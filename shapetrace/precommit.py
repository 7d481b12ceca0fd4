"""`shapetrace-pre-commit`: the command of the pre-commit hook (.pre-commit-hooks.yaml).

It is `shapetrace check` run from the repository's root, with the repository on sys.path so
that `package.module:Name` imports the code being committed. The model and sizes come from the
hook's `args` (`[mypkg.nets:Net, --input, "224", --input, "448"]`), or, when there are none,
from pyproject.toml:

.. code-block:: toml

    [tool.shapetrace.check]
    model = "mypkg.nets:Net"
    input = ["224", "448"]
    model-args = {base_dim = 32}    # optional, as --model-args
    train = false                   # optional

(`[[tool.shapetrace.check]]` for several models). Exit 0 when every size is accepted, 1 when
one is rejected, with `shapetrace check`'s one line per size; see docs/pre-commit.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shapetrace.cli import main as cli_main
from shapetrace.cli.output import say
from shapetrace.errors import EXIT_USAGE, UsageError

TABLE = "[tool.shapetrace.check]"


def configured(pyproject: Path) -> list[list[str]]:
    """`shapetrace check` argument lists from pyproject.toml's [tool.shapetrace.check]; none
    when the file or the table is absent. UsageError when the table is malformed."""
    if not pyproject.is_file():
        return []
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UsageError(
            f"reading {TABLE} needs Python 3.11; give the model in the hook's args"
        ) from None
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{pyproject}: {exc}") from exc
    table = data.get("tool", {}).get("shapetrace", {}).get("check")
    if table is None:
        return []
    entries = table if isinstance(table, list) else [table]
    return [_arguments(entry) for entry in entries]


def _arguments(entry: Any) -> list[str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
        raise UsageError(f'{TABLE} needs model = "..." (a name, file.py:Name or pkg.mod:Name)')
    inputs = entry.get("input", [])
    inputs = [inputs] if isinstance(inputs, (str, int)) else inputs
    if not inputs or not isinstance(inputs, list):
        raise UsageError(f'{TABLE} needs input = ["224", "448"] (the sizes to check)')
    args = [entry["model"]]
    for size in inputs:
        args += ["--input", str(size)]
    model_args = entry.get("model-args")
    if model_args is not None:
        text = model_args if isinstance(model_args, str) else json.dumps(model_args)
        args += ["--model-args", text]
    if entry.get("train"):
        args.append("--train")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The hook's command; returns (as a console script: exits with) the worst exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path.cwd()  # pre-commit runs hooks from the repository's root
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        runs = [args] if args else configured(root / "pyproject.toml")
    except UsageError as exc:
        say(f"shapetrace: error: {exc}")
        return _done(EXIT_USAGE, argv)
    if not runs:
        say(
            "shapetrace: error: name the model and sizes in the hook's args "
            f"([MODEL, --input, '224', --input, '448']) or in pyproject.toml's {TABLE}"
        )
        return _done(EXIT_USAGE, argv)
    codes = []
    for run in runs:
        if len(runs) > 1:
            print(f"{run[0]}:", flush=True)
        codes.append(cli_main(["check", *run]))
    return _done(max(codes), argv)


def _done(code: int, argv: Sequence[str] | None) -> int:
    if argv is None:  # the console script: leave without torch's interpreter teardown
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
