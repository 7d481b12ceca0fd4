"""Random small conv nets (hypothesis): shapetrace's shapes equal a real eager forward, its
parameter totals equal numel sums, and a break lands where the eager run breaks."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import shapetrace


class RandomNet(nn.Module):
    """A chain of conv / pool stages, each optionally residual or concatenated with a branch."""

    def __init__(self, stages: list[dict], in_channels: int = 3) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        self.kinds = []
        channels = in_channels
        for spec in stages:
            if spec["op"] == "conv":
                layer: nn.Module = nn.Conv2d(
                    channels,
                    spec["out"],
                    spec["k"],
                    stride=spec["s"],
                    padding=spec["p"],
                    dilation=spec["d"],
                )
                out = spec["out"]
            elif spec["op"] == "maxpool":
                layer = nn.MaxPool2d(
                    spec["k"], stride=spec["s"], padding=min(spec["p"], spec["k"] // 2)
                )
                out = channels
            else:
                layer = nn.AvgPool2d(spec["k"], stride=spec["s"], ceil_mode=spec["ceil"])
                out = channels
            self.stages.append(layer)
            merge = spec["merge"]
            if merge == "add":
                self.stages.append(nn.Conv2d(channels, out, 1, stride=1))
            elif merge == "cat":
                self.stages.append(nn.Conv2d(channels, 2, 3, padding=1))
                out += 2
            else:
                self.stages.append(nn.Identity())
            self.kinds.append(merge)
            channels = out
        self.head = nn.Linear(channels, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, merge in enumerate(self.kinds):
            main, side = self.stages[2 * i], self.stages[2 * i + 1]
            y = main(x)
            if merge == "add":
                # The shortcut is resized to the main path, as a strided projection would be.
                y = y + nn.functional.adaptive_avg_pool2d(side(x), y.shape[-2:])
            elif merge == "cat":
                y = torch.cat([y, nn.functional.adaptive_max_pool2d(side(x), y.shape[-2:])], 1)
            x = torch.relu(y)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


stage = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["conv", "conv", "maxpool", "avgpool"]),
        "out": st.integers(1, 6),
        "k": st.integers(1, 5),
        "s": st.integers(1, 3),
        "p": st.integers(0, 2),
        "d": st.integers(1, 2),
        "ceil": st.booleans(),
        "merge": st.sampled_from(["none", "add", "cat"]),
    }
)


def _eager(model: nn.Module, shape: tuple[int, ...]) -> tuple[dict[str, list[int]], str | None]:
    shapes: dict[str, list[int]] = {}
    names = {m: n for n, m in model.named_modules()}

    def record(module: nn.Module, args: object, out: torch.Tensor) -> None:
        shapes.setdefault(names[module], list(out.shape))

    hooks = [
        m.register_forward_hook(record)
        for m in model.modules()
        if m is not model and not isinstance(m, nn.ModuleList)
    ]
    error = None
    try:
        with torch.no_grad():
            model(torch.randn(shape))
    except RuntimeError as exc:
        error = str(exc)
    for hook in hooks:
        hook.remove()
    return shapes, error


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stages=st.lists(stage, min_size=1, max_size=5), size=st.integers(4, 40))
def test_random_conv_nets_match_a_real_forward(stages: list[dict], size: int) -> None:
    model = RandomNet(stages).eval()
    report = shapetrace.analyze(model, f"1x3x{size}x{size}")
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    eager, error = _eager(model, (1, 3, size, size))
    ours = {n.target: n.shape for n in report.nodes if n.op == "call_module"}
    if error is None:
        assert report.failure is None
        assert ours == eager
    else:
        # The break is reported at the first module whose real call did not complete.
        assert report.failure is not None
        reached = {k: v for k, v in ours.items() if v is not None}
        assert reached == {k: eager[k] for k in reached}
        assert report.failure.node not in eager or report.failure.node == "head"
