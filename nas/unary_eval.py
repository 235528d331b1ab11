"""Unaries measured after training: many configurations, forward only, on one fixed batch.

Training-time unaries average ~n_random configurations per step over changing images, so short
runs leave them noisy. Here every configuration sees the same validation images (a paired
comparison: image difficulty cancels), costs one forward pass, and the per-(layer, width) values
are fitted as the MRF's own additive model
    loss(config) - loss(widest) ≈ sum_i u_i[width_i],   u_i[widest choice] = 0
by least squares, rather than as marginal means (which other layers' sampled widths would bias
whenever sampling is not uniform). Optionally monotone per layer (a narrower width never loses
less), by weighted isotonic regression.

A "layer" here is a free channel group of the space, in `free_groups` order.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from widthnas._cv import kfold
from widthnas.models.net import Activations, frontier, records_fit
from widthnas.mrf.unaries import from_arrays, isotonic_decreasing

from .data import normalize
from .device import device_of


def _design(idx: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, list[int]]:
    """One-hot columns for every (layer, non-widest width) plus an intercept; per-layer offsets."""
    cols, offsets = [], []
    for i, k_i in enumerate(sizes):
        offsets.append(len(cols))
        cols.extend((i, k) for k in range(k_i - 1))
    return np.column_stack([idx[:, i] == k for i, k in cols] + [np.ones(len(idx))]), offsets


def _penalty(sizes: list[int], offsets: list[int], n_cols: int, ridge: float, smooth: float) -> np.ndarray:
    """Rows of sqrt(ridge)*I and sqrt(smooth)*(second differences of each layer's u, widest anchored at 0).

    A layer's loss changes smoothly with its width; penalising curvature lets the (layer, width)
    values borrow strength from their neighbours instead of each resting on its own few samples.
    """
    rows = [np.sqrt(ridge) * np.eye(n_cols)]
    rows[0][-1, -1] = 0  # the intercept is free
    for i, k_i in enumerate(sizes):
        for k in range(1, k_i - 1):  # u[k-1] - 2 u[k] + u[k+1]; u[k_i - 1] (widest) is the fixed 0
            r = np.zeros(n_cols)
            for kk, c in ((k - 1, 1.0), (k, -2.0), (k + 1, 1.0)):
                if kk < k_i - 1:
                    r[offsets[i] + kk] = c
            rows.append(np.sqrt(smooth) * r[None])
    return np.vstack(rows)


def fit_additive(idx: np.ndarray, delta: np.ndarray, sizes: list[int], ridge: float = 1e-3,
                 monotone: bool = True, smooth: float = 0.0) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Per-layer values u_i (K_i,) with delta ≈ c + sum_i u_i[idx_i] and u_i[widest] = 0.

    idx: (n, layers) width indices; delta: (n,) loss increases (nats); smooth: curvature penalty
    weight (0: none). Returns (u, counts, R² on the fitted samples).
    """
    A, offsets = _design(idx, sizes)
    P = _penalty(sizes, offsets, A.shape[1], ridge, smooth)
    coef = np.linalg.lstsq(np.vstack([A, P]), np.r_[delta, np.zeros(len(P))], rcond=None)[0]
    u_all, counts = [], []
    for i, k_i in enumerate(sizes):
        u = np.r_[coef[offsets[i]:offsets[i] + k_i - 1], 0.0]
        cnt = np.array([(idx[:, i] == k).sum() for k in range(k_i)])
        if monotone:
            u = isotonic_decreasing(u, cnt)
            u = u - u[-1]  # pooling may move the widest off its anchor: shift back to 0
        u_all.append(u)
        counts.append(cnt)
    resid = delta - A @ coef
    return u_all, counts, float(1 - resid.var() / max(delta.var(), 1e-12))


SMOOTH_GRID = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def choose_smooth(idx: np.ndarray, delta: np.ndarray, sizes: list[int], grid=SMOOTH_GRID, folds: int = 5,
                  ridge: float = 1e-3, monotone: bool = True, seed: int = 0) -> tuple[float, dict[float, float]]:
    """The curvature weight whose fit best predicts held-out configurations (k-fold CV).

    Returns (best weight, {weight: held-out MSE}). The error is measured after removing each
    fold's mean, since the intercept is not part of the unaries the search uses.
    """
    mse = {}
    for s in grid:
        err = []
        for train, test in kfold(len(delta), folds, seed):
            u, _, _ = fit_additive(idx[train], delta[train], sizes, ridge, monotone, s)
            r = delta[test] - sum(ui[idx[test, i]] for i, ui in enumerate(u))  # the fit without its intercept
            err.append(((r - r.mean()) ** 2).mean())
        mse[s] = float(np.mean(err))
    return min(mse, key=mse.get), mse


@torch.no_grad()
def sample_deltas(supernet, splits, n_configs: int, batch: int = 256, seed: int = 0,
                  design: str = "random", progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(idx (n, layers), delta (n,) nats): configurations' loss increase over the widest network,
    every one on the same first `batch` validation images. design "random": n_configs configurations
    drawn uniformly; "one-at-a-time" (the source article's measurement; n_configs is ignored): every
    non-widest width of every layer, all other layers at their widest. Measured in width order, each pass
    reusing the previous one's first ops (models.net.Activations); returned in the order drawn."""
    space = supernet.space
    dev = device_of(supernet)
    x, y = normalize(splits.val[0][:batch], splits.mean, splits.std).to(dev), splits.val[1][:batch].to(dev)
    was = supernet.training
    supernet.train()  # batch statistics: the shared running ones fit no sliced configuration
    base = F.cross_entropy(supernet(x, space.max_widths, update_bn_stats=False), y).item()
    if design == "random":
        rng = np.random.default_rng(seed)
        idx = np.stack([rng.integers(0, len(c), n_configs) for c in space.choices], 1)  # (n, layers)
    elif design == "one-at-a-time":
        top = [len(c) - 1 for c in space.choices]
        idx = np.array([top[:i] + [k] + top[i + 1:] for i, t in enumerate(top) for k in range(t)])
    else:
        raise ValueError(f"unary design {design!r}: choose 'random' or 'one-at-a-time'")
    from tqdm import tqdm

    # sorted by their widths (free_groups are in graph order): each network takes the ops before its first group
    # of another width from the previous one's pass (the same tensors: the same losses), and two records at most
    # are alive (the previous and this one). (An empty idx: one-at-a-time with nothing narrower to vary.)
    order = np.lexsort(idx.T[::-1]) if idx.size else np.arange(len(idx))
    needed = frontier(space)
    keep = records_fit(space, len(x), needed, element_size=x.element_size())
    delta, prev = np.empty(len(idx)), None
    for r in tqdm(order, desc="unaries", unit="net", disable=not progress, dynamic_ncols=True, leave=False):
        rec = Activations(space, supernet.training, needed) if keep else None
        out = supernet(x, space.widths_from_indices(idx[r]), update_bn_stats=False, reuse=prev, keep=rec)
        delta[r] = F.cross_entropy(out, y).item() - base
        prev = rec
    supernet.train(was)
    return idx, delta


def measure_unaries(supernet, splits, n_configs: int = 400, batch: int = 256, seed: int = 0,
                    ridge: float = 1e-3, monotone: bool = True, smooth: float | None = None, log=print,
                    design: str = "random", progress: bool = False):
    """Per-(layer, width) loss increase, from `n_configs` uniformly sampled configurations
    (design "random") or from one layer varied at a time against the widest network. smooth=None
    picks the curvature penalty by 5-fold cross-validation over SMOOTH_GRID."""
    space = supernet.space
    sizes = [len(c) for c in space.choices]
    idx, delta = sample_deltas(supernet, splits, n_configs, batch, seed, design, progress)
    cv = {}
    if design == "one-at-a-time":  # each value measured directly: no fit, no cross-validation
        loss, count, r2, smooth = _one_at_a_time(idx, delta, sizes, monotone), [np.ones(k, int) for k in sizes], float("nan"), 0.0
    else:
        if smooth is None:
            smooth, cv = choose_smooth(idx, delta, sizes, ridge=ridge, monotone=monotone, seed=seed)
        loss, count, r2 = fit_additive(idx, delta, sizes, ridge, monotone, smooth)
    log(f"unaries ({design}) from {len(idx)} configurations on {batch} validation images: smoothing {smooth:g}"
        f"{' (cross-validated)' if cv else ''}, additive model R² {r2:.3f}"
        + ("" if records_fit(space, min(batch, len(splits.val[1]))) else
           "; every pass whole (two passes' activations would not fit in models.net.KEEP_BYTES)"))
    return from_arrays(space, loss, count, {"method": f"post-training, {design}", "configs": int(len(idx)),
                                            "batch": batch, "r2": float(r2), "monotone": monotone, "design": design,
                                            "smooth": float(smooth), "cv_mse": {str(k): v for k, v in cv.items()}})


def _one_at_a_time(idx: np.ndarray, delta: np.ndarray, sizes: list[int], monotone: bool) -> list[np.ndarray]:
    """Per layer (K_i,): the measured loss increase of each width, 0 at the widest."""
    out = []
    for i, k_i in enumerate(sizes):
        u = np.zeros(k_i)
        rows = (idx[:, i] < k_i - 1) & np.all(np.delete(idx, i, axis=1) == np.delete(np.array(sizes) - 1, i), axis=1)
        u[idx[rows, i]] = delta[rows]  # this layer varied, every other one at its widest
        if monotone:
            u = isotonic_decreasing(u, np.ones(k_i))
            u = u - u[-1]
        out.append(u)
    return out
