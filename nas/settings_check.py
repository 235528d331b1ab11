"""Numeric settings checked before anything runs or is written.

A bad value (`--batch-size 0`, `--lr nan`, `--heldout-networks -3`) must fail at once with the option's
name and what to give, not as a ZeroDivisionError or a run of NaN losses minutes later. The same
rules check settings read back from a file (a resumed run's `run_config.json`, a checkpoint's
training settings).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    integer: bool = False
    low: float | None = None  # smallest allowed value (inclusive)
    above: float | None = None  # values must be strictly above this
    high: float | None = None  # largest allowed value (inclusive)
    below: float | None = None  # values must be strictly below this
    none_ok: bool = False  # None means "not set" (e.g. --limit: the whole split)
    zero_ok: bool = False  # 0 allowed besides the range (e.g. --remeasure 0: off)

    def describe(self) -> str:
        what = "a whole number" if self.integer else "a finite number"
        parts = [f">= {self.low:g}" if self.low is not None else "", f"> {self.above:g}" if self.above is not None else "",
                 f"<= {self.high:g}" if self.high is not None else "", f"< {self.below:g}" if self.below is not None else ""]
        rng = " and ".join(p for p in parts if p)
        return f"{what}{' ' + rng if rng else ''}{' (or 0)' if self.zero_ok else ''}"

    def ok(self, v) -> bool:
        if v is None:
            return self.none_ok
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.integer and not (isinstance(v, int) or float(v).is_integer()):
            return False
        if not math.isfinite(v):
            return False
        if self.zero_ok and v == 0:
            return True
        return ((self.low is None or v >= self.low) and (self.above is None or v > self.above)
                and (self.high is None or v <= self.high) and (self.below is None or v < self.below))


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def check_settings(obj, rules: dict[str, Rule], where: str = "") -> None:
    """Raise ValueError naming every field of `obj` whose value breaks its rule."""
    bad = []
    for field, rule in rules.items():
        v = getattr(obj, field)
        if not rule.ok(v):
            bad.append(f"{option_name(field)} {v!r}: give {rule.describe()}")
    if bad:
        raise ValueError(f"{where + ': ' if where else ''}" + "; ".join(bad))


INT_POS = Rule(integer=True, low=1)
INT_NONNEG = Rule(integer=True, low=0)
POSITIVE = Rule(above=0)
