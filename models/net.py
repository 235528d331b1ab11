"""Torch networks over a GraphSpace: a plain network for one width assignment, and a slimmable
supernet that runs any assignment by slicing its widest weights: the first c channels of every
tensor, shared BN affine parameters, running statistics updated only by passes that ask for it and
recalibrated per chosen network. Narrow passes are real smaller convolutions (cheaper), and
`materialize` copies exactly those slices into a plain network.
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


def _last_use(space: GraphSpace) -> dict[str, int]:
    """Tensor -> index of the last op reading it, so forward passes free tensors early."""
    last = {}
    for k, op in enumerate(space.graph.ops):
        for i in op.inputs:
            last[i] = k
    return last


class GraphNet(nn.Module):
    """A plain network with the given widths; what export and deployment use."""

    def __init__(self, space: GraphSpace, widths: Widths):
        super().__init__()
        self.space = space
        self.widths = space.validate(widths)
        a, g = space.assignment(widths), space.graph.group_of
        self._last = _last_use(space)
        self.layers = nn.ModuleDict()
        for op in space.graph.ops:
            c_in, c_out = a[g[op.inputs[0]]], a[g[op.name]]
            if op.kind == "conv":
                self.layers[module_key(op)] = nn.Conv2d(c_in, c_out, op.kernel, op.stride, op.padding,
                                                  groups=c_in if op.depthwise else 1, bias=op.bias)
            elif op.kind == "bn":
                self.layers[module_key(op)] = nn.BatchNorm2d(c_out, eps=op.eps)
            elif op.kind == "act":
                self.layers[module_key(op)] = activations.module(op.fn, op.alpha)
            elif op.kind == "maxpool":
                self.layers[module_key(op)] = nn.MaxPool2d(op.kernel, op.stride, op.padding, ceil_mode=op.ceil)
            elif op.kind == "linear":
                self.layers[module_key(op)] = nn.Linear(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        t = {INPUT: x}
        for k, op in enumerate(self.space.graph.ops):
            xs = [t[i] for i in op.inputs]
            if op.kind == "add":
                y = xs[0]
                for z in xs[1:]:
                    y = y + z
            elif op.kind == "mul":
                y = xs[0] * xs[1]  # a (1x1) gate broadcast over the map
            elif op.kind == "gap":
                y = F.adaptive_avg_pool2d(xs[0], 1)  # (N, C, 1, 1)
            elif op.kind == "linear":
                y = self.layers[module_key(op)](torch.flatten(xs[0], 1))
            else:
                y = self.layers[module_key(op)](xs[0])
            for i in op.inputs:
                if self._last[i] == k:
                    del t[i]
            t[op.name] = y
        return y


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

    def _bn(self, x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
        c = x.shape[1]
        if bn.training and not self._update_bn:  # batch statistics, running ones untouched
            return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], True, 0.0, bn.eps)
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                            bn.training, bn.momentum, bn.eps)

    def forward(self, x: torch.Tensor, widths: Widths | None = None, update_bn_stats: bool = True) -> torch.Tensor:
        a = self.space.assignment(widths if widths is not None else self.max_widths)
        g, layers, last = self.space.graph.group_of, self.full.layers, self.full._last
        self._update_bn = update_bn_stats
        t = {INPUT: x}
        for k, op in enumerate(self.space.graph.ops):
            xs = [t[i] for i in op.inputs]
            m = layers[module_key(op)] if module_key(op) in layers else None
            c_in = xs[0].shape[1]
            if op.kind == "conv" and op.depthwise:
                y = F.conv2d(xs[0], m.weight[:c_in], None if m.bias is None else m.bias[:c_in], m.stride, m.padding, 1,
                             c_in)
            elif op.kind == "conv":
                c_out = a[g[op.name]]
                y = F.conv2d(xs[0], m.weight[:c_out, :c_in], None if m.bias is None else m.bias[:c_out], m.stride,
                             m.padding)
            elif op.kind == "bn":
                y = self._bn(xs[0], m)
            elif op.kind == "act":
                y = activations.apply(op.fn, xs[0], op.alpha)
            elif op.kind == "add":
                y = xs[0]
                for z in xs[1:]:
                    y = y + z
            elif op.kind == "mul":
                y = xs[0] * xs[1]
            elif op.kind == "maxpool":
                y = m(xs[0])
            elif op.kind == "gap":
                y = F.adaptive_avg_pool2d(xs[0], 1)
            else:  # linear
                y = F.linear(torch.flatten(xs[0], 1), m.weight[:, :c_in], m.bias)
            for i in op.inputs:
                if last[i] == k:
                    del t[i]
            t[op.name] = y
        return y

    @torch.no_grad()
    def materialize(self, widths: Widths, space=None) -> GraphNet:
        """A plain network with copied, physically smaller weights equal to the supernet at `widths`.
        space: the supernet's (default), or one of the same graph with other choices (with_dense_choices:
        widths off the search grid; a layer's first channels, as on the grid)."""
        net = GraphNet(space or self.space, widths)
        for key, small in net.layers.items():
            big = self.full.layers[key]
            for name, p in list(small.named_parameters()) + list(small.named_buffers()):
                src = getattr(big, name)
                p.copy_(src if p.dim() == 0 else src[tuple(slice(0, n) for n in p.shape)])
        return net.train(self.training)
