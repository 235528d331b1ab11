"""`widthnas train`: train the slimmable supernet and record per-layer accuracy loss."""
from __future__ import annotations

from .options import add_space_options, given_settings


def add_parser(sub) -> None:
    q = sub.add_parser("train", help="train the slimmable supernet and record per-layer accuracy loss")
    q.add_argument("--out", required=True, help="run directory")
    q.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_space_options(q)
    q.add_argument("--dataset", help="fashion_mnist (default), cifar10, imagefolder, npz")
    q.add_argument("--data", help="dataset path")
    q.add_argument("--limit", type=int, help="train on only this many images")
    q.add_argument("--val-fraction", type=float)
    q.add_argument("--epochs", type=int)
    q.add_argument("--batch-size", type=int)
    q.add_argument("--lr", type=float)
    q.add_argument("--momentum", type=float)
    q.add_argument("--weight-decay", type=float)
    q.add_argument("--schedule", choices=("cosine", "constant", "greedy"),
                   help="cosine (default); greedy: GreedyLR on the widest network's validation loss")
    q.add_argument("--greedy", help="GreedyLR options, e.g. 'factor=0.5,patience=1,window=2,threshold=0.01,"
                   "cooldown=0,warmup=0,min_lr=1e-4,max_lr=0.2,every=0' (every=N: read the training loss every N steps)")
    q.add_argument("--lr-warmup", type=float, help="linear lr ramp over this fraction of the steps (default 0.1; 0: none)")
    q.add_argument("--n-random", type=int, help="sampled configurations per step (besides widest, narrowest)")
    q.add_argument("--sampling", choices=("ows", "aows"))
    q.add_argument("--warmup-epochs", type=int)
    q.add_argument("--budget", help="aows target: ms or %% of the widest network")
    q.add_argument("--profile", help="aows latency profile")
    q.add_argument("--t-start", type=float)
    q.add_argument("--t-end", type=float)
    q.add_argument("--threads", type=int)
    q.add_argument("--device", help="auto (default: a CUDA GPU if present, else cpu), cpu, cuda, cuda:N")
    q.add_argument("--seed", type=int)
    q.add_argument("--weights", help="your model's state_dict (a space traced with `space --from-model`): the "
                   "supernet starts from it, each group's channels sorted by importance")
    q.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    q.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from pathlib import Path

    from ..checks import check_outputs, dataset_inputs
    from ..data import check_data
    from ..paths import same_setting
    from ..train import RESUMABLE, RUN_FILES, TrainConfig, load_train_config, train

    run = Path(args.out)
    given = given_settings(args, TrainConfig)
    if args.resume and (run / "train_config.json").exists():
        cfg = load_train_config(run)
        differ = {k: v for k, v in given.items() if k not in RESUMABLE and not same_setting(k, getattr(cfg, k), v)}
        if differ:
            flags = ", ".join(f"--{k.replace('_', '-')} {v} (the run has {getattr(cfg, k)})" for k, v in differ.items())
            raise ValueError(f"--resume continues {run} with its own settings; these flags differ and would be "
                             f"ignored: {flags}. Drop them to resume (only {', '.join('--' + k for k in RESUMABLE)} "
                             "may change), or start a new run with another --out")
        for k in RESUMABLE:  # extending a finished run, or moving it to other threads or a device, is allowed
            if k in given:
                setattr(cfg, k, given[k])
    else:
        cfg = TrainConfig(**given)
    check_outputs({f"{n} in --out {run}": run / n for n in RUN_FILES},  # no file the run writes may be one it reads
                  [*((f"--{k}", getattr(cfg, k)) for k in ("space", "profile", "weights")),
                   *dataset_inputs(cfg.dataset, cfg.data)])
    check_data(cfg.dataset, cfg.data)  # a --data holding nothing this dataset reads fails now, not after setup
    t = train(cfg, run, resume=args.resume, progress=not args.quiet)
    if t.rank == 0:
        print(f"unaries: {run / 'unaries.json'}; checkpoint: {run / 'checkpoint.pt'}")
    return 0
