"""Solvers for width MRFs whose junction tree is too wide for dynamic programming.

A concatenation makes every consumer's latency a factor with each of its input's groups
(models/space.py `factor_structure`): in a DenseNet block each layer reads all earlier layers'
outputs, so L layers form a clique of about L groups, and exact dynamic programming costs about
K^L states per clique (4 widths, 24 layers: 3e14). Past `MAX_CLIQUE_STATES` the solvers here take
over, with `info["fallback"]` saying so: the Lagrangian (maximise score - gamma * latency, gamma
searched as `mrf.solvers.lagrangian` does) with coordinate ascent as its inner solver instead of
max-sum, and Gibbs sampling instead of exact sampling. Neither is certified: a coordinate-ascent
optimum is one no single group's change improves, not the global one.
"""
from __future__ import annotations

import numpy as np

from . import solvers
from .junction_tree import junction_tree
from .model import GraphMRF
from .solution import Solution, gamma_scale, nondominated, refuse_below, search_gamma

MAX_CLIQUE_STATES = 2_000_000  # states of the largest clique table exact DP builds (x 8 bytes per table)
SWEEPS = 30  # coordinate-ascent passes over all groups at most (it stops when a pass changes nothing)


def clique_states(mrf: GraphMRF) -> tuple[int, int]:
    """(states of the largest junction-tree clique, its number of groups), cached on the MRF."""
    if "clique_states" not in mrf.cache:
        ks = [len(c) for c in mrf.choices]
        jt = junction_tree(mrf.n, mrf.edges, ks)
        sizes = [(int(np.prod([ks[v] for v in c], dtype=float)), len(c)) for c in jt.cliques]
        mrf.cache["clique_states"] = max(sizes)
    return mrf.cache["clique_states"]


def too_wide(mrf: GraphMRF) -> bool:
    return clique_states(mrf)[0] > MAX_CLIQUE_STATES


def why(mrf: GraphMRF) -> str:
    states, size = clique_states(mrf)
    return (f"its largest clique joins {size} groups ({states:.3g} states > {MAX_CLIQUE_STATES:.0e}): exact "
            "dynamic programming would not fit; the Lagrangian with coordinate ascent is used (not certified)")


def _objective(mrf: GraphMRF, idx: np.ndarray, a: float, b: float) -> np.ndarray:
    lat, sc = mrf.evaluate(idx)
    return a * sc - b * lat


def _each_group(mrf: GraphMRF, x: np.ndarray):
    """Per group with more than one width: (g, K, (G * K, n) each row of x (G, n) with group g at each
    of its K widths), made when reached, so from x as the caller has changed it so far."""
    for g, c in enumerate(mrf.choices):
        if len(c) > 1:
            cand = np.repeat(x, len(c), axis=0)
            cand[:, g] = np.tile(np.arange(len(c)), len(x))
            yield g, len(c), cand


def coordinate_ascent(mrf: GraphMRF, a: float, b: float, start: np.ndarray) -> np.ndarray:
    """(G, n) starts -> (G, n) configurations maximising a * score - b * latency one group at a time
    (all of a group's widths tried at once), until a pass over the groups changes nothing."""
    x = np.array(start, int).reshape(-1, mrf.n)
    G = len(x)
    for _ in range(SWEEPS):
        moved = False
        for g, K, cand in _each_group(mrf, x):
            best = _objective(mrf, cand, a, b).reshape(G, K).argmax(1)
            moved |= bool((best != x[:, g]).any())
            x[:, g] = best
        if not moved:
            break
    return x


def _ends(mrf: GraphMRF) -> tuple[np.ndarray, np.ndarray]:
    """(narrowest, widest) choice indices of every group."""
    return np.zeros(mrf.n, int), np.array([len(c) - 1 for c in mrf.choices])


def fastest(mrf: GraphMRF) -> Solution:
    """The fastest configuration coordinate ascent finds from the narrowest (latency tables are monotone in
    widths when built from a profile, mrf/build.py, so the narrowest is usually it already)."""
    x = coordinate_ascent(mrf, 1e-9, 1.0, _ends(mrf)[0])[0]
    return _solution(mrf, x, "fastest")


def slowest_latency(mrf: GraphMRF) -> float:
    return mrf.latency(coordinate_ascent(mrf, 0.0, -1.0, _ends(mrf)[1])[0])


def lagrangian(mrf: GraphMRF, budget: float, rounds: int = 2, width: int = 12, with_greedy: bool = True) -> Solution:
    """max score - gamma * latency by coordinate ascent (started from the narrowest and from the widest
    network, the better kept), gamma searched so that the answer meets the budget. with_greedy: also greedy
    slimming's answer, both polished within the budget (the exact solver's stand-in; thousands of latency
    evaluations on a DenseNet-121, so the training's AOWS refreshes, which need only gamma, leave it out)."""
    refuse_below(fastest(mrf), budget)
    lo, hi = _ends(mrf)

    def batch(gs: np.ndarray) -> np.ndarray:
        best = None
        for start in (lo, hi):
            x = np.concatenate([coordinate_ascent(mrf, 1.0, float(g), start) for g in gs])
            obj = _objective(mrf, x, 1.0, 0.0) - gs * mrf.evaluate(x)[0]
            best = (x, obj) if best is None else (np.where((obj > best[1])[:, None], x, best[0]),
                                                    np.maximum(obj, best[1]))
        return best[0]

    idx, gamma, passes = search_gamma(mrf, batch, budget, rounds, width)
    if idx is None:
        idx = fastest(mrf).idx
    if not with_greedy:
        return _solution(mrf, polish(mrf, np.asarray(idx), budget), "lagrangian", budget, gamma=gamma, passes=passes)
    # the Lagrangian reaches only convex-hull points; greedy slimming others. Both polished under the budget
    from .baselines import greedy

    cands = [polish(mrf, np.asarray(idx), budget), polish(mrf, np.asarray(greedy(mrf, budget).idx), budget)]
    lat, sc = mrf.evaluate(np.stack(cands))
    k = int(np.argmax(np.where(lat <= budget, sc, -np.inf)))
    return _solution(mrf, cands[k], "lagrangian", budget, gamma=gamma, passes=passes,
                     polished_from=("lagrangian", "greedy")[k])


def polish(mrf: GraphMRF, x: np.ndarray, budget: float) -> np.ndarray:
    """Coordinate ascent on the score within the budget: each group in turn takes its best width that
    keeps the network within budget, until a pass changes nothing."""
    x = np.array(x, int)
    for _ in range(SWEEPS):
        moved = False
        for g, K, cand in _each_group(mrf, x[None]):
            lat, sc = mrf.evaluate(cand)
            sc = np.where(lat <= budget, sc, -np.inf)
            k = int(np.argmax(sc))
            if k != x[g] and sc[k] > sc[x[g]] + 1e-12:
                x[g], moved = k, True
        if not moved:
            break
    return x


def pareto_front(mrf: GraphMRF, points: int = 32) -> list[Solution]:
    """An approximate score/latency front, by increasing latency: coordinate ascent on score - gamma * latency
    over a geometric grid of gammas (from the narrowest and the widest start), the non-dominated kept. Only
    convex-hull points can appear, and not all of them; each is a real network with its exact latency."""
    lo, hi = _ends(mrf)
    gammas = np.r_[0.0, gamma_scale(mrf) * np.geomspace(1e-3, 1e3, points - 1)]
    x = np.concatenate([coordinate_ascent(mrf, 1.0, float(g), s) for g in gammas for s in (lo, hi)])
    x = np.unique(x, axis=0)
    return [_solution(mrf, x[k], "pareto") for k in nondominated(*mrf.evaluate(x))]


def _solution(mrf: GraphMRF, idx, method: str, budget: float | None = None, **info) -> Solution:
    states, size = clique_states(mrf)
    return solvers._solution(mrf, idx, method, budget, **info, certified=False,
                             fallback="coordinate ascent: " + why(mrf), clique_groups=size, clique_states=states)


def sample_configs(mrf: GraphMRF, gamma: float, temperature: float, n: int, rng: np.random.Generator,
                   sweeps: int = 8) -> np.ndarray:
    """(n, groups) configurations drawn from p(x) ~ exp((score - gamma * latency) / temperature) by Gibbs
    sampling: `sweeps` passes over the groups from uniformly drawn starts (approximate: chains this
    short are not mixed when the distribution is sharp)."""
    x = np.stack([rng.integers(0, len(c), n) for c in mrf.choices], axis=1)
    for _ in range(sweeps):
        for g, K, cand in _each_group(mrf, x):
            e = _objective(mrf, cand, 1.0, gamma).reshape(n, K) / max(temperature, 1e-12)
            p = np.exp(e - e.max(1, keepdims=True))
            cdf = np.cumsum(p / p.sum(1, keepdims=True), axis=1)
            x[:, g] = np.minimum((cdf < rng.random((n, 1))).sum(1), K - 1)
    return x


def marginals(mrf: GraphMRF, gamma: float, temperature: float, n: int = 256, seed: int = 0) -> list[np.ndarray]:
    """Per group, its widths' frequencies over n Gibbs samples (approximate marginals)."""
    x = sample_configs(mrf, gamma, temperature, n, np.random.default_rng(seed))
    return [np.bincount(x[:, g], minlength=len(c)) / n for g, c in enumerate(mrf.choices)]
