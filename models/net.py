"""Torch networks over a GraphSpace: a plain network for one width assignment, and a slimmable supernet
that runs any assignment by slicing its widest weights: the first c channels of every tensor (of a group
with blocks, a grouped conv's: the first c / blocks of every block), shared BN affine parameters, running
statistics updated only by passes that ask for it and recalibrated per chosen network. Narrow passes are
real smaller convolutions (cheaper), and `materialize` copies exactly those slices into a plain network.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import activations
from .graph import INPUT, Op
from .space import GraphSpace

Widths = Sequence[int] | Mapping[str, int]


def module_key(op: Op) -> str:
    return op.name.replace(".", "_")  # torch module names may not hold '.'


def channel_index(space: GraphSpace, group: str, width: int, widest: int) -> slice | torch.Tensor:
    """The channels of `group` that width `width` keeps, out of the supernet's `widest`: the first `width`
    (a slice: a view), or for a group of b blocks (a grouped conv's) the first width / b of every block of
    widest / b (an index: a copy). At the widest, all of them in order (a view, so running BN statistics
    update in place)."""
    b = space.graph.blocks.get(group, 1)
    if b == 1 or width == widest:
        return slice(0, width)
    per, k = widest // b, width // b
    return (torch.arange(b)[:, None] * per + torch.arange(k)[None, :]).reshape(-1)


def tensor_index(space: GraphSpace, tensor: str, per: Mapping[str, slice | torch.Tensor],
                 width: Mapping[str, int]) -> slice | torch.Tensor:
    """The channels of `tensor` from its groups' (per: group -> slice or index): its one group's as they are,
    or for a concatenation each segment's shifted by the channels (`width`) of the segments before it."""
    lay = space.graph.layout[tensor]
    if len(lay) == 1:
        return per[lay[0]]
    parts, off = [], 0
    for s in lay:
        c = per[s]
        parts.append((torch.arange(c.start or 0, c.stop) if isinstance(c, slice) else c) + off)
        off += width[s]
    return torch.cat(parts)


def _run(space: GraphSpace, last: Mapping[str, int], x: torch.Tensor, step, a: Mapping[str, int] | None = None,
         reuse: "Activations | None" = None, keep: "Activations | None" = None) -> torch.Tensor:
    """The ops in order on x, each tensor freed after its last reader (`last`: tensor -> that op's index). Adds,
    muls, cats and global pools are the same in every network; step(op, x) computes the others on their one input.
    a: this network's assignment, with reuse: another network's outputs on the same x, taken for each op whose
    inputs were taken and whose channels are the same (exact: the same computation on the same tensors);
    keep: filled with this run's x, assignment and outputs on the frontier (`frontier`)."""
    if (reuse is not None or keep is not None) and a is None:
        raise ValueError("reusing or keeping activations needs the network's assignment (a)")
    if reuse is not None and reuse is keep:
        raise ValueError("a pass cannot keep its activations in the record it reuses: give a new Activations")
    if keep is not None:
        keep.x, keep.a, keep.out = x, dict(a), {}
    t, fresh = {INPUT: x}, {INPUT: reuse is None or reuse.x is not x}
    for k, op in enumerate(space.graph.ops):
        xs = [t[i] for i in op.inputs]
        if reuse is not None and not any(fresh[i] for i in op.inputs) and reuse.reusable(op, a):
            y, fresh[op.name] = reuse.out.get(op.name), False  # None: not kept, and no op computed here reads it
        elif any(v is None for v in xs):
            raise RuntimeError(f"{op.name}: an input taken from the kept pass was not kept (models/net.py frontier)")
        elif op.kind == "add":
            y = sum(xs[1:], xs[0])
        elif op.kind == "mul":
            y = xs[0] * xs[1]  # a (1x1) gate broadcast over the map
        elif op.kind == "cat":
            y = torch.cat(xs, 1)
        elif op.kind == "gap":
            y = F.adaptive_avg_pool2d(xs[0], 1)  # (N, C, 1, 1)
        else:
            y = step(op, xs[0])
        fresh.setdefault(op.name, True)
        if keep is not None and op.name in keep.needed:
            keep.out[op.name] = y
        for i in dict.fromkeys(op.inputs):  # once each: cat(x, x) and add(x, x) read x twice
            if last[i] == k:
                del t[i]
        t[op.name] = y
    return y


def _groups(space: GraphSpace, op: Op) -> tuple[str, ...]:
    """The channel groups an op's computation depends on: its output's and its inputs' segments."""
    lay = space.graph.layout
    return tuple(s for t in (op.name, *op.inputs) if t != INPUT for s in lay[t])


def frontier(space: GraphSpace) -> frozenset[str]:
    """The ops whose outputs a reusing pass may read: the last, and those read by an op of several inputs or
    of a channel group of its own. An op read only by ops of its own groups (a conv's BN, the BN's activation)
    is reused whenever they are, so its output need not be kept (a third of a conv-BN-act chain's)."""
    ops = space.graph.ops
    mine = {op.name: set(_groups(space, op)) for op in ops}
    need = {ops[-1].name}
    for op in ops:
        for i in op.inputs:
            if i != INPUT and (len(set(op.inputs)) > 1 or not mine[op.name] <= mine[i]):
                need.add(i)
    return frozenset(need)


KEEP_BYTES = 1 << 30  # memory for kept activations (two records of mobilenet_v1_small's frontier: 0.35 GB on 256 images,
# 0.7 on 512; resnet_small's on 512: 2.0, so its unaries take whole passes)


def records_fit(space: GraphSpace, images: int, needed: frozenset[str] | None = None, records: int = 2,
                element_size: int = 4) -> bool:
    """Whether `records` Activations of `images` images (at the widest) fit in KEEP_BYTES: a pass that reuses
    one record while keeping another holds two."""
    g, widest = space.graph, space.assignment(space.max_widths)
    per_image = sum(g.channels(t, widest) * h * w for t in (frontier(space) if needed is None else needed)
                    for h, w in [g.sizes[t]])
    return records * per_image * images * element_size <= KEEP_BYTES


class Activations:
    """The outputs (on the frontier) of one network (assignment a) on one batch x, kept so that a network
    differing from it only in later layers (greedy slimming's next step, the next measured unary configuration)
    is computed from its first changed op on. Filled by a pass (forward's keep=); valid while the weights and the train/eval mode stay as they were."""

    def __init__(self, space: GraphSpace, training: bool, needed: frozenset[str] | None = None):
        self.space, self.training = space, training
        self.needed = frontier(space) if needed is None else needed  # (a caller making many: frontier once)
        self.x: torch.Tensor | None = None
        self.a: dict[str, int] = {}
        self.out: dict[str, torch.Tensor] = {}

    def reusable(self, op: Op, a: Mapping[str, int]) -> bool:
        g = _groups(self.space, op)
        return bool(self.a) and all(self.a[s] == a[s] for s in g)


class GraphNet(nn.Module):
    """A plain network with the given widths; what export and deployment use."""

    def __init__(self, space: GraphSpace, widths: Widths):
        super().__init__()
        self.space = space
        self.widths = space.validate(widths)
        a, ch = space.assignment(widths), space.graph.channels
        self.assignment = a  # {group: channels}, fixed groups included
        self._last = {i: k for k, op in enumerate(space.graph.ops) for i in op.inputs}  # later readers overwrite
        self.layers = nn.ModuleDict()
        for op in space.graph.ops:
            c_in, c_out = ch(op.inputs[0], a), ch(op.name, a)  # a concatenation's: the sum of its segments
            if op.kind == "conv":
                self.layers[module_key(op)] = nn.Conv2d(c_in, c_out, op.kernel, op.stride, op.padding,
                                                  groups=c_in if op.depthwise else op.conv_groups, bias=op.bias)
            elif op.kind == "bn":
                self.layers[module_key(op)] = nn.BatchNorm2d(c_out, eps=op.eps)
            elif op.kind == "act":
                self.layers[module_key(op)] = activations.module(op.fn, op.alpha)
            elif op.kind == "maxpool":
                self.layers[module_key(op)] = nn.MaxPool2d(op.kernel, op.stride, op.padding, ceil_mode=op.ceil)
            elif op.kind == "avgpool":
                self.layers[module_key(op)] = nn.AvgPool2d(op.kernel, op.stride, op.padding)
            elif op.kind == "linear":
                self.layers[module_key(op)] = nn.Linear(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        return _run(self.space, self._last, x, self._step)

    def _step(self, op: Op, x: torch.Tensor) -> torch.Tensor:
        return self.layers[module_key(op)](torch.flatten(x, 1) if op.kind == "linear" else x)


def build_network(space: GraphSpace, widths: Widths) -> GraphNet:
    return GraphNet(space, widths)


class SlimmableGraphNet(nn.Module):
    """The supernet: holds the widest weights; `forward(x, widths)` runs any assignment.

    BatchNorm affine weights are shared across widths. Running statistics are only updated by passes
    with `update_bn_stats=True` (the widest pass when training), since a mix of widths' statistics
    fits none; recalibrate them per chosen network (`nas.evaluate.recalibrate_bn`) before judging it.
    """

    def __init__(self, space: GraphSpace):
        super().__init__()
        self.space = space
        self.full = GraphNet(space, space.max_widths)
        self._update_bn = True

    @property
    def max_widths(self) -> list[int]:
        return self.space.max_widths

    def _bn(self, x: torch.Tensor, bn: nn.BatchNorm2d, c) -> torch.Tensor:
        """c: the channels kept (channel_index): a slice (views: running statistics update in place) or, in a
        group with blocks, an index (copies, written back after an updating pass)."""
        if bn.training and not self._update_bn:  # batch statistics, running ones untouched
            return F.batch_norm(x, None, None, bn.weight[c], bn.bias[c], True, 0.0, bn.eps)
        mean, var = bn.running_mean[c], bn.running_var[c]
        y = F.batch_norm(x, mean, var, bn.weight[c], bn.bias[c], bn.training, bn.momentum, bn.eps)
        if bn.training and isinstance(c, torch.Tensor):
            with torch.no_grad():
                bn.running_mean[c], bn.running_var[c] = mean, var
        return y

    def _index(self, a: Mapping[str, int]) -> dict[str, slice | torch.Tensor]:
        """Group -> the channels the assignment `a` keeps of the supernet's widest."""
        return {name: channel_index(self.space, name, c, self.full.assignment[name]) for name, c in a.items()}

    def _at(self, tensor: str, a: Mapping[str, int], idx: Mapping[str, slice | torch.Tensor]) -> slice | torch.Tensor:
        """The channels of `tensor` that the assignment keeps, out of its widest: its group's (idx), or for
        a concatenation each segment's, shifted by the widest widths of the segments before it."""
        lay, widest = self.space.graph.layout[tensor], self.full.assignment
        if len(lay) > 1 and all(a[s] == widest[s] for s in lay):  # all of it: a view
            return slice(0, sum(a[s] for s in lay))
        return tensor_index(self.space, tensor, idx, widest)

    def forward(self, x: torch.Tensor, widths: Widths | None = None, update_bn_stats: bool = True,
                reuse: Activations | None = None, keep: Activations | None = None) -> torch.Tensor:
        """reuse, keep (passes that update no running statistics): see _run; keep=Activations(space, training)."""
        a = self.space.assignment(widths if widths is not None else self.max_widths)
        if reuse is not None and update_bn_stats and self.training:
            raise ValueError("reused activations skip ops, and their BN statistics updates: give update_bn_stats=False")
        if any(r is not None and r.training != self.training for r in (reuse, keep)):
            raise ValueError("activations of a pass in the other train/eval mode: they would not be these")
        idx = self._index(a)
        g, layers = self.space.graph.group_of, self.full.layers
        self._update_bn = update_bn_stats

        def step(op: Op, x: torch.Tensor) -> torch.Tensor:
            m = layers[module_key(op)]  # every op _run leaves to step has a module
            if op.kind == "conv" and op.keeps_group:  # depthwise or grouped: out rows of its input's channels
                gi, go = g[op.inputs[0]], g[op.name]
                blocks = a[gi] if op.depthwise else op.conv_groups
                w = m.weight[idx[go]]
                if op.conv_groups > 1:
                    w = w[:, :a[gi] // blocks]  # each block's first inputs (the rows' own block)
                return F.conv2d(x, w, None if m.bias is None else m.bias[idx[go]], m.stride, m.padding, 1, blocks)
            if op.kind == "conv":
                go = g[op.name]
                return F.conv2d(x, m.weight[idx[go]][:, self._at(op.inputs[0], a, idx)],
                                None if m.bias is None else m.bias[idx[go]], m.stride, m.padding)
            if op.kind == "bn":
                return self._bn(x, m, self._at(op.name, a, idx))
            if op.kind == "act":
                return activations.apply(op.fn, x, op.alpha)
            if op.kind in ("maxpool", "avgpool"):
                return m(x)
            return F.linear(torch.flatten(x, 1), m.weight[:, self._at(op.inputs[0], a, idx)], m.bias)  # linear

        return _run(self.space, self.full._last, x, step, a, reuse, keep)

    @torch.no_grad()
    def materialize(self, widths: Widths, space=None) -> GraphNet:
        """A plain network with copied, physically smaller weights equal to the supernet at `widths`.
        space: the supernet's (default), or one of the same graph with other choices (with_dense_choices:
        widths off the search grid; a layer's channels chosen as on the grid, `channel_index`)."""
        space = space or self.space
        net = GraphNet(space, widths)
        a = space.assignment(widths)
        idx = self._index(a)
        for op in space.graph.ops:
            if module_key(op) not in net.layers:
                continue
            small, big = net.layers[module_key(op)], self.full.layers[module_key(op)]
            io, ii = self._at(op.name, a, idx), self._at(op.inputs[0], a, idx)
            for name, p in list(small.named_parameters()) + list(small.named_buffers()):
                src = getattr(big, name)
                if p.dim() == 0:  # num_batches_tracked
                    p.copy_(src)
                elif op.kind == "linear":
                    p.copy_(src[:, ii] if name == "weight" else src)
                elif name == "weight" and op.kind == "conv":
                    p.copy_(src[io][:, :p.shape[1]] if op.keeps_group else src[io][:, ii])
                else:  # conv bias, BN parameters and statistics
                    p.copy_(src[io])
        return net.train(self.training)
