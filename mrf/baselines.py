"""Baselines with the solvers' inputs and output format: the uniform width multiplier, and greedy
slimming in the spirit of AutoSlim. They only read the MRF's choices, base, latency and score."""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import solvers as ops
from .model import GraphMRF
from .solution import Solution


def uniform(mrf: GraphMRF, budget: float) -> Solution:
    """The largest single multiplier m (every layer or group at the choice nearest m x base) within budget."""
    ops.check_budget(mrf, budget)
    if not mrf.base:
        raise ValueError("the uniform baseline needs the base widths (build the MRF with build_mrf)")
    mults = np.arange(0.05, 2.0001, 0.005)
    best = None
    for m in mults:
        idx = [int(np.argmin([abs(c - m * b) + 1e-9 * c for c in ch])) for ch, b in zip(mrf.choices, mrf.base)]
        if mrf.latency(idx) <= budget:
            best = (m, idx)
    if best is None:
        raise ValueError(f"no uniform multiplier in [{mults[0]}, {mults[-1]}] meets {budget:.4f} ms; "
                         "the non-uniform solvers may still")
    return ops._solution(mrf, best[1], "uniform", budget, multiplier=round(float(best[0]), 4))


def greedy(mrf: GraphMRF, budget: float, score_fn: Callable[[list[int]], float] | None = None,
           step: int = 1) -> Solution:
    """Start from the widest network; repeatedly narrow the layer (by `step` choices) that loses the least
    score per millisecond saved, until within budget. `score_fn(widths) -> float` (higher is better)
    replaces the unaries, e.g. a supernet's validation accuracy: that is AutoSlim proper. A score_fn with a
    `rebase(widths)` method is told each network the descent stands on (nas.selection.EstimationScorer: the
    next candidates reuse its computation)."""
    ops.check_budget(mrf, budget)
    idx = [len(c) - 1 for c in mrf.choices]
    score = (lambda i: score_fn(mrf.widths(i))) if score_fn else mrf.score
    rebase = getattr(score_fn, "rebase", None)
    if rebase:
        rebase(mrf.widths(idx))
    cur_s, cur_l, steps, evals = score(idx), mrf.latency(idx), 0, 0
    path = [(mrf.widths(idx), cur_l, cur_s)]  # the slimming trajectory: answers every larger budget too
    while cur_l > budget:
        best = None
        for i in range(mrf.n):
            if idx[i] == 0:
                continue
            cand = list(idx)
            cand[i] = max(0, idx[i] - step)
            dl = cur_l - mrf.latency(cand)
            if dl <= 0:
                continue
            s = score(cand)
            evals += 1
            ratio = (cur_s - s) / dl
            if best is None or ratio < best[0]:
                best = (ratio, cand, s)
        if best is None:  # nothing that still saves latency: fall back to the fastest
            idx, cur_s = ops.fastest(mrf).idx, None
            break
        _, idx, cur_s = best
        if rebase:
            rebase(mrf.widths(idx))
        cur_l = mrf.latency(idx)
        path.append((mrf.widths(idx), cur_l, cur_s))
        steps += 1
    sol = ops._solution(mrf, idx, "greedy", budget, steps=steps, evals=evals)
    sol.info["path"] = path  # greedy's answer at every budget its descent reached, even after a fallback
    if score_fn and cur_s is not None:
        sol.info["evaluated_score"] = cur_s
    return sol
