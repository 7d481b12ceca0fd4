"""Symbolic-shape capture on models torch.fx cannot trace: guards against a brute-force check,
node shapes against eager meta runs, names and sites against module paths."""

from __future__ import annotations

import inspect
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shapetrace.capture import TraceFailure, trace
from shapetrace.capture_symbolic import SymbolicCapture, capture_symbolic

SIZES = range(1, 101)


# -- models written the way users write them -------------------------------------------------


class Divisible(nn.Module):
    """A segmentation-style model that checks its input size in Python."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.MaxPool2d(2)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise RuntimeError(f"input must be divisible by 32, got {h}x{w}")
        return self.head(self.down(self.stem(x)))


class FixedSize(nn.Module):
    """Resizes to the size it was built for, unless the input already has it."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=self.size)
        return self.conv(x)


class PerChannel(nn.Module):
    """A loop over a shape: each channel through the same conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.AvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.conv(x[:, c : c + 1]) for c in range(x.shape[1])]
        return self.pool(torch.cat(outs, 1))


class AdaptiveWindow(nn.Module):
    """A window size chosen from the feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        k = min(7, y.shape[-1])
        return F.avg_pool2d(y, k)


class Boxes(nn.Module):
    """Data-dependent sizes: the positions and scores above a threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.score(x)
        return torch.nonzero(s > 0), s[s > 0]


def _meta(cls: type[nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return cls().eval()


def _x(h: int, w: int) -> torch.Tensor:
    return torch.empty(1, 3, h, w, device="meta")


def _capture(cls: type[nn.Module], h: int = 64, w: int = 64) -> tuple[nn.Module, SymbolicCapture]:
    model = _meta(cls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, capture_symbolic(model, [_x(h, w)])


def _runs(model: nn.Module, h: int, w: int) -> bool:
    try:
        with torch.no_grad():
            model(_x(h, w))
    except Exception:
        return False
    return True


def _brute_force(model: nn.Module, captured: SymbolicCapture, fixed: int = 64) -> int:
    """The guards' verdict equals an eager meta run for every H (W fixed) and W (H fixed) in
    1..100, and on the diagonal, wherever the guards give one; returns how many sizes they
    leave undecided (None)."""
    grid = [(h, fixed) for h in SIZES] + [(fixed, w) for w in SIZES] + [(s, s) for s in SIZES]
    verdicts = {(h, w): captured.accepts({"H": h, "W": w}) for h, w in grid}
    wrong = [
        (h, w, v) for (h, w), v in verdicts.items() if v is not None and v != _runs(model, h, w)
    ]
    assert wrong == []
    return sum(v is None for v in verdicts.values())


def _eager_module_shapes(model: nn.Module, h: int, w: int) -> dict[str, Any]:
    shapes: dict[str, Any] = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, p=path: shapes.__setitem__(p, tuple(o.shape)))
        for path, m in model.named_modules()
        if path
    ]
    try:
        with torch.no_grad():
            out = model(_x(h, w))
    finally:
        for handle in handles:
            handle.remove()
    shapes[""] = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    return shapes


def _captured_module_shapes(captured: SymbolicCapture, h: int, w: int) -> dict[str, Any]:
    at = captured.shapes({"H": h, "W": w})
    names = captured.capture.names
    shapes = {path: at[names[node]] for path, node in captured.capture.module_outputs.items()}
    output = next(n for n in captured.capture.graph_module.graph.nodes if n.op == "output")
    result = output.args[0][0] if isinstance(output.args[0], (tuple, list)) else output.args[0]
    shapes[""] = at[names[result]]
    return shapes


# -- (a) a size check in Python --------------------------------------------------------------


def test_fx_cannot_trace_the_models() -> None:
    for cls in (Divisible, FixedSize, AdaptiveWindow):
        with pytest.raises(TraceFailure):
            trace(_meta(cls))


def test_divisible_guards_are_the_accepted_set_with_the_models_message() -> None:
    model, captured = _capture(Divisible)
    rejecting = [g for g in captured.guards if g.kind == "rejects"]
    assert [g.text for g in rejecting] == ["Eq(Mod(H, 32), 0)", "Eq(Mod(W, 32), 0)"]
    for guard in rejecting:
        assert guard.file == __file__
        assert guard.code == "if h % 32 or w % 32:"
        assert guard.message is not None
        assert guard.message.startswith("RuntimeError: input must be divisible by 32, got")
    rejection = captured.rejection({"H": 100, "W": 64})
    assert rejection is not None and rejection.text == "Eq(Mod(H, 32), 0)"
    assert captured.rejection({"H": 96, "W": 32}) is None
    assert _brute_force(model, captured) == 0


def test_divisible_shapes_names_and_sites() -> None:
    model, captured = _capture(Divisible)
    for h, w in ((64, 96), (32, 320)):
        assert _captured_module_shapes(captured, h, w) == _eager_module_shapes(model, h, w)
    capture = captured.capture
    assert capture.method == "symbolic"
    calls = {
        capture.names[n]: capture.sites[n]
        for n in capture.nodes()
        if capture.names[n] == capture.sites[n] and capture.sites[n]
    }
    assert calls == {p: p for p in ("stem.0", "stem.1", "stem.2", "down", "head")}
    assert dict(capture.calls) == {
        "stem": 1,
        "stem.0": 1,
        "stem.1": 1,
        "stem.2": 1,
        "down": 1,
        "head": 1,
    }
    leaves = {path for path, m in model.named_modules() if path and not list(m.children())}
    assert set(capture.module_outputs) == leaves | {"stem"}
    assert capture.called == {id(m) for m in model.modules()}
    assert {id(t) for t in model.parameters()} <= capture.used_tensors


# -- (b) shape-dependent Python --------------------------------------------------------------


def test_branch_on_width_is_a_path_guard_and_both_paths_are_captured() -> None:
    model, captured = _capture(FixedSize)
    assert [(g.text, g.kind) for g in captured.guards] == [("Ne(W, 32)", "path")]
    assert captured.guards[0].code == "if x.shape[-1] != self.size:"
    assert captured.alternatives, "the W == 32 path is captured too"
    other = captured.alternatives[0]
    assert ("Eq(W, 32)", "path") in [(g.text, g.kind) for g in other.guards]
    needs = next(g for g in other.guards if g.kind == "rejects")
    assert needs.text == "H >= 3" and needs.module == "conv"
    # H == 3 at W == 32 is a third path (torch pins H there), left undecided.
    assert _brute_force(model, captured, fixed=32) <= 1
    assert _brute_force(model, captured, fixed=64) == 0


def test_loop_over_channels_unrolls_with_one_name_per_call() -> None:
    model, captured = _capture(PerChannel)
    capture = captured.capture
    conv_names = [capture.names[n] for n in capture.nodes() if capture.sites[n] == "conv"]
    assert conv_names == ["conv", "conv_1", "conv_2"]
    assert capture.calls["conv"] == 3
    for h, w in ((64, 64), (17, 40)):
        assert _captured_module_shapes(captured, h, w) == _eager_module_shapes(model, h, w)
    assert _brute_force(model, captured) == 0


def test_window_chosen_from_the_feature_map() -> None:
    model, captured = _capture(AdaptiveWindow)
    formula = captured.formula(captured.capture.module_outputs["conv"])
    assert str(formula) == "(1, 8, (((H - 3)//2)) + 1, (((W - 3)//2)) + 1)"
    for h, w in ((64, 64), (99, 40)):
        assert _captured_module_shapes(captured, h, w) == _eager_module_shapes(model, h, w)


def test_window_guards_match_brute_force() -> None:
    """The conv's own checks (`H >= 3`, `W >= 3`) reject, probed where they are the first guard
    to fail; the pool's check rejects only where the window guard asked before it holds, so the
    narrower windows (W in 3..14, which run) are undecided, never rejected."""
    model, captured = _capture(AdaptiveWindow)
    kinds = {g.text: g.kind for g in captured.guards}
    assert kinds["H >= 3"] == kinds["W >= 3"] == "rejects"
    assert kinds["Eq(Min(7, (((W - 3)//2)) + 1), 7)"] == "implied"
    assert _brute_force(model, captured) == 24
    assert captured.accepts({"H": 64, "W": 2}) is False
    assert captured.accepts({"H": 64, "W": 3}) is None


# -- (c) data-dependent sizes ----------------------------------------------------------------


def test_nonzero_and_masks_become_unbacked_symbols() -> None:
    _, captured = _capture(Boxes)
    assert captured.guards == []
    by_symbol = {u.symbol: u.nodes[0] for u in captured.unbacked}
    assert by_symbol == {"u0": "nonzero", "u1": "index"}
    at = captured.shapes({"H": 40, "W": 50})
    assert str(at["nonzero"]) == "(u0, 4)"
    assert str(at["index"]) == "(u1,)"
    assert at["score"] == (1, 1, 40, 50)
    assert captured.accepts({"H": 1, "W": 1}) is True


# -- (d) detection models ----------------------------------------------------------------------


class EmptyCheck(nn.Module):
    """A detector's box selection in small: a branch on a data-dependent size, `len()` of a
    data-dependent tensor, and a tensor built from an input size."""

    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.score(x)
        boxes = torch.nonzero(s > 0).float()
        if boxes.numel() == 0:
            return torch.zeros(0, 4)
        scale = torch.tensor(x.shape[-1], dtype=torch.float32, device=x.device)
        return torch.zeros(len(boxes), 4, device=x.device) + boxes / scale


def test_branch_on_a_data_dependent_size_takes_the_non_empty_branch_and_says_so() -> None:
    _, captured = _capture(EmptyCheck)
    (assumed,) = [g for g in captured.guards if g.assumed]
    assert assumed.kind == "data" and assumed.text == "Ne(4*u0, 0)"
    assert assumed.code == "if boxes.numel() == 0:" and assumed.file == __file__
    # `len(boxes)` stays the symbol, `torch.tensor(W)` does not pin W.
    output = next(n for n in captured.capture.graph_module.graph.nodes if n.op == "output")
    assert str(captured.shapes({"H": 40, "W": 50})[captured.capture.names[output.args[0][0]]]) == (
        "(u0, 4)"
    )
    assert not [g for g in captured.guards if "W" in g.text]


def test_data_dependent_branch_gets_a_full_report_with_the_assumption_open() -> None:
    report = _report(EmptyCheck)
    assert report.source["trace"] == "symbolic" and report.failure is None
    reasons = [q["reason"] for q in report.domain["open"]]
    assert any(r.startswith("assumed Ne(4*u0, 0)") and "boxes.numel() == 0" in r for r in reasons)
    assert "u0" in str(report.nodes[-1].shape)


def test_a_capture_with_data_dependent_sizes_past_its_budget_is_given_up() -> None:
    from shapetrace.capture_symbolic import SymbolicCaptureError

    model = _meta(EmptyCheck)
    with pytest.raises(SymbolicCaptureError) as info:
        capture_symbolic(model, [_x(64, 64)], budget=0.0)
    assert info.value.over_budget
    with pytest.raises(SymbolicCaptureError) as info:
        capture_symbolic(model, [_x(64, 64)], max_unbacked=0)
    assert info.value.over_budget and "data-dependent sizes" in str(info.value)
    # Without data-dependent sizes the limits do not cut the capture short.
    capture_symbolic(_meta(Divisible), [_x(64, 64)], budget=0.0, max_unbacked=0)


@pytest.mark.slow
def test_detection_model_gets_a_full_symbolic_report() -> None:
    """torchvision's detectors branch on data-dependent sizes in batched_nms
    (`boxes.numel() == 0`): the capture assumes non-empty boxes and says so."""
    import shapetrace

    report = shapetrace.analyze("fasterrcnn_mobilenet_v3_large_320_fpn", "1x3x320x320")
    assert report.source["trace"] == "symbolic" and report.failure is None
    assert report.domain is not None
    reasons = [q["reason"] for q in report.domain["open"]]
    assert any("assumed" in r and "boxes.py:103" in r for r in reasons)
    # The FPN's maps at 320x320 (the size the transform resizes to), as an eager run gives.
    assert report.module("backbone").shape == [
        [1, 256, 10, 10],
        [1, 256, 10, 10],
        [1, 256, 5, 5],
    ]
    assert report.module("rpn").shape == ["Min(150, u2)", 4]
    assert any("u" in str(n.shape) for n in report.nodes if n.module == "rpn")


# -- full reports: every pass on the symbolic capture ------------------------------------------


def _report(cls: type[nn.Module], size: str = "1x3x64x64") -> Any:
    import shapetrace

    return shapetrace.analyze(cls(), size)


def _domain_matches_brute_force(model: nn.Module, domain: dict[str, Any]) -> None:
    """The reported domain per axis (the other at 64) equals an eager meta run, 1..100."""
    from shapetrace.domain import in_domain

    for h, w in [(h, 64) for h in SIZES] + [(64, w) for w in SIZES]:
        assert in_domain(domain, {"H": h, "W": w}) == _runs(model, h, w), (h, w)


def test_divisible_gets_a_full_report_with_the_models_own_check_as_domain() -> None:
    report = _report(Divisible)
    model = _meta(Divisible)
    assert report.source["trace"] == "symbolic" and report.failure is None
    rows = {n.name: n for n in report.nodes}
    assert list(rows) == ["x", "stem.0", "stem.1", "stem.2", "down", "head"]
    eager = _eager_module_shapes(model, 64, 64)
    for path in ("stem.0", "stem.1", "stem.2", "down", "head"):
        assert tuple(rows[path].shape) == eager[path]
        assert rows[path].op == "call_module" and rows[path].module == path
    assert [rows[p].type for p in ("stem.0", "stem.1", "down")] == [
        "Conv2d",
        "BatchNorm2d",
        "MaxPool2d",
    ]
    assert sum(n.params for n in report.nodes) == report.totals["params"] == 258
    assert rows["head"].rf["size"] == [4, 4] and rows["head"].rf["stride"] == [2, 2]
    assert rows["stem.0"].macs == 8 * 27 * 64 * 64 and rows["head"].macs == 2 * 8 * 32 * 32
    assert report.domain["H"] == [[32, None, 32]] and report.domain["W"] == [[32, None, 32]]
    _domain_matches_brute_force(model, report.domain)
    assert "input must be divisible by 32" in report.verdict
    assert "if h % 32 or w % 32:" in report.verdict


def test_divisible_exits_0_at_64_and_1_at_63_with_the_models_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    import inspect

    from shapetrace.cli import main

    source = tmp_path / "seg.py"
    source.write_text("import torch\nfrom torch import nn\n\n\n" + inspect.getsource(Divisible))
    assert main([f"{source}:Divisible", "--input", "1x3x64x64"]) == 0
    capsys.readouterr()
    assert main([f"{source}:Divisible", "--input", "1x3x63x64"]) == 1
    assert "input must be divisible by 32, got 63x64" in capsys.readouterr().err


@pytest.mark.parametrize("cls", [FixedSize, PerChannel])
def test_shape_dependent_python_gets_a_full_report_matching_brute_force(
    cls: type[nn.Module],
) -> None:
    report = _report(cls)
    model = _meta(cls)
    assert report.source["trace"] == "symbolic" and report.failure is None
    eager = _eager_module_shapes(model, 64, 64)
    for node in report.nodes:
        if node.op == "call_module":
            assert node.module in eager and node.rf is not None and node.macs is not None
    assert tuple(report.nodes[-1].shape) == eager[""]
    _domain_matches_brute_force(model, report.domain)


def test_branch_on_width_says_the_other_path_in_open() -> None:
    report = _report(FixedSize)
    (question,) = report.domain["open"]
    assert question["guard"] == "Ne(W, 32)" and "captured too" in question["reason"]


def test_loop_over_channels_names_each_call_as_fx_would() -> None:
    report = _report(PerChannel)
    calls = [n.name for n in report.nodes if n.op == "call_module"]
    assert calls == ["conv", "conv_1", "conv_2", "pool"]
    assert report.domain["H"] == [[4, None]]


class Masked(nn.Module):
    """A size check in Python and a second input given by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, scale: float = 1.0, mask: Any = None) -> torch.Tensor:
        if x.shape[-1] % 8:
            raise ValueError("width must be a multiple of 8")
        y = self.conv(x) * scale
        return y if mask is None else y * mask


class TrainOnly(nn.Module):
    """A branch on a shape, a module only training runs, and one nothing runs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.aux = nn.Conv2d(4, 4, 1)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            raise ValueError("even widths only")
        y = self.conv(x)
        if self.training:
            y = self.aux(y)
        return y


def test_inputs_given_by_keyword_are_captured_with_symbolic_shapes() -> None:
    import shapetrace

    report = shapetrace.analyze(Masked(), "1x3x64x64,mask=1x4x64x64")
    assert report.source["trace"] == "symbolic" and report.failure is None
    assert [n.name for n in report.nodes if n.op == "placeholder"] == ["x", "mask"]
    assert report.nodes[-1].shape == [1, 4, 64, 64]


def test_a_rejected_size_gets_the_symbolic_report_with_the_failure_and_the_domain() -> None:
    report = _report(Divisible, "1x3x63x64")
    assert report.source["trace"] == "symbolic"
    assert report.failure is not None and report.failure.kind == "rejected"
    assert "input must be divisible by 32" in report.failure.message
    assert report.domain["H"] == [[32, None, 32]]


def test_dead_and_train_only_modules_on_the_symbolic_rung() -> None:
    import shapetrace

    report = shapetrace.analyze(TrainOnly(), "1x3x16x16")
    assert report.source["trace"] == "symbolic"
    assert [m["path"] for m in report.dead_modules] == ["unused"]
    assert [m["path"] for m in report.train_only_modules] == ["aux"]


# -- calls the export cannot follow: the capture ends where they begin --------------------------


class PostProcessed(nn.Module):
    """A detector's end in small: the forward hands its detections to a method that loops over
    them in Python, a count that depends on tensor values."""

    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Conv2d(3, 1, 3, padding=1)
        self.head = nn.Conv2d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.score(x)
        boxes = torch.nonzero(s > 0).float()
        return self.paste(boxes, self.head(s))

    def paste(self, boxes: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        scaled = boxes * 2
        return torch.stack([b.sum() + maps.mean() for b in scaled])


def decode_each(boxes: torch.Tensor) -> list[torch.Tensor]:
    return [b * 2 for b in boxes]


class Heads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return decode_each(torch.nonzero(self.score(x) > 0).float())


class NestedLoop(nn.Module):
    """The loop in a module-level function a submodule's forward calls, and a module the
    forward calls only after it."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = Heads()
        self.after = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> Any:
        boxes = self.heads(x)
        return boxes, self.after(x)


class PerClass(nn.Module):
    """SSD's per-class selection in small: one data-dependent size per class."""

    def __init__(self) -> None:
        super().__init__()
        self.cls = nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.cls(x).flatten(2)[0]
        return self.keep(scores)

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.cat([s[s > 0] for s in scores])


def _output_shapes(captured: SymbolicCapture, h: int, w: int) -> list[Any]:
    at = captured.shapes({"H": h, "W": w})
    output = next(n for n in captured.capture.graph_module.graph.nodes if n.op == "output")
    return [str(at[captured.capture.names[n]]) for n in output.all_input_nodes]


def test_a_loop_over_detections_ends_the_capture_at_the_call_that_makes_it() -> None:
    _, captured = _capture(PostProcessed, 40, 50)
    cut = captured.uncaptured
    assert cut is not None
    assert (cut.name, cut.function, cut.module) == ("paste", "PostProcessed.paste", None)
    assert cut.file == __file__ and cut.code is not None and cut.code.startswith("return torch")
    assert cut.cause == "loops over a data-dependent number of items (u0)"
    assert cut.called_at is not None and cut.called_at.startswith("test_capture_symbolic.py:")
    # The graph ends at what the call was given: the boxes (u0 of them) and the head's maps,
    # whose shape is an eager CPU forward's; nothing made inside the call is left.
    cpu = PostProcessed().eval()
    with torch.no_grad():
        maps = cpu.head(cpu.score(torch.randn(1, 3, 40, 50)))
    assert _output_shapes(captured, 40, 50) == ["(u0, 4)", str(tuple(maps.shape))]
    names = set(captured.capture.names.values())
    assert not [n for n in names if n.split(".")[-1].startswith(("mul", "stack", "mean", "sum"))]
    assert cut.inputs == [captured.capture.names[n] for n in _outputs(captured)]


def _outputs(captured: SymbolicCapture) -> list[Any]:
    output = next(n for n in captured.capture.graph_module.graph.nodes if n.op == "output")
    return list(output.all_input_nodes)


def test_the_cut_is_the_call_made_from_the_innermost_forward() -> None:
    _, captured = _capture(NestedLoop, 40, 50)
    cut = captured.uncaptured
    assert cut is not None
    assert (cut.name, cut.function, cut.module) == ("heads.decode_each", "decode_each", "heads")
    assert cut.code == "return [b * 2 for b in boxes]"
    assert _output_shapes(captured, 40, 50) == ["(u0, 4)"]
    # `after` runs only after the cut: not in the graph.
    assert "after" not in captured.capture.calls
    # What follows the cut is unknown, so no size is claimed accepted from the guards.
    assert captured.accepts({"H": 40, "W": 50}) is None


def test_more_data_dependent_sizes_than_the_limit_end_the_capture_at_the_loop() -> None:
    model = _meta(PerClass)
    captured = capture_symbolic(model, [_x(8, 8)], max_unbacked=4)
    cut = captured.uncaptured
    assert cut is not None and cut.name == "keep"
    assert cut.cause == "makes more data-dependent sizes than the capture's limit of 4, the 5th"
    assert cut.code == "return torch.cat([s[s > 0] for s in scores])"
    cpu = PerClass().eval()
    with torch.no_grad():
        scores = cpu.cls(torch.randn(1, 3, 8, 8)).flatten(2)[0]
    assert _output_shapes(captured, 8, 8) == [str(tuple(scores.shape))]
    assert not captured.unbacked
    # Without the limit the loop is captured whole: 8 classes, 8 data-dependent sizes.
    whole = capture_symbolic(_meta(PerClass), [_x(8, 8)])
    assert whole.uncaptured is None and len(whole.unbacked) == 8


def test_the_report_says_what_is_not_captured_and_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    import inspect

    import shapetrace
    from shapetrace.cli import main

    report = shapetrace.analyze(PostProcessed(), "1x3x40x50")
    assert report.source["trace"] == "symbolic" and report.failure is None
    assert report.node("head").shape == [1, 2, 40, 50]
    last = report.nodes[-1]
    assert (last.name, last.type, last.shape) == ("paste", "PostProcessed.paste", None)
    assert last.missing is not None
    reason = last.missing["shape"]
    assert reason.startswith("not captured: PostProcessed.paste (paste) loops over a data-")
    assert "test_capture_symbolic.py:" in reason and "for b in scaled" in reason
    assert {"node": "paste", "reason": reason, "cut": True} in report.domain["open"]
    # Every size passes the graph up to the cut; whether the model accepts it is unknown.
    from shapetrace.domain import in_domain

    assert report.domain["H"] == [[1, None]] and report.domain["W"] == [[1, None]]
    assert in_domain(report.domain, {"H": 40, "W": 50}) is None
    assert report.verdict.startswith(
        "Captured up to paste, which is not captured: it loops over a data-dependent number of "
        "items (u0) at test_capture_symbolic.py:"
    )
    assert "PostProcessed.paste" in report.totals["uncounted"]

    source = tmp_path / "post.py"
    source.write_text("import torch\nfrom torch import nn\n\n\n" + inspect.getsource(PostProcessed))
    assert main([f"{source}:PostProcessed", "--input", "1x3x40x50"]) == 0
    out = capsys.readouterr().out
    assert "traced with symbolic" in out and "Captured up to paste" in out


def test_a_report_with_data_dependent_sizes_saves_loads_and_checks_as_unknown(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    import inspect
    import json

    import jsonschema

    from shapetrace.cli import main
    from shapetrace.report import Report

    source = tmp_path / "post.py"
    source.write_text("import torch\nfrom torch import nn\n\n\n" + inspect.getsource(PostProcessed))
    saved = tmp_path / "post.json"
    spec = f"{source}:PostProcessed"
    assert main([spec, "--input", "1x3x40x50", "-f", "json", "-o", str(saved)]) == 0
    data = json.loads(saved.read_text())
    schema = json.loads((Path(__file__).parent.parent / "docs" / "schema.json").read_text())
    jsonschema.validate(data, schema)
    assert data["source"]["captured_until"] == "paste"
    loaded = Report.load(saved)
    assert loaded.node("head").shape == [1, 2, 40, 50]
    # The nonzero's count is a symbol, kept as one through save and load.
    assert any(isinstance(d, str) and "u0" in d for n in loaded.nodes for d in (n.shape or []))
    assert main(["show", str(saved)]) == 0
    assert "Captured up to paste" in capsys.readouterr().out
    # What the model returns is past the cut: check cannot say the size is accepted.
    assert main(["check", spec, "--input", "1x3x40x50"]) == 3
    out = capsys.readouterr().out
    assert "40x50" in out and "paste" in out and "accepted" not in out


def test_modules_after_the_cut_are_not_claimed_dead() -> None:
    import shapetrace

    report = shapetrace.analyze(NestedLoop(), "1x3x40x50")
    assert report.source["trace"] == "symbolic" and report.failure is None
    assert report.dead_modules == [] and report.train_only_modules == []
    reason = report.node("heads.decode_each").missing["shape"]
    assert "after was not reached before it, so whether the forward uses it is unknown" in reason


def test_captures_in_two_threads_give_what_each_gives_alone() -> None:
    def summary(captured: SymbolicCapture) -> Any:
        return (
            sorted((g.text, g.kind, g.line) for g in captured.guards),
            captured.shapes({"H": 64, "W": 64}),
            len(captured.alternatives),
        )

    alone = {cls: summary(_capture(cls)[1]) for cls in (Divisible, AdaptiveWindow)}
    start = threading.Barrier(2)
    together: dict[type[nn.Module], Any] = {}
    errors: list[BaseException] = []

    def run(cls: type[nn.Module]) -> None:
        try:
            model = _meta(cls)
            start.wait()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                together[cls] = summary(capture_symbolic(model, [_x(64, 64)]))
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in (Divisible, AdaptiveWindow)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert together == alone


class ImageList(nn.Module):
    """Takes a list of images, as torchvision's detectors do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.conv(image[None]) for image in images]


def test_a_list_of_images_is_captured_from_the_batch_without_plumbing_rows() -> None:
    from shapetrace.analysis import _visible_inputs

    batch = torch.empty(2, 3, 16, 16, device="meta")
    captured = capture_symbolic(_meta(ImageList), [batch], images=True)
    capture = captured.capture
    rows = {capture.names[n]: n for n in capture.nodes()}
    # Unbinding the batch into the list is shapetrace's, not the model's: no rows, and the
    # model's own ops keep the names an fx graph of the model gives them.
    assert list(rows) == ["batch", "unsqueeze", "conv", "unsqueeze_1", "conv_1"]
    assert _visible_inputs(capture, rows["unsqueeze"]) == [rows["batch"]]
    with torch.no_grad():
        eager = ImageList()([torch.randn(3, 16, 16)])[0]
    assert captured.shapes({"H": 16, "W": 16})["conv_1"] == tuple(eager.shape)


class ValueInHelper(nn.Module):
    """A branch on a tensor's value in a method the forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.conv(x))

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        return y if y.sum() > 0 else -y


def test_a_branch_on_a_value_in_a_call_is_not_cut() -> None:
    # Which path the model takes depends on values, not sizes: no cut, the hooks run reports.
    import shapetrace
    from shapetrace.capture_symbolic import SymbolicCaptureError

    with pytest.raises(SymbolicCaptureError):
        _capture(ValueInHelper, 16, 16)
    report = shapetrace.analyze(ValueInHelper(), "1x3x16x16")
    assert report.source["trace"] == "hooks" and report.failure is not None
    with torch.no_grad():
        conv = ValueInHelper().conv(torch.randn(1, 3, 16, 16))
    assert report.node("conv").shape == list(conv.shape)


class LoopingHead(nn.Module):
    """A loop over detections in a submodule's own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, 1, 1)

    def forward(self, boxes: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        maps = self.proj(maps)
        return torch.stack([b.sum() + maps.mean() for b in boxes])


class WithLoopingHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Conv2d(3, 1, 3, padding=1)
        self.head = LoopingHead()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.score(x)
        return self.head(torch.nonzero(s > 0).float(), s)


def test_a_loop_in_a_submodules_forward_ends_the_capture_at_that_module_call() -> None:
    _, captured = _capture(WithLoopingHead, 40, 50)
    cut = captured.uncaptured
    assert cut is not None
    assert (cut.name, cut.function, cut.module) == ("head", "LoopingHead.forward", None)
    assert cut.code == "return torch.stack([b.sum() + maps.mean() for b in boxes])"
    with torch.no_grad():
        s = WithLoopingHead().score(torch.randn(1, 3, 40, 50))
    assert _output_shapes(captured, 40, 50) == ["(u0, 4)", str(tuple(s.shape))]
    # The head's own conv ran before the loop, inside the cut call: not in the graph.
    assert "head.proj" not in set(captured.capture.names.values())
    # nor said to be a module the forward never reached: it is the cut row's own
    import shapetrace

    report = shapetrace.analyze(WithLoopingHead(), "1x3x40x50")
    assert "not reached" not in report.node("head").missing["shape"]


class TwoImages(nn.Module):
    """Two inputs of one size (a frame pair), with a size check fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[-1] % 2:
            raise ValueError("the width must be even")
        return self.conv(a) + self.conv(b)


def test_a_second_input_sharing_the_first_ones_sizes_does_not_pin_them() -> None:
    model = _meta(TwoImages)
    captured = capture_symbolic(model, [_x(8, 10), _x(8, 10)])
    assert set(captured.symbols) == {"H", "W"}
    # No guard comes from shapetrace reading a size as an int.
    ours = os.path.abspath(capture_symbolic.__code__.co_filename)
    assert not any(g.file and os.path.abspath(g.file) == ours for g in captured.guards)
    cpu = TwoImages()
    for h, w in [(8, 10), (9, 12), (3, 4), (20, 6), (8, 7), (2, 10)]:
        a = torch.randn(1, 3, h, w)
        try:
            cpu(a, a)
            runs = True
        except (ValueError, RuntimeError):
            runs = False
        assert captured.accepts({"H": h, "W": w}) is runs, (h, w)


class Rescale(nn.Module):
    """Reads its own parameter in forward (SSD's L2 norm does), rather than calling a layer."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


class CheckedRescale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.rescale = Rescale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            raise ValueError("the width must be even")
        return self.rescale(self.conv(x))


def test_a_parameter_read_in_forward_is_a_row_of_its_owner_where_it_is_used() -> None:
    import shapetrace

    report = shapetrace.analyze(CheckedRescale(), "1x3x8x10")
    assert report.source["trace"] == "symbolic"
    names = [n.name for n in report.nodes]
    read = report.node("rescale.weight")
    assert (read.op, read.module, read.shape) == ("get_attr", "rescale", [4])
    assert read.target == "rescale.weight"
    # A detector's, read through the wrapper that unbinds the batch, reads the same.
    from shapetrace.capture_symbolic import model_path

    assert model_path("_shapetrace_images.backbone.scale_weight") == "backbone.scale_weight"
    # After the input and the conv, as an fx graph reads it: not at the top of the table.
    assert names.index("x") < names.index("conv") < names.index("rescale.weight")
    assert report.module("rescale").shape == [1, 4, 6, 8]


class GridAndBoxes(nn.Module):
    """Views (meshgrid's expanded grids, a reshape), a tensor made on the CPU, and sizes that
    depend on values: every case where the shape pass must run the op rather than read the
    value export recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = F.relu(self.conv(x))
        h, w = y.shape[-2:]
        gy, gx = torch.meshgrid(
            torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
        )
        flat = y.flatten(2).transpose(1, 2)
        scale = torch.tensor([2.0, 3.0]).to(x.device)
        picked = flat[flat[..., 0] > 0]
        return gy + gx, flat * scale.sum(), picked.sum(0), picked


def test_the_shape_pass_reads_exports_values_where_a_run_would_compute_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shapetrace.passes import shapes
    from shapetrace.passes.shapes import propagate

    read: set[Any] = set()
    recorded = shapes._ShapeInterpreter._recorded

    def spy(self: Any, n: torch.fx.Node) -> Any:
        value = recorded(self, n)
        if value is not None:
            read.add(n.target)
        return value

    monkeypatch.setattr(shapes._ShapeInterpreter, "_recorded", spy)

    _, captured = _capture(GridAndBoxes, 24, 40)
    capture = captured.capture
    gm = capture.graph_module
    runs = [
        propagate(gm, [_x(24, 40)], capture.names, capture.sites, symbolic=True, reuse=reuse)
        for reuse in (False, True)
    ]

    def sharing(run: Any) -> dict[str, set[str]]:
        # Which nodes' outputs share a storage: the cost pass counts storages.
        by_key: dict[int, set[str]] = {}
        for node, value in run.values.items():
            for t in [v for v in (value if isinstance(value, (list, tuple)) else [value])]:
                if isinstance(t, torch.Tensor):
                    by_key.setdefault(int(t.untyped_storage()._cdata), set()).add(node.name)
        return {n: group for group in by_key.values() for n in group}

    full, reused = runs
    assert full.failure is None and reused.failure is None
    assert {n.name: r for n, r in full.results.items()} == {
        n.name: r for n, r in reused.results.items()
    }
    assert sharing(full) == sharing(reused)
    # Read from export: the conv, the sums; meshgrid's views, the reshapes, the tensor made
    # on the CPU and the ops on data-dependent sizes ran.
    assert {torch.ops.aten.conv2d.default, torch.ops.aten.mul.Tensor} <= read
    ran = {torch.ops.aten.meshgrid.indexing, torch.ops.aten.transpose.int, torch.ops.aten.to.dtype}
    assert not read & ran
    assert torch.ops.aten.lift_fresh_copy.default not in read
    shapes = {n.name: r.shape for n, r in reused.results.items()}
    assert any(isinstance(d, str) and d.startswith("u") for s in shapes.values() if s for d in s)


def test_an_error_while_setting_up_the_cut_points_leaves_nothing_patched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shapetrace.capture_symbolic as cs

    model = WithLoopingHead()
    real = cs._watched
    made: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        if len(made) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cs, "_watched", failing)
    before = {id(m): dict(vars(m)) for m in model.modules()}
    namespace = sys.modules[__name__]
    functions = {k: v for k, v in vars(namespace).items() if inspect.isfunction(v)}
    with pytest.raises(KeyboardInterrupt):
        capture_symbolic(model, [_x(40, 50)])
    assert len(made) == 3
    assert {id(m): dict(vars(m)) for m in model.modules()} == before
    assert {k: v for k, v in vars(namespace).items() if inspect.isfunction(v)} == functions
