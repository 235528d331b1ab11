"""Models written the way users write them, for tests/test_trace*.py (`widthnas space --from-model
trace_models:resnet18_small`): a torchvision-style basic-block ResNet, a torchvision-style
MobileNet-v2 (inverted residuals, depthwise convs, ReLU6 in Sequentials), and models with ops a space
cannot hold. Nothing here imports widthnas: these are the user's side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ---- ResNet, written as torchvision writes it ------------------------------------------------
def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)  # called twice, as in torchvision
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes: int = 1000, in_chans: int = 3,
                 small_stem: bool = False):
        super().__init__()
        self.inplanes = widths[0]
        if small_stem:  # 3x3 stride-1 stem, no max-pool: for 28-32 px images
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layers = len(layers)
        for i, (w, n) in enumerate(zip(widths, layers), start=1):
            setattr(self, f"layer{i}", self._make_layer(w, n, stride=1 if i == 1 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[len(layers) - 1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        for i in range(1, self.layers + 1):
            x = getattr(self, f"layer{i}")(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def resnet18_small() -> ResNet:
    """ResNet-18 at half width for 1x28x28 images, 10 classes: the same network as widthnas's resnet_small."""
    return ResNet((2, 2, 2, 2), (32, 64, 128, 256), num_classes=10, in_chans=1, small_stem=True)


def resnet_tiny() -> ResNet:
    """Two stages of one basic block, 32 and 64 channels, 1x16x16 images: for end-to-end runs."""
    return ResNet((1, 1), (32, 64), num_classes=10, in_chans=1, small_stem=True)


# ---- MobileNet-v2, written as torchvision writes it ------------------------------------------
class ConvBNReLU(nn.Sequential):
    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        padding = (kernel_size - 1) // 2
        super().__init__(nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(out_planes), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers += [ConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                   nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, settings, stem: int = 32, last: int = 1280, num_classes: int = 1000, in_chans: int = 3,
                 stem_stride: int = 2, dropout: float = 0.2):
        super().__init__()
        features: list[nn.Module] = [ConvBNReLU(in_chans, stem, stride=stem_stride)]
        c_in = stem
        for t, c, n, s in settings:
            for i in range(n):
                features.append(InvertedResidual(c_in, c, s if i == 0 else 1, expand_ratio=t))
                c_in = c
        features.append(ConvBNReLU(c_in, last, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v2_small() -> MobileNetV2:
    """The same network as widthnas's mobilenet_v2_small: 1x28x28, 10 classes, stride-1 stem of 16."""
    return MobileNetV2([(1, 8, 1, 1), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 2, 2), (6, 48, 2, 1)], stem=16, last=256,
                       num_classes=10, in_chans=1, stem_stride=1)


def mobilenet_v2_tiny() -> MobileNetV2:
    """Three stages, 1x16x16 images: for end-to-end runs."""
    return MobileNetV2([(1, 16, 1, 1), (6, 24, 2, 2)], stem=32, last=128, num_classes=10, in_chans=1, stem_stride=1)


# ---- what a space cannot hold ----------------------------------------------------------------
class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class ArithmeticSwish(nn.Module):
    """x * sigmoid(x) written out (EfficientNet ports): a product of two maps, refused."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x * torch.sigmoid(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SEBlockNet(nn.Module):
    """MobileNet-v3 style: inverted residual with squeeze-excitation (hard-sigmoid gate, searchable hidden
    width) and Hardswish."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), nn.BatchNorm2d(64))
        self.se1, self.se2 = nn.Conv2d(64, 32, 1), nn.Conv2d(32, 64, 1)
        self.project = nn.Sequential(nn.Conv2d(64, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(self.expand(x))
        s = F.hardsigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(y, 1)))))
        x = x + self.project(y * s)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def se_block_net() -> SEBlockNet:
    torch.manual_seed(0)
    return SEBlockNet()


class WithSE(nn.Module):
    """A conv net with a squeeze-excitation block (x * sigmoid(...))."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.se = SqueezeExcite(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.se(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MLPHead(nn.Module):
    """Pooled features through a hidden Linear layer (an MLP head), as many users' classifiers are."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
                                      nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32, 48), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                  nn.Linear(48, 10))

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1))


class ConvHead(nn.Module):
    """MobileNet-v3's head: the pooled features through a 1x1 conv with a bias and hardswish, then a 1x1
    conv classifier; squeeze-excitation before it, with hardsigmoid."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.Hardswish())
        self.se = SqueezeExcite(16)
        self.final = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Conv2d(32, 40, 1)
        self.act = nn.Hardswish()
        self.drop = nn.Dropout(0.2)
        self.classifier = nn.Conv2d(40, 10, 1)

    def forward(self, x):
        x = self.pool(self.final(self.se(self.stem(x))))
        x = self.classifier(self.drop(self.act(self.hidden(x))))
        return x.view(x.size(0), -1)


class XBlock(nn.Module):
    """ResNeXt's bottleneck: 1x1, a grouped 3x3 (in = out, `groups` blocks), 1x1, residual; squeeze-excitation
    on the grouped conv's output when `se` (RegNetY)."""

    def __init__(self, c_in: int, width: int, c_out: int, groups: int, stride: int = 1, se: bool = False):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.b = nn.Sequential(nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False),
                               nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.se = SqueezeExcite(width) if se else nn.Identity()
        self.c = nn.Sequential(nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.down = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                     if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        return F.relu(idt + self.c(self.se(self.b(self.a(x)))))


class ResNeXtTiny(nn.Module):
    """Grouped convs as ResNeXt and RegNet write them: 4 blocks of 8 channels, then 3 blocks of 16."""

    def __init__(self, se: bool = False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = XBlock(16, 32, 16, groups=4, se=se)
        self.layer2 = XBlock(16, 48, 32, groups=3, stride=2, se=se)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnext_se_tiny() -> ResNeXtTiny:
    torch.manual_seed(0)
    return ResNeXtTiny(se=True)


class SmallVGG(nn.Module):
    """VGG's head: the 4x4 feature map flattened (not pooled) into hidden Linear layers, then the classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
                                      nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.classifier = nn.Sequential(nn.Linear(32 * 4 * 4, 64), nn.ReLU(inplace=True), nn.Dropout(0.5),
                                        nn.Linear(64, 48), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(48, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class FlatClassifier(nn.Module):
    """A classifier straight on a flattened, unpooled map: refused (no hidden layer to carry the map)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, stride=4, padding=1, bias=False), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(self.features(x).view(x.size(0), -1))


class _Base(nn.Module):
    """conv-bn-relu stem of 16 channels, then `body`, then pool and classifier."""

    def __init__(self, c_out: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(c_out, 10)

    def head(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class WithCat(_Base):
    """Two branches joined by torch.cat (DenseNet / Inception style)."""

    def __init__(self):
        super().__init__(32)
        self.a = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.b = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


class WithStack(_Base):
    """Two branches stacked on a new axis (refused: only channel concatenation is a space's join)."""

    def __init__(self):
        super().__init__(16)
        self.a = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.stack([self.a(x), x], dim=1).sum(1))


class DenseLayer(nn.Module):
    """DenseNet-BC's layer: BN-ReLU-1x1 conv, BN-ReLU-3x3 conv, its output concatenated to its input."""

    def __init__(self, c_in: int, growth: int, bottleneck: int = 2):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, bottleneck * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck * growth)
        self.conv2 = nn.Conv2d(bottleneck * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        y = self.conv1(torch.relu(self.bn1(x)))
        y = self.conv2(torch.relu(self.bn2(y)))
        return torch.cat([x, y], 1)


class TinyDenseNet(nn.Module):
    """A DenseNet-BC for 1-channel images: dense blocks of `layers`, a transition (BN-ReLU-1x1 conv halving
    the channels, 2x2 average pool) between them, a pre-activation head."""

    def __init__(self, growth: int = 16, layers: tuple[int, ...] = (3, 2), stem: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        c, mods = stem, []
        for k, n in enumerate(layers):
            for _ in range(n):
                mods.append(DenseLayer(c, growth))
                c += growth
            if k < len(layers) - 1:
                mods += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        self.features = nn.Sequential(*mods, nn.BatchNorm2d(c), nn.ReLU())
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(c, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(self.stem(x))), 1))


def tiny_densenet() -> TinyDenseNet:
    return TinyDenseNet()


class WithSplit(_Base):
    """Channels split in two halves (ShuffleNet-v2 style)."""

    def __init__(self):
        super().__init__(8)
        self.conv = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))

    def forward(self, x):
        a, b = self.stem(x).chunk(2, dim=1)
        return self.head(self.conv(a) + b)


class WithGrouped(_Base):
    def __init__(self):
        super().__init__(32)
        self.conv = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(32))

    def forward(self, x):
        return self.head(self.conv(self.stem(x)))


class WithoutBN(_Base):
    def __init__(self):
        super().__init__(32)
        self.conv = nn.Conv2d(16, 32, 3, padding=1)

    def forward(self, x):
        return self.head(F.relu(self.conv(self.stem(x))))


class ConvBNAndMore(_Base):
    """A conv whose output feeds its BN and an add: the BN cannot fold into it."""

    def __init__(self):
        super().__init__(16)
        self.conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)

    def forward(self, x):
        y = self.conv(self.stem(x))
        return self.head(F.relu(self.bn(y)) + y)


class PlainConvs(nn.Module):
    """Convs without BN, as in VGG or a plain depthwise conv: with a bias and without, dense and depthwise,
    a residual add straight from a conv, and one conv with a BN whose own bias folds into it."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)  # bias, no BN
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)  # depthwise, bias, no BN
        self.pw = nn.Conv2d(32, 32, 1, bias=False)  # no bias, no BN, its output feeds an add
        self.c2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)  # bias folded into its BN
        self.bn2 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = x + self.pw(F.relu6(self.dw(x)))
        x = F.relu(self.bn2(self.c2(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def plain_convs() -> PlainConvs:
    torch.manual_seed(0)
    return PlainConvs()


class PreActBlock(nn.Module):
    """He et al. 2016: BN-ReLU-conv twice; the second conv's output feeds the add directly."""

    def __init__(self, c: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        return x + self.conv2(F.relu(self.bn2(y)))


class PreActNet(nn.Module):
    """A pre-activation ResNet: a BN on the input, BNs after a max-pool and after adds."""

    def __init__(self):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(1)
        self.stem = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.b1, self.b2 = PreActBlock(32), PreActBlock(32)
        self.post = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.stem(self.bn_in(x)))
        x = self.b2(self.b1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.post(x)), 1), 1))


def preact_net() -> PreActNet:
    torch.manual_seed(0)
    m = PreActNet()
    for mod in m.modules():  # trained-looking statistics and affine parameters: what the BNs compute matters
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.2, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m


class Pools(nn.Module):
    """VGG / SqueezeNet / ShuffleNet shapes: convs with padding 0 and an even kernel, 2x2 max-pools,
    a ceil_mode pool on an odd size."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=0)  # 17 -> 15 px
        self.p1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # 15 -> 7 px
        self.c2 = nn.Conv2d(32, 32, 2, padding=1, bias=False)  # even kernel: 7 -> 8 px
        self.bn2 = nn.BatchNorm2d(32)
        self.p2 = nn.MaxPool2d(2, 2)  # 8 -> 4 px
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.p1(F.relu(self.c1(x)))
        x = self.p2(F.relu(self.bn2(self.c2(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def pools() -> Pools:
    torch.manual_seed(0)
    return Pools()


class WithTanh(_Base):
    def __init__(self):
        super().__init__(16)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.head(self.act(self.stem(x)))


class ModernActs(nn.Module):
    """The activations of today's mobile networks, as modules and functionals, after BNs ported from
    TensorFlow (eps 1e-3, momentum 0.01), with a residual block (MobileNet-v3 / EfficientNet style,
    without squeeze-excitation)."""

    def __init__(self, act: str = "hardswish"):
        super().__init__()
        bn = lambda c: nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)  # noqa: E731
        self.act = act
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), bn(16), nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), bn(32), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), bn(32))
        self.project = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), bn(16))
        self.down = nn.Sequential(nn.Conv2d(16, 24, 3, stride=2, padding=1, bias=False), bn(24),
                                  nn.LeakyReLU(0.1))
        self.last = nn.Sequential(nn.Conv2d(24, 32, 1, bias=False), bn(32), nn.GELU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(self.expand(x)).sigmoid()
        y = {"hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid, "sigmoid": torch.sigmoid,
             "silu": F.silu, "gelu": F.gelu}[self.act](y)
        x = x + self.project(y)
        x = F.leaky_relu(self.down(x), 0.2)
        x = self.last(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def modern_acts() -> ModernActs:
    torch.manual_seed(0)
    return ModernActs("hardsigmoid")


class Dynamic(_Base):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def forward(self, x):
        x = self.stem(x)
        if x.sum() > 0:
            x = x * 2
        return self.head(x)


class TwoOutputs(_Base):
    def forward(self, x):
        x = self.stem(x)
        return self.head(x), x


class FunctionalNet(nn.Module):
    """Functional spellings: F.relu, F.relu6, torch.add, +=, x.mean((2, 3)), view, F.max_pool2d, a conv
    bias before its BN, a Dropout, an unused module; 1x16x16, 10 classes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1, bias=True)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 5, stride=2, padding=2, groups=16, bias=False)
        self.bdw = nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 24, 1, bias=False)
        self.b3 = nn.BatchNorm2d(24)
        self.drop = nn.Dropout(0.1)
        self.unused = nn.Linear(3, 3)
        self.out = nn.Linear(24, 10)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(x))
        y += x
        x = torch.add(F.relu6(y), x)
        x = F.max_pool2d(x, 3, 1, 1)
        x = self.b3(self.c3(F.relu(self.bdw(self.dw(x)))))
        x = x.relu().mean((2, 3))
        return self.out(self.drop(x.view(x.size(0), -1)))


def not_a_module():
    return 42


def raises():
    raise RuntimeError("no GPU found")
