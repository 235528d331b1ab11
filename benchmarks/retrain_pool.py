"""Retrain many (widths, seed) networks from scratch under one protocol, in parallel single-thread
worker processes, with every finished result kept on disk (a killed run resumes).

Paired seeds: seed s gives every network the same initialisation stream (torch.manual_seed before
the network is built) and the same data order and augmentation (nas.finetune's generator), so
accuracy differences between networks of one seed are paired comparisons.

Why processes: the small networks that low budgets select lose to thread synchronisation at two
threads (half the CPU time in futex calls); two single-thread processes do more work per second.
Measured by `python -m widthnas.benchmarks.retrain_pool --compare` (see docs/RESULTS.md).

Any registered or traced space (`Protocol.space`: a name or a space JSON file); widths are listed
per free group, in the space's `free_groups` order.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from widthnas._io import atomic_write_text


@dataclass(frozen=True)
class Protocol:
    dataset: str = "fashion_mnist"
    data: str | None = None
    space: str = "mobilenet_v1_small"  # a registered space's name or a space JSON file
    limit: int | None = 20000  # training images (None: the whole training split)
    epochs: int = 3
    lr: float = 0.1
    split_seed: int = 0  # the validation split (never the test set) and the training subset
    channels_last: bool = True  # NHWC training, 1.5-1.6x faster here; the same protocol up to rounding

    def key(self) -> str:
        d = asdict(self)
        if not d["channels_last"]:  # the layout runs before this field had: their caches keep their key
            del d["channels_last"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def _result_path(out: Path, proto: Protocol, widths: list[int], seed: int) -> Path:
    h = hashlib.sha256(json.dumps([list(map(int, widths)), int(seed)]).encode()).hexdigest()[:16]
    return out / f"retrain_{proto.key()}" / f"{h}.json"


_STATE: dict = {}


def _init(proto: Protocol, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from widthnas.models import get_space
    from widthnas.nas.data import load_dataset, split

    ds = load_dataset(proto.dataset, proto.data, download=False)
    space = get_space(proto.space)
    if ds.shape != space.input_shape:
        space = space.with_input(ds.shape)
    space = space.with_dense_choices(8)  # baselines off the search grid (a multiplier rounded to 8) train too
    _STATE.update(space=space, splits=split(ds, 0.1, proto.split_seed, proto.limit), proto=proto)


def _train_one(job: tuple[list[int], int, str]) -> tuple[str, dict]:
    import torch

    from widthnas.models import build_network
    from widthnas.nas.evaluate import accuracy
    from widthnas.nas.finetune import train_plain

    widths, seed, path = job
    proto, sp = _STATE["proto"], _STATE["splits"]
    t0 = time.time()
    torch.manual_seed(1000 + seed)  # paired: the same initialisation stream for every network
    net = build_network(_STATE["space"], widths)
    hist = train_plain(net, sp, proto.epochs, lr=proto.lr, seed=1000 + seed, log=lambda *_: None,
                       channels_last=proto.channels_last, validate_each_epoch=False)
    acc, loss = accuracy(net, *sp.test, sp.mean, sp.std)
    rec = {"widths": list(widths), "seed": seed, "test_acc": acc, "test_loss": loss,
           "val_acc": hist[-1]["val_acc"], "seconds": time.time() - t0, "protocol": asdict(proto)}
    atomic_write_text(Path(path), json.dumps(rec))
    return path, rec


def retrain_many(out: str | Path, proto: Protocol, jobs: list[tuple[list[int], int]], workers: int = 2,
                 threads: int = 1, log=print, done_only: bool = False) -> dict[tuple[tuple[int, ...], int], dict]:
    """{(widths tuple, seed): record} for every job; finished jobs are read from disk, not rerun.
    done_only: train nothing, return only the finished ones (a report on a partial run)."""
    out = Path(out)
    todo, results = [], {}
    for widths, seed in jobs:
        p = _result_path(out, proto, widths, seed)
        if p.exists():
            results[(tuple(widths), seed)] = json.loads(p.read_text())
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            todo.append((list(map(int, widths)), int(seed), str(p)))
    if done_only:
        log(f"{len(results)} retrainings finished, {len(todo)} not (not trained: report only)")
        return results
    log(f"retraining {len(todo)} networks ({len(results)} done before), {workers} worker(s) x {threads} thread(s)")
    if todo:
        t0 = time.time()
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init, initargs=(proto, threads)) as pool:
            for k, (_, rec) in enumerate(pool.imap_unordered(_train_one, todo), 1):
                results[(tuple(rec["widths"]), rec["seed"])] = rec
                el = time.time() - t0
                log(f"  {k}/{len(todo)} seed {rec['seed']} acc {rec['test_acc']:.4f} ({rec['seconds']:.0f} s); "
                    f"ETA {el / k * (len(todo) - k) / 60:.1f} min")
    return results


def main() -> int:
    """--compare: the same retrainings as 1 process x 2 threads and as 2 processes x 1 thread."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--compare", action="store_true")
    p.add_argument("--space", default="mobilenet_v1_small", help="a registered space or a space JSON file")
    p.add_argument("--out", default="runs/retrain_pool_compare")
    p.add_argument("--mult", default="0.3,0.5,0.7", help="uniform multipliers to retrain")
    p.add_argument("--limit", type=int, default=4000)
    a = p.parse_args()
    from widthnas.models import get_space

    space = get_space(a.space)
    jobs = [(space.uniform(float(m)), s) for m in a.mult.split(",") for s in (0, 1)]
    times = {}
    for workers, threads in ((1, 2), (2, 1)):
        proto = Protocol(space=a.space, limit=a.limit, epochs=1, split_seed=100 * workers + threads)  # its own cache
        t0 = time.time()
        res = retrain_many(Path(a.out) / f"{workers}x{threads}", proto, jobs, workers, threads)
        times[(workers, threads)] = time.time() - t0
        print(f"{workers} process(es) x {threads} thread(s): {times[(workers, threads)]:.1f} s for {len(jobs)} "
              f"retrainings ({a.limit} images, 1 epoch), mean acc {sum(r['test_acc'] for r in res.values()) / len(res):.4f}")
    print(f"ratio (2x1 over 1x2 wall time): {times[(2, 1)] / times[(1, 2)]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
