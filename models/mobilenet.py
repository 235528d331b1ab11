"""MobileNet-v1 networks over a SearchSpace: a plain network for one width configuration, and a
slimmable supernet that runs any configuration by slicing its widest weights.

Slicing takes the first c channels of every tensor, so narrow passes are real smaller
convolutions (cheaper), and `materialize` copies exactly those slices into a plain network.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .space import SearchSpace


def _conv_bn_relu(c_in: int, c_out: int, stride: int, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MobileNet(nn.Module):
    """A plain MobileNet-v1 with the given widths; what export and deployment use."""

    def __init__(self, space: SearchSpace, widths: Sequence[int]):
        super().__init__()
        widths = space.validate(widths)
        self.widths = widths
        layers = [_conv_bn_relu(space.input_shape[0], widths[0], space.layers[0].stride)]
        for i in range(1, space.num_layers):
            c_in, s = widths[i - 1], space.layers[i].stride
            layers.append(nn.Sequential(
                _conv_bn_relu(c_in, c_in, s, groups=c_in),  # depthwise 3x3
                _conv_bn_relu(c_in, widths[i], 1, kernel=1),  # pointwise 1x1
            ))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[-1], space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        x = self.features(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_network(space: SearchSpace, widths: Sequence[int]) -> MobileNet:
    return MobileNet(space, widths)


class SlimmableMobileNet(nn.Module):
    """The supernet: holds the widest weights; `forward(x, widths)` runs any configuration.

    BatchNorm affine weights are shared across widths during training. Running statistics are
    only updated by passes with `update_bn_stats=True` (the trainer's widest pass), since a mix of
    widths' statistics fits none; recalibrate them per chosen configuration
    (`nas.evaluate.recalibrate_bn`) before judging its accuracy.
    """

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.full = MobileNet(space, space.max_widths)
        self._update_bn = True

    @property
    def max_widths(self) -> list[int]:
        return self.space.max_widths

    def _bn(self, x: torch.Tensor, bn: nn.BatchNorm2d, c: int) -> torch.Tensor:
        if bn.training and not self._update_bn:  # batch statistics, running ones untouched
            return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], True, 0.0, bn.eps)
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                            bn.training, bn.momentum, bn.eps)

    def _cbr(self, x: torch.Tensor, seq: nn.Sequential, c_out: int, depthwise: bool) -> torch.Tensor:
        conv, bn = seq[0], seq[1]
        if depthwise:
            c = x.shape[1]
            y = F.conv2d(x, conv.weight[:c], None, conv.stride, conv.padding, 1, c)
            return F.relu(self._bn(y, bn, c))
        y = F.conv2d(x, conv.weight[:c_out, : x.shape[1]], None, conv.stride, conv.padding)
        return F.relu(self._bn(y, bn, c_out))

    def forward(self, x: torch.Tensor, widths: Sequence[int] | None = None,
                update_bn_stats: bool = True) -> torch.Tensor:
        widths = self.space.validate(widths) if widths is not None else self.max_widths
        self._update_bn = update_bn_stats
        feats = self.full.features
        x = self._cbr(x, feats[0], widths[0], depthwise=False)
        for i in range(1, len(widths)):
            x = self._cbr(x, feats[i][0], widths[i - 1], depthwise=True)
            x = self._cbr(x, feats[i][1], widths[i], depthwise=False)
        fc = self.full.classifier
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return F.linear(x, fc.weight[:, : x.shape[1]], fc.bias)

    @torch.no_grad()
    def materialize(self, widths: Sequence[int]) -> MobileNet:
        """A plain network with copied, physically smaller weights equal to the supernet at `widths`."""
        widths = self.space.validate(widths)
        net = MobileNet(self.space, widths)
        src, dst = self.full.features, net.features

        def copy_cbr(s: nn.Sequential, d: nn.Sequential, c_out: int, c_in: int, depthwise: bool) -> None:
            w = s[0].weight[:c_out] if depthwise else s[0].weight[:c_out, :c_in]
            d[0].weight.copy_(w)
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(d[1], name).copy_(getattr(s[1], name)[:c_out])
            d[1].num_batches_tracked.copy_(s[1].num_batches_tracked)

        copy_cbr(src[0], dst[0], widths[0], self.space.input_shape[0], depthwise=False)
        for i in range(1, len(widths)):
            copy_cbr(src[i][0], dst[i][0], widths[i - 1], 1, depthwise=True)
            copy_cbr(src[i][1], dst[i][1], widths[i], widths[i - 1], depthwise=False)
        net.classifier.weight.copy_(self.full.classifier.weight[:, : widths[-1]])
        net.classifier.bias.copy_(self.full.classifier.bias)
        return net.train(self.training)
