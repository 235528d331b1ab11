"""`widthnas fit`: the networks x entries system solved into a LatencyTable.

Whole random networks are timed and per-entry costs (entries.py) solved for. An entry of one signature, in ms:
    T[c_in, c_out] = theta . (c_in', c_out', c_in' c_out') + R[c_in, c_out]
with c' = c / (the signature's widest), theta >= 0 (bilinear, as a convolution's work is) and a residual R
ridge-penalised by `lam`: only network sums are identifiable, so the anchor keeps unmeasured entries on the
surface while measured ones may leave it. An op that keeps its channels has the one feature c' (a grouped
conv also c'^2). A squared hinge (weight `mu`) penalises negative entries and entries cheaper than a
neighbour with fewer channels. Residuals are relative, since the target is "within ±10 %" for small and
large networks alike; lam and mu come from k-fold cross-validation.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import lsq_linear
from scipy.sparse.linalg import lsmr

from widthnas._cv import kfold

from widthnas.models.space import GraphSpace

from .entries import GraphEntries
from .table import LatencyTable
from .host_state import ELASTICITY_RANGE, speed_range_of, typical_speed_ms
from .samples import Samples


@dataclass
class FitSettings:
    lams: tuple[float, ...] = (1e-2, 1.0, 10.0, 100.0, 1000.0)  # ridge on residual entries, relative units
    mus: tuple[float, ...] = (0.0, 0.1, 10.0)  # monotonicity / non-negativity penalty weight
    folds: int = 5  # cross-validation folds for choosing lam, mu and the elasticity
    active_set_iters: int = 6  # re-solves while adding violated monotonicity pairs
    seed: int = 0
    elasticities: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # host-state correction k (host_state.py)


def _features(ci: np.ndarray, co: np.ndarray, diagonal: bool, quadratic: bool = False) -> list[np.ndarray]:
    """Bilinear anchor features of one signature's entries (channels ci, co, each (m,)), normalised;
    a feature that is constant over the entries is left out (the intercept carries constants). A grouped
    conv keeps its channels but does c' * c' / groups work: `quadratic` adds c'^2 to the diagonal's c'."""
    ci_n, co_n = ci / ci.max(), co / co.max()
    vary_in, vary_out = len(set(ci)) > 1, len(set(co)) > 1
    if diagonal:
        return ([ci_n] + ([ci_n * ci_n] if quadratic else [])) if vary_in else []
    return [f for f, keep in ((ci_n, vary_in), (co_n, vary_out), (ci_n * co_n, vary_in and vary_out)) if keep]


def _neighbours(idx: np.ndarray, along: np.ndarray, across: np.ndarray) -> list[tuple[int, int]]:
    """(fewer, more channels) pairs of entries that share `across` and are adjacent in `along`."""
    out = []
    for v in np.unique(across):
        m = idx[across == v]
        m = m[np.argsort(along[across == v], kind="stable")]
        out += list(zip(m[:-1], m[1:]))
    return out


class System:
    """One graph space's fit: E entries, P bilinear coefficients, T (E, P+E) sparse map from (theta, R)
    to entries, and pairs (m, 2): entry indices (fewer, more channels) the monotonicity penalty orders."""

    def __init__(self, space: GraphSpace, keying: str = "signature"):
        self.entries = GraphEntries(space, keying)
        self.E = self.entries.E
        keys = self.entries.keys
        c_in = np.array([k.c_in for k in keys], float)
        c_out = np.array([k.c_out for k in keys], float)
        rows, cols, vals, P, pairs = [], [], [], 0, []
        for sig, idx in self.entries.by_signature().items():
            diag = self.entries.diagonal(sig)
            for f in _features(c_in[idx], c_out[idx], diag, sig.grouped):
                rows.extend(idx)
                cols.extend([P] * len(idx))
                vals.extend(f)
                P += 1
            if diag:  # one chain of ascending channels
                pairs += _neighbours(idx, c_in[idx], np.zeros(len(idx)))
            else:
                pairs += _neighbours(idx, c_in[idx], c_out[idx]) + _neighbours(idx, c_out[idx], c_in[idx])
        self.P = P  # bilinear coefficients
        self.B = sp.csr_matrix((vals, (rows, cols)), shape=(self.E, P))
        self.T = sp.hstack([self.B, sp.identity(self.E)]).tocsr()  # entries from (theta, R)
        self.pairs = np.array(pairs, int).reshape(-1, 2)
        self.design = self.entries.design  # (n, E) counts of every entry in each network

    def least_squares_rows(self, A: sp.csr_matrix, y: np.ndarray, lam: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(data rows (n, P+E+1), ridge rows (E, P+E+1)) over z = (theta, R, intercept): relative
        errors of the n networks, and the residual ridge scaled to the median network (ms)."""
        E, P, s = self.E, self.P, float(np.median(y))
        data = sp.hstack([sp.diags(1.0 / y) @ A @ self.T, sp.csr_matrix(1.0 / y[:, None])]).tocsr()
        ridge = sp.hstack([sp.csr_matrix((E, P)), sp.identity(E) * (np.sqrt(lam) / s), sp.csr_matrix((E, 1))])
        return data, ridge.tocsr()

    def solve(self, A: sp.csr_matrix, y: np.ndarray, lam: float, mu: float, iters: int) -> tuple[np.ndarray, float]:
        """Table entries (E,) ms and intercept ms: theta >= 0 exactly (`_nonneg_lsq`), the hinge
        penalties by re-solving with the violated pairs added."""
        s = float(np.median(y))
        n, E, P = A.shape[0], self.E, self.P
        T1 = sp.hstack([self.T, sp.csr_matrix((E, 1))]).tocsr()  # (E, P+E+1) entries from z
        data, ridge = self.least_squares_rows(A, y, lam)
        active_pairs = np.zeros(len(self.pairs), bool)
        active_neg = np.zeros(E, bool)
        for _ in range(max(1, iters)):
            blocks = [data, ridge]
            if active_pairs.any() or active_neg.any():
                p = self.pairs[active_pairs]
                blocks += [(T1[p[:, 0]] - T1[p[:, 1]]) * (np.sqrt(mu) / s),
                           T1[np.flatnonzero(active_neg)] * (np.sqrt(mu) / s)]
            M = sp.vstack(blocks).tocsr()
            rhs = np.r_[np.ones(n), np.zeros(M.shape[0] - n)]
            z = _nonneg_lsq(M, rhs, P)
            entries = self.T @ z[:-1]
            if mu <= 0:
                break
            viol = entries[self.pairs[:, 0]] > entries[self.pairs[:, 1]] + 1e-9 * s
            negs = entries < 0
            if not (viol & ~active_pairs).any() and not (negs & ~active_neg).any():
                break
            active_pairs |= viol
            active_neg |= negs
        return entries, float(z[-1])


def _nonneg_lsq(M: sp.csr_matrix, rhs: np.ndarray, P: int) -> np.ndarray:
    """argmin ||M z - rhs|| subject to z[:P] >= 0, the other columns free.

    lsmr inside an active set: phase 1 pins negative coefficients until feasible; phase 2 (Lawson-Hanson)
    releases the most promising pinned one and steps back to stay feasible, so it cannot cycle and ends at
    the KKT optimum. scipy's bounded solver is the last resort, kept only where it does better.
    """
    M = M.tocsc()
    n_cols = M.shape[1]
    tol = 1e-7 * max(1e-300, float(np.abs(M[:, :P].T @ rhs).max(initial=0.0)))

    def lsq(free: np.ndarray) -> np.ndarray:
        # near, not at, the optimum at the iteration cap (heavy mu: ill-conditioned); iterates stay feasible
        z = np.zeros(n_cols)
        z[free] = lsmr(M[:, free], rhs, atol=1e-10, btol=1e-10, maxiter=5000)[0]
        return z

    def cost(v: np.ndarray) -> float:
        return float(np.sum((M @ v - rhs) ** 2))

    free = np.ones(n_cols, bool)  # columns not pinned at zero
    z = lsq(free)
    while (z[:P][free[:P]] < 0).any():  # phase 1
        free[:P] &= z[:P] >= 0
        z = lsq(free)
        z[:P] = np.where(free[:P], z[:P], 0.0)
    for _ in range(3 * P + 3):  # phase 2
        z[:P] = np.maximum(z[:P], 0.0)
        grad = M[:, :P].T @ (M @ z - rhs)  # a pinned coefficient with grad < 0 should grow
        cand = np.flatnonzero(~free[:P] & (grad < -tol))
        if cand.size == 0:
            return z
        free[cand[np.argmin(grad[cand])]] = True
        for _inner in range(P + 1):
            s = lsq(free)
            bad = np.flatnonzero(free[:P] & (s[:P] < 0))
            if bad.size == 0:
                z = s
                break
            alpha = float(np.min(z[bad] / (z[bad] - s[bad])))
            z = z + alpha * (s - z)
            pin = free[:P] & (z[:P] <= 1e-12 * max(1e-300, float(np.abs(z[:P]).max(initial=0.0))))
            if not pin.any():  # rounding left the blocking coefficient a hair above zero
                pin[bad[np.argmin(z[bad])]] = True
            free[:P] &= ~pin
            z[:P][pin] = 0.0
    z[:P] = np.maximum(z[:P], 0.0)
    lower = np.r_[np.zeros(P), np.full(n_cols - P, -np.inf)]
    ref = lsq_linear(M, rhs, bounds=(lower, np.inf), method="trf", tol=1e-10, lsmr_tol="auto", max_iter=1000).x
    return ref if cost(ref) < cost(z) else z  # the bounded solver can stop at its cap too


def _rmspe(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(((pred - y) / y) ** 2)))


def _cv_rmspe(sys_: System, A: sp.csr_matrix, y: np.ndarray, lam: float, mu: float, settings: FitSettings) -> float:
    """Mean RMSPE on the held-out networks of each k-fold split."""
    errs = []
    for tr, te in kfold(len(y), settings.folds, settings.seed):
        e, c = sys_.solve(A[tr], y[tr], lam, mu, settings.active_set_iters)
        errs.append(_rmspe(A[te] @ e + c, y[te]))
    return float(np.mean(errs))


def solve_samples(sys_: System, samples: Samples, settings: FitSettings
                  ) -> tuple[np.ndarray, float, float, np.ndarray, dict]:
    """Targets in ms at the reference's typical speed; lam and mu by k-fold CV without host-state
    correction, then its elasticity by CV at them. Returns (entries (E,) ms, intercept ms, reference ms,
    design matrix, fit record)."""
    if len(samples) < settings.folds * 2:
        raise ValueError(f"{len(samples)} samples are too few to fit; profile at least {settings.folds * 10}")
    bad = [k for k in settings.elasticities if not ELASTICITY_RANGE[0] <= k <= ELASTICITY_RANGE[1]]
    if bad or not settings.elasticities:
        raise ValueError(f"elasticities {settings.elasticities}: give at least one, each in "
                         f"[{ELASTICITY_RANGE[0]:g}, {ELASTICITY_RANGE[1]:g}]")
    t0 = time.time()
    reference_ms = float(np.median(samples.ref_ms))
    y = samples.norm * reference_ms  # ms at the reference network's typical speed, k = 0
    A = sys_.design(samples.widths)
    cv = {(lam, mu): _cv_rmspe(sys_, A, y, lam, mu, settings) for lam in settings.lams for mu in settings.mus}
    lam, mu = min(cv, key=cv.get)
    entries, c = sys_.solve(A, y, lam, mu, settings.active_set_iters)
    # a wrong k adds to each target a part no table can predict (the host's speed, not the widths), so the k
    # that predicts held-out networks best wins; with one reference speed every k gives the same targets
    cv_k = {}
    if tuple(settings.elasticities) != (0.0,) and np.ptp(samples.ref_ms) != 0:
        for k in settings.elasticities:
            y_k = typical_speed_ms(samples.norm, samples.ref_ms, reference_ms, k)
            cv_k[float(k)] = cv[(lam, mu)] if k == 0 else _cv_rmspe(sys_, A, y_k, lam, mu, settings)
    k = min(cv_k, key=cv_k.get) if cv_k else 0.0
    if k:
        y = typical_speed_ms(samples.norm, samples.ref_ms, reference_ms, k)
        entries, c = sys_.solve(A, y, lam, mu, settings.active_set_iters)
    cv_k = cv_k or {k: cv[(lam, mu)]}
    rec = {"samples": int(len(y)), "unsettled_samples": int(samples.unsettled),
           "disturbed_samples": len(samples.disturbed),  # left out: measured while the machine was disturbed
           "remeasured_samples": len(samples.remeasured),  # kept: measured again after a disturbance
           "entries": sys_.E, "lam": lam,
           "mu": mu, "cv_rmspe": cv_k[k], "train_rmspe": _rmspe(A @ entries + c, y),  # cv at lam, mu, k; cv_grid: k = 0
           "elasticity": k, "elasticity_cv": [{"k": kk, "rmspe": v} for kk, v in cv_k.items()],
           "host_speed_range": speed_range_of(samples.ref_ms, reference_ms),  # s the correction was fitted on
           "settings": asdict(settings), "seconds": round(time.time() - t0, 2),
           "cv_grid": [{"lam": key[0], "mu": key[1], "rmspe": v} for key, v in cv.items()]}
    return entries, c, reference_ms, A, rec


@dataclass
class FlopsProxy:
    """latency ≈ a + b * MACs, the baseline the table must beat."""
    a: float  # ms
    b: float  # ms per MAC
    reference_ms: float

    def predict_many(self, space, widths: np.ndarray) -> np.ndarray:
        return self.a + self.b * np.array([space.macs(w) for w in widths], float)

    def to_dict(self) -> dict:
        """The form a profile keeps in its `fit.flops_proxy`."""
        return {"a_ms": self.a, "b_ms_per_mac": self.b, "reference_ms": self.reference_ms}

    @classmethod
    def from_profile(cls, table) -> "FlopsProxy | None":
        """The proxy fitted beside a profile's table, if it has one."""
        d = table.fit.get("flops_proxy")
        return cls(d["a_ms"], d["b_ms_per_mac"], d["reference_ms"]) if d else None


def fit_flops_proxy(space, samples: Samples, elasticity: float = 0.0) -> FlopsProxy:
    """Fitted to the same targets as the table (give its fit's elasticity), so both meet the same measurements."""
    reference_ms = float(np.median(samples.ref_ms))
    y = typical_speed_ms(samples.norm, samples.ref_ms, reference_ms, elasticity)
    m = np.array([space.macs(w) for w in samples.widths], float)
    X = np.stack([np.ones_like(m), m], 1) / y[:, None]  # relative least squares, like the table
    a, b = np.linalg.lstsq(X, np.ones_like(y), rcond=None)[0]
    return FlopsProxy(float(a), float(b), reference_ms)


def fit_table(space: GraphSpace, samples: Samples, settings: FitSettings | None = None,
                    name: str = "", log=print, keying: str = "signature") -> LatencyTable:
    """Fit a LatencyTable to reference-normalised samples; keying 'op': entries per op (more unknowns)."""
    sys_ = System(space, keying)
    costs, c, reference_ms, A, fit = solve_samples(sys_, samples, settings or FitSettings())
    fit.update(entries_measured=int((A.sum(axis=0) > 0).sum()), signatures=len(sys_.entries.signatures))
    log(f"fit: {fit['samples']} samples, {sys_.E} entries ({fit['entries_measured']} measured) in "
        f"{fit['signatures']} signatures; cv RMSPE {fit['cv_rmspe']:.4f} at lam={fit['lam']:g} mu={fit['mu']:g} "
        f"elasticity={fit['elasticity']:g}; train RMSPE {fit['train_rmspe']:.4f}; {fit['seconds']:.1f} s")
    return LatencyTable(space, costs, c, reference_ms, samples.header["device"], fit, {}, name, keying)


def fit_profile(space: GraphSpace, samples: Samples, settings: FitSettings | None = None, name: str = "",
                log=print, keying: str = "signature") -> LatencyTable:
    """The fit `widthnas fit` and `widthnas run` both make: the table, and beside it (in fit.flops_proxy)
    the FLOPs-linear proxy on the same targets, the baseline validation compares it with."""
    table = fit_table(space, samples, settings, name, log, keying)
    table.fit["flops_proxy"] = fit_flops_proxy(space, samples, table.fit["elasticity"]).to_dict()
    return table
