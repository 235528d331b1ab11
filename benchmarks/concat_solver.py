"""The width search on DenseNet-style spaces: how concatenation grows the MRF's cliques, what the exact
solver costs while it fits, and how far the fallback (mrf/wide.py: the Lagrangian by coordinate ascent)
lands from the exact optimum where both run.

    python -m widthnas.benchmarks.concat_solver            # block sizes 2..24, ~2 min here
    python -m widthnas.benchmarks.concat_solver --json docs/results/concat_solver.json

Every layer of a dense block reads the concatenation of all earlier layers' outputs, so its 1x1 conv
has a latency factor with each of them: a block of L layers is a clique of about L groups. The spaces
are traced from a plain DenseNet-BC (growth 32, bottleneck 2 x growth, one block, 32x32 input); the
latency table and unaries are synthetic and seeded (the solver's cost depends on the graph and the
choice counts, not on where the numbers came from).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from widthnas._io import atomic_write_text


class _Layer(nn.Module):
    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, 2 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(2 * growth), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))], 1)


class DenseBlockNet(nn.Module):
    """stem, one dense block of `layers`, pre-activation head."""

    def __init__(self, layers: int, growth: int = 32, stem: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        mods, c = [], stem
        for _ in range(layers):
            mods.append(_Layer(c, growth))
            c += growth
        self.block = nn.Sequential(*mods, nn.BatchNorm2d(c), nn.ReLU())
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.block(self.stem(x)), 1), 1))


def dense_mrf(layers: int, seed: int = 0):
    from widthnas.latency.entries import GraphEntries
    from widthnas.latency.table import LatencyTable
    from widthnas.models.trace import trace_model
    from widthnas.mrf import build_mrf
    from widthnas.mrf.unaries import from_arrays

    torch.manual_seed(seed)
    space = trace_model(DenseBlockNet(layers).eval(), (3, 32, 32), f"dense{layers}")
    rng = np.random.default_rng(seed)
    e = GraphEntries(space)
    costs = np.array([1e-5 * k.c_in * k.c_out + 1e-3 for k in e.keys]) * rng.uniform(0.8, 1.2, e.E)  # ms
    loss = [np.sort(rng.uniform(0, 0.3, len(c)))[::-1] for c in space.choices]
    return space, build_mrf(LatencyTable(space, costs, 0.01, 1.0),
                            from_arrays(space, loss, [np.ones(len(c), int) for c in space.choices]))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, 1e3 * (time.perf_counter() - t0)


def run(sizes: tuple[int, ...], fractions=(0.3, 0.6)) -> list[dict]:
    from widthnas.mrf import solvers, wide

    rows = []
    for L in sizes:
        space, mrf = dense_mrf(L)
        states, clique = wide.clique_states(mrf)
        lo, hi = solvers.fastest(mrf).latency, solvers.slowest_latency(mrf)
        for f in fractions:
            budget = lo + f * (hi - lo)
            row = {"layers": L, "groups": mrf.n, "clique_groups": clique, "clique_states": states,
                   "budget_frac": f, "exact_fits": not wide.too_wide(mrf)}
            if row["exact_fits"]:
                ex, row["exact_ms"] = _timed(lambda: solvers.exact(mrf, budget, with_front=False))
                row["exact_score"], row["certified"] = ex.score, bool(ex.info.get("certified"))
            fb, row["fallback_ms"] = _timed(lambda: wide.lagrangian(mrf, budget))
            row["fallback_score"], row["fallback_within"] = fb.score, bool(fb.latency <= budget)
            if row["exact_fits"]:  # the fallback's loss against the optimum, in score units (accuracy-loss points)
                row["fallback_gap"] = row["exact_score"] - fb.score
            rows.append(row)
            print(f"L={L:2d} groups {mrf.n:3d} clique {clique:2d} groups / {states:9.3g} states  budget {f:.1f}: "
                  + (f"exact {row['exact_ms']:8.1f} ms  " if row["exact_fits"] else "exact  (too wide)  ")
                  + f"fallback {row['fallback_ms']:7.1f} ms"
                  + (f", gap {row['fallback_gap']:.4f}" if "fallback_gap" in row else "")
                  + ("" if row["fallback_within"] else "  OVER BUDGET"), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2,4,6,8,12,16,24", help="dense block sizes (layers), comma-separated")
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args(argv)
    try:
        sizes = tuple(int(x) for x in a.sizes.split(","))
    except ValueError:
        p.error(f"--sizes {a.sizes!r}: give whole numbers separated by commas, e.g. 2,4,8")
    if not sizes or min(sizes) < 1:
        p.error(f"--sizes {a.sizes!r}: block sizes must be 1 or more")
    torch.set_num_threads(1)
    rows = run(sizes)
    if a.json:
        atomic_write_text(a.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
