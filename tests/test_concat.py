"""Concatenation (DenseNet, Inception): each input of a cat keeps its own channel group at its channel offset,
and what reads the cat takes the sum of their widths. Checked against the user's model in every form of the
space, against importance-sliced weights, against a synthetic device that costs a conv by its whole input,
against brute force for the MRF, and, past the exact solver's reach, the fallback against exact answers."""
import itertools
import json

import numpy as np
import pytest
import torch

import trace_models as tm
from helpers import check_every_form, draw_widths, lively_bn
from widthnas.latency.entries import GraphEntries
from widthnas.latency.fit import FitSettings, fit_table
from widthnas.latency.samples import Samples
from widthnas.latency.table import LatencyTable
from widthnas.latency.validate import metrics
from widthnas.models.graph import GraphError
from widthnas.models.net import SlimmableGraphNet
from widthnas.models.space import GraphSpace
from widthnas.models.trace import trace_model
from widthnas.models.trace_weights import seed_supernet, user_network
from widthnas.mrf import GraphMRF, PairFactor, build_mrf, solvers, wide
from widthnas.mrf.unaries import from_arrays


def _dense(**kw):
    return trace_model(lively_bn(tm.TinyDenseNet(**kw)), (1, 16, 16))


@pytest.mark.parametrize("model", [tm.TinyDenseNet, tm.WithCat], ids=["densenet", "inception"])
def test_a_concatenation_traces_into_segments_and_every_form_computes_it(model, tmp_path):
    space, widths = check_every_form(lively_bn(model()), (1, 16, 16), tmp_path)
    lay = space.graph.layout
    cats = [op.name for op in space.graph.ops if op.kind == "cat"]
    assert cats and all(len(lay[c]) >= 2 for c in cats)
    a = space.assignment(widths)
    for c in cats:  # a cat's channels: its segments' in order, each its own group
        assert space.graph.channels(c, a) == sum(a[s] for s in lay[c])
        assert c not in space.graph.group_of
    if model is tm.TinyDenseNet:  # the last layer of block 1 reads the stem and every earlier layer's output
        conv1 = space.graph.by_name["features.2.conv1"]
        assert len(lay[conv1.inputs[0]]) == 3
        assert space.graph.folded_bns.isdisjoint({"features.1.bn1", "features.2.bn1"})  # BN on a cat stays a BN


def test_a_seeded_supernet_keeps_each_segments_most_important_channels():
    model = lively_bn(tm.TinyDenseNet())
    space = trace_model(model, (1, 16, 16), max_mult=1.5)
    sd = model.state_dict()
    sup = SlimmableGraphNet(space).eval()
    seed_supernet(sup, sd)
    x = 8 * torch.randn(3, 1, 16, 16)
    base = [space.group(s.name).base for s in space.free_groups]
    with torch.no_grad():
        torch.testing.assert_close(sup(x, base), model(x), rtol=1e-4, atol=1e-4)
        for pick in (0, 1):
            widths = [c[pick] for c in space.choices]
            torch.testing.assert_close(sup(x, widths), user_network(space, sd, widths).eval()(x), rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(sup(x, widths), sup.materialize(widths).eval()(x), rtol=1e-4, atol=1e-4)


def test_an_updating_pass_at_a_narrow_width_updates_a_bn_on_a_concatenation():
    space = _dense()
    sup = SlimmableGraphNet(space).train()
    bn = sup.full.layers["features_1_bn1"]  # reads cat(stem, layer 0)
    before = bn.running_mean.clone()
    widths = [c[0] for c in space.choices]
    sup(torch.randn(4, 1, 16, 16), widths, update_bn_stats=True)
    a, w = space.assignment(widths), sup.full.assignment
    stem, y0 = space.graph.layout["features.1.bn1"]
    moved = (bn.running_mean != before).nonzero().ravel().tolist()
    assert moved == list(range(a[stem])) + list(range(w[stem], w[stem] + a[y0]))  # each segment's first channels


def test_macs_and_the_space_file_keep_the_segments(tmp_path):
    space = _dense()
    widths = [c[0] for c in space.choices]
    a = space.assignment(widths)
    op = space.graph.by_name["features.2.conv1"]
    c_in = sum(a[s] for s in space.graph.layout[op.inputs[0]])
    assert space.op_macs(widths)[op.name] == c_in * a[space.graph.group_of[op.name]] * 16 * 16
    space.save(tmp_path / "s.json")
    back = GraphSpace.load(tmp_path / "s.json")
    assert back.fingerprint == space.fingerprint and back.graph.layout == space.graph.layout
    d = json.loads((tmp_path / "s.json").read_text())

    def refused(mutate, match):
        e = json.loads(json.dumps(d))
        mutate(e)
        with pytest.raises(GraphError, match=match):
            GraphSpace.from_dict(e)

    def cat_of(e):
        return next(o for o in e["ops"] if o["op"] == "cat")
    refused(lambda e: cat_of(e).update(inputs=cat_of(e)["inputs"][:1]), "two or more inputs")

    def add_after_cat(e):  # an add reading a cat would tie a concatenation's channels to one group
        k = next(i for i, o in enumerate(e["ops"]) if o["op"] == "cat")
        e["ops"].insert(k + 1, {"name": "bad_add", "op": "add", "inputs": [e["ops"][k]["name"], e["ops"][k]["name"]]})
        e["ops"][k + 2]["inputs"] = ["bad_add"]
    refused(add_after_cat, "concatenation of several channel")


def test_the_latency_fit_recovers_a_device_that_costs_a_conv_by_its_whole_input():
    """The per-segment terms are the model's claim: an op over a concatenation costs the sum of its
    segments' shares. A device whose convs cost a * c_in * c_out + b (c_in the whole input, b once per op) is
    recovered from whole-network times, on networks never fitted."""
    space = _dense(growth=24, layers=(3, 2))
    g, sizes = space.graph, space.graph.sizes

    def device_ms(widths):
        a = space.assignment(widths)
        t = 0.05
        for op in g.ops:
            c_in, c_out = g.channels(op.inputs[0], a), g.channels(op.name, a)
            h, w = sizes[op.name]
            if op.kind == "conv":
                t += 2e-6 * op.kernel ** 2 * c_in * c_out * h * w / 256 + 2e-3
            elif op.kind in ("cat", "bn", "maxpool") and op.name not in g.folded_bns:
                t += 1e-5 * c_out * h * w / 256 + 1e-3
            elif op.kind == "linear":
                t += 1e-5 * c_in + 1e-3
        return t

    W = draw_widths(space, "uniform", 300, 1)
    y = np.array([device_ms(w) for w in W])
    train = Samples({"device": {"cpu": "synthetic"}}, W, y, y, np.ones(len(y)), 0)
    table = fit_table(space, train, FitSettings(lams=(1.0,), mus=(0.0,), folds=3, elasticities=(0.0,)),
                      log=lambda *_: None)
    test = draw_widths(space, "uniform", 100, 2)
    assert metrics(table.predict_many(test), np.array([device_ms(w) for w in test]))["rmspe"] < 0.02
    sigs = {k.signature.kind for k in GraphEntries(space).keys}
    assert {"conv/cat", "bn/cat", "cat/cat"} <= sigs  # a conv on a cat, a BN on one, the copy itself


def _random_mrf(space, seed: int = 0) -> GraphMRF:
    rng = np.random.default_rng(seed)
    e = GraphEntries(space)
    costs = np.array([1e-4 * k.c_in * k.c_out + 1e-3 for k in e.keys]) * rng.uniform(0.8, 1.2, e.E)
    table = LatencyTable(space, costs, 0.01, 1.0)
    loss = [np.sort(rng.uniform(0, 0.3, len(c)))[::-1] for c in space.choices]  # narrower loses more
    return build_mrf(table, from_arrays(space, loss, [np.ones(len(c), int) for c in space.choices]))


def _brute(mrf: GraphMRF, budget: float) -> tuple[float, np.ndarray]:
    idx = np.array(list(itertools.product(*[range(len(c)) for c in mrf.choices])))
    lat, sc = mrf.evaluate(idx)
    ok = lat <= budget
    return float(sc[ok].max()), sc[ok]


def test_the_exact_solver_matches_brute_force_on_a_densenet_space():
    space = _dense(layers=(3, 2))
    mrf = _random_mrf(space)
    assert not wide.too_wide(mrf)
    lo, hi = solvers.fastest(mrf).latency, solvers.slowest_latency(mrf)
    for f in (0.2, 0.5, 0.8):
        budget = lo + f * (hi - lo)
        best, _ = _brute(mrf, budget)
        sol = solvers.exact(mrf, budget)
        assert sol.latency <= budget and sol.score == pytest.approx(best, abs=1e-9) and sol.info["certified"]


def test_past_the_exact_solvers_reach_the_lagrangian_takes_over_and_says_so(monkeypatch):
    """With the clique limit lowered, the same MRF goes to coordinate ascent: within the budget, at least as
    good as most networks within it, and its Gibbs samples follow the exact marginals."""
    space = _dense(layers=(3, 2))
    mrf = _random_mrf(space, 1)
    lo, hi = solvers.fastest(mrf).latency, solvers.slowest_latency(mrf)
    exact_marg = solvers.marginals(mrf, 0.0, 0.05)
    monkeypatch.setattr(wide, "MAX_CLIQUE_STATES", 4)
    assert wide.too_wide(mrf)
    assert solvers.fastest(mrf).latency == pytest.approx(lo)
    for f in (0.3, 0.6):
        budget = lo + f * (hi - lo)
        best, feasible = _brute(mrf, budget)
        sol = solvers.exact(mrf, budget, with_front=False)
        assert sol.latency <= budget and "coordinate ascent" in sol.info["fallback"] and not sol.info["certified"]
        assert sol.score >= np.quantile(feasible, 0.9) and sol.score <= best + 1e-12
    gibbs = solvers.marginals(mrf, 0.0, 0.05)
    for m, e in zip(gibbs, exact_marg):
        assert np.abs(m - e).max() < 0.08, (m, e)
    front = solvers.pareto_front(mrf)  # approximate: real networks, none dominated, none better than the exact front
    lats, scores = [p.latency for p in front], [p.score for p in front]
    assert lats == sorted(lats) and scores == sorted(scores) and len(front) >= 3
    assert all("coordinate ascent" in p.info["fallback"] for p in front)
    for p in front:
        assert p.score <= _brute(mrf, p.latency)[0] + 1e-12


def test_stacking_and_a_cat_on_another_axis_are_refused():
    from widthnas.models.trace import TraceError

    class OnHeight(tm._Base):
        def forward(self, x):
            x = self.stem(x)
            return self.head(torch.cat([x, x], dim=2))

    with pytest.raises(TraceError, match="dim=1"):
        trace_model(OnHeight(), (1, 8, 8))
    with pytest.raises(TraceError, match="stack joins tensors along a new axis"):
        trace_model(tm.WithStack(), (1, 8, 8))

    class OnBatch(tm._Base):
        def forward(self, x):
            x = self.stem(x)
            return self.head(torch.vstack([x, x]))

    with pytest.raises(TraceError, match="vstack joins tensors along the batch axis"):
        trace_model(OnBatch(), (1, 8, 8))


def test_hstack_of_feature_maps_is_a_channel_concatenation(tmp_path):
    """torch.hstack joins 4-d maps on dim 1: the same space as torch.cat(xs, dim=1)."""

    class WithHstack(tm.WithCat):
        def forward(self, x):
            x = self.stem(x)
            return self.head(torch.hstack([self.a(x), self.b(x)]))

    space, _ = check_every_form(lively_bn(WithHstack()), (1, 16, 16), tmp_path)
    ref = trace_model(tm.WithCat(), (1, 16, 16))
    assert [op.kind for op in space.graph.ops] == [op.kind for op in ref.graph.ops]


def test_a_conv_read_beside_its_bn_keeps_its_bias_and_the_bn_stays(tmp_path):
    """DenseNet's stem: the conv feeds the first layer's BN and the concatenation. Its BN cannot fold into it
    (the concatenation reads the conv's own output): it stays a BatchNormalization, the conv keeps its bias."""
    space, _ = check_every_form(lively_bn(tm.ConvBNAndMore()), (1, 16, 16), tmp_path)
    assert space.graph.folded_bns.isdisjoint({"bn"}) and "bn" in space.graph.by_name


def _mild_bn(model):
    """Trained-looking but mild BN statistics: a 40-layer DenseNet compounds lively_bn's small variances."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("factory,shape", [
    ("densenet_cifar:densenet40_k12_cifar10", (3, 32, 32)),
    pytest.param("densenet:densenet121", (3, 64, 64), marks=pytest.mark.slow),  # 120 groups, ~100 s here
])
def test_pytorchcv_densenets_trace_and_compute_at_a_narrower_width(factory, shape, tmp_path):
    import importlib

    pytest.importorskip("pytorchcv")
    module, name = factory.split(":")
    torch.manual_seed(0)
    model = getattr(importlib.import_module(f"pytorchcv.models.{module}"), name)()
    if hasattr(model.features, "final_pool"):
        model.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)  # its 7x7 pool is for 224 px
    space, widths = check_every_form(_mild_bn(model), shape, tmp_path)
    cats = [op for op in space.graph.ops if op.kind == "cat"]
    assert len(cats) >= 12 and sum(widths) < sum(space.base_widths)
    assert any(op.kind == "avgpool" for op in space.graph.ops)  # the transitions' 2x2 average pools


def test_a_cat_of_one_tensor_twice_and_ties_and_fixed_that_name_a_concatenation():
    from widthnas.models.graph import Graph, Op
    from widthnas.models.net import GraphNet

    ops = (Op("a", "conv", ("input",), out=16, kernel=3), Op("a.bn", "bn", ("a",)),
           Op("c", "cat", ("a.bn", "a.bn", "input")), Op("cbn", "bn", ("c",)),
           Op("b", "conv", ("cbn",), out=16, kernel=3), Op("b.bn", "bn", ("b",)), Op("g", "gap", ("b.bn",)),
           Op("fc", "linear", ("g",)))
    space = GraphSpace.from_graph("twice", Graph((1, 8, 8), 10, ops), {"a": (8, 16), "b": (8, 16)})
    assert space.graph.layout["cbn"] == ("a", "a", "input")
    sup = SlimmableGraphNet(space).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():  # x read twice by the cat, then freed once
        torch.testing.assert_close(sup(x, [8, 16]), sup.materialize([8, 16]).eval()(x))
        assert GraphNet(space, [8, 8])(x).shape == (2, 10)
    with pytest.raises(GraphError, match="concatenation of several channel groups"):
        Graph((1, 8, 8), 10, ops, ties=(("cbn", "b"),))
    fixed = Graph((1, 8, 8), 10, ops, fixed=("cbn",))  # a concatenation held: every group it joins is held
    assert {g.name for g in fixed.groups if g.fixed} == {"input", "a", "classes"}
