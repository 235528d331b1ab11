"""Positive-congruent training: the searched network fine-tuned with and without focal distillation
toward a previous (deployed) model; negative flip rate and accuracy over paired seeds.

    OMP_NUM_THREADS=1 python -m widthnas.benchmarks.negative_flips --limit 4000 --epochs 3 --seeds 3
The previous model is the uniform --old-mult network trained from scratch (exported to ONNX, as a
deployed model would be). The searched network is the exact budgeted optimum of a supernet trained
here (or the one of --run, a `widthnas run` directory). Same seed = same data order for both arms;
both start from the supernet's weights. Prints per-seed NFR / accuracy, means, and the paired
differences (with - without) with 95 % t-intervals; --out writes JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from widthnas._io import atomic_write_text
from widthnas.benchmarks.stats import paired_diff
from widthnas.models import SlimmableGraphNet, build_network, get_space
from widthnas.nas.data import load_dataset, normalize, split
from widthnas.nas.evaluate import calibrated_network
from widthnas.nas.export import export_onnx, write_sidecar
from widthnas.nas.finetune import train_plain
from widthnas.nas.flips import congruent_loss, flip_report, load_previous, torch_predictions

PROFILE = "amd-epyc-2c_ort-cpu-1t-b1_mobilenet_v1_small"  # used for that space when no shipped profile matches here


def default_profile(space) -> str:
    """The shipped profile of the space for this machine; for mobilenet_v1_small on another machine,
    PROFILE (the search only ranks networks by it)."""
    from widthnas.latency.backends import OrtBackend
    from widthnas.latency.registry import find_profile

    found, why = find_profile(space, OrtBackend(space).device_info())
    if found is not None:
        return str(found)
    if space.fingerprint == get_space("mobilenet_v1_small").fingerprint:
        return PROFILE
    raise SystemExit(f"no shipped profile for {space.name} on this machine ({why}): pass --profile")


def searched_network(a, space, sp, work: Path):
    """(supernet, chosen widths): from --run, or a supernet trained here and the exact optimum."""
    from widthnas.latency.registry import load_profile
    from widthnas.mrf import build_mrf, parse_budget, solve
    from widthnas.mrf.unaries import Unaries
    from widthnas.nas.train import CKPT, TrainConfig, Trainer, load_checkpoint

    if a.run:
        run = Path(a.run)
        sup = SlimmableGraphNet(space)
        sup.load_state_dict(load_checkpoint(run / "supernet" / CKPT, space)["model"])
        return sup, json.loads((run / "config.json").read_text())["widths"]
    tc = TrainConfig(space=a.space, input_shape=a.input_shape, limit=a.limit, epochs=a.supernet_epochs, lr=0.1,
                     threads=1, seed=0)
    t = Trainer(tc, work / "supernet", log=lambda *_: None, progress=False)
    t.fit()
    table = load_profile(a.profile or default_profile(space))
    mrf = build_mrf(table, Unaries.load(work / "supernet" / "unaries.json"))
    sol = solve(mrf, parse_budget(a.budget, table.predict(space.max_widths)), "exact")
    return t.model.cpu(), sol.widths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v1_small", help="a registered space or a space JSON file")
    p.add_argument("--limit", type=int, default=4000, help="training images")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (and the previous model's training)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--weight", type=float, default=1.0, help="focal distillation weight")
    p.add_argument("--old-mult", type=float, default=0.5, help="uniform multiplier of the previous model")
    p.add_argument("--old-epochs", type=int, help="the previous model's training epochs (default --epochs)")
    p.add_argument("--old-lr", type=float, default=0.05, help="the previous model's learning rate")
    p.add_argument("--supernet-epochs", type=int, default=2)
    p.add_argument("--budget", default="50%")
    p.add_argument("--profile", help="default: the shipped profile of --space for this machine")
    p.add_argument("--run", help="take the supernet and chosen widths from this `widthnas run` directory")
    p.add_argument("--lr", type=float, default=0.02, help="fine-tuning learning rate")
    p.add_argument("--out", help="JSON results")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    ds = load_dataset("fashion_mnist")
    space = get_space(a.space)
    a.input_shape = None
    if ds.shape != space.input_shape:  # the same ops at Fashion-MNIST's input (a profile must be of that space)
        space = space.with_input(ds.shape)
        a.input_shape = ",".join(map(str, ds.shape))
    sp = split(ds, 0.1, 0, a.limit)
    x, y = sp.test
    work = Path(tempfile.mkdtemp(prefix="nfr_bench_"))
    t0 = time.time()
    torch.manual_seed(100)
    old_net = build_network(space, space.uniform(a.old_mult))
    train_plain(old_net, sp, a.old_epochs or a.epochs, lr=a.old_lr, seed=100, log=lambda *_: None, device="cpu")
    old_path = work / "old.onnx"
    export_onnx(old_net, space, old_path, normalize(sp.val[0][:64], sp.mean, sp.std))
    write_sidecar(old_path, space.uniform(a.old_mult), space,
                  normalization={"mean": sp.mean.tolist(), "std": sp.std.tolist()})
    old = load_previous(old_path, sp, space)
    old_pred = old(x).argmax(1)
    print(f"previous model: uniform x{a.old_mult}, test acc {(old_pred == y).float().mean():.4f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    sup, widths = searched_network(a, space, sp, work)
    print(f"searched network ({a.budget} budget): {widths} ({time.time() - t0:.0f} s)", flush=True)
    rows = []
    for seed in range(a.seeds):
        for arm in ("plain", "congruent"):
            net = calibrated_network(sup, widths, sp, 1024)
            kw = {"loss_fn": congruent_loss(old, a.weight)} if arm == "congruent" else {}
            train_plain(net, sp, a.epochs, lr=a.lr, seed=seed, log=lambda *_: None, device="cpu", **kw)
            r = flip_report(y, old_pred, torch_predictions(net, x, sp.mean, sp.std), space.num_classes)
            rows.append({"seed": seed, "arm": arm, "test_acc": r["new_accuracy"], "nfr": r["nfr"], "pfr": r["pfr"],
                         "per_class_nfr": [c["nfr"] for c in r["per_class"]]})
            print(f"seed {seed} {arm:9s}: test acc {r['new_accuracy']:.4f}, NFR {r['nfr']:.2%}, PFR {r['pfr']:.2%} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    by = {arm: [r for r in rows if r["arm"] == arm] for arm in ("plain", "congruent")}
    print(f"\n{space.name}, {a.limit} training images, fine-tune {a.epochs} epochs lr {a.lr}, focal distillation "
          f"weight {a.weight}, {a.seeds} paired seeds; previous model test acc {(old_pred == y).float().mean():.4f}")
    print("| fine-tuning | test acc per seed | mean acc | NFR per seed | mean NFR | mean PFR |")
    print("|---|---|---|---|---|---|")
    for arm, rs in by.items():
        acc, nfr, pfr = ([r[k] for r in rs] for k in ("test_acc", "nfr", "pfr"))
        print(f"| {arm} | {', '.join(f'{v:.4f}' for v in acc)} | {np.mean(acc):.4f} "
              f"| {', '.join(f'{v:.2%}' for v in nfr)} | {np.mean(nfr):.2%} | {np.mean(pfr):.2%} |")
    paired = {}
    for k in ("nfr", "test_acc"):
        d = paired_diff([r[k] for r in by["congruent"]], [r[k] for r in by["plain"]])
        paired[k] = d
        print(f"paired difference congruent - plain, {k}: {d['diff']:+.4f} (sd {d['sd']:.4f}), 95 % t-interval "
              f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
    pl, co = (np.mean([r["nfr"] for r in by[k]]) for k in ("plain", "congruent"))
    print(f"NFR ratio congruent / plain: {co / pl:.2f}; total {time.time() - t0:.0f} s")
    if a.out:
        atomic_write_text(a.out, json.dumps({"args": vars(a), "widths": widths, "rows": rows, "paired": paired},
                                            indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
