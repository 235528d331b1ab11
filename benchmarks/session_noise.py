"""Where does re-measurement disagreement come from? Repeats, sessions and time, taken apart.

    python -m widthnas.benchmarks.session_noise [--space mobilenet_v1] [--n 16] [--seed 0] [--out FILE.json]

Two measurements of one network by the adaptive protocol disagree by more than each one's own
interval says (issue 11: at 224 px, 94 % within ±5 %, where a ±1-2 % interval predicts ~100 %).
For each of `--n` uniform networks this times, by `standalone_runner.measure_sample` (no guard):
  a1, a2  the network's session A against reference session R1, back to back (repeat noise only);
  b       a fresh session B of the same network against R1 (adds the network-session effect);
  r       session A against a second reference session R2 (adds the reference-session effect);
  a3      session A against R1 again after all networks (adds drift over the run's length).
and prints the RMS log-difference and the share within ±5 % of each pair, so the protocol can be
aimed at the part that dominates. Each pair's RMS / sqrt(2) is one measurement's noise. Both ratio
estimates of every measurement are reported (standalone_runner.RATIOS): the per-round median (the
protocol's) and the pooled medians (before stop 21).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from widthnas.latency import standalone_runner as sr
from widthnas.latency.backends import OrtBackend
from widthnas.latency.sampling import UniformSampler
from widthnas.models import get_space

PAIRS = {"repeat (a2 vs a1)": ("a1", "a2"), "network session (b vs a1)": ("a1", "b"),
         "reference session (r vs a1)": ("a1", "r"), "later in the run (a3 vs a1)": ("a1", "a3")}
# the two estimates of a sample's ratio: median(net runs) / median(reference runs), the median of per-round ratios
ESTIMATORS = {"pooled medians": "_pooled", "per-round ratios (the protocol's default)": ""}


def pair_stats(x: np.ndarray, y: np.ndarray) -> dict:
    """Log-ratio of y over x: RMS, mean (a common offset), and shares within ±5 % / ±2 %."""
    d = np.log(y / x)
    return {"rms": float(np.sqrt(np.mean(d ** 2))), "mean": float(np.mean(d)), "sd": float(np.std(d, ddof=1)),
            "within_5": float(np.mean(np.abs(np.expm1(d)) <= 0.05)),
            "within_2": float(np.mean(np.abs(np.expm1(d)) <= 0.02))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mobilenet_v1", help="a registered space or a space JSON file")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rounds", type=int, default=0,
                    help="the protocol's round cap (0: its default, standalone_runner.ROUNDS_CAP x rounds)")
    ap.add_argument("--time-cap", type=float, default=20.0, help="the protocol's time cap per sample, s")
    ap.add_argument("--out", default=None, help="write the per-network measurements here (JSON)")
    a = ap.parse_args()
    if a.n < 3:
        ap.error(f"--n {a.n}: at least 3 networks")
    if a.max_rounds < 0 or not (0 < a.time_cap < 3600):
        ap.error(f"--max-rounds {a.max_rounds} / --time-cap {a.time_cap}: give a whole number >= 0 and 0-3600 s")
    if a.out and os.path.exists(a.out):  # never over an input or a shipped file
        ap.error(f"--out {a.out} exists; choose a new file for the measurements")
    try:
        space = get_space(a.space)
    except ValueError as e:
        ap.error(f"--space: {e}")
    be = OrtBackend(space)
    proto = sr.Protocol(max_rounds=a.max_rounds, time_cap_s=a.time_cap, guard=None)
    sampler = UniformSampler(space, a.seed)
    nets = [sampler.next() for _ in range(a.n)]
    r1, r2 = be.open(space.reference_widths), be.open(space.reference_widths)
    t0, rows = time.time(), []
    for i, w in enumerate(nets):
        sa, sb = be.open(w), be.open(w)
        m = {}
        for k, net, ref in (("a1", sa, r1), ("a2", sa, r1), ("b", sb, r1), ("r", sa, r2)):
            rec = sr.measure_sample(net, ref, proto)
            m[k], m[k + "_pooled"] = rec["norms"]["rounds"], rec["norms"]["pooled"]
        rows.append({"widths": w, **m, "_a": sa})
        print(f"{i + 1:3d}/{a.n}  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items() if "_" not in k), flush=True)
    for row in rows:
        rec = sr.measure_sample(row.pop("_a"), r1, proto)
        row["a3"], row["a3_pooled"] = rec["norms"]["rounds"], rec["norms"]["pooled"]
    print(f"{a.space}: {a.n} networks, {time.time() - t0:.0f} s; protocol {proto.settings()}")
    res = {}
    for est, suffix in ESTIMATORS.items():
        print(f"-- {est}")
        for label, (x, y) in PAIRS.items():
            s = pair_stats(np.array([r[x + suffix] for r in rows]), np.array([r[y + suffix] for r in rows]))
            res[f"{est}: {label}"] = s
            print(f"{label:30s} RMS {s['rms']:.2%} (one measurement {s['rms'] / np.sqrt(2):.2%})  "
                  f"mean {s['mean']:+.2%}  sd {s['sd']:.2%}  within ±2% {s['within_2']:.0%}  ±5% {s['within_5']:.0%}")
    if a.out:
        from widthnas._io import atomic_write_text

        record = {"space": a.space, "n": a.n, "seed": a.seed, "protocol": proto.settings(), "rows": rows, "pairs": res,
                  "device": be.device_info()}
        atomic_write_text(a.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
