"""Headroom: can this testbed show that some network beats the uniform one at equal latency?

    python -m widthnas.benchmarks.headroom --budget 15 --configs 12 --seeds 5 --limit 20000 --epochs 4
    python -m widthnas.benchmarks.headroom --curve 0.25,0.35,0.5,0.7,1.0 --seeds 2      # uniform accuracy curve

Random configurations whose *measured* latency (exported ONNX, onnxruntime, reference-normalised)
lies within ±2 % of the budget, drawn from the max-entropy distribution p(x) ∝ exp(-γ·latency(x))
with γ set so that the samples centre on the budget, and the uniform network at the budget, are
all retrained from scratch with the same paired seeds. Reported: each configuration's paired
difference against uniform with its 95 % t-interval, the spread between configurations, and the
best one (its interval also Bonferroni-widened, since it is the best of several). If nothing
beats uniform beyond noise, no search can be judged on this testbed.
Any registered or traced space (--space, default mobilenet_v1_small) with a profile for it.
Resumable: retrainings are kept in --out.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from widthnas._io import atomic_write_text
from widthnas.benchmarks.retrain_pool import Protocol, retrain_many
from widthnas.benchmarks.stats import paired_diff
from widthnas.latency.backends import OrtBackend
from widthnas.latency.registry import find_profile, load_profile
from widthnas.models import build_network, get_space
from widthnas.mrf import GraphMRF, PairFactor, sample_configs, uniform
from widthnas.nas.export import export_onnx, measure_exported


def latency_mrf(table) -> GraphMRF:
    """The latency model with flat scores: sampling it is sampling architectures, not searching."""
    free = table.space.free_groups
    terms = table.mrf_terms()
    return GraphMRF([g.choices for g in free], [np.zeros(len(g.choices)) for g in free], terms.unary,
                    [PairFactor(i, j, ms) for i, j, ms in terms.pairs], terms.intercept,
                    names=[g.name for g in free], base=tuple(g.base for g in free),
                    space_fingerprint=table.space.fingerprint)


def sample_near(mrf: GraphMRF, budget_ms: float, n: int, tol: float, rng: np.random.Generator) -> list[list[int]]:
    """n distinct configurations with predicted latency within ±tol of the budget."""
    lo, hi = 1e-3, 1e4  # γ (1/ms): bisection so that the mean sampled latency is the budget
    for _ in range(40):
        g = np.sqrt(lo * hi)
        lat = np.mean(mrf.evaluate(sample_configs(mrf, g, 1.0, 400, rng))[0])
        lo, hi = (g, hi) if lat > budget_ms else (lo, g)
    out: dict[tuple, None] = {}
    for _ in range(50):
        xs = sample_configs(mrf, g, 1.0, 2000, rng)
        for x, ms in zip(xs, mrf.evaluate(xs)[0]):
            if abs(ms / budget_ms - 1) <= tol:
                out[tuple(mrf.widths(x))] = None
        if len(out) >= n:
            break
    keys = list(out)
    return [list(keys[i]) for i in rng.permutation(len(keys))[:n]]


def measure(widths, space, table, path: Path) -> float:
    export_onnx(build_network(space, widths), space, path)
    return measure_exported(path, table)["normalised_ms"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=15.0, help="%% of the widest network's predicted latency")
    p.add_argument("--configs", type=int, default=12)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--limit", type=int, default=20000, help="training images (0: the whole split)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--curve", help="instead: retrain these uniform multipliers (comma-separated)")
    p.add_argument("--space", default="mobilenet_v1_small", help="a registered space or a space JSON file")
    p.add_argument("--profile", help="default: the shipped profile of --space matching this machine")
    p.add_argument("--out", default="runs/headroom")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: report the finished retrainings (configurations with >= 3 paired seeds)")
    a = p.parse_args()
    for name in ("configs", "seeds", "epochs", "workers"):
        if getattr(a, name) < 1 or (name == "seeds" and a.seeds < 2):
            raise SystemExit(f"--{name} {getattr(a, name)}: give a positive count (seeds >= 2 for an interval)")
    if not 0 < a.budget <= 100:
        raise SystemExit(f"--budget {a.budget}: give a percentage of the widest network in (0, 100]")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    space = get_space(a.space)
    prof = a.profile or find_profile(space, OrtBackend(space).device_info())[0]
    if prof is None:
        raise SystemExit("no shipped profile matches this machine: profile it and pass --profile")
    table = load_profile(prof)
    widest = table.predict(space.max_widths)
    proto = Protocol(space=a.space, limit=a.limit or None, epochs=a.epochs)
    mrf = latency_mrf(table)

    if a.curve:
        nets = {f"x{m}": space.uniform(float(m)) for m in a.curve.split(",")}
        res = retrain_many(out, proto, [(w, s) for w in nets.values() for s in range(a.seeds)], a.workers)
        rows = []
        for name, w in nets.items():
            acc = [res[(tuple(w), s)]["test_acc"] for s in range(a.seeds)]
            rows.append({"network": name, "predicted_pct": 100 * table.predict(w) / widest,
                         "macs_M": space.macs(w) / 1e6, "acc_mean": float(np.mean(acc)), "acc_std": float(np.std(acc, ddof=1)),
                         "accs": " ".join(f"{x:.4f}" for x in acc)})
            print(f"{name:6s} {rows[-1]['predicted_pct']:5.1f} % latency {rows[-1]['macs_M']:6.2f} M MACs  "
                  f"acc {rows[-1]['acc_mean']:.4f} ± {rows[-1]['acc_std']:.4f}")
        _write_csv(out / "curve.csv", rows)
        return 0

    budget = a.budget / 100 * widest
    state_path = out / f"configs_{a.budget:g}.json"
    if state_path.exists():  # the configurations and their measured latency, fixed for a resumed run
        state = json.loads(state_path.read_text())
    else:
        rng = np.random.default_rng(a.seed)
        cands = sample_near(mrf, budget, 4 * a.configs, 0.015, rng)
        u = uniform(mrf, budget).widths
        state = {"budget_ms": budget, "uniform": {"widths": u, "measured_ms": measure(u, space, table, out / "u.onnx")},
                 "configs": []}
        for w in cands:
            ms = measure(w, space, table, out / "c.onnx")
            if abs(ms / budget - 1) <= 0.02:
                state["configs"].append({"widths": w, "measured_ms": ms, "predicted_ms": table.predict(w)})
            if len(state["configs"]) == a.configs:
                break
        atomic_write_text(state_path, json.dumps(state, indent=1))
    print(f"budget {a.budget:g} % = {budget:.4f} ms; uniform {state['uniform']['widths']} measured "
          f"{state['uniform']['measured_ms']:.4f} ms; {len(state['configs'])} random configurations within ±2 %")
    nets = [state["uniform"]["widths"]] + [c["widths"] for c in state["configs"]]
    res = retrain_many(out, proto, [(w, s) for w in nets for s in range(a.seeds)], a.workers, done_only=a.report_only)
    acc = {tuple(w): {s: res[(tuple(w), s)]["test_acc"] for s in range(a.seeds) if (tuple(w), s) in res} for w in nets}
    u_acc = acc[tuple(nets[0])]
    ua = list(u_acc.values())
    rows = [{"network": "uniform", "seeds": len(ua), "measured_ms": state["uniform"]["measured_ms"],
             "acc_mean": float(np.mean(ua)), "acc_std": float(np.std(ua, ddof=1)), "diff_vs_uniform": 0.0,
             "ci_low": 0.0, "ci_high": 0.0, "widths": " ".join(map(str, nets[0]))}]
    paired = {}
    for k, c in enumerate(state["configs"]):
        common = sorted(set(acc[tuple(c["widths"])]) & set(u_acc))  # paired seeds: the same seed for both
        if len(common) < 3:
            print(f"random{k}: {len(common)} paired seeds finished; left out (needs >= 3)")
            continue
        ca, ub = [acc[tuple(c["widths"])][s] for s in common], [u_acc[s] for s in common]
        paired[k] = (ca, ub)
        d = paired_diff(ca, ub)
        rows.append({"network": f"random{k}", "seeds": len(common), "measured_ms": c["measured_ms"],
                     "acc_mean": float(np.mean(ca)), "acc_std": float(np.std(ca, ddof=1)), "diff_vs_uniform": d["diff"],
                     "ci_low": d["ci_low"], "ci_high": d["ci_high"], "widths": " ".join(map(str, c["widths"]))})
    for r in rows:
        print(f"{r['network']:9s} {r['measured_ms']:.4f} ms  acc {100 * r['acc_mean']:.2f} ± {100 * r['acc_std']:.2f}  "
              f"vs uniform {100 * r['diff_vs_uniform']:+.2f} [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]  {r['widths']}")
    best = max(rows[1:], key=lambda r: r["diff_vs_uniform"])
    bon = paired_diff(*paired[int(best["network"][6:])], comparisons=len(rows) - 1)
    diffs = np.array([r["diff_vs_uniform"] for r in rows[1:]])
    means = np.array([r["acc_mean"] for r in rows[1:]])
    summary = {"budget_pct": a.budget, "budget_ms": budget, "protocol": proto.__dict__,
               "paired_seeds": {r["network"]: r["seeds"] for r in rows}, "configs_reported": len(rows) - 1,
               "mean_diff_of_random_configs": float(diffs.mean()),
               "sd_of_paired_differences": float(np.mean([np.std(np.subtract(*paired[k]), ddof=1) for k in paired])),
               "spread_of_config_means_sd": float(means.std(ddof=1)), "range": [float(means.min()), float(means.max())],
               "best": best["network"], "best_diff": best["diff_vs_uniform"], "best_ci": [best["ci_low"], best["ci_high"]],
               "best_ci_bonferroni": [bon["ci_low"], bon["ci_high"]],
               "beats_uniform": sum(r["ci_low"] > 0 for r in rows[1:]),
               "below_uniform": sum(r["ci_high"] < 0 for r in rows[1:]), "minutes": (time.time() - t0) / 60}
    print(json.dumps(summary, indent=1))
    _write_csv(out / f"headroom_{a.budget:g}.csv", rows)
    atomic_write_text(out / f"headroom_{a.budget:g}.json", json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


if __name__ == "__main__":
    raise SystemExit(main())
