"""Unaries measured after training: many configurations, forward only, on one fixed batch.

Training-time unaries average ~n_random configurations per step over changing images, so short
runs leave them noisy. Here every configuration sees the same validation images (a paired
comparison: image difficulty cancels), costs one forward pass, and the per-(layer, width) values
are fitted as the MRF's own additive model
    loss(config) - loss(widest) ≈ sum_i u_i[width_i],   u_i[widest choice] = 0
by least squares, rather than as marginal means (which other layers' sampled widths would bias
whenever sampling is not uniform). Optionally monotone per layer (a narrower width never loses
less), by weighted isotonic regression.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import normalize


def _isotonic_decreasing(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares fit that is non-increasing in the index (pool adjacent violators)."""
    blocks = []  # (value, weight, length)
    for v, wt in zip(y, w):
        blocks.append([v, max(wt, 1e-9), 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([[v] * n for v, _, n in blocks])


def fit_additive(idx: np.ndarray, delta: np.ndarray, sizes: list[int], ridge: float = 1e-3,
                 monotone: bool = True) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Per-layer values u_i (K_i,) with delta ≈ c + sum_i u_i[idx_i] and u_i[widest] = 0.

    idx: (n, layers) width indices; delta: (n,) loss increases. Returns (u, counts, R²).
    """
    n = len(delta)
    cols, offsets = [], []
    for i, k_i in enumerate(sizes):
        offsets.append(len(cols))
        cols.extend((i, k) for k in range(k_i - 1))
    A = np.zeros((n, len(cols) + 1))
    for j, (i, k) in enumerate(cols):
        A[:, j] = idx[:, i] == k
    A[:, -1] = 1.0  # intercept: what the additive terms do not explain on average
    reg = np.sqrt(ridge) * np.eye(A.shape[1])
    reg[-1, -1] = 0
    coef = np.linalg.lstsq(np.vstack([A, reg]), np.r_[delta, np.zeros(A.shape[1])], rcond=None)[0]
    u_all, counts = [], []
    for i, k_i in enumerate(sizes):
        u = np.r_[coef[offsets[i]:offsets[i] + k_i - 1], 0.0]
        cnt = np.array([(idx[:, i] == k).sum() for k in range(k_i)])
        if monotone:
            u = _isotonic_decreasing(u, cnt)
            u = u - u[-1]  # pooling may move the widest off its anchor: shift back to 0
        u_all.append(u)
        counts.append(cnt)
    resid = delta - A @ coef
    return u_all, counts, float(1 - resid.var() / max(delta.var(), 1e-12))


@torch.no_grad()
def measure_unaries(supernet, splits, n_configs: int = 400, batch: int = 256, seed: int = 0,
                    ridge: float = 1e-3, monotone: bool = True, log=print):
    """Per-(layer, width) loss increase from `n_configs` uniformly sampled configurations."""
    from mrf.unaries import from_arrays

    space = supernet.space
    xv, yv = splits.val
    x = normalize(xv[:batch], splits.mean, splits.std)
    y = yv[:batch]
    was = supernet.training
    supernet.train()  # batch statistics: the shared running ones fit no sliced configuration
    base = F.cross_entropy(supernet(x, space.max_widths, update_bn_stats=False), y).item()
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, len(c), n_configs) for c in space.choices], 1)  # (n, layers)
    delta = np.empty(n_configs)
    for r, row in enumerate(idx):
        out = supernet(x, space.widths_from_indices(row), update_bn_stats=False)
        delta[r] = F.cross_entropy(out, y).item() - base
    supernet.train(was)
    loss, count, r2 = fit_additive(idx, delta, [len(c) for c in space.choices], ridge, monotone)
    log(f"unaries from {n_configs} configurations on {batch} validation images: additive model R² {r2:.3f}")
    return from_arrays(space, loss, count, {"method": "post-training additive fit", "configs": n_configs,
                                            "batch": batch, "r2": float(r2), "monotone": monotone})
