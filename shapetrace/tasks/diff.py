"""Structural diff of two reports: two models, or one model at two input sizes.

The node sequences are aligned by an optimal weighted alignment (a longest-common-subsequence
DP): two nodes may pair only when their op types are equal, and a pair scores more when the
shapes, the names or module paths, and the parameter counts agree too. Between two aligned
pairs, leftover nodes of equal shape and parameter count pair up as a change of type (a fixed
pool where the other has an adaptive one). Nothing here knows any architecture by name: the
notable differences are counted from the graphs (op types present in one only, where the
spatial size is reduced inside repeated blocks, what the shortcut of each residual merge holds,
modules called from several sites, how shapes scale). Pure data: torch is imported only by
`diff_models`, which analyses the two models first.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from fractions import Fraction
from typing import Any

from shapetrace.domain import domain_text
from shapetrace.report import Node, Report, format_shape

# Above this many DP cells the alignment falls back to difflib on (type, shape) tokens.
_DP_LIMIT = 16_000_000


@dataclass
class NodeDiff:
    """One row of the alignment: a pair of nodes, or a node present on one side only."""

    status: str  # "aligned", "only_a" or "only_b"
    changes: list[str]  # for aligned rows, any of "type", "shape", "params"
    a: str | None
    b: str | None
    type_a: str | None = None
    type_b: str | None = None
    shape_a: Any = None
    shape_b: Any = None
    params_a: int | None = None
    params_b: int | None = None
    macs_a: int | None = None
    macs_b: int | None = None
    factor: str | None = None  # how the shape scales from A to B, e.g. "x2 on dims 2, 3"

    @property
    def same(self) -> bool:
        return self.status == "aligned" and not self.changes


@dataclass
class ModuleOnly:
    """A called module none of whose nodes aligned with the other side."""

    path: str
    type: str
    params: int


@dataclass
class DiffResult:
    """Everything `shapetrace diff` shows; plain data, JSON-serialisable."""

    a: dict[str, Any]
    b: dict[str, Any]
    nodes: list[NodeDiff]
    modules_only_a: list[ModuleOnly]
    modules_only_b: list[ModuleOnly]
    totals: dict[str, list[Any]]
    notable: list[str]
    same: bool
    aligned: int = 0
    identical: int = 0

    @property
    def differences(self) -> list[NodeDiff]:
        """Rows that differ: changed pairs and nodes on one side only."""
        return [row for row in self.nodes if not row.same]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "same": self.same,
            "aligned": self.aligned,
            "identical": self.identical,
            "notable": self.notable,
            "totals": self.totals,
            "modules_only_a": [asdict(m) for m in self.modules_only_a],
            "modules_only_b": [asdict(m) for m in self.modules_only_b],
            "nodes": [asdict(n) for n in self.nodes],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# -- entry point ----------------------------------------------------------------------------


def diff_reports(a: Report, b: Report) -> DiffResult:
    """Align two reports by structure and collect where they differ."""
    seq_a, seq_b = _structural(a), _structural(b)
    pairs = _pair_leftovers(seq_a, seq_b, _align(a, b, seq_a, seq_b))
    rows = [
        _row(seq_a[i] if i is not None else None, seq_b[j] if j is not None else None)
        for i, j in pairs
    ]
    only_a, only_b = _modules_only(a, b, pairs, seq_a, seq_b)
    totals = _totals(a, b)
    same = (
        all(r.same for r in rows)
        and not only_a
        and not only_b
        and all(v[0] == v[1] for v in totals.values())
    )
    result = DiffResult(
        a=_side(a),
        b=_side(b),
        nodes=rows,
        modules_only_a=only_a,
        modules_only_b=only_b,
        totals=totals,
        notable=[],
        same=same,
        aligned=sum(r.status == "aligned" for r in rows),
        identical=sum(r.same for r in rows),
    )
    result.notable = _notable(a, b, seq_a, seq_b, rows, only_a, only_b)
    return result


def diff_models(
    model_a: Any,
    model_b: Any,
    input_a: Any = None,
    input_b: Any = None,
    *,
    model_args_a: dict[str, Any] | None = None,
    model_args_b: dict[str, Any] | None = None,
) -> DiffResult:
    """Analyse A and B (each anything `shapetrace.analyze` takes, at its own input and
    constructor arguments) and diff the two reports. Imports torch."""
    from shapetrace.analysis import analyze

    report_a = analyze(model_a, input_a, model_args=model_args_a)
    report_b = analyze(model_b, input_b, model_args=model_args_b)
    return diff_reports(report_a, report_b)


def _side(report: Report) -> dict[str, Any]:
    inputs = report.source.get("input") or ["x".join(map(str, report.input))]
    return {
        "model": report.model,
        "input": ", ".join(inputs),
        "failure": report.failure.message if report.failure else None,
    }


def _structural(report: Report) -> list[Node]:
    """Nodes that carry tensors (plus those not reached after a break): shape bookkeeping
    such as `size()` or integer arithmetic is left out of the alignment."""
    keep = []
    broken = False
    for node in report.nodes:
        if report.failure is not None and node.name == report.failure.node:
            broken = True
        if node.shape is not None or broken or node.op == "placeholder":
            keep.append(node)
    return keep


# -- alignment ------------------------------------------------------------------------------


def _score(a: Node, b: Node, merge: bool, place: int) -> int:
    """Weight of pairing two nodes of the same type. An equal shape or name outweighs one more
    pair of merely equal types (shapes agreeing on some dims count a little), merges (a
    residual add) weigh most, and the same rank among
    the ops of its type inside a repeated block (`place`) counts too, so blocks stay in
    register when one side has extra layers or moves its activations around."""
    score = (16 if merge else 4) + place
    if a.shape == b.shape:
        score += 6
    elif _flat(a.shape) and _flat(b.shape) and len(a.shape) == len(b.shape):
        score += min(2, sum(x == y for x, y in zip(a.shape[1:], b.shape[1:], strict=True)))
    if a.name == b.name or (a.module and a.module == b.module):
        score += 5
    if a.params == b.params:
        score += 1
    return score


def _align(
    a: Report, b: Report, seq_a: list[Node], seq_b: list[Node]
) -> list[tuple[int | None, int | None]]:
    n, m = len(seq_a), len(seq_b)
    if n * m > _DP_LIMIT:
        return _align_difflib(seq_a, seq_b)
    types: dict[str, int] = {}
    ta = [types.setdefault(x.type, len(types)) for x in seq_a]
    tb = [types.setdefault(x.type, len(types)) for x in seq_b]
    merge_a, merge_b = _merge_flags(seq_a), _merge_flags(seq_b)
    rank_a, rank_b = _block_ranks(a, seq_a), _block_ranks(b, seq_b)
    width = m + 1
    back = bytearray((n + 1) * width)  # 0: pair, 1: skip a node of A, 2: skip one of B
    prev = [0] * width
    for j in range(1, width):
        back[j] = 2
    for i in range(1, n + 1):
        cur = [0] * width
        back[i * width] = 1
        type_i, node_i, merge_i, rank_i = ta[i - 1], seq_a[i - 1], merge_a[i - 1], rank_a[i - 1]
        for j in range(1, width):
            best, move = prev[j], 1
            if cur[j - 1] > best:
                best, move = cur[j - 1], 2
            if tb[j - 1] == type_i:
                merge = merge_i and merge_b[j - 1]
                place = _place(rank_i, rank_b[j - 1])
                paired = prev[j - 1] + _score(node_i, seq_b[j - 1], merge, place)
                if paired > best:
                    best, move = paired, 0
            cur[j] = best
            back[i * width + j] = move
        prev = cur
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        move = back[i * width + j]
        if move == 0:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif move == 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    pairs.reverse()
    return pairs


def _place(a: tuple[int, int] | None, b: tuple[int, int] | None) -> int:
    """2 when two nodes hold the same rank among their block's ops of their type, counted
    from the block's start or from its end; 3 when both agree."""
    if a is None or b is None:
        return 0
    agree = (a[0] == b[0]) + (a[1] == b[1])
    return agree + 1 if agree else 0


def _block_ranks(report: Report, seq: list[Node]) -> list[tuple[int, int] | None]:
    """For nodes inside a repeated block: how many ops of their type precede and follow them
    in that block."""
    blocks = _repeated_blocks(report, seq)
    keys: list[tuple[str, str] | None] = []
    for node in seq:
        block = _block_of(node, blocks)
        keys.append((block, node.type) if block is not None else None)
    totals = Counter(k for k in keys if k is not None)
    seen: Counter[tuple[str, str]] = Counter()
    ranks: list[tuple[int, int] | None] = []
    for key in keys:
        if key is None:
            ranks.append(None)
            continue
        ranks.append((seen[key], totals[key] - seen[key] - 1))
        seen[key] += 1
    return ranks


def _merge_flags(seq: list[Node]) -> list[bool]:
    """Nodes (not module calls) that join two or more tensors of their own shape: the adds
    of residual blocks, not a squeeze-excitation's scaling."""
    shapes = {n.name: n.shape for n in seq}
    flags = []
    for n in seq:
        joined = [shapes[i] for i in n.inputs if i in shapes]
        flags.append(
            n.op not in ("call_module", "placeholder")
            and len(joined) >= 2
            and all(shape == n.shape for shape in joined)
        )
    return flags


def _align_difflib(seq_a: list[Node], seq_b: list[Node]) -> list[tuple[int | None, int | None]]:
    tokens_a = [(x.type, format_shape(x.shape)) for x in seq_a]
    tokens_b = [(x.type, format_shape(x.shape)) for x in seq_b]
    matcher = SequenceMatcher(None, tokens_a, tokens_b, autojunk=False)
    pairs: list[tuple[int | None, int | None]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs.extend(zip(range(i1, i2), range(j1, j2), strict=True))
        else:
            pairs.extend((i, None) for i in range(i1, i2))
            pairs.extend((None, j) for j in range(j1, j2))
    return pairs


def _pair_leftovers(
    seq_a: list[Node], seq_b: list[Node], pairs: list[tuple[int | None, int | None]]
) -> list[tuple[int | None, int | None]]:
    """Between two aligned pairs, pair the leftover nodes that agree in shape, parameters and
    kind of call (a change of type, such as one pool for another)."""
    out: list[tuple[int | None, int | None]] = []
    gap: list[tuple[int | None, int | None]] = []

    def flush() -> None:
        left = [i for i, _ in gap if i is not None]
        right = [j for _, j in gap if j is not None]
        key_a = [_leftover_key(seq_a[i]) for i in left]
        key_b = [_leftover_key(seq_b[j]) for j in right]
        matcher = SequenceMatcher(None, key_a, key_b, autojunk=False)
        ia = ib = 0
        for block in matcher.get_matching_blocks():
            out.extend((left[k], None) for k in range(ia, block.a))
            out.extend((None, right[k]) for k in range(ib, block.b))
            out.extend((left[block.a + k], right[block.b + k]) for k in range(block.size))
            ia, ib = block.a + block.size, block.b + block.size
        gap.clear()

    for pair in pairs:
        if pair[0] is not None and pair[1] is not None:
            flush()
            out.append(pair)
        else:
            gap.append(pair)
    flush()
    return out


def _leftover_key(node: Node) -> tuple[Any, ...]:
    kind = "module" if node.op == "call_module" else "function"
    return kind, format_shape(node.shape), node.params


def _row(a: Node | None, b: Node | None) -> NodeDiff:
    if a is None and b is not None:
        return NodeDiff(
            "only_b", [], None, b.name, None, b.type, None, b.shape, None, b.params, None, b.macs
        )
    if b is None and a is not None:
        return NodeDiff(
            "only_a", [], a.name, None, a.type, None, a.shape, None, a.params, None, a.macs, None
        )
    assert a is not None and b is not None
    changes = []
    if a.type != b.type:
        changes.append("type")
    if a.shape != b.shape:
        changes.append("shape")
    if a.params != b.params:
        changes.append("params")
    return NodeDiff(
        "aligned",
        changes,
        a.name,
        b.name,
        a.type,
        b.type,
        a.shape,
        b.shape,
        a.params,
        b.params,
        a.macs,
        b.macs,
        scale_factor(a.shape, b.shape),
    )


def scale_factor(shape_a: Any, shape_b: Any) -> str | None:
    """`x2 on dims 2, 3` when B's shape is A's with some dims scaled; None if not comparable."""
    if not _flat(shape_a) or not _flat(shape_b) or len(shape_a) != len(shape_b):
        return None
    if shape_a == shape_b:
        return None
    ratios: dict[Fraction, list[int]] = {}
    for dim, (x, y) in enumerate(zip(shape_a, shape_b, strict=True)):
        if x != y:
            if x == 0:
                return None
            ratios.setdefault(Fraction(y, x), []).append(dim)
    parts = [
        f"x{_ratio_text(r)} on dim{'s' if len(dims) > 1 else ''} {', '.join(map(str, dims))}"
        for r, dims in ratios.items()
    ]
    return "; ".join(parts)


def _ratio_text(ratio: Fraction) -> str:
    if ratio.denominator == 1:
        return str(ratio.numerator)
    return f"{float(ratio):.3g}"


def _flat(shape: Any) -> bool:
    return isinstance(shape, list) and all(isinstance(d, int) for d in shape)


# -- modules and totals ---------------------------------------------------------------------


def _modules_only(
    a: Report,
    b: Report,
    pairs: list[tuple[int | None, int | None]],
    seq_a: list[Node],
    seq_b: list[Node],
) -> tuple[list[ModuleOnly], list[ModuleOnly]]:
    """Called modules none of whose nodes found a partner, outermost only."""
    matched_a: set[str] = set()
    matched_b: set[str] = set()
    for i, j in pairs:
        if i is not None and j is not None:
            matched_a.update(_prefixes(seq_a[i].module))
            matched_b.update(_prefixes(seq_b[j].module))
    return _unmatched(a, matched_a), _unmatched(b, matched_b)


def _unmatched(report: Report, matched: set[str]) -> list[ModuleOnly]:
    used = set()
    for node in report.nodes:
        used.update(_prefixes(node.module))
    out: list[ModuleOnly] = []
    listed: set[str] = set()
    for module in report.modules:
        if module.path not in used or module.path in matched:
            continue
        if any(p in listed for p in _prefixes(module.path)[:-1]):
            continue
        listed.add(module.path)
        out.append(ModuleOnly(module.path, module.type, module.params))
    return out


def _prefixes(path: str | None) -> list[str]:
    if not path:
        return []
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _totals(a: Report, b: Report) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key in ("params", "macs", "flops", "peak_activation_bytes"):
        if key in a.totals or key in b.totals:
            out[key] = [a.totals.get(key), b.totals.get(key)]
    if a.domain is not None or b.domain is not None:
        out["domain"] = [domain_text(a), domain_text(b)]
    out["output"] = [_output_shape(a), _output_shape(b)]
    return out


def _output_shape(report: Report) -> Any:
    if report.failure is not None:
        return None
    for node in reversed(report.nodes):
        if node.shape is not None:
            return node.shape
    return None


# -- notable differences --------------------------------------------------------------------


def _notable(
    a: Report,
    b: Report,
    seq_a: list[Node],
    seq_b: list[Node],
    rows: list[NodeDiff],
    only_a: list[ModuleOnly],
    only_b: list[ModuleOnly],
) -> list[str]:
    lines: list[str] = []
    out_a, out_b = _output_shape(a), _output_shape(b)
    if out_a != out_b:
        lines.append(f"Output: {format_shape(out_a)} vs {format_shape(out_b)}")
    for report, label in ((a, "A"), (b, "B")):
        if report.failure is not None:
            lines.append(f"{label} breaks: {report.failure.message}")
    lines.extend(_type_counts(seq_a, seq_b))
    lines.extend(_type_changes(rows))
    lines.extend(_param_changes(rows))
    lines.extend(_shortcuts(seq_a, seq_b))
    lines.extend(_downsampling(a, seq_a, b, seq_b))
    lines.extend(_sharing(a, b))
    lines.extend(_dependence(a, b, rows, seq_a, seq_b))
    lines.extend(_shape_scaling(rows))
    return lines


def _type_counts(seq_a: list[Node], seq_b: list[Node]) -> list[str]:
    count_a = Counter(n.type for n in seq_a if n.op != "placeholder")
    count_b = Counter(n.type for n in seq_b if n.op != "placeholder")
    differing = [t for t in {**count_a, **count_b} if count_a[t] != count_b[t]]
    if not differing:
        return []
    differing.sort(key=lambda t: (-abs(count_a[t] - count_b[t]), t))
    text = ", ".join(f"{t} {count_a[t]} vs {count_b[t]}" for t in differing)
    return [f"Op counts that differ (A vs B): {text}"]


def _type_changes(rows: list[NodeDiff]) -> list[str]:
    changes = Counter(
        (r.type_a, r.type_b, r.a, r.b)
        for r in rows
        if r.status == "aligned" and "type" in r.changes
    )
    if not changes:
        return []
    text = ", ".join(f"{na} ({ta}) vs {nb} ({tb})" for (ta, tb, na, nb) in changes)
    return [f"Same place, other op: {text}"]


def _param_changes(rows: list[NodeDiff]) -> list[str]:
    changed = [r for r in rows if r.status == "aligned" and "params" in r.changes]
    if not changed:
        return []
    first = changed[0]
    return [
        f"Parameter counts differ at {len(changed)} aligned nodes "
        f"(e.g. {first.a} {first.params_a:,} vs {first.b} {first.params_b:,})"
    ]


# Residual merges and their shortcut branches.


@dataclass
class _Graph:
    nodes: dict[str, Node]
    order: dict[str, int]

    @classmethod
    def of(cls, seq: Iterable[Node]) -> _Graph:
        nodes = {n.name: n for n in seq}
        return cls(nodes, {name: i for i, name in enumerate(nodes)})

    def ancestors(self, start: str, limit: int = 400) -> dict[str, tuple[int, str | None]]:
        """Breadth-first distances back from `start`, with the node each was reached from."""
        seen: dict[str, tuple[int, str | None]] = {start: (0, None)}
        frontier = [start]
        while frontier and len(seen) < limit:
            nxt = []
            for name in frontier:
                node = self.nodes.get(name)
                for parent in node.inputs if node else []:
                    if parent in self.nodes and parent not in seen:
                        seen[parent] = (seen[name][0] + 1, name)
                        nxt.append(parent)
            frontier = nxt
        return seen

    def merges(self) -> list[tuple[Node, list[Node]]]:
        """Nodes merging two branches of their own shape, each with its shortcut: the nodes of
        the shorter branch back to where the branches fork."""
        out = []
        for node in self.nodes.values():
            if node.op in ("call_module", "placeholder", "get_attr"):
                continue
            inputs = [self.nodes[i] for i in node.inputs if i in self.nodes]
            if len(inputs) != 2 or any(i.shape != node.shape for i in inputs):
                continue
            first, second = (self.ancestors(i.name) for i in inputs)
            common = [x for x in first if x in second]
            if not common:
                continue
            fork = min(common, key=lambda x: max(first[x][0], second[x][0]))
            short = first if first[fork][0] <= second[fork][0] else second
            path: list[Node] = []
            step = short[fork][1]
            while step is not None:
                path.append(self.nodes[step])
                step = short[step][1]
            out.append((node, path))
        return out


def _shortcuts(seq_a: list[Node], seq_b: list[Node]) -> list[str]:
    summaries = []
    for seq in (seq_a, seq_b):
        merges = _Graph.of(seq).merges()
        weighted = [(m, path) for m, path in merges if any(n.params for n in path)]
        kinds = Counter(" + ".join(n.type for n in path if n.params) for _, path in weighted)
        summaries.append((len(merges), len(weighted), kinds))
    if summaries[0] == summaries[1] or not (summaries[0][0] or summaries[1][0]):
        return []
    parts = []
    for label, (total, with_params, kinds) in zip("AB", summaries, strict=True):
        what = ", ".join(f"{k} x{v}" for k, v in kinds.items())
        parts.append(f"{label} {with_params} of {total}" + (f" ({what})" if what else ""))
    return [f"Residual merges whose shortcut has a layer with parameters: {'; '.join(parts)}"]


# Where the spatial size shrinks, relative to repeated blocks.


def _downsampling(a: Report, seq_a: list[Node], b: Report, seq_b: list[Node]) -> list[str]:
    texts = [_downsampling_text(r, s) for r, s in ((a, seq_a), (b, seq_b))]
    if texts[0] == texts[1]:
        return []
    return [
        f"Spatial downsampling, {label}: {text}" for label, text in zip("AB", texts, strict=True)
    ]


def _downsampling_text(report: Report, seq: list[Node]) -> str:
    graph = _Graph.of(seq)
    shortcut_nodes = {n.name for _, path in graph.merges() for n in path}
    blocks = _repeated_blocks(report, seq)
    groups: dict[str, list[str]] = {}
    outside: list[str] = []
    for node in seq:
        if not _downsamples(node, graph):
            continue
        block = _block_of(node, blocks)
        if block is None:
            outside.append(f"{node.name} ({node.type})")
            continue
        container, position = blocks[block]
        members = [n for n in seq if n.module and (n.module + ".").startswith(block + ".")]
        if node.name in shortcut_nodes:
            role = f"the shortcut {node.type}"
        else:
            main = [n for n in members if n.type == node.type and n.name not in shortcut_nodes]
            index = main.index(node) + 1
            role = f"{_ordinal(index)} of {len(main)} {node.type}"
        kernel = _kernel_text(node, graph)
        if kernel:
            role += f" ({kernel})"
        groups.setdefault(f"{role} in the {position} block", []).append(container)
    parts = []
    if outside:
        parts.append("outside repeated blocks " + ", ".join(outside))
    parts.extend(f"{role} of {', '.join(where)}" for role, where in groups.items())
    return "; ".join(parts) if parts else "none"


def _downsamples(node: Node, graph: _Graph) -> bool:
    if not _flat(node.shape) or len(node.shape) < 4:  # (N, C, H, W) and deeper
        return False
    source = next((graph.nodes[i] for i in node.inputs if i in graph.nodes), None)
    if source is None or not _flat(source.shape) or len(source.shape) != len(node.shape):
        return False
    before, after = source.shape[2:], node.shape[2:]
    if all(d == 1 for d in after):  # global pooling is not a stride
        return False
    # Every spatial axis shrinks or stays, and at least two shrink when there are two or more
    # (a channels-last Linear changes only the last axis).
    shrunk = sum(y < x for x, y in zip(before, after, strict=True))
    grown = sum(y > x for x, y in zip(before, after, strict=True))
    return not grown and shrunk >= min(2, len(after))


def _kernel_text(node: Node, graph: _Graph) -> str | None:
    """`1x1`/`3x3` when a parameterised layer's count is exactly C_out x C_in x k x k
    (with or without a bias); None when that does not determine k."""
    source = next((graph.nodes[i] for i in node.inputs if i in graph.nodes), None)
    if not node.params or source is None or not _flat(source.shape) or len(node.shape) != 4:
        return None
    c_out, c_in = node.shape[1], source.shape[1]
    for bias in (0, c_out):
        area, rest = divmod(node.params - bias, c_out * c_in)
        k = round(area**0.5)
        if not rest and area and k * k == area:
            return f"{k}x{k}"
    return None


def _repeated_blocks(report: Report, seq: list[Node]) -> dict[str, tuple[str, str]]:
    """Residual blocks: numbered children of a container holding several, that contain a
    merge. Each maps to (container path, "first"/"last"/"k-th of n")."""
    with_merge: set[str] = set()
    for node, merge in zip(seq, _merge_flags(seq), strict=True):
        if merge:
            with_merge.update(_prefixes(node.module))
    children: dict[str, list[str]] = {}
    for module in report.modules:
        parent, _, leaf = module.path.rpartition(".")
        if leaf.isdigit():
            children.setdefault(parent, []).append(module.path)
    blocks: dict[str, tuple[str, str]] = {}
    for parent, paths in children.items():
        if len(paths) < 2 or not any(p in with_merge for p in paths):
            continue
        for k, path in enumerate(paths):
            position = (
                "first"
                if k == 0
                else "last"
                if k == len(paths) - 1
                else (f"{_ordinal(k + 1)} of {len(paths)}")
            )
            blocks[path] = (parent or "the model", position)
    return blocks


def _block_of(node: Node, blocks: dict[str, tuple[str, str]]) -> str | None:
    """The innermost repeated block around a node."""
    return next((p for p in reversed(_prefixes(node.module)) if p in blocks), None)


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


# Module objects reached from several call sites.


def _sharing(a: Report, b: Report) -> list[str]:
    texts = [_sharing_text(a), _sharing_text(b)]
    if texts[0] == texts[1]:
        return []
    return [
        f"Modules called more than once, {label}: {text}"
        for label, text in zip("AB", texts, strict=True)
    ]


def _sharing_text(report: Report) -> str:
    calls: dict[str, list[Node]] = {}
    for node in report.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    repeated = {t: ns for t, ns in calls.items() if len(ns) > 1}
    if not repeated:
        return "none"
    shared = {t: ns for t, ns in repeated.items() if len({n.module for n in ns}) > 1}
    reused = {t: ns for t, ns in repeated.items() if t not in shared}
    parts = []
    for target, nodes in sorted(shared.items(), key=lambda kv: -len(kv[1])):
        sites = sorted({n.module or "" for n in nodes})
        parts.append(
            f"{target} ({nodes[0].type}) is one object called from {len(sites)} sites "
            f"({sites[0]} ... {sites[-1]})"
        )
    if reused:
        by_count = Counter((ns[0].type, len(ns)) for ns in reused.values())
        for (kind, count), objects in by_count.items():
            example = next(t for t, ns in reused.items() if (ns[0].type, len(ns)) == (kind, count))
            parts.append(
                f"{objects} {kind} object{'s' if objects > 1 else ''} each called {count} times "
                f"by its owner (e.g. {example})"
            )
    return "; ".join(parts)


# Input-size dependence and shape scaling between aligned nodes.


def _dependence(
    a: Report, b: Report, rows: list[NodeDiff], seq_a: list[Node], seq_b: list[Node]
) -> list[str]:
    """Where one op stands in for another (a fixed pool for an adaptive one), whether its
    output follows the input size; and each side's verdict on input sizes, when known."""
    by_a = {n.name: n for n in seq_a}
    by_b = {n.name: n for n in seq_b}
    out = []
    for row in rows:
        if row.status != "aligned" or "type" not in row.changes or not row.a or not row.b:
            continue
        dep_a, dep_b = by_a[row.a].depends_on_input, by_b[row.b].depends_on_input
        if dep_a and dep_b and dep_a != dep_b:
            out.append(f"{row.a} ({row.type_a}) {dep_a} vs {row.b} ({row.type_b}) {dep_b}")
    lines = ["Output size vs input size (A vs B): " + "; ".join(out)] if out else []
    if a.verdict != b.verdict:
        lines.extend(
            f"Verdict {label}: {r.verdict}" for label, r in (("A", a), ("B", b)) if r.verdict
        )
    return lines


def _shape_scaling(rows: list[NodeDiff]) -> list[str]:
    aligned = [r for r in rows if r.status == "aligned"]
    changed = [r for r in aligned if "shape" in r.changes]
    scaled = [r for r in changed if r.factor]
    if not changed or len(changed) < len(aligned) // 2 or len(scaled) < len(changed) // 2:
        return []
    groups: dict[str, list[str]] = {}
    for row in changed:
        groups.setdefault(row.factor or "not comparable", []).append(row.a or "")
    fixed = [r.a or "" for r in aligned if "shape" not in r.changes]
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    parts = [
        f"{factor} at {len(names)} nodes ({names[0]} ... {names[-1]})"
        if len(names) > 1
        else f"{factor} at {names[0]}"
        for factor, names in ranked[:4]
    ]
    if len(ranked) > 4:
        parts.append(f"{len(ranked) - 4} other factors")
    lines = [
        f"Shapes change at {len(changed)} of {len(aligned)} aligned nodes: " + "; ".join(parts)
    ]
    if fixed:
        lines.append("Shapes unchanged: " + ", ".join(fixed))
    return lines
