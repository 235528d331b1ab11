"""`widthnas curve`: test error against uniform width multiplier and latency (the width-error curve)."""
from __future__ import annotations

import json
from pathlib import Path

from ..checks import UserError, check_calib_images, check_outputs, run_inputs


def add_parser(sub) -> None:
    q = sub.add_parser("curve", help="test error against uniform width multiplier and latency (supernet, "
                       "optionally retrained)")
    q.add_argument("--run", required=True, help="a `widthnas train` or `widthnas run` directory")
    q.add_argument("--profile", help="latency profile (default: the one the run used)")
    q.add_argument("--no-measure", action="store_true", help="predicted latency only (no ONNX timing)")
    q.add_argument("--retrain", action="store_true", help="also train every uniform network from scratch")
    q.add_argument("--retrain-epochs", type=int, help="epochs per retrained network (default 2)")
    q.add_argument("--schedule", choices=("cosine", "greedy"), default="cosine", help="for --retrain")
    q.add_argument("--greedy", help="GreedyLR options for --retrain --schedule greedy")
    q.add_argument("--split", choices=("val", "test"), default="test")
    q.add_argument("--calib-images", type=int, default=1024, help="BN recalibration images per network")
    q.add_argument("--out", help="CSV path (default RUN/curve.csv; the PNG goes beside it)")


def run(args) -> int:
    from widthnas.latency.registry import load_profile

    from ..curve import retrain_curve, supernet_curve, write_curve
    from ..greedylr import GreedyOptions
    from ..train import load_run

    run = Path(args.run)
    if not run.is_dir():
        raise ValueError(f"--run {run}: no such directory")
    if args.retrain_epochs is not None and not args.retrain:
        raise ValueError("--retrain-epochs needs --retrain")
    check_calib_images(args.calib_images)
    if args.retrain_epochs is not None and (isinstance(args.retrain_epochs, bool) or args.retrain_epochs < 1):
        raise UserError(f"--retrain-epochs {args.retrain_epochs}: use 1 or more (default 2)")
    out = Path(args.out) if args.out else run / "curve.csv"
    if out.suffix.lower() == ".png":  # the CSV would go there, then the plot over it
        raise UserError(f"--out {out}: give the CSV's path (e.g. curve.csv); the plot goes beside it as .png")
    png = out.with_suffix(".png")
    check_outputs({"--out": out, f"the plot beside --out {out}": png},  # its own curve may be redrawn
                  [("--profile", args.profile), *run_inputs(run, own=("curve.csv", "curve.png"))])
    opts = GreedyOptions.parse(args.greedy)
    if (run / "supernet" / "train_config.json").exists():  # a `widthnas run` directory: its supernet, its profile
        state = run / "run_state.json"
        train_dir = run / "supernet"
        run_profile = json.loads(state.read_text()).get("profile", {}).get("path") if state.exists() else None
    elif (run / "train_config.json").exists():
        train_dir, run_profile = run, None
    else:
        raise ValueError(f"{run} is neither a `widthnas train` nor a `widthnas run` directory (no train_config.json); "
                         "train a supernet first")
    cfg, space, sup, splits = load_run(train_dir)
    prof = args.profile or run_profile or cfg.profile
    table = load_profile(prof) if prof else None
    if table is not None and table.space.fingerprint != space.fingerprint:
        raise ValueError(f"profile {prof} is for space {table.space.name} ({table.space.fingerprint}), the supernet "
                         f"for {space.fingerprint}; pass a --profile of this space")
    if table is None:
        print("no latency profile recorded for this run: error against the multiplier only "
              "(pass --profile for latency)")
    rows = supernet_curve(sup, space, splits, args.split, args.calib_images, table,
                          measure=table is not None and not args.no_measure)
    if args.retrain:
        retrain_curve(rows, space, splits, 2 if args.retrain_epochs is None else args.retrain_epochs, args.split,
                      lr=cfg.lr, seed=cfg.seed, schedule=args.schedule, greedy=opts)
    write_curve(out, png, rows)
    print(f"width-error curve: {out}, plot {png}")
    return 0
