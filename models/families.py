"""The shipped search spaces (MobileNet-v1, MobileNet-v2, ResNet with basic blocks) and their lookup
by name: the one registry.

Each family is written once as ops; its groups (which widths the residual adds tie, which are free)
follow from the ops. The `_small` variants are for 28-32 px images (Fashion-MNIST: 1x28x28,
10 classes): stride-1 stems and no max-pool, so 28 px ends at 4x4 after three stride-2 stages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from .graph import GraphBuilder, GraphError
from .space import GraphSpace

# MobileNet-v1 (Howard et al. 2017, Table 1): per searchable layer, base channels and stride; layer 0 is
# the full 3x3 stem, the others depthwise-separable blocks (3x3 depthwise, then 1x1 pointwise).
_MBV1_CHANNELS = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
_MBV1_STRIDES = [2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
_MBV1_SMALL_STRIDES = [1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1]  # stem and block 6 at stride 1: 28 px -> 4x4

# MobileNet-v2 (Sandler et al. 2018, Table 2): (expansion t, channels c, blocks n, first stride s)
_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
_MBV2_SMALL = [(1, 8, 1, 1), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 2, 2), (6, 48, 2, 1)]


def _mobilenet_v2(name: str, input_shape, num_classes: int, stem: int, stem_stride: int, settings, last: int) -> GraphSpace:
    """Inverted residual blocks: 1x1 expand (free width per block) -> 3x3 depthwise (keeps it) ->
    1x1 linear projection; a residual add when stride is 1 and the block keeps its base width, which
    ties the stage's output widths into one group."""
    b = GraphBuilder(input_shape, num_classes)
    x = b.conv_bn("stem", "input", stem, 3, stem_stride, act="relu6")
    c_in = stem
    for i, (t, c, n, s) in enumerate(settings):
        for j in range(n):
            p, stride = f"s{i}.b{j}", (s if j == 0 else 1)
            h = b.conv_bn(f"{p}.expand", x, c_in * t, 1, act="relu6", tag=f"{p}.mid") if t != 1 else x
            h = b.conv_bn(f"{p}.dw", h, kernel=3, stride=stride, depthwise=True, act="relu6")
            h = b.conv_bn(f"{p}.project", h, c, 1, act=None, tag=f"s{i}")
            x = b.add(f"{p}.add", x, h) if stride == 1 and c_in == c else h
            c_in = c
    x = b.conv_bn("head", x, last, 1, act="relu6")
    b.head(x)
    return GraphSpace.from_graph(name, b.build())


def mobilenet_v1_like(name: str, channels: Sequence[int], strides: Sequence[int], input_shape, num_classes: int,
                      choices: Sequence[Sequence[int]] | None = None) -> GraphSpace:
    """A chain: the stem conv, then per block a 3x3 depthwise conv (keeps its input's group) and a
    1x1 pointwise conv that starts the block's group; every group is free. Group i is layer i
    ("stem", "block1", ...), so widths list one channel count per layer, as the paper's space does.
    choices: per layer (default: 0.2x-1.5x of its channels in 14 levels, multiples of 8)."""
    b = GraphBuilder(input_shape, num_classes)
    x = b.conv_bn("stem", "input", channels[0], 3, strides[0])
    for i, (c, s) in enumerate(zip(channels[1:], strides[1:]), start=1):
        x = b.conv_bn(f"block{i}.dw", x, kernel=3, stride=s, depthwise=True)
        x = b.conv_bn(f"block{i}", x, c, 1)
    b.head(x)
    names = ["stem"] + [f"block{i}" for i in range(1, len(channels))]
    return GraphSpace.from_graph(name, b.build(), dict(zip(names, choices)) if choices is not None else None)


def _resnet(name: str, input_shape, num_classes: int, stem_kernel: int, stem_stride: int, maxpool: bool,
            widths: Sequence[int], blocks: Sequence[int]) -> GraphSpace:
    """Basic blocks (3x3 -> 3x3, add, ReLU): the adds tie each stage's width into one group (stage 1's
    to the stem, through its identity shortcuts); the inner width of every block is free. A block
    that changes stride or base width has a 1x1 projection shortcut."""
    b = GraphBuilder(input_shape, num_classes)
    x = b.conv_bn("stem", "input", widths[0], stem_kernel, stem_stride, tag="s1")
    if maxpool:
        x = b.maxpool("stem.pool", x, 3, 2)
    c_in = widths[0]
    for i, (c, n) in enumerate(zip(widths, blocks), start=1):
        for j in range(n):
            p, stride = f"s{i}.b{j}", (2 if i > 1 and j == 0 else 1)
            h = b.conv_bn(f"{p}.conv1", x, c, 3, stride, tag=f"{p}.mid")
            h = b.conv_bn(f"{p}.conv2", h, c, 3, act=None, tag=f"s{i}")
            short = b.conv_bn(f"{p}.down", x, c, 1, stride, act=None) if stride != 1 or c_in != c else x
            x = b.act(f"{p}.out", b.add(f"{p}.add", short, h))
            c_in = c
    b.head(x)
    return GraphSpace.from_graph(name, b.build())


def mobilenet_v1() -> GraphSpace:
    """The AOWS paper's space: MobileNet-v1 on 224x224x3, 1000 classes."""
    return mobilenet_v1_like("mobilenet_v1", _MBV1_CHANNELS, _MBV1_STRIDES, (3, 224, 224), 1000)


def mobilenet_v1_small() -> GraphSpace:
    """The demo space: half-width MobileNet-v1 for 28-32 px images, 10 classes."""
    return mobilenet_v1_like("mobilenet_v1_small", [c // 2 for c in _MBV1_CHANNELS], _MBV1_SMALL_STRIDES, (1, 28, 28), 10)


def mobilenet_v2() -> GraphSpace:
    """MobileNet-v2 1.0 on 224x224x3, 1000 classes (300 M multiply-adds at base widths)."""
    return _mobilenet_v2("mobilenet_v2", (3, 224, 224), 1000, 32, 2, _MBV2, 1280)


def mobilenet_v2_small() -> GraphSpace:
    """Half-width MobileNet-v2 for 28-32 px images, 10 classes; stride-1 stem, 28 px -> 4x4."""
    return _mobilenet_v2("mobilenet_v2_small", (1, 28, 28), 10, 16, 1, _MBV2_SMALL, 256)


def resnet() -> GraphSpace:
    """ResNet-18 on 224x224x3, 1000 classes (1.8 G multiply-adds at base widths)."""
    return _resnet("resnet", (3, 224, 224), 1000, 7, 2, True, (64, 128, 256, 512), (2, 2, 2, 2))


def resnet_small() -> GraphSpace:
    """Half-width ResNet-18 for 28-32 px images, 10 classes: 3x3 stride-1 stem, no max-pool, 28 px -> 4x4."""
    return _resnet("resnet_small", (1, 28, 28), 10, 3, 1, False, (32, 64, 128, 256), (2, 2, 2, 2))


SPACES: dict[str, Callable[[], GraphSpace]] = {
    f.__name__: f for f in (mobilenet_v1, mobilenet_v1_small, mobilenet_v2, mobilenet_v2_small, resnet, resnet_small)}


def get_space(name_or_path: str) -> GraphSpace:
    """A shipped space by name, or a space JSON file."""
    if name_or_path in SPACES:
        return SPACES[name_or_path]()
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        return GraphSpace.load(p)
    raise GraphError(f"unknown search space {name_or_path!r}; shipped: {sorted(SPACES)}, or give a space JSON "
                     "file (`widthnas space --space NAME --json`)")


