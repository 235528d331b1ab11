"""How far under the budget the search aims, so that the exported network still measures within it.

A network the profile predicts just under the budget measures over it about half the time: the
prediction misses by the profile's held-out error. `auto` aims AUTO_Z held-out RMS relative errors
under the budget (z = 2: ~98 % one-sided if the errors were Gaussian), taken from the profile's
own validation (`widthnas validate`/`fit --heldout`), so a noisier device gets a wider margin.
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
        raise ValueError(f"margin {text!r}: give 'auto' or a percentage in [0, 100), e.g. 2 for 2 % under "
                         "the budget") from None
    if not (math.isfinite(v) and 0 <= v < 100):
        raise ValueError(f"margin {text!r} %: give 'auto' or a percentage in [0, 100), e.g. 2 for 2 % under the budget")
    return v


def auto_margin_pct(table) -> tuple[float, str]:
    """(margin in %, how it was found) from the profile's held-out validation error."""
    v = (getattr(table, "validation", None) or {}).get("table") or {}
    err = v.get("rmspe")
    if not isinstance(err, (int, float)) or not math.isfinite(err) or err < 0:
        return FALLBACK_PCT, (f"{FALLBACK_PCT:g} %: the profile has no held-out validation error "
                              "(run `widthnas validate` to measure one)")
    pct = min(AUTO_Z * 100 * float(err), MAX_AUTO_PCT)
    return round(pct, 2), (f"{pct:.2f} % = {AUTO_Z:g} x the profile's held-out RMS error "
                           f"{100 * err:.2f} % ({v.get('n', '?')} networks)")


def resolve_margin(margin: float | str, table) -> tuple[float, str]:
    """The margin in % that a search aims under the budget, and a sentence saying where it came from."""
    m = parse_margin(margin)
    if m == "auto":
        return auto_margin_pct(table)
    return float(m), f"{float(m):g} % (given)"
