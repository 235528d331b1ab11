"""Exact inference on a chain with per-node state counts that differ: max-sum (Viterbi), log-space
forward-backward marginals and forward-filtering backward-sampling.

A chain of n nodes is given as
  unary[i]: (K_i,)           score of node i's states
  pair[i]:  (K_i, K_{i+1})   score of (state of node i, state of node i+1), i = 0..n-2
and the score of a configuration x is sum_i unary[i][x_i] + sum_i pair[i][x_i, x_{i+1}].
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _lse(a: np.ndarray, axis: int) -> np.ndarray:
    """log-sum-exp along axis; a lean version of scipy's for small arrays on the hot path."""
    m = a.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.log(np.exp(a - m).sum(axis=axis)) + np.squeeze(m, axis)


def evaluate(unary: Sequence[np.ndarray], pair: Sequence[np.ndarray], idx, offset: float = 0.0) -> np.ndarray:
    """(n,) offset + sum_i unary[i][x_i] + sum_i pair[i][x_i, x_{i+1}] for configurations idx (n, nodes):
    the one way a chain's latency (or score) is summed, so every caller gets the same floats."""
    idx = np.asarray(idx)
    return (offset + sum(u[idx[:, i]] for i, u in enumerate(unary))
            + sum(p[idx[:, i], idx[:, i + 1]] for i, p in enumerate(pair)))


def _check(unary: Sequence[np.ndarray], pair: Sequence[np.ndarray]) -> None:
    if len(unary) == 0:
        raise ValueError("empty chain: no unaries")
    if len(pair) != len(unary) - 1:
        raise ValueError(f"{len(unary)} nodes need {len(unary) - 1} pairwise tables, got {len(pair)}")
    for i, p in enumerate(pair):
        if p.shape != (len(unary[i]), len(unary[i + 1])):
            raise ValueError(f"pairwise table {i} has shape {p.shape}, expected {(len(unary[i]), len(unary[i + 1]))}")


def max_sum(unary: Sequence[np.ndarray], pair: Sequence[np.ndarray]) -> tuple[list[int], float]:
    """(argmax states, max score) by Viterbi; O(sum K_i K_{i+1})."""
    _check(unary, pair)
    msg = np.asarray(unary[0], float)
    back = []
    for i, p in enumerate(pair):
        cand = msg[:, None] + p  # (K_i, K_{i+1})
        back.append(np.argmax(cand, axis=0))
        msg = cand[back[-1], np.arange(p.shape[1])] + unary[i + 1]
    x = [int(np.argmax(msg))]
    best = float(msg[x[0]])
    for b in reversed(back):
        x.append(int(b[x[-1]]))
    return x[::-1], best


def forward_backward(unary: Sequence[np.ndarray], pair: Sequence[np.ndarray],
                     temperature: float = 1.0) -> tuple[list[np.ndarray], float]:
    """(per-node marginals of p(x) ∝ exp(score(x)/T), log partition function)."""
    _check(unary, pair)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    u = [np.asarray(a, float) / temperature for a in unary]
    p = [np.asarray(a, float) / temperature for a in pair]
    fwd = [u[0]]
    for i, pi in enumerate(p):
        fwd.append(_lse(fwd[-1][:, None] + pi, 0) + u[i + 1])
    bwd = [np.zeros_like(u[-1])]
    for i in range(len(p) - 1, -1, -1):
        bwd.append(_lse(p[i] + (u[i + 1] + bwd[-1])[None, :], 1))
    bwd = bwd[::-1]
    logz = float(_lse(fwd[-1], 0))
    margs = [np.exp(f + b - logz) for f, b in zip(fwd, bwd)]
    return [m / m.sum() for m in margs], logz


def sample(unary: Sequence[np.ndarray], pair: Sequence[np.ndarray], temperature: float = 1.0,
           n: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
    """n exact joint samples (n, nodes) of p(x) ∝ exp(score(x)/T): forward filtering, backward sampling."""
    _check(unary, pair)
    rng = rng or np.random.default_rng()
    u = [np.asarray(a, float) / temperature for a in unary]
    p = [np.asarray(a, float) / temperature for a in pair]
    fwd = [u[0]]
    for i, pi in enumerate(p):
        fwd.append(_lse(fwd[-1][:, None] + pi, 0) + u[i + 1])
    out = np.empty((n, len(u)), int)

    def draw(logw: np.ndarray) -> np.ndarray:  # (n, K) log weights -> (n,) states
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        c = np.cumsum(w, axis=1)
        r = rng.random((logw.shape[0], 1)) * c[:, -1:]
        return np.minimum((c < r).sum(axis=1), logw.shape[1] - 1)

    out[:, -1] = draw(np.broadcast_to(fwd[-1], (n, len(fwd[-1]))))
    for i in range(len(p) - 1, -1, -1):
        out[:, i] = draw(fwd[i][None, :] + p[i][:, out[:, i + 1]].T)
    return out
