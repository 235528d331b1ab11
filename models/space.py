"""A graph search space: a `Graph` plus the width choices of each free channel group.

The single source of truth for every space (the shipped families and traced models): the torch
networks, the ONNX graph, the MACs and the factor structure (which op's latency depends on which groups) are all
derived from it. Its JSON form (format 'widthnas-graph/1') lists the ops and the groups; its
fingerprint, a hash of that JSON, is what every artefact records and every consumer checks.
Spaces traced from a user's model (models/trace.py) may also hold `ties` and `fixed_ops` (groups
given by hand) and `source` (the factory and, per conv/bn/linear op, the user's module path, so the
user's weights map back onto the ops); these keys are written only when present, so the built-in
spaces' JSON and fingerprints are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from .activations import FUSED
from .graph import Graph, GraphError, Group, Op

CHAIN_FORMAT = "widthnas-space/1"  # MobileNet-v1 spaces before they became graph spaces: refused, with what to do


class WidthError(ValueError):
    """A width configuration that does not fit the search space."""


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, int, int]:
    """'3,32,32' (C,H,W of one image) -> (3, 32, 32); anything else is refused with what to give."""
    try:
        shape = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input-shape {text!r}: give C,H,W of one image as three positive whole numbers, "
                         "e.g. 3,32,32")
    return shape


def width_choices(base: int, lo: float = 0.2, hi: float = 1.5, levels: int = 14, round_to: int = 8) -> tuple[int, ...]:
    """Multipliers lo..hi of `base` in `levels` steps, rounded to multiples of `round_to` (8 suits most
    vector units)."""
    mults = np.linspace(lo, hi, levels)
    rounded = {max(round_to, int(np.floor(base * m / round_to + 0.5)) * round_to) for m in mults}
    return tuple(sorted(rounded))


def block_round(base: int, blocks: int, round_to: int = 8) -> int:  # 8: ROUND_TO
    """What a group of `blocks` blocks rounds its widths to: multiples of lcm(round_to, blocks) when its base
    holds three of them, else multiples of `blocks` (a RegNet group of 3 blocks of 8: 8-multiples would leave it
    one width). Every width keeps the same channels in each block, so it is a multiple of the block count."""
    if blocks <= 1:
        return round_to
    lcm = round_to * blocks // math.gcd(round_to, blocks)
    return lcm if base >= 3 * lcm else blocks


def check_fingerprint(found: str, expected, what: str) -> None:
    """Refuse an artefact made for another search space."""
    if found != expected.fingerprint:
        raise ValueError(
            f"{what} was made for search space fingerprint {found}, but this space "
            f"({expected.name}, {expected.input_shape}) has {expected.fingerprint}; "
            "use the same --space (and input shape) that produced it, or regenerate it"
        )


FORMAT = "widthnas-graph/1"
ROUND_TO = 8  # free widths are multiples of 8: odd widths make onnxruntime CPU several times slower


class GroupSpec(NamedTuple):
    """One search variable (or a fixed channel count)."""

    name: str
    choices: tuple[int, ...]  # channels, ascending; one value for a fixed group
    base: int  # channels of the 1.0x network
    fixed: bool


class OpSignature(NamedTuple):
    """What an op's latency depends on besides its channels: latency tables are keyed by it."""

    kind: str  # conv, linear, add, maxpool, gap
    kernel: int
    stride: int
    groups: str  # "dense", "dw" (depthwise), "g<k>" (grouped, k groups), "none", or an unfused activation's name
    resolution: tuple[int, int]  # input (H, W), px
    op: str = ""  # a profile keyed per op (latency/entries.py KEYINGS): the op's name; else ""

    @property
    def grouped(self) -> bool:
        """A grouped conv: its work grows with the square of its channels (c * c / groups), not linearly."""
        return self.kind.startswith("conv") and self.groups.startswith("g")


@dataclass(frozen=True)
class OpFactor:
    """One costed op: a pairwise latency factor on (in_group, out_group), a unary when they coincide
    or one of them is fixed, a constant when both are fixed."""

    op: str
    signature: OpSignature
    in_group: str
    out_group: str
    out_size: tuple[int, int]  # output (H, W), px
    scope: tuple[str, ...]  # the free groups among (in_group, out_group), without repeats


@dataclass(frozen=True)
class FactorStructure:
    groups: tuple[GroupSpec, ...]  # every group, fixed ones included, in graph order
    factors: tuple[OpFactor, ...]  # every costed op in graph order (BN and activations fold/fuse into convs)


@dataclass(frozen=True)
class TraceSource:
    """Where a traced space came from: what maps a user's state_dict onto its ops."""

    factory: str  # "package.module:factory" as given to `widthnas space --from-model`
    modules: tuple[tuple[str, str], ...]  # (op name, the user's module path) for every conv, bn and linear op
    unused_keys: tuple[str, ...] = ()  # state_dict keys of layers the traced forward never calls (eval mode)

    def to_dict(self) -> dict:
        return {"factory": self.factory, "modules": dict(self.modules),
                **({"unused_keys": list(self.unused_keys)} if self.unused_keys else {})}

    @property
    def module_of(self) -> dict[str, str]:
        return dict(self.modules)


@dataclass(frozen=True)
class GraphSpace:
    """Ops and the width choices of every free group (`choices` maps group name -> ascending channels)."""

    name: str
    graph: Graph
    choices_by_group: tuple[tuple[str, tuple[int, ...]], ...]
    source: TraceSource | None = None  # traced spaces only

    @classmethod
    def from_graph(cls, name: str, graph: Graph, choices: Mapping[str, Sequence[int]] | None = None,
                   source: TraceSource | None = None) -> "GraphSpace":
        """Default choices: 0.2x-1.5x of each free group's base in 14 levels, multiples of 8 (as space.py)."""
        choices = dict(choices or {})
        whole = lambda c: tuple(int(x) if isinstance(x, numbers.Integral) else x for x in c)  # numpy ints too
        full = tuple((g.name, whole(choices.get(g.name, width_choices(
            g.base, round_to=block_round(g.base, graph.blocks.get(g.name, 1)))))) for g in graph.groups if not g.fixed)
        return cls(name, graph, full, source)

    def with_constraints(self, fixed: Sequence[str] = (), ties: Sequence[Sequence[str]] = ()) -> "GraphSpace":
        """The same ops with more groups given by hand: `fixed` ops' groups held at their base width,
        `ties` merging groups. A merged group keeps the choices of its earliest member group; one that now
        holds a grouped conv's blocks takes every multiple of its block_round step up to the widest of them."""
        graph = replace(self.graph, ties=self.graph.ties + tuple(tuple(t) for t in ties),
                        fixed=tuple(dict.fromkeys(self.graph.fixed + tuple(fixed))))
        choices = dict(self.choices_by_group)
        for g in graph.groups:
            b = graph.blocks.get(g.name, 1)
            if g.fixed or b == 1 or g.name not in choices or all(x % b == 0 for x in choices[g.name]):
                continue
            r, top = block_round(g.base, b), max(choices[g.name])
            choices[g.name] = tuple(sorted(set(range(r, top + 1, r)) | ({g.base} if g.base <= top else set())))
        return GraphSpace.from_graph(self.name, graph, choices, self.source)

    # ---- groups ------------------------------------------------------------------------
    @cached_property
    def groups(self) -> tuple[GroupSpec, ...]:
        ch = dict(self.choices_by_group)
        return tuple(GroupSpec(g.name, (g.base,) if g.fixed else ch[g.name], g.base, g.fixed)
                     for g in self.graph.groups)

    @cached_property
    def free_groups(self) -> tuple[GroupSpec, ...]:
        """The search variables, in graph order: widths given as a list follow this order."""
        return tuple(g for g in self.groups if not g.fixed)

    def group(self, name: str) -> Group:
        return next(g for g in self.graph.groups if g.name == name)

    def __post_init__(self) -> None:  # validated on construction
        derived = [g.name for g in self.graph.groups if not g.fixed]
        given = [n for n, _ in self.choices_by_group]
        if given != derived:
            extra, missing = sorted(set(given) - set(derived)), sorted(set(derived) - set(given))
            raise GraphError(f"space {self.name!r}: groups with choices {given} differ from the free groups the ops "
                             f"derive {derived} (not groups of the ops: {extra}; missing: {missing}); list every "
                             "free group once, in graph order")
        for n, c in self.choices_by_group:
            if not c or any(not isinstance(x, int) or isinstance(x, bool) for x in c):
                raise GraphError(f"group {n!r}: choices must be a non-empty list of whole channel counts, got {list(c)}")
            if list(c) != sorted(set(c)) or c[0] <= 0:
                raise GraphError(f"group {n!r}: choices must be positive, unique and ascending, got {list(c)}")
            base = self.group(n).base  # a traced model's own width may be any number: it is always allowed
            blocks = self.graph.blocks.get(n, 1)
            if blocks > 1 and any(x % blocks for x in c):
                raise GraphError(f"group {n!r}: choices {[x for x in c if x % blocks]} are not multiples of its "
                                 f"{blocks} blocks (a grouped conv's group count): every block keeps the same "
                                 f"channels; use multiples of {blocks}")
            step = block_round(base, blocks)  # 8, or a grouped conv's block step
            bad = [x for x in c if x % step and x != base]
            if blocks > 1 and bad:
                raise GraphError(f"group {n!r}: choices {bad} are not multiples of {step} (the least common multiple "
                                 f"of 8 and its {blocks} blocks); widths that are not multiples of 8 make onnxruntime "
                                 f"CPU several times slower: use multiples of {step}")
            if bad:
                raise GraphError(f"group {n!r}: choices {bad} are not multiples of {ROUND_TO}; widths that are not "
                                 f"make onnxruntime CPU several times slower, so round them to multiples of {ROUND_TO}"
                                 f" (the group's base width {base} is the one exception)")
        if self.source is not None:
            convs = {op.name for op in self.graph.ops if op.kind in ("conv", "bn", "linear")}
            mapped = {op for op, _ in self.source.modules}
            if mapped != convs:
                raise GraphError(f"space {self.name!r}: source.modules must map every conv, bn and linear op to the "
                                 f"model's module path; missing {sorted(convs - mapped)}, not such ops "
                                 f"{sorted(mapped - convs)}")

    # ---- widths ------------------------------------------------------------------------
    @property
    def choices(self) -> list[tuple[int, ...]]:
        return [g.choices for g in self.free_groups]

    @property
    def max_widths(self) -> list[int]:
        return [g.choices[-1] for g in self.free_groups]

    @property
    def min_widths(self) -> list[int]:
        return [g.choices[0] for g in self.free_groups]

    @property
    def base_widths(self) -> list[int]:
        return [g.base for g in self.free_groups]

    @property
    def reference_widths(self) -> list[int]:
        return self.uniform(1.0)

    def uniform(self, mult: float) -> list[int]:
        """The choice nearest to mult x base in every free group."""
        return [min(g.choices, key=lambda c: (abs(c - mult * g.base), c)) for g in self.free_groups]

    def multiplier_widths(self, mult: float, round_to: int = ROUND_TO) -> list[int]:
        """A width multiplier as users apply it: mult x base rounded to a multiple of `round_to` (at
        least `round_to`, at most the widest choice) in every free group. Not always on the search grid
        (`with_dense_choices` makes a space that holds it)."""
        if not (mult > 0 and mult < float("inf")):
            raise ValueError(f"multiplier {mult!r}: give a positive number, e.g. 0.5")
        steps = [self._step(g, round_to) for g in self.free_groups]
        return [int(min(g.choices[-1], max(r, r * int(mult * g.base / r + 0.5)))) for g, r in zip(self.free_groups, steps)]

    def _step(self, group: GroupSpec, round_to: int) -> int:
        """A multiplier's rounding in `group`: round_to, or for a group of blocks block_round's."""
        return block_round(group.base, self.graph.blocks.get(group.name, 1), round_to)

    def with_dense_choices(self, step: int = ROUND_TO) -> "GraphSpace":
        """Every multiple of `step` up to each free group's widest choice, plus its choices: the widths a
        plain multiplier rounded to `step` produces, for baselines off the search grid. A profile of this
        space does not cover the new widths (another fingerprint): measure them."""
        if step < 1 or step % ROUND_TO:
            raise ValueError(f"step {step}: give a positive multiple of {ROUND_TO} channels, e.g. 8")
        return GraphSpace.from_graph(self.name, self.graph,
                                     {g.name: tuple(sorted(set(range(self._step(g, step), g.choices[-1] + 1,
                                                                     self._step(g, step))) | set(g.choices)))
                                      for g in self.free_groups}, self.source)

    def validate(self, widths: Sequence[int] | Mapping[str, int]) -> list[int]:
        """Widths of the free groups, as a list in `free_groups` order or a {group: channels} mapping;
        WidthError names the first bad group and its choices."""
        free = self.free_groups
        if isinstance(widths, Mapping):
            unknown = sorted(set(widths) - {g.name for g in free})
            if unknown:
                raise WidthError(f"{unknown} are not free groups of space {self.name!r}; "
                                 f"free groups: {[g.name for g in free]}")
            missing = [g.name for g in free if g.name not in widths]
            if missing:
                raise WidthError(f"no width given for group(s) {missing} of space {self.name!r}")
            widths = [widths[g.name] for g in free]
        bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, numbers.Integral)
               and not (isinstance(w, numbers.Real) and float(w).is_integer())]
        if bad:
            raise WidthError(f"widths {list(widths)}: {bad[0]!r} is not a whole number of channels")
        widths = [int(w) for w in widths]
        if len(widths) != len(free):
            raise WidthError(f"{len(widths)} widths given; space {self.name!r} has {len(free)} free groups")
        for w, g in zip(widths, free):
            if w not in g.choices:
                raise WidthError(f"group {g.name}: width {w} is not a choice; choices are {list(g.choices)}")
        return widths

    def indices(self, widths: Sequence[int] | Mapping[str, int]) -> list[int]:
        """Widths -> index into each free group's choices (what unaries and the MRF are indexed by)."""
        return [g.choices.index(w) for g, w in zip(self.free_groups, self.validate(widths))]

    def widths_from_indices(self, idx: Sequence[int]) -> list[int]:
        """(free groups,) choice indices -> channels."""
        return [g.choices[int(k)] for g, k in zip(self.free_groups, idx)]

    def parse_widths(self, text: str) -> list[int]:
        """'32,64,...', a JSON list or {group: channels} object, or a uniform multiplier 'x0.75'."""
        text = text.strip()
        if text.startswith("x"):  # within the multipliers the free groups' choices span (never a silent clamp)
            lo = min(g.choices[0] / g.base for g in self.free_groups)
            hi = max(g.choices[-1] / g.base for g in self.free_groups)
            try:
                m = float(text[1:])
            except ValueError:
                m = float("nan")
            if not lo <= m <= hi:  # also NaN, inf
                raise WidthError(f"widths {text!r}: a uniform multiplier is 'x' and a number between x{lo:g} and "
                                 f"x{hi:g} (the widths space {self.name!r} offers), e.g. x0.75")
            return self.uniform(m)
        try:
            widths = json.loads(text) if text[:1] in "[{" else [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise WidthError(f"widths {text!r}: give channels per free group as '8,16,...', a JSON list or "
                             "{\"group\": channels}, or a uniform multiplier such as 'x0.75'")
        return self.validate(widths)

    def assignment(self, widths: Sequence[int] | Mapping[str, int]) -> dict[str, int]:
        """{group: channels} for every group, fixed ones included."""
        free = dict(zip((g.name for g in self.free_groups), self.validate(widths)))
        return {g.name: (g.base if g.fixed else free[g.name]) for g in self.groups}

    # ---- costs -------------------------------------------------------------------------
    def op_macs(self, widths: Sequence[int] | Mapping[str, int]) -> dict[str, int]:
        """Multiply-accumulates of one image per conv and linear (BN, activations, adds, pooling: not counted)."""
        a, ch, sizes = self.assignment(widths), self.graph.channels, self.graph.sizes
        out = {}
        for op in self.graph.ops:
            c_in, c_out = ch(op.inputs[0], a), ch(op.name, a)
            if op.kind == "conv":
                h, w = sizes[op.name]
                per_group_in = 1 if op.depthwise else c_in // op.conv_groups
                out[op.name] = op.kernel * op.kernel * per_group_in * c_out * h * w
            elif op.kind == "linear":
                out[op.name] = c_in * c_out
        return out

    def macs(self, widths: Sequence[int] | Mapping[str, int]) -> int:
        """Multiply-accumulates of one image, the FLOPs proxy."""
        return sum(self.op_macs(widths).values())

    def factor_structure(self) -> FactorStructure:
        """Groups and, per costed op, its signature and the groups of its input and output channels:
        what the latency design matrix and the MRF's factors are keyed by."""
        g, sizes, fixed = self.graph.group_of, self.graph.sizes, {s.name for s in self.groups if s.fixed}
        lay = self.graph.layout
        factors = []
        for op in self.graph.ops:
            if op.name in self.graph.folded_bns or (op.kind == "act" and op.fn in FUSED):  # a BN after a conv
                continue                                   # folds into it; onnxruntime fuses ReLU(6) into the conv
            kind = "dw" if op.depthwise else (f"g{op.conv_groups}" if op.kind == "conv" and op.conv_groups > 1 else
                                              "dense" if op.kind in ("conv", "linear") else
                                              op.fn if op.kind == "act" else "none")  # an activation's cost is its own
            k, s = (op.kernel, op.stride) if op.kind in ("conv", "maxpool", "avgpool") else (1, 1)
            segments = lay[op.inputs[0]] if op.kind != "cat" else lay[op.name]
            if len(segments) == 1:
                terms, cat = [(g[op.inputs[0]], g[op.name])], ""
            else:
                # an op over a concatenation: one term per segment, its share of the op. Its work is linear in
                # the input channels (a conv's c_in x c_out, a copy's or channelwise op's c), so the sum of the
                # segments' terms is the op's cost and the MRF stays pairwise; the terms have their own
                # entries ('<kind>/cat'), apart from whole ops', whose fixed per-op cost they share out.
                terms = [(seg, seg if op.name in self.graph.composite else g[op.name])  # channelwise: its own segment
                         for seg in segments]
                cat = "/cat"
            sig = OpSignature(op.kind + op.shape_tag + cat, k, s, kind, sizes[op.inputs[0]])
            for gi, go in terms:
                scope = tuple(dict.fromkeys(x for x in (gi, go) if x not in fixed))
                factors.append(OpFactor(op.name, sig, gi, go, sizes[op.name], scope))
        return FactorStructure(self.groups, tuple(factors))

    def touches(self) -> dict[str, list[str]]:
        """Group -> the costed ops whose input or output channels it is (what the CLI shows)."""
        out: dict[str, list[str]] = {s.name: [] for s in self.groups}
        for f in self.factor_structure().factors:
            for gname in dict.fromkeys((f.in_group, f.out_group)):
                if f.op not in out[gname]:  # an op over a concatenation has one term per segment
                    out[gname].append(f.op)
        return out

    def with_input(self, input_shape: Sequence[int] | None = None, num_classes: int | None = None) -> "GraphSpace":
        """The same ops and choices for another input shape or class count (a different fingerprint)."""
        graph = replace(self.graph, input_shape=parse_input_shape(input_shape) if input_shape else
                        self.graph.input_shape, num_classes=num_classes or self.graph.num_classes)
        return GraphSpace(self.name, graph, self.choices_by_group, self.source)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.graph.input_shape

    @property
    def num_classes(self) -> int:
        return self.graph.num_classes

    # ---- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "input_shape": list(self.graph.input_shape),
            "num_classes": self.graph.num_classes,
            "groups": [{"name": s.name, "base": s.base, "choices": list(s.choices), **({"fixed": True} if s.fixed else {})}
                       for s in self.groups],
            "ops": [op.to_dict() for op in self.graph.ops],
            **({"ties": [list(t) for t in self.graph.ties]} if self.graph.ties else {}),
            **({"fixed_ops": list(self.graph.fixed)} if self.graph.fixed else {}),
            **({"source": self.source.to_dict()} if self.source is not None else {}),
        }

    @property
    def fingerprint(self) -> str:
        """Short hash of the JSON form: equal fingerprints mean interchangeable artefacts."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict, where: str = "graph space") -> "GraphSpace":
        """Rebuild and check: the groups listed must be exactly the ones the ops derive."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            if found == CHAIN_FORMAT:
                raise GraphError(f"{where}: a MobileNet-v1 space in the chain format of widthnas before 0.2, which "
                                 f"reads MobileNet-v1 as a graph space now; artefacts made with it (profiles, runs) "
                                 f"must be made again: `widthnas space --space {d.get('name', 'NAME')} --json` "
                                 "writes today's form")
            raise GraphError(f"{where}: format {found!r}, expected {FORMAT!r}; not a widthnas search space "
                             "(write one with `widthnas space --space NAME --json`)")
        for key, typ in (("name", str), ("input_shape", list), ("num_classes", int), ("groups", list), ("ops", list)):
            if not isinstance(d.get(key), typ):
                raise GraphError(f"{where}: field {key!r} is missing or not a {typ.__name__}")
        shape = d["input_shape"]
        if len(shape) != 3 or not all(isinstance(x, int) for x in shape):
            raise GraphError(f"{where}: input_shape is [C, H, W] in whole numbers, got {shape}")
        ops = tuple(Op.from_dict(o, f"{where}: op {k}") for k, o in enumerate(d["ops"]))
        ties, fixed = d.get("ties", []), d.get("fixed_ops", [])
        if not isinstance(ties, list) or not all(isinstance(t, list) and all(isinstance(n, str) for n in t) for t in ties):
            raise GraphError(f"{where}: 'ties' is a list of lists of op names, e.g. [[\"layer1.0.conv2\", "
                             f"\"layer2.0.conv2\"]], not {ties!r}")
        if not isinstance(fixed, list) or not all(isinstance(n, str) for n in fixed):
            raise GraphError(f"{where}: 'fixed_ops' is a list of op names, not {fixed!r}")
        source = None
        if "source" in d:
            src = d["source"]
            if (not isinstance(src, dict) or not isinstance(src.get("factory"), str)
                    or not isinstance(src.get("modules"), dict)
                    or not all(isinstance(v, str) for v in src["modules"].values())
                    or not isinstance(src.get("unused_keys", []), list)):
                raise GraphError(f"{where}: 'source' is {{\"factory\": \"package.module:factory\", \"modules\": "
                                 "{op name: module path}}, as `widthnas space --from-model` writes it")
            source = TraceSource(src["factory"], tuple(src["modules"].items()), tuple(src.get("unused_keys", [])))
        try:
            graph = Graph(tuple(shape), d["num_classes"], ops, tuple(tuple(t) for t in ties), tuple(fixed))
        except GraphError as e:
            raise GraphError(f"{where}: {e}") from None
        derived = {g.name: g for g in graph.groups}
        listed = {}
        for k, gd in enumerate(d["groups"]):
            if not isinstance(gd, dict) or not isinstance(gd.get("name"), str) or "choices" not in gd:
                raise GraphError(f"{where}: group {k} needs a 'name' and 'choices'")
            n = gd["name"]
            if n not in derived:
                raise GraphError(f"{where}: group {n!r} is not a channel group of the ops; they derive "
                                 f"{list(derived)}. Groups come from the ops (and 'ties'), so rename or remove it, "
                                 "or regenerate the file (`widthnas space --space FILE --tie A,B --out NEW`)")
            if n in listed:
                raise GraphError(f"{where}: group {n!r} is listed twice")
            g = derived[n]
            if bool(gd.get("fixed", False)) != g.fixed:
                raise GraphError(f"{where}: group {n!r} is {'fixed' if g.fixed else 'free'} in the ops; "
                                 f"{'set' if g.fixed else 'remove'} 'fixed: true'")
            if gd.get("base", g.base) != g.base:
                raise GraphError(f"{where}: group {n!r} has base {gd.get('base')}, the ops declare {g.base}")
            if not isinstance(gd["choices"], list):
                raise GraphError(f"{where}: group {n!r}: choices must be a list of channel counts")
            if g.fixed and gd["choices"] != [g.base]:
                raise GraphError(f"{where}: fixed group {n!r} has the one choice [{g.base}], not {gd['choices']}")
            listed[n] = tuple(gd["choices"])
        missing = [n for n in derived if n not in listed]
        if missing:
            raise GraphError(f"{where}: the ops derive group(s) {missing} that 'groups' does not list; add them "
                             "with their choices")
        return cls(d["name"], graph, tuple((g.name, listed[g.name]) for g in graph.groups if not g.fixed), source)

    def save(self, path: str | Path) -> None:
        from widthnas._io import atomic_write_text  # not at the top: _io imports widthnas.latency, which imports this

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "GraphSpace":
        from widthnas._io import read_json  # not at the top: _io imports widthnas.latency, which imports this
        return cls.from_dict(read_json(path, "graph space", "write it again (`widthnas space --json`)", GraphError), str(path))
