"""What every solver returns, and the pieces the solvers and baselines share."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class InfeasibleBudget(ValueError):
    """The budget is below the fastest configuration's latency."""


@dataclass
class Solution:
    widths: list[int]  # channels per free group
    idx: list[int]  # index into each group's choices
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


def refuse_below(f: Solution, budget: float) -> Solution:
    """`f` (the fastest configuration), after refusing a budget below its latency."""
    if not np.isfinite(budget) or budget < f.latency:
        raise InfeasibleBudget(f"budget {budget:.4f} ms is below the fastest network in this space "
                               f"({f.latency:.4f} ms, widths {f.widths}); raise the budget to at least that")
    return f


def gamma_scale(mrf) -> float:
    """The summed spread of the score terms over that of the latency terms (ms): the multipliers' scale."""
    if "gamma_scale" not in mrf.cache:  # cached: the MRF is read-only once built
        spread = lambda arrs: sum(float(a.max() - a.min()) for a in arrs)  # noqa: E731
        mrf.cache["gamma_scale"] = ((spread(mrf.score_unary) + spread(s for _, s in mrf.pairs.values()) + 1e-12)
                                    / (spread(mrf.lat_unary) + spread(l for l, _ in mrf.pairs.values()) + 1e-12))
    return mrf.cache["gamma_scale"]


def nondominated(lat: np.ndarray, sc: np.ndarray) -> np.ndarray:
    """Indices of the points no faster (or as fast) point matches in score within 1e-12, by latency."""
    keep, best = [], -np.inf
    for k in np.lexsort((-sc, lat)):
        if sc[k] > best + 1e-12:
            keep.append(k)
            best = sc[k]
    return np.array(keep, int)


def search_gamma(mrf, solve_batch, budget: float, rounds: int = 2,
                 width: int = 12) -> tuple[np.ndarray | None, float, int]:
    """The Lagrangian's multiplier search. `solve_batch(gammas (G,))` returns idx (G, n), the argmax of
    score - gamma * latency for each gamma. The bracket: gamma = 0 and a geometric grid (factor 8) around
    `gamma_scale(mrf)`, in one batch; then `rounds` of `width`-way section (bisection trying `width`
    multipliers per pass) narrow it. Returns the best in-budget configuration seen (None if none), its
    gamma (inf if none) and the passes run."""
    gammas = np.concatenate(([0.0], gamma_scale(mrf) * 8.0 ** np.arange(-4, 7)))
    inner = np.arange(1, width + 1)  # the section's multipliers: np.linspace(lo, hi, width + 2)[1:-1], cheaper
    best, best_g = None, None

    def consider(gs: np.ndarray):
        nonlocal best, best_g
        idx = solve_batch(gs)
        lat, sc = mrf.evaluate(idx)
        ok = lat <= budget
        if ok.any():
            k = np.flatnonzero(ok)[np.argmax(sc[ok])]
            if best is None or sc[k] > best[1]:
                best, best_g = (idx[k], sc[k]), float(gs[k])
        return ok

    ok = consider(gammas)
    if not ok.any():  # even the largest multiplier is over budget
        return None, float("inf"), 1
    hi = int(np.argmax(ok))  # smallest feasible multiplier
    if hi == 0:
        return best[0], 0.0, 1
    lo_g, hi_g = gammas[hi - 1], gammas[hi]
    for _ in range(rounds):
        gs = inner * ((hi_g - lo_g) / (width + 1)) + lo_g
        ok = consider(gs)
        if ok.any():
            k = int(np.argmax(ok))
            lo_g, hi_g = (gs[k - 1] if k > 0 else lo_g), gs[k]
        else:
            lo_g = gs[-1]
    return best[0], best_g, 1 + rounds
