"""Solvers on a WidthMRF: Viterbi, the paper's Lagrangian budget search, the exact budgeted
optimum with the whole Pareto front, and temperature marginals / joint samples for narrowing."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .chain import forward_backward, max_sum, sample
from .model import InfeasibleBudget, WidthMRF


@dataclass
class Solution:
    widths: list[int]  # channels per layer
    idx: list[int]  # index into each layer's choices
    score: float  # sum of score unaries (higher is better)
    latency: float  # predicted, ms
    method: str
    budget: float | None = None  # ms
    info: dict = field(default_factory=dict)
    pareto: list["Solution"] | None = None  # exact method: the whole front, by latency

    def to_dict(self) -> dict:
        info = {k: v for k, v in self.info.items() if k != "path"}  # greedy's trajectory stays in memory
        return {"widths": self.widths, "score": self.score, "predicted_ms": self.latency, "method": self.method,
                "budget_ms": self.budget, "info": info}


def _solution(mrf: WidthMRF, idx, method: str, budget=None, **info) -> Solution:
    idx = [int(k) for k in idx]
    return Solution(mrf.widths(idx), idx, mrf.score(idx), mrf.latency(idx), method, budget, info)


def viterbi(mrf: WidthMRF, gamma: float = 0.0) -> Solution:
    """argmax of score - gamma * latency."""
    u, p = mrf.lagrangian_terms(gamma)
    idx, _ = max_sum(u, p)
    return _solution(mrf, idx, "viterbi", gamma=gamma)


def fastest(mrf: WidthMRF) -> Solution:
    """The minimum-latency configuration (ties broken by score)."""
    idx, _ = max_sum([-l + 1e-9 * s for l, s in zip(mrf.lat_unary, mrf.score_unary)], [-p for p in mrf.lat_pair])
    return _solution(mrf, idx, "fastest")


def slowest_latency(mrf: WidthMRF) -> float:
    idx, _ = max_sum(mrf.lat_unary, mrf.lat_pair)
    return mrf.latency(idx)


def refuse_below(f: Solution, budget: float, where: str = "space") -> Solution:
    """`f` (the fastest configuration), after refusing a budget below its latency."""
    if not np.isfinite(budget) or budget < f.latency:
        raise InfeasibleBudget(f"budget {budget:.4f} ms is below the fastest network in this {where} "
                               f"({f.latency:.4f} ms, widths {f.widths}); raise the budget to at least that")
    return f


def check_budget(mrf: WidthMRF, budget: float) -> Solution:
    """The fastest configuration, after refusing a budget below it."""
    return refuse_below(fastest(mrf), budget)


# ---- Lagrangian (the paper's method) -----------------------------------------------------
def _viterbi_batch(mrf: WidthMRF, gammas: np.ndarray) -> np.ndarray:
    """(G,) multipliers -> (G, n) argmax indices of score - gamma * latency, all at once."""
    G = len(gammas)
    g = gammas[:, None]
    msg = mrf.score_unary[0][None] - g * mrf.lat_unary[0][None]  # (G, K0)
    back = []
    for i, p in enumerate(mrf.lat_pair):
        cand = msg[:, :, None] + mrf.score_pair[i][None] - gammas[:, None, None] * p[None]  # (G, Ki, Kj)
        b = cand.argmax(axis=1)  # (G, Kj)
        back.append(b)
        msg = cand.max(axis=1) + (mrf.score_unary[i + 1][None] - g * mrf.lat_unary[i + 1][None])
    idx = np.empty((G, mrf.n), int)
    idx[:, -1] = msg.argmax(axis=1)
    rows = np.arange(G)
    for i in range(mrf.n - 2, -1, -1):
        idx[:, i] = back[i][rows, idx[:, i + 1]]
    return idx


def _lat_score_batch(mrf: WidthMRF, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = np.full(len(idx), mrf.intercept)
    sc = np.zeros(len(idx))
    for i in range(mrf.n):
        lat += mrf.lat_unary[i][idx[:, i]]
        sc += mrf.score_unary[i][idx[:, i]]
    for i, p in enumerate(mrf.lat_pair):
        lat += p[idx[:, i], idx[:, i + 1]]
        sc += mrf.score_pair[i][idx[:, i], idx[:, i + 1]]
    return lat, sc


def search_gamma(solve_batch, budget: float, srange: float, lrange: float, rounds: int = 2,
                 width: int = 12) -> tuple[np.ndarray | None, float, int]:
    """The multiplier search behind every Lagrangian solver (chain or graph).

    `solve_batch(gammas (G,))` returns (idx (G, n), latency (G,) ms, score (G,)) of the argmax of
    score - gamma * latency for each gamma. The bracket is found automatically: gamma = 0 and a
    geometric grid (factor 8) around (srange / lrange), all in one batch; then `rounds` of
    `width`-way section (bisection that tries `width` multipliers per pass) narrow it. Returns the
    best in-budget configuration seen (None if none), its gamma (inf if none) and the passes run.
    """
    gammas = np.r_[0.0, (srange / lrange) * 8.0 ** np.arange(-4, 7)]
    best, best_g, passes = None, None, 0

    def consider(gs: np.ndarray):
        nonlocal best, best_g, passes
        passes += 1
        idx, lat, sc = solve_batch(gs)
        ok = lat <= budget
        if ok.any():
            k = np.flatnonzero(ok)[np.argmax(sc[ok])]
            if best is None or sc[k] > best[1]:
                best, best_g = (idx[k], sc[k]), float(gs[k])
        return ok

    ok = consider(gammas)
    if not ok.any():  # even the largest multiplier is over budget
        return None, float("inf"), passes
    hi = int(np.argmax(ok))  # smallest feasible multiplier
    if hi == 0:
        return best[0], 0.0, passes
    lo_g, hi_g = gammas[hi - 1], gammas[hi]
    for _ in range(rounds):
        gs = np.linspace(lo_g, hi_g, width + 2)[1:-1]
        ok = consider(gs)
        if ok.any():
            k = int(np.argmax(ok))
            hi_g = gs[k]
            lo_g = gs[k - 1] if k > 0 else lo_g
        else:
            lo_g = gs[-1]
    return best[0], best_g, passes


def lagrangian(mrf: WidthMRF, budget: float, rounds: int = 2, width: int = 12) -> Solution:
    """Maximise score - gamma * latency, with gamma searched so the answer meets the budget
    (`search_gamma`, one vectorised Viterbi pass per batch of multipliers).

    Only configurations on the convex hull of the score/latency front are reachable this way;
    `exact` finds the true budgeted optimum.
    """
    srange = sum(float(np.ptp(s)) for s in mrf.score_unary) + sum(float(np.ptp(p)) for p in mrf.score_pair) + 1e-12
    lrange = sum(float(np.ptp(l)) for l in mrf.lat_unary) + sum(float(np.ptp(p)) for p in mrf.lat_pair) + 1e-12

    def batch(gs: np.ndarray):
        idx = _viterbi_batch(mrf, gs)
        return (idx, *_lat_score_batch(mrf, idx))

    idx, gamma, passes = search_gamma(batch, budget, srange, lrange, rounds, width)
    if idx is None:  # even the largest multiplier is over budget
        f = check_budget(mrf, budget)  # raises when the budget is infeasible
        return _solution(mrf, f.idx, "lagrangian", budget, gamma=gamma, passes=passes)
    return _solution(mrf, idx, "lagrangian", budget, gamma=gamma, passes=passes)


# ---- exact budgeted optimum and Pareto front -------------------------------------------
def _dp(mrf: WidthMRF, delta: float, bins: int, rounding) -> tuple[np.ndarray, list[np.ndarray], list, list]:
    """Max score over configurations with discretised latency <= b, for every b in 0..bins.

    Latency terms are shifted to be >= 0 and divided by delta, rounded by `rounding` (ceil or floor).
    Returns V (K_last, bins+1), backpointers, and the integer unary/pair latencies used.
    """
    du = [rounding((l - l.min()) / delta).astype(int) for l in mrf.lat_unary]
    dp = [rounding((p - p.min()) / delta).astype(int) for p in mrf.lat_pair]
    V = np.full((len(du[0]), bins + 1), -np.inf)
    for k, d in enumerate(du[0]):
        if d <= bins:
            V[k, d:] = mrf.score_unary[0][k]
    back = []
    for i, p in enumerate(dp):
        shift = p + du[i + 1][None, :]  # (Ki, Kj) bins added by moving to node i+1 in state j
        m = int(shift.max())
        Vp = np.concatenate([np.full((V.shape[0], m), -np.inf), V], axis=1)
        win = sliding_window_view(Vp, bins + 1, axis=1)  # (Ki, m+1, bins+1): win[k, s] = V[k] shifted right by m-s
        cand = win[np.arange(V.shape[0])[:, None], m - np.minimum(shift, m)]  # (Ki, Kj, bins+1)
        cand = cand + mrf.score_pair[i][:, :, None]
        arg = cand.argmax(axis=0)  # (Kj, bins+1)
        V = cand.max(axis=0) + mrf.score_unary[i + 1][:, None]
        back.append(arg.astype(np.int16))
    return V, back, du, dp


def _backtrack(V: np.ndarray, back: list, du: list, dp: list, b: np.ndarray) -> np.ndarray:
    """(P,) final bins -> (P, n) argmax configurations, vectorised over points."""
    n = len(du)
    P = len(b)
    idx = np.empty((P, n), int)
    j = V[:, b].argmax(axis=0)
    idx[:, -1] = j
    b = b.copy()
    for i in range(n - 2, -1, -1):
        k = back[i][j, b]
        b = b - dp[i][k, j] - du[i + 1][j]
        idx[:, i] = k
        j = k
    return idx


def _offset(mrf: WidthMRF) -> float:
    return mrf.intercept + sum(float(l.min()) for l in mrf.lat_unary) + sum(float(p.min()) for p in mrf.lat_pair)


def pareto_front(mrf: WidthMRF, bins: int = 2048) -> list[Solution]:
    """Configurations on the score/latency Pareto front (no point is both faster and better).

    From a ceil-rounded DP over the whole latency range; each point's latency and score are
    recomputed exactly, so the front is exact up to points closer than one bin in latency.
    """
    off = _offset(mrf)
    span = slowest_latency(mrf) - off
    delta = max(span, 1e-9) / (bins - mrf.n)  # ceil adds < n bins: every configuration fits
    V, back, du, dp = _dp(mrf, delta, bins, np.ceil)
    F = V.max(axis=0)
    b = np.flatnonzero(np.isfinite(F) & (F > np.r_[-np.inf, F[:-1]]))  # bins where the best score rises
    idx = _backtrack(V, back, du, dp, b)
    lat, sc = _lat_score_batch(mrf, idx)
    order = np.lexsort((-sc, lat))
    front, best = [], -np.inf
    for k in order:
        if sc[k] > best + 1e-12:
            front.append(_solution(mrf, idx[k], "pareto"))
            best = sc[k]
    return front


def _suffix_upper(mrf: WidthMRF, delta: float, bins: int) -> list[np.ndarray]:
    """W[i] (K_i, bins+1): an upper bound on the score of nodes i+1.. given node i's state, when the
    latency still allowed after node i is b bins. Floor rounding never shrinks a true latency, so
    every truly feasible suffix is counted."""
    du = [np.floor((l - l.min()) / delta).astype(int) for l in mrf.lat_unary]
    dp = [np.floor((p - p.min()) / delta).astype(int) for p in mrf.lat_pair]
    W = [None] * mrf.n
    W[-1] = np.zeros((len(du[-1]), bins + 1))
    for i in range(mrf.n - 2, -1, -1):
        nxt = W[i + 1] + mrf.score_unary[i + 1][:, None]  # (Kj, bins+1)
        shift = (dp[i] + du[i + 1][None, :]).T  # (Kj, Ki)
        m = int(shift.max())
        Vp = np.concatenate([np.full((nxt.shape[0], m), -np.inf), nxt], axis=1)
        win = sliding_window_view(Vp, bins + 1, axis=1)
        cand = win[np.arange(nxt.shape[0])[:, None], m - np.minimum(shift, m)]  # (Kj, Ki, bins+1)
        W[i] = (cand + mrf.score_pair[i].T[:, :, None]).max(axis=0)
    return W


def _branch_and_bound(mrf: WidthMRF, budget: float, lower: float, bins: int, max_labels: int, W: list):
    """Exact search over partial configurations (latency, score), keeping per (layer, width) only
    labels no other label beats in both, and only those whose score bound can still exceed
    `lower`. Returns (best idx or None, labels explored, complete?)."""
    off = _offset(mrf)
    room = budget - off
    delta = max(room, 1e-12) / bins
    lu = [l - l.min() for l in mrf.lat_unary]
    lp = [p - p.min() for p in mrf.lat_pair]
    eps = 1e-12 * max(1.0, abs(room))

    def bound(i, J, T, S):
        b = np.floor((room - T) / delta + 1e-9).astype(int)
        ok = T <= room + eps
        ub = np.full(len(T), -np.inf)
        ub[ok] = S[ok] + W[i][J[ok], np.clip(b[ok], 0, bins)]
        return ub

    J = np.arange(len(lu[0]))
    T, S = lu[0].copy(), mrf.score_unary[0].copy()
    keep = bound(0, J, T, S) >= lower - 1e-12
    J, T, S = J[keep], T[keep], S[keep]
    parents = [np.full(len(J), -1)]
    states = [J]
    explored = len(J)
    for i, p in enumerate(lp):
        K = len(lu[i + 1])
        T2 = (T[:, None] + p[J] + lu[i + 1][None, :]).ravel()
        S2 = (S[:, None] + mrf.score_pair[i][J] + mrf.score_unary[i + 1][None, :]).ravel()
        J2 = np.tile(np.arange(K), len(J))
        P2 = np.repeat(np.arange(len(J)), K)
        keep = bound(i + 1, J2, T2, S2) >= lower - 1e-12
        T2, S2, J2, P2 = T2[keep], S2[keep], J2[keep], P2[keep]
        order = np.lexsort((-S2, T2, J2))  # by state, then latency, best score first
        T2, S2, J2, P2 = T2[order], S2[order], J2[order], P2[order]
        new_state = np.r_[True, J2[1:] != J2[:-1]]
        run_max = np.empty_like(S2)  # best score among faster labels of the same state
        best = -np.inf
        for k in range(len(S2)):  # dominance filter; label sets here stay small
            if new_state[k]:
                best = -np.inf
            run_max[k] = best
            best = max(best, S2[k])
        nd = S2 > run_max + 1e-15
        T, S, J = T2[nd], S2[nd], J2[nd]
        parents.append(P2[nd])
        states.append(J)
        explored += len(J)
        if explored > max_labels:
            return None, explored, False
    ok = T <= room + eps
    if not ok.any():
        return None, explored, True
    k = int(np.flatnonzero(ok)[np.argmax(S[ok])])
    idx = [0] * mrf.n
    for i in range(mrf.n - 1, -1, -1):
        idx[i] = int(states[i][k])
        k = int(parents[i][k])
    return idx, explored, True


def exact(mrf: WidthMRF, budget: float, bins: int = 2048, with_front: bool = True,
          max_labels: int = 2_000_000) -> Solution:
    """The highest-score configuration with predicted latency <= budget, and the Pareto front.

    Guarantee: the answer never exceeds the budget (every candidate's latency is checked exactly,
    and the DP rounds latencies *up*, so its discretised latency never undercuts the true one),
    and it is the exact optimum: a ceil-rounded DP gives a feasible lower bound; when a
    floor-rounded suffix DP (an upper bound) agrees, that settles it; otherwise a branch-and-bound
    over partial configurations, pruned only by dominance and by that valid upper bound, finds
    the optimum. info['certified'] is False only if that search exceeds `max_labels`.
    """
    check_budget(mrf, budget)
    off = _offset(mrf)
    delta = max(budget - off, 1e-12) / bins
    front = pareto_front(mrf, bins) if with_front else None
    Vc, bc, duc, dpc = _dp(mrf, delta, bins, np.ceil)
    end = np.array([bins])
    best = _backtrack(Vc, bc, duc, dpc, end)[0] if np.isfinite(Vc[:, -1]).any() else fastest(mrf).idx
    lower = mrf.score(best)
    for s in front or ():
        if s.latency <= budget and s.score > lower:
            best, lower = s.idx, s.score
    W = _suffix_upper(mrf, delta, bins)
    lu0 = mrf.lat_unary[0] - mrf.lat_unary[0].min()
    b0 = np.floor((budget - off - lu0) / delta + 1e-9).astype(int)
    ok0 = b0 >= 0
    upper = float(np.max(mrf.score_unary[0][ok0] + W[0][ok0, np.minimum(b0[ok0], bins)]))
    how, explored, certified = "dp", 0, True
    if lower < upper - 1e-9 * max(1.0, abs(upper)):
        found, explored, certified = _branch_and_bound(mrf, budget, lower, bins, max_labels, W)
        how = "branch-and-bound"
        if found is not None and mrf.score(found) > lower and mrf.latency(found) <= budget:  # B&B's own sums
            best = found  # may differ from mrf.latency in the last bit; the exact check decides
    sol = _solution(mrf, best, "exact", budget, certified=certified, proof=how, labels=explored,
                    bound_gap=max(0.0, upper - mrf.score(best)) if not certified else 0.0)
    sol.pareto = front
    return sol


# ---- narrowing --------------------------------------------------------------------------
def marginals(mrf: WidthMRF, gamma: float, temperature: float) -> list[np.ndarray]:
    """Per-layer marginals of p(x) ∝ exp((score - gamma * latency) / T)."""
    u, p = mrf.lagrangian_terms(gamma)
    return forward_backward(u, p, temperature)[0]


def sample_configs(mrf: WidthMRF, gamma: float, temperature: float, n: int, rng=None) -> np.ndarray:
    """(n, layers) width indices drawn jointly from the same distribution."""
    u, p = mrf.lagrangian_terms(gamma)
    return sample(u, p, temperature, n, rng)
