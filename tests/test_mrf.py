"""The width MRF's search entry points (solve, the baselines, budgets), its unaries and the small
MobileNet-v1 profile as an MRF. The solvers themselves are checked against brute force and pgmpy in
test_graph_mrf.py."""
import json

import numpy as np
import pytest

from helpers import brute_force, width_table
from widthnas.mrf import (GraphMRF, InfeasibleBudget, PairFactor, build_mrf, exact, fastest, greedy, parse_budget,
                          solve, uniform)
from widthnas.mrf.solvers import slowest_latency
from widthnas.mrf.unaries import Unaries, from_arrays


def random_chain(rng, n: int, kmin: int, kmax: int) -> GraphMRF:
    """A chain-shaped GraphMRF (one factor per consecutive pair of groups, with a score term): random
    tables that favour width in score and charge latency for it; base widths (the middle choice) for
    the baselines."""
    ks = rng.integers(kmin, kmax + 1, n)
    ch = [tuple(int(x) for x in sorted(rng.choice(np.arange(8, 400, 8), k, replace=False))) for k in ks]
    su = [np.sort(rng.normal(0, 1, k)) for k in ks]
    lu = [rng.uniform(0, 0.1, k) for k in ks]
    f = [PairFactor(i, i + 1, np.add.outer(np.sort(rng.uniform(0, 1, ks[i])), np.sort(rng.uniform(0, 1, ks[i + 1])))
                    + rng.uniform(0, 0.2, (ks[i], ks[i + 1])),
                    rng.normal(0, 0.5, (ks[i], ks[i + 1]))) for i in range(n - 1)]
    return GraphMRF(ch, su, lu, f, 0.1, base=tuple(c[len(c) // 2] for c in ch))


def test_baselines_meet_the_budget_and_greedy_callback():
    """On a chain: uniform and greedy stay within the budget and never beat the exact optimum (brute
    force); greedy scored by a callback that returns the MRF's own scores takes the same path."""
    m = random_chain(np.random.default_rng(9), 6, 3, 5)
    budget = 0.5 * (fastest(m).latency + slowest_latency(m))
    best, _ = brute_force(m, budget)
    u, g, e = uniform(m, budget), greedy(m, budget), exact(m, budget)
    assert e.latency <= budget and e.score == pytest.approx(best, abs=1e-9)
    for s in (u, g):
        assert s.latency <= budget and s.score <= best + 1e-9
    assert g.score < best - 1e-6  # greedy misses this optimum (else the comparison above checks nothing)
    calls = []
    g2 = greedy(m, budget, score_fn=lambda w: calls.append(w) or m.score(m.indices(w)))
    assert g2.widths == g.widths and g2.info["path"] == g.info["path"] and len(calls) == g.info["evals"] + 1
    for method in ("exact", "lagrangian", "greedy", "uniform"):
        s = solve(m, budget, method)
        assert s.method == method and s.latency <= budget and m.latency(s.idx) == pytest.approx(s.latency)
    with pytest.raises(ValueError, match="unknown method 'fastest'"):
        solve(m, budget, "fastest")
    with pytest.raises(InfeasibleBudget, match=r"below the fastest network.*\d+\.\d+ ms"):
        solve(m, fastest(m).latency * 0.5, "greedy")


def small_table(small):
    """A profile of the demo space whose every op costs (c_in + c_out) x 0.1 us: latency grows with width."""
    return width_table(small, 1e-4, intercept=0.0)


def test_unaries_file_round_trip_and_never_sampled(small, tmp_path):
    loss = [np.linspace(1, 0, len(c)) for c in small.choices]
    count = [np.full(len(c), 5) for c in small.choices]
    loss[3][0], count[3][0] = np.nan, 0  # never sampled
    u = from_arrays(small, loss, count)
    p = tmp_path / "u.json"
    u.save(p)
    back = Unaries.load(p)
    sc = back.scores()
    assert sc[3][0] == pytest.approx(-np.nanmax(loss[3]))  # as bad as the worst seen, not free
    d = json.loads(p.read_text())
    d["layers"][2]["loss"][1] = float("inf")
    p.write_text(json.dumps(d).replace("Infinity", "1e999"))
    with pytest.raises(ValueError, match="non-finite"):
        Unaries.load(p)


def test_mrf_refuses_unaries_of_another_space(small, tiny):
    table = small_table(small)
    u = from_arrays(tiny, [np.zeros(len(c)) for c in tiny.choices], [np.ones(len(c)) for c in tiny.choices])
    with pytest.raises(ValueError, match="unaries of search space tiny"):
        build_mrf(table, u)
    ok = from_arrays(small, [np.zeros(len(c)) for c in small.choices], [np.ones(len(c)) for c in small.choices])
    m = build_mrf(table, ok)
    assert m.names == ["stem"] + [f"block{i}" for i in range(1, 14)]
    assert all(f.j == f.i + 1 for f in m.factors) and m.edges == [(i, i + 1) for i in range(13)]  # a chain
    w = small.uniform(0.6)
    assert m.latency(m.indices(w)) == pytest.approx(table.predict(w), rel=1e-12)


def test_tied_unaries_prefer_the_wider_width(small):
    table = small_table(small)
    flat = from_arrays(small, [np.zeros(len(c)) for c in small.choices], [np.ones(len(c)) for c in small.choices])
    m = build_mrf(table, flat)
    budget = table.predict(small.uniform(0.8))
    e = exact(m, budget)
    # nothing distinguishes the widths, so the answer should use (nearly) all of the budget
    assert e.latency <= budget and e.latency > 0.97 * budget


def test_noisy_unaries_are_scored_monotone_in_width(small):
    rng = np.random.default_rng(5)
    # true loss falls with width, but the noisy means make some narrower widths look better
    loss = [np.linspace(0.2, 0, len(c)) + rng.normal(0, 0.05, len(c)) for c in small.choices]
    count = [rng.integers(1, 20, len(c)) for c in small.choices]
    u = from_arrays(small, loss, count)
    raw, mono = u.scores(monotone=False), u.scores()
    assert any(np.any(np.diff(r) < -1e-9) for r in raw)  # the raw scores do dip somewhere
    assert all(np.all(np.diff(m) >= 0) for m in mono)  # never worse for a wider width
    for l, c, m in zip(loss, count, mono):  # the count-weighted mean is kept per layer (isotonic fit)
        assert np.dot(c, -m) == pytest.approx(np.dot(c, l), abs=1e-4)
    table = small_table(small)
    budget = table.predict(small.uniform(0.8))
    spent = exact(build_mrf(table, u), budget).latency
    assert spent <= budget and spent > 0.95 * budget


def _pava(y, w):
    """The textbook pool-adjacent-violators fit (non-increasing), the reference for scipy's."""
    blocks = []  # (value, weight, length)
    for v, wt in zip(y, w):
        blocks.append([v, max(wt, 1e-9), 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([[v] * n for v, _, n in blocks])


def test_isotonic_fit_equals_pool_adjacent_violators():
    from widthnas.mrf.unaries import isotonic_decreasing

    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(1, 16))
        y = rng.standard_normal(n) * rng.choice([1e-3, 1.0, 100.0])
        w = rng.integers(0, 50, n) * rng.choice([0, 1], n, p=[0.3, 0.7])  # unsampled widths weigh nothing
        np.testing.assert_allclose(isotonic_decreasing(y, w), _pava(y, w), rtol=1e-12, atol=1e-12 * np.abs(y).max())


@pytest.mark.parametrize("budget", ["0", "-1ms", "-20%", "0%", "nan", "inf", -3.0])
def test_nonpositive_budgets_are_refused(budget):
    with pytest.raises(ValueError, match="not a positive latency"):
        parse_budget(budget, 2.0)


def test_budgets_parse_as_ms_or_a_share_of_the_widest():
    assert parse_budget("50%", 2.0) == 1.0 and parse_budget("60%", 2.0) == pytest.approx(1.2)
    assert parse_budget("0.8ms", 2.0) == 0.8 and parse_budget(" 0.8 ", 2.0) == 0.8 and parse_budget(0.5, 2.0) == 0.5
    with pytest.raises(ValueError, match=r"budget 'fast': give milliseconds"):
        parse_budget("fast", 1.0)


def test_mrf_imports_without_torch(tmp_path, run_without_torch):
    """mrf/ is pure numpy/scipy (docs/design.md): importing it, solving a graph with a cycle (a residual
    add's) and saving unaries needs no torch."""
    r = run_without_torch("""
        import numpy as np
        import widthnas.mrf as mrf
        from widthnas.mrf.unaries import Unaries
        m = mrf.GraphMRF([(8, 16), (8, 16), (8, 16)], [np.array([0., 1.])] * 3, [np.zeros(2)] * 3,
                         [(0, 1, np.ones((2, 2))), (1, 2, np.ones((2, 2))), (2, 0, np.ones((2, 2)))])
        print(mrf.exact(m, 10.0).widths)
        Unaries('s', 'f', [[8, 16]], [np.array([0.1, 0.0])], [np.array([1, 1])]).save(sys.argv[1])
        assert 'torch' not in sys.modules
    """, str(tmp_path / "u.json"))
    assert r.returncode == 0, r.stderr
    assert "[16, 16, 16]" in r.stdout and (tmp_path / "u.json").exists()
