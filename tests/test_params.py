"""Parameter totals count shared tensors once; dead and train-only modules are found."""

from __future__ import annotations

import torch
from helpers import real_model
from torch import nn

import shapetrace


def test_codereview_totals_count_the_shared_relu_once_and_list_dead_equalizers() -> None:
    report = shapetrace.analyze("codereview_resnet50", "224")
    model = real_model("codereview_resnet50")
    assert report.totals["params"] == 39_423_874 == sum(p.numel() for p in model.parameters())
    assert report.totals["param_bytes"] == 39_423_874 * 4
    assert report.totals["buffers"] == 0
    assert [m["path"] for m in report.dead_modules] == [
        "layer_2.2.dim_equalizer",
        "layer_3.3.dim_equalizer",
        "layer_4.5.dim_equalizer",
    ]
    assert sum(m["params"] for m in report.dead_modules) == 1_378_048
    assert report.train_only_modules == []


def test_resnet50_totals_match_the_real_model() -> None:
    report = shapetrace.analyze("resnet50")
    model = real_model("resnet50")
    totals = report.totals
    assert (totals["params"], totals["trainable_params"], totals["param_bytes"]) == (
        25_557_032,
        25_557_032,
        102_228_128,
    )
    assert totals["buffers"] == sum(b.numel() for b in model.buffers())
    assert report.totals["buffers"] == 53_173
    assert report.dead_modules == []
    # Leaf nodes carry their module's parameters; together they make the total.
    assert sum(n.params for n in report.nodes) == 25_557_032


def test_googlenet_aux_heads_are_train_only() -> None:
    report = shapetrace.analyze("googlenet")
    assert [m["path"] for m in report.train_only_modules] == ["aux1", "aux2"]
    aux = real_model("googlenet").aux1
    assert report.train_only_modules[0]["params"] == sum(p.numel() for p in aux.parameters())
    assert report.dead_modules == []


class _Frozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)
        self.unused = nn.Linear(8, 100)
        self.body.weight.requires_grad_(False)
        self.scale = nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)) * self.scale


def test_frozen_parameters_unused_modules_and_direct_parameters() -> None:
    report = shapetrace.analyze(_Frozen(), "1x8")
    assert report.totals["params"] == 72 + 18 + 900 + 2
    assert report.totals["trainable_params"] == 72 + 18 + 900 + 2 - 64
    assert report.dead_modules == [{"path": "unused", "type": "Linear", "params": 900}]
    scale = report.node("scale")
    assert scale.op == "get_attr" and scale.params == 2 and scale.shape == [2]


def test_regnet_is_built_without_materialising_weights() -> None:
    from shapetrace.sources import resolve

    model = resolve("regnet_y_400mf").build()
    assert {p.device.type for p in model.parameters()} == {"meta"}
    report = shapetrace.analyze("regnet_y_400mf")
    assert report.failure is None
    assert report.totals["params"] == sum(p.numel() for p in model.parameters()) == 4_344_144


def test_layers_kept_whole_use_their_children_so_vit_has_no_dead_modules() -> None:
    # nn.MultiheadAttention reads out_proj's weights in its own forward without calling it.
    report = shapetrace.analyze("vit_b_16")
    assert report.dead_modules == []
    assert report.train_only_modules == []
    attention = report.module("encoder.layers.encoder_layer_0.self_attention")
    assert attention is not None and attention.params == 4 * 768 * 768 + 4 * 768
