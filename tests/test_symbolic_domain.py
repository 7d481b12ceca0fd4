"""Domains of models captured by torch.export (the symbolic rung): ops without a size rule take
their sizes from the export, the capture's guards say where its graph is the model's, and the
domain claims only what they prove. Checked against brute-force eager meta runs."""

from __future__ import annotations

import random
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shapetrace
from shapetrace.domain import in_domain
from shapetrace.passes import sizing
from shapetrace.passes.sizing.exported import WINDOW, compiled
from shapetrace.passes.sizing.intset import IntSet

SIZES = range(1, 81)


# -- models fx cannot trace, written as users write them ---------------------------------------


class ResizeWidth(nn.Module):
    """Resizes the width to 64 unless it already is; a 5x5 conv and a 2x2 pool follow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 64:
            x = F.interpolate(x, size=(x.shape[-2], 64))
        return self.pool(self.conv(x))


class ResizeSquare(ResizeWidth):
    """`if x.shape[-1] != 64: x = F.interpolate(x, size=64)`, then a 5x5 conv and a 2x2 pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 64:
            x = F.interpolate(x, size=64)
        return self.pool(self.conv(x))


class EvenZeros(nn.Module):
    """A size check, and a bias built from a size (`zeros` with a symbolic size, which the
    size rules do not take in an aten graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 2:
            raise ValueError("even heights only")
        y = self.conv(x)
        return y + torch.zeros(y.shape[-1], device=y.device)


class Divisible(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise RuntimeError(f"input must be divisible by 32, got {h}x{w}")
        return self.pool(self.conv(x))


class Window(nn.Module):
    """A window chosen from the feature map: the capture's guard on it is `implied` (no size
    breaks it alone), so the sizes where it fails are unknown, not rejected."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.avg_pool2d(y, min(7, y.shape[-1]))


class Kron(nn.Module):
    """`torch.kron` decomposes into reshapes that pin the map's sizes: the export fixes H and
    W, so its graph is the model's at the captured size alone."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.register_buffer("one", torch.ones(1, 1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 8:
            raise ValueError("at least 8 wide")
        return F.max_pool2d(torch.kron(self.conv(x), self.one), 4)


def _runs(cls: type[nn.Module], h: int, w: int) -> bool:
    with torch.device("meta"):
        model = cls().eval()
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, h, w, device="meta"))
    except Exception:
        return False
    return True


def _report(cls: type[nn.Module], size: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = shapetrace.analyze(cls(), f"1x3x{size}x{size}")
    assert report.source["trace"] == "symbolic"
    return report


def _brute_force(cls: type[nn.Module], domain: dict[str, Any], at: int) -> list[tuple[int, int]]:
    """Every claim of the domain along each axis (the other at `at`) holds in an eager meta
    run; returns the sizes it leaves unknown."""
    unknown = []
    for h, w in [(h, at) for h in SIZES] + [(at, w) for w in SIZES]:
        claim = in_domain(domain, {"H": h, "W": w})
        if claim is None:
            unknown.append((h, w))
        else:
            assert claim == _runs(cls, h, w), (h, w, claim)
    # Square sizes move both axes: where the captured path may change with either, the
    # domain makes no claim; where it makes one, it holds.
    for n in SIZES:
        claim = in_domain(domain, {"H": n, "W": n})
        assert claim is None or claim == _runs(cls, n, n), (n, claim)
    return unknown


# -- exact domains -----------------------------------------------------------------------------


def test_zeros_from_a_size_takes_the_exports_shape_and_the_domain_is_exact() -> None:
    report = _report(EvenZeros, 32)
    assert report.domain["H"] == [[4, None, 2]] and report.domain["W"] == [[3, None]]
    assert "open" not in report.domain
    assert _brute_force(EvenZeros, report.domain, 32) == []
    assert "even heights only" in report.verdict


def test_divisible_by_32_is_exact() -> None:
    report = _report(Divisible, 64)
    assert report.domain["H"] == [[32, None, 32]] and report.domain["W"] == [[32, None, 32]]
    assert _brute_force(Divisible, report.domain, 64) == []


def test_branch_on_width_joins_both_captured_paths() -> None:
    """At W = 64 the model takes the other path (captured too): it is accepted there. Along H
    the 5x5 conv and the 2x2 pool need H >= 6; the conv's own check `H >= 5` breaks the pool's
    too, so it is probed where it is the first guard to fail (H = 4): the conv raises there,
    and H <= 4 is rejected (was unknown). The domain is exact."""
    report = _report(ResizeWidth, 48)
    domain = report.domain
    assert domain["H"] == [[6, None]] and domain["W"] == [[1, None]]
    assert "possible" not in domain
    assert _brute_force(ResizeWidth, domain, 48) == []
    guards = {q.get("guard") for q in domain["open"]}
    assert guards == {"Ne(W, 64)"}


def test_resize_unless_64_from_either_path() -> None:
    """Captured at 48 (the resizing path), every size is accepted. Captured at 64 (W pinned to
    64, the other path captured too), H goes through the conv and pool: H >= 6, H = 5 rejected
    by the pool, H <= 4 by the conv (its check probed at H = 4, where it fails first); every W
    is accepted."""
    resized = _report(ResizeSquare, 48)
    assert resized.domain["H"] == [[1, None]] and resized.domain["W"] == [[1, None]]
    assert _brute_force(ResizeSquare, resized.domain, 48) == []
    kept = _report(ResizeSquare, 64)
    assert kept.domain["H"] == [[6, None]] and kept.domain["W"] == [[1, None]]
    assert "possible" not in kept.domain
    assert _brute_force(ResizeSquare, kept.domain, 64) == []


def test_a_window_chosen_from_the_map_is_not_claimed_beyond_its_path() -> None:
    """`min(7, w)`: the captured graph pools 7x7, which needs W >= 15; narrower inputs take
    another window, which the capture did not follow. They are unknown, never rejected (an
    eager run accepts W = 3..14). The conv's own checks reject H, W <= 2: the conv raises where
    they are the first guard to fail."""
    report = _report(Window, 64)
    domain = report.domain
    assert domain["H"] == [[15, None]] and domain["W"] == [[15, None]]
    assert domain["possible"] == {"H": [[15, None]], "W": [[3, None]]}
    unknown = _brute_force(Window, domain, 64)
    assert unknown == [(64, w) for w in range(3, 15)]
    assert [_runs(Window, 64, w) for w in (2, 3, 14)] == [False, True, True]
    # At 3x3 the window is 1x1 and the model runs: the per-axis sets (W at 64) say nothing.
    assert in_domain(domain, {"H": 3, "W": 3}) is None and _runs(Window, 3, 3)
    assert "Eq(Min(7, (((W - 3)//2)) + 1), 7)" in {q.get("guard") for q in domain["open"]}
    assert report.verdict.startswith("Accepts every H, W >= 15 (each axis with the others at")


def test_sizes_the_export_fixed_are_known_only_where_captured() -> None:
    report = _report(Kron, 32)
    domain = report.domain
    assert domain["H"] == [[32, 32]] and domain["W"] == [[32, 32]]
    assert domain["possible"] == {"H": [[1, None]], "W": [[1, None]]}
    reasons = [q["reason"] for q in domain["open"]]
    assert any(r.startswith("the export fixed H at 32") for r in reasons)
    assert {q.get("pinned") for q in domain["open"]} >= {"H", "W"}
    assert len(_brute_force(Kron, domain, 32)) == 2 * (len(SIZES) - 1)
    # Moving both axes leaves the fixed path: unknown, whatever the per-axis sets say.
    assert in_domain(domain, {"H": 33, "W": 33}) is None


class Tokens(nn.Module):
    """A sequence model with a length check and a position table of 16."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.position = nn.Parameter(torch.zeros(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 16:
            raise ValueError("at most 16 tokens")
        return self.embed(x) + self.position[: x.shape[-1]]


def test_a_sequence_axis_of_an_embedding_model_is_symbolic_too() -> None:
    """An aten graph has no modules to say that an embedding reads the last dim: the axes are
    the dims the capture made symbolic (was: no axis, no domain)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = shapetrace.analyze(Tokens(), "1x12:int64")
    assert report.source["trace"] == "symbolic"
    assert report.domain["L"] == [[1, 16]] and "open" not in report.domain
    with torch.device("meta"):
        model = Tokens().eval()
    for n in range(1, 41):
        try:
            model(torch.zeros(1, n, dtype=torch.int64, device="meta"))
            runs = True
        except ValueError:
            runs = False
        assert in_domain(report.domain, {"L": n}) == runs, n
    assert "at most 16 tokens" in report.verdict


class PositiveColumns(nn.Module):
    """Keeps the columns where the first row is positive: a data-dependent width."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        keep = torch.nonzero(y[0, 0, 0] > 0)[:, 0]
        return y.index_select(3, keep)


def test_a_data_dependent_width_stays_a_symbol_and_bounds_nothing() -> None:
    """The kept width is `u0`: no formula in H, W writes it, and it constrains neither axis;
    the domain is the conv's (checked by CPU runs: meta tensors cannot run `nonzero`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = shapetrace.analyze(PositiveColumns(), "1x3x16x16")
    assert report.source["trace"] == "symbolic"
    last = report.nodes[-1]
    assert last.shape == [1, 4, 14, "u0"] and last.shape_formula is None
    assert last.missing == {"shape_formula": "a size that depends on tensor values (u0)"}
    assert report.domain["H"] == [[3, None]] and report.domain["W"] == [[3, None]]
    torch.manual_seed(0)
    model = PositiveColumns().eval()
    for h, w in [(h, 16) for h in range(1, 31)] + [(16, w) for w in range(1, 31)]:
        try:
            with torch.no_grad():
                model(torch.randn(1, 3, h, w))
            runs = True
        except RuntimeError:
            runs = False
        assert in_domain(report.domain, {"H": h, "W": w}) == runs, (h, w)


# -- pieces ------------------------------------------------------------------------------------


def test_complement_of_periodic_sets() -> None:
    rng = random.Random(7)
    for _ in range(200):
        found = IntSet.empty()
        for _ in range(rng.randint(0, 3)):
            lo = rng.randint(1, 60)
            found = found.union(IntSet.interval(lo, rng.choice([None, lo + rng.randint(0, 30)])))
        period = rng.randint(1, 6)
        found = found.union(IntSet(rng.randint(1, 40), [], period, [[] for _ in range(period)]))
        if rng.random() < 0.5:
            step = rng.randint(2, 5)
            found = found.intersect(IntSet(1, [], step, [[(0, None)]] + [[]] * (step - 1)))
        flipped = found.complement()
        assert all(found.contains(n) != flipped.contains(n) for n in range(1, 300))


def test_guards_evaluate_as_torch_does_in_double_precision() -> None:
    """`TruncToInt(320/min(H, W) * H)` is 319 at some sizes where exact arithmetic gives
    320; the compiled guard agrees with Python's floats, size by size."""
    import sympy

    h, w = sympy.symbols("H W", integer=True, positive=True)
    trunc = sympy.Function("TruncToInt")
    ratio = sympy.Function("IntTrueDiv")(320, sympy.Min(h, w)) * sympy.Function("ToFloat")(h)
    guard = sympy.Eq(trunc(ratio), 320)
    fn = compiled(guard)
    for n in range(1, 400):
        assert fn({"H": n, "W": 800}) == (int(320 / min(n, 800) * float(n)) == 320)
    assert WINDOW >= 1024


# -- a torchvision detector --------------------------------------------------------------------


def _detector_with_capture(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    seen: dict[str, Any] = {}
    original = sizing.run

    def run(context: Any) -> None:
        seen["capture"] = context.capture.symbolic
        original(context)

    monkeypatch.setattr(sizing, "run", run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = shapetrace.analyze("fasterrcnn_mobilenet_v3_large_320_fpn")
    return report, seen["capture"]


def test_detector_domain_is_the_captured_path_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transform resizes 800x800 to 320x320 and pads to a multiple of 32; the export pins
    the padded size, so its graph is the model's exactly where the resized image stays 320x320:
    H in 798..802 at W = 800. Every op after the transform has its sizes from the export (no
    `no size rule` is left), data-dependent sizes stay symbols, and no Python error text leaks
    into a reason."""
    report, captured = _detector_with_capture(monkeypatch)
    domain = report.domain
    assert report.failure is None
    assert domain["H"] == [[798, 802]] and domain["W"] == [[798, 802]]
    assert domain["possible"] == {"H": [[1, None]], "W": [[1, None]]}
    reasons = [q["reason"] for q in domain["open"]]
    assert not any("no size rule" in r or "Error" in r for r in reasons)
    assert not any("op" in q for q in domain["open"])
    # The capture's own evaluation of its guards (sympy's, not the sizing pass's): the graph
    # is the model's where every guard on H and W holds; none rejects, so off it is unknown.
    sizes = [(h, 800) for h in range(700, 900)] + [(800, w) for w in range(700, 900)]
    path = [g for g in captured.guards if g.kind not in ("layout", "data")]
    assert path and not any(g.kind == "rejects" for g in path)
    for h, w in sizes:
        on_path = all(g.holds({"H": h, "W": w}) for g in path)
        assert in_domain(domain, {"H": h, "W": w}) == (True if on_path else None), (h, w)
    assert report.verdict.startswith("Accepts H, W in [798, 802] (each axis with the others at")
    assert "transform.py:246" in report.verdict


@pytest.mark.slow
def test_detector_accepts_the_claimed_sizes_on_cpu() -> None:
    """The sizes claimed accepted run in an eager CPU forward (random weights), and so does a
    size left unknown (another path of the model's, not a rejection)."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None).eval()
    for h in (798, 802, 640):
        with torch.no_grad():
            (out,) = model([torch.rand(3, h, 800)])
        assert out["boxes"].shape[1] == 4
