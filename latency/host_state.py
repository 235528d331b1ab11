"""Reference-normalised latency, corrected for the host's speed at the time of the timing.

Dividing by the reference network's time cancels a host slowdown only for networks that slow as much
as the reference; narrower ones slow more (docs/RESULTS.md §2.1e).

Model: when the host slows the reference by s = ref_ms / reference_ms (its typical time while
profiling), a network at ratio r slows by s**(1 - k ln r), so its ratio at the typical speed is
r * s**(k ln r) (measured r in the exponent: exact to first order in k ln s). k is `fit.elasticity`,
chosen by cross-validation (0: plain normalisation). s is clamped into `fit.host_speed_range`, the
speeds it was fitted on (DEFAULT_SPEED_RANGE when unrecorded), so a lasting offset of the reference's
time cannot become an unbounded correction.
"""
from __future__ import annotations

import math

import numpy as np

from widthnas._cv import kfold

ELASTICITY_RANGE = (0.0, 2.0)  # k; outside it the model is not a correction but a different machine
# s clamped to this for profiles without fit.host_speed_range: wide enough for every timing the
# elasticity was measured on (RESULTS §2.1d), so the shipped profiles' validated figures stand
DEFAULT_SPEED_RANGE = (0.8, 1.25)


def is_positive(x) -> bool:
    """x is one positive, finite number (not a bool), as a latency or a ratio read from a file must be."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _positive(name: str, x) -> np.ndarray:
    a = np.asarray(x, float)
    if not np.all(np.isfinite(a) & (a > 0)):
        bad = a[~(np.isfinite(a) & (a > 0))].ravel()[:3]
        raise ValueError(f"{name} must be positive, finite numbers; got {bad.tolist()} (a corrupt sample or profile)")
    return a


def typical_speed_ms(norm, ref_ms, reference_ms: float, elasticity: float = 0.0,
                     speed_range: tuple[float, float] | None = None):
    """Latency in ms at the reference's typical speed, from ratio(s) `norm` to a reference that took
    `ref_ms` (ms) beside it; the host speed s is clamped to `speed_range` for the correction. Scalars
    in, a float out; arrays in, an array out."""
    r = _positive("ratio to the reference", norm)
    s = _positive("reference time (ms)", ref_ms) / float(_positive("typical reference time (ms)", reference_ms))
    if speed_range is not None:
        s = np.clip(s, *speed_range)
    out = r * reference_ms * (s ** (elasticity * np.log(r)) if elasticity else 1.0)
    return float(out) if np.ndim(out) == 0 else out


def speed_range_of(ref_ms, reference_ms: float) -> list[float]:
    """[min, max] of the host speed s over a profile's samples: what `fit.host_speed_range` records."""
    s = _positive("reference time (ms)", ref_ms) / reference_ms
    return [float(min(s.min(), 1.0)), float(max(s.max(), 1.0))]


def read_speed_range(fit: dict, where: str = "profile") -> tuple[float, float]:
    """The profile's `fit.host_speed_range`, checked; DEFAULT_SPEED_RANGE for profiles fitted before it."""
    v = fit.get("host_speed_range") if isinstance(fit, dict) else None
    if v is None:
        return DEFAULT_SPEED_RANGE
    ok = (isinstance(v, list) and len(v) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
          and 0 < v[0] <= 1 <= v[1])
    if not ok:
        raise ValueError(f"{where}: fit.host_speed_range is {v!r}, expected [low, high] with 0 < low <= 1 <= high; "
                         "refit the profile with `widthnas fit`")
    return float(v[0]), float(v[1])


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


def calibrate_elasticity(predicted_ms, norm, ref_ms, reference_ms: float, grid, folds: int = 5,
                         seed: int = 0) -> dict:
    """The host-state elasticity k for a fitted table (entries kept), from networks timed at other speeds.

    Returns {"k": least RMSPE on all samples, "rmspe": {k: RMSPE}, "selection_cv_rmspe": RMSPE with each
    fold's k chosen on the others (the honest figure), "host_speed": [min, max] of s}. Timings all within
    2 % of the reference speed say nothing about k: refused."""
    pred = _positive("predicted latency (ms)", predicted_ms)
    s = _positive("reference time (ms)", ref_ms) / reference_ms
    if np.max(np.abs(np.log(s))) < 0.02:
        raise ValueError("every timing was taken within 2 % of the profile's reference speed, so no elasticity can "
                         "be told from them; time the networks again when the machine runs at another speed")
    grid = sorted({float(k) for k in grid})
    if not grid or not all(ELASTICITY_RANGE[0] <= k <= ELASTICITY_RANGE[1] for k in grid):
        raise ValueError(f"elasticities {grid}: give at least one, each in [{ELASTICITY_RANGE[0]:g}, "
                         f"{ELASTICITY_RANGE[1]:g}]")
    sq = {k: (pred / typical_speed_ms(norm, ref_ms, reference_ms, k) - 1) ** 2 for k in grid}  # (n,)
    held = np.empty(len(pred))
    for tr, te in kfold(len(pred), folds, seed):
        best = min(grid, key=lambda k: float(np.mean(sq[k][tr])))
        held[te] = sq[best][te]
    return {"k": min(grid, key=lambda k: float(np.mean(sq[k]))),
            "rmspe": {k: float(np.sqrt(np.mean(v))) for k, v in sq.items()},
            "selection_cv_rmspe": float(np.sqrt(np.mean(held))), "host_speed": [float(s.min()), float(s.max())]}


# s beyond this factor either way is not the host's flicker but another machine (RESULTS §2.2c)
OTHER_MACHINE = 1.4


def machine_note(host_speed: float, reference_ms: float) -> str | None:
    """A warning when the reference runs so far off its profiled time (s) that this is another machine,
    else None: its ms, and budgets in ms, do not hold here (ratios may: a latency check tells)."""
    if 1 / OTHER_MACHINE <= host_speed <= OTHER_MACHINE:
        return None
    return (f"the reference network ran {host_speed:.2f} x its profiled {reference_ms:.4g} ms: this is not the "
            "machine the profile was made on, though the device key matches. Latencies here are read at the "
            f"profile's speed; this machine runs networks about {host_speed:.2f} x those milliseconds. To budget "
            "in this machine's milliseconds, profile it (`widthnas profile`, then `widthnas fit`) and use that "
            "profile")


def speed_note(fit: dict, host_speed: float) -> str | None:
    """A warning when a timing's host speed s is outside fit.host_speed_range (unrecorded: ±5 %, a quiet
    hour's drift), else None."""
    lo, hi = read_speed_range(fit) if isinstance(fit, dict) and "host_speed_range" in fit else (1 / 1.05, 1.05)
    if lo <= host_speed <= hi:
        return None
    return (f"the reference network ran {host_speed:.2f} x its profiled time, outside the host speeds "
            f"{lo:.2f}-{hi:.2f} the profile's correction (elasticity {read_elasticity(fit):g}) was fitted on: narrow "
            "networks slow more than the reference, so this timing may read them slow or fast; give the profile a "
            "ladder of reference networks, timed while the machine is quiet (`widthnas ladder --profile P --out P`), "
            "which verification then reads networks off")
