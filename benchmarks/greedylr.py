"""GreedyLR against cosine: the same network retrained with each schedule on paired seeds.

    OMP_NUM_THREADS=1 python -m widthnas.benchmarks.greedylr --limit 4000 --epochs 3 --seeds 3 --mult 0.5
Same seed = same initialisation and data order for both schedules. Prints final test accuracy per
seed, the paired difference (greedy - cosine) with its 95 % t-interval, epochs to reach --target
validation accuracy, wall time, and ratios against the cosine baseline; --out writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from widthnas._io import atomic_write_text
from widthnas.benchmarks.stats import paired_diff
from widthnas.models import build_network, get_space
from widthnas.nas.data import load_dataset, split
from widthnas.nas.evaluate import accuracy
from widthnas.nas.finetune import train_plain
from widthnas.nas.greedylr import GreedyOptions


def epochs_to(history: list[dict], target: float) -> int | None:
    return next((h["epoch"] for h in history if h["val_acc"] >= target), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v1_small", help="a registered space or a space JSON file")
    p.add_argument("--mult", type=float, default=0.5, help="uniform width multiplier of the retrained network")
    p.add_argument("--limit", type=int, default=4000, help="training images")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--greedy", default="", help="GreedyLR options (see `widthnas train --help`)")
    p.add_argument("--target", type=float, default=0.75, help="validation accuracy for 'epochs to target'")
    p.add_argument("--out", help="JSON results")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    ds = load_dataset("fashion_mnist")
    space = get_space(a.space)
    if ds.shape != space.input_shape:  # the same ops at Fashion-MNIST's input
        space = space.with_input(ds.shape)
    widths = space.uniform(a.mult)
    sp = split(ds, 0.1, 0, a.limit)
    opts = GreedyOptions.parse(a.greedy)
    rows = []
    for seed in range(a.seeds):
        for schedule in ("cosine", "greedy"):
            torch.manual_seed(seed)
            net = build_network(space, widths)
            t0 = time.time()
            hist = train_plain(net, sp, a.epochs, lr=a.lr, seed=seed, schedule=schedule, greedy=opts,
                               log=lambda *_: None, desc=schedule, device="cpu")
            secs = time.time() - t0
            test = accuracy(net, *sp.test, sp.mean, sp.std)[0]
            rows.append({"seed": seed, "schedule": schedule, "test_acc": test, "seconds": secs,
                         "epochs_to_target": epochs_to(hist, a.target), "val_acc": [h["val_acc"] for h in hist],
                         "lr": [h["lr"] for h in hist], "actions": [h.get("lr_action") for h in hist]})
            print(f"seed {seed} {schedule:6s}: test acc {test:.4f}, val acc by epoch "
                  f"{[round(h['val_acc'], 4) for h in hist]}, epochs to {a.target:.0%} "
                  f"{rows[-1]['epochs_to_target']}, {secs:.0f} s", flush=True)
    by = {s: [r for r in rows if r["schedule"] == s] for s in ("cosine", "greedy")}
    acc = {s: [r["test_acc"] for r in by[s]] for s in by}
    d = paired_diff(acc["greedy"], acc["cosine"])
    ett = {s: [r["epochs_to_target"] for r in by[s]] for s in by}
    secs = {s: float(np.mean([r["seconds"] for r in by[s]])) for s in by}

    def ett_mean(v):  # never reached counts as epochs + 1 (a lower bound), flagged
        return float(np.mean([x if x is not None else a.epochs + 1 for x in v]))

    print(f"\n{space.name} x{a.mult} ({widths}), {a.limit} training images, {a.epochs} epochs, lr {a.lr}, "
          f"{a.seeds} paired seeds, greedy options {opts}")
    print("| schedule | test acc per seed | mean | epochs to {:.0%} val (per seed) | s per run |".format(a.target))
    print("|---|---|---|---|---|")
    for s in by:
        print(f"| {s} | {', '.join(f'{v:.4f}' for v in acc[s])} | {np.mean(acc[s]):.4f} | "
              f"{', '.join('never' if v is None else str(v) for v in ett[s])} | {secs[s]:.0f} |")
    print(f"paired difference greedy - cosine: {d['diff']:+.4f} (sd {d['sd']:.4f}), 95 % t-interval "
          f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
    print(f"ratios greedy / cosine: test accuracy {np.mean(acc['greedy']) / np.mean(acc['cosine']):.3f}, "
          f"epochs to target {ett_mean(ett['greedy']) / ett_mean(ett['cosine']):.2f} (never = {a.epochs + 1}), "
          f"wall time {secs['greedy'] / secs['cosine']:.2f}")
    if a.out:
        atomic_write_text(a.out, json.dumps({"args": vars(a), "rows": rows, "paired": d}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
