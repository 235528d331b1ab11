import itertools

import numpy as np
import pytest
import torch

from helpers import REUSE_SPACES
from widthnas.mrf.unaries import isotonic_decreasing as _isotonic_decreasing
from widthnas.nas.unary_eval import choose_smooth, fit_additive, measure_unaries


def test_additive_fit_recovers_known_unaries():
    rng = np.random.default_rng(0)
    sizes = [3, 5, 4]
    true = [np.r_[np.sort(rng.uniform(0, 2, k - 1))[::-1], 0.0] for k in sizes]  # widest = 0, narrower worse
    idx = np.stack([rng.integers(0, k, 400) for k in sizes], 1)
    delta = 0.3 + sum(t[idx[:, i]] for i, t in enumerate(true)) + rng.normal(0, 0.01, 400)
    u, counts, r2 = fit_additive(idx, delta, sizes, ridge=1e-6, monotone=False)
    for a, b in zip(u, true):
        np.testing.assert_allclose(a, b, atol=0.01)
    assert r2 > 0.99 and [c.sum() for c in counts] == [400] * 3


def test_isotonic_is_the_best_monotone_fit():
    rng = np.random.default_rng(1)
    y, w = rng.normal(0, 1, 5), rng.uniform(0.5, 2, 5)
    fit = _isotonic_decreasing(y, w)
    assert np.all(np.diff(fit) <= 1e-12)
    # brute force over a grid of non-increasing sequences near the data
    grid = np.linspace(y.min(), y.max(), 9)
    best = min((sum(wi * (a - b) ** 2 for a, b, wi in zip(seq, y, w)), seq)
               for seq in itertools.combinations_with_replacement(grid[::-1], 5))
    assert sum(wi * (a - b) ** 2 for a, b, wi in zip(fit, y, w)) <= best[0] + 1e-9


def test_measure_unaries_on_a_supernet(small):
    from widthnas.models.net import SlimmableGraphNet
    from widthnas.nas.data import Splits

    torch.manual_seed(0)
    x = torch.randint(0, 255, (64, *small.input_shape), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    sp = Splits((x, y), (x, y), (x, y), torch.tensor([0.3]), torch.tensor([0.3]))
    u = measure_unaries(SlimmableGraphNet(small), sp, n_configs=40, batch=32, log=lambda *_: None)
    assert len(u.loss) == len(small.free_groups) and all(l[-1] == 0 for l in u.loss)
    assert all(np.all(np.diff(l) <= 1e-12) for l in u.loss)  # monotone: narrower never loses less


REUSED_SHARE = {"chain": 0.3, "residual": 0.6, "densenet": 0.85, "se": 0.75, "grouped_se": 0.7}  # of whole passes' convs


@pytest.mark.parametrize("kind", list(REUSED_SHARE))
def test_unaries_taken_in_width_order_reuse_passes_and_lose_the_same(kind, tiny, monkeypatch):
    """The measured configurations, sorted by their widths, take each network's ops before its first changed
    group from the previous pass: the same losses, bit for bit, as separate passes, in the order drawn; fewer
    convolutions (RESULTS §6: the demo's 300 on 512 images, 140 s against 231)."""
    import torch.nn.functional as F

    from widthnas.models.net import SlimmableGraphNet
    from widthnas.nas.data import Splits, normalize
    from widthnas.nas.unary_eval import sample_deltas

    space = REUSE_SPACES[kind]() if REUSE_SPACES[kind] else tiny
    torch.manual_seed(0)
    sup = SlimmableGraphNet(space)
    x = torch.randint(0, 255, (48, *space.input_shape), dtype=torch.uint8)
    y = torch.randint(0, 10, (48,))
    sp = Splits((x, y), (x, y), (x, y), torch.tensor([0.4]), torch.tensor([0.3]))
    convs = []
    conv2d = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: convs.append(1) or conv2d(*a, **k))
    idx, reused = sample_deltas(sup, sp, 60, batch=32, seed=3)
    fewer = len(convs)
    xn = normalize(x[:32], sp.mean, sp.std)
    with torch.no_grad():  # each configuration on its own, in the order drawn
        base = F.cross_entropy(sup.train()(xn, space.max_widths, update_bn_stats=False), y[:32]).item()
        direct = [F.cross_entropy(sup(xn, space.widths_from_indices(r), update_bn_stats=False), y[:32]).item() - base
                  for r in idx]
    assert np.array_equal(reused, direct) and np.ptp(reused) > 0
    monkeypatch.setattr("widthnas.models.net.KEEP_BYTES", 1)  # no memory to keep a pass: every pass whole
    convs.clear()
    _, whole = sample_deltas(sup, sp, 60, batch=32, seed=3)
    assert np.array_equal(whole, direct)
    # (measured here: 0.17, 0.42, 0.74, 0.57 and 0.50; in the order drawn 0.76, 0.89, 0.93, 0.92 and 0.89)
    assert fewer < REUSED_SHARE[kind] * len(convs)


def _smooth_truth(sizes, rng):
    # convex, decreasing in width, 0 at the widest: the shape a layer's loss takes
    return [rng.uniform(0.2, 1.0) * (1 - np.linspace(0, 1, k)) ** 2 for k in sizes]


def test_curvature_penalty_helps_when_samples_are_few_and_noisy():
    rng = np.random.default_rng(3)
    sizes = [14] * 8
    true = _smooth_truth(sizes, rng)
    idx = np.stack([rng.integers(0, k, 150) for k in sizes], 1)  # ~11 samples per (layer, width)
    delta = 0.1 + sum(t[idx[:, i]] for i, t in enumerate(true)) + rng.normal(0, 0.1, 150)
    best, mse = choose_smooth(idx, delta, sizes)
    assert best > 0 and mse[best] < mse[0.0]
    err = {s: np.mean([np.abs(a - b).mean() for a, b in zip(fit_additive(idx, delta, sizes, smooth=s)[0], true)])
           for s in (0.0, best)}
    assert err[best] < 0.7 * err[0.0]  # closer to the truth, not only to held-out samples


def test_cross_validation_rejects_smoothing_a_jagged_truth():
    rng = np.random.default_rng(4)
    sizes = [10] * 4
    true = [np.r_[np.where(np.arange(k - 1) % 2, 1.0, 0.0), 0.0] for k in sizes]  # zig-zag: curvature is real
    idx = np.stack([rng.integers(0, k, 600) for k in sizes], 1)
    delta = sum(t[idx[:, i]] for i, t in enumerate(true)) + rng.normal(0, 0.01, 600)
    best, mse = choose_smooth(idx, delta, sizes, monotone=False)
    assert best == 0.0 and mse[0.0] < 0.1 * mse[max(mse)]
