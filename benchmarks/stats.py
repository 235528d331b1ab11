"""Paired statistics for accuracy differences between networks trained with the same seeds."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats


def paired_diff(a: Sequence[float], b: Sequence[float], level: float = 0.95, comparisons: int = 1) -> dict:
    """Mean of a[s] - b[s] over paired seeds with its t-interval.

    comparisons > 1 widens the interval by Bonferroni (level spread over that many comparisons), for
    a difference that was picked as the best of several.
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"a paired difference needs >= 2 paired seeds, got {len(d)}")
    alpha = (1 - level) / comparisons
    half = stats.t.ppf(1 - alpha / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    m = float(d.mean())
    return {"diff": m, "ci_low": m - float(half), "ci_high": m + float(half), "sd": float(d.std(ddof=1)), "n": len(d)}
