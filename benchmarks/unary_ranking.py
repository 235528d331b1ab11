"""Does the MRF rank networks the way the supernet does? Kendall τ between the MRF's predicted score
and the supernet's measured accuracy on configurations that no unary estimate has seen.

    python -m widthnas.benchmarks.unary_ranking --run runs/search_quality_decisive/ows --budgets 10,14,20

For each unary estimate (training-time means; measured after training from random configurations
on the first 512 validation images, 300 or 1000 of them; one free group at a time against the widest
network) and each smoothness-prior weight, the predicted score of every test configuration is
compared with the supernet's accuracy (BN recalibrated) on the *other* validation images:
200 configurations drawn uniformly over the space, and 200 near each budget (predicted latency
within ±3 %), where ranking is hard and is what a search needs.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from widthnas._io import atomic_write_text
from widthnas.benchmarks.headroom import latency_mrf, sample_near
from widthnas.latency.backends import OrtBackend
from widthnas.latency.registry import find_profile, load_profile
from widthnas.mrf import build_mrf
from widthnas.mrf.smoothness import with_smoothness
from widthnas.mrf.unaries import Unaries
from widthnas.nas.selection import holdout_split, smoothness_weights, supernet_accuracy, unary_image_count
from widthnas.nas.train import load_run
from widthnas.nas.unary_eval import measure_unaries

RATIOS = (0.0, 0.1, 0.3, 1.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a supernet training directory")
    p.add_argument("--profile")
    p.add_argument("--budgets", default="10,14,20", help="%% of the widest network")
    p.add_argument("--n", type=int, default=200, help="test configurations per set")
    p.add_argument("--out", help="default: <run>/unary_ranking")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--measured", help="reuse these measured unaries (1000 random configurations) instead of "
                                      "measuring them again, e.g. the search-quality run's unaries_ows_measured.json")
    p.add_argument("--images", type=int, default=0, help="judge on only this many held-out images (0: all)")
    p.add_argument("--with-300", action="store_true", help="also 300 random configurations (the quick mode's count)")
    a = p.parse_args()
    if a.n < 10:
        raise SystemExit(f"--n {a.n}: a rank correlation needs at least 10 configurations")
    t0 = time.time()
    cfg, space, sup, sp = load_run(a.run)
    prof = a.profile or find_profile(space, OrtBackend(space).device_info())[0]
    if prof is None:
        raise SystemExit("no shipped profile matches this machine: pass --profile")
    table = load_profile(prof)
    out = Path(a.out or Path(a.run) / "unary_ranking")
    out.mkdir(parents=True, exist_ok=True)
    k = unary_image_count(sp)
    held = holdout_split(sp, k)
    if a.images:
        held = (held[0][:a.images], held[1][:a.images])
    print(f"{a.run}: unaries on the first {k} validation images, supernet accuracy on the other {len(held[1])}")

    variants = {"training-time": Unaries.load(Path(a.run) / "unaries.json")}
    todo = [("measured, 1000 random", dict(n_configs=1000)), ("measured, one at a time", dict(design="one-at-a-time"))]
    if a.with_300:
        todo.insert(0, ("measured, 300 random", dict(n_configs=300)))
    if a.measured:
        variants["measured, 1000 random"] = Unaries.load(a.measured)
        todo = [t for t in todo if t[0] != "measured, 1000 random"]
    for name, kw in todo:
        path = out / f"unaries_{name.replace(', ', '_').replace(' ', '-')}.json"
        if path.exists():
            variants[name] = Unaries.load(path)
        else:
            variants[name] = measure_unaries(sup, sp, batch=k, seed=0, log=print, **kw)
            variants[name].save(path)

    rng = np.random.default_rng(a.seed)
    lat = latency_mrf(table)
    widest = table.predict(space.max_widths)
    sets = {"uniform over the space": [space.widths_from_indices([rng.integers(0, len(c)) for c in space.choices])
                                       for _ in range(a.n)]}
    for b in a.budgets.split(","):
        sets[f"near {b} %"] = sample_near(lat, float(b) / 100 * widest, a.n, 0.03, rng)
    acc_path = out / f"accuracies_{len(held[1])}.json"
    accs = json.loads(acc_path.read_text()) if acc_path.exists() else {}
    for name, configs in sets.items():
        for w in configs:
            key = " ".join(map(str, w))
            if key not in accs:
                accs[key] = supernet_accuracy(sup, w, sp, held, calib_images=512)[0]
        atomic_write_text(acc_path, json.dumps(accs))
        print(f"{name}: {len(configs)} configurations measured ({time.time() - t0:.0f} s)")

    rows = []
    for vname, u in variants.items():
        mrf = build_mrf(table, u)
        for r, wgt in zip(RATIOS, smoothness_weights(mrf, RATIOS)):
            m = with_smoothness(mrf, wgt)
            row = {"unaries": vname, "smoothness": r}
            for sname, configs in sets.items():
                pred = [m.score(m.indices(w)) for w in configs]
                meas = [accs[" ".join(map(str, w))] for w in configs]
                row[sname] = float(kendalltau(pred, meas).statistic)
            rows.append(row)
            print(f"{vname:26s} smoothness {r:<4g} " + "  ".join(f"{s}: τ {row[s]:+.3f}" for s in sets))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "kendall_tau.csv", buf.getvalue())
    print(f"{out / 'kendall_tau.csv'} ({(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
