import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small():
    from widthnas.models.space import mobilenet_v1_small

    return mobilenet_v1_small()


@pytest.fixture(scope="session")
def tiny():
    """A 4-layer space small enough to enumerate and to time quickly."""
    from widthnas.models.space import LayerSpec, SearchSpace

    layers = (
        LayerSpec("stem", "conv", 1, 16, (8, 16)),
        LayerSpec("block1", "dwsep", 2, 32, (8, 16, 24)),
        LayerSpec("block2", "dwsep", 1, 32, (16, 32)),
        LayerSpec("block3", "dwsep", 2, 64, (16, 32, 48)),
    )
    return SearchSpace("tiny", (1, 16, 16), 10, layers)


@pytest.fixture(scope="session")
def write_bar_dataset():
    """Writes a learnable .npz of 16x16 grey images: a bright bar whose row encodes the class."""
    import numpy as np

    def write(path, n_train: int, n_test: int, seed: int):
        rng = np.random.default_rng(seed)

        def make(n):
            y = rng.integers(0, 10, n)
            x = rng.integers(0, 60, (n, 16, 16)).astype(np.uint8)
            for i, c in enumerate(y):
                x[i, c + 3, 2:14] = 250
            return x, y

        (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
        np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
        return path

    return write


@pytest.fixture(scope="session")
def make_graph_toy():
    """make(name, side) -> a graph space small enough to enumerate: two inverted-residual blocks tied
    by adds (group s0), a stride-2 conv, the head; the input channels and the classes are fixed
    groups. side x side grey input."""
    from widthnas.models.graph import GraphBuilder
    from widthnas.models.graph_space import GraphSpace

    def make(name: str, side: int):
        b = GraphBuilder((1, side, side), 10)
        x = b.conv_bn("stem", "input", 16, 3, 1, tag="s0")
        for j in range(2):
            h = b.conv_bn(f"b{j}.expand", x, 32, 1, tag=f"b{j}.mid")
            h = b.conv_bn(f"b{j}.dw", h, kernel=3, depthwise=True)
            h = b.conv_bn(f"b{j}.project", h, 16, 1, act=None, tag="s0")
            x = b.add(f"b{j}.add", x, h)
        x = b.conv_bn("down", x, 32, 3, 2, tag="s1")
        b.head(x)
        return GraphSpace.from_graph(name, b.build(), {"s0": (8, 16, 24), "b0.mid": (16, 24, 32, 40),
                                                       "b1.mid": (16, 24, 32, 40), "s1": (16, 24, 32)})

    return make


@pytest.fixture(scope="session")
def graph_toy(make_graph_toy):
    """The toy graph space on 16x16 grey images."""
    return make_graph_toy("graph_toy", 16)
