"""Tests of the model zoo: exact sizes, the kept bugs, shapes against torchvision, tracing.

Models are built on the meta device wherever only shapes or counts matter, so the
whole file stays fast; the few real forwards run on CPU at small sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
import torch
import torchvision
from torch import fx, nn

from shapetrace.zoo import ZOO, codereview, stembodyhead

DOWN_BLOCKS = ("layer_2.2", "layer_3.3", "layer_4.5")

# name -> (torchvision builder name, parameter total at 1000 classes)
TORCHVISION_TWINS = {
    "stembodyhead_resnet18": ("resnet18", 11_689_512),
    "stembodyhead_resnet34": ("resnet34", 21_797_672),
    "stembodyhead_resnet50": ("resnet50", 25_557_032),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_buffers(model: nn.Module) -> int:
    return sum(b.numel() for b in model.buffers())


M = TypeVar("M", bound=nn.Module)


def meta_build(builder: Callable[..., nn.Module], **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return builder(**kwargs).eval()


def meta_codereview(**kwargs: object) -> codereview.ResNet:
    model = meta_build(codereview.codereview_resnet50, **kwargs)
    assert isinstance(model, codereview.ResNet)
    return model


def meta_stembodyhead(name: str, **kwargs: object) -> stembodyhead.ResNet:
    model = meta_build(ZOO[name], **kwargs)
    assert isinstance(model, stembodyhead.ResNet)
    return model


def sub(model: nn.Module, path: str, kind: type[M]) -> M:
    """``model.get_submodule(path)``, checked to be a ``kind``."""
    module = model.get_submodule(path)
    assert isinstance(module, kind), (path, type(module))
    return module


def stage_blocks(model: stembodyhead.ResNet) -> list[tuple[int, int, nn.Module]]:
    """(stage index, block index, block) for every block of the body."""
    return [
        (i, j, block)
        for i, stage in enumerate(model.body)
        for j, block in enumerate(sub(stage, "", nn.Sequential))
    ]


def torchvision_model(name: str, device: str = "meta") -> torchvision.models.ResNet:
    with torch.device(device):
        model = getattr(torchvision.models, name)(weights=None).eval()
    assert isinstance(model, torchvision.models.ResNet)
    return model


def record_outputs(named: dict[str, nn.Module]) -> dict[str, tuple[int, ...]]:
    """Register forward hooks that store each module's output shape under its key."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, module in named.items():

        def hook(_m: nn.Module, _i: object, out: torch.Tensor, key: str = key) -> None:
            shapes[key] = tuple(out.shape)

        module.register_forward_hook(hook)
    return shapes


def test_zoo_registry() -> None:
    assert set(ZOO) == {
        "codereview_resnet50",
        "stembodyhead_resnet18",
        "stembodyhead_resnet34",
        "stembodyhead_resnet50",
    }
    for name, builder in ZOO.items():
        model = meta_build(builder, num_classes=7)
        out = model(torch.empty(2, 3, 224, 224, device="meta"))
        assert out.shape == (2, 7), name


# --- codereview: the blog's ResNet-50, bugs included -------------------------------------


def test_codereview_parameter_total() -> None:
    model = meta_codereview()
    assert n_params(model) == 39_423_874
    assert n_buffers(model) == 0  # no BatchNorm anywhere
    assert n_params(meta_codereview(num_classes=10)) == (39_423_874 + 8 * 2049)


def test_codereview_module_tree() -> None:
    model = meta_codereview()
    assert [name for name, _ in model.named_children()] == [
        "act_fn",
        "layer_1",
        "layer_2",
        "layer_3",
        "layer_4",
        "layer_5",
        "avgpool",
        "fc_layer",
    ]
    assert [len(sub(model, f"layer_{i}", nn.Sequential)) for i in range(2, 6)] == [3, 4, 6, 3]
    down = [
        name for name, m in model.named_modules() if isinstance(m, codereview.BottleNeck) and m.down
    ]
    assert down == list(DOWN_BLOCKS)
    block = sub(model, "layer_2.2", codereview.BottleNeck)
    assert [name for name, _ in block.named_children()] == [
        "act_fn",
        "layer",
        "downsample",
        "dim_equalizer",
    ]
    assert sub(block, "layer.0.0", nn.Conv2d).stride == (2, 2)
    assert [name for name, _ in model.layer_2[0].named_children()] == [
        "act_fn",
        "layer",
        "dim_equalizer",
    ]


def test_codereview_dead_dim_equalizers() -> None:
    model = meta_codereview()
    dead = sum(n_params(model.get_submodule(f"{b}.dim_equalizer")) for b in DOWN_BLOCKS)
    assert dead == 1_378_048  # (256*256+256) + (512*512+512) + (1024*1024+1024)

    calls: dict[str, int] = {}
    for name, m in model.named_modules():
        if name.endswith("dim_equalizer"):
            calls[name] = 0

            def hook(_m: nn.Module, _i: object, _o: object, name: str = name) -> None:
                calls[name] += 1

            m.register_forward_hook(hook)
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert len(calls) == 16
    never = sorted(name for name, n in calls.items() if n == 0)
    assert never == [f"{b}.dim_equalizer" for b in DOWN_BLOCKS]
    # `x.size() is not out.size()` is always true: the projection runs even in
    # layer_2.1, where input and output are both (1, 256, 56, 56).
    assert calls["layer_2.1.dim_equalizer"] == 1


def test_codereview_shared_relu() -> None:
    model = meta_codereview()
    assert model.act_fn is model.get_submodule("layer_2.0.layer.0.1")
    relus = {id(m) for m in model.modules() if isinstance(m, nn.ReLU)}
    assert len(relus) == 2  # the shared act_fn and the stem's own ReLU
    assert model.layer_1[1] is not model.act_fn
    for m in model.modules():
        if isinstance(m, codereview.BottleNeck):
            assert m.act_fn is model.act_fn
            assert all(sub(m.layer, f"{k}.1", nn.ReLU) is model.act_fn for k in range(3))


def test_codereview_cpu_forward_224() -> None:
    torch.manual_seed(0)
    model = codereview.codereview_resnet50().eval()
    shapes = record_outputs({"layer_1": model.layer_1, "layer_5": model.layer_5})
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 2)
    assert torch.isfinite(out).all()
    assert shapes == {"layer_1": (1, 64, 56, 56), "layer_5": (1, 2048, 7, 7)}


def test_codereview_448_fails_in_fc_layer() -> None:
    model = meta_codereview()
    entered: list[tuple[int, ...]] = []
    model.fc_layer.register_forward_pre_hook(lambda _m, args: entered.append(tuple(args[0].shape)))
    shapes = record_outputs({"layer_5": model.layer_5, "fc_layer": model.fc_layer})
    with pytest.raises(RuntimeError):
        model(torch.empty(1, 3, 448, 448, device="meta"))
    assert shapes == {"layer_5": (1, 2048, 14, 14)}  # fc_layer never returned
    assert entered == [(1, 131_072)]  # 2048 * 8 * 8 features instead of 2048


# --- stembodyhead: must be torchvision's ResNet in a different module tree ---------------


@pytest.mark.parametrize("name", sorted(TORCHVISION_TWINS))
def test_stembodyhead_counts_match_torchvision(name: str) -> None:
    tv_name, expected = TORCHVISION_TWINS[name]
    ours = meta_stembodyhead(name)
    theirs = torchvision_model(tv_name)
    assert n_params(ours) == expected
    assert n_params(theirs) == expected
    assert n_buffers(ours) == n_buffers(theirs)
    # Same multiset of tensor sizes, not just the same sum.
    assert sorted(p.numel() for p in ours.parameters()) == sorted(
        p.numel() for p in theirs.parameters()
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in ours.modules()) == sum(
        isinstance(m, nn.BatchNorm2d) for m in theirs.modules()
    )
    assert n_params(meta_build(ZOO[name], num_classes=10)) < expected


@pytest.mark.parametrize("name", sorted(TORCHVISION_TWINS))
def test_stembodyhead_stage_shapes_match_torchvision_cpu(name: str) -> None:
    tv_name, _ = TORCHVISION_TWINS[name]
    torch.manual_seed(0)
    ours = ZOO[name]().eval()
    assert isinstance(ours, stembodyhead.ResNet)
    theirs = torchvision_model(tv_name, device="cpu")
    keys = ["stem", "stage1", "stage2", "stage3", "stage4", "out"]
    ours_shapes = record_outputs(dict(zip(keys, [ours.stem, *ours.body, ours], strict=True)))
    theirs_shapes = record_outputs(
        dict(
            zip(
                keys,
                [
                    theirs.maxpool,
                    theirs.layer1,
                    theirs.layer2,
                    theirs.layer3,
                    theirs.layer4,
                    theirs,
                ],
                strict=True,
            )
        )
    )
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours(x)
        theirs(x)
    assert ours_shapes == theirs_shapes
    wide = 4 if name.endswith("50") else 1
    assert ours_shapes["stage1"] == (1, 64 * wide, 16, 16)
    assert ours_shapes["stage4"] == (1, 512 * wide, 2, 2)
    assert ours_shapes["out"] == (1, 1000)


@pytest.mark.parametrize("name", sorted(TORCHVISION_TWINS))
def test_stembodyhead_shapes_at_224(name: str) -> None:
    model = meta_stembodyhead(name)
    shapes = record_outputs({"stem": model.stem, **{str(i): s for i, s in enumerate(model.body)}})
    model(torch.empty(1, 3, 224, 224, device="meta"))
    wide = 4 if name.endswith("50") else 1
    assert shapes == {
        "stem": (1, 64, 56, 56),
        "0": (1, 64 * wide, 56, 56),
        "1": (1, 128 * wide, 28, 28),
        "2": (1, 256 * wide, 14, 14),
        "3": (1, 512 * wide, 7, 7),
    }


def test_stembodyhead_stride_and_shortcut_placement() -> None:
    model = meta_stembodyhead("stembodyhead_resnet50")
    for i, j, block in stage_blocks(model):
        assert isinstance(block, stembodyhead.ResBottleNeckBlock)
        stride = 2 if (i > 0 and j == 0) else 1
        # v1.5: the stride sits on the 3x3 convolution, never on the 1x1s.
        assert block.conv1.conv.stride == (1, 1)
        assert block.conv2.conv.stride == (stride, stride)
        assert block.conv3.conv.stride == (1, 1)
        assert isinstance(block.shortcut, nn.Identity) == (j > 0)
    basic = meta_stembodyhead("stembodyhead_resnet18")
    projections = []
    for i, j, block in stage_blocks(basic):
        assert isinstance(block, stembodyhead.ResBlock)
        stride = 2 if (i > 0 and j == 0) else 1
        assert block.conv1.conv.stride == (stride, stride)
        assert block.conv2.conv.stride == (1, 1)
        if not isinstance(block.shortcut, nn.Identity):
            projections.append(f"{i}.{j}")
    assert projections == ["1.0", "2.0", "3.0"]  # stage 1 keeps 64 channels at stride 1


# --- tracing -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ZOO))
def test_symbolic_trace(name: str) -> None:
    model = meta_build(ZOO[name])
    traced = fx.symbolic_trace(model)
    out = traced(torch.empty(1, 3, 224, 224, device="meta"))
    assert out.shape == (1, 2 if name.startswith("codereview") else 1000)
    targets = [n.target for n in traced.graph.nodes if n.op == "call_module"]
    if name.startswith("codereview"):
        for block in DOWN_BLOCKS:
            assert f"{block}.dim_equalizer" not in targets
            assert f"{block}.downsample" in targets
        # The shared ReLU is traced under its first registered name, 48 times
        # (3 per bottleneck, 16 bottlenecks).
        assert targets.count("act_fn") == 48
