"""Latency-model accuracy on this machine against the number of profiled networks.

One run: profile a held-out set (uniform, its own run), then uniform and coverage-biased training
samples; fit tables on growing prefixes of each, and the FLOPs-linear proxy beside them; judge all
on the held-out networks (reference-normalised). The coverage table at the full count is the
shipped profile (--ship). Rerunning resumes the profiling where it stopped.

    python benchmarks/latency_accuracy.py --space mobilenet_v1_small --ship hw_profiles/NAME.json
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import sys
import time
import warnings
from pathlib import Path


from widthnas.latency.backends import make_backend
from widthnas.latency.fit import FitSettings, fit_flops_proxy, fit_table
from widthnas.latency.profile import profile
from widthnas.latency.samples import load_samples
from widthnas._io import atomic_write_text
from widthnas.latency.validate import metrics, scatter_plot
from widthnas.models.space import get_space


def profile_name(device: dict, space_name: str) -> str:
    cpu = "".join(ch if ch.isalnum() else "-" for ch in device["cpu"].lower()).strip("-")
    prov = device["provider"].replace("ExecutionProvider", "").lower()
    backend = {"onnxruntime": "ort"}.get(device["backend"], device["backend"])
    return f"{cpu}-{device['cores']}c_{backend}-{prov}-{device['threads']}t-b{device['batch']}_{space_name}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v1_small")
    p.add_argument("--n", type=int, default=1000, help="training networks per sampling strategy")
    p.add_argument("--heldout", type=int, default=250)
    p.add_argument("--sizes", default="100,200,400,700,1000")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--round-ms", type=float, default=10.0)
    p.add_argument("--strategies", default="coverage,uniform")
    p.add_argument("--out", default="runs/bench_latency")
    p.add_argument("--ship", help="write the coverage table at --n here (e.g. hw_profiles/<name>.json)")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(a.space)
    be = make_backend(space)
    dev = be.device_info()
    print(f"device: {dev['cpu']}, {dev['cores']} cores, onnxruntime {dev['runtime_version']} {dev['provider']}, "
          f"{dev['threads']} thread, batch {dev['batch']}; space {space.name} {space.input_shape}")
    strategies = a.strategies.split(",")
    timing = {}
    t = time.time()
    profile(space, out / "heldout.jsonl", a.heldout, be, "uniform", seed=1000, rounds=a.rounds, round_ms=a.round_ms)
    timing["profile_heldout_s"] = time.time() - t
    for strat in strategies:
        t = time.time()
        profile(space, out / f"{strat}.jsonl", a.n, be, strat, seed=1, rounds=a.rounds, round_ms=a.round_ms)
        timing[f"profile_{strat}_s"] = time.time() - t
    for name in ["heldout"] + strategies:  # from the files' own timestamps, so resumed runs report true figures
        timing[f"profile_{name}_s"] = _profiling_seconds(out / f"{name}.jsonl")
    held = load_samples(str(out / "heldout.jsonl"), space, dev)
    rows = []
    sizes = [int(s) for s in a.sizes.split(",") if int(s) <= a.n]
    final = None
    for strat in strategies:
        allsamp = load_samples(str(out / f"{strat}.jsonl"), space, dev)
        for n in sizes:
            sub = allsamp.subset(slice(0, n))
            t = time.time()
            table = fit_table(space, sub, FitSettings(), log=lambda *_: None)
            fit_s = time.time() - t
            meas = held.norm * table.reference_ms
            m = metrics(table.predict_many(held.widths), meas)
            rows.append({**m, "predictor": f"table/{strat}", "n": n, "heldout_n": m["n"], "fit_s": fit_s})
            if strat == strategies[0]:
                proxy = fit_flops_proxy(space, sub)
                mp = metrics(proxy.predict_many(space, held.widths) * table.reference_ms / proxy.reference_ms, meas)
                rows.append({**mp, "predictor": f"flops/{strat}", "n": n, "heldout_n": mp["n"], "fit_s": 0.0})
                if n == sizes[-1]:
                    final = (table, proxy, m, mp, fit_s)
            print(f"{'table/' + strat:18s} n={n:5d}  "
                  f"±5% {m['within_5']:6.1%}  ±10% {m['within_10']:6.1%}  NRMSE {m['nrmse']:6.2%}  "
                  f"τ {m['kendall_tau']:.3f}  fit {fit_s:5.1f} s", flush=True)
    for r in rows:
        if r["predictor"].startswith("flops"):
            print(f"flops/{strategies[0]:12s} n={r['n']:5d}  ±5% {r['within_5']:6.1%}  ±10% {r['within_10']:6.1%}  "
                  f"NRMSE {r['nrmse']:6.2%}  τ {r['kendall_tau']:.3f}")
    table, proxy, m, mp, fit_s = final
    total = timing[f"profile_{strategies[0]}_s"] + fit_s
    print(f"\nshipped configuration: {strategies[0]} sampling, {sizes[-1]} networks profiled; "
          f"profiling + fitting {total / 60:.1f} min (held-out profiling {timing['profile_heldout_s'] / 60:.1f} min extra)")
    print(f"held-out (n={m['n']}, separate run): within ±10% {m['within_10']:.1%}, ±5% {m['within_5']:.1%}, "
          f"NRMSE {m['nrmse']:.2%} vs FLOPs proxy {mp['nrmse']:.2%} (ratio {m['nrmse'] / mp['nrmse']:.2f})")
    meas = held.norm * table.reference_ms
    scatter_plot(out / "latency_fit.png", meas, {
        "table": table.predict_many(held.widths),
        "FLOPs proxy": proxy.predict_many(space, held.widths) * table.reference_ms / proxy.reference_ms,
    }, f"{space.name}: held-out n={len(held)}, {sizes[-1]} profiled")
    _curve(out / "accuracy_vs_samples.png", rows)
    result = {"device": dev, "space": space.name, "timing_s": timing, "rows": rows,
              "shipped": {"n": sizes[-1], "profile_plus_fit_s": total, "table": m, "flops_proxy": mp}}
    atomic_write_text(out / "results.json", json.dumps(result, indent=1))
    if a.ship:
        table.name = Path(a.ship).stem
        table.fit["flops_proxy"] = proxy.to_dict()
        table.validation = {"table": m, "flops_proxy": mp, "heldout": len(held), "heldout_separate_run": True,
                            "command": "python benchmarks/latency_accuracy.py " + " ".join(sys.argv[1:])}
        table.save(a.ship)
        print(f"shipped profile: {a.ship}")
    print(f"results: {out / 'results.json'}, plots: {out / 'accuracy_vs_samples.png'}, {out / 'latency_fit.png'}")
    print(f"suggested name for this device: {profile_name(dev, space.name)}")
    return 0


def _profiling_seconds(path: Path) -> float:
    """Wall time from a samples file's header to its last sample (excludes pauses > 60 s between samples)."""
    from widthnas.latency.standalone_runner import read_samples

    header, recs, _ = read_samples(str(path))
    ts = [header["created"]] + [r["t"] for r in recs]
    gaps = np.diff(ts)
    return float(gaps[gaps < 60].sum())


def _curve(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for pred in sorted({r["predictor"] for r in rows}):
        rs = [r for r in rows if r["predictor"] == pred]
        axes[0].plot([r["n"] for r in rs], [100 * r["within_10"] for r in rs], "o-", label=pred)
        axes[1].plot([r["n"] for r in rs], [100 * r["nrmse"] for r in rs], "o-", label=pred)
    axes[0].set_ylabel("held-out within ±10 % (%)")
    axes[1].set_ylabel("held-out NRMSE (%)")
    for ax in axes:
        ax.set_xlabel("profiled networks")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
