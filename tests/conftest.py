import os
import sys
from pathlib import Path

import numpy as np
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
    from widthnas.models import mobilenet_v1_small

    return mobilenet_v1_small()


@pytest.fixture(scope="session")
def tiny():
    """A 4-layer MobileNet-v1 small enough to enumerate and to time quickly (groups stem, block1-3)."""
    from widthnas.models.graph_families import mobilenet_v1_like

    return mobilenet_v1_like("tiny", [16, 32, 32, 64], [1, 2, 1, 2], (1, 16, 16), 10,
                             [(8, 16), (8, 16, 24), (16, 32), (16, 32, 48)])


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


class FakeMachine:
    """A clock that advances only when a network runs or the caller sleeps (seconds).

    A run of `ms` takes ms x (1 + noise x N(0, 1)) (deterministic seed). `bursts` inject load: a run
    starting inside [start, end) s is slowed by `net` (a network) or `ref` (the reference) with
    probability `share` (1: every run; less: an interrupted, flickering machine)."""

    def __init__(self, net_ms: float = 2.0, ref_ms: float = 4.0, noise: float = 0.0, seed: int = 0, bursts=()):
        self.t, self.rng, self.noise, self.bursts = 0.0, np.random.default_rng(seed), noise, list(bursts)
        self.net, self.ref = self.runner(net_ms), self.runner(ref_ms, "ref")
        self.calls = 0

    def runner(self, ms: float, kind: str = "net"):
        return lambda: self._run(ms, kind)

    def _run(self, ms: float, kind: str) -> None:
        self.calls += 1
        f = max(0.05, 1 + self.noise * self.rng.standard_normal())
        for b in self.bursts:
            if b["start"] <= self.t < b["end"] and self.rng.random() < b.get("share", 1.0):
                f *= b[kind]
        self.t += ms / 1e3 * f

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def chain_truth(space, extra: float = 0.0):
    """A chain space's true latency, ms: additive over consecutive layer pairs (what a table can
    represent), plus `extra` x a first-last layer interaction it cannot."""
    def ms(widths) -> float:
        w = [space.input_shape[0]] + [int(x) for x in widths]
        pairs = sum(w[i] * w[i + 1] for i in range(len(w) - 1))
        return 0.1 + 2e-4 * pairs + 1e-3 * sum(w) + extra * 1e-4 * w[1] * w[-1]
    return ms


class FakeBackend:
    """A latency backend on a FakeMachine: the network of `widths` runs `truth(widths)` ms times a
    per-session factor (each open() is a fresh session, as a new onnxruntime session is: `session_noise`
    relative spread). It brings its own clock and sleep (latency.backends.clocks)."""

    def __init__(self, space, machine: FakeMachine, truth=None, session_noise: float = 0.0, seed: int = 0):
        self.space, self.machine, self.truth = space, machine, truth or chain_truth(space)
        self.rng, self.session_noise, self.opened = np.random.default_rng(seed + 1), session_noise, 0
        self.clock, self.sleep = machine.clock, machine.sleep

    def device_info(self) -> dict:
        from widthnas.latency import standalone_runner as sr

        return sr.device_info("fake", "FakeProvider", 1, 1, "all", "0")

    def open(self, widths):
        self.opened += 1
        kind = "ref" if list(widths) == list(self.space.reference_widths) else "net"
        f = max(0.2, 1 + self.session_noise * self.rng.standard_normal())
        return self.machine.runner(self.truth(widths) * f, kind)


@pytest.fixture(scope="session")
def fakes():
    """The simulated machine and backend (FakeMachine, FakeBackend, chain_truth) for timing tests."""
    from types import SimpleNamespace

    return SimpleNamespace(Machine=FakeMachine, Backend=FakeBackend, truth=chain_truth)


@pytest.fixture(scope="session")
def run_without_torch():
    """Run `code` in a fresh interpreter where importing torch fails: the parts of widthnas that
    promise to need no torch (mrf/) are checked that way. Returns the finished subprocess."""
    import subprocess
    import textwrap

    block = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] == 'torch':
                    raise ImportError('blocked in this test: ' + name)
        sys.meta_path.insert(0, Block())
    """)

    def run(code: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", block + textwrap.dedent(code), *args], capture_output=True,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)

    return run


# ---- brute force: the oracle every MRF solver test is checked against ------------------------------
def enumerate_mrf(mrf, terms=None):
    """Every configuration of a small GraphMRF: (idx (P, groups) in row-major order, latency (P,) ms,
    score (P,)). With terms = (score_unary, lat_unary, [(i, j, lat[, score]), ...], intercept) the sums
    are taken straight from those raw terms, not through the model (whose merging of factors per pair
    is then under test too); without, through mrf.evaluate."""
    import itertools

    idx = np.array(list(itertools.product(*[range(len(c)) for c in mrf.choices])))
    if terms is None:
        lat, sc = mrf.evaluate(idx)
        return idx, lat, sc
    su, lu, raw, icpt = terms
    lat = icpt + sum(l[idx[:, g]] for g, l in enumerate(lu)) + sum(f[2][idx[:, f[0]], idx[:, f[1]]] for f in raw)
    sc = sum(s[idx[:, g]] for g, s in enumerate(su)) + sum(f[3][idx[:, f[0]], idx[:, f[1]]] for f in raw
                                                           if len(f) > 3 and f[3] is not None)
    return idx, lat, sc


def brute_force(mrf, budget: float, terms=None):
    """The best score within `budget` ms by enumeration, and one configuration (idx) reaching it."""
    idx, lat, sc = enumerate_mrf(mrf, terms)
    ok = np.flatnonzero(lat <= budget)
    if not len(ok):
        raise ValueError(f"brute force: no configuration within {budget} ms (fastest {lat.min()} ms)")
    k = ok[np.argmax(sc[ok])]
    return float(sc[k]), [int(x) for x in idx[k]]



# ---- networks, ONNX and synthetic devices: shared by the model, ONNX and latency tests --------------
def ort_run(model, x: np.ndarray) -> np.ndarray:
    """The first output of an ONNX model (a ModelProto, its bytes, or a file path) on CPU for input x."""
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    s = ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def scramble_bn(net, seed: int = 0):
    """Non-trivial BN statistics and affine parameters (seeded), so slicing or folding mistakes show."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                for t in (m.running_mean, m.weight, m.bias):
                    t.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
    return net


def draw_widths(space, kind: str, n: int, seed: int) -> np.ndarray:
    """(n, free groups) channels: n networks as the profiler's sampler ('uniform' or 'coverage') draws them."""
    from widthnas.latency.graph_sampling import make_sampler

    s, out = make_sampler(space, kind, seed), []
    for _ in range(n):
        w = s.next()
        s.observe(w)
        out.append(w)
    return np.array(out)


def synthetic_device(space, n: int, seed: int, noise: float = 0.0, quirk: float = 0.0):
    """(true GraphLatencyTable, Samples of n uniform networks timed on it, ms). The truth is what the fit's
    model can hold: per signature a bilinear cost in channels (linear for ops that keep their channels),
    each entry off it by up to `quirk` (relative); the timings carry `noise` (relative, seeded by `seed`);
    the reference ran at one speed (ref_ms 1, norm = ms)."""
    from widthnas.latency.graph_entries import GraphEntries
    from widthnas.latency.graph_table import GraphLatencyTable
    from widthnas.latency.samples import Samples

    e = GraphEntries(space)
    rng = np.random.default_rng(123)  # the device: the same for every seed
    costs = np.zeros(e.E)
    for sig, idx in e.by_signature().items():
        ci = np.array([e.keys[i].c_in for i in idx], float)
        co = np.array([e.keys[i].c_out for i in idx], float)
        a, b = rng.uniform(0.5, 2, 2)
        t = 1e-3 * b * ci if e.diagonal(sig) else 1e-4 * a * ci * co + 1e-3 * b * (ci + co)
        costs[idx] = t * (1 + quirk * rng.uniform(-1, 1, len(idx)))
    truth = GraphLatencyTable(space, costs, 0.01, 1.0, {"cpu": "synthetic"})
    w = draw_widths(space, "uniform", n, seed)
    ms = truth.predict_many(w) * (1 + noise * np.random.default_rng(seed).standard_normal(n))
    return truth, Samples({"device": {"cpu": "synthetic"}}, w, ms, ms, np.ones(n), 0)


def calibrate_bn(net, space, seed: int = 0):
    """Real BN statistics from one train-mode pass (momentum 1) on random images, affine parameters off
    identity: the activations stay normalised, so the logits depend on the image and a wrong op shows in
    them (scramble_bn's random statistics can leave a deep network's logits constant). Returns it in eval."""
    import torch

    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.train()
    with torch.no_grad():
        net(torch.rand(16, *space.input_shape))
    return net.eval()
