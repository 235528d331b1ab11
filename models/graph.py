"""A network as a graph of ops, and its channel groups: the search variables of a graph space.

A channel group is a set of tensors that must have the same number of channels whatever widths are
chosen. Groups are derived from the ops by union-find, never written by hand:

  - a conv (dense: not depthwise nor grouped) starts a new group for its output, with the base width it declares;
  - a depthwise conv, a grouped conv (`conv_groups` > 1: its channels in that many blocks, in and out
    tied), BN, activation and pooling keep their input's group; a group holding a grouped conv has
    that many blocks (`Graph.blocks`): its widths are multiples of the block count, and a width keeps
    the first channels of every block, not the first channels overall;
  - an add ties the groups of all its inputs into one (a residual never changes the architecture:
    when widths would differ the add is not dropped, the widths are tied);
  - a concatenation (`cat`, on the channel axis) starts no group and ties none: its output is a
    *composite* tensor whose channels are its inputs' groups one after another (`Graph.layout`), each
    at its channel offset; a BN, activation or pooling of a composite tensor is composite alike; a dense
    conv or the classifier reading one takes the sum of its segments' widths (DenseNet, Inception);
  - the input channels ("input") and the classifier output ("classes") are fixed groups;
  - given by hand (traced spaces, models/trace.py): `ties` merge the groups of the tensors they
    name, for constraints the ops cannot show (code outside the network reads two tensors as one
    width); `fixed` holds the groups of the tensors it names at their base width (layers a user
    wants kept as they are). Both are empty for the built-in families.

A group's name is the `tag` of the first op (in graph order) that starts it, or that op's name.
Ops are listed in topological order; tensors are named after the op that produces them, and the
image is the tensor "input". A BN right after a conv that feeds only it folds into the conv at export
(`Graph.folded_bns`); the last op is the one linear classifier, on a globally pooled 1x1 tensor.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

from .activations import ACTIVATIONS, HAS_ALPHA

INPUT = "input"  # the image tensor and its fixed channel group
CLASSES = "classes"  # the classifier output's fixed channel group
KINDS = ("conv", "bn", "act", "add", "maxpool", "gap", "linear", "mul", "cat", "avgpool")  # mul: a map times its channel gate
KEEPS_LAYOUT = ("bn", "act", "maxpool", "avgpool", "gap")  # channelwise: the output has its input's channels, in order
BN_EPS = 1e-5  # torch's default; another eps is recorded in the op
# kind -> (fields an op of that kind may have besides name/op/inputs, fields it must have)
_FIELDS = {"conv": ({"out", "kernel", "stride", "depthwise", "tag", "bias", "pad", "conv_groups"},
                    {"out", "kernel", "stride"}),
           "maxpool": ({"kernel", "stride", "pad", "ceil"}, {"kernel", "stride"}),
           "avgpool": ({"kernel", "stride", "pad"}, {"kernel", "stride"}),  # zeros counted (torch's default)
           "act": ({"fn", "alpha"}, {"fn"}),
           "bn": ({"eps"}, set())}  # the other kinds: none
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


class GraphError(ValueError):
    """A graph (or graph space file) that is not a valid network; the message says what to change."""


@dataclass(frozen=True)
class Op:
    """One op. Only the fields of its kind matter; the others keep their defaults."""

    name: str
    kind: str  # one of KINDS
    inputs: tuple[str, ...]
    out: int = 0  # conv (dense): base output channels
    kernel: int = 1  # conv, maxpool, avgpool: square kernel side
    stride: int = 1  # conv, maxpool
    depthwise: bool = False  # conv: groups = channels, output keeps the input's group
    fn: str = ""  # act: one of ACTIVATIONS (models/activations.py)
    tag: str = ""  # conv: name of the group this op starts (default: the op's name)
    alpha: float = 0.0  # act leaky_relu: the negative slope
    eps: float = BN_EPS  # bn: added to the variance
    bias: bool = False  # conv: has a bias of its own (a conv with no BN after it; before a BN it folds in)
    pad: int = -1  # conv, maxpool: zero padding on every side, px; -1: kernel // 2 (the size kept at stride 1)
    ceil: bool = False  # maxpool: ceil_mode (a last, partial window)
    conv_groups: int = 1  # conv: > 1 for a grouped conv (ResNeXt, RegNet); its output keeps the input's group

    @property
    def keeps_group(self) -> bool:
        """A conv whose output channels are its input's (depthwise or grouped): it starts no group."""
        return self.kind == "conv" and (self.depthwise or self.conv_groups > 1)

    @property
    def padding(self) -> int:
        """Padding on every side, px."""
        return self.kernel // 2 if self.pad < 0 else self.pad

    @property
    def shape_tag(self) -> str:
        """'' for the default padding; else what sets this op's output size apart (its latency signature)."""
        return ("" if self.pad < 0 else f"/p{self.pad}") + ("/ceil" if self.ceil else "")

    def to_dict(self) -> dict:
        # fields added later (pad, ceil, bias, conv_groups, eps) are written only when not at their default, so
        # older files keep their fingerprints; the order of the keys is the file's
        d: dict = {"name": self.name, "op": self.kind, "inputs": list(self.inputs)}
        if self.kind in ("conv", "maxpool", "avgpool"):
            if self.pad >= 0:
                d["pad"] = self.pad
            if self.kind == "maxpool" and self.ceil:
                d["ceil"] = True
            d.update(kernel=self.kernel, stride=self.stride)
        if self.kind == "conv":
            if self.bias:
                d["bias"] = True
            if self.depthwise:
                d["depthwise"] = True
            elif self.conv_groups > 1:
                d["conv_groups"] = self.conv_groups
            else:
                d["out"] = self.out
                if self.tag:
                    d["tag"] = self.tag
        elif self.kind == "act":
            d["fn"] = self.fn
            if self.fn in HAS_ALPHA:
                d["alpha"] = self.alpha
        elif self.kind == "bn" and self.eps != BN_EPS:
            d["eps"] = self.eps
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "op") -> "Op":
        if not isinstance(d, dict):
            raise GraphError(f"{where}: an op is a JSON object with 'name', 'op' and 'inputs', not {d!r}")
        try:
            name, kind, inputs = d["name"], d["op"], d["inputs"]
        except KeyError as e:
            raise GraphError(f"{where}: missing field {e}; every op has 'name', 'op' and 'inputs'")
        where = f"{where} ({name!r}, {kind})"
        if kind not in KINDS:
            raise GraphError(f"{where}: unknown op {kind!r}; ops are {list(KINDS)}")
        fields, required = _FIELDS.get(kind, (set(), set()))
        if kind == "conv" and (d.get("depthwise") is True or "conv_groups" in d):  # keeps its input's channels
            fields, required = fields - {"out", "tag"}, required - {"out"}
        unknown, missing = set(d) - fields - {"name", "op", "inputs"}, required - set(d)
        if unknown or missing:
            raise GraphError(f"{where}: " + (f"unknown field(s) {sorted(unknown)}" if unknown else
                             f"missing field(s) {sorted(missing)}") + f"; this op has {sorted(fields)}")
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise GraphError(f"{where}: 'inputs' must be a list of op names, not {inputs!r}")
        for key, typ in (("out", int), ("kernel", int), ("stride", int), ("depthwise", bool), ("fn", str), ("tag", str),
                         ("bias", bool), ("pad", int), ("ceil", bool), ("conv_groups", int)):
            if key in d and (not isinstance(d[key], typ) or (typ is int and isinstance(d[key], bool))):
                raise GraphError(f"{where}: '{key}' must be a {typ.__name__}, not {d[key]!r}")
        if "pad" in d and d["pad"] < 0:  # -1 is the default, never written (its type is checked above)
            raise GraphError(f"{where}: 'pad' must be 0 or more px, not {d['pad']!r} (leave it out for kernel // 2)")
        if "conv_groups" in d and (d["conv_groups"] < 2 or d.get("depthwise")):
            raise GraphError(f"{where}: 'conv_groups' is a grouped conv's group count, a whole number of 2 or more "
                             f"(not with 'depthwise'), not {d['conv_groups']!r}; leave it out for a dense conv")
        for key, ok, what in (("alpha", lambda v: 0 <= v < 1, "in [0, 1)"), ("eps", lambda v: 0 < v < 1, "in (0, 1)")):
            v = d.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or not ok(v)):
                raise GraphError(f"{where}: '{key}' must be a number {what}, not {v!r}")
        given = {k: float(v) if k in ("alpha", "eps") else v for k, v in d.items()  # the fields checked above
                 if k not in ("name", "op", "inputs")}
        return cls(name, kind, tuple(inputs), **given)


@dataclass(frozen=True)
class Group:
    """A channel group as derived from the ops."""

    name: str
    base: int  # channels of the base (1.0x) network; the fixed channel count of a fixed group
    fixed: bool  # "input" and "classes" (and anything an add ties to them), and groups held by Graph.fixed
    members: tuple[str, ...]  # tensors (op names, and "input") whose channels this group is


def _out_size(h: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """Output side of a conv or pool, px, as torch computes it."""
    if not ceil:
        return (h + 2 * pad - kernel) // stride + 1
    out = -(-(h + 2 * pad - kernel) // stride) + 1
    return out - 1 if (out - 1) * stride >= h + pad else out  # the last window starts inside the input


@dataclass(frozen=True)
class Graph:
    """Ops over an input shape: validated on construction, groups and sizes derived lazily."""

    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    num_classes: int
    ops: tuple[Op, ...]
    ties: tuple[tuple[str, ...], ...] = ()  # tensors whose groups are merged by hand, one tuple per tie
    fixed: tuple[str, ...] = ()  # tensors whose groups keep their base width (not searched)

    # ---- structure ---------------------------------------------------------------------
    @cached_property
    def by_name(self) -> dict[str, Op]:
        return {op.name: op for op in self.ops}

    @cached_property
    def folded_bns(self) -> frozenset[str]:
        """BNs right after a conv that feeds only them, which fold into it at export; the others (after an add, a
        pool, a concatenation, the input, or a conv also read elsewhere: pre-activation blocks) stay BatchNormalization
        ops, with a latency of their own."""
        return frozenset(op.name for op in self.ops if op.kind == "bn"
                         and self.by_name.get(op.inputs[0], Op("", "", ())).kind == "conv"
                         and self.consumers[op.inputs[0]] == [op.name])

    @cached_property
    def consumers(self) -> dict[str, list[str]]:
        """Tensor name -> the ops reading it, in graph order."""
        out: dict[str, list[str]] = {INPUT: [], **{op.name: [] for op in self.ops}}
        for op in self.ops:
            for i in op.inputs:
                out[i].append(op.name)
        return out

    def __post_init__(self) -> None:
        """Validated on construction: GraphError names the first op that breaks a rule, and what to change."""
        if len(self.input_shape) != 3 or min(self.input_shape) < 1 or self.num_classes < 1:
            raise GraphError(f"input shape {self.input_shape} (C, H, W) and {self.num_classes} classes must be positive")
        if not self.ops:
            raise GraphError("a graph needs ops")
        seen = {INPUT}
        keys = set()
        for k, op in enumerate(self.ops):
            where = f"op {k} ({op.name!r})"
            if not _NAME.match(op.name) or op.name in (INPUT, CLASSES):
                raise GraphError(f"{where}: names start with a letter and hold letters, digits, '_' and '.'; "
                                 f"'{INPUT}' and '{CLASSES}' are reserved")
            if op.name in seen:
                raise GraphError(f"{where}: the name is used twice; op names must be unique")
            key = op.name.replace(".", "_")
            if key in keys:
                raise GraphError(f"{where}: the name equals another with '.' read as '_' (torch module names)")
            keys.add(key)
            if op.kind not in KINDS:
                raise GraphError(f"{where}: unknown op {op.kind!r}; ops are {list(KINDS)}")
            for i in op.inputs:
                if i not in seen:
                    raise GraphError(f"{where}: input {i!r} is not an earlier op (or 'input'); list ops in "
                                     "topological order")
            n_in, many = len(op.inputs), op.kind in ("add", "cat")
            if n_in < 2 if many else n_in != (2 if op.kind == "mul" else 1):
                want = "two or more inputs" if many else "two inputs" if op.kind == "mul" else "one input"
                raise GraphError(f"{where}: {op.kind} takes {want}, got {n_in}")
            if op.kind in ("conv", "maxpool", "avgpool"):
                if op.kernel < 1 or op.stride < 1 or (op.pad < 0 and op.kernel % 2 == 0):
                    raise GraphError(f"{where}: kernel and stride must be positive, the kernel odd unless 'pad' is "
                                     f"given (got kernel {op.kernel}, stride {op.stride})")
                if op.pad >= 0 and 2 * op.pad > op.kernel:
                    raise GraphError(f"{where}: 'pad' {op.pad} is more than half the kernel {op.kernel}")
            if op.kind == "conv" and not op.keeps_group and op.out < 1:
                raise GraphError(f"{where}: a conv declares its base output channels 'out' (> 0)")
            if op.kind == "act" and op.fn not in ACTIVATIONS:
                raise GraphError(f"{where}: activation {op.fn!r}; choose one of {list(ACTIVATIONS)}")
            if op.kind == "linear" and k != len(self.ops) - 1:
                raise GraphError(f"{where}: the one linear is the classifier, the last op")
            seen.add(op.name)
        if self.ops[-1].kind != "linear":
            raise GraphError(f"the last op ({self.ops[-1].name!r}) must be the linear classifier")
        for k, tie in enumerate(self.ties):
            if len(tie) < 2:
                raise GraphError(f"tie {k} {list(tie)}: a tie names two or more ops whose channel groups it merges")
            self._known(tie, f"tie {k}")
        self._known(self.fixed, "fixed")
        cats = [t for tie in self.ties for t in tie if t in self.composite]
        if cats:
            raise GraphError(f"tie names {cats[0]!r}, a concatenation of several channel groups: a tie merges one "
                             f"group with others; name the layers it joins ({list(self._sources(cats[0]))[:6]})")
        for op in self.ops:
            users = self.consumers[op.name]
            if op is not self.ops[-1] and not users:
                raise GraphError(f"op {op.name!r} is never used; remove it or feed it into the network")
            kinds = [self.by_name[u].kind for u in users]
            if op.kind == "conv" and op.bias and kinds == ["bn"]:  # the bn folds into the conv at export
                raise GraphError(f"conv {op.name!r} has a bias and a bn: its bias folds into the bn; drop 'bias'")
        sizes = self.sizes  # checks spatial agreement
        if sizes[self.ops[-1].inputs[0]] != (1, 1):
            raise GraphError("the linear classifier reads a 1x1 tensor: put a 'gap' (global average pool) before it")
        self.groups  # noqa: B018  (checks base widths agree inside every group)
        self.blocks  # noqa: B018  (checks each group's grouped convs agree)

    def _known(self, names, what: str) -> None:
        unknown = [n for n in names if n != INPUT and n not in self.by_name]
        if unknown:
            raise GraphError(f"{what}: {unknown} are not ops of the graph; name ops (their channels' group is "
                             f"meant), e.g. {[op.name for op in self.ops if op.kind == 'conv'][:6]}")

    # ---- derived -----------------------------------------------------------------------
    @cached_property
    def sizes(self) -> dict[str, tuple[int, int]]:
        """Tensor name -> output (H, W), px."""
        s = {INPUT: tuple(self.input_shape[1:])}
        for op in self.ops:
            h, w = s[op.inputs[0]]
            if op.kind in ("conv", "maxpool", "avgpool"):
                h, w = (_out_size(v, op.kernel, op.stride, op.padding, op.ceil) for v in (h, w))
                if min(h, w) < 1:
                    raise GraphError(f"{op.kind} {op.name!r}: output {h}x{w} px; the input is too small for its "
                                     "kernel, stride and padding")
            elif op.kind == "gap":
                h, w = 1, 1
            elif op.kind in ("add", "cat"):
                got = {s[i] for i in op.inputs}
                if len(got) != 1:
                    raise GraphError(f"{op.kind} {op.name!r} joins tensors of different sizes "
                                     f"{ {i: s[i] for i in op.inputs} } px; give its inputs the same stride")
            elif op.kind == "mul":  # a feature map times a (1x1) channel gate, e.g. squeeze-excitation
                a, b = (s[i] for i in op.inputs)
                if a != b and (1, 1) not in (a, b):
                    raise GraphError(f"mul {op.name!r} multiplies tensors of sizes {a} and {b} px: a map and its "
                                     "1x1 gate, or two maps of one size")
                h, w = max(a, b)
            s[op.name] = (h, w)
        return s

    @cached_property
    def _union(self) -> dict[str, str]:
        """Tensor name -> the tensor that started its group (union-find with path halving)."""
        parent = {INPUT: INPUT}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        def merge(tensors) -> str:
            roots = sorted({find(t) for t in tensors}, key=self._order.__getitem__)
            for r in roots[1:]:  # the earliest root stays the representative
                parent[r] = roots[0]
            return roots[0]

        composite = self.composite
        for op in self.ops:
            if op.name in composite:  # a concatenation's channels are its inputs' groups: it is in none
                continue
            starts = op.kind == "linear" or (op.kind == "conv" and not op.keeps_group)
            parent[op.name] = op.name if starts else find(op.inputs[0])
            if op.kind in ("add", "mul"):  # both tie their inputs' channels (a gate has the map's channels)
                parent[op.name] = merge(op.inputs)
        for tie in self.ties:  # merged by hand, as an add would
            merge(tie)
        return {t: find(t) for t in parent}

    @cached_property
    def composite(self) -> frozenset[str]:
        """Tensors whose channels are several groups' (a cat, and what a BN, activation or pool makes of
        one). GraphError for an op that needs its input to be one group: an add or mul (they tie their
        inputs' channels), a depthwise or grouped conv (its output keeps its input's group)."""
        out: set[str] = set()
        for op in self.ops:
            if op.kind == "cat":
                out.add(op.name)
                continue
            hit = [i for i in op.inputs if i in out]
            if not hit:
                continue
            if op.kind in KEEPS_LAYOUT:
                out.add(op.name)
            elif not (op.kind == "linear" or (op.kind == "conv" and not op.keeps_group)):
                what = "a depthwise or grouped conv" if op.kind == "conv" else f"an {op.kind}"
                raise GraphError(f"{op.kind} {op.name!r} reads {hit[0]!r}, a concatenation of several channel "
                                 f"groups; {what} ties its input's channels to its output's, which widthnas supports "
                                 "for one group only: put a dense conv after the concatenation first")
        return frozenset(out)

    def _sources(self, tensor: str) -> tuple[str, ...]:
        """The tensors whose channels a tensor's are, in order: itself, or a concatenation's inputs' (recursively)."""
        if tensor not in self.composite:
            return (tensor,)
        op = self.by_name[tensor]
        return tuple(s for i in (op.inputs if op.kind == "cat" else op.inputs[:1]) for s in self._sources(i))

    @cached_property
    def layout(self) -> dict[str, tuple[str, ...]]:
        """Tensor name -> the groups of its channels in order: one for most tensors, the segments of a
        concatenation (a group may repeat: cat(x, x))."""
        g, out = self.group_of, {INPUT: (self.group_of[INPUT],)}
        for op in self.ops:
            if op.kind == "cat":
                out[op.name] = tuple(s for i in op.inputs for s in out[i])
            elif op.name in self.composite:
                out[op.name] = out[op.inputs[0]]
            else:
                out[op.name] = (g[op.name],)
        return out

    def channels(self, tensor: str, a: dict[str, int]) -> int:
        """A tensor's channels under the assignment a ({group: channels}): the sum of its segments'."""
        return sum(a[s] for s in self.layout[tensor])

    @cached_property
    def _order(self) -> dict[str, int]:
        return {INPUT: -1, **{op.name: k for k, op in enumerate(self.ops)}}

    @cached_property
    def groups(self) -> tuple[Group, ...]:
        """The channel groups in order of their first tensor; fixed ones included."""
        members: dict[str, list[str]] = {}
        for t, r in self._union.items():
            members.setdefault(r, []).append(t)
        out, names = [], {}
        held = {s for t in self.fixed for s in self._sources(t)}  # a concatenation: every group it joins
        for root in sorted(members, key=self._order.__getitem__):
            tensors = sorted(members[root], key=self._order.__getitem__)
            bases = {}  # tensor that starts channels -> its base width
            for t in tensors:
                if t == INPUT:
                    bases[t] = self.input_shape[0]
                elif self.by_name[t].kind == "linear":
                    bases[t] = self.num_classes
                elif self.by_name[t].kind == "conv" and not self.by_name[t].keeps_group:
                    bases[t] = self.by_name[t].out
            if len(set(bases.values())) != 1:
                raise GraphError(f"ops {bases} are tied into one channel group (by adds, depthwise or grouped convs, "
                                 "or ties), so they need the same base width; make their 'out' equal")
            classes = any(self.by_name[t].kind == "linear" for t in tensors if t != INPUT)
            fixed = INPUT in tensors or classes or any(t in held for t in tensors)
            name = INPUT if INPUT in tensors else CLASSES if classes else (self.by_name[root].tag or root)
            if name in names:
                raise GraphError(f"two channel groups are named {name!r} (started by {names[name]!r} and "
                                 f"{root!r}); give their convs different tags")
            names[name] = root
            out.append(Group(name, next(iter(bases.values())), fixed, tuple(tensors)))
        return tuple(out)

    @cached_property
    def blocks(self) -> dict[str, int]:
        """Group -> its block count, for the groups holding a grouped conv (others: 1, not listed). A width
        w of such a group keeps w / blocks channels of every block (models/net.py channel_index)."""
        out: dict[str, int] = {}
        g = self.group_of
        for op in self.ops:
            if op.kind != "conv" or op.conv_groups < 2:
                continue
            name, k = g[op.name], op.conv_groups
            if out.setdefault(name, k) != k:
                raise GraphError(f"conv {op.name!r} has {k} groups, another grouped conv of its channel group "
                                 f"{name!r} has {out[name]}: one group's channels are cut into one set of blocks, "
                                 "so grouped convs whose channels are tied (by adds or ties) must have the same group "
                                 "count; not supported otherwise (in a space file, fix 'conv_groups' or remove the "
                                 "tie)")
            base = self.groups[[x.name for x in self.groups].index(name)].base
            if base % k:
                raise GraphError(f"conv {op.name!r}: {k} groups do not divide its {base} channels; "
                                 f"'conv_groups' must divide the channels (fix it in the space file)")
        return out

    @cached_property
    def group_of(self) -> dict[str, str]:
        """Tensor name -> its group's name."""
        return {t: g.name for g in self.groups for t in g.members}


class GraphBuilder:
    """Writes ops in order; each method returns the name of the tensor it produced."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        self.input_shape, self.num_classes, self.ops = tuple(input_shape), num_classes, []

    def _add(self, op: Op) -> str:
        self.ops.append(op)
        return op.name

    def conv_bn(self, name: str, x: str, out: int = 0, kernel: int = 3, stride: int = 1, depthwise: bool = False,
                act: str | None = "relu", tag: str = "") -> str:
        """conv -> bn (-> activation): the unit every family is made of."""
        y = self._add(Op(name, "conv", (x,), 0 if depthwise else out, kernel, stride, depthwise, tag=tag))
        y = self._add(Op(f"{name}.bn", "bn", (y,)))
        return self.act(f"{name}.act", y, act) if act else y

    def act(self, name: str, x: str, fn: str = "relu") -> str:
        return self._add(Op(name, "act", (x,), fn=fn))

    def add(self, name: str, *xs: str) -> str:
        return self._add(Op(name, "add", tuple(xs)))

    def maxpool(self, name: str, x: str, kernel: int = 3, stride: int = 2) -> str:
        return self._add(Op(name, "maxpool", (x,), kernel=kernel, stride=stride))

    def head(self, x: str) -> str:
        """Global average pool and the linear classifier."""
        y = self._add(Op("pool", "gap", (x,)))
        return self._add(Op("fc", "linear", (y,)))

    def build(self) -> Graph:
        return Graph(self.input_shape, self.num_classes, tuple(self.ops))
