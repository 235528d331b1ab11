"""Paired-seed statistics shared by the feature benchmarks: mean difference with a 95 % t-interval."""
from __future__ import annotations

import math
from typing import Sequence


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """Mean of b - a over paired seeds, its standard deviation and the t-interval (n-1 dof).

    Pairing (same seed: same initialisation and data order) removes the seed-to-seed spread the
    two arms share; only the spread of the differences is left.
    """
    from scipy import stats

    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1)) if n > 1 else float("nan")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "diffs": d}
