"""Solver speed on 14 layers x 14 widths, medians over repeats, all in one run.

    python benchmarks/solver_speed.py
Targets (issue 3): Lagrangian budget solve <= 1 ms; exact optimum + Pareto front <= 50 ms;
forward-backward marginals <= 1 ms; pgmpy's time for the same marginals shown as a ratio.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np


from widthnas.mrf import WidthMRF, exact, lagrangian, marginals
from widthnas.mrf.pgmpy_ref import pgmpy_marginals
from widthnas.mrf.solvers import fastest, slowest_latency


def instance(seed: int, n: int = 14, k: int = 14) -> WidthMRF:
    """Unaries that favour width with noise; bilinear-ish latencies like a real table."""
    rng = np.random.default_rng(seed)
    ch = [tuple(range(8, 8 * k + 1, 8))] * n
    score = [np.sort(rng.normal(0, 1, k)) * rng.uniform(0.2, 1) for _ in range(n)]
    lu = [rng.uniform(0, 0.05, k) for _ in range(n)]
    c = np.arange(1, k + 1) / k
    lp = [rng.uniform(0.5, 2) * np.outer(c, c) + 0.2 * rng.uniform(0, 1) * (c[:, None] + c[None]) +
          rng.uniform(0, 0.02, (k, k)) for _ in range(n - 1)]
    return WidthMRF(ch, score, lu, lp, 0.05, tuple([64] * n))


def median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for seed in range(a.instances):
        m = instance(seed)
        budget = fastest(m).latency + 0.5 * (slowest_latency(m) - fastest(m).latency)
        t_lag = median_ms(lambda: lagrangian(m, budget), a.repeats)
        t_ex = median_ms(lambda: exact(m, budget), max(5, a.repeats // 3))
        t_fb = median_ms(lambda: marginals(m, 1.0, 1.0), a.repeats)
        t_pg = median_ms(lambda: pgmpy_marginals(m, 1.0, 1.0), 3)
        e, l = exact(m, budget), lagrangian(m, budget)
        err = max(float(np.abs(x - y).max()) for x, y in zip(marginals(m, 1.0, 1.0), pgmpy_marginals(m, 1.0, 1.0)))
        rows.append((t_lag, t_ex, t_fb, t_pg, e.score - l.score, len(e.pareto), err))
        print(f"instance {seed}: lagrangian {t_lag:.3f} ms, exact+front {t_ex:.1f} ms ({len(e.pareto)} front points, "
              f"{e.info['proof']}), marginals {t_fb:.3f} ms, pgmpy marginals {t_pg:.1f} ms (max diff {err:.1e}); "
              f"exact - lagrangian score {e.score - l.score:.4f}", flush=True)
    r = np.array(rows)
    med = np.median(r, axis=0)
    print(f"\n14 layers x 14 widths, medians over {a.instances} instances:")
    print(f"  Lagrangian budget solve   {med[0]:8.3f} ms   (target <= 1 ms)")
    print(f"  exact optimum + front     {med[1]:8.1f} ms   (target <= 50 ms)")
    print(f"  forward-backward marginals{med[2]:8.3f} ms   (target <= 1 ms)")
    print(f"  pgmpy marginals (VE)      {med[3]:8.1f} ms   = {med[3] / med[2]:.0f}x ours")
    gaps = r[:, 4][r[:, 4] > 1e-9]
    print(f"  Lagrangian below exact in {len(gaps)} of {len(r)} instances"
          + (f", by {np.mean(gaps):.3f} score on average (max {np.max(gaps):.3f})" if len(gaps) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
