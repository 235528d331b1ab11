import os

# one thread per test process (make test runs two): torch's and numpy's BLAS, set before either loads.
# OpenBLAS reads it when numpy is imported (xdist's workers inherit it from the controller). In a plain
# `pytest` beside a busy core, two BLAS threads ran nas/unary_eval.choose_smooth's 35 small fits in 21.7 s
# against 0.35 s on one (2026-12-06; on an idle machine 0.46 s against 0.33 s)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import tempfile  # noqa: E402

# today's latency checks (latency/check_cache.py) go to a cache of this test process, never the user's
os.environ["WIDTHNAS_CACHE"] = tempfile.mkdtemp(prefix="widthnas-test-cache-")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.register_assert_rewrite("helpers")  # its checks (check_budget_verdict, ...) report as a test's asserts
from helpers import make_graph_toy, quick_timing  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def quick_timing_module():
    """helpers.quick_timing for a whole module: its tests and its module fixtures (a finished run)."""
    with quick_timing():
        yield


@pytest.fixture(scope="session")
def small():
    from widthnas.models import mobilenet_v1_small

    return mobilenet_v1_small()


@pytest.fixture(scope="session")
def tiny():
    """A 4-layer MobileNet-v1 small enough to enumerate and to time quickly (groups stem, block1-3)."""
    from widthnas.models.families import mobilenet_v1_like

    return mobilenet_v1_like("tiny", [16, 32, 32, 64], [1, 2, 1, 2], (1, 16, 16), 10,
                             [(8, 16), (8, 16, 24), (16, 32), (16, 32, 48)])


@pytest.fixture(scope="session")
def graph_toy():
    """The toy graph space (helpers.make_graph_toy) on 16x16 grey images."""
    return make_graph_toy("graph_toy", 16)


@pytest.fixture(scope="session")
def toy():
    """The toy graph space (helpers.make_graph_toy) on 8x8 grey images: its ops share signatures."""
    return make_graph_toy("toy", 8)


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
