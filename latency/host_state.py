"""Reference-normalised latency, corrected for the host's speed at the time of the timing.

Dividing a network's time by the reference network's, timed beside it, cancels a host slowdown only
for networks that slow as much as the reference does. On this machine they do not: over an hour of
profiling at 224 px the reference's speed wandered by ±8 %, and networks at 0.5-0.7 of the
reference's time moved about 1.25 times as much as the reference, those above 0.7 about 1.08 times
(docs/RESULTS.md §2.1e). The narrower the network, the more it slows.

Model: when the host slows the reference by s = ref_ms / reference_ms (reference_ms: the reference's
typical time while profiling), a network whose ratio to the reference is r slows by s**beta, with
beta = 1 - k ln r. Its ratio at the reference's typical speed is then r * s**(k ln r), taking the
measured r for the true one in the exponent: exact to first order in k ln s (0.35 % off at k = 0.75,
s = 1.1, r = 0.5) and defined for any s. k is the profile's `fit.elasticity`, chosen by
cross-validation in `fit` (k = 0: plain normalisation, what every profile before this had).
"""
from __future__ import annotations

import math

import numpy as np

ELASTICITY_RANGE = (0.0, 2.0)  # k; outside it the model is not a correction but a different machine


def typical_speed_ms(norm, ref_ms, reference_ms: float, elasticity: float = 0.0):
    """Latency in ms at the reference's typical speed, from ratio(s) `norm` to a reference that took
    `ref_ms` (ms) beside it. Scalars in, a float out; arrays in, an array out."""
    r = np.asarray(norm, float)
    s = np.asarray(ref_ms, float) / reference_ms
    out = r * reference_ms * (s ** (elasticity * np.log(r)) if elasticity else 1.0)
    return float(out) if np.ndim(out) == 0 else out


def read_elasticity(fit: dict, where: str = "profile") -> float:
    """The profile's `fit.elasticity`, checked; 0.0 for profiles fitted before it existed."""
    if not isinstance(fit, dict):
        raise ValueError(f"{where}: fit is {type(fit).__name__}, expected an object; refit the profile with "
                         "`widthnas fit`")
    k = fit.get("elasticity", 0.0)
    lo, hi = ELASTICITY_RANGE
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or not lo <= k <= hi:
        raise ValueError(f"{where}: fit.elasticity is {k!r}, expected a finite number in [{lo:g}, {hi:g}]; "
                         "refit the profile with `widthnas fit`")
    return float(k)
