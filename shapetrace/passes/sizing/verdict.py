"""The verdict in plain words: what limits the input size, the sizes accepted, and the fix,
recognised from the graph's types and ops (a fixed pool or a hard-coded view before a Linear,
a fixed-size positional embedding)."""

from __future__ import annotations

from torch import fx, nn

from shapetrace import ops
from shapetrace.ops import Family
from shapetrace.passes.shapes import describe_module, op_label
from shapetrace.passes.sizing.domain import SizeAnalysis
from shapetrace.passes.sizing.expr import Evaluator, Poly, Unknown
from shapetrace.passes.sizing.tensors import BATCH, KIND_TEXT, Constraint, STensor, flat_args
from shapetrace.report import Failure

_FIXED_POOLS = ("max_pool", "avg_pool")  # registry ops an adaptive pool can replace
# Families that keep a tensor's last dim, through which a map reaches a Linear.
_KEEP_FEATURES = (Family.IDENTITY, Family.DROPOUT, Family.ELEMENTWISE)


class Verdict:
    """The answer in plain words: what limits the input size, the sizes accepted, the fix."""

    def __init__(self, analysis: SizeAnalysis, aligned: dict[str, int] | None = None) -> None:
        self.a = analysis
        self.aligned = aligned or {}
        self.prop = analysis.prop
        self.capture = analysis.context.capture
        self.gm = self.capture.graph_module
        self.ref = Evaluator(analysis.reference)

    # -- naming --------------------------------------------------------------------------
    def name(self, node: fx.Node) -> str:
        return self.prop.names.get(node, node.name)

    def alias(self, node: fx.Node) -> str:
        """The outermost module whose output is this node (`layer_5`), else the node's name."""
        paths = [p for p, out in self.capture.module_outputs.items() if out is node and p]
        return min(paths, key=lambda p: (p.count("."), len(p))) if paths else self.name(node)

    def module(self, node: fx.Node) -> nn.Module | None:
        if node.op == "call_module":
            return self.capture.module_of(node)
        return None

    # -- graph patterns ------------------------------------------------------------------
    def map_before(self, node: fx.Node) -> fx.Node | None:
        """The last spatial map on the way into `node` (what a flatten or view consumed)."""
        current: fx.Node | None = node
        for _ in range(64):
            if current is None:
                return None
            inputs = [
                n for n in current.all_input_nodes if isinstance(self.prop.values.get(n), STensor)
            ]
            if not inputs:
                return None
            # Follow the varying operand (not a parameter added to it).
            varying = [
                n for n in inputs if any(d.vars - {BATCH} for d in self.prop.values[n].shape)
            ]
            current = (varying or inputs)[0]
            value = self.prop.values[current]
            spatial = [
                d
                for d, ax in zip(value.shape, value.axes, strict=True)
                if ax is not None and "," not in ax
            ]
            if len(spatial) == len(self.a.axes) and any(d.vars - {BATCH} for d in spatial):
                return current
        return None

    def op(self, node: fx.Node) -> ops.Op | None:
        """The node's registry entry."""
        if node.op not in ("call_module", "call_function", "call_method"):
            return None
        return ops.lookup(node, self.gm)

    def is_fixed_pool(self, node: fx.Node) -> bool:
        op = self.op(node)
        return op is not None and op.name in _FIXED_POOLS

    def is_linear(self, node: fx.Node) -> bool:
        op = self.op(node)
        return op is not None and op.family is Family.LINEAR

    def spatial(self, node: fx.Node) -> list[tuple[str, Poly]]:
        value = self.prop.values.get(node)
        if not isinstance(value, STensor):
            return []
        return [
            (ax, d)
            for ax, d in zip(value.axes, value.shape, strict=True)
            if ax is not None and "," not in ax
        ]

    def size_at_ref(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.ref.poly(d) for _, d in self.spatial(node))

    def size_over_domain(self, node: fx.Node) -> str:
        """`7x7` when the map has one size at every accepted input, else its ranges."""
        parts = []
        ranged = False
        for axis, dim in self.spatial(node):
            solver = self.a.solvers.get(axis)
            if solver is None or self.a.possible[axis].is_empty():
                return "x".join(str(v) for v in self.size_at_ref(node))
            values = sorted({solver.value(dim, n) for n in self.a.samples(axis)})
            unbounded = any(hi is None for _, hi, _ in self.a.possible[axis].segments())
            ranged = ranged or len(values) > 1
            if unbounded and len(values) > 1:
                parts.append(f"{values[0]} or more")
            elif len(values) == 1:
                parts.append(str(values[0]))
            else:
                parts.append(f"{values[0]} to {values[-1]}")
        # `7x7`; a size that varies is spelled out: `(2 or more) x 8`.
        if not ranged:
            return "x".join(parts)
        return " x ".join(f"({p})" if " " in p else p for p in parts)

    # -- sentences -----------------------------------------------------------------------
    def accepts(self) -> str:
        axes = self.a.axes
        texts = {a: _set_text(self.a.sets[a].segments()) for a in axes}
        if len(set(texts.values())) == 1:
            text = texts[axes[0]]
            if text == "none":
                return "accepts no size"
            every = "every " if text.startswith(">=") else ""
            return f"accepts {every}{', '.join(axes)} {text}"
        return "accepts " + " and ".join(f"{a} {t}" for a, t in texts.items())

    def reasons(self) -> tuple[list[str], list[str]]:
        """One sentence per recognised cause, and the fixes, first the ones breaking now."""
        failing = self.a.first_failure(self.a.env0)
        binding = [c for c in self.a.constraints if c.binding and c.vars & set(self.a.axes)]
        binding.sort(
            key=lambda c: c is not failing and c.node is not getattr(failing, "node", None)
        )
        reasons: list[str] = []
        fixes: list[str] = []
        seen: set[tuple[fx.Node, str]] = set()
        asserts = [c for c in binding if c.kind == "assert"]
        if asserts:
            checks = " and ".join(dict.fromkeys(f"{c.lhs} {c.rel} {c.rhs}" for c in asserts))
            reasons.append(f"torch._assert at {self.name(asserts[0].node)} requires {checks}")
            fixes.append("relax the size checks in torch._assert")
        for c in binding:
            key = (c.node, c.kind)
            if key in seen or c.kind in ("assert", "min", "merge", "stats"):
                continue
            seen.add(key)
            found = self.explain(c)
            if found is not None and found[0] not in reasons:
                reason, fix = found
                reasons.append(reason)
                if fix and fix not in fixes:
                    fixes.append(fix)
            if len(reasons) >= 3:
                break
        return reasons, fixes

    def limits(self) -> str | None:
        """What sets the edges of the domain, when no recognised pattern does."""
        for axis in self.a.axes:
            segments = self.a.sets[axis].segments()
            if not segments:
                continue
            lo, hi, step = segments[0]
            probe = lo - 1 if lo > 1 else hi + 1 if hi is not None and step == 1 else None
            if step > 1:
                probe = lo + 1
            if probe is None:
                continue
            # Named by a bound node where one rejects the size too (not one it implies).
            c = self.a.why(axis, probe, bound=True) or self.a.why(axis, probe)
            if c is None:
                continue
            message = self.a.message(c, self.a.env_at(axis, probe))
            what = "The smallest size is" if probe < lo else "The accepted sizes are"
            return f"{what} set by {message} at {axis} = {probe}"
        return None

    def explain(self, c: Constraint) -> tuple[str, str] | None:
        node = c.node
        name = self.name(node)
        if c.kind == "features":
            target = c.rhs.const if c.rhs.is_const else c.rhs
            where = self.map_before(node)
            if where is None:
                return f"{name} expects {target} features", ""
            if self.is_fixed_pool(where) and where.all_input_nodes:
                source = where.all_input_nodes[0]
                return (
                    f"{name} expects {target} features, which arrive only when "
                    f"{self.alias(source)} is {self.size_over_domain(source)}",
                    self.pool_fix(where),
                )
            size = self.size_at_ref(where)
            return (
                f"{name} expects {target} features, which arrive only when {self.alias(where)} "
                f"is {self.size_over_domain(where)}",
                f"put {self.adaptive(size)} before the flatten into {name}",
            )
        op = self.op(node)
        if c.kind in ("view", "batch") and op is not None and op.family is Family.RESHAPE:
            where = self.map_before(node)
            call = self.call_text(node)
            if where is None:
                return f"{name} hard-codes {call}", ""
            size = self.size_at_ref(where)
            fix = ""
            if self.feeds_linear(node):
                fix = (
                    f"replace {call} with torch.flatten(x, 1) and put {self.adaptive(size)} "
                    "before it"
                )
            return (
                f"{name} hard-codes {call}, which fits only when {self.alias(where)} is "
                f"{self.size_over_domain(where)}",
                fix,
            )
        if c.pattern == "posembed":
            param = self.param_of(node)
            label = param or "a fixed-size table"
            where = self.map_before(node)
            fits = (
                (f", which fits only when {self.alias(where)} is {self.size_over_domain(where)}")
                if where is not None
                else ""
            )
            return (
                f"{name} adds a fixed-size positional embedding ({label}){fits}",
                f"interpolate {label} to the input's token grid (as timm's "
                "resample_abs_pos_embed does)",
            )
        # Its message in numbers where it fails (at the reference it holds: `196 vs 196`).
        env = self.failing(c)
        if env is None:
            return None
        text = self.a.message(c, env) or f"{name}: {KIND_TEXT[c.kind]}"
        moved = [f"{a} = {env[a]}" for a in self.a.axes if env[a] != self.a.reference[a]]
        return text + (f" at {', '.join(moved)}" if moved else ""), ""

    def failing(self, c: Constraint) -> dict[str, int] | None:
        """Sizes where `c` fails: the reference, else an edge of the domain."""
        envs = [self.a.reference]
        for axis in self.a.axes:
            for lo, hi, step in self.a.possible[axis].segments():
                probes = [lo - 1, lo + 1] if step > 1 else [lo - 1]
                probes += [hi + 1] if hi is not None else []
                envs += [self.a.env_at(axis, n) for n in probes if n >= 1]
        failing = []
        for env in envs:
            try:
                if not c.holds(Evaluator(env)):
                    failing.append(env)
            except Unknown:
                continue
        # Best where it is what breaks first (not a map an earlier layer already emptied).
        first = [env for env in failing if self.a.first_failure(env) is c]
        found = first or failing
        return found[0] if found else None

    def pool_fix(self, pool: fx.Node) -> str:
        module = self.module(pool)
        size = self.size_at_ref(pool)
        if module is not None:
            path = str(pool.target)
            return f"replace {path} = {describe_module(module)} with {self.adaptive(size)}"
        return (
            f"replace {op_label(pool)} at {self.name(pool)} with "
            f"adaptive_{op_label(pool).replace('max_', 'max_').split('_pool')[0]}"
            f"_pool{len(size)}d(x, {size if len(size) > 1 else size[0]})"
        )

    def adaptive(self, size: tuple[int, ...]) -> str:
        rank = len(size)
        if rank == 1:
            return f"AdaptiveAvgPool1d({size[0]})"
        return f"AdaptiveAvgPool{rank}d({size})"

    def call_text(self, node: fx.Node) -> str:
        """`view(-1, 400)`, `reshape(N, 8, 8, 7, 7, 64)`: sizes by their formulas."""
        args = []
        for arg in node.args[1:]:
            for a in arg if isinstance(arg, (list, tuple)) else [arg]:
                value = self.prop.values.get(a) if isinstance(a, fx.Node) else a
                args.append(value.key if isinstance(value, Poly) else repr(value))
        return f"{op_label(node)}({', '.join(args)})"

    def feeds_linear(self, node: fx.Node) -> bool:
        """Does this node reach a Linear through ops that keep the last dim?"""
        frontier, seen = [node], {node}
        while frontier:
            current = frontier.pop()
            for user in current.users:
                if user in seen:
                    continue
                seen.add(user)
                if self.is_linear(user):
                    return True
                op = self.op(user)
                if op is not None and (
                    op.family in _KEEP_FEATURES or op.name in ("flatten", "view")
                ):
                    frontier.append(user)
        return False

    def param_of(self, node: fx.Node) -> str | None:
        for n in node.all_input_nodes:
            value = self.prop.values.get(n)
            if isinstance(value, STensor) and value.param is not None:
                return str(value.param.target)
        if node.op == "call_module":
            return f"{node.target}.weight"
        return None

    def free(self) -> str:
        """What makes a model without limits accept every size."""
        for node in self.gm.graph.nodes:
            module = self.module(node)
            if not self.is_linear(node):
                continue
            path = self.path_to_map(node)
            if len(path) < 2:
                continue
            reducer = path[-2]
            features = module.in_features if isinstance(module, nn.Linear) else "its"
            return (
                f"Fully convolutional up to {self.alias(reducer)}; {self.reducer_text(reducer)} "
                f"gives {self.name(node)} {features} features at any size"
            )
        output = flat_args(self.prop.output)
        if any(ax is not None for t in output for ax in t.axes):
            return "No layer fixes the input size; the output scales with it"
        return "No layer fixes the input size"

    def path_to_map(self, node: fx.Node) -> list[fx.Node]:
        """The nodes from `node`'s input back to (and including) the last spatial map."""
        where = self.map_before(node)
        if where is None:
            return []
        path: list[fx.Node] = []
        current = node
        while current is not where and len(path) < 64:
            inputs = [
                n for n in current.all_input_nodes if isinstance(self.prop.values.get(n), STensor)
            ]
            if not inputs:
                return []
            varying = [
                n for n in inputs if any(d.vars - {BATCH} for d in self.prop.values[n].shape)
            ]
            current = (varying or inputs)[0]
            path.append(current)
        return path

    def reducer_text(self, node: fx.Node) -> str:
        module = self.module(node)
        size = self.size_at_ref(node)
        shown = size if len(size) > 1 else size[0] if size else ""
        if module is not None:
            return f"{type(module).__name__}({shown})"
        label = op_label(node)
        op = self.op(node)
        if op is not None and op.family is Family.ADAPTIVE:
            return f"{label}(x, {shown})"
        return f"{label} over {', '.join(self.a.axes)}"

    def alignment(self) -> str | None:
        """Advice on the sizes at which every feature map divides evenly."""
        axes = [a for a in self.a.axes if self.aligned.get(a, 1) > 1]
        if not axes:
            return None
        multiples = {self.aligned[a] for a in axes}
        if len(multiples) == 1:
            (m,) = multiples
            names = " and ".join(axes) if len(axes) > 1 else axes[0]
            verb = "are multiples" if len(axes) > 1 else "is a multiple"
            text = f"Feature maps divide evenly when {names} {verb} of {m}"
        else:
            each = [f"{a} of {self.aligned[a]}" for a in axes]
            text = (
                f"Feature maps divide evenly when {each[0].replace(' of ', ' is a multiple of ')}"
            )
            text += "".join(f" and {e}" for e in each[1:])
        return text + self.aligned_accepted(axes) + "."

    def aligned_accepted(self, axes: list[str]) -> str:
        """`; of the accepted sizes, only 224 is` when the domain is a short finite list."""
        if any(b["kind"] == "coupled" for b in self.a.bounds()):
            return ""  # the per-axis sets hold at the reference size only
        found: set[tuple[int, ...]] = set()
        for axis in axes:
            m, sizes = self.aligned[axis], []
            for lo, hi, step in self.a.sets[axis].segments():
                if hi is None or hi - lo > 4096:
                    return ""
                sizes += [n for n in range(lo, hi + 1, step) if n % m == 0]
            found.add(tuple(sizes))
        if len(found) != 1:
            return ""
        (values,) = found
        if not values:
            return "; no accepted size is"
        if len(values) > 3:
            return ""
        shown = " and ".join(str(v) for v in values)
        return f"; of the accepted sizes, only {shown} {'is' if len(values) == 1 else 'are'}"

    def coupling(self) -> str:
        """What the first coupled bound admits, when it is short to say."""
        coupled = [b for b in self.a.bounds() if b["kind"] == "coupled"]
        first = coupled[0]
        combos = first.get("combinations") or []
        axes = first["axis"].split(",")
        lead = f"{first['node']} couples {' and '.join(axes)}"
        more = " (and more; see the domain's bounds)" if len(coupled) > 1 else ""
        if combos and len(combos) <= 12 and all("map" in c for c in combos):
            maps = ", ".join("x".join(str(v) for v in c["map"]) for c in combos)
            return f"{lead}: maps {maps} fit{more}."
        if combos and len(combos) <= 3:
            pairs = "; ".join(
                " with ".join(
                    f"{a} {_set_text([(s[0], s[1], s[2] if len(s) > 2 else 1) for s in c[a]])}"
                    for a in axes
                )
                for c in combos
            )
            return f"{lead}: it accepts {pairs}{more}."
        return "Some sizes couple the axes; see the domain's bounds."

    def unknown(self) -> str:
        """The domain where a call without a size rule, or a capture's guard, leaves it open:
        the sizes proven (the analysed size, if it ran, when an op has no rule), then what is
        unknown and why, then what the known rules and checks still exclude."""
        axes = self.a.axes
        at = "x".join(str(self.a.reference[a]) for a in axes)
        ran = all(not self.a.sets[a].is_empty() for a in axes)
        single = all(self.a.sets[a].segments() == [(self.a.reference[a],) * 2 + (1,)] for a in axes)
        if single or not ran:
            lead = f"Accepts {at}" if ran else f"No size is known to be accepted ({at} is not)"
        else:
            lead = f"A{self.accepts()[1:]} (each axis with the others at {at})"
        by_op: dict[str, list[str]] = {}
        by_line: dict[str, list[str]] = {}
        causes = []
        for entry in self.a.open:
            op = entry.get("op")
            if "guard" in entry:
                site = self.a.guard_sites.get(entry["guard"], entry["node"] or "?")
                by_line.setdefault(site, []).append(entry["guard"])
            elif op is None:
                node = entry["node"]
                causes.append(f"{node} has {entry['reason']}" if node else entry["reason"])
            else:
                by_op.setdefault(op, []).append(entry["node"])
        if by_line:
            sites = ", ".join(by_line)
            count = sum(len(g) for g in by_line.values())
            guards = "its guard" if count == 1 else f"its {count} guards"
            causes.insert(
                0,
                f"the captured graph is the model's only where {guards} at {sites} "
                f"{'holds' if count == 1 else 'hold'} (see the domain's open)",
            )
        for op, nodes in by_op.items():
            if len(nodes) > 1:
                causes.append(f"{op} ({len(nodes)} nodes, first {nodes[0]}) has no size rule")
            else:
                causes.append(f"{nodes[0]}{f' ({op})' if op != nodes[0] else ''} has no size rule")
        more = f" and {len(causes) - 3} more" if len(causes) > 3 else ""
        text = f"{lead}; beyond it unknown: {', '.join(causes[:3])}{more}."
        texts = {a: _set_text(self.a.possible[a].segments()) for a in axes}
        if any(t != ">= 1" for t in texts.values()):
            known = " and ".join(f"{a} {t}" for a, t in texts.items())
            if len(set(texts.values())) == 1:
                known = f"{', '.join(axes)} {texts[axes[0]]}"
            who = "The known size rules and checks" if by_line else "The ops with size rules"
            text += f" {who} allow at most {known}."
        return text

    def text(self, report_failure: Failure | None) -> str:
        parts: list[str] = []
        if report_failure is not None:
            size = "x".join(str(self.a.env0[a]) for a in self.a.axes) or "this input"
            message = report_failure.message
            parts.append(f"Breaks at {size}: {message}{'' if message[-1:] in '.!?' else '.'}")
        if not self.a.axes:
            parts.append("The input has no spatial axes, so its size is fixed by the first layer.")
            return " ".join(parts)
        if self.a.open:
            parts.append(self.unknown())
            return " ".join(parts)
        reasons, fixes = self.reasons()
        everything = all(self.a.sets[a].segments() == [(1, None, 1)] for a in self.a.axes)
        constant = self.a.first_failure(self.a.reference)
        if constant is not None and not (constant.vars - {BATCH}):
            # A break no input size avoids (wrong channels, a fixed mismatch).
            message = self.a.message(constant, self.a.reference)
            batch = f" at N = {self.a.reference[BATCH]}" if BATCH in constant.vars else ""
            if report_failure is not None and message == report_failure.message:
                parts.append(f"No input size avoids it{batch}.")
            else:
                parts.append(f"No input size avoids it{batch}: {message}.")
            if constant.kind == "batch" and op_label(constant.node) == "squeeze":
                parts.append("Fix: squeeze the dims by index (squeeze(-1)) or flatten(1).")
            return " ".join(parts)
        if reasons:
            lead = "; ".join(reasons)
        elif everything:
            lead = self.free()
        else:
            lead = self.limits() or "The input size is limited"
        parts.append(f"{lead}: {self.accepts()}.")
        if fixes:
            parts.append("Fix: " + "; ".join(fixes) + ".")
        advice = self.alignment()
        if advice:
            parts.append(advice)
        kinds = {b["kind"] for b in self.a.bounds()}
        if "coupled" in kinds:
            parts.append(self.coupling())
        if "periodic" in kinds:
            parts.append("Only some sizes in a period are accepted; see the domain's bounds.")
        return " ".join(parts)


def _set_text(segments: list[tuple[int, int | None, int]]) -> str:
    if not segments:
        return "none"
    if len(segments) == 1:
        lo, hi, step = segments[0]
        if step == 1:
            return f">= {lo}" if hi is None else f"= {lo}" if lo == hi else f"in [{lo}, {hi}]"
    parts = []
    for lo, hi, step in segments[:6]:
        if step > 1:
            tail = "..." if hi is None else f"..., {hi}"
            parts.append(f"{{{lo}, {lo + step}, {tail}}}")
        else:
            parts.append(f"[{lo}, {'inf' if hi is None else hi}]" if hi != lo else f"{{{lo}}}")
    more = " or more" if len(segments) > 6 else ""
    return "in " + " or ".join(parts) + more
