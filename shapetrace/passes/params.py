"""Parameter pass: parameters per node and module, totals with shared tensors counted once,
and the modules a forward never calls (dead) or calls only in training."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import fx, nn


def unique_params(module: nn.Module) -> int:
    """Elements of the module's parameters, each shared tensor counted once."""
    return sum(p.numel() for p in module.parameters())


def node_params(gm: fx.GraphModule, node: fx.Node) -> int:
    """Parameters a node owns: the whole leaf module it calls, or the tensor it fetches."""
    if node.op == "call_module":
        return unique_params(gm.get_submodule(str(node.target)))
    if node.op == "get_attr":
        owner, _, attr = str(node.target).rpartition(".")
        value = getattr(gm.get_submodule(owner), attr, None)
        if isinstance(value, nn.Parameter):
            return value.numel()
    return 0


def totals(model: nn.Module) -> dict[str, Any]:
    """Parameters, trainable parameters, parameter bytes and buffer elements."""
    params = list(model.parameters())
    return {
        "params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "buffers": sum(b.numel() for b in model.buffers()),
    }


def _live(model: nn.Module, called: set[int], used: set[int]) -> set[int]:
    """Ids of modules that run, own a tensor the graph reads, or contain such a module."""
    live: set[int] = set()

    def visit(module: nn.Module) -> bool:
        alive = id(module) in called or any(id(t) in used for t in _own_tensors(module))
        for child in module.children():
            alive = visit(child) or alive
        if alive:
            live.add(id(module))
        return alive

    visit(model)
    return live


def _own_tensors(module: nn.Module) -> Iterable[torch.Tensor]:
    yield from module.parameters(recurse=False)
    yield from module.buffers(recurse=False)


def unused_modules(
    model: nn.Module, called: set[int], used: set[int]
) -> list[tuple[str, nn.Module]]:
    """The topmost modules (canonical paths) that the forward described by `called` never uses."""
    live = _live(model, called, used)
    found: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    for path, module in model.named_modules():
        if not path or id(module) in live or id(module) in seen:
            continue
        parent = path.rpartition(".")[0]
        parent_module = model.get_submodule(parent) if parent else model
        if id(parent_module) in live:
            found.append((path, module))
        seen.add(id(module))
    return found


def module_entry(path: str, module: nn.Module) -> dict[str, Any]:
    """A dead or train-only module as it appears in the report."""
    return {"path": path, "type": type(module).__name__, "params": unique_params(module)}
