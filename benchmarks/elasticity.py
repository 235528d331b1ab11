"""How much more than the reference does a network slow when the host slows? From the pairs of a
`latency_accuracy.py` run: each held-out network timed twice, about an hour apart, beside the reference.

For every pair, the log change of the network's median time regressed on the log change of the
reference's (slope = elasticity beta; 1 means plain normalisation cancels the host's speed), by the
network's ratio to the reference. Then the pairs' disagreement with plain normalisation, with the
host-state correction at a given k (latency/host_state.py), and the k that fits these pairs best
(least squares on e = k (-ln r) ln s). Reads files only; takes a second.

    python -m widthnas.benchmarks.elasticity runs/bench_latency/mbv1_224_r21/adaptive [--k 0.5]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from widthnas.latency import standalone_runner as sr
from widthnas.latency.host_state import typical_speed_ms

BINS = ((0.0, 0.5), (0.5, 0.7), (0.7, 1.0), (1.0, math.inf))  # ratio to the reference


def pairs(d: Path) -> dict[str, np.ndarray]:
    """First and second timing of each re-measured held-out network: ratios, network and reference ms."""
    h1, first, _ = sr.read_samples(str(d / "heldout.jsonl"))
    h2, second, _ = sr.read_samples(str(d / "remeasure.jsonl"))
    if not second:
        raise ValueError(f"{d / 'remeasure.jsonl'}: no re-measurements; run latency_accuracy.py with --remeasure")
    h1, h2 = h1 or {}, h2 or {}
    diff = sr.device_differences(h1.get("device", {}), h2.get("device", {}))
    if h1.get("space", {}).get("fingerprint") != h2.get("space", {}).get("fingerprint") or diff:
        what = sr.describe_differences(diff, "heldout", "remeasure") if diff else "different spaces"
        raise ValueError(f"{d}: heldout.jsonl and remeasure.jsonl disagree ({what}); they are not "
                         "timings of the same networks on the same machine")
    by_widths = {}
    for a in first:
        by_widths.setdefault(tuple(a["widths"]), a)
    rows = []
    for b in second:
        a = by_widths.get(tuple(b["widths"]))
        if a is None:
            raise ValueError(f"{d}: a re-measured network is not among the held-out ones: {b['widths']}")
        if a.get("disturbed") or b.get("disturbed"):
            continue
        try:
            row = (a["norm"], b["norm"], a["ms"]["median"], b["ms"]["median"], a["ref_ms"]["median"],
                   b["ref_ms"]["median"])
        except (KeyError, TypeError):
            continue  # a record without timings: not a pair
        if all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in row):
            rows.append(row)
    if len(rows) < 3:
        raise ValueError(f"{d}: {len(rows)} usable pairs (undisturbed, positive finite timings); at least 3 are needed")
    r = np.array(rows, float)
    return dict(zip(("r1", "r2", "net1", "net2", "ref1", "ref2"), r.T))


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x with an intercept."""
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 3 and np.ptp(x) > 0 else float("nan")


def report(d: Path, k: float | None) -> dict:
    p = pairs(d)
    ls, ln = np.log(p["ref2"] / p["ref1"]), np.log(p["net2"] / p["net1"])
    out = {"dir": str(d), "pairs": int(len(ls)), "beta_all": slope(ls, ln), "bins": []}
    for lo, hi in BINS:
        m = (p["r1"] >= lo) & (p["r1"] < hi)
        if m.sum():
            out["bins"].append({"ratio": [lo, hi], "n": int(m.sum()), "beta": slope(ls[m], ln[m])})
    e = np.log(p["r2"] / p["r1"])  # plain normalisation's disagreement
    x = -np.log(p["r1"]) * ls
    out["k_best"] = float(x @ e / (x @ x)) if x @ x > 0 else float("nan")  # nan: the reference never moved
    ref0 = float(np.median(np.r_[p["ref1"], p["ref2"]]))

    def agree(kk: float) -> dict:
        a = typical_speed_ms(p["r1"], p["ref1"], ref0, kk)
        b = typical_speed_ms(p["r2"], p["ref2"], ref0, kk)
        rel = b / a - 1
        return {"k": kk, "rms": float(np.sqrt(np.mean(rel ** 2))), "within_5": float(np.mean(np.abs(rel) <= 0.05)),
                "worst": float(np.max(np.abs(rel)))}

    out["agreement"] = [agree(0.0)] + ([agree(k)] if k else [])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="protocol directories of latency_accuracy.py runs (…/adaptive)")
    ap.add_argument("--k", type=float, help="also judge the pairs with the correction at this elasticity")
    a = ap.parse_args(argv)
    if a.k is not None and not (math.isfinite(a.k) and 0 <= a.k <= 2):
        print(f"error: --k {a.k}: give a number in [0, 2]", file=sys.stderr)
        return 2
    for d in a.dirs:
        try:
            r = report(Path(d), a.k)
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {d}: {e}", file=sys.stderr)
            return 2
        print(f"{d}: {r['pairs']} pairs; slope of the network's log change on the reference's: {r['beta_all']:.2f}")
        for b in r["bins"]:
            print(f"  ratio {b['ratio'][0]:.1f}-{b['ratio'][1]:.1f}: n={b['n']:3d}  beta {b['beta']:.2f}")
        print(f"  k fitting these pairs best: {r['k_best']:.2f}")
        for g in r["agreement"]:
            print(f"  k={g['k']:g}: second vs first timing RMS {g['rms']:.2%}, within ±5% {g['within_5']:.0%}, "
                  f"worst {g['worst']:.1%}")
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
