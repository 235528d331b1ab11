"""Searching a graph space: a GraphMRF built from a graph profile and per-group unaries, its
latency against the profile's prediction, the budgeted optimum and the baselines against brute force."""
import numpy as np
import pytest

from helpers import SYNTHETIC, brute_force, enumerate_mrf, random_costs
from widthnas.latency.table import LatencyTable
from widthnas.mrf import GraphMRF, build_mrf, solve, uniform
from widthnas.mrf.smoothness import with_smoothness
from widthnas.mrf.unaries import Unaries, from_arrays


@pytest.fixture(scope="module")
def table(toy):
    return LatencyTable(toy, random_costs(toy, seed=3), 0.05, 1.0, SYNTHETIC, {}, {}, "toy")


@pytest.fixture(scope="module")
def unaries(toy):
    rng = np.random.default_rng(4)
    loss = [np.linspace(0.3, 0, len(c)) + rng.normal(0, 0.03, len(c)) for c in toy.choices]
    return from_arrays(toy, loss, [np.full(len(c), 5) for c in toy.choices])


def test_mrf_latency_is_the_profile_prediction(toy, table, unaries):
    assert any(g.fixed for g in toy.groups)  # input channels and classes: folded into unaries / intercept
    mrf = build_mrf(table, unaries)
    assert mrf.names == [g.name for g in toy.free_groups] and list(mrf.base) == toy.base_widths
    idx, lat, sc = enumerate_mrf(mrf)
    pred = table.predict_many(np.array([mrf.widths(i) for i in idx]))
    np.testing.assert_allclose(lat, pred, rtol=1e-12)
    np.testing.assert_allclose(sc, [sum(s[k] for s, k in zip(unaries.scores(), i)) for i in idx], rtol=1e-12)
    assert isinstance(mrf, GraphMRF)


@pytest.mark.parametrize("share", [0.45, 0.6, 0.8])
def test_budgeted_optimum_and_baselines_against_brute_force(table, unaries, share):
    mrf = build_mrf(table, unaries)
    _, lat, _ = enumerate_mrf(mrf)
    budget = lat.min() + share * (lat.max() - lat.min())
    best, best_idx = brute_force(mrf, budget)
    for method in ("exact", "lagrangian", "greedy", "uniform"):
        sol = solve(mrf, budget, method)
        assert sol.latency <= budget + 1e-12 and sol.latency == pytest.approx(table.predict(sol.widths))
        assert sol.score <= best + 1e-12
    e = solve(mrf, budget, "exact")
    assert e.score == pytest.approx(best) and mrf.score(best_idx) == pytest.approx(best)
    # uniform: the largest multiplier whose nearest-choice network fits, as the space itself rounds it
    u = uniform(mrf, budget)
    fits = [m for m in np.arange(0.05, 2.0001, 0.005) if table.predict(table.space.uniform(m)) <= budget]
    assert u.widths == table.space.uniform(max(fits)) and u.info["multiplier"] == pytest.approx(max(fits))


def test_smoothness_prior_on_graph_pairs(table, unaries):
    mrf = build_mrf(table, unaries)
    idx, lat, sc = enumerate_mrf(mrf)
    assert np.array_equal(enumerate_mrf(with_smoothness(mrf, 0.0))[2], sc)  # weight 0: the same scores
    w = 0.7
    lat1, sc1 = with_smoothness(mrf, w).evaluate(idx)
    np.testing.assert_allclose(lat1, lat, rtol=1e-12)  # the prior costs no latency
    # -w (log m_i - log m_j)^2 for every pair of groups an op joins (m: width / base width)
    logm = np.log(np.array([mrf.widths(i) for i in idx], float) / np.array(mrf.base, float))
    prior = sum((logm[:, i] - logm[:, j]) ** 2 for i, j in mrf.edges)
    assert len(mrf.edges) >= 3 and prior.max() > 0.1
    np.testing.assert_allclose(sc1, sc - w * prior, atol=1e-12)


def test_unaries_name_their_groups_and_other_spaces_are_refused(toy, table, unaries, tmp_path):
    p = tmp_path / "u.json"
    unaries.save(p)
    back = Unaries.load(p)
    assert back.names == [g.name for g in toy.free_groups] == unaries.names
    assert build_mrf(table, back).names == back.names
    shuffled = Unaries(back.space_name, back.space_fingerprint, back.widths, back.loss, back.count, {},
                       list(reversed(back.names)))
    with pytest.raises(ValueError, match="does not match the profile's group"):
        build_mrf(table, shuffled)
    other = Unaries("x", "0" * 16, back.widths, back.loss, back.count)
    with pytest.raises(ValueError, match="fingerprint"):
        build_mrf(table, other)


def test_baselines_and_exact_with_a_fixed_group(table, unaries):
    """A GraphMRF built by hand with a fixed group (one width, not searched): the baselines leave it
    alone, and every method meets the budget; exact matches brute force."""
    m = build_mrf(table, unaries)
    rng = np.random.default_rng(7)
    fixed_lat = rng.uniform(0.01, 0.02, (len(m.choices[0]), 1))  # ms, an op from group 0 into the fixed group
    g = GraphMRF(m.choices + [(24,)], m.score_unary + [np.zeros(1)], m.lat_unary + [np.zeros(1)],
                 list(m.factors) + [(0, m.n, fixed_lat)], m.intercept, [False] * m.n + [True],
                 m.names + ["fixed"], tuple(m.base) + (24,), m.space_fingerprint)
    _, lat, _ = enumerate_mrf(g)
    budget = lat.min() + 0.5 * (lat.max() - lat.min())
    for method in ("exact", "lagrangian", "greedy", "uniform"):
        sol = solve(g, budget, method)
        assert sol.latency <= budget and sol.widths[-1] == 24
    assert solve(g, budget, "exact").score == pytest.approx(brute_force(g, budget)[0])
