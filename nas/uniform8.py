"""uniform8: the network a user gets without any search, a width multiplier rounded to 8 channels,
the largest one whose *measured* latency is within the budget.

It is the baseline the benchmarks and `widthnas run`'s summary compare the chosen network with. Its
widths lie off the search grid (`GraphSpace.with_dense_choices`), where the latency profile predicts
nothing, so it is found by measurement alone.
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

from widthnas.latency.verdict import WITHIN, budget_verdict
from widthnas.models.space import ROUND_TO

from .export import network_measurer

Widths = list[int]


class NoMultiplierFits(ValueError):
    """Even the narrowest multiplier rounded to 8 channels does not measure within the budget."""


def multiplier_candidates(space) -> list[tuple[float, Widths]]:
    """(multiplier, widths) of every distinct network a multiplier rounded to 8 channels gives, ascending
    (so ascending in latency): from 0.05 in steps of 0.005 to the one that reaches every group's widest choice."""
    hi = max(g.choices[-1] / g.base for g in space.free_groups)
    out: list[tuple[float, Widths]] = []
    for m in np.arange(0.05, hi + 1e-9, 0.005):
        w = space.multiplier_widths(float(m), ROUND_TO)
        if not out or w != out[-1][1]:
            out.append((round(float(m), 3), w))
    return out


def measured_multiplier(cands: Sequence[tuple[float, Widths]], target_ms: float,
                        measure: Callable[[Widths], float]) -> tuple[float, Widths]:
    """The widest of `cands` whose one measurement (ms) is within target_ms, by bisection: about
    log2(len(cands)) measurements. ValueError when even the narrowest measures over."""
    lo = _last_fitting(-1, len(cands), lambda i: measure(cands[i][1]) <= target_ms)
    if lo < 0:
        raise NoMultiplierFits(f"no width multiplier rounded to {ROUND_TO} channels measures within {target_ms:.4f} ms")
    return cands[lo]


def _last_fitting(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """Bisection between lo (fits, or -1) and hi (does not, or past the end): the last index that fits."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def uniform8(space, budget_ms: float, measure: Callable[[Widths], float],
             verdict: Callable[[Widths], dict]) -> dict:
    """The largest multiplier (rounded to 8 channels, on `space.with_dense_choices()`) measured within
    budget_ms. measure(widths) -> one timing (ms); verdict(widths) -> a budget verdict of that network.
    Bisection on single timings finds the neighbourhood; verdicts then search from there, a rung, then 2,
    4, ... away (down until one says "within"; up until one does not, so that one noisy timing does not cost
    the baseline a rung), and bisect the last gap: rungs jumped over are not judged. Each network gets at
    most one verdict: near the budget on a noisy host most say "cannot tell" after 8 timings, and stepping a
    rung at a time through a dense ladder took 22 verdicts (121 timings) in one test run.
    Returns {"multiplier", "widths", "verdict"}; NoMultiplierFits when no verdict says within."""
    cands = multiplier_candidates(space)
    judged: dict[int, dict] = {}

    def v(i: int) -> dict:
        if i not in judged:
            judged[i] = verdict(cands[i][1])
        return judged[i]

    def within(i: int) -> bool:
        return v(i)["verdict"] == WITHIN

    i = cands.index(measured_multiplier(cands, budget_ms, measure))
    if within(i):  # gallop up to a rung that is not within (or past the last rung)
        lo, hi, step = i, len(cands), 1
        while lo + 1 < len(cands):
            j = min(lo + step, len(cands) - 1)
            if not within(j):
                hi = j
                break
            lo, step = j, 2 * step
    else:  # gallop down to a rung that is
        lo, hi, step = None, i, 1
        while hi > 0:
            j = max(hi - step, 0)
            if within(j):
                lo = j
                break
            hi, step = j, 2 * step
        if lo is None:
            raise NoMultiplierFits(f"no width multiplier rounded to {ROUND_TO} channels is measured within "
                                   f"{budget_ms:.4f} ms (the narrowest: {v(0)['verdict']})")
    lo = _last_fitting(lo, hi, within)  # cands[lo] within, cands[hi] not
    return {"multiplier": cands[lo][0], "widths": list(cands[lo][1]), "verdict": v(lo)}


CANNOT_TIME = "cannot time"  # measured_uniform8: this profile's networks cannot be timed here (not onnxruntime)


def measured_uniform8(supernet, table, budget_ms: float, work_dir, rounds: int, round_ms: float,
                      log: Callable[[str], None] = print, dense_space=None) -> dict | None | str:
    """uniform8 from the supernet's weights, timed here as verify times networks: a network record
    (method "uniform8", grid "dense8": widths off the search grid, so nothing is predicted); None when no
    multiplier fits; CANNOT_TIME when the profile's networks cannot be timed on this machine. dense_space:
    supernet.space.with_dense_choices(), when the caller already has it."""
    try:
        measure = network_measurer(supernet, table, work_dir, rounds, round_ms, space=dense_space or supernet.space.with_dense_choices())
    except ValueError as e:
        log(f"search: compared with the search grid's uniform network ({e})")
        return CANNOT_TIME
    timed = itertools.count(1)

    def measure_said(w):  # the status line shows the bisection going on
        log(f"search: uniform8: timing network {next(timed)} (bisection over the multipliers)")
        return measure(w)

    try:
        u = uniform8(supernet.space, budget_ms, measure_said,
                     lambda w: budget_verdict(lambda: measure_said(w), budget_ms))
    except NoMultiplierFits as e:
        log(f"search: {e}; the chosen network is reported alone")
        return None
    v = u["verdict"]
    log(f"search: uniform8 x{u['multiplier']} {u['widths']}: {v['mean_ms']:.4f} ms measured ({v['verdict']})")
    return {"widths": u["widths"], "method": "uniform8", "grid": "dense8", "predicted_ms": None, "score": None,
            "info": {"multiplier": u["multiplier"], "rounded_to": 8, "measured_ms": v["mean_ms"],
                     "verdict": v["verdict"]}}
