"""Fallback capture for models torch.fx cannot trace: run the model eagerly on meta tensors with
hooks on every module, recording each call of a basic layer.

This sees modules, not the functions between them, so it yields per-module shapes only. Where
even the meta run stops (an op whose output size depends on values, like `torch.nonzero` in a
detector's post-processing), everything up to that point is kept and the innermost running
module is named.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from shapetrace.capture import is_basic_layer
from shapetrace.errors import CannotAnalyse, caused_by, describe_exit
from shapetrace.passes.shapes import MetaFault, MetaWatch, tensors_in


@dataclass
class HookCall:
    """One call of a basic layer."""

    name: str
    site: str
    target: str
    module: nn.Module
    inputs: list[str]
    output: Any = None


@dataclass
class HookCapture:
    """What the eager meta run showed, and where it stopped: `fault` is set when the meta run,
    not the model, is to blame for the stop."""

    calls: list[HookCall] = field(default_factory=list)
    module_calls: Counter[str] = field(default_factory=Counter)
    module_outputs: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    fault: MetaFault | None = None
    failed_site: str = ""
    failed_type: str = ""


def hook_run(model: nn.Module, args: list[Any], kwargs: dict[str, Any]) -> HookCapture:
    """Run `model(*args, **kwargs)` (meta tensors) and record every module call.

    An error the model raises ends the run and is recorded; an error in these hooks (shapetrace's
    own code) propagates."""
    result = HookCapture()
    own_errors: list[BaseException] = []
    paths = {id(m): p for p, m in model.named_modules()}
    leaves = {id(m) for m in model.modules() if is_basic_layer(m) or not any(m.children())}
    stack: list[tuple[str, nn.Module]] = [("", model)]
    producers: dict[int, str] = {}
    counts: Counter[str] = Counter()
    pending: dict[int, list[HookCall]] = {}

    def before(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        try:
            record_call(module, inputs)
        except Exception as exc:
            own_errors.append(exc)
            raise

    def after(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        try:
            record_output(module, output)
        except Exception as exc:
            own_errors.append(exc)
            raise

    def record_call(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        parent_site, parent = stack[-1]
        site = paths.get(id(module), "")
        for child_name, child in parent._modules.items():
            if child is module:
                site = f"{parent_site}.{child_name}" if parent_site else child_name
                break
        stack.append((site, module))
        result.module_calls[site] += 1
        if id(module) in leaves:
            target = paths.get(id(module), site)
            index = counts[target]
            counts[target] += 1
            call = HookCall(
                name=target if index == 0 else f"{target}_{index}",
                site=site,
                target=target,
                module=module,
                inputs=[producers[id(t)] for t in tensors_in(inputs) if id(t) in producers],
            )
            pending.setdefault(id(module), []).append(call)
            result.calls.append(call)

    def record_output(module: nn.Module, output: Any) -> None:
        site, _ = stack.pop()
        result.module_outputs[site] = output
        if id(module) in leaves and pending.get(id(module)):
            call = pending[id(module)].pop()
            call.output = output
            for tensor in tensors_in(output):
                producers[id(tensor)] = call.name

    handles = []
    for module in model.modules():
        if module is model:
            continue
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))
    watch = MetaWatch()
    try:
        with torch.no_grad(), torch.device("meta"), watch:
            model(*args, **kwargs)
    except Exception as exc:
        if any(caused_by(exc, own) for own in own_errors):
            raise
        result.error = exc
        result.fault = watch.fault_of(exc)
        site, module = stack[-1]
        result.failed_site = site
        result.failed_type = type(module).__name__
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        site, module = stack[-1]
        where = f"{site} ({type(module).__name__})" if site else type(module).__name__
        raise CannotAnalyse(f"the model {describe_exit(exc)} in forward, in {where}") from exc
    finally:
        for handle in handles:
            handle.remove()
    return result
