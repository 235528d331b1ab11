"""Graph spaces in the training stages: unaries measured per channel group after training, and the
slimmable graph supernet trained with the sandwich rule (OWS)."""
import json

import numpy as np
import pytest
import torch

from helpers import SYNTHETIC, train_config, write_inputs
from widthnas.mrf.unaries import Unaries


def _splits(space, n=96, seed=0):
    from widthnas.nas.data import Splits

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 255, (n, *space.input_shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    m, s = torch.full((space.input_shape[0],), 0.5), torch.full((space.input_shape[0],), 0.25)
    return Splits((x, y), (x[:64], y[:64]), (x[64:], y[64:]), m, s)


def test_space_indices_round_trip(graph_toy):
    w = graph_toy.uniform(0.75)
    assert graph_toy.widths_from_indices(graph_toy.indices(w)) == w
    assert graph_toy.parse_widths("x0.75") == w
    assert graph_toy.parse_widths(json.dumps(dict(zip([g.name for g in graph_toy.free_groups], w)))) == w


def test_measure_unaries_per_group(graph_toy, tmp_path):
    from widthnas.models.net import SlimmableGraphNet
    from widthnas.nas.unary_eval import measure_unaries, sample_deltas

    torch.manual_seed(0)
    sup = SlimmableGraphNet(graph_toy)
    sp = _splits(graph_toy)
    idx, delta = sample_deltas(sup, sp, 20, batch=32, seed=1)
    assert idx.shape == (20, len(graph_toy.free_groups)) and np.isfinite(delta).all()
    top = [len(c) - 1 for c in graph_toy.choices]
    same = np.all(idx == top, axis=1)  # the widest network against itself: no loss increase
    assert np.allclose(delta[same], 0, atol=1e-6)
    u = measure_unaries(sup, sp, 24, batch=32, smooth=1.0, log=lambda *_: None)
    assert u.names == [g.name for g in graph_toy.free_groups]
    assert [len(l) for l in u.loss] == [len(c) for c in graph_toy.choices]
    assert all(l[-1] == 0 and np.all(np.diff(l) <= 1e-12) for l in u.loss)  # widest anchored, monotone
    u.save(tmp_path / "u.json")
    back = Unaries.load(tmp_path / "u.json")
    assert back.names == u.names and back.space_fingerprint == graph_toy.fingerprint
    one = measure_unaries(sup, sp, 0, batch=32, design="one-at-a-time", log=lambda *_: None)
    assert one.names == u.names and [len(l) for l in one.loss] == [len(l) for l in u.loss]


@pytest.fixture(scope="module")
def graph_inputs(tmp_path_factory, graph_toy):
    """The toy graph space as a file, bar images, and a stand-in graph profile (random entries, ms)."""
    from widthnas.latency.entries import GraphEntries
    from widthnas.latency.table import LatencyTable

    d = write_inputs(tmp_path_factory.mktemp("graph_train"), graph_toy, 128, 32, seed=2)
    keys = GraphEntries(graph_toy).keys
    costs = np.array([1e-5 * k.c_in * k.c_out + 1e-3 for k in keys])  # wider costs more, as on a device
    LatencyTable(graph_toy, costs, 0.05, 1.0, SYNTHETIC, {}, {}, "toy").save(d / "profile.json")
    return d


@pytest.mark.parametrize("sampling", ["ows", "aows"])
def test_trainer_on_a_graph_space(graph_inputs, graph_toy, tmp_path, sampling):
    from widthnas.models.net import SlimmableGraphNet
    from widthnas.nas.train import load_run, train

    d = graph_inputs
    cfg = train_config(d, epochs=2, n_random=1, sampling=sampling, warmup_epochs=1, budget="60%", refresh=1,
                       profile=str(d / "profile.json") if sampling == "aows" else None, channels_last=False,
                       device="cpu")
    t = train(cfg, tmp_path / "run", log=lambda *_: None, progress=False)
    assert isinstance(t.model, SlimmableGraphNet) and t.epoch == 2
    u = Unaries.load(tmp_path / "run" / "unaries.json")
    assert u.names == [g.name for g in graph_toy.free_groups] and u.space_fingerprint == graph_toy.fingerprint
    assert sum(c.sum() for c in u.count) == len(graph_toy.free_groups) * t.step // 2  # 1 sampled config per step
    if sampling == "aows":  # narrowing from the GraphMRF's marginals, logged per refresh
        rows = [json.loads(l) for l in (tmp_path / "run" / "narrowing.jsonl").read_text().splitlines()]
        assert rows and all(len(r["marginals"]) == len(graph_toy.free_groups) for r in rows)
        assert t.history[-1]["sampling"] == "aows"
    _, space, sup, _ = load_run(tmp_path / "run")
    assert space.fingerprint == graph_toy.fingerprint and isinstance(sup, SlimmableGraphNet)
    if sampling == "ows":  # the search command on this run: held-out selection with the training unaries
        from widthnas.nas.cli import main

        assert main(["search", "--profile", str(d / "profile.json"), "--run", str(tmp_path / "run"), "--unaries",
                     str(tmp_path / "run" / "unaries.json"), "--budget", "70%", "--margin", "0",
                     "--out", str(tmp_path / "c.json")]) == 0
        c = json.loads((tmp_path / "c.json").read_text())
        assert c["method"] == "select" and c["predicted_ms"] <= c["budget_ms"]
        assert {r["name"] for r in c["info"]["candidates"]} >= {"uniform", "greedy"} - {""}
        graph_toy.validate(c["widths"])
        assert main(["evaluate", "--run", str(tmp_path / "run"), "--config", str(tmp_path / "c.json"),
                     "--calib-images", "32"]) == 0
        assert main(["evaluate", "--run", str(tmp_path / "run"), "--widths", "x0.75", "--calib-images", "32"]) == 0


def test_aows_refuses_a_chain_profile_for_a_graph_space(graph_inputs, tmp_path):
    from widthnas.latency.registry import PROFILE_DIR
    from widthnas.nas.train import Trainer

    d = graph_inputs
    cfg = train_config(d, sampling="aows", budget="50%",
                       profile=str(PROFILE_DIR / "amd-epyc-2c_ort-cpu-1t-b1_mobilenet_v1_small.json"))
    with pytest.raises(ValueError, match="fingerprint"):
        Trainer(cfg, tmp_path / "r", log=lambda *_: None, progress=False)


def test_plain_graph_network_for_retraining(graph_toy):
    """`run --retrain-epochs` and the retrain curve build the plain GraphNet from scratch and train it."""
    from widthnas.models.net import GraphNet
    from widthnas.nas.finetune import train_plain
    from widthnas.nas.train import build_plain_network

    net = build_plain_network(graph_toy, graph_toy.uniform(0.5))
    assert isinstance(net, GraphNet) and net.widths == graph_toy.uniform(0.5)
    hist = train_plain(net, _splits(graph_toy), 1, batch_size=32, log=lambda *_: None, device="cpu")
    assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"])
