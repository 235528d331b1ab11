"""A ladder of reference networks: a verification timing normalised by references of its own size.

One reference cancels a host slowdown only for networks that slow as much as it does, and one fitted
elasticity cannot mend narrow and wide networks at once (docs/RESULTS.md §2.2b). A ladder measures
instead: its rungs are uniform networks whose ratio to the reference was timed at the profile's speed
(`measure_ladder`); a network timed beside the two rungs that bracket it, which a slow host slows
about as much, is read off each and interpolated in log ratio (`ladder_estimate`). The reference is
the rung at ratio 1.

Stored in the profile as fit.ref_ladder: {"rungs": [{"widths", "ratio", "spread_pct"}], "host_speed":
[min, max] of the kept timings, "repeats", "tolerance", "timed_again", "measured"}.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

from . import standalone_runner as sr

RUNGS = 8  # besides the reference; spaced geometrically in ratio from the narrowest to the widest network
REPEATS = 5  # timings per rung, beside the reference; the median ratio is kept
SPEED_TOLERANCE = 0.05  # rungs timed only with the reference within ±5 % of its profiled time (the samples' spread)
WAIT_S = 2.0  # s, between a timing off the profiled speed and the next try
MAX_WAIT_S = 120.0  # s per rung: a host may flicker between speeds for minutes (RESULTS §2.2c)
PREDICTION_FACTOR = 3.0  # a rung's measured ratio within 3 x of the table's (loose: rough tables miss by 30 %)
ORDER_SLACK = 0.1  # rungs taken in the table's predicted order must measure no more than 10 % out of order
GRID = 301  # uniform width multipliers tried for rungs, from 0 to the widest over the base widths


def ladder_widths(space, predict: Callable[[Sequence[int]], float], rungs: int = RUNGS) -> list[list[int]]:
    """Uniform networks whose predicted ratios to the reference (ms / reference ms) lie geometrically
    from the narrowest network's to the widest's, the reference's own ratio 1 left out (it is a rung
    by definition). Fewer come back when the space has fewer distinct uniform networks."""
    if not isinstance(rungs, int) or rungs < 2:
        raise ValueError(f"rungs {rungs!r}: give at least 2 (the narrowest and widest networks)")
    ref = predict(space.reference_widths)
    cands: dict[tuple, float] = {}
    top = max(mx / b for mx, b in zip(space.max_widths, space.reference_widths))
    for m in np.linspace(0.0, top, GRID):
        w = space.uniform(float(m))
        cands.setdefault(tuple(w), predict(w) / ref)
    cands.setdefault(tuple(space.min_widths), predict(space.min_widths) / ref)
    cands.setdefault(tuple(space.max_widths), predict(space.max_widths) / ref)
    cands.pop(tuple(space.reference_widths), None)
    if not cands:
        raise ValueError(f"space {space.name}: no uniform network other than the reference")
    ws, rs = list(cands), np.log(np.asarray(list(cands.values())))
    targets = np.linspace(rs.min(), rs.max(), rungs)
    chosen: list[tuple] = []
    for t in targets:
        i = int(np.argmin(np.abs(rs - t)))
        if ws[i] not in chosen and abs(rs[i]) > 0.05:  # within 5 % of the reference: the reference serves
            chosen.append(ws[i])
    return [list(w) for w in sorted(chosen, key=lambda w: cands[w])]


def measure_ladder(table, backend, protocol: sr.Protocol, rungs: int = RUNGS, repeats: int = REPEATS,
                   tolerance: float = SPEED_TOLERANCE, log: Callable[[str], None] = print,
                   max_wait_s: float = MAX_WAIT_S) -> dict:
    """Each rung's median ratio over `repeats` timings beside the reference. A timing with the reference
    over `tolerance` off its profiled time is dropped (after `max_wait_s` per rung: refused, as a ladder
    timed on a slow host would carry that slowdown into every verification)."""
    if not isinstance(repeats, int) or repeats < 3:
        raise ValueError(f"repeats {repeats!r}: give at least 3 timings per rung")
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 0.5):
        raise ValueError(f"tolerance {tolerance!r}: give a fraction in (0, 0.5), e.g. 0.03")
    from .backends import clocks

    if not (isinstance(max_wait_s, (int, float)) and 0 <= max_wait_s < 86400):
        raise ValueError(f"max_wait_s {max_wait_s!r}: give seconds in [0, 86400)")
    clock, sleep = clocks(backend)
    ref = backend.open(table.space.reference_widths)
    speeds: list[float] = []  # host speed s of the kept timings
    out, again = [], 0
    widths_all = ladder_widths(table.space, table.predict, rungs)
    if not widths_all:
        raise ValueError(f"space {table.space.name}: every uniform network is within 5 % of the reference's "
                         "predicted latency, so a ladder would only repeat the reference")
    for widths in widths_all:
        net = backend.open(widths)
        norms, rung_speeds, off = [], [], []
        start = clock()
        while len(norms) < repeats:  # a timing with the reference off its profiled speed is a passing
            rec = sr.measure_sample(net, ref, protocol, clock=clock, what=f"rung {widths}")  # spike: timed again
            s = rec["ref_ms"]["median"] / table.reference_ms
            if abs(s - 1) <= tolerance:
                speeds.append(s)
                norms.append(rec["norm"])
                rung_speeds.append(s)
                continue
            off.append(s)
            again += 1
            if clock() - start > max_wait_s:  # s since this rung's first timing
                raise ValueError(f"the reference network ran {np.median(off):.3f} x its profiled time ({table.reference_ms:.4f} "
                                 f"ms) in {len(off)} timings over {clock() - start:.0f} s, more than ±{tolerance:.0%} "
                                 "off: a ladder timed now would carry that slowdown. Measure it when the machine is as "
                                 "quiet as when profiled (nothing else running), or re-profile; nothing was written")
            sleep(WAIT_S)
        r = float(np.median(norms))
        spread = 100 * (max(norms) - min(norms)) / r
        out.append({"widths": [int(c) for c in widths], "ratio": r, "spread_pct": round(spread, 3)})
        log(f"rung {len(out)}: ratio {r:.4f} to the reference (predicted {table.predict(widths) / table.predict(table.space.reference_widths):.4f}), "
            f"{repeats} timings within {spread:.2f} %, reference at {min(rung_speeds):.3f}-{max(rung_speeds):.3f} x its "
            "profiled time")
    lad = {"rungs": out, "host_speed": [float(min(speeds)), float(max(speeds))], "repeats": repeats,
           "tolerance": tolerance, "timed_again": again, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    read_ladder({"ref_ladder": lad}, table.space, "the ladder timed now", table.predict)  # loads, or is refused here
    return lad


def read_ladder(fit: dict, space, where: str = "profile",
                predict: Callable[[Sequence[int]], float] | None = None) -> list[dict] | None:
    """The profile's rungs plus the reference at ratio 1, sorted by ratio, checked (None: no ladder). With
    `predict`, ratios must follow the table's order (ORDER_SLACK) and predictions (PREDICTION_FACTOR): a
    swapped or foreign ladder would misread every verification."""
    lad = fit.get("ref_ladder") if isinstance(fit, dict) else None
    if lad is None:
        return None
    again = "; measure it again with `widthnas ladder`"
    try:
        if not isinstance(lad["rungs"], list) or not lad["rungs"]:
            raise ValueError("no rungs")
        rungs = [{"widths": list(space.validate(r["widths"])), "ratio": r["ratio"]} for r in lad["rungs"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: fit.ref_ladder is malformed ({e}){again}") from None
    ref = list(space.reference_widths)
    seen = set()
    for r in rungs:
        x, w = r["ratio"], tuple(r["widths"])
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
            raise ValueError(f"{where}: fit.ref_ladder holds a ratio {x!r}, expected a positive, finite number{again}")
        if list(w) == ref or w in seen:
            raise ValueError(f"{where}: fit.ref_ladder holds the network {list(w)} twice, or the reference as a rung{again}")
        seen.add(w)
    if predict is not None:
        p_ref = predict(ref)
        by_pred = sorted(rungs + [{"widths": ref, "ratio": 1.0}], key=lambda r: predict(r["widths"]))
        for a, b in zip(by_pred, by_pred[1:]):
            if b["ratio"] < (1 - ORDER_SLACK) * a["ratio"]:
                raise ValueError(f"{where}: fit.ref_ladder measures {b['widths']} at {b['ratio']:.4f} x the reference, below "
                                 f"{a['widths']} at {a['ratio']:.4f}, which the table predicts faster: the ladder does not "
                                 f"belong to this table{again}")
        for r in rungs:
            want = predict(r["widths"]) / p_ref
            if abs(math.log(r["ratio"] / want)) > math.log(PREDICTION_FACTOR):
                raise ValueError(f"{where}: fit.ref_ladder gives the rung {r['widths']} a ratio {r['ratio']:.4f} to the "
                                 f"reference, the table predicts {want:.4f}: the ladder does not belong to this table{again}")
    rungs.append({"widths": ref, "ratio": 1.0, "is_reference": True})
    rungs.sort(key=lambda r: r["ratio"])
    return rungs


def bracket(ratios: Sequence[float], r: float) -> tuple[int, int, float]:
    """(lower rung, upper rung, weight of the upper in log ratio) for a network at ratio r; beyond the
    ladder's ends, the end rung alone (weight 0 or 1)."""
    lr = np.log(np.asarray(ratios, float))
    x = math.log(r)
    if x <= lr[0]:
        return 0, 0, 0.0
    if x >= lr[-1]:
        return len(lr) - 1, len(lr) - 1, 0.0
    hi = int(np.searchsorted(lr, x, side="right"))
    lo = hi - 1
    return lo, hi, float((x - lr[lo]) / (lr[hi] - lr[lo]))


def ladder_estimate(run_net: Callable[[], None], norm_to_ref: float, rungs: list[dict], reference_ms: float,
                    open_rung: Callable[[list[int]], Callable[[], None]], protocol: sr.Protocol,
                    clock: Callable[[], float] = time.perf_counter) -> dict:
    """Latency (ms) at the profile's speed of a network at ratio `norm_to_ref` to the reference now, from
    timings beside its bracketing rungs; also, per rung used, its ratio and the network's to it now."""
    ratios = [r["ratio"] for r in rungs]
    lo, hi, w = bracket(ratios, norm_to_ref)
    used, logs = [], []
    for i in sorted({lo, hi}):
        rung = rungs[i]
        if rung.get("is_reference"):
            q, settled = norm_to_ref, True  # the reference rung: already timed (and watched by the load guard)
        else:  # paired rounds like the reference's, so a drift divides out; one that never settles is said
            rec = sr.measure_sample(run_net, open_rung(rung["widths"]), protocol, clock=clock, what="ladder rung")
            q, settled = rec["norm"], bool(rec.get("settled", True))
        used.append({"rung_ratio": rung["ratio"], "norm_to_rung": q, "settled": settled})
        logs.append(math.log(q * rung["ratio"] * reference_ms))
    ms = math.exp(logs[0] if len(logs) == 1 else (1 - w) * logs[0] + w * logs[1])
    return {"ms": ms, "rungs": used, "weight_upper": w, "unsettled": sum(not u["settled"] for u in used)}
