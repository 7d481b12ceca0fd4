"""Size rules of the op families, each checked against a brute force.

Every small model below uses ops that, before the op registry, had no size rule in some
spelling (pixel (un)shuffle, narrow, F.unfold, Tensor.unfold, LPPool, repeat_interleave, a
functional conv with padding="same", GLU). Its accepted domain is compared with the model run
by torch on meta tensors at every size of each axis, and every node's shape formula with the
shapes torch's meta kernels give at other sizes, H != W included.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from test_formula import assert_formulas_match
from test_sizing import assert_domain_matches, members
from torch import nn

import shapetrace
from shapetrace import ops
from shapetrace.formula import evaluate
from shapetrace.passes.sizing.rules import FAMILY_RULES
from shapetrace.report import Report


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_registered_family_has_a_size_rule() -> None:
    assert set(FAMILY_RULES) == ops.families()


def exact(model: nn.Module, spec: str, top: int, expected: tuple[int | None, ...]) -> Report:
    """Analyse `model` at `spec`; its domain equals the brute force on 1..top along each axis,
    no op is without a size rule, and every spatial node's formula matches the meta shapes at
    accepted sizes with H != W."""
    report = shapetrace.analyze(model.eval(), spec)
    assert report.domain is not None
    assert not [b for b in report.domain["bounds"] if b["kind"] == "inexact"]
    meta = model.to("meta")
    assert_domain_matches(meta, report, range(1, top + 1), expected)
    maps = [
        n
        for n in report.nodes
        if n.depends_on_input == "scales" and isinstance(n.shape, list) and len(n.shape) >= 3
    ]
    assert maps and all(n.shape_formula is not None for n in maps)
    hs = sorted(members(report.domain["H"], range(1, top + 1)))
    ws = sorted(members(report.domain["W"], range(1, top + 1)))
    for h, w in ((hs[0], ws[-1]), (hs[len(hs) // 2], ws[0]), (hs[-1], ws[len(ws) // 3])):
        assert assert_formulas_match(model, report, {"H": h, "W": w}) >= len(maps)
    return report


class Shuffles(nn.Module):
    """Space-to-depth and back, in both spellings."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.PixelUnshuffle(2)
        self.mix = nn.Conv2d(16, 36, 1)
        self.up = nn.PixelShuffle(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(self.conv(x), 2)  # 16 channels at H/2
        x = self.up(self.mix(x))  # 4 channels at 3H/2
        return F.pixel_shuffle(self.down(x), 2)  # 4 channels at 3H/2


def test_pixel_shuffle_and_unshuffle_need_even_sizes_and_scale_them() -> None:
    report = exact(Shuffles(), "1x3x8x12", 40, (1, 4, None, None))
    assert report.domain is not None
    # 3H/2 must be even again for the last unshuffle: H a multiple of 4.
    assert report.domain["H"] == [[4, None, 4]] and report.domain["W"] == [[4, None, 4]]
    assert report.node("up").shape_formula == ["N", "4", "3*floor(H/2)", "3*floor(W/2)"]


class Narrowed(nn.Module):
    """A valid conv, then narrow along H (from the start) and along W (from the end)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).narrow(2, 1, 4)
        return torch.narrow(x, 3, -3, 2)


def test_narrow_keeps_its_length_and_needs_the_window_inside_the_map() -> None:
    report = exact(Narrowed(), "1x1x10x10", 30, (1, 2, 4, 2))
    assert report.domain is not None
    assert report.domain["H"] == [[7, None]] and report.domain["W"] == [[5, None]]
    assert report.node("narrow_1").shape_formula == ["N", "2", "4", "2"]


class Patches(nn.Module):
    """im2col (F.unfold) and sliding windows along H (Tensor.unfold)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(x, kernel_size=(3, 2), stride=2, padding=(0, 1))
        slides = x.unfold(2, 4, 3)  # N x C x windows x W x 4
        return cols.sum(1, keepdim=True) + slides.mean(-1).flatten(2).sum(-1, keepdim=True)


def test_unfold_and_tensor_unfold_count_their_windows() -> None:
    model = Patches()
    report = exact(model, "1x2x9x7", 30, (1, 2, None))
    assert report.domain is not None
    assert report.domain["H"] == [[4, None]] and report.domain["W"] == [[1, None]]
    # (floor((H - 3)/2) + 1) windows along H times (floor((W + 2 - 2)/2) + 1) along W.
    blocks = "(ceil(H/2) - 1)*(floor(W/2) + 1)"
    assert report.node("unfold").shape_formula == ["N", "12", blocks]
    assert report.node("unfold_1").shape_formula == ["N", "2", "ceil(H/3) - 1", "W", "4"]
    with torch.no_grad():
        out = Patches()(torch.zeros(1, 2, 13, 6))
    assert list(out.shape) == [evaluate(f, N=1, H=13, W=6) for f in ["N", "2", blocks]]


class LPPools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.LPPool2d(2, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.lp_pool2d(self.pool(x), 1.5, (2, 1))


def test_lp_pools_shrink_like_average_pools() -> None:
    report = exact(LPPools(), "1x1x16x9", 40, (1, 1, None, None))
    assert report.domain is not None
    assert report.domain["H"] == [[5, None]] and report.domain["W"] == [[3, None]]
    assert report.node("pool").shape_formula == [
        "N",
        "1",
        "ceil(H/2) - 1",
        "ceil(W/2) - 1",
    ]


class Interleaved(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x).repeat_interleave(3, dim=2)


def test_repeat_interleave_multiplies_its_dim() -> None:
    report = exact(Interleaved(), "1x2x8x8", 30, (1, 2, None, None))
    assert report.node("repeat_interleave").shape_formula == [
        "N",
        "2",
        "3*floor(H/2)",
        "floor(W/2)",
    ]


class SameConv(nn.Module):
    """A functional conv with padding="same", an even kernel and dilation, then a pool."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 2, 4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, padding="same", dilation=(1, 2))
        return F.max_pool2d(x, 3)


def test_functional_conv_with_same_padding_keeps_the_size() -> None:
    report = exact(SameConv(), "1x2x12x10", 30, (1, 4, None, None))
    assert report.domain is not None
    assert report.domain["H"] == [[3, None]] and report.domain["W"] == [[3, None]]
    assert report.node("conv2d").shape_formula == ["N", "4", "H", "W"]


class Gated(nn.Module):
    """GLU along W halves it, and needs it even."""

    def __init__(self) -> None:
        super().__init__()
        self.glu = nn.GLU(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.glu(x), dim=2)


def test_glu_halves_its_dim_and_needs_it_even() -> None:
    report = exact(Gated(), "1x2x6x8", 30, (1, 2, None, None))
    assert report.domain is not None
    assert report.domain["H"] == [[2, None, 2]] and report.domain["W"] == [[2, None, 2]]
    assert report.node("glu").shape_formula == ["N", "2", "H", "floor(W/2)"]


class Plumbing(nn.Module):
    """movedim, select, tensor_split, index_select and a crop by a size read with //."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2] // 2
        x = torch.movedim(x, 1, 3)  # N x H x W x C
        a, b = torch.tensor_split(x, 2, dim=3)
        y = (a + b).select(3, 0)  # N x H x W
        rows = torch.index_select(y, 2, torch.arange(2))
        return rows.unsqueeze(1)[:, :, :h]


def test_everyday_plumbing_follows_the_sizes() -> None:
    report = exact(Plumbing(), "1x4x6x5", 20, (1, 1, None, 2))
    assert report.node("select").shape_formula == ["N", "H", "W"]
    assert report.node("getitem_3").shape_formula == ["N", "1", "floor(H/2)", "2"]


class Unknown(nn.Module):
    """tril has no size rule: it keeps its input's shape, but the report says so."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).tril().relu()


def test_a_node_without_a_size_rule_says_why_it_has_no_formula() -> None:
    report = shapetrace.analyze(Unknown().eval(), "1x1x8x8")
    tril = report.node("tril")
    assert tril.shape_formula is None and tril.missing is not None
    assert "no size rule for Tensor.tril" in tril.missing["shape_formula"]
    relu = report.node("relu")
    assert relu.shape_formula is None and relu.missing is not None
    assert relu.missing["shape_formula"] == "follows tril, which has no size rule"
    assert report.node("conv").shape_formula == ["N", "1", "H - 2", "W - 2"]


class SkipUp(nn.Module):
    """A strided conv, then a transposed conv told the skip's size: every size works, where
    without output_size only odd sizes would."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x), output_size=x.shape) + x


def test_transposed_conv_with_output_size_gives_the_size_asked_for() -> None:
    report = exact(SkipUp(), "1x1x9x12", 40, (1, 1, None, None))
    assert report.domain is not None
    assert report.domain["H"] == [[1, None]] and report.domain["W"] == [[1, None]]
    assert report.node("up").shape_formula == ["N", "1", "H", "W"]


def test_transposed_conv_rejects_an_output_size_out_of_its_reach() -> None:
    # kernel 2, stride 2 gives 2*ceil(H/2) or one more: odd H is out of reach.
    model = SkipUp()
    model.up = nn.ConvTranspose2d(2, 1, 2, stride=2)
    report = shapetrace.analyze(model.eval(), "1x1x8x12")
    assert report.domain is not None
    assert report.domain["H"] == [[2, None, 2]] and report.domain["W"] == [[2, None, 2]]
    assert_domain_matches(model.to("meta"), report, range(1, 41), (1, 1, None, None))


class LineReader(nn.Module):
    """A CRNN head: the conv leaves one row, squeeze(2) drops it, a Linear reads each column.
    A taller input leaves two rows, squeeze keeps them, and the permute breaks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, (8, 3), padding=(0, 1))
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).squeeze(2).permute(0, 2, 1))


@pytest.mark.parametrize("height", [8, 9])
def test_squeeze_of_a_spatial_dim_holds_exactly_where_the_dim_is_one(height: int) -> None:
    model = LineReader().eval()
    report = shapetrace.analyze(model, f"1x1x{height}x10")
    assert report.domain is not None
    if height == 9:
        # Analysed where it breaks: the graph after the kept row is not followed, and the
        # domain says it is not exact rather than accepting every taller input.
        assert report.failure is not None and report.failure.node == "permute"
        assert any(b["kind"] == "inexact" for b in report.domain["bounds"])
        return
    assert report.domain["H"] == [[8, 8]] and report.domain["W"] == [[1, None]]
    assert_domain_matches(model.to("meta"), report, range(1, 41), (1, None, 5))
    assert report.node("fc").shape_formula == ["N", "W", "5"]


class FirstRow(nn.Module):
    """`unbind(2)[1]`: the second row of the map only; a model unpacking every row
    (`top, bottom = x.unbind(2)`) needs exactly that many, one reading a single row does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row = self.conv(x).unbind(2)[1]
        return row * 2


class TwoRows(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self.conv(x).unbind(2)
        return top + bottom


def test_unbind_read_by_index_needs_only_the_pieces_read() -> None:
    report = shapetrace.analyze(FirstRow(), "1x1x10x10")
    assert report.domain is not None
    assert report.domain["H"] == [[4, None]] and report.domain["W"] == [[3, None]]
    assert_domain_matches(FirstRow().to("meta"), report, range(1, 31), (1, 2, None))
    two = shapetrace.analyze(TwoRows(), "1x1x4x10")
    assert two.domain is not None
    assert two.domain["H"] == [[4, 4]] and two.domain["W"] == [[3, None]]
    assert_domain_matches(TwoRows().to("meta"), two, range(1, 31), (1, 2, None))


class Ranged(nn.Module):
    """Index tensors from `arange`, bounds given by name and positionally."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        cols = torch.arange(start=1, end=y.shape[-1], device=y.device)
        rows = torch.arange(0, y.shape[-2], 2, device=y.device)
        return y.index_select(3, cols).index_select(2, rows)


def test_arange_bounds_by_name_or_position() -> None:
    report = exact(Ranged(), "1x1x12x12", 30, (1, 2, None, None))
    assert report.domain is not None
    assert report.domain["H"] == [[3, None]] and report.domain["W"] == [[3, None]]
    assert report.node("index_select_1").shape_formula == ["N", "2", "ceil(H/2) - 1", "W - 3"]


class FloatRange(nn.Module):
    """`arange(1.5, w)`: a float start counts differently from an integer one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[..., 1:] + torch.arange(1.5, y.shape[-1], device=y.device)


def test_arange_with_a_float_bound_claims_no_sizes_it_cannot_count() -> None:
    import shapetrace

    report = shapetrace.analyze(FloatRange(), "1x1x12x12")
    assert report.failure is None and report.node("arange").shape == [9]
    assert report.domain is not None
    # The analysed size ran, so it is accepted; the others are not claimed either way.
    assert report.domain["W"] == [[12, 12]] and report.domain["H"] == [[12, 12]]
    assert [e["node"] for e in report.domain["open"]] == ["arange"]
