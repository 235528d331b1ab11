"""The one cross-validation splitter (latency fit, unary smoothing)."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def kfold(n: int, folds: int, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) for each of `folds` near-equal parts of a seeded permutation of n."""
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    for f in range(folds):
        yield np.concatenate([parts[g] for g in range(folds) if g != f]), parts[f]
