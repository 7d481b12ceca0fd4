"""Node names follow torchvision's feature extraction; every shape matches a real forward."""

from __future__ import annotations

import pytest
import torch
from helpers import (
    eager_module_calls,
    real_model,
    torchvision_eval_names,
    torchvision_node_shapes,
)

import shapetrace

# Models whose leaves coincide with torchvision's tracer: the name lists are identical.
SAME_LEAVES = ["resnet50", "resnet18", "vgg16", "alexnet", "squeezenet1_0", "densenet121"]


@pytest.mark.parametrize("name", SAME_LEAVES)
def test_node_names_equal_torchvision_get_graph_node_names(name: str) -> None:
    report = shapetrace.analyze(name, "1x3x64x64")
    assert [n.name for n in report.nodes] == torchvision_eval_names(real_model(name))


# (model, input) pairs; sizes kept small so the real forward is cheap.
FEATURE_MODELS = [
    ("resnet50", (1, 3, 64, 64)),
    ("vgg16", (1, 3, 32, 32)),
    ("mobilenet_v3_small", (1, 3, 64, 64)),
    ("efficientnet_b0", (1, 3, 64, 64)),
    ("convnext_tiny", (1, 3, 64, 64)),
    ("regnet_y_400mf", (1, 3, 64, 64)),
    ("googlenet", (1, 3, 64, 64)),
    ("shufflenet_v2_x1_0", (1, 3, 64, 64)),
    ("swin_t", (1, 3, 64, 64)),
    ("vit_b_16", (1, 3, 224, 224)),
    ("r3d_18", (1, 3, 4, 32, 32)),
    ("fcn_resnet50", (1, 3, 64, 64)),
]


@pytest.mark.parametrize(("name", "shape"), FEATURE_MODELS)
def test_feature_extractor_accepts_names_and_returns_reported_shapes(name, shape) -> None:
    report = shapetrace.analyze(name, "x".join(map(str, shape)))
    model = real_model(name)
    # Each name torchvision lists is one of our nodes or, for blocks it keeps whole, a module.
    reported = {m.path: m.shape for m in report.modules if m.calls}
    reported.update({n.name: n.shape for n in report.nodes})
    theirs = torchvision_eval_names(model)
    assert [n for n in theirs if n not in reported] == []
    # Nodes that compute numbers (size(), _assert) have no shape here and no tensor there.
    names = [n for n in theirs if n != "x"]
    real = torchvision_node_shapes(model, names, torch.randn(shape))
    assert {n: reported[n] for n in names} == {n: real[n] for n in names}


EAGER_MODELS = [
    ("resnet50", (1, 3, 64, 64)),
    ("codereview_resnet50", (1, 3, 224, 224)),
    ("stembodyhead_resnet50", (1, 3, 64, 64)),
    ("vgg16_bn", (1, 3, 32, 32)),
    ("mobilenet_v2", (1, 3, 64, 64)),
    ("densenet121", (1, 3, 64, 64)),
    ("inception_v3", (1, 3, 80, 80)),
    ("swin_t", (1, 3, 64, 64)),
    ("r2plus1d_18", (1, 3, 4, 32, 32)),
    ("lraspp_mobilenet_v3_large", (1, 3, 64, 64)),
]


@pytest.mark.parametrize(("name", "shape"), EAGER_MODELS)
def test_every_module_call_matches_a_real_cpu_forward(name, shape) -> None:
    report = shapetrace.analyze(name, "x".join(map(str, shape)))
    assert report.failure is None
    model = real_model(name)
    calls = eager_module_calls(model, torch.randn(shape))
    modules = dict(model.named_modules(remove_duplicate=False))
    # Leaf calls: the k-th node calling a module is its k-th real call.
    seen: dict[int, int] = {}
    checked = 0
    for node in report.nodes:
        if node.op != "call_module":
            continue
        module = modules[node.target]
        k = seen.get(id(module), 0)
        seen[id(module)] = k + 1
        assert node.shape == calls[id(module)][k], node.name
        checked += 1
    assert checked > 10
    assert seen == {key: len(calls[key]) for key in seen}  # no call missed or invented
    # Composite modules (not shared): the output of their last call.
    paths_per_object: dict[int, int] = {}
    for module in modules.values():
        paths_per_object[id(module)] = paths_per_object.get(id(module), 0) + 1
    for entry in report.modules:
        module = modules[entry.path]
        if entry.calls and paths_per_object[id(module)] == 1:
            assert entry.shape == calls[id(module)][-1], entry.path


def test_shared_relu_is_placed_at_each_call_site() -> None:
    report = shapetrace.analyze("codereview_resnet50", "224")
    relu_nodes = [n for n in report.nodes if n.target == "act_fn"]
    assert len(relu_nodes) == 48  # 16 bottlenecks x 3 conv blocks
    assert relu_nodes[0].name == "act_fn" and relu_nodes[1].name == "act_fn_1"
    assert relu_nodes[0].module == "layer_2.0.layer.0.1"
    assert relu_nodes[-1].module == "layer_5.2.layer.2.1"
    site = report.module("layer_2.0.layer.0.1")
    assert site.type == "ReLU" and site.calls == 1 and site.shape == [1, 64, 56, 56]


def test_layer4_shape_scales_with_input_and_totals_stay() -> None:
    at_448 = shapetrace.analyze("resnet50", "1x3x448x448")
    at_224 = shapetrace.analyze("resnet50", "1x3x224x224")
    assert at_448.module("layer4").shape == [1, 2048, 14, 14]
    assert at_224.module("layer4").shape == [1, 2048, 7, 7]
    assert at_448.node("fc").shape == [1, 1000]
    assert at_448.totals["params"] == 25_557_032


def test_huge_input_costs_nothing_extra_and_gives_exact_shapes() -> None:
    report = shapetrace.analyze("resnet50", "1x3x8192x8192")
    assert report.module("layer4").shape == [1, 2048, 256, 256]
    assert report.node("conv1").shape == [1, 64, 4096, 4096]


class _TrainOnly(torch.nn.Module):
    """A module used only in training, registered under a name fx cannot write (`self.if`)."""

    def __init__(self, keyword: bool) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.add_module("if" if keyword else "extra", torch.nn.ReLU())
        self.keyword = keyword

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.training:
            x = getattr(self, "if" if self.keyword else "extra")(x)
        return x


class _Same(torch.nn.Module):
    """The same graph in both modes; one module never called."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.drop = torch.nn.Dropout()
        self.unused = torch.nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.conv(x)) + 1


@pytest.mark.parametrize("model", [_Same(), _TrainOnly(keyword=False)])
def test_called_modules_in_the_other_mode_match_a_full_trace(model: torch.nn.Module) -> None:
    """The other mode's trace skips building its GraphModule when the graph is written like the
    one already compiled; what it finds is what a full trace finds."""
    from shapetrace.capture import called_modules, trace

    model = model.to("meta").eval()
    trace(model)
    found = called_modules(model, training=True)
    model.train()
    full = trace(model)
    model.eval()
    assert found == (full.called, full.used_tensors)
    assert not model.training


def test_called_modules_fail_where_the_other_modes_code_does_not_compile() -> None:
    from shapetrace.capture import TraceFailure, called_modules, trace

    model = _TrainOnly(keyword=True).to("meta").eval()
    trace(model)  # compiles: `self.if` is only called in training
    with pytest.raises(TraceFailure):
        trace(model.train())
    model.eval()
    assert called_modules(model, training=True) is None
