"""Plain functions and settings the tests share (fixtures are in conftest.py). The oracles the rest
follow: brute-force enumeration (enumerate_mrf, brute_force), onnxruntime against PyTorch on random
inputs (ort_run, assert_onnx_computes), and networks whose BN makes a wrong op show (scramble_bn,
calibrate_bn)."""
import contextlib
import json
from pathlib import Path

import numpy as np

SYNTHETIC = {"cpu": "synthetic"}  # the device of a stand-in profile


# ---- spaces and data ----------------------------------------------------------------------------------
def make_graph_toy(name: str, side: int):
    """A graph space small enough to enumerate: two inverted-residual blocks tied by adds (group s0), a
    stride-2 conv, the head; the input channels and the classes are fixed groups. side x side grey input."""
    from widthnas.models.graph import GraphBuilder
    from widthnas.models.space import GraphSpace

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


def write_bar_dataset(path, n_train: int, n_test: int, seed: int, side: int = 16):
    """A learnable .npz of side x side grey images (side 10 or more): a bright bar whose row encodes the
    class (row c + 3, columns 2-13 at 16 px; row 2c + 4, columns 4-23 at 28 px). Returns the path."""
    rng = np.random.default_rng(seed)
    step = side // 10

    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, side, side)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, step * c + (side - 10 * step) // 2, 2 * step:side - 2 * step] = 250
        return x, y

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


def write_inputs(d: Path, space, n_train: int, n_test: int, seed: int) -> Path:
    """What a training run reads, in folder d: the space (space.json) and bar images (data.npz). Returns d."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "space.json").write_text(json.dumps(space.to_dict()))
    write_bar_dataset(d / "data.npz", n_train, n_test, seed)
    return d


def train_config(d: Path, **kw):
    """A TrainConfig on write_inputs' files in d, at the tests' small batch (32) on one thread; kw sets the rest."""
    from widthnas.nas.train import TrainConfig

    return TrainConfig(**{"space": str(d / "space.json"), "dataset": "npz", "data": str(d / "data.npz"),
                          "batch_size": 32, "threads": 1, **kw})


# ---- timing settings: one fast set for the tests that time real networks on this machine --------------
# 2 rounds of 1 ms per network while profiling, 5 ms verification rounds, a 2-rung ladder and few networks,
# without the load guard: these 0.02-0.1 ms networks spread past its thresholds on a busy machine, and a
# guard that waits out a busy machine (up to 2 x 60 s per sample) would only slow the tests. The guard is
# tested on a scripted clock (tests/test_timing.py) and kept on in tests/test_pipeline.py's run.
FAST_ROUNDS = dict(rounds=2, round_ms=1.0)  # sr.measure, measure_exported
# max_wait: a ladder (ladder_rungs) given up after 2 s of a drifted reference, not 30 (a noisy host: RESULTS §6)
FAST_TIMING = dict(profile_networks=12, heldout_networks=6, check_networks=4, profile_rounds=2, profile_round_ms=1.0,
                   ladder_rungs=2, verify_rounds=3, verify_round_ms=5.0, guard=False, max_wait=2.0)  # RunConfig
TINY_RUN = dict(batch_size=32, finetune_epochs=1, unary_configs=12, **FAST_TIMING)  # RunConfig: a tiny `widthnas run`


def fast_protocol():
    """profile()'s protocol at FAST_ROUNDS, without the load guard."""
    from widthnas.latency import standalone_runner as sr

    return sr.Protocol(**FAST_ROUNDS, guard=None)


QUICK_VERDICT_MAX = 4  # quick_timing's timings before a budget verdict says "cannot tell"


@contextlib.contextmanager
def quick_timing():
    """Defaults that no option reaches (CLI commands and benchmarks run in-process) shortened for tiny
    networks on a noisy host: a sample's rounds capped at 3 x (not 12 x) its rounds, verification timings
    3 rounds of 5 ms (not 7 of 20 ms), a budget verdict "cannot tell" after 4 timings (not 8: about a quarter
    of a tiny traced run went to verdicts), a default guard's wait 1 s (not 60), search's check of another
    machine's profile 8 networks (not 40), and the latency fit's cross-validated grid 2 x 2 x 2 (not 5 x 3 x 5:
    a 12-network profile of mobilenet_v2_small spent 20-30 s in it). The logic is the same; only the timings'
    precision drops (in the suite, on a noisy host, one check-and-verify test took 6 min; a search whose host
    slowed 1.4 x, 100 s). The fit's full grid is tested in test_fit.py, test_host_state.py."""
    from dataclasses import dataclass

    import pytest

    from widthnas.latency import check
    from widthnas.latency import fit
    from widthnas.latency import standalone_runner as sr
    from widthnas.latency import verdict
    from widthnas.nas import export

    @dataclass
    class QuickGuard(sr.GuardSettings):
        max_wait_s: float = 1.0

    @dataclass
    class QuickFit(fit.FitSettings):
        lams: tuple = (1.0, 100.0)
        mus: tuple = (0.0, 10.0)
        elasticities: tuple = (0.0, 0.5)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sr, "ROUNDS_CAP", 3)
        mp.setattr(export, "VERIFY_ROUNDS", 3)
        mp.setattr(export, "VERIFY_ROUND_MS", 5.0)
        mp.setattr(verdict, "MAX_MEASUREMENTS", QUICK_VERDICT_MAX)
        mp.setattr(sr, "GuardSettings", QuickGuard)
        mp.setattr(check, "CHECK_NETWORKS", 8)
        mp.setattr(fit, "FitSettings", QuickFit)
        mp.setattr(check, "check_protocol", lambda: sr.Protocol(check.CHECK_ROUNDS, guard=QuickGuard()))
        yield


def run_flags(settings: dict) -> list:
    """RunConfig settings as `widthnas run` flags (guard=False: --no-guard)."""
    flags = []
    for k, v in settings.items():
        if k == "guard":
            flags += [] if v else ["--no-guard"]
        else:
            flags += ["--" + k.replace("_", "-"), str(v)]
    return flags


# `widthnas run` on a traced model: TINY_RUN with 16 profiled networks, supernet trained 1 epoch (ows)
TRACED_RUN_FLAGS = [*run_flags({**TINY_RUN, "profile_networks": 16, "budget": "80%", "epochs": 1, "sampling": "ows"}),
                    "--quiet"]


# ---- stand-in latency profiles --------------------------------------------------------------------------
def width_table(space, ms_per_channel: float = 1e-3, intercept: float = 0.01, out_weight: float = 1.0):
    """A LatencyTable on a synthetic device where every entry costs (c_in + out_weight x c_out) x
    ms_per_channel ms: a wider network is slower. Reference 1 ms."""
    from widthnas.latency.entries import GraphEntries
    from widthnas.latency.table import LatencyTable

    costs = [(k.c_in + out_weight * k.c_out) * ms_per_channel for k in GraphEntries(space).keys]
    return LatencyTable(space, costs, intercept, 1.0, SYNTHETIC)


def random_costs(space, seed: int) -> np.ndarray:
    """Entries of 0.001-0.05 ms drawn at random (seeded), standing in for a fit."""
    from widthnas.latency.entries import GraphEntries

    return np.random.default_rng(seed).uniform(0.001, 0.05, GraphEntries(space).E)


def flat_costs(space) -> np.ndarray:
    """1 ms per entry."""
    from widthnas.latency.entries import GraphEntries

    return np.ones(GraphEntries(space).E)


# ---- what a finished run must show -----------------------------------------------------------------------
def check_budget_verdict(v: dict, budget_ms: float) -> np.ndarray:
    """The verify stage's verdict on the chosen network (v) follows from its timings: their 95 %
    t-interval judged against the search's budget. Returns the timings (ms)."""
    import pytest
    from scipy import stats

    bv = v["budget_verdict"]
    ms = np.array(bv["measurements_ms"])
    h = stats.t.ppf(0.975, len(ms) - 1) * ms.std(ddof=1) / np.sqrt(len(ms))
    assert bv["ci_low_ms"] == pytest.approx(ms.mean() - h) and bv["ci_high_ms"] == pytest.approx(ms.mean() + h)
    want = ("within" if bv["ci_high_ms"] < bv["budget_ms"] else "over" if bv["ci_low_ms"] > bv["budget_ms"]
            else "cannot tell at this noise")
    assert bv["verdict"] == want and v["within_budget"] == (want == "within")
    assert bv["budget_ms"] == budget_ms and v["normalised_ms"] == pytest.approx(ms.mean())
    return ms


def float32_atol(ref: np.ndarray) -> float:
    """1e-4, or float32 rounding at the scale of the logits when they are large: two libraries summing
    the same products in another order differ by ~1e-7 of the largest values they carry (with lively BNs
    those reach 1e4, where a logit near 0 can then be off by 1e-3 on one CPU and not on another). A
    wrong channel is off by the scale itself."""
    return max(1e-4, 1e-6 * float(np.abs(ref).max()))


def assert_onnx_computes(onnx_path, net, x) -> None:
    """The ONNX file computes the PyTorch network `net` on the images x (this test's own, random): logits
    that depend on the image, and onnxruntime's within 1e-4 of PyTorch's (float32_atol for large ones).
    The logits must spread over the images by 10 x that tolerance, so that an ONNX file computing a constant
    fails; a tiny network fine-tuned on bars may spread by only 50 x (CI saw 0.0055), hence not 100 x."""
    import torch

    x = torch.as_tensor(x)
    with torch.no_grad():
        ref = net.eval()(x).numpy()
    atol = float32_atol(ref)
    assert ref.std(axis=0).mean() > 10 * atol  # the logits depend on the image
    np.testing.assert_allclose(ort_run(onnx_path, x.numpy()), ref, rtol=1e-4, atol=atol)


def fine_tuned_network(out: Path, space, widths, name: str = "chosen"):
    """The network a run fine-tuned (out/final_<name>.pt) at `widths`."""
    import torch

    from widthnas.models.net import build_network

    net = build_network(space, widths)
    net.load_state_dict(torch.load(out / f"final_{name}.pt", weights_only=True))
    return net


def conv_out_channels(path) -> list:
    """The output channels of every Conv node of an ONNX file, in graph order."""
    import onnx

    m = onnx.load(str(path))
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    return [inits[n.input[1]][0] for n in m.graph.node if n.op_type == "Conv"]


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


def folded_weights(net) -> dict:
    """Fold a torch `models.GraphNet`'s BatchNorms into their convs (eval mode), as numpy."""
    import torch

    from widthnas.latency.onnx_graph import _bn_arrays
    from widthnas.models.net import module_key

    ops, out = net.space.graph.ops, {}
    with torch.no_grad():
        for op in ops:
            if op.kind == "conv":  # as it is; a BN after it (later in the ops) replaces this by the folded conv
                conv = net.layers[module_key(op)]
                out[op.name] = {"w": conv.weight.numpy().astype(np.float32).copy(),
                                "b": (conv.bias.numpy() if conv.bias is not None else
                                      np.zeros(conv.weight.shape[0])).astype(np.float32)}
            elif op.kind == "bn" and op.name not in net.space.graph.folded_bns:
                bn = net.layers[module_key(op)]
                out[op.name] = _bn_arrays(bn.weight.numpy(), bn.bias.numpy(), bn.running_mean.numpy(),
                                          bn.running_var.numpy())
            elif op.kind == "bn":
                conv, bn = net.layers[module_key(net.space.graph.by_name[op.inputs[0]])], net.layers[module_key(op)]
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                b0 = conv.bias if conv.bias is not None else torch.zeros_like(bn.bias)
                out[op.inputs[0]] = {"w": (conv.weight * scale.reshape(-1, 1, 1, 1)).numpy().astype(np.float32),
                                     "b": (bn.bias + (b0 - bn.running_mean) * scale).numpy().astype(np.float32)}
            elif op.kind == "linear":
                fc = net.layers[module_key(op)]
                out[op.name] = {"w": fc.weight.numpy().copy(), "b": fc.bias.numpy().copy()}
    return out


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
    from widthnas.latency.sampling import make_sampler

    s, out = make_sampler(space, kind, seed), []
    for _ in range(n):
        w = s.next()
        s.observe(w)
        out.append(w)
    return np.array(out)


def synthetic_device(space, n: int, seed: int, noise: float = 0.0, quirk: float = 0.0):
    """(true LatencyTable, Samples of n uniform networks timed on it, ms). The truth is what the fit's
    model can hold: per signature a bilinear cost in channels (linear for ops that keep their channels),
    each entry off it by up to `quirk` (relative); the timings carry `noise` (relative, seeded by `seed`);
    the reference ran at one speed (ref_ms 1, norm = ms)."""
    from widthnas.latency.entries import GraphEntries
    from widthnas.latency.table import LatencyTable
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
    truth = LatencyTable(space, costs, 0.01, 1.0, {"cpu": "synthetic"})
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


def lively_bn(model):
    """Trained-looking BatchNorms: unequal gammas (so importance ranks channels) and small variances (an untrained
    head's logits barely move otherwise). Seeded; returns the model in eval mode."""
    import torch

    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 1.5)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.01, 0.05)
    return model.eval()


def check_every_form(model, input_shape, tmp_path, seed: int = 1):
    """A traced model computes the same at a width narrower than its own in every form of its space: the
    plain network exported by torch (what `widthnas export` writes), the ONNX graph the latency profiles
    time (BN folded), and the supernet's functional forward. Returns (space, widths)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from widthnas.latency.onnx_graph import build_onnx
    from widthnas.models.net import SlimmableGraphNet
    from widthnas.models.trace import trace_model
    from widthnas.models.trace_weights import user_network
    from widthnas.nas.export import export_onnx

    space = trace_model(model, input_shape)  # raises unless the traced space reproduces the model
    widths = [c[max(0, min(len(c) // 2, len(c) - 2))] for c in space.choices]
    assert widths != space.base_widths  # narrower than the model
    net = user_network(space, model.state_dict(), widths).eval()
    # large inputs: an untrained model's pooled logits barely move with small ones
    x = 8 * np.random.default_rng(seed).standard_normal((3, *input_shape)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    export_onnx(net, space, tmp_path / "m.onnx")
    assert_onnx_computes(tmp_path / "m.onnx", net, x)
    sess = ort.InferenceSession(build_onnx(space, folded_weights(net)).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], ref, rtol=1e-4,
                               atol=float32_atol(ref))
    sup = SlimmableGraphNet(space).eval()
    sup.full.load_state_dict(user_network(space, model.state_dict(), space.max_widths).state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(sup(torch.from_numpy(x), widths).numpy(),
                                   sup.materialize(widths).eval()(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    return space, widths


def read_curve(csv_path) -> list:
    """The rows of a curve.csv (nas/curve.py's write_curve), numbers parsed and empty cells None."""
    import csv

    from widthnas.nas.curve import FIELDS

    with open(csv_path) as f:
        return [{"multiplier": float(r["multiplier"]), "widths": [int(v) for v in r["widths"].split()],
                 **{k: (float(r[k]) if r[k] else None) for k in FIELDS[2:]}} for r in csv.DictReader(f)]


REUSE_SPACES = {  # name -> a space whose passes reuse one another's (None: the tiny chain fixture); built in the test
    "chain": None,
    "residual": lambda: make_graph_toy("toy", 16),
    "densenet": lambda: traced_toy("TinyDenseNet", layers=(3, 2)),
    "se": lambda: traced_toy("se_block_net"),
    "grouped_se": lambda: traced_toy("resnext_se_tiny"),  # grouped convs (channel index tensors) and SE gates
}


def traced_toy(factory: str, **kw):
    """A model of tests/trace_models.py traced at 1x16x16."""
    import trace_models as tm
    from widthnas.models.trace import trace_model

    return trace_model(getattr(tm, factory)(**kw).eval(), (1, 16, 16))
