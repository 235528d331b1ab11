"""Is a network within its budget on measurement? Re-measure until the answer is clear.

Repeated timings spread by a few per cent, so one says little near the budget: re-measure until the
95 % t-interval of the mean lies wholly under or over it, or the cap is reached ("cannot tell").
"""
from __future__ import annotations

import math
from typing import Callable

from scipy import stats

WITHIN, OVER, UNSURE = "within", "over", "cannot tell at this noise"
MAX_MEASUREMENTS = 8  # timings before "cannot tell" (the suite lowers it: tests/helpers.quick_timing)


def budget_verdict(measure: Callable[[], float], budget_ms: float, min_measurements: int = 3,
                   max_measurements: int | None = None) -> dict:
    """measure() -> ms (one reference-normalised timing). Returns the verdict, the mean and its 95 %
    interval (ms) and every measurement. max_measurements: MAX_MEASUREMENTS unless given."""
    if max_measurements is None:
        max_measurements = MAX_MEASUREMENTS
    if not (budget_ms > 0 and math.isfinite(budget_ms)):
        raise ValueError(f"budget {budget_ms!r} ms: give a positive, finite latency")
    if not 2 <= min_measurements <= max_measurements:
        raise ValueError(f"measurements: need 2 <= min ({min_measurements}) <= max ({max_measurements})")
    ms: list[float] = []
    while True:
        x = float(measure())
        if not (x > 0 and math.isfinite(x)):
            raise ValueError(f"a latency measurement returned {x!r} ms: the runtime or the model is broken")
        ms.append(x)
        if len(ms) < min_measurements:
            continue
        v = verdict_of(ms, budget_ms)
        if v["verdict"] != UNSURE or len(ms) >= max_measurements:
            return v


def verdict_of(ms: list[float], budget_ms: float) -> dict:
    """The verdict of a fixed set of (at least 2) measurements, ms: within, over or cannot tell, with the
    mean and its 95 % interval. Also judges another reading of the same timings."""
    if len(ms) < 2:
        raise ValueError(f"{len(ms)} measurement(s): a verdict needs at least 2")
    n, mean = len(ms), sum(ms) / len(ms)
    sd = math.sqrt(sum((x - mean) ** 2 for x in ms) / (n - 1))
    h = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    lo, hi = mean - h, mean + h
    return {"verdict": WITHIN if hi < budget_ms else OVER if lo > budget_ms else UNSURE, "mean_ms": mean,
            "ci_low_ms": lo, "ci_high_ms": hi, "budget_ms": budget_ms, "half_width_pct": 100 * (hi - lo) / 2 / mean,
            "measurements_ms": list(ms)}


def describe(v: dict) -> str:
    """One line for logs and reports."""
    return (f"{v['verdict']}: {v['mean_ms']:.4f} ms [{v['ci_low_ms']:.4f}, {v['ci_high_ms']:.4f}] (95 %, "
            f"{len(v['measurements_ms'])} measurements) against a budget of {v['budget_ms']:.4f} ms")
