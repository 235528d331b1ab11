"""Which channels to keep, at equal widths: widthnas's channel-importance criteria against Torch-Pruning's, on
the compress benchmark's trained model (issue 31: why widthnas loses where it does).

At the compress benchmark's uniform8 widths, the user's weights are sliced by each criterion of
`models/trace_weights.importance` and fine-tuned with the benchmark's protocol (same epochs, rate, data and
paired seeds: `compress._finetune_one`). The same widths were fine-tuned there sliced by the "bn" criterion
(uniform8 as it ran before the compress setup recorded its importance criterion, 2026-12-05: its records carry
the key of the common settings alone) and pruned by Torch-Pruning with one ratio (tp_uniform, the same widths):
this reports each criterion's paired difference against both.

    python -m widthnas.benchmarks.compress_importance --model resnet     # after compress.py --model resnet

Reads the compress run directory (never writes into its records); writes <out>/importance/.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import torch

from widthnas._io import atomic_write_text, read_json
from widthnas.benchmarks.stats import paired_diff

from .compress import _COMMON, Bench, Setup, _finetune_one, _init

CRITERIA = ("magnitude",)  # "bn": the first run's uniform8; "tp": tp_uniform's channels on dense networks (the ResNet)


def _record(out: Path, pattern: str) -> dict | None:
    found = sorted(out.glob(pattern))
    if len(found) > 1:
        raise SystemExit(f"{len(found)} records match {out / pattern}: which one to compare with is ambiguous")
    return read_json(found[0], "fine-tuning record") if found else None


def _bn_start(b: Bench, pct: int) -> dict:
    """The uniform8 starting network of the run made with the "bn" criterion (key of the common settings)."""
    p = b.out / "start" / f"uniform8_{pct}_{b.s.key(*_COMMON)}.json"
    if not p.exists():
        raise SystemExit(f"{p} is missing: this compares with the compress run made with the 'bn' criterion")
    return read_json(p, "starting network")


def starts(b: Bench, criteria, pcts) -> list[dict]:
    """One starting network per (criterion, distinct uniform8 widths), saved under <out>/importance/."""
    from widthnas.models.net import GraphNet
    from widthnas.models.trace_weights import check_state, keep_channels, sliced_state

    space = b.space().with_dense_choices(8)
    sd = check_state(space, b.base_state())
    d = b.out / "importance"
    d.mkdir(exist_ok=True)
    out, seen = [], set()
    for pct in pcts:
        w = _bn_start(b, pct)["widths"]
        if tuple(w) in seen:  # 60 and 40 % may share their uniform8 network
            continue
        seen.add(tuple(w))
        for crit in criteria:
            pt = d / f"{crit}_{pct}_{'_'.join(map(str, w))}.pt"
            if not pt.exists():
                net = GraphNet(space, w)
                net.load_state_dict(sliced_state(space, sd, w, keep_channels(space, sd, w, crit)), strict=False)
                torch.save(net.eval(), pt)
            out.append({"criterion": crit, "budget_pct": pct, "widths": w, "module": str(pt)})
    return out


def run(b: Bench, criteria, pcts) -> list[dict]:
    todo, done = [], []
    for st in starts(b, criteria, pcts):
        for seed in range(b.s.seeds):
            p = b.out / "importance" / f"{st['criterion']}_{st['budget_pct']}_s{seed}.json"
            if p.exists():
                done.append(read_json(p, "fine-tuning record"))
            else:
                todo.append((f"u8_{st['criterion']}", st["budget_pct"], seed, st["module"], str(p), None))
    if todo:
        print(f"fine-tuning {len(todo)} networks ({len(done)} done before), {b.workers} x 1 thread", flush=True)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        t0 = time.time()
        with mp.get_context("spawn").Pool(b.workers, initializer=_init, initargs=(b.s, b.base()["state"])) as pool:
            for k, rec in enumerate(pool.imap_unordered(_finetune_one, todo), 1):
                done.append(rec)
                print(f"  {k}/{len(todo)} {rec['method']} {rec['budget_pct']} % seed {rec['seed']}: acc "
                      f"{rec['test_acc']:.4f} ({(time.time() - t0) / 60:.0f} min)", flush=True)
    return done


def report(b: Bench, done: list[dict]) -> list[dict]:
    rows = []
    for (method, pct) in sorted({(r["method"], r["budget_pct"]) for r in done}):
        mine = {r["seed"]: r["test_acc"] for r in done if (r["method"], r["budget_pct"]) == (method, pct)}
        row = {"criterion": method[3:], "budget_pct": pct, "acc_mean": float(np.mean(list(mine.values()))),
               "n": len(mine)}
        key = b.s.key(*_COMMON)  # uniform8 sliced by "bn"; tp_uniform: pruned by Torch-Pruning, the same widths
        for other in ("uniform8", "tp_uniform"):
            theirs = {s: _record(b.out / "ft", f"{other}_{pct}_s{s}_*_{key}.json") for s in mine}
            seeds = [s for s in mine if theirs[s] is not None]
            if len(seeds) >= 2:
                d = paired_diff([mine[s] for s in seeds], [theirs[s]["test_acc"] for s in seeds])
                row[f"vs_{other}"] = {k: d[k] for k in ("diff", "ci_low", "ci_high", "n")}
        rows.append(row)
        txt = "; ".join(f"{k[3:]} {100 * v['diff']:+.2f} [{100 * v['ci_low']:+.2f}, {100 * v['ci_high']:+.2f}]"
                        for k, v in row.items() if k.startswith("vs_"))
        print(f"{row['criterion']:10s} {pct:3d} %: acc {row['acc_mean']:.4f} over {row['n']} seeds; paired vs {txt}")
    atomic_write_text(b.out / "importance" / "summary.json", json.dumps(rows, indent=1))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("resnet", "mbv2"), default="resnet")
    p.add_argument("--out", help="the compress run directory (default runs/compress_<model>)")
    p.add_argument("--criteria", default=",".join(CRITERIA))
    p.add_argument("--budgets", default="60,40,25")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    from widthnas.models.trace_weights import CRITERIA as KNOWN

    crit = [c for c in a.criteria.split(",") if c]
    if not crit or any(c not in KNOWN for c in crit):
        p.error(f"--criteria {a.criteria}: choose among {', '.join(KNOWN)}")
    try:
        pcts = [int(x) for x in a.budgets.split(",")]
    except ValueError:
        p.error(f"--budgets {a.budgets}: whole percentages, e.g. 60,40,25")
    if a.workers < 1:
        p.error(f"--workers {a.workers}: give at least 1")
    out = Path(a.out or f"runs/compress_{a.model}")
    if not (out / "space.json").exists():
        p.error(f"{out} holds no compress run: run `python -m widthnas.benchmarks.compress --model {a.model}` first")
    b = Bench(Setup(model=a.model), out, a.workers)
    bad = [pct for pct in pcts if str(pct) not in b.budgets()["budget_ms"]]
    if bad:
        p.error(f"--budgets {bad}: the compress run has budgets {list(b.budgets()['budget_ms'])}")
    torch.set_num_threads(1)
    report(b, run(b, crit, pcts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
