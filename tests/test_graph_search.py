"""Searching a graph space: a GraphMRF built from a graph profile and per-group unaries, its
latency against the profile's prediction, the budgeted optimum and the baselines against brute force."""
import itertools

import numpy as np
import pytest

from widthnas.latency.graph_entries import GraphEntries
from widthnas.latency.graph_table import GraphLatencyTable
from widthnas.mrf import GraphMRF, WidthMRF, build_mrf, greedy, solve, solvers_for, uniform
from widthnas.mrf.smoothness import with_smoothness
from widthnas.mrf.unaries import Unaries, from_arrays


@pytest.fixture(scope="module")
def toy(make_graph_toy):
    """Two inverted-residual blocks tied by adds, a stride-2 conv, the head; input and classes are fixed groups."""
    return make_graph_toy("toy", 8)


@pytest.fixture(scope="module")
def table(toy):
    costs = np.random.default_rng(3).uniform(0.001, 0.05, GraphEntries(toy).E)  # ms, standing in for a fit
    return GraphLatencyTable(toy, costs, 0.05, 1.0, {"cpu": "synthetic"}, {}, {}, "toy")


@pytest.fixture(scope="module")
def unaries(toy):
    rng = np.random.default_rng(4)
    loss = [np.linspace(0.3, 0, len(c)) + rng.normal(0, 0.03, len(c)) for c in toy.choices]
    return from_arrays(toy, loss, [np.full(len(c), 5) for c in toy.choices])


def all_configs(mrf):
    return np.array(list(itertools.product(*[range(len(c)) for c in mrf.choices])))


def test_mrf_latency_is_the_profile_prediction(toy, table, unaries):
    assert any(g.fixed for g in toy.groups)  # input channels and classes: folded into unaries / intercept
    mrf = GraphMRF.from_graph_table(table, unaries)
    assert mrf.names == [g.name for g in toy.free_groups] and list(mrf.base) == toy.base_widths
    idx = all_configs(mrf)
    lat, sc = mrf.evaluate(idx)
    pred = table.predict_many(np.array([mrf.widths(i) for i in idx]))
    np.testing.assert_allclose(lat, pred, rtol=1e-12)
    np.testing.assert_allclose(sc, [sum(s[k] for s, k in zip(unaries.scores(), i)) for i in idx], rtol=1e-12)
    assert isinstance(build_mrf(table, unaries), GraphMRF) and solvers_for(mrf).__name__.endswith("graph_solvers")


@pytest.mark.parametrize("share", [0.45, 0.6, 0.8])
def test_budgeted_optimum_and_baselines_against_brute_force(table, unaries, share):
    mrf = GraphMRF.from_graph_table(table, unaries)
    idx = all_configs(mrf)
    lat, sc = mrf.evaluate(idx)
    budget = lat.min() + share * (lat.max() - lat.min())
    best = sc[lat <= budget].max()
    for method in ("exact", "lagrangian", "greedy", "uniform"):
        sol = solve(mrf, budget, method)
        assert sol.latency <= budget + 1e-12 and sol.latency == pytest.approx(table.predict(sol.widths))
        assert sol.score <= best + 1e-12
    assert solve(mrf, budget, "exact").score == pytest.approx(best)
    # uniform: the largest multiplier whose nearest-choice network fits, as the space itself rounds it
    u = uniform(mrf, budget)
    fits = [m for m in np.arange(0.05, 2.0001, 0.005) if table.predict(table.space.uniform(m)) <= budget]
    assert u.widths == table.space.uniform(max(fits)) and u.info["multiplier"] == pytest.approx(max(fits))


def test_greedy_and_uniform_on_a_graph_agree_with_the_chain(small):
    from widthnas.latency.registry import PROFILE_DIR
    from widthnas.latency.table import LatencyTable

    t = LatencyTable.load(PROFILE_DIR / "amd-epyc-2c_ort-cpu-1t-b1_mobilenet_v1_small.json")
    rng = np.random.default_rng(0)
    u = from_arrays(t.space, [np.linspace(0.2, 0, len(c)) + rng.normal(0, 0.02, len(c)) for c in t.space.choices],
                    [np.ones(len(c), int) for c in t.space.choices])
    chain = WidthMRF.from_table(t, u)
    graph = GraphMRF.from_chain(chain)
    budget = 0.5 * t.predict(t.space.max_widths)
    for fn in (greedy, uniform):
        a, b = fn(chain, budget), fn(graph, budget)
        assert a.widths == b.widths and a.latency == pytest.approx(b.latency)


def test_smoothness_prior_on_graph_pairs(table, unaries):
    mrf = GraphMRF.from_graph_table(table, unaries)
    idx = all_configs(mrf)
    s0 = with_smoothness(mrf, 0.0)
    np.testing.assert_allclose(s0.evaluate(idx)[1], mrf.evaluate(idx)[1])
    s1 = with_smoothness(mrf, 1.0)
    lat1, sc1 = s1.evaluate(idx)
    np.testing.assert_allclose(lat1, mrf.evaluate(idx)[0])  # the prior costs no latency
    assert np.all(sc1 <= mrf.evaluate(idx)[1] + 1e-12)


def test_unaries_name_their_groups_and_other_spaces_are_refused(toy, table, unaries, tmp_path):
    p = tmp_path / "u.json"
    unaries.save(p)
    back = Unaries.load(p)
    assert back.names == [g.name for g in toy.free_groups] == unaries.names
    assert GraphMRF.from_graph_table(table, back).names == back.names
    shuffled = Unaries(back.space_name, back.space_fingerprint, back.widths, back.loss, back.count, {},
                       list(reversed(back.names)))
    with pytest.raises(ValueError, match="does not match the profile's group"):
        GraphMRF.from_graph_table(table, shuffled)
    other = Unaries("x", "0" * 16, back.widths, back.loss, back.count)
    with pytest.raises(ValueError, match="fingerprint"):
        GraphMRF.from_graph_table(table, other)


def test_baselines_and_exact_with_a_fixed_group(table, unaries):
    """A GraphMRF built by hand with a fixed group (one width, not searched): the baselines leave it
    alone, and every method meets the budget; exact matches brute force."""
    m = GraphMRF.from_graph_table(table, unaries)
    rng = np.random.default_rng(7)
    fixed_lat = rng.uniform(0.01, 0.02, (len(m.choices[0]), 1))  # ms, an op from group 0 into the fixed group
    g = GraphMRF(m.choices + [(24,)], m.score_unary + [np.zeros(1)], m.lat_unary + [np.zeros(1)],
                 list(m.factors) + [(0, m.n, fixed_lat)], m.intercept, [False] * m.n + [True],
                 m.names + ["fixed"], tuple(m.base) + (24,), m.space_fingerprint)
    idx = all_configs(g)
    lat, sc = g.evaluate(idx)
    budget = lat.min() + 0.5 * (lat.max() - lat.min())
    for method in ("exact", "lagrangian", "greedy", "uniform"):
        sol = solve(g, budget, method)
        assert sol.latency <= budget and sol.widths[-1] == 24
    assert solve(g, budget, "exact").score == pytest.approx(sc[lat <= budget].max())
