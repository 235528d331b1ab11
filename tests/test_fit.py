"""The latency table fit, checked on synthetic devices with a known true table, and the table API."""
import json

import numpy as np
import pytest

from widthnas.latency.fit import FitSettings, _System, fit_flops_proxy, fit_table
from widthnas.latency.sampling import UniformSampler, block_shapes
from widthnas.latency.samples import Samples
from widthnas.latency.table import LatencyTable, ProfileError
from widthnas.latency.validate import metrics
from widthnas.models.space import WidthError


def synthetic(space, n, seed, noise=0.0, quirk=0.0):
    """Samples from a true table: bilinear per-block cost, plus a per-entry quirk, plus noise."""
    rng = np.random.default_rng(123)
    true = []
    for ci, co in block_shapes(space):
        ci, co = np.asarray(ci, float), np.asarray(co, float)
        t = 1e-4 * rng.uniform(0.5, 2) * np.outer(ci, co) + 1e-3 * rng.uniform(0.5, 2) * (ci[:, None] + co[None, :])
        true.append(t * (1 + quirk * rng.uniform(-1, 1, t.shape)))
    truth = LatencyTable(space, true, 0.01, 1.0, {"cpu": "synthetic"})
    s = UniformSampler(space, seed)
    w = np.array([s.next() for _ in range(n)])
    ms = truth.predict_many(w) * (1 + noise * np.random.default_rng(seed).standard_normal(n))
    return truth, Samples({"device": {"cpu": "synthetic"}}, w, ms, ms, np.ones(n), 0)


def test_fit_recovers_a_known_device(small):
    truth, train = synthetic(small, 400, 1, noise=0.005, quirk=0.05)
    _, test = synthetic(small, 200, 2)
    table = fit_table(small, train, FitSettings(folds=3), log=lambda *_: None)
    m = metrics(table.predict_many(test.widths), truth.predict_many(test.widths))
    assert m["rmspe"] < 0.02 and m["within_10"] == 1.0 and m["kendall_tau"] > 0.95
    proxy = fit_flops_proxy(small, train)
    mp = metrics(proxy.predict_many(small, test.widths), truth.predict_many(test.widths))
    assert m["nrmse"] < mp["nrmse"]


@pytest.mark.parametrize("falling", [False, True])
def test_solver_equals_dense_bounded_least_squares(tiny, falling):
    """The sparse solve is the exact bounded least-squares optimum of the same system (theta >= 0),
    also when bounds are active (a device whose cost falls as the stem widens)."""
    from scipy.optimize import lsq_linear

    _, s = synthetic(tiny, 60, 3, noise=0.01)
    sys_ = _System(tiny)
    A = sys_.design(s.widths)
    y = s.norm * (3 - 2 * s.widths[:, 0] / tiny.choices[0][-1]) if falling else s.norm
    lam = 0.5
    e, c = sys_.solve(A, y, lam, 0.0, 1)
    # dense reference: z = (theta, R, c); rows (A [B I] z + c)/y = 1 and sqrt(lam)/median(y) R = 0
    M = np.hstack([(A @ sys_.T).toarray(), np.ones((len(y), 1))]) / y[:, None]
    R = np.zeros((sys_.E, sys_.P + sys_.E + 1))
    R[:, sys_.P:sys_.P + sys_.E] = np.eye(sys_.E) * np.sqrt(lam) / np.median(y)
    lower = np.r_[np.zeros(sys_.P), np.full(sys_.E + 1, -np.inf)]
    ref = lsq_linear(np.vstack([M, R]), np.r_[np.ones(len(y)), np.zeros(sys_.E)], bounds=(lower, np.inf),
                     method="bvls", tol=1e-12)
    z = ref.x
    if falling:
        assert (z[:sys_.P] < 1e-9).sum() >= 2  # the case really has active bounds
    # the minimiser need not be unique (entries trade off between blocks), its fitted values are
    np.testing.assert_allclose(A @ e + c, A @ (sys_.T @ z[:-1]) + z[-1], rtol=1e-6)


def test_nonnegative_least_squares_is_exact_where_pinning_is_not():
    """Correlated columns: pinning every negative coefficient at zero for good (the old active set)
    misses the optimum on about half of these problems; released pins reach scipy's BVLS optimum."""
    import scipy.sparse as sp_
    from scipy.optimize import lsq_linear

    from widthnas.latency.fit import _nonneg_lsq

    for seed in range(60):
        rng = np.random.default_rng(seed)
        base = rng.standard_normal((40, 2))
        M = np.hstack([base @ rng.standard_normal((2, 6)) + 0.3 * rng.standard_normal((40, 6)),
                       rng.standard_normal((40, 2))])  # 6 columns >= 0, 2 free
        rhs = rng.standard_normal(40)
        ref = lsq_linear(M, rhs, bounds=(np.r_[np.zeros(6), -np.inf, -np.inf], np.inf), method="bvls", tol=1e-14).x
        z = _nonneg_lsq(sp_.csr_matrix(M), rhs, 6)
        assert z[:6].min() >= 0
        cost = lambda v: np.sum((M @ v - rhs) ** 2)  # noqa: E731
        assert cost(z) <= cost(ref) * (1 + 1e-7) + 1e-12, seed


def test_monotonicity_penalty_removes_violations(small):
    _, s = synthetic(small, 150, 4, noise=0.05)
    sys_ = _System(small)
    A = sys_.design(s.widths)
    loose, _ = sys_.solve(A, s.norm, 1e-3, 0.0, 1)
    tight, _ = sys_.solve(A, s.norm, 1e-3, 1e4, 10)
    viol = lambda e: np.sum(np.maximum(0, e[sys_.pairs[:, 0]] - e[sys_.pairs[:, 1]]))
    assert viol(tight) < 0.05 * viol(loose)
    assert tight.min() > -1e-4 * np.median(s.norm)


def test_table_api_is_consistent(small, tmp_path):
    truth, s = synthetic(small, 20, 5)
    w = s.widths[0]
    assert truth.predict(w) == pytest.approx(truth.predict_many(s.widths[:1])[0])
    unary, pair = truth.chain()
    idx = small.indices(w)
    chain_sum = truth.intercept + sum(u[i] for u, i in zip(unary, idx)) + sum(
        p[idx[k], idx[k + 1]] for k, p in enumerate(pair))
    assert chain_sum == pytest.approx(truth.predict(w))
    assert truth.pairwise(3).shape == (len(small.choices[2]), len(small.choices[3]))
    path = tmp_path / "p.json"
    truth.save(path)
    back = LatencyTable.load(path)
    assert back.predict(w) == pytest.approx(truth.predict(w), rel=1e-5)
    with pytest.raises(WidthError, match="not a choice"):
        truth.predict([7] * small.num_layers)


def test_bad_profiles_are_named(small, tmp_path):
    truth, _ = synthetic(small, 5, 6)
    p = tmp_path / "p.json"
    p.write_text('{"format": "widthnas-profile/1", "blocks": [')
    with pytest.raises(ProfileError, match="does not parse"):
        LatencyTable.load(p)
    d = truth.to_dict()
    d["blocks"][2]["ms"] = d["blocks"][2]["ms"][:-1]
    p.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="block 2 has shape"):
        LatencyTable.load(p)
    d = truth.to_dict()
    d["space"]["fingerprint"] = "0" * 16
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="fingerprint"):
        LatencyTable.load(p)
    del d["intercept_ms"]
    d["space"]["fingerprint"] = small.fingerprint
    p.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="schema"):
        LatencyTable.load(p)


def test_metrics_by_hand():
    m = metrics(np.array([1.0, 2.15, 2.9]), np.array([1.0, 2.0, 3.0]))
    assert m["within_5"] == pytest.approx(2 / 3) and m["within_10"] == 1.0
    assert m["rmse"] == pytest.approx(np.sqrt((0 + 0.0225 + 0.01) / 3))
    assert m["kendall_tau"] == pytest.approx(1.0)


@pytest.mark.parametrize("lam", [100.0, 1000.0])
def test_nonnegative_least_squares_on_an_underdetermined_ridge_fit(lam):
    """The graph fit of 12 networks (CI run of 2026-11-24: the coverage sampler's first 12
    mobilenet_v2_small networks, their measured ms). At lam = 1000 the ridge rows weigh entries
    hundreds of times more than the data rows; the old active set cycled and its fallback stopped
    at an iteration cap with 500x the optimal objective (train RMSPE 36 %, intercept -0.33 ms)."""
    import scipy.sparse as sp_
    from scipy.optimize import lsq_linear

    from widthnas.latency.fit import _nonneg_lsq
    from widthnas.latency.graph_fit import GraphSystem
    from widthnas.latency.graph_sampling import GraphCoverageSampler
    from widthnas.models.graph_families import mobilenet_v2_small

    space = mobilenet_v2_small()
    sampler, W = GraphCoverageSampler(space, 0), []
    for _ in range(12):
        W.append(sampler.next())
        sampler.observe(W[-1])
    y = np.array([0.08819629, 0.09036692, 0.09123436, 0.08118666, 0.09371065, 0.09805602, 0.05915046,
                  0.0904884, 0.1027434, 0.08620535, 0.0778783, 0.08861679])  # ms
    sys_ = GraphSystem(space)
    A = sys_.design(np.array(W))
    P = sys_.P
    M = sp_.vstack(sys_.least_squares_rows(A, y, lam)).tocsr()  # the rows the fit solves when mu = 0
    rhs = np.r_[np.ones(len(y)), np.zeros(sys_.E)]
    lower = np.r_[np.zeros(P), np.full(M.shape[1] - P, -np.inf)]
    ref = lsq_linear(M.toarray(), rhs, bounds=(lower, np.inf), method="bvls").x
    z = _nonneg_lsq(M, rhs, P)
    cost = lambda v: float(np.sum((M @ v - rhs) ** 2))  # noqa: E731
    assert z[:P].min() >= 0
    assert cost(z) <= cost(ref) * (1 + 1e-6) + 1e-12
    entries, c = sys_.solve(A, y, lam, 0.0, 1)  # and through the fit: its own networks fit closely
    assert np.median(np.abs((A @ entries + c) / y - 1)) < 0.05 and c > 0
