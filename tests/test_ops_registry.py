"""The op registry: one entry per op over all its spellings, arguments bound alike whatever the
spelling, and every pass with a rule for every family. On the test zoo, every op node either
carries `rf`, `macs` and (when its shape follows the input size) `shape_formula`, or says why
not in `missing`."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from op_zoo import PROBES
from torch import fx, nn

import shapetrace
from shapetrace import ops
from shapetrace.ops import Family
from shapetrace.passes import cost, receptive
from shapetrace.passes.sizing import rules as sizing_rules
from shapetrace.report import Report

# -- the registry itself ----------------------------------------------------------------------


def test_each_spelling_belongs_to_exactly_one_op() -> None:
    owners: dict[tuple[str, Any], set[str]] = defaultdict(set)
    for op in ops.ops():
        for kind, obj in op.spellings():
            key = obj if kind in ("method", "aten") else id(obj)
            owners[(kind, key)].add(op.name)
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    assert not shared


def test_every_spelling_looks_up_its_own_op() -> None:
    for op in ops.ops():
        for kind, obj in op.spellings():
            if kind == "module":
                found = ops.lookup_target("call_module", None, object.__new__(obj))
            elif kind == "method":
                found = ops.lookup_target("call_method", obj)
            elif kind == "aten":
                found = ops.lookup_target("call_function", getattr(torch.ops.aten, obj))
            else:
                found = ops.lookup_target("call_function", obj)
            assert found is op, (op.name, kind, obj)


def test_every_aten_spelling_names_a_real_aten_op() -> None:
    names = [name for op in ops.ops() for kind, name in op.spellings() if kind == "aten"]
    missing = [name for name in names if not hasattr(torch.ops.aten, name)]
    assert not missing


def test_unregistered_pointwise_torch_functions_are_elementwise() -> None:
    assert ops.lookup_target("call_function", torch.atan).family is Family.ELEMENTWISE
    assert ops.lookup_target("call_method", "atan").family is Family.ELEMENTWISE
    assert ops.lookup_target("call_function", print) is None


def _bound(model: nn.Module, x: torch.Tensor) -> list[ops.Call]:
    gm = fx.symbolic_trace(model)
    calls = []
    values: dict[fx.Node, Any] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            values[node] = x
            continue
        if node.op == "get_attr":
            values[node] = gm.get_parameter(str(node.target))
            continue
        if node.op == "output":
            break
        args = fx.node.map_arg(node.args, values.__getitem__)
        kwargs = fx.node.map_arg(node.kwargs, values.__getitem__)
        call = ops.bind(node, args, kwargs, gm)
        assert call is not None, node.format_node()
        calls.append(call)
        if node.op == "call_module":
            values[node] = gm.get_submodule(str(node.target))(*args, **kwargs)
        elif node.op == "call_method":
            values[node] = getattr(args[0], str(node.target))(*args[1:], **kwargs)
        else:
            values[node] = node.target(*args, **kwargs)
    return calls


class ModuleAndFunctional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, dilation=1, groups=1)
        self.same = nn.Conv2d(8, 8, 4, padding="same", dilation=2, groups=2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        b = F.conv2d(x, self.conv.weight, None, 2, 1)
        c = self.same(a)
        d = F.conv2d(a, self.same.weight, padding="same", dilation=2, groups=2)
        e = self.pool(c + d + b)
        f = F.max_pool2d(c, kernel_size=3, stride=None, padding=1)
        g = torch.max_pool2d(e, [3, 3], [2, 2], [1, 1])
        up = F.conv_transpose2d(g, self.up.weight, stride=2, padding=1, output_padding=1)
        return self.up(g, output_size=[6, 6]) + up + f.sum()


def test_module_and_functional_spellings_bind_to_the_same_window() -> None:
    calls = _bound(ModuleAndFunctional(), torch.randn(1, 3, 17, 17))
    windows = {}
    for call in calls:
        if call.family is Family.WINDOW:
            windows.setdefault(call.name, []).append(ops.window(call))
    conv, conv_fn, same, same_fn = windows["conv"]
    assert conv == conv_fn
    assert (conv.kernel, conv.stride, conv.pads, conv.in_channels, conv.out_channels) == (
        (3, 3),
        (2, 2),
        ((1, 1), (1, 1)),
        3,
        8,
    )
    # padding="same" with an even total (dilation 2 x (4 - 1) = 6): 3 before, 3 after.
    assert same == same_fn
    assert same.same and same.pads == ((3, 3), (3, 3)) and same.groups == 2
    assert same.in_channels == 8 and same.weights_per_output == 4 * 16
    pool, pool_fn, pool_torch = windows["max_pool"]
    assert pool.kernel == pool_fn.kernel == pool_torch.kernel == (3, 3)
    assert pool.stride == (2, 2) and pool_fn.stride == (3, 3)  # stride None means the kernel
    assert pool_torch == pool
    up_fn, up = windows["conv_transpose"]
    assert up.output_size == (6, 6) and up_fn.output_size is None
    assert up_fn.output_padding == (1, 1)
    assert (up.kernel, up.stride, up.padding, up.in_channels, up.out_channels) == (
        (3, 3),
        (2, 2),
        (1, 1),
        8,
        4,
    )
    assert up_fn.in_channels == 8 and up_fn.out_channels == 4


def test_resample_and_pad_records_read_every_spelling() -> None:
    x = torch.randn(1, 4, 8, 8)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.UpsamplingBilinear2d(scale_factor=2)
            self.pad = nn.ReflectionPad2d((1, 2, 3, 4))
            self.shuffle = nn.PixelShuffle(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.interpolate(self.up(x), size=(8, 8), mode="bicubic")
            y = F.pad(self.pad(y), (1, 1, 0, 2), mode="replicate")
            return self.shuffle(y)

    calls = {c.name + str(i): c for i, c in enumerate(_bound(Net(), x))}
    records = [c for c in calls.values() if c.family in (Family.RESAMPLE, Family.PAD)]
    up, interp, pad_module, pad_fn, shuffle = records
    assert ops.resample(up).mode == "bilinear" and ops.resample(up).align_corners is True
    assert ops.resample(interp).mode == "bicubic" and ops.resample(interp).size == (8, 8)
    assert ops.pad(pad_module).pads == ((3, 4), (1, 2)) and ops.pad(pad_module).mode == "reflect"
    assert ops.pad(pad_fn).pads == ((0, 2), (1, 1)) and ops.pad(pad_fn).mode == "replicate"
    assert ops.resample(shuffle).factor == 2


# -- every pass has a rule for every family -----------------------------------------------------

PASS_RULES = {
    "cost": lambda: cost.FAMILY_RULES,
    "receptive": lambda: receptive.FAMILY_RULES,
    "sizing": lambda: sizing_rules.FAMILY_RULES,
}


@pytest.mark.parametrize("pass_name", list(PASS_RULES))
def test_every_pass_has_a_rule_for_every_registered_family(pass_name: str) -> None:
    assert set(PASS_RULES[pass_name]()) == ops.families()


DATA = Path(__file__).parent / "data"

# -- the test zoo: every op node has each field, or says why not -------------------------------


def _zoo() -> dict[str, tuple[Any, str]]:
    zoo: dict[str, tuple[Any, str]] = {
        "codereview_resnet50": ("codereview_resnet50", "224"),
        "stembodyhead_resnet18": ("stembodyhead_resnet18", "64"),
        "resnet18": ("resnet18", "64"),
        "mobilenet_v3_small": ("mobilenet_v3_small", "64"),
        "efficientnet_b0": ("efficientnet_b0", "64"),
        "convnext_tiny": ("convnext_tiny", "64"),
        "densenet121": ("densenet121", "64"),
        "squeezenet1_0": ("squeezenet1_0", "64"),
        "regnet_x_400mf": ("regnet_x_400mf", "64"),
        "googlenet": ("googlenet", "64"),
        "vit_b_16": ("vit_b_16", "224"),
        "swin_t": ("swin_t", "64"),
        "lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large", "64"),
        "r3d_18": ("r3d_18", "1x3x4x32x32"),
    }
    for name, cls in PROBES.items():
        zoo[f"probe:{name}"] = (cls(), "1x3x32x32")
    for user in ("TinyNet", "InPlace", "SharedBranches"):
        zoo[f"user:{user}"] = (f"{DATA / 'user_models.py'}:{user}", "32")
    return zoo


ZOO = _zoo()
_REPORTS: dict[str, Report] = {}


def _report(name: str) -> Report:
    if name not in _REPORTS:
        model, size = ZOO[name]
        _REPORTS[name] = shapetrace.analyze(model, size)
    return _REPORTS[name]


def _is_tensor_shape(shape: Any) -> bool:
    return isinstance(shape, list) and all(isinstance(d, int) for d in shape)


@pytest.mark.parametrize("name", list(ZOO))
def test_every_op_node_has_rf_macs_and_formula_or_says_why_not(name: str) -> None:
    report = _report(name)
    assert report.failure is None
    gaps = []
    for node in report.nodes:
        if not node.op.startswith("call_") or not _is_tensor_shape(node.shape):
            continue
        missing = node.missing or {}
        if node.macs is None and "macs" not in missing:
            gaps.append((node.name, node.type, "macs"))
        if node.depends_on_input in ("scales", "bound") and node.rf is None and "rf" not in missing:
            gaps.append((node.name, node.type, "rf"))
        scales = node.depends_on_input == "scales"
        if scales and node.shape_formula is None and "shape_formula" not in missing:
            gaps.append((node.name, node.type, "shape_formula"))
        for reason in missing.values():
            assert reason and "\n" not in reason
    assert not gaps


@pytest.mark.parametrize("name", [f"probe:{p}" for p in PROBES])
def test_probe_ops_have_every_field(name: str) -> None:
    """The ops issue 12 found missing in one pass or another now have all three."""
    report = _report(name)
    for node in report.nodes:
        if not node.op.startswith("call_") or not _is_tensor_shape(node.shape):
            continue
        assert node.missing is None, (node.name, node.missing)
        assert node.macs is not None, node.name
        if node.depends_on_input == "scales":
            assert node.shape_formula is not None, node.name


def test_aten_upsampling_reads_its_mode_from_the_overload() -> None:
    x = torch.zeros(1, 1, 4, 4)
    cases = {
        torch.ops.aten.upsample_bilinear2d.vec: ("bilinear", False),
        torch.ops.aten._upsample_bilinear2d_aa.vec: ("bilinear", True),
        torch.ops.aten.upsample_nearest2d.vec: ("nearest", False),
        torch.ops.aten.upsample_bicubic2d.vec: ("bicubic", False),
    }
    for target, (mode, antialias) in cases.items():
        args = (x, [8, 8], False, None) if mode != "nearest" else (x, [8, 8], None)
        call = ops.bind_call("call_function", target, args, {})
        assert call is not None and call.family is Family.RESAMPLE
        record = ops.resample(call)
        assert (record.mode, record.antialias, list(record.size)) == (mode, antialias, [8, 8])
