"""Does the search-quality ordering hold when retraining is long enough for capacity to matter?

    python -m widthnas.benchmarks.capacity_check --results runs/search_quality/search_quality.json \
        --methods uniform:35,ows:35,uniform:70 --limit 20000 --epochs 5 --seeds 2
Retrains the named (method:budget%) choices from a search_quality run with a longer protocol and
prints test accuracy mean ± std; a 70 % network that is not better than a 35 % one means the
protocol cannot tell capacity apart.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch


from widthnas.models import build_network, get_space
from widthnas.nas.data import load_dataset, split
from widthnas.nas.evaluate import accuracy
from widthnas.nas.finetune import train_plain


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="runs/search_quality/search_quality.json")
    p.add_argument("--methods", default="uniform:35,ows:35,uniform:70")
    p.add_argument("--space", default="mobilenet_v1_small", help="the search_quality run's --space (a registered "
                   "space or a space JSON file)")
    p.add_argument("--limit", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=2)
    a = p.parse_args()
    warnings.simplefilter("ignore")
    rows = json.loads(Path(a.results).read_text())["rows"]
    ds = load_dataset("fashion_mnist")
    space = get_space(a.space)
    if ds.shape != space.input_shape:
        space = space.with_input(ds.shape)
    space = space.with_dense_choices(8)  # search_quality's uniform8 networks lie off the search grid
    sp = split(ds, 0.1, 0, a.limit)
    print(f"retraining {a.epochs} epochs on {len(sp.train[1])} images, {a.seeds} seeds, test on {len(sp.test[1])}")
    for spec in a.methods.split(","):
        method, pct = spec.split(":")
        # rows name their budget "35%" (budget_pct 35 in runs before the budget column)
        r = next(x for x in rows if x["method"] == method
                 and (x.get("budget") == f"{float(pct):g}%" or x.get("budget_pct") == int(pct)))
        widths = [int(w) for w in r["widths"].split()] if isinstance(r["widths"], str) else r["widths"]
        accs, t0 = [], time.time()
        for s in range(a.seeds):
            torch.manual_seed(2000 + s)
            net = build_network(space, widths)
            train_plain(net, sp, a.epochs, lr=0.1, seed=2000 + s, log=lambda *_: None)
            accs.append(accuracy(net, *sp.test, sp.mean, sp.std)[0])
        print(f"{method:10s} {pct}%  measured {r['measured_ms']:.4f} ms  test acc {np.mean(accs):.4f} ± {np.std(accs):.4f} "
              f"({', '.join(f'{x:.4f}' for x in accs)})  [quick protocol: {r['acc_mean']:.4f}]  {time.time() - t0:.0f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
