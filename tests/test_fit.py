"""The latency table fit, checked on synthetic devices with a known true table (conftest.synthetic_device),
against scipy's bounded least squares, and the table API on MobileNet-v1."""
import json

import numpy as np
import pytest

from helpers import draw_widths, synthetic_device as synthetic
from widthnas.latency.fit import FitSettings, FlopsProxy, fit_flops_proxy
from widthnas.latency.entries import GraphEntries
from widthnas.latency.fit import System, fit_table, fit_profile
from widthnas.latency.table import LatencyTable, ProfileError
from widthnas.latency.validate import metrics
from widthnas.models.space import WidthError


def test_fit_recovers_a_known_device(small):
    truth, train = synthetic(small, 400, 1, noise=0.005, quirk=0.05)
    _, test = synthetic(small, 200, 2)
    settings = FitSettings(lams=(1e-2, 1.0, 100.0), mus=(0.0,), folds=3)  # lam chosen by cross-validation
    table = fit_profile(small, train, settings, log=lambda *_: None)
    m = metrics(table.predict_many(test.widths), truth.predict_many(test.widths))
    assert m["rmspe"] < 0.02 and m["within_10"] == 1.0 and m["kendall_tau"] > 0.95
    proxy = fit_flops_proxy(small, train, table.fit["elasticity"])
    assert table.fit["flops_proxy"] == proxy.to_dict() and FlopsProxy.from_profile(table) == proxy
    mp = metrics(proxy.predict_many(small, test.widths), truth.predict_many(test.widths))
    assert m["nrmse"] < mp["nrmse"]


@pytest.mark.parametrize("falling", [False, True])
def test_solver_equals_dense_bounded_least_squares(tiny, falling):
    """The sparse solve is the exact bounded least-squares optimum of the same system (theta >= 0),
    also when bounds are active (a device whose cost falls as the stem widens)."""
    from scipy.optimize import lsq_linear

    _, s = synthetic(tiny, 60, 3, noise=0.01)
    sys_ = System(tiny)
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
    # the minimiser need not be unique (entries trade off between ops), its fitted values are
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
    sys_ = System(small)
    A = sys_.design(s.widths)
    loose, _ = sys_.solve(A, s.norm, 1e-3, 0.0, 1)
    tight, _ = sys_.solve(A, s.norm, 1e-3, 1e4, 10)
    viol = lambda e: np.sum(np.maximum(0, e[sys_.pairs[:, 0]] - e[sys_.pairs[:, 1]]))  # noqa: E731
    assert viol(loose) > 0  # the noise makes some to remove
    neg = lambda e: np.sum(np.maximum(0, -e))  # noqa: E731
    assert viol(tight) < 0.05 * viol(loose) and neg(tight) < 0.05 * neg(loose)
    assert tight.min() > 0.02 * loose.min()  # the squared hinge is soft: a few entries stay a hair below 0


def test_table_api_is_consistent(small, tmp_path):
    """MobileNet-v1's latency is a chain for the MRF: a unary per group, a pair per consecutive groups
    (the pointwise convs), and their sum at a network's choices is its prediction."""
    truth, s = synthetic(small, 20, 5)
    w = s.widths[0]
    assert truth.predict(w) == pytest.approx(truth.predict_many(s.widths[:1])[0], rel=1e-12)
    terms = truth.mrf_terms()
    L = len(small.free_groups)
    assert sorted((i, j) for i, j, _ in terms.pairs) == [(k, k + 1) for k in range(L - 1)]
    for i, j, p in terms.pairs:
        assert p.shape == (len(small.choices[i]), len(small.choices[j]))
    idx = small.indices(w)
    chain_sum = terms.intercept + sum(u[i] for u, i in zip(terms.unary, idx)) + sum(
        p[idx[i], idx[j]] for i, j, p in terms.pairs)
    assert chain_sum == pytest.approx(truth.predict(w), rel=1e-12)
    path = tmp_path / "p.json"
    truth.save(path)
    back = LatencyTable.load(path)
    np.testing.assert_allclose(back.predict_many(s.widths), truth.predict_many(s.widths), rtol=1e-5)
    with pytest.raises(WidthError, match="group stem: width 7 is not a choice"):
        truth.predict([7] * L)


def test_a_table_keyed_per_op_holding_its_signatures_costs_predicts_the_same(small, tmp_path):
    """keying 'op' gives every op its own entries (2311 for mobilenet_v1_small against 1060 shared by
    signature); filled from the signature table, entry by entry, it predicts exactly what that table does,
    and it survives its file. Read as signature-keyed, that file is refused, not misread."""
    truth, s = synthetic(small, 50, 6)
    by_sig, by_op = GraphEntries(small), GraphEntries(small, "op")
    assert by_op.E > by_sig.E and all(k.signature.op for k in by_op.keys)
    costs = np.array([truth.costs[by_sig.index[(k.signature._replace(op=""), k.c_in, k.c_out)]] for k in by_op.keys])
    per_op = LatencyTable(small, costs, truth.intercept, truth.reference_ms, keying="op")
    np.testing.assert_allclose(per_op.predict_many(s.widths), truth.predict_many(s.widths), rtol=1e-12)
    p = tmp_path / "op.json"
    per_op.save(p)
    back = LatencyTable.load(p)
    assert back.keying == "op"
    np.testing.assert_allclose(back.predict_many(s.widths), truth.predict_many(s.widths), rtol=1e-5)
    d = json.loads(p.read_text())
    d["keying"] = "signature"
    p.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="is not one the space's ops use"):
        LatencyTable.load(p)
    d["keying"] = "layer"
    p.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="keying 'layer': choose 'signature'"):
        LatencyTable.load(p)


def test_a_fit_keyed_per_op_recovers_a_device_whose_ops_differ(small):
    """Blocks 6-11 of mobilenet_v1_small are identical ops on groups with the same choices: keyed by
    signature they share one table. On a device where block 9 alone costs 3x (as a per-layer chain table
    could say), the fit keyed per op recovers every network exactly; keyed by signature it cannot."""
    from widthnas.latency.samples import Samples

    e = GraphEntries(small, "op")
    assert len({k.signature._replace(op="") for k in e.keys if k.signature.op in ("block8", "block9")}) == 1
    costs = np.array([1e-3 * k.c_in if k.signature.groups in ("dw", "none")  # ops that keep their channels
                      else 1e-4 * k.c_in * k.c_out * (3.0 if k.signature.op == "block9" else 1.0)
                      + 1e-3 * (k.c_in + k.c_out) for k in e.keys])
    truth = LatencyTable(small, costs, 0.01, 1.0, keying="op")
    W = draw_widths(small, "uniform", 100, 1)
    y = truth.predict_many(W)
    train = Samples({"device": {"cpu": "synthetic"}}, W, y, y, np.ones(len(y)), 0)
    test = draw_widths(small, "uniform", 100, 2)
    quick = FitSettings(lams=(1.0,), mus=(0.0,), folds=3, elasticities=(0.0,))
    err = {}
    for keying in ("op", "signature"):
        table = fit_table(small, train, quick, log=lambda *_: None, keying=keying)
        assert table.keying == keying and table.costs.shape == (GraphEntries(small, keying).E,)
        err[keying] = metrics(table.predict_many(test), truth.predict_many(test))["rmspe"]
    assert err["op"] < 1e-5 and err["signature"] > 0.03


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
    from widthnas.latency.sampling import CoverageSampler
    from widthnas.models.families import mobilenet_v2_small

    space = mobilenet_v2_small()
    sampler, W = CoverageSampler(space, 0), []
    for _ in range(12):
        W.append(sampler.next())
        sampler.observe(W[-1])
    y = np.array([0.08819629, 0.09036692, 0.09123436, 0.08118666, 0.09371065, 0.09805602, 0.05915046,
                  0.0904884, 0.1027434, 0.08620535, 0.0778783, 0.08861679])  # ms
    sys_ = System(space)
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


def test_a_plot_path_is_checked_in_a_fresh_interpreter():
    """`widthnas fit --plot fit.png` crashed in a new process: `import matplotlib` does not load matplotlib.figure
    (in the suite another test had loaded it)."""
    import subprocess
    import sys

    code = ("from widthnas.nas.checks import UserError, check_plot_path\n"
            "check_plot_path('fit.png')\n"
            "try:\n    check_plot_path('fit.txt')\nexcept UserError as e:\n    print('refused:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "refused: --plot fit.txt" in r.stdout and ".png" in r.stdout
