"""Solver speed: medians over repeats, all in one run, all through the junction-tree solvers.

    python -m widthnas.benchmarks.solver_speed [--section chain|graph|builtin|all]
Chain section (issue 3): 14 groups x 14 widths joined in a chain (the shape of MobileNet-v1's MRF),
synthetic tables. Targets: Lagrangian budget solve <= 1 ms; exact optimum + Pareto front <= 50 ms;
sum-product marginals <= 1 ms; pgmpy's time for the same marginals shown as a ratio.
Graph section (issue 34): the MobileNet-v1 224 px MRF from its shipped profile (or --profile: any
space's), with seeded noisy unaries. Targets: Lagrangian <= 1 ms; exact + Pareto front <= 50 ms,
each printed with pass/fail. While the chain solvers of widthnas before 0.2 still import, also
their times on the same MRF in the same run and the ratios (graph / chain); then a bottleneck-block
graph (cycles).
Builtin section (issue 12): the 224 px spaces' own factor structure (--spaces, default mobilenet_v2
and resnet), MACs-proportional latencies, targets exact + front <= 100 ms, Lagrangian <= 2 ms.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from widthnas.mrf import GraphMRF, PairFactor, build_mrf
from widthnas.mrf import solvers as gs
from widthnas.benchmarks.pgmpy_ref import pgmpy_marginals

MOBILENET_V1_PROFILE = "amd-epyc-2c_ort-cpu-1t-b1_mobilenet_v1"  # shipped, hw_profiles/
TARGETS_MS = {"lagrangian": 1.0, "exact+front": 50.0}  # issue 34, on mobilenet_v1 at 224 px
CHAIN_GONE = "chain solvers removed in 0.2; ratio from the last run before the fold: see RESULTS"


def instance(seed: int, n: int = 14, k: int = 14) -> GraphMRF:
    """A chain of n groups (factors i -> i+1): unaries that favour width with noise; bilinear-ish
    latencies like a real table."""
    rng = np.random.default_rng(seed)
    ch = [tuple(range(8, 8 * k + 1, 8))] * n
    score = [np.sort(rng.normal(0, 1, k)) * rng.uniform(0.2, 1) for _ in range(n)]
    lu = [rng.uniform(0, 0.05, k) for _ in range(n)]
    c = np.arange(1, k + 1) / k
    lp = [rng.uniform(0.5, 2) * np.outer(c, c) + 0.2 * rng.uniform(0, 1) * (c[:, None] + c[None]) +
          rng.uniform(0, 0.02, (k, k)) for _ in range(n - 1)]
    return GraphMRF(ch, score, lu, [PairFactor(i, i + 1, p) for i, p in enumerate(lp)], 0.05, base=tuple([64] * n))


CLOCK = time.perf_counter  # --clock cpu: time.process_time, which a busy or throttled machine inflates less


def median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        ts.append(CLOCK() - t)
    return float(np.median(ts) * 1e3)


def mobilenet_v1(seed: int = 5, profile: str = MOBILENET_V1_PROFILE) -> GraphMRF:
    """A profile's MRF (default: the shipped MobileNet-v1 224 px one) with noisy accuracy-loss
    unaries (as in the tests)."""
    from widthnas.latency.registry import load_profile
    from widthnas.mrf.unaries import from_arrays

    table = load_profile(profile)
    rng = np.random.default_rng(seed)
    loss = [np.linspace(0.2, 0, len(c)) + rng.normal(0, 0.05, len(c)) for c in table.space.choices]
    u = from_arrays(table.space, loss, [rng.integers(1, 20, len(c)) for c in table.space.choices])
    return build_mrf(table, u)


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
    """The MRF of a registered space (or a space JSON file): its real factor structure (one pairwise factor per
    op on two free groups), latencies proportional to each op's MACs (1 ms per GMAC plus 5 us per op:
    no 224 px graph profile is shipped), unaries that favour width, with seeded noise."""
    from widthnas.models import get_space

    sp = get_space(name)
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
            return 5e-3 + op.kernel ** 2 * (1 if op.depthwise else c_in // op.conv_groups) * c_out * h * w * 1e-6
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


def builtin_section(repeats: int, names: tuple[str, ...] = ("mobilenet_v2", "resnet")) -> None:
    """Issue 12's targets on each space's own structure: exact + front <= 100 ms, Lagrangian <= 2 ms."""
    for name in names:
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
        print(f"{name}: {g.n} free groups, {len(g.pairs)} pairwise factors, treewidth {gs.plan(g).tree.width}; "
              f"medians over 3 budgets: exact+front {med[0]:.1f} ms (target <= 100; front points "
              f"{[r[3] for r in t]}, exact {[r[4] for r in t]}), exact alone {med[1]:.1f} ms, "
              f"Lagrangian {med[2]:.2f} ms (target <= 2)", flush=True)


def _chain_solvers():
    """(the chain solvers module, WidthMRF) of widthnas before 0.2; ImportError once they are gone."""
    from widthnas.mrf import solvers as chain  # removed by the fold (issue 34)
    from widthnas.mrf.model import WidthMRF

    return chain, WidthMRF


def _as_chain(g: GraphMRF, WidthMRF):
    """The same MRF as a chain WidthMRF, for the chain solvers: groups in order, one factor per
    consecutive pair (MobileNet-v1's structure)."""
    if sorted(g.pairs) != [(i, i + 1) for i in range(g.n - 1)]:
        raise ValueError(f"not a chain: pairs {sorted(g.pairs)}")
    lat = [g.pairs[(i, i + 1)][0] for i in range(g.n - 1)]
    sc = [g.pairs[(i, i + 1)][1] for i in range(g.n - 1)]
    return WidthMRF(choices=list(g.choices), score_unary=list(g.score_unary), lat_unary=list(g.lat_unary),
                    lat_pair=lat, intercept=g.intercept, base=tuple(g.base), score_pair=sc)


def _target(what: str, ms: float) -> str:
    return f"(target <= {TARGETS_MS[what]:g} ms: {'pass' if ms <= TARGETS_MS[what] else 'FAIL'})"


def graph_section(repeats: int, profile: str = MOBILENET_V1_PROFILE) -> dict:
    """The targets on a profile's MRF (default MobileNet-v1 224 px); the chain solvers' times beside
    them while those still import. Returns the medians (ms)."""
    g = mobilenet_v1(profile=profile)
    lo, hi = gs.fastest(g).latency, gs.slowest_latency(g)
    rows, budgets = [], []
    for share in (0.3, 0.5, 0.7):
        b = lo + share * (hi - lo)
        few = max(5, repeats // 3)
        t = [median_ms(lambda: gs.exact(g, b), few), median_ms(lambda: gs.exact(g, b, with_front=False), few),
             median_ms(lambda: gs.lagrangian(g, b), repeats), median_ms(lambda: gs.marginals(g, 1.0, 1.0), repeats)]
        e = gs.exact(g, b)
        assert e.latency <= b
        rows.append(t)
        budgets.append(b)
        print(f"{profile} at {share:.0%} of the range ({b:.3f} ms): exact+front {t[0]:.1f} ms ({len(e.pareto)} points, "
              f"front exact: {e.info['front_exact']}); exact alone {t[1]:.1f} ms; Lagrangian {t[2]:.3f} ms; "
              f"marginals {t[3]:.3f} ms", flush=True)
    med = np.median(np.array(rows), axis=0)
    ks = sorted({len(c) for c in g.choices})
    print(f"\n{profile}: {g.n} groups, {ks[0]}-{ks[-1]} widths, treewidth {gs.plan(g).tree.width}; medians over 3 budgets:")
    print(f"  exact optimum + front     {med[0]:8.1f} ms   {_target('exact+front', med[0])}")
    print(f"  exact optimum, no front   {med[1]:8.1f} ms")
    print(f"  Lagrangian budget solve   {med[2]:8.3f} ms   {_target('lagrangian', med[2])}")
    print(f"  marginals (sum-product)   {med[3]:8.3f} ms")
    out = {"exact+front": float(med[0]), "exact": float(med[1]), "lagrangian": float(med[2]),
           "marginals": float(med[3])}
    try:
        chain, WidthMRF = _chain_solvers()
    except ImportError:
        print(f"  before/after: {CHAIN_GONE}")
    else:
        m = _as_chain(g, WidthMRF)
        few = max(5, repeats // 3)
        crows = []
        for b in budgets:
            crows.append([median_ms(lambda: chain.exact(m, b), few), median_ms(lambda: chain.lagrangian(m, b), repeats),
                          median_ms(lambda: chain.marginals(m, 1.0, 1.0), repeats)])
            assert abs(chain.exact(m, b).score - gs.exact(g, b).score) < 1e-9, "graph and chain optima differ"
        cm = np.median(np.array(crows), axis=0)
        print(f"  before/after, chain solvers in this run: exact+front {cm[0]:.1f} ms -> {med[0]:.1f} ms = "
              f"{med[0] / cm[0]:.2f}x chain; Lagrangian {cm[1]:.3f} ms -> {med[2]:.3f} ms = {med[2] / cm[1]:.2f}x chain; "
              f"marginals {cm[2]:.3f} ms -> {med[3]:.3f} ms = {med[3] / cm[2]:.2f}x chain")
        out["chain"] = {"exact+front": float(cm[0]), "lagrangian": float(cm[1]), "marginals": float(cm[2])}
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
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--section", choices=("all", "chain", "graph", "builtin"), default="all")
    p.add_argument("--profile", default=MOBILENET_V1_PROFILE,
                   help="the graph section's profile: a shipped profile's name or a file (default: MobileNet-v1 224 px)")
    p.add_argument("--spaces", default="mobilenet_v2,resnet",
                   help="the builtin section's spaces: registered names or space JSON files, comma-separated")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time, for a shared machine (all timings in one run use the same clock)")
    a = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    warnings.simplefilter("ignore")
    spaces = tuple(x.strip() for x in a.spaces.split(",") if x.strip())
    if a.section == "graph":
        graph_section(a.repeats, a.profile)
        return 0
    if a.section == "builtin":
        builtin_section(a.repeats, spaces)
        return 0
    rows = []
    for seed in range(a.instances):
        m = instance(seed)
        lo = gs.fastest(m).latency
        budget = lo + 0.5 * (gs.slowest_latency(m) - lo)
        t_lag = median_ms(lambda: gs.lagrangian(m, budget), a.repeats)
        t_ex = median_ms(lambda: gs.exact(m, budget), max(5, a.repeats // 3))
        t_fb = median_ms(lambda: gs.marginals(m, 1.0, 1.0), a.repeats)
        t_pg = median_ms(lambda: pgmpy_marginals(m, 1.0, 1.0), 3)
        e, l = gs.exact(m, budget), gs.lagrangian(m, budget)
        err = max(float(np.abs(x - y).max())
                  for x, y in zip(gs.marginals(m, 1.0, 1.0), pgmpy_marginals(m, 1.0, 1.0)))
        rows.append((t_lag, t_ex, t_fb, t_pg, e.score - l.score, len(e.pareto), err))
        print(f"instance {seed}: lagrangian {t_lag:.3f} ms, exact+front {t_ex:.1f} ms ({len(e.pareto)} front points, "
              f"{e.info['proof']}), marginals {t_fb:.3f} ms, pgmpy marginals {t_pg:.1f} ms (max diff {err:.1e}); "
              f"exact - lagrangian score {e.score - l.score:.4f}", flush=True)
    r = np.array(rows)
    med = np.median(r, axis=0)
    print(f"\n14 groups x 14 widths in a chain, medians over {a.instances} instances:")
    print(f"  Lagrangian budget solve   {med[0]:8.3f} ms   (target <= 1 ms)")
    print(f"  exact optimum + front     {med[1]:8.1f} ms   (target <= 50 ms)")
    print(f"  sum-product marginals     {med[2]:8.3f} ms   (target <= 1 ms)")
    print(f"  pgmpy marginals (VE)      {med[3]:8.1f} ms   = {med[3] / med[2]:.0f}x ours")
    gaps = r[:, 4][r[:, 4] > 1e-9]
    print(f"  Lagrangian below exact in {len(gaps)} of {len(r)} instances"
          + (f", by {np.mean(gaps):.3f} score on average (max {np.max(gaps):.3f})" if len(gaps) else ""))
    if a.section == "all":
        print()
        graph_section(a.repeats, a.profile)
        print()
        builtin_section(a.repeats, spaces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
