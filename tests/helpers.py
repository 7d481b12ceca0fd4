"""Independent references for tests: real eager forwards on CPU, and torchvision's own tracer."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names


def real_model(name: str) -> nn.Module:
    """The model with real random weights on CPU (no meta), in eval mode."""
    from shapetrace.zoo import ZOO

    if name in ZOO:
        model = ZOO[name]()
    else:
        kwargs: dict[str, Any] = {"weights": None}
        if name.startswith(("fcn_", "deeplabv3_", "lraspp_")):
            kwargs["weights_backbone"] = None
        if name in ("googlenet", "inception_v3"):
            kwargs["init_weights"] = False
        model = torchvision.models.get_model(name, **kwargs)
    return model.eval()


def plain_shape(value: Any) -> Any:
    """Shapes of a tensor or a nest of tensors, written without shapetrace's helpers."""
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, torch.Size):
        return None
    if isinstance(value, (list, tuple)):
        return [plain_shape(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_shape(v) for k, v in value.items()}
    return None


def eager_module_calls(model: nn.Module, *inputs: torch.Tensor) -> dict[int, list[Any]]:
    """Output shapes of every module call in a real CPU forward, per module object, in order."""
    calls: dict[int, list[Any]] = defaultdict(list)
    handles = [
        module.register_forward_hook(lambda m, args, out: calls[id(m)].append(plain_shape(out)))
        for module in model.modules()
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def torchvision_node_shapes(model: nn.Module, names: list[str], *inputs: torch.Tensor) -> dict:
    """Run torchvision's feature extractor on the given node names; their real output shapes."""
    extractor = create_feature_extractor(model, return_nodes={n: n for n in names})
    with torch.no_grad():
        out = extractor(*inputs)
    return {k: plain_shape(v) for k, v in out.items()}


def torchvision_eval_names(model: nn.Module) -> list[str]:
    return get_graph_node_names(model)[1]
