"""Solver speed on 14 layers x 14 widths, medians over repeats, all in one run.

    python benchmarks/solver_speed.py [--section chain|graph|all]
Targets (issue 3): Lagrangian budget solve <= 1 ms; exact optimum + Pareto front <= 50 ms;
forward-backward marginals <= 1 ms; pgmpy's time for the same marginals shown as a ratio.
Graph section (issue 12): the MobileNet-v1 224 px MRF (shipped profile, seeded noisy unaries) solved
through the junction-tree solvers, as ratios against the chain solvers timed in the same run;
targets exact + front <= 100 ms, Lagrangian <= 2 ms. Then a bottleneck-block graph (cycles).
Builtin section: the mobilenet_v2 and resnet 224 px spaces' own factor structure, MACs-proportional
latencies (no 224 px graph profile is shipped), against the same targets.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np


from widthnas.mrf import GraphMRF, PairFactor, WidthMRF, exact, lagrangian, marginals
from widthnas.mrf import graph_solvers as gs
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


CLOCK = time.perf_counter  # --clock cpu: time.process_time, which a busy or throttled machine inflates less


def median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        ts.append(CLOCK() - t)
    return float(np.median(ts) * 1e3)


def mobilenet_v1(seed: int = 5) -> WidthMRF:
    """The shipped MobileNet-v1 224 px profile with noisy accuracy-loss unaries (as in the tests)."""
    from widthnas.latency.registry import PROFILE_DIR
    from widthnas.latency.table import LatencyTable
    from widthnas.mrf.unaries import from_arrays

    table = LatencyTable.load(PROFILE_DIR / "amd-epyc-2c_ort-cpu-1t-b1_mobilenet_v1.json")
    rng = np.random.default_rng(seed)
    loss = [np.linspace(0.2, 0, len(c)) + rng.normal(0, 0.05, len(c)) for c in table.space.choices]
    u = from_arrays(table.space, loss, [rng.integers(1, 20, len(c)) for c in table.space.choices])
    return WidthMRF.from_table(table, u)


def bottleneck_graph(seed: int, stages: tuple[int, ...] = (2, 2), k: int = 14) -> GraphMRF:
    """A residual group per stage tying its bottleneck blocks (S -> a -> b -> S): cliques of 3 groups."""
    rng = np.random.default_rng(seed)
    c = np.arange(1, k + 1) / k
    ch, su, lu, f = [], [], [], []

    def group() -> int:
        ch.append(tuple(range(8, 8 * k + 1, 8)))
        su.append(np.sort(rng.normal(0, 0.1, k)))
        lu.append(rng.uniform(0, 0.01, k))
        return len(ch) - 1

    def conv(i: int, j: int, scale: float = 1.0) -> None:  # (k, k) ms, bilinear in the widths
        f.append(PairFactor(i, j, scale * rng.uniform(0.02, 0.1) * np.outer(c, c) + rng.uniform(0, 0.002, (k, k))))

    prev = None
    for blocks in stages:
        s = group()
        if prev is not None:
            conv(prev, s)
        for _ in range(blocks):
            a, b = group(), group()
            conv(s, a), conv(a, b, 3.0), conv(b, s)
        prev = s
    return GraphMRF(ch, su, lu, f, 0.1)


def builtin_graph(name: str, seed: int = 0) -> GraphMRF:
    """The MRF of a built-in 224 px graph space: its real factor structure (one pairwise factor per
    op on two free groups), latencies proportional to each op's MACs (1 ms per GMAC plus 5 us per op:
    no 224 px graph profile is shipped), unaries that favour width, with seeded noise."""
    from widthnas.models.graph_families import get_graph_space

    sp = get_graph_space(name)
    fs = sp.factor_structure()
    free = [g.name for g in sp.free_groups]
    pos = {n: i for i, n in enumerate(free)}
    fixed_width = {g.name: g.choices[0] for g in sp.groups if g.fixed}
    ops = {op.name: op for op in sp.graph.ops}
    sizes = sp.graph.sizes
    rng = np.random.default_rng(seed)

    def op_ms(f, c_in: float, c_out: float) -> float:
        op = ops[f.op]
        if op.kind == "conv":
            h, w = sizes[op.name]
            return 5e-3 + op.kernel ** 2 * (1 if op.depthwise else c_in) * c_out * h * w * 1e-6
        if op.kind == "linear":
            return 5e-3 + c_in * c_out * 1e-6
        h, w = f.signature.resolution
        return 5e-3 + c_in * h * w * 1e-8  # add, pooling: memory-bound, per input element

    choices = [np.array(sp.free_groups[i].choices, float) for i in range(len(free))]
    lat_u = [np.zeros(len(c)) for c in choices]
    factors, intercept = [], 0.0
    for f in fs.factors:
        ci, co = f.in_group, f.out_group
        wi = choices[pos[ci]] if ci in pos else np.array([fixed_width[ci]], float)
        wo = choices[pos[co]] if co in pos else np.array([fixed_width[co]], float)
        tab = np.array([[op_ms(f, a, b) for b in wo] for a in wi])  # (K_in, K_out) ms
        if ci in pos and co in pos and ci != co:
            factors.append(PairFactor(pos[ci], pos[co], tab))
        elif ci in pos and co in pos:
            lat_u[pos[ci]] += np.diag(tab)
        elif ci in pos:
            lat_u[pos[ci]] += tab[:, 0]
        elif co in pos:
            lat_u[pos[co]] += tab[0, :]
        else:
            intercept += float(tab[0, 0])
    score = [np.sort(rng.normal(0, 1, len(c))) * 0.05 + rng.normal(0, 0.02, len(c)) for c in choices]
    return GraphMRF([tuple(map(int, c)) for c in choices], score, lat_u, factors, intercept, names=free)


def builtin_section(repeats: int) -> None:
    """Issue 12's targets on each built-in 224 px graph space: exact + front <= 100 ms, Lagrangian <= 2 ms."""
    for name in ("mobilenet_v2", "resnet"):
        g = builtin_graph(name)
        lo, hi = gs.fastest(g).latency, gs.slowest_latency(g)
        t = []
        for share in (0.3, 0.5, 0.7):
            b = lo + share * (hi - lo)
            e = gs.exact(g, b)
            assert e.latency <= b
            t.append((median_ms(lambda: gs.exact(g, b), 3), median_ms(lambda: gs.exact(g, b, with_front=False), 3),
                      median_ms(lambda: gs.lagrangian(g, b), max(5, repeats // 3)), len(e.pareto),
                      bool(e.info.get("front_exact", True))))
        med = np.median(np.array([r[:3] for r in t]), axis=0)
        print(f"{name} 224 px: {g.n} free groups, {len(g.pairs)} pairwise factors, treewidth {gs.plan(g).tree.width}; "
              f"medians over 3 budgets: exact+front {med[0]:.1f} ms (target <= 100; front points "
              f"{[r[3] for r in t]}, exact {[r[4] for r in t]}), exact alone {med[1]:.1f} ms, "
              f"Lagrangian {med[2]:.2f} ms (target <= 2)", flush=True)


def graph_section(repeats: int) -> None:
    m = mobilenet_v1()
    g = GraphMRF.from_chain(m)
    lo, hi = fastest(m).latency, slowest_latency(m)
    rows = []
    for share in (0.3, 0.5, 0.7):
        b = lo + share * (hi - lo)
        few = max(5, repeats // 3)
        t = [median_ms(lambda: exact(m, b), few), median_ms(lambda: gs.exact(g, b), few),
             median_ms(lambda: gs.exact(g, b, with_front=False), few),
             median_ms(lambda: lagrangian(m, b), repeats), median_ms(lambda: gs.lagrangian(g, b), repeats),
             median_ms(lambda: marginals(m, 1.0, 1.0), repeats), median_ms(lambda: gs.marginals(g, 1.0, 1.0), repeats)]
        ce, ge = exact(m, b), gs.exact(g, b)
        assert ge.latency <= b and abs(ge.score - ce.score) < 1e-9, "graph and chain optima differ"
        rows.append(t)
        print(f"mobilenet_v1 224px at {share:.0%} of the range ({b:.3f} ms): exact+front chain {t[0]:.1f} ms "
              f"({len(ce.pareto)} points, binned), graph {t[1]:.1f} ms ({len(ge.pareto)} points, exact); "
              f"graph exact alone {t[2]:.1f} ms; lagrangian chain {t[3]:.3f} ms, graph {t[4]:.3f} ms; "
              f"marginals chain {t[5]:.3f} ms, graph {t[6]:.3f} ms", flush=True)
    med = np.median(np.array(rows), axis=0)
    print(f"\nMobileNet-v1 224 px (14 layers, 6-14 widths) as a graph, medians over 3 budgets:")
    print(f"  exact optimum + front     {med[1]:8.1f} ms   = {med[1] / med[0]:.2f}x chain  (target <= 100 ms)")
    print(f"  exact optimum, no front   {med[2]:8.1f} ms   = {med[2] / med[0]:.2f}x chain exact+front")
    print(f"  Lagrangian budget solve   {med[4]:8.3f} ms   = {med[4] / med[3]:.2f}x chain  (target <= 2 ms)")
    print(f"  marginals (sum-product)   {med[6]:8.3f} ms   = {med[6] / med[5]:.2f}x chain forward-backward")
    bg = bottleneck_graph(0)
    lo, hi = gs.fastest(bg).latency, gs.slowest_latency(bg)
    b = lo + 0.5 * (hi - lo)
    e = gs.exact(bg, b)
    t_ex = median_ms(lambda: gs.exact(bg, b), 3)
    t_nf = median_ms(lambda: gs.exact(bg, b, with_front=False), 3)
    t_lag = median_ms(lambda: gs.lagrangian(bg, b), max(5, repeats // 3))
    print(f"\nbottleneck graph, 2 stages x 2 blocks, {bg.n} groups x 14 widths, treewidth {gs.plan(bg).tree.width}: "
          f"exact+front {t_ex:.1f} ms ({len(e.pareto)} points, front exact: {e.info['front_exact']}), "
          f"exact alone {t_nf:.1f} ms, Lagrangian {t_lag:.2f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--section", choices=("all", "chain", "graph", "builtin"), default="all")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time, for a shared machine (all timings in one run use the same clock)")
    a = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    warnings.simplefilter("ignore")
    if a.section == "graph":
        graph_section(a.repeats)
        return 0
    if a.section == "builtin":
        builtin_section(a.repeats)
        return 0
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
    if a.section == "all":
        print()
        graph_section(a.repeats)
        print()
        builtin_section(a.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
