"""How steady is this machine's speed, per space? One mid-width network timed back to back.

    python -m widthnas.benchmarks.timing_noise [--spaces resnet_small,mobilenet_v2_small] [--runs 3000] [--block 100]

Prints the percentiles of single runs and the spread of block medians (each block = `--block`
consecutive runs), in wall time and in this thread's CPU time. Block medians that move by more
than a few percent on an idle machine mean the host's speed changes underneath (SMT neighbours,
frequency), which no per-sample repeat count removes: the reference network timed beside every
sample is then what keeps a profile usable, and held-out figures are bounded by it. Run it before
profiling, with nothing else running.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from widthnas.latency import standalone_runner as sr
from widthnas.latency.backends import OrtBackend
from widthnas.models import get_space


def mid_widths(space) -> list[int]:
    """Each free group at its middle choice (channels)."""
    return [int(c[len(c) // 2]) for c in space.choices]


def block_spread(ts: np.ndarray, block: int) -> tuple[float, float]:
    """(max / min of block medians - 1, relative IQR of block medians) of single-run times ts (ms)."""
    med = np.median(ts[: len(ts) // block * block].reshape(-1, block), axis=1)
    q1, q3 = np.percentile(med, [25, 75])
    return float(med.max() / med.min() - 1), float((q3 - q1) / np.median(med))


def time_network(run, runs: int, clock) -> np.ndarray:
    """(runs,) ms of single runs, after 50 untimed ones."""
    for _ in range(50):
        run()
    return np.array(sr.time_runs(run, runs, clock))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", default="mobilenet_v1_small,mobilenet_v2_small,resnet_small",
                    help="registered spaces or space JSON files, comma-separated")
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--block", type=int, default=100)
    a = ap.parse_args()
    if a.runs < 2 * a.block or a.block < 1:
        ap.error(f"--runs {a.runs} must hold at least two blocks of --block {a.block} (both positive)")
    try:
        spaces = [get_space(name) for name in a.spaces.split(",")]
    except ValueError as e:
        ap.error(f"--spaces: {e}")
    for name, space in zip(a.spaces.split(","), spaces):
        run = OrtBackend(space).open(mid_widths(space))  # ORT CPU, 1 thread, batch 1 (the shipped profiles')
        for label, clock in (("wall", time.perf_counter), ("cpu", time.thread_time)):
            ts = time_network(run, a.runs, clock)
            p = np.percentile(ts, [1, 10, 50, 90, 99])
            rng, iqr = block_spread(ts, a.block)
            print(f"{name:20s} {label:4s} median {p[2]:.4f} ms  p1-p99 {p[0]:.4f}-{p[4]:.4f}  "
                  f"p90/p10 {p[3] / p[1]:.3f}  block medians ({a.block} runs): max/min {1 + rng:.3f}, "
                  f"IQR {100 * iqr:.1f} %", flush=True)


if __name__ == "__main__":
    main()
