"""`widthnas run`: the whole pipeline: profile, train, search, fine-tune, export, verify, report."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from .options import add_space_options, given_settings


def add_parser(sub) -> None:
    from widthnas.mrf import METHODS

    q = sub.add_parser("run", help="the whole pipeline: profile, train, search, fine-tune, export, verify, report")
    q.add_argument("--out", default="runs/demo", help="run directory (a rerun resumes it)")
    add_space_options(q, shape_help=None)
    q.add_argument("--dataset")
    q.add_argument("--data")
    q.add_argument("--budget", help="ms or %% of the widest network (default 50%%)")
    q.add_argument("--margin",
                   help="%% under the budget the search aims at; auto (default): twice the profile's held-out error")
    q.add_argument("--profile", help="profile to use (default: a shipped one matching this machine, else profile)")
    q.add_argument("--profile-networks", type=int)
    q.add_argument("--heldout-networks", type=int, help="held-out networks timed to validate a new profile (default 150)")
    q.add_argument("--check-networks", type=int, help="networks timed to check the profile on this machine (default 40)")
    q.add_argument("--remeasure-networks", type=int, help="held-out networks timed again for a new profile's "
                   "noise floor, which --margin auto counts (default 30; 0: none)")
    q.add_argument("--ladder-rungs", type=int, help="rungs of the ladder of reference networks timed into a new "
                   "profile, which verification reads networks off (default 8; 0: none, verify off the reference)")
    q.add_argument("--profile-rounds", type=int, help="timed rounds per network while profiling (default 5)")
    q.add_argument("--profile-round-ms", type=float, help="ms per timed round (default 10)")
    q.add_argument("--verify-rounds", type=int, help="rounds before a verification timing is judged; it grows to 4 x "
                   "while its interval is wider than ±1 %% (default 7; the search's measured candidates and verify; a ladder is always timed in 7 x 20 ms)")
    q.add_argument("--verify-round-ms", type=float, help="ms per verification round (default 20; smaller is quicker "
                   "and noisier: the budget verdict then repeats more timings)")
    q.add_argument("--max-wait", type=float, help="seconds to wait for a disturbed machine to settle before timing "
                   "a network again (the load guard, for profiling, checking and verifying; default 60), and at most 30 per "
                   "rung of the ladder a new profile gets")
    q.add_argument("--no-guard", dest="guard", action="store_false", default=None, help="do not watch the reference "
                   "network for a disturbed machine: every timing is kept as measured (for tiny networks, whose "
                   "timings spread anyway)")
    q.add_argument("--recheck", dest="reuse_check", action="store_false", default=None, help="time a new latency "
                   "check even when one of this profile made today on this machine kind is kept in $WIDTHNAS_CACHE "
                   "(default ~/.cache/widthnas)")
    q.add_argument("--sampling", choices=("ows", "aows"))
    q.add_argument("--epochs", type=int, help="supernet epochs")
    q.add_argument("--limit", type=int, help="training images (default 12000 for the quick demo)")
    q.add_argument("--all-data", action="store_true", help="train on the whole training split")
    q.add_argument("--batch-size", type=int)
    q.add_argument("--finetune-epochs", type=int)
    q.add_argument("--retrain-epochs", type=int)
    q.add_argument("--method", choices=("select",) + METHODS,
                   help="select (default): MRF candidates, uniform and greedy judged by the supernet on held-out images")
    q.add_argument("--unary-configs", type=int,
                   help="select: configurations measured for the unaries after training (default 300; --full 1000)")
    q.add_argument("--slim-images", type=int, help="select: validation images greedy slimming scores each of its "
                   "steps on (default 256, at most 512: the images that estimate the unaries)")
    q.add_argument("--seed", type=int)
    q.add_argument("--threads", type=int, help="torch threads for training, search and fine-tuning (default 0: "
                   "torch's default, every core)")
    q.add_argument("--time-threads", action="store_true", default=None, help="per stage, time 1 thread against "
                   "torch's default on a few repetitions of its own work and keep the faster (small networks on some "
                   "machines)")
    q.add_argument("--full", action="store_true", help="longer, better: all data, 20 epochs, 5 fine-tune epochs, "
                   "the width-error curve")
    q.add_argument("--curve", action="store_true", default=None, help="the report's width-error curve along every "
                   "uniform multiplier (about 1.5 min in the demo)")
    q.add_argument("--schedule", choices=("cosine", "greedy"),
                   help="learning rate for supernet training, fine-tuning and retraining (default cosine)")
    q.add_argument("--greedy", help="GreedyLR options, e.g. 'factor=0.5,patience=1' (see `widthnas train --help`)")
    q.add_argument("--previous", metavar="OLD", help="a deployed model (.onnx or run directory): the report gives "
                   "the negative flips of the new network against it")
    q.add_argument("--congruent", metavar="OLD", help="fine-tune/retrain with focal distillation toward this "
                   "model (.onnx or run directory) on the images it gets right (positive-congruent training)")
    q.add_argument("--congruent-weight", type=float, help="weight of that term (default 1)")
    q.add_argument("--weights", help="your model's state_dict, for a space traced with `space --from-model`: seeds "
                   "the supernet (channels sorted by importance) and fine-tuning starts from it, sliced to the "
                   "chosen widths")
    q.add_argument("--quiet", action="store_true", help="no progress bars or status line")
    q.add_argument("--verbose", action="store_true", help="every message on the terminal (run.log always has "
                   "them all); default: one line per stage")


def run(args) -> int:
    from widthnas.latency.margin import parse_margin

    from ..run import Run
    from ..run_config import RunConfig
    from ..runlog import RunLog

    cfg = RunConfig()
    if args.full:  # the whole training set, longer training
        cfg = replace(cfg, limit=None, epochs=20, warmup_epochs=4, finetune_epochs=5, unary_configs=1000, curve=True)
    cfg = replace(cfg, **given_settings(args, RunConfig))
    cfg.margin = parse_margin(cfg.margin)  # "auto" or a number, one spelling per setting (resume compares them)
    _check_feature_options(cfg, args)
    if args.all_data:
        cfg.limit = None
    if cfg.sampling == "aows" and cfg.warmup_epochs >= cfg.epochs:
        cfg.warmup_epochs = max(0, cfg.epochs - 1)
    _check_files(cfg, args.out)
    bars = not args.quiet and sys.stderr.isatty()  # piped or in CI: no bars redrawn into the captured text
    log = RunLog(args.out, terse=not args.verbose, status=bars)  # every message in full in run.log
    run = Run(cfg, args.out, log=log, progress=bars)
    run.go()
    summary = run.summary()
    log.record("summary:\n" + summary)
    print("\n" + summary)
    return 0


def _check_files(cfg, out) -> None:
    """Before any stage runs: no file the run writes may be one it reads (--space, --data, --profile,
    --weights, --previous, --congruent), and --data must hold what --dataset reads."""
    from ..checks import check_outputs, dataset_inputs, previous_inputs
    from ..data import check_data
    from ..run import RUN_WRITES
    from ..train import RUN_FILES

    out = Path(out)
    check_outputs({**{f"{n} in --out {out}": out / n for n in RUN_WRITES},
                   **{f"supernet/{n} in --out {out}": out / "supernet" / n for n in (*RUN_FILES, "unaries_measured.json")}},
                  [("--space", cfg.space), ("--profile", cfg.profile), ("--weights", cfg.weights),
                   ("--previous", previous_inputs(cfg.previous)), ("--congruent", previous_inputs(cfg.congruent)),
                   *dataset_inputs(cfg.dataset, cfg.data)],
                  dirs={f"--out {out}": out / "candidates"})  # the search's candidate networks (ONNX)
    check_data(cfg.dataset, cfg.data)


def _check_feature_options(cfg, args) -> None:
    """Refuse bad --schedule/--greedy/--previous/--congruent settings before any stage runs."""
    from ..flips import resolve_previous
    from ..greedylr import GreedyOptions

    GreedyOptions.parse(cfg.greedy)
    if cfg.greedy and cfg.schedule != "greedy":
        raise ValueError("--greedy sets GreedyLR options; add --schedule greedy to use them")
    if args.congruent_weight is not None and not cfg.congruent:
        raise ValueError("--congruent-weight needs --congruent OLD.onnx (the model to stay congruent with)")
    for opt in ("previous", "congruent"):
        if getattr(cfg, opt):
            try:
                resolve_previous(getattr(cfg, opt))
            except ValueError as e:
                raise ValueError(f"--{opt}: {e}") from None
    if cfg.weights and cfg.retrain_epochs:
        raise ValueError("--weights starts fine-tuning from your model; --retrain-epochs retrains from scratch: "
                         "choose one")
    if cfg.congruent and not (cfg.finetune_epochs or cfg.retrain_epochs):
        raise ValueError("--congruent acts during fine-tuning or retraining; set --finetune-epochs or "
                         "--retrain-epochs above 0")
