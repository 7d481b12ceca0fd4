"""Regenerate the diagrams in docs/diagrams/ (SVG, plus the DOT source each was drawn from).

    python scripts/make_diagrams.py

Needs Graphviz's `dot` (apt-get install graphviz). tests/test_dot.py checks that the files in
docs/diagrams/ are what this command writes, so run it after changing the diagram or an analysis.
"""

from __future__ import annotations

import sys
from pathlib import Path

import graphviz

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "diagrams"

# file stem -> (model, input)
DIAGRAMS = {
    "resnet50_224": ("resnet50", "1x3x224x224"),
    "resnet50_448": ("resnet50", "1x3x448x448"),
    "codereview_resnet50_224": ("codereview_resnet50", "1x3x224x224"),
    "codereview_resnet50_448": ("codereview_resnet50", "1x3x448x448"),
    "stembodyhead_resnet50_224": ("stembodyhead_resnet50", "1x3x224x224"),
    "vit_b_16_224": ("vit_b_16", "1x3x224x224"),  # its size plumbing folded into edges
}


def diagrams() -> dict[str, graphviz.Digraph]:
    """Every diagram, at the default depth and in the light theme."""
    from shapetrace import analyze
    from shapetrace.views.dot import diagram

    return {stem: diagram(analyze(model, size)) for stem, (model, size) in DIAGRAMS.items()}


def main() -> None:
    from shapetrace.outputs import write_bytes, write_text
    from shapetrace.views.dot import render

    OUT.mkdir(parents=True, exist_ok=True)
    for stem, graph in diagrams().items():
        write_text(OUT / f"{stem}.dot", graph.source)
        write_bytes(OUT / f"{stem}.svg", render(graph, "svg"))
        print(f"wrote docs/diagrams/{stem}.svg")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing
    main()
