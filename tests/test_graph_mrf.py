"""The MRF solvers (junction tree DP) against brute-force enumeration and pgmpy, on every shape the
search spaces produce: chains (MobileNet-v1), trees, residual cycles."""
import itertools

import numpy as np
import pytest

from helpers import enumerate_mrf
from widthnas.mrf import InfeasibleBudget
from widthnas.mrf import solvers as gs
from widthnas.mrf.model import GraphMRF, PairFactor
from widthnas.mrf.junction_tree import junction_tree

# (groups, edges): small graphs of every shape the search spaces produce
GRAPHS = {
    "chain": (5, [(0, 1), (1, 2), (2, 3), (3, 4)]),
    "tree": (6, [(0, 1), (0, 2), (0, 3), (3, 4), (3, 5)]),  # basic blocks hanging off a stage
    # a stage's residual group 0 tying two bottleneck blocks (0 -> a -> b -> 0), then the next stage
    "residual": (6, [(0, 1), (1, 2), (2, 0), (0, 3), (3, 4), (4, 0), (0, 5)]),
    # one stage of three bottleneck blocks on its residual group 0: the DP must project (0, a, b)
    # onto 0 before adding the other blocks' fronts
    "stage": (7, [(0, 1), (1, 2), (2, 0), (0, 3), (3, 4), (4, 0), (0, 5), (5, 6), (6, 0)]),
    "disconnected": (6, [(0, 1), (1, 2), (3, 4)]),  # group 5 on its own
    "grid": (6, [(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)]),  # cycles, treewidth 2
}


def random_graph(rng, kind, kmin=2, kmax=4, duplicate=True, quantum=0.0):
    """A GraphMRF on one of GRAPHS with random tables, and the raw terms for brute force. One pair
    gets a second factor in the opposite orientation (the model must sum them). quantum > 0 rounds
    every term to its multiples (latency in ms, score in 2 * quantum), so many sums tie exactly."""
    n, edges = GRAPHS[kind]
    ks = rng.integers(kmin, kmax + 1, n)
    ch = [tuple(sorted(rng.choice(np.arange(8, 400, 8), k, replace=False))) for k in ks]
    su = [rng.normal(0, 1, k) for k in ks]
    lu = [rng.uniform(0, 0.2, k) for k in ks]
    raw = []
    for i, j in edges:
        lat = np.add.outer(np.sort(rng.uniform(0, 1, ks[i])), np.sort(rng.uniform(0, 1, ks[j]))) \
            + rng.uniform(0, 0.3, (ks[i], ks[j]))
        raw.append((i, j, lat, rng.normal(0, 0.5, (ks[i], ks[j]))))
    if duplicate and edges:
        i, j = edges[-1]
        raw.append((j, i, rng.uniform(0, 0.2, (ks[j], ks[i])), rng.normal(0, 0.3, (ks[j], ks[i]))))
    if quantum:
        q = lambda a, u: np.round(a / u) * u  # noqa: E731
        su, lu = [q(s, 2 * quantum) for s in su], [q(l, quantum) for l in lu]
        raw = [(i, j, q(l, quantum), q(s, 2 * quantum)) for i, j, l, s in raw]
    icpt = 0.125 if quantum else 0.05  # ms
    m = GraphMRF(ch, su, lu, [PairFactor(*f) for f in raw], icpt)
    return m, (su, lu, raw, icpt)


def true_front(lat, sc):
    order, best, out = np.lexsort((-sc, lat)), -np.inf, []
    for k in order:
        if sc[k] > best + 1e-12:
            out.append(k)
            best = sc[k]
    return out


def brute_marginals(m, idx, w):
    return [np.bincount(idx[:, g], weights=w, minlength=len(m.choices[g])) for g in range(m.n)]


def max_sum_ref(m, gammas):
    """`gs._max_sum` clique by clique (`_upward`, `_decode_max`): the reference it must equal."""
    p = gs.plan(m, centred=True)
    g = np.asarray(gammas, float)
    _, _, arg = gs._upward(p, [s[None] - g[:, None] * l[None] for s, l in zip(*gs._tables(m, p))], "max")
    return gs._decode_max(p, arg, m.n)


def log_partition(m, gamma, T):
    """log sum_x exp((score - gamma * latency) / T), from the upward sum-product pass."""
    _, up, _ = gs._sum_product_up(m, gamma, T)
    return float(up[-1][0, 0])


# ---- the tree decomposition ------------------------------------------------------------------
def check_decomposition(jt, n, edges) -> None:
    """Raises unless jt is a valid tree decomposition of the graph: every vertex and edge in some
    clique, and the cliques holding any vertex forming one connected subtree (running intersection)."""
    sets = [set(c) for c in jt.cliques]
    for v in range(n):
        holders = [c for c, s in enumerate(sets) if v in s]
        assert holders, f"vertex {v} is in no clique"
        tops = [c for c in holders if jt.parent[c] < 0 or v not in sets[jt.parent[c]]]
        assert len(tops) == 1, f"the cliques holding vertex {v} are not connected: {holders}"
    for i, j in edges:
        assert any(i in s and j in s for s in sets), f"edge ({i}, {j}) is in no clique"
    assert sorted(jt.postorder()) == list(range(len(jt.cliques))), "the parent links do not form a forest"


def height(jt) -> int:
    """Cliques on the longest root-to-leaf path, over every component."""
    depth = [0] * len(jt.cliques)
    for c in reversed(jt.postorder()):  # parents before children
        depth[c] = 1 + (depth[jt.parent[c]] if jt.parent[c] >= 0 else 0)
    return max(depth)


def _least_height(jt) -> int:
    """Brute force: the tree's height (in cliques) under the best root of each component, trying every clique."""
    nb = {c: set() for c in range(len(jt.cliques))}
    for c, p in enumerate(jt.parent):
        if p >= 0:
            nb[c].add(p)
            nb[p].add(c)

    def ecc(s):  # cliques on the longest path from s, s included
        dist, todo = {s: 1}, [s]
        for c in todo:
            for k in nb[c] - dist.keys():
                dist[k] = dist[c] + 1
                todo.append(k)
        return max(dist.values()), frozenset(dist)

    best = {}
    for c in nb:
        e, comp = ecc(c)
        best[comp] = min(best.get(comp, e), e)
    return max(best.values())


def test_junction_tree_is_a_valid_decomposition():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n = int(rng.integers(1, 11))
        edges = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < rng.uniform(0, 0.6)]
        jt = junction_tree(n, edges, list(rng.integers(1, 8, n)))
        check_decomposition(jt, n, edges)
        sets = [set(c) for c in jt.cliques]
        assert not any(a < b for a in sets for b in sets)  # only maximal cliques
        cj = jt.centred()
        check_decomposition(cj, n, edges)
        assert cj.cliques == jt.cliques and len(cj.roots) == len(jt.roots)
        assert height(cj) == _least_height(jt) <= height(jt)
    chain = junction_tree(*GRAPHS["chain"])
    assert chain.width == 1 and sorted(chain.cliques) == GRAPHS["chain"][1]
    long_chain = junction_tree(14, [(i, i + 1) for i in range(13)])  # MobileNet-v1's 14 groups: 13 cliques
    assert height(long_chain) == 13 and height(long_chain.centred()) == 7
    assert junction_tree(*GRAPHS["residual"]).width == 2  # bottleneck blocks: cliques of three groups
    assert len(junction_tree(*GRAPHS["disconnected"]).roots) == 3  # a forest, one tree per component
    assert junction_tree(4, list(itertools.combinations(range(4), 2))).cliques == [(0, 1, 2, 3)]
    with pytest.raises(ValueError, match=r"edge \(1, 1\)"):
        junction_tree(3, [(1, 1)])


# ---- max-sum, marginals, samples against enumeration -------------------------------------------
@pytest.mark.parametrize("kind", GRAPHS)
@pytest.mark.parametrize("seed", range(3))
def test_map_and_marginals_match_brute_force(kind, seed):
    rng = np.random.default_rng(seed)
    m, terms = random_graph(rng, kind)
    idx, lat, sc = enumerate_mrf(m, terms)
    got_lat, got_sc = m.evaluate(idx)
    np.testing.assert_allclose(got_lat, lat, rtol=1e-12)
    np.testing.assert_allclose(got_sc, sc, rtol=1e-12, atol=1e-12)
    for gamma, T in ((0.0, 1.0), (rng.uniform(0.2, 3), rng.uniform(0.3, 2))):
        obj = sc - gamma * lat
        v = gs.viterbi(m, gamma)
        assert v.idx == list(idx[np.argmax(obj)]) and v.widths == m.widths(v.idx)
        assert v.latency == pytest.approx(lat[np.argmax(obj)]) and v.score == pytest.approx(sc[np.argmax(obj)])
        w = np.exp((obj - obj.max()) / T)
        for got, ref in zip(gs.marginals(m, gamma, T), brute_marginals(m, idx, w / w.sum())):
            np.testing.assert_allclose(got, ref, atol=1e-12)
        logz = obj.max() / T + np.log(w.sum())
        assert log_partition(m, gamma, T) == pytest.approx(logz, rel=1e-12)
    f = gs.fastest(m)
    assert f.latency == pytest.approx(lat.min()) and gs.slowest_latency(m) == pytest.approx(lat.max())


@pytest.mark.parametrize("kind", ["chain", "residual", "disconnected"])
def test_samples_follow_the_exact_joint_distribution(kind):
    from scipy.stats import chisquare

    rng = np.random.default_rng(21)
    m, terms = random_graph(rng, kind, 2, 3)
    idx, lat, sc = enumerate_mrf(m, terms)
    gamma, T, n = 0.8, 1.5, 40000
    w = np.exp((sc - gamma * lat - (sc - gamma * lat).max()) / T)
    p = w / w.sum()
    draws = gs.sample_configs(m, gamma, T, n, np.random.default_rng(0))
    assert draws.shape == (n, m.n)
    strides = np.cumprod([1] + [len(c) for c in m.choices][::-1])[:-1][::-1]
    counts = np.bincount(draws @ strides, minlength=len(idx))  # idx is in the same (row-major) order
    assert np.array_equal(idx @ strides, np.arange(len(idx)))
    exp = n * p
    big = exp >= 5
    obs = np.r_[counts[big], counts[~big].sum()]
    ex = np.r_[exp[big], exp[~big].sum()]
    keep = ex > 0
    stat, pval = chisquare(obs[keep], ex[keep])
    assert pval > 1e-3, f"samples do not follow the joint distribution (chi-square {stat:.1f}, p = {pval:.2g})"
    for g, marg in enumerate(gs.marginals(m, gamma, T)):
        np.testing.assert_allclose(np.bincount(draws[:, g], minlength=len(marg)) / n, marg, atol=0.01)


# ---- the Pareto front and the budgeted optimum -------------------------------------------------
@pytest.mark.parametrize("kind", GRAPHS)
@pytest.mark.parametrize("seed", range(3))
def test_front_and_budgeted_optimum_match_brute_force(kind, seed):
    rng = np.random.default_rng(100 + seed)
    m, terms = random_graph(rng, kind)
    idx, lat, sc = enumerate_mrf(m, terms)
    ref = true_front(lat, sc)
    front = gs.pareto_front(m)
    assert [(round(s.latency, 9), round(s.score, 9)) for s in front] == \
        [(round(lat[k], 9), round(sc[k], 9)) for k in ref]  # complete, and nothing else
    for s in front:  # each point is a real configuration with the latency and score reported
        k = int(np.flatnonzero((idx == s.idx).all(axis=1))[0])
        assert s.widths == m.widths(s.idx) and s.latency == pytest.approx(lat[k], abs=1e-12)
        assert s.score == pytest.approx(sc[k], abs=1e-12)
        assert not np.any((lat <= s.latency - 1e-12) & (sc >= s.score + 1e-12))  # nothing beats it
    budgets = [float(lat.min()), float(rng.choice(lat)), float(rng.choice(lat)),
               float(rng.uniform(lat.min(), lat.max())), float(lat.max())]
    for b in budgets:
        best = sc[lat <= b].max()
        for e in (gs.exact(m, b), gs.exact(m, b, with_front=False)):
            k = int(np.flatnonzero((idx == e.idx).all(axis=1))[0])
            assert lat[k] <= b and e.latency <= b and e.score == pytest.approx(best, abs=1e-9)
            assert e.info["certified"] and e.method == "exact" and e.budget == b
        assert [p.idx for p in gs.exact(m, b).pareto] == [p.idx for p in front]
        lag = gs.lagrangian(m, b)
        assert lag.latency <= b and lag.score <= best + 1e-9


def random_tree(rng, n, hubs=3):
    """A tree on n groups whose edges mostly hang on a few hubs (as blocks hang on a stage's group),
    random orientation, random tables: cliques with several children on one group."""
    ks = rng.integers(2, 4, n)
    ch = [tuple(range(8, 8 * k + 1, 8)) for k in ks]
    su, lu, raw = [rng.normal(0, 1, k) for k in ks], [rng.uniform(0, 0.2, k) for k in ks], []
    for v in range(1, n):
        u = int(rng.integers(0, min(v, hubs)))
        i, j = (u, v) if rng.random() < 0.5 else (v, u)
        lat = np.add.outer(np.sort(rng.uniform(0, 1, ks[i])), np.sort(rng.uniform(0, 1, ks[j]))) \
            + rng.uniform(0, 0.3, (ks[i], ks[j]))
        raw.append((i, j, lat, rng.normal(0, 0.5, (ks[i], ks[j]))))
    m = GraphMRF(ch, su, lu, [PairFactor(*f) for f in raw], 0.05)
    return m, (su, lu, raw, 0.05)


@pytest.mark.parametrize("seed", range(4))
def test_tree_with_many_groups_front_and_optimum_match_brute_force(seed):
    """Trees of 10 groups with up to 8 children per hub: the DP joins the fronts hanging on one group
    before the clique's table; the front and every budgeted optimum must still be exact."""
    rng = np.random.default_rng(300 + seed)
    m, terms = random_tree(rng, 10)
    assert gs.plan(m).tree.width == 1
    idx, lat, sc = enumerate_mrf(m, terms)
    ref = true_front(lat, sc)
    e = gs.exact(m, float(np.median(lat)))
    assert e.info["front_exact"] and e.info["certified"]
    assert [(round(s.latency, 9), round(s.score, 9)) for s in e.pareto] == \
        [(round(lat[k], 9), round(sc[k], 9)) for k in ref]
    for b in [float(lat.min()), *rng.choice(lat, 3), float(rng.uniform(lat.min(), lat.max()))]:
        best = sc[lat <= b].max()
        for s in (gs.exact(m, float(b)), gs.exact(m, float(b), with_front=False)):
            assert s.latency <= b and m.latency(s.idx) <= b and s.score == pytest.approx(best, abs=1e-9)


def test_evaluate_gives_the_per_term_sums_bit_for_bit():
    """evaluate gathers all terms at once; its floats must be the per-term loop's (the budget check
    and the recorded MobileNet-v1 answers of test_fold rely on them)."""
    rng = np.random.default_rng(5)
    for kind in GRAPHS:
        m, _ = random_graph(rng, kind)
        idx = np.stack([rng.integers(0, len(c), 200) for c in m.choices], 1)
        lat = m.intercept + sum(l[idx[:, g]] for g, l in enumerate(m.lat_unary))
        sc = sum(s[idx[:, g]] for g, s in enumerate(m.score_unary))
        lat = lat + sum(f.lat[idx[:, f.i], idx[:, f.j]] for f in m.factors)
        sc = sc + sum(f.score[idx[:, f.i], idx[:, f.j]] for f in m.factors)
        for k in (slice(None), slice(0, 1), slice(3, 5)):
            got = m.evaluate(idx[k])
            assert np.array_equal(got[0], lat[k]) and np.array_equal(got[1], sc[k])


def test_builtin_mobilenet_v2_front_is_exact():
    """Issue 12: the 224 px mobilenet_v2 space (25 groups, a tree) gets its whole exact front (it
    used to outgrow the label limit and fall back to bins). Checked against what is known
    independently: every max-sum (Lagrangian) answer lies on it, no front point beats any
    multiplier's optimum, and the budgeted DP (another code path) finds the same optima."""
    from widthnas.benchmarks.solver_speed import builtin_graph

    m = builtin_graph("mobilenet_v2")
    lo, hi = gs.fastest(m).latency, gs.slowest_latency(m)
    e = gs.exact(m, lo + 0.5 * (hi - lo))
    assert e.info["front_exact"] and e.info["certified"] and e.info["labels"] < 2_000_000
    lat, sc = np.array([s.latency for s in e.pareto]), np.array([s.score for s in e.pareto])
    assert len(lat) > 1000 and np.all(np.diff(lat) > 0) and np.all(np.diff(sc) > 0)
    got_lat, got_sc = m.evaluate([s.idx for s in e.pareto])
    assert np.array_equal(got_lat, lat) and np.array_equal(got_sc, sc)
    gammas = np.r_[0.0, np.geomspace(1e-4, 1e2, 60)]
    hl, hs = m.evaluate(gs._max_sum(m, gammas))
    for g, l, s in zip(gammas, hl, hs):
        assert np.max(sc - g * lat) == pytest.approx(s - g * l, abs=1e-9)  # the front holds each hull point
        assert not np.any((lat <= l - 1e-9) & (sc >= s + 1e-9))  # and none beats it
    for share in (0.1, 0.3, 0.7, 0.95):
        b = lo + share * (hi - lo)
        a = gs.exact(m, b, with_front=False)
        assert a.latency <= b and a.score == pytest.approx(sc[lat <= b].max(), abs=1e-12)


@pytest.mark.parametrize("kind", ["residual", "grid"])
def test_front_with_exact_ties_in_latency_and_score(kind):
    rng = np.random.default_rng(8)
    m, terms = random_graph(rng, kind, 3, 4, quantum=0.125)  # binary fractions: sums are exact
    idx, lat, sc = enumerate_mrf(m, terms)
    assert len(np.unique(lat)) < len(lat) / 4  # many ties
    ref = true_front(lat, sc)
    assert [(s.latency, s.score) for s in gs.pareto_front(m)] == [(lat[k], sc[k]) for k in ref]
    for b in np.unique(lat)[::7]:
        assert gs.exact(m, float(b)).score == sc[lat <= b].max()
        assert gs.exact(m, float(b), with_front=False).score == sc[lat <= b].max()


def test_lagrangian_misses_non_hull_optima_that_exact_finds():
    rng = np.random.default_rng(7)
    gaps = []
    for t in range(30):
        m, terms = random_graph(rng, list(GRAPHS)[t % len(GRAPHS)], 2, 3)
        _, lat, sc = enumerate_mrf(m, terms)
        b = float(rng.uniform(lat.min(), lat.max()))
        gaps.append(gs.exact(m, b, with_front=False).score - gs.lagrangian(m, b).score)
    assert min(gaps) > -1e-9 and max(gaps) > 1e-6


def test_latency_bins_keep_the_budget_guarantee():
    rng = np.random.default_rng(3)
    m, terms = random_graph(rng, "grid", 3, 4)
    idx, lat, sc = enumerate_mrf(m, terms)
    for kw in ({"bins": 4}, {"max_labels": 20}):  # coarse bins; a label limit that forces them
        front = gs.pareto_front(m, **kw)
        assert 0 < len(front) <= len(true_front(lat, sc))
        for b in rng.uniform(lat.min(), lat.max(), 5):
            e = gs.exact(m, float(b), **kw)
            assert e.latency <= b and m.latency(e.idx) <= b and e.score <= sc[lat <= b].max() + 1e-12
            assert not e.info["certified"]


def test_factors_on_one_pair_are_summed_and_fixed_groups_work():
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0, 1, (2, 3)), rng.uniform(0, 1, (3, 2))
    sa = rng.normal(0, 1, (2, 3))
    ch = [(8, 16), (8, 16, 24), (3,)]
    su = [rng.normal(0, 1, 2), rng.normal(0, 1, 3), np.zeros(1)]
    lu = [rng.uniform(0, 0.1, 2), rng.uniform(0, 0.1, 3), np.array([0.5])]
    stem = rng.uniform(0, 1, (1, 2))
    two = GraphMRF(ch, su, lu, [(0, 1, a, sa), (1, 0, b), (2, 0, stem)], 0.1, fixed=[False, False, True],
                   names=["s1", "s2", "input"])
    one = GraphMRF(ch, su, lu, [(0, 1, a + b.T, sa), (2, 0, stem)], 0.1)
    assert two.edges == [(0, 1), (0, 2)] and np.allclose(two.pairs[(0, 1)][0], a + b.T)
    for g in (0.0, 2.0):
        assert gs.viterbi(two, g).idx == gs.viterbi(one, g).idx
        for x, y in zip(gs.marginals(two, g, 0.5), gs.marginals(one, g, 0.5)):
            np.testing.assert_allclose(x, y, atol=1e-12)
    assert [p.idx for p in gs.pareto_front(two)] == [p.idx for p in gs.pareto_front(one)]
    assert all(p.widths[2] == 3 for p in gs.pareto_front(two))


# ---- pgmpy on the same graphs ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["chain", "residual", "grid", "tree"])
def test_pgmpy_agrees_on_map_and_marginals(kind):
    from widthnas.benchmarks.pgmpy_ref import pgmpy_map, pgmpy_marginals

    m, _ = random_graph(np.random.default_rng(11), kind, 3, 4)
    for gamma, T in ((0.0, 1.0), (1.3, 0.5)):
        for a, b in zip(pgmpy_marginals(m, gamma, T), gs.marginals(m, gamma, T)):
            np.testing.assert_allclose(a, b, atol=1e-9)
        assert pgmpy_map(m, gamma) == gs.viterbi(m, gamma).idx


def test_tied_layers_as_one_group_match_pgmpy_with_equality_factors():
    """A residual add ties layers 1 and 3 of a 5-layer chain. The references model the chain of layers
    with the tie as a constraint: pgmpy with an equality factor, and brute force over the chain's
    configurations that keep it. The search merges the two layers into one group, whose factors to
    layer 2 land on one pair and are summed. All must agree: MAP, marginals, budgeted optimum."""
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.inference import VariableElimination

    from widthnas.benchmarks.pgmpy_ref import to_pgmpy, group

    rng = np.random.default_rng(12)
    ch = [(8, 16, 24), (8, 16, 32), (16, 24, 32), (8, 16, 32), (8, 16)]
    u, l = [rng.normal(0, 1, len(c)) for c in ch], [rng.uniform(0, 0.1, len(c)) for c in ch]
    p = [rng.uniform(0, 1, (len(ch[i]), len(ch[i + 1]))) for i in range(4)]
    sp = [rng.normal(0, 0.3, (len(ch[i]), len(ch[i + 1]))) for i in range(4)]
    chain = GraphMRF(ch, u, l, [PairFactor(i, i + 1, p[i], sp[i]) for i in range(4)], 0.1)
    # groups: 0 = layer 0, 1 = layers 1 and 3 (tied), 2 = layer 2, 3 = layer 4
    g = GraphMRF([ch[0], ch[1], ch[2], ch[4]], [u[0], u[1] + u[3], u[2], u[4]], [l[0], l[1] + l[3], l[2], l[4]],
                 [(0, 1, p[0], sp[0]), (1, 2, p[1], sp[1]), (2, 1, p[2], sp[2]), (1, 3, p[3], sp[3])], 0.1)
    assert g.edges == [(0, 1), (1, 2), (1, 3)]
    layers = lambda x: [x[0], x[1], x[2], x[1], x[3]]  # noqa: E731 (group indices -> layer indices)

    def tied_net(gamma, T):
        net = to_pgmpy(chain, gamma, T)
        a, b = group(1), group(3)
        net.add_edge(a, b)
        net.add_factors(DiscreteFactor([a, b], [3, 3], np.eye(3).ravel(), state_names={a: list(ch[1]), b: list(ch[3])}))
        return VariableElimination(net)

    idx, lat, sc = enumerate_mrf(chain)
    tied = idx[:, 1] == idx[:, 3]
    for gamma in (0.0, 0.9):
        got = layers(gs.viterbi(g, gamma).idx)
        ref = tied_net(gamma, 1.0).map_query([group(k) for k in range(5)], show_progress=False)
        assert [ref[group(k)] for k in range(5)] == chain.widths(got)
        assert got == list(idx[tied][np.argmax((sc - gamma * lat)[tied])])
    ve = tied_net(0.9, 0.7)
    for k, m in enumerate(layers(gs.marginals(g, 0.9, 0.7))):
        f = ve.query([group(k)], show_progress=False)
        ref = np.array([f.get_value(**{group(k): w}) for w in ch[k]])
        np.testing.assert_allclose(m, ref / ref.sum(), atol=1e-9)
    b = 0.5 * (gs.fastest(g).latency + gs.slowest_latency(g))
    e = gs.exact(g, b)
    x = layers(e.idx)
    assert chain.latency(x) == pytest.approx(e.latency) and chain.score(x) == pytest.approx(e.score)
    assert e.latency <= b and e.score == pytest.approx(sc[tied & (lat <= b)].max(), abs=1e-12)


# ---- errors that say what is wrong and what to do ----------------------------------------------
def _ok():
    return dict(choices=[(8, 16), (8, 16, 24), (16,)], score_unary=[np.zeros(2), np.zeros(3), np.zeros(1)],
                lat_unary=[np.ones(2), np.ones(3), np.ones(1)], factors=[(0, 1, np.ones((2, 3)))])


@pytest.mark.parametrize("change, match", [
    ({"choices": [], "score_unary": [], "lat_unary": [], "factors": []}, "empty graph MRF"),
    ({"choices": [(8, 16), (8, 8, 24), (16,)]}, r"group 1: width choices .* distinct positive integers"),
    ({"choices": [(8, 16), (8, 16.5, 24), (16,)]}, "group 1: width choices"),
    ({"choices": [(8, 16), (0, 16, 24), (16,)]}, "group 1: width choices"),
    ({"score_unary": [np.zeros(2), np.zeros(3)]}, "3 groups but 2 score unaries"),
    ({"lat_unary": [np.ones(2), np.ones(4), np.ones(1)]}, r"group 1: latency unary has shape \(4,\), expected \(3,\)"),
    ({"score_unary": [np.zeros(2), np.array([0, np.nan, 0]), np.zeros(1)]}, "group 1: score unary: NaN or inf"),
    ({"factors": [(1, 1, np.ones((3, 3)))]}, "factor 0 joins group 1 with itself"),
    ({"factors": [(0, 3, np.ones((2, 3)))]}, r"factor 0 joins groups \(0, 3\), but the groups are 0..2"),
    ({"factors": [(0, 1, np.ones((3, 2)))]},
     r"factor 0 \(group 0 -> group 1\): latency table has shape \(3, 2\), expected \(2, 3\)"),
    ({"factors": [(0, 1, np.ones((2, 3)), np.full((2, 3), np.inf))]}, "score table: NaN or inf"),
    ({"factors": ["conv"]}, "factor 0: give a PairFactor or a tuple"),
    ({"fixed": [False, True, False]}, "group 1 is fixed but has 3 widths"),
    ({"fixed": [False]}, "3 groups need 3 flags"),
    ({"names": ["a", "a", "b"]}, "3 distinct names"),
    ({"intercept": float("nan")}, "intercept nan ms is not finite"),
])
def test_bad_input_is_named(change, match):
    with pytest.raises(ValueError, match=match):
        GraphMRF(**{**_ok(), **change})


def test_bad_queries_are_named():
    m = GraphMRF(**_ok(), names=["stem", "stage1", "head"])
    with pytest.raises(ValueError, match=r"group 1 \(stage1\): width 12 is not one of its choices \[8, 16, 24\]"):
        m.indices([8, 12, 16])
    with pytest.raises(InfeasibleBudget, match=r"below the fastest network.*4\.0000 ms"):
        gs.exact(m, 2.5)
    with pytest.raises(InfeasibleBudget):
        gs.lagrangian(m, 0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        gs.marginals(m, 0.0, 0.0)
    assert gs.exact(m, 4.0).latency == 4.0  # a budget exactly at the fastest network is feasible


# ---- the flat max-sum program against the clique-by-clique reference -----------------------------
def _gammas(rng, n=40):
    return np.r_[0.0, np.geomspace(1e-4, 1e3, n), rng.uniform(0, 5, 8)]


@pytest.mark.parametrize("kind", GRAPHS)
@pytest.mark.parametrize("quantum", [0.0, 0.25])
def test_flat_max_sum_equals_reference_and_brute_force(kind, quantum):
    """`_max_sum` (levels batched, padded, decoded by pointer doubling) gives the reference's idx
    bit for bit, ties included (quantum: many exact ties), and the brute-force optimum's value."""
    for seed in range(3):
        rng = np.random.default_rng(900 + seed)
        m, terms = random_graph(rng, kind, quantum=quantum)
        idx, lat, sc = enumerate_mrf(m, terms)
        gam = _gammas(rng)
        got = gs._max_sum(m, gam)
        assert got.dtype == max_sum_ref(m, gam).dtype and np.array_equal(got, max_sum_ref(m, gam))
        glat, gsc = m.evaluate(got)
        for g, l, s in zip(gam, glat, gsc):
            assert s - g * l == pytest.approx(np.max(sc - g * lat), abs=1e-9)
        for g in gam[:5]:  # one multiplier at a time: other index maps (G = 1)
            assert np.array_equal(gs._max_sum(m, [g]), max_sum_ref(m, [g]))


@pytest.mark.parametrize("hubs", [1, 3, 12])
def test_flat_max_sum_on_deep_and_bushy_trees(hubs):
    """Trees of 12 groups from stars (hubs=1) to random recursive trees (deep: several doublings),
    and a 14-group chain (depth 13): the same idx as the reference, brute force where affordable."""
    for seed in range(3):
        rng = np.random.default_rng(40 * hubs + seed)
        m, terms = random_tree(rng, 12, hubs)
        gam = _gammas(rng)
        assert np.array_equal(gs._max_sum(m, gam), max_sum_ref(m, gam))
        if seed == 0:
            idx, lat, sc = enumerate_mrf(m, terms)
            glat, gsc = m.evaluate(gs._max_sum(m, gam))
            assert np.allclose(gsc - gam * glat, [np.max(sc - g * lat) for g in gam], atol=1e-9)
    from widthnas.benchmarks.solver_speed import instance

    chain = instance(hubs, n=14, k=4)  # MobileNet-v1's shape: 14 groups in a chain
    assert chain.edges == [(i, i + 1) for i in range(13)]
    gam = _gammas(rng)
    assert np.array_equal(gs._max_sum(chain, gam), max_sum_ref(chain, gam))


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet"])
def test_builtin_spaces_flat_max_sum_and_lagrangian_equal_reference(name, monkeypatch):
    """The built-in 224 px spaces (issue 12's speed target): the same max-sum idx at 400 multipliers,
    and the same Lagrangian answers (idx, gamma) at 40 budgets as with the reference max-sum."""
    from widthnas.benchmarks.solver_speed import builtin_graph

    m = builtin_graph(name)
    gam = np.r_[0.0, np.geomspace(1e-5, 1e3, 400)]
    assert np.array_equal(gs._max_sum(m, gam), max_sum_ref(m, gam))
    for g in gam[::50]:
        assert np.array_equal(gs._max_sum(m, [g]), max_sum_ref(m, [g]))
    lo, hi = gs.fastest(m).latency, gs.slowest_latency(m)
    budgets = lo + np.linspace(0.0, 1.0, 40) * (hi - lo)
    new = [gs.lagrangian(m, b) for b in budgets]
    monkeypatch.setattr(gs, "_max_sum", max_sum_ref)
    old = [gs.lagrangian(m, b) for b in budgets]
    assert [(s.idx, s.info["gamma"], s.score, s.latency) for s in new] == \
        [(s.idx, s.info["gamma"], s.score, s.latency) for s in old]
