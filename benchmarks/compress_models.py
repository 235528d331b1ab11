"""The user's models of the compression benchmark (benchmarks/compress.py): plain PyTorch modules, as a
user writes them, traced with `widthnas space --from-model` like any other. Importable by name
(`widthnas.benchmarks.compress_models:small_resnet`), so pickled pruned copies load in worker processes."""
from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """The README's residual block, verbatim."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = None
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class SmallResNet(nn.Module):
    """The README's `SmallResNet` (ResNet with projection shortcuts), 28x28x1 -> 10 classes."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.stage1 = nn.Sequential(Block(32, 32), Block(32, 32))
        self.stage2 = nn.Sequential(Block(32, 64, 2), Block(64, 64))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.stage2(self.stage1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(nn.Module):
    """MobileNet-v2's block: 1x1 expand, 3x3 depthwise, linear 1x1 projection, residual when shapes keep."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


# (expansion, channels, blocks, first stride) per stage: the shape of the `mobilenet_v2_small` family at twice
# its width. At `mobilenet_v2_small`'s own width (8-48 channels, stem 16, last 256) the network is bound by
# per-operator overhead: on onnxruntime with 1 thread its narrowest multiplier (x0.1) still measured 45 % of
# the widest, so no width choice reaches the 40 % and 25 % budgets (a uniform8 bisection raised
# NoMultiplierFits at 40 %). At twice the width x0.1 measured 19 % (measured 2026-12-05: onnxruntime, 1 thread, best of 5 rounds of 0.2 s).
MBV2_STAGES = ((1, 16, 1, 1), (6, 32, 2, 2), (6, 48, 2, 2), (6, 64, 2, 2), (6, 96, 2, 1))


class SmallMobileNetV2(nn.Module):
    """A MobileNet-v2 for 28x28x1 images, written as a user would (torchvision's layout, ReLU6)."""

    def __init__(self, num_classes: int = 10, stem: int = 32, last: int = 512):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6(inplace=True)]
        c = stem
        for t, out, n, s in MBV2_STAGES:
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        layers += [nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def small_resnet() -> nn.Module:
    return SmallResNet()


def small_mobilenet_v2() -> nn.Module:
    return SmallMobileNetV2()


MODELS = {"resnet": "widthnas.benchmarks.compress_models:small_resnet",
          "mbv2": "widthnas.benchmarks.compress_models:small_mobilenet_v2"}


def classifier(model: nn.Module) -> nn.Module:
    """The layer a pruner must leave alone: the model's last Linear (its outputs are the classes)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
