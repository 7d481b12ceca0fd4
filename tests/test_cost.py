"""The cost pass: MACs checked per node against torch's FlopCounterMode on real CPU forwards,
attention, pool and elementwise counts against their formulas, and the peak of activation memory
against the allocations torch.profiler records on a real CPU run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from plumbing_models import PoolUnpool
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import shapetrace
from shapetrace.capture import trace
from shapetrace.report import Report
from shapetrace.zoo import ZOO

# -- references -----------------------------------------------------------------------------


def cpu_model(name: str) -> nn.Module:
    """The model on CPU with constant weights: counts do not depend on values, and skipping
    the random initialisation of 138M parameters keeps the file fast."""
    with torch.device("meta"):
        model = ZOO[name]() if name in ZOO else torchvision.models.get_model(name, weights=None)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.fill_(1 if not tensor.is_floating_point() else 0.01)
    return model.eval()


def flop_counter_macs(model: nn.Module, *inputs: Any) -> dict[str, int]:
    """FLOPs / 2 per module path (and "" for the whole model) from FlopCounterMode on a real
    forward, with attention's fused paths disabled so its matmuls are counted."""
    root = type(model).__name__
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            model(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    out = {}
    for key, per_op in fc.get_flop_counts().items():
        total = sum(per_op.values())
        assert total % 2 == 0
        if key == "Global":
            out[""] = total // 2
        elif key.startswith(root + "."):
            out[key.removeprefix(root + ".")] = total // 2
    return out


def leaf_mac_nodes(report: Report) -> Iterator[Any]:
    kinds = {"Conv2d", "Linear", "MultiheadAttention"}
    for node in report.nodes:
        if node.op == "call_module" and node.type in kinds:
            yield node


# -- MACs against FlopCounterMode -----------------------------------------------------------

MODELS = [
    ("resnet50", (1, 3, 64, 64)),
    ("vgg16", (1, 3, 32, 32)),
    ("mobilenet_v3_small", (1, 3, 64, 64)),
    ("vit_b_16", (1, 3, 224, 224)),
    ("codereview_resnet50", (1, 3, 224, 224)),
]


@pytest.mark.parametrize(("name", "shape"), MODELS)
def test_conv_linear_attention_macs_equal_flop_counter_per_node(
    name: str, shape: tuple[int, ...]
) -> None:
    report = shapetrace.analyze(name, "x".join(map(str, shape)))
    reference = flop_counter_macs(cpu_model(name), torch.randn(shape))
    nodes = list(leaf_mac_nodes(report))
    assert nodes
    targets = [n.target for n in nodes]
    assert len(set(targets)) == len(targets), "each of these modules is called once"
    mismatches = {n.name: (n.macs, reference.get(n.target)) for n in nodes}
    mismatches = {k: v for k, v in mismatches.items() if v[0] != v[1]}
    assert mismatches == {}
    # Nothing else does a multiply-accumulate: the totals agree too, and every op is known.
    assert report.totals["macs"] == reference[""]
    assert report.totals["uncounted"] == []
    assert all(n.macs is not None and n.flops is not None for n in report.nodes)


def test_resnet50_at_224_costs_4_09_giga_macs() -> None:
    report = shapetrace.analyze("resnet50", "224")
    assert report.totals["macs"] == 4_089_184_256
    # FLOPs are 2 x MACs plus one per element of the adds, pools, norms and activations.
    assert 2 * report.totals["macs"] < report.totals["flops"] < 2.01 * 2 * report.totals["macs"]


class FunctionalOps(nn.Module):
    """One multiply-accumulate function per child, so FlopCounterMode's per-module counts
    are per-node counts."""

    def __init__(self) -> None:
        super().__init__()
        self.matmul = _Call(lambda x: torch.matmul(x, x.transpose(-1, -2)))
        self.bmm = _Call(lambda x: torch.bmm(x, x.transpose(1, 2)))
        self.at = _Call(lambda x: x @ x[0].transpose(0, 1))
        self.einsum = _Call(lambda x: torch.einsum("bij,bkj->bik", x, x))
        self.einsum_dot = _Call(lambda x: torch.einsum("bij,bij->bi", x, x))
        self.einsum_ellipsis = _Call(lambda x: torch.einsum("...ij,kj->...ik", x, x[0]))
        self.linear = _Call(lambda x: F.linear(x, torch.ones(5, 6)))
        self.sdpa = _Call(lambda x: F.scaled_dot_product_attention(x, x, x[..., :4]))
        self.conv_fn = _Call(lambda x: F.conv1d(x[:, :3, :], torch.ones(4, 3, 2)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        seq = x.reshape(3, 4, 6)
        return [
            self.matmul(x),
            self.bmm(seq),
            self.at(seq),
            self.einsum(seq),
            self.einsum_dot(seq),
            self.einsum_ellipsis(seq),
            self.linear(x),
            self.sdpa(seq),
            self.conv_fn(x),
        ]


class ConvVariants(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dilated_grouped = nn.Conv2d(8, 12, 3, stride=2, padding=2, dilation=2, groups=4)
        self.transposed = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, groups=2)
        self.depthwise = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.dilated_grouped(x), self.transposed(x), self.depthwise(x)]


class _Call(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@pytest.mark.parametrize(
    ("model", "shape"), [(FunctionalOps(), (2, 6, 6)), (ConvVariants(), (1, 8, 9, 9))]
)
def test_matmul_einsum_sdpa_and_conv_variants_equal_flop_counter(
    model: nn.Module, shape: tuple[int, ...]
) -> None:
    report = shapetrace.analyze(model, "x".join(map(str, shape)))
    reference = flop_counter_macs(model.eval(), torch.randn(shape))
    children = [name for name, _ in model.named_children()]
    assert {c: report.module(c).macs for c in children} == {c: reference[c] for c in children}
    assert report.totals["macs"] == reference[""]


# -- attention against its formula ----------------------------------------------------------


class CrossAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(
            32, 4, kdim=16, vdim=24, add_bias_kv=True, add_zero_attn=True
        )

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.attn(q, k, v)[0]


def test_multihead_attention_macs_follow_projections_and_attention_formula() -> None:
    length, source, batch, embed, kdim, vdim, heads = 5, 7, 2, 32, 16, 24, 4
    report = shapetrace.analyze(CrossAttention(), ["5x2x32", "7x2x16", "7x2x24"])
    node = report.node("attn")
    keys = source + 2  # add_bias_kv and add_zero_attn each append one key/value position
    in_proj = batch * (length * embed * embed + source * kdim * embed + source * vdim * embed)
    scores_and_values = 2 * batch * length * keys * embed
    out_proj = batch * length * embed * embed
    assert node.macs == in_proj + scores_and_values + out_proj
    assert node.flops == 2 * node.macs + batch * heads * length * keys  # softmax per score
    model = CrossAttention().eval()
    q, k, v = torch.randn(5, 2, 32), torch.randn(7, 2, 16), torch.randn(7, 2, 24)
    assert node.macs == flop_counter_macs(model, q, k, v)["attn"]


def test_scaled_dot_product_attention_counts_two_matmuls_and_a_softmax() -> None:
    model = _Call(lambda q: F.scaled_dot_product_attention(q, q[:, :, :3], q[:, :, :3, :2]))
    report = shapetrace.analyze(model, "2x4x5x8")
    (node,) = [n for n in report.nodes if n.type == "scaled_dot_product_attention"]
    rows, keys = 2 * 4 * 5, 3
    assert node.macs == rows * keys * 8 + rows * keys * 2
    assert node.flops == 2 * node.macs + rows * keys


# -- pools and elementwise ops against their formulas ---------------------------------------


def window_reads(pool: nn.Module, shape: tuple[int, ...]) -> int:
    """Input elements read by all windows, measured as the nonzeros of the pool's Jacobian."""
    jacobian = torch.autograd.functional.jacobian(pool, torch.rand(shape))
    return int(torch.count_nonzero(jacobian))


@pytest.mark.parametrize(
    ("pool", "shape"),
    [
        (nn.AdaptiveAvgPool2d((3, 4)), (1, 2, 7, 9)),
        (nn.AdaptiveAvgPool2d(1), (1, 3, 5, 5)),
        (nn.AdaptiveAvgPool1d(4), (2, 3, 10)),
        (nn.AvgPool2d(3, stride=2), (1, 2, 9, 9)),
        (nn.AvgPool2d((2, 3)), (1, 1, 6, 9)),
    ],
)
def test_pool_flops_equal_elements_read_by_windows(pool: nn.Module, shape: tuple[int, ...]) -> None:
    report = shapetrace.analyze(nn.Sequential(pool), "x".join(map(str, shape)))
    node = report.node("0")
    assert (node.macs, node.flops) == (0, window_reads(pool, shape))


def test_max_pool_flops_count_the_whole_window_including_padding() -> None:
    report = shapetrace.analyze(nn.Sequential(nn.MaxPool2d(3, 2, padding=1)), "1x4x8x8")
    assert (report.node("0").macs, report.node("0").flops) == (0, 4 * 4 * 4 * 9)


class Elementwise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(6)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = self.bn(x) + y  # y broadcasts over the channels
        b = torch.relu(a) * 2
        c = self.act(self.ln(b)).softmax(-1)
        return c.sum(dim=1)


def test_elementwise_ops_cost_one_flop_per_output_element_and_reductions_per_input() -> None:
    report = shapetrace.analyze(Elementwise(), ["2x4x5x6", "2x1x5x6"])
    numel = 2 * 4 * 5 * 6
    costs = {n.type: (n.macs, n.flops) for n in report.nodes if n.op != "placeholder"}
    assert costs == {
        "BatchNorm2d": (0, numel),
        "add": (0, numel),
        "relu": (0, numel),
        "mul": (0, numel),
        "LayerNorm": (0, numel),
        "GELU": (0, numel),
        "softmax": (0, numel),
        "sum": (0, numel),
    }
    assert report.totals["flops"] == 8 * numel


class ShapeOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.identity = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.size(0)
        y = x.view(n, -1).reshape(n, 4, -1).permute(0, 2, 1).contiguous()
        y = torch.flatten(self.identity(self.drop(y)), 1)
        return y[:, : y.shape[1] // 2]


def test_shape_only_ops_cost_zero_by_definition_not_uncounted() -> None:
    report = shapetrace.analyze(ShapeOnly(), "2x4x3x3")
    assert {n.type for n in report.nodes} >= {"size", "view", "permute", "getitem", "Dropout"}
    assert all((n.macs, n.flops) == (0, 0) for n in report.nodes)
    assert report.totals["uncounted"] == []


class Unknown(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, dim=1) + 1


def test_op_without_formula_is_listed_as_uncounted_never_zero() -> None:
    report = shapetrace.analyze(Unknown(), "2x8")
    node = report.node("cumsum")
    assert node.macs is None and node.flops is None
    assert "macs" not in node.to_dict()
    assert report.totals["uncounted"] == ["cumsum"]
    assert report.totals["flops"] == 16  # the add is still counted
    assert Report.from_json(report.to_json()).node("cumsum").macs is None


def test_module_cost_sums_its_nodes_and_a_shared_module_sums_every_call() -> None:
    report = shapetrace.analyze("codereview_resnet50")
    layer = [n for n in report.nodes if n.module and n.module.startswith("layer_2.")]
    assert report.module("layer_2").macs == sum(n.macs or 0 for n in layer)
    assert report.module("layer_2").flops == sum(n.flops or 0 for n in layer)
    relu_calls = [n for n in report.nodes if n.target == "act_fn"]
    assert len(relu_calls) == 48
    assert report.module("act_fn").flops == sum(n.flops or 0 for n in relu_calls)
    assert report.module("layer_2.0.layer.0.1").flops == 64 * 56 * 56  # one call site


# -- activation memory ----------------------------------------------------------------------


def test_views_and_inplace_ops_share_storage_and_allocate_nothing() -> None:
    report = shapetrace.analyze("resnet50", "64")
    conv, relu, flatten = report.node("conv1"), report.node("relu"), report.node("flatten")
    assert conv.activation_bytes == 64 * 32 * 32 * 4
    assert relu.activation_bytes == 0  # ReLU(inplace=True) writes into bn1's output
    assert flatten.activation_bytes == 0  # a view of the pool's output
    assert report.node("x").activation_bytes == 3 * 64 * 64 * 4


def _walk(events: list[Any]) -> Iterator[Any]:
    for event in events:
        yield event
        yield from _walk(event.children)


def _root(event: Any) -> Any:
    while event.parent is not None:
        event = event.parent
    return event


def profiled_activation_peak(run: Any) -> int:
    """Peak bytes held by tensors that outlive the op that allocated them, from the allocation
    events torch.profiler records; a kernel's workspace, allocated and freed inside one
    top-level op (mkldnn's reordered copies, max-pool indices), is set apart."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    allocation = torch._C._profiler._EventType.Allocation
    events = [e for e in _walk(prof.profiler.kineto_results.experimental_event_tree())]
    events = sorted((e for e in events if e.tag == allocation), key=lambda e: e.start_time_ns)
    pending: dict[int, Any] = {}
    workspace: set[int] = set()
    for event in events:
        fields = event.extra_fields
        if fields.alloc_size > 0:
            pending[fields.ptr] = event
            continue
        start = pending.pop(fields.ptr, None)
        inside_op = start is not None and start.parent is not None and event.parent is not None
        if inside_op and _root(start) is _root(event):
            workspace |= {id(start), id(event)}
    live = peak = 0
    for event in events:
        if id(event) not in workspace:
            live += event.extra_fields.alloc_size
            peak = max(peak, live)
    return peak


class SmallNet(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        )


@pytest.mark.parametrize(
    ("build", "shape"),
    [(SmallNet, (2, 3, 32, 32)), (torchvision.models.resnet18, (1, 3, 64, 64))],
)
def test_peak_activation_bytes_equal_profiler_on_an_eager_cpu_run(
    build: Any, shape: tuple[int, ...]
) -> None:
    model = build().eval()
    x = torch.randn(shape)
    report = shapetrace.analyze(model, "x".join(map(str, shape)))
    model(x)  # warm up: first calls allocate caches of their own
    measured = profiled_activation_peak(lambda: model(x))
    # The caller holds the input for the whole pass; it was allocated before profiling.
    assert report.totals["peak_activation_bytes"] == measured + x.numel() * x.element_size()


def test_peak_activation_bytes_equal_profiler_running_the_graph_with_last_use_frees() -> None:
    # Eager mobilenet keeps each block's input alive until the block returns; the traced graph
    # frees every tensor after its last user, which is the lifetime the pass models.
    model = torchvision.models.mobilenet_v3_small().eval()
    graph = trace(model).graph_module
    x = torch.randn(1, 3, 64, 64)
    report = shapetrace.analyze("mobilenet_v3_small", "64")
    graph(x)
    measured = profiled_activation_peak(lambda: graph(x))
    assert report.totals["peak_activation_bytes"] == measured + x.numel() * x.element_size()


def test_unpooling_moves_elements_and_costs_nothing() -> None:
    report = shapetrace.analyze(PoolUnpool(), "1x3x16x16")
    unpool = report.node("unpool")
    assert unpool is not None and (unpool.macs, unpool.flops, unpool.missing) == (0, 0, None)
