"""How far under the budget the search aims, so that the exported network still measures within it.

A network predicted just under the budget measures over it about half the time. `auto` aims AUTO_Z
relative errors under it (z = 2: ~98 % one-sided if Gaussian), from the profile's held-out validation,
so a noisier device gets a wider margin.

With a noise floor (`validation.noise_floor`) the error is sqrt(held-out RMS error^2 + per-measurement
noise^2): a new measurement misses the prediction by the model's error against a past measurement plus
how far it strays from that one, and independent errors add in quadrature. The held-out labels' noise
is counted twice, which errs toward staying within budget (at most a factor sqrt(2)); the floor, taken
at another time, also holds run-to-run changes one held-out run cannot show.

On another machine behind the same device key (host_state.OTHER_MACHINE) the profile's validation
says nothing of the error here (RESULTS §2.2e): given a latency check (check.py), auto takes the larger
of the two errors; the check's single timings hold their noise, as the floor does.
"""
from __future__ import annotations

import math

AUTO_Z = 2.0
FALLBACK_PCT = 5.0  # a profile without held-out validation: its error is unknown, so be generous
MAX_AUTO_PCT = 20.0


def parse_margin(text: str | float) -> float | str:
    """'auto' or a percentage in [0, 100); a clear error otherwise (argparse type and RunConfig check)."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    try:
        v = float(text)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and 0 <= v < 100):
        raise ValueError(f"--margin {text!r}: give 'auto' or a percentage in [0, 100), e.g. 2 for 2 % under the budget")
    return v


def auto_margin_pct(table, check: dict | None = None) -> tuple[float, str]:
    """(margin in %, how it was found) from the profile's held-out error and noise floor (module
    docstring); with a check on another machine (`check['machine_note']`), at least AUTO_Z x its RMS error."""
    pct, how = _profile_margin_pct(table)
    if not check or not check.get("machine_note"):
        return pct, how
    err = check.get("rmspe")
    if isinstance(err, bool) or not isinstance(err, (int, float)) or not math.isfinite(err) or err < 0:
        raise ValueError(f"latency check: its RMS relative error (rmspe) is {err!r}, expected a finite number >= 0")
    here = round(min(AUTO_Z * 100 * float(err), MAX_AUTO_PCT), 2)
    speed = check.get("host_speed")
    on = f"this machine (reference at {speed:.2f} x its profiled time)" if isinstance(speed, (int, float)) else "this machine"
    if here <= pct:
        return pct, f"{how}; the latency check on {on} asks less ({here:.2f} %)"
    return here, (f"{here:.2f} % = {AUTO_Z:g} x the RMS error {100 * err:.2f} % of the latency check on {on}, "
                  f"{check.get('n', '?')} networks: the profile was made on another machine, and its own "
                  f"validation would give {how}")


def _profile_margin_pct(table) -> tuple[float, str]:
    """auto from the profile's own validation: what holds on the machine it was made on."""
    from .noise_floor import read_floor

    validation = getattr(table, "validation", None) or {}
    v = validation.get("table") or {}
    err = v.get("rmspe")
    if not isinstance(err, (int, float)) or not math.isfinite(err) or err < 0:
        return FALLBACK_PCT, (f"{FALLBACK_PCT:g} %: the profile has no held-out validation error "
                              "(run `widthnas validate` to measure one)")
    floor = read_floor(validation, f"profile {getattr(table, 'name', '') or ''}".strip())
    if floor is None:
        pct = min(AUTO_Z * 100 * float(err), MAX_AUTO_PCT)
        return round(pct, 2), (f"{pct:.2f} % = {AUTO_Z:g} x the profile's held-out RMS error "
                               f"{100 * err:.2f} % ({v.get('n', '?')} networks; no noise floor measured)")
    noise = float(floor["per_measurement_rmspe"])
    pct = min(AUTO_Z * 100 * math.hypot(err, noise), MAX_AUTO_PCT)
    return round(pct, 2), (f"{pct:.2f} % = {AUTO_Z:g} x sqrt(held-out RMS error {100 * err:.2f} %^2 + "
                           f"re-measurement noise {100 * noise:.2f} %^2) ({v.get('n', '?')} held-out networks, "
                           f"{floor.get('n', '?')} re-measured)")


def resolve_margin(margin: float | str, table, check: dict | None = None) -> tuple[float, str]:
    """The margin in % a search aims under the budget, and where it came from (`check`: see auto)."""
    m = parse_margin(margin)
    if m == "auto":
        return auto_margin_pct(table, check)
    return float(m), f"{float(m):g} % (given)"
