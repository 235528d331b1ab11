"""Search quality at equal latency: uniform multiplier, greedy slimming (AutoSlim), OWS and AOWS.

    python benchmarks/search_quality.py --quick          # <= 30 min on 2 CPU cores
    python benchmarks/search_quality.py                  # full: meant for a GPU
Setup: Fashion-MNIST, mobilenet_v1_small, this machine's shipped CPU profile, budgets 35/50/70 % of
the widest network's predicted latency. Every chosen network is retrained from scratch the same
way with several seeds; test accuracy is reported as mean ± std next to its measured latency
(exported ONNX, onnxruntime, reference-normalised) and its predicted latency.
Resumable: supernets keep checkpoints and finished retrainings are cached in --out.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch


from widthnas.latency.backends import OrtBackend
from widthnas.latency.registry import find_profile, load_profile
from widthnas.latency.table import atomic_write_text
from widthnas.models.mobilenet import SlimmableMobileNet, build_network
from widthnas.mrf import WidthMRF, exact, greedy, uniform, with_margin
from widthnas.mrf.unaries import Unaries
from widthnas.nas.data import load_dataset, normalize, split
from widthnas.nas.device import device_of
from widthnas.nas.evaluate import accuracy
from widthnas.nas.export import export_onnx, measure_exported
from widthnas.nas.finetune import train_plain
from widthnas.nas.train import CKPT, TrainConfig, Trainer
from widthnas.nas.unary_eval import measure_unaries

MODES = {  # quick fits 30 min on 2 CPU cores; full is meant for a GPU
    "quick": dict(limit=6000, epochs=3, warmup=1, retrain_epochs=2, seeds=3, unary_configs=300),
    "full": dict(limit=None, epochs=30, warmup=10, retrain_epochs=15, seeds=3, unary_configs=1000),
}
BUDGETS = (0.35, 0.50, 0.70)
MARGIN_PCT = 1.0  # every method aims 1 % under the budget: measured latency strays ~1 % from prediction


def train_supernet(out: Path, cfg: TrainConfig, log) -> SlimmableMobileNet:
    t = Trainer(cfg, out, log=log, progress=False)
    if (out / CKPT).exists():
        t.resume()
    t.fit()
    return t.model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="runs/search_quality")
    p.add_argument("--profile", help="default: the shipped profile matching this machine")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--diagnostics", action="store_true",
                   help="also evaluate OWS with the training-time unaries (the effect of measuring them after training)")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    mode = MODES["quick" if a.quick else "full"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    logf = open(out / "log.txt", "a")

    def log(msg: str) -> None:
        line = f"[{time.time() - t_start:6.0f} s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    space_name = "mobilenet_v1_small"
    from widthnas.models.space import get_space

    ds = load_dataset(a.dataset, a.data)
    space = get_space(space_name)
    input_shape = None
    if ds.shape != space.input_shape:  # e.g. CIFAR-10 (3x32x32): the same layers, another input
        space = space.with_input(ds.shape)
        input_shape = ",".join(map(str, ds.shape))
        if not a.profile:
            raise SystemExit(f"{ds.name} images are {ds.shape}: profile that space first, e.g. `widthnas profile "
                             f"--input-shape {input_shape} --out s.jsonl` and `widthnas fit`, then pass --profile")
    if a.profile:
        prof_path = a.profile
    else:
        found, why = find_profile(space, OrtBackend(space).device_info())
        if found is None:
            raise SystemExit(f"no shipped profile for this machine ({why}); profile first and pass --profile")
        prof_path = str(found)
    table = load_profile(prof_path)
    widest = table.predict(space.max_widths)
    log(f"mode {'quick' if a.quick else 'full'} {mode}; profile {table.name}; widest {widest:.4f} ms; "
        f"torch threads {torch.get_num_threads()}")
    sp = split(ds, 0.1, a.seed, mode["limit"])
    base = dict(space=space_name, input_shape=input_shape, dataset=a.dataset, data=a.data, limit=mode["limit"],
                epochs=mode["epochs"], seed=a.seed)

    # ---- OWS supernet (its warm-up checkpoint seeds every AOWS run: identical uniform epochs) ----
    ows_dir, warm_dir = out / "ows", out / "warmup"
    if not (warm_dir / CKPT).exists():
        t = Trainer(TrainConfig(**base, sampling="ows"), ows_dir, log=log, progress=False)
        if (ows_dir / CKPT).exists():
            t.resume()
        t.fit(stop_after=max(0, mode["warmup"] - t.epoch))
        shutil.copytree(ows_dir, warm_dir, dirs_exist_ok=True)
    ows = train_supernet(ows_dir, TrainConfig(**base, sampling="ows"), log)
    u_train = Unaries.load(ows_dir / "unaries.json")
    u_ows = measure_unaries(ows, sp, mode["unary_configs"], seed=a.seed, log=log)
    u_ows.save(out / "unaries_ows_measured.json")
    mrf_train, mrf_ows = WidthMRF.from_table(table, u_train), WidthMRF.from_table(table, u_ows)

    # ---- greedy slimming on the supernet itself (AutoSlim): one descent answers every budget ----
    dev = device_of(ows)
    xv, yv = normalize(sp.val[0][:256], sp.mean, sp.std).to(dev), sp.val[1][:256].to(dev)  # 256 images: ~900 evaluations fit the quick budget

    @torch.no_grad()
    def supernet_score(widths) -> float:
        ows.train()  # batch statistics, as in measure_unaries
        out_ = ows(xv, widths, update_bn_stats=False)
        return float((out_.argmax(1) == yv).float().mean()) - 1e-3 * float(torch.nn.functional.cross_entropy(out_, yv))

    t0 = time.time()
    g = greedy(mrf_ows, with_margin(min(BUDGETS) * widest, MARGIN_PCT), score_fn=supernet_score)
    log(f"greedy AutoSlim: {len(g.info['path'])} steps, {g.info['evals']} supernet evaluations, {time.time() - t0:.0f} s")

    choices = {}  # (method, budget) -> widths
    for b in BUDGETS:
        budget = with_margin(b * widest, MARGIN_PCT)  # what each method aims at; "met" is judged on b * widest
        choices[("uniform", b)] = uniform(mrf_ows, budget).widths
        choices[("greedy", b)] = next(w for w, lat, _ in g.info["path"] if lat <= budget)
        choices[("ows", b)] = exact(mrf_ows, budget, with_front=False).widths
        if a.diagnostics:
            choices[("ows-training-unaries", b)] = exact(mrf_train, budget, with_front=False).widths
    # ---- AOWS: narrowing toward each budget, continuing from the shared warm-up ----
    for b in BUDGETS:
        d = out / f"aows_{int(b * 100)}"
        if not (d / CKPT).exists():
            shutil.copytree(warm_dir, d, dirs_exist_ok=True)
            (d / "narrowing.jsonl").unlink(missing_ok=True)
        cfg = TrainConfig(**base, sampling="aows", warmup_epochs=mode["warmup"], budget=f"{b * 100:g}%",
                          profile=prof_path)
        sup = train_supernet(d, cfg, log)
        u = measure_unaries(sup, sp, mode["unary_configs"], seed=a.seed, log=log)
        u.save(d / "unaries_measured.json")
        choices[("aows", b)] = exact(WidthMRF.from_table(table, u), with_margin(b * widest, MARGIN_PCT),
                                     with_front=False).widths
        log(f"aows {b:.0%}: {choices[('aows', b)]}")

    # ---- evaluate every choice the same way: latency first (on a quiet machine), then retraining ----
    cache_path = out / "retrain_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    networks = {",".join(map(str, w)): w for w in choices.values()}  # several methods may pick the same widths
    lat_cache: dict = {}
    for key, widths in networks.items():
        onnx_path = out / "onnx" / f"{key.replace(',', '_')}.onnx"
        export_onnx(build_network(space, widths), space, onnx_path)
        lat_cache[key] = measure_exported(onnx_path, table)["normalised_ms"]

    def tag(key: str, s: int) -> str:  # the retraining protocol is part of the key (nas.schedule's warm-up)
        return f"{key}|{s}|{mode['retrain_epochs']}|{mode['limit']}|warm-up"

    jobs = [(key, s) for key in networks for s in range(mode["seeds"]) if tag(key, s) not in cache]
    log(f"retraining {len(jobs)} networks ({len(cache)} cached)")
    for key, s in jobs:
        torch.manual_seed(1000 + s)
        net = build_network(space, networks[key])
        train_plain(net, sp, mode["retrain_epochs"], lr=0.1, seed=1000 + s, log=lambda *_: None)
        cache[tag(key, s)] = accuracy(net, *sp.test, sp.mean, sp.std)[0]
        atomic_write_text(cache_path, json.dumps(cache, indent=1))  # a killed run resumes here
    rows = []
    for (method, b), widths in choices.items():
        key = ",".join(map(str, widths))
        accs = [cache[tag(key, s)] for s in range(mode["seeds"])]
        pred = table.predict(widths)
        row = {"method": method, "budget_pct": int(b * 100), "budget_ms": b * widest, "predicted_ms": pred,
               "measured_ms": lat_cache[key], "met": lat_cache[key] <= b * widest, "acc_mean": float(np.mean(accs)),
               "acc_std": float(np.std(accs)), "accs": accs, "widths": widths}
        rows.append(row)
        log(f"{method:22s} {b:4.0%}  acc {row['acc_mean']:.4f} ± {row['acc_std']:.4f}  predicted {pred:.4f} ms  "
            f"measured {row['measured_ms']:.4f} ms  {'met' if row['met'] else 'OVER'}")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({**r, "accs": " ".join(f"{x:.4f}" for x in r["accs"]), "widths": " ".join(map(str, r["widths"]))})
    atomic_write_text(out / "search_quality.csv", buf.getvalue())
    _plot(out / "search_quality.png", rows)
    atomic_write_text(out / "search_quality.json", json.dumps(
        {"mode": "quick" if a.quick else "full", "settings": mode, "margin_pct": MARGIN_PCT, "profile": table.name, "widest_ms": widest,
         "seconds": time.time() - t_start, "rows": rows}, indent=1))
    log(f"done in {(time.time() - t_start) / 60:.1f} min: {out / 'search_quality.csv'}, {out / 'search_quality.png'}")
    return 0


def _plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r["measured_ms"])
        ax.errorbar([r["measured_ms"] for r in rs], [100 * r["acc_mean"] for r in rs],
                    yerr=[100 * r["acc_std"] for r in rs], marker="o", capsize=3, label=m)
    ax.set_xlabel("measured latency (ms, exported ONNX, onnxruntime CPU)")
    ax.set_ylabel("test accuracy after retraining (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
