"""Subcommands of the later stages: search, train, evaluate, export, run."""
from __future__ import annotations

import json
from pathlib import Path

from widthnas.models.space import check_fingerprint


def cmd_search(args) -> int:
    from widthnas.latency.margin import parse_margin
    from widthnas.latency.registry import load_profile
    from widthnas._io import atomic_write_text
    from widthnas.mrf import pareto_front
    from widthnas.mrf.unaries import Unaries

    from .cli import check_outputs
    from .search import aim, chosen_config, print_widths, search, write_pareto

    from .settings_check import Rule, check_settings

    check_settings(args, {"check_networks": Rule(integer=True, low=3, high=10_000, zero_ok=True)}, "search")
    parse_margin(args.margin)  # a bad --margin is refused before the supernet is loaded and the unaries measured
    png = None if not args.pareto else Path(args.pareto).with_suffix(".png")
    run_files = []  # every file of --run, and the unaries cache search writes there (it may not exist yet)
    if args.run and Path(args.run).is_dir():
        run_files = sorted({*(p for p in Path(args.run).iterdir() if p.is_file()), Path(args.run) / "unaries_measured.json"})
    check_outputs({"--out": args.out, "--pareto": args.pareto,  # nor any file of --run (checkpoint, cached unaries)
                   "the plot beside --pareto": png if png != Path(args.pareto or "") else None},
                  [args.profile, args.unaries, *run_files])
    table = load_profile(args.profile)
    space = table.space
    method = args.method
    if method == "auto":
        method = "select" if args.run else "exact"
        print(f"method {method}: " + ("held-out selection on the supernet of --run (the default)" if args.run else
              "exact budgeted optimum on --unaries (give --run DIR for the default held-out selection)"))
    if method == "select" and not args.run:
        raise ValueError("--method select judges candidates with the supernet: give --run DIR (a `widthnas train` "
                         "directory), or choose --method exact")
    if not args.run and not args.unaries:
        raise ValueError("give --run DIR (a `widthnas train` directory) or --unaries FILE")
    sup = splits = None
    if args.run:
        from .selection import cached_measured_unaries
        from .train import load_run

        _, run_space, sup, splits = load_run(args.run)
        check_fingerprint(run_space.fingerprint, space, f"the supernet in {args.run}")
        if args.unaries:
            unaries = Unaries.load(args.unaries)
        else:  # measured after training: paired against the widest network, many configurations
            args.unaries = str(Path(args.run) / "unaries_measured.json")
            unaries = cached_measured_unaries(sup, splits, args.unaries)
    else:
        unaries = Unaries.load(args.unaries)
    check = None  # on another machine, --margin auto counts a latency check made here (latency/margin.py)
    if parse_margin(args.margin) == "auto" and args.check_networks:
        check = check_if_another_machine(table, args.check_networks)
    budget, widest, target, margin_pct, margin_how = aim(table, args.budget, args.margin, check)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # the candidates' ONNX files, timed here
        measure = None
        if method == "select":
            from .export import network_measurer

            try:
                measure = network_measurer(sup, table, tmp)
            except ValueError as e:
                print(f"note: candidates judged on predicted latency only ({e})")
        sol, uni, mrf = search(table, unaries, method, target, budget, sup, splits, measure)
    print(f"search on {space.name} with profile {table.name or args.profile}: budget {budget:.4f} ms "
          f"({args.budget}; widest network {widest:.4f} ms)"
          + (f", aiming at {target:.4f} ms (margin {margin_how})" if margin_pct else ""))
    print_widths(space, sol, uni)
    print(f"method {sol.method}: predicted {sol.latency:.4f} ms, score {sol.score:.4f}"
          + (f" (uniform x{uni.info['multiplier']}: {uni.latency:.4f} ms, score {uni.score:.4f})" if uni else ""))
    if sol.method == "exact":
        print(f"exact optimum certified: {sol.info['certified']} ({sol.info['proof']})")
    if sol.method == "select":
        print(f"selected {sol.info['selected']!r} of {len(sol.info['candidates'])} candidates by held-out supernet accuracy")
    cfg = chosen_config(space, table, sol, args.unaries, args.budget, budget, margin_pct, margin_how)
    if check is not None:  # what the margin counted: how the profile held on this machine
        cfg["latency_check"] = {k: check[k] for k in ("n", "rmspe", "nrmse", "within_10", "host_speed")}
    atomic_write_text(args.out, json.dumps(cfg, indent=1))
    print(f"chosen configuration: {args.out}")
    if args.pareto:
        front = sol.pareto if sol.pareto is not None else pareto_front(mrf)
        png = write_pareto(args.pareto, front, sol, uni, target)
        print(f"Pareto front ({len(front)} points): {args.pareto}, plot {png}")
    return 0


def check_if_another_machine(table, n: int) -> dict | None:
    """A latency check of n random networks when the profile's reference runs so far off here that the
    profile was made on another machine (latency/check.py), else None; None, said, for a profile this
    machine cannot time (not onnxruntime)."""
    import tempfile

    from widthnas.latency.check import CHECK_SEED, check_protocol, latency_check, reference_speed
    from widthnas.latency.host_state import machine_note
    from widthnas.latency.standalone_runner import describe_differences, device_differences

    from .export import verify_timing

    try:
        be, _ = verify_timing(table)
    except ValueError as e:
        print(f"note: --margin auto from the profile alone: this machine cannot time it ({e})")
        return None
    diff = device_differences(table.device, be.device_info())
    if diff:  # a profile of another device (a bundle's board, another CPU): nothing timed here tells its error
        print(f"note: --margin auto from the profile alone: it is of another device "
              f"({describe_differences(diff, 'in the profile', 'here')})")
        return None
    speed = reference_speed(table, be, check_protocol())
    if machine_note(speed, table.reference_ms) is None:
        return None
    print(f"the reference network ran {speed:.2f} x its profiled {table.reference_ms:.4g} ms: another machine behind "
          f"the profile's device key; timing {n} random networks here for the margin (--check-networks 0: skip)",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        m, _, _ = latency_check(table, be, Path(tmp) / "check.jsonl", n, CHECK_SEED, check_protocol(), log=print)
    print(f"latency check on {m['n']} networks: within ±10 % {m['within_10']:.0%}, RMS error {m['rmspe']:.2%}, "
          f"NRMSE {m['nrmse']:.2%}, reference at {m['host_speed']:.2f} x"
          + ("" if m["machine_note"] else ": the profile's machine after all, the margin from the profile alone"))
    return m if m["machine_note"] else None


def register(sub) -> None:
    from widthnas.latency.check import CHECK_NETWORKS
    from widthnas.mrf import METHODS

    q = sub.add_parser("search", help="choose widths under a latency budget (MRF)")
    q.add_argument("--profile", required=True, help="hw_profiles name or profile JSON")
    q.add_argument("--run", help="a `widthnas train` directory: its supernet measures the unaries and judges "
                                 "the candidates (the default search)")
    q.add_argument("--unaries", help="unaries.json (default with --run: measured after training, cached in the run)")
    q.add_argument("--budget", required=True, help="ms ('0.8ms') or share of the widest network ('60%%')")
    q.add_argument("--method", choices=("auto", "select") + METHODS, default="auto",
                   help="auto (default): select with --run, else exact. select: MRF candidates, uniform and greedy "
                        "judged by the supernet on held-out validation images")
    q.add_argument("--margin", default="auto",
                   help="aim this many %% under the budget, against prediction error; auto (default): twice the "
                        "profile's held-out RMS error, or on another machine (the reference runs more than 1.4 x off "
                        "its profiled time) twice a latency check's made here, if larger")
    q.add_argument("--check-networks", type=int, default=CHECK_NETWORKS, metavar="N",
                   help=f"--margin auto on another machine: random networks timed here (default {CHECK_NETWORKS}; "
                        "0: no check, the margin from the profile alone)")
    q.add_argument("--out", default="config.json", help="chosen configuration JSON")
    q.add_argument("--pareto", help="write the Pareto front CSV here (and a PNG beside it)")
    q.set_defaults(fn=cmd_search)
    register_train(sub)
    register_run(sub)


# ---- train / evaluate ---------------------------------------------------------------------
TRAIN_FLAGS = ("space", "input_shape", "dataset", "data", "limit", "val_fraction", "epochs", "batch_size", "lr",
               "momentum", "weight_decay", "schedule", "greedy", "lr_warmup", "n_random", "sampling", "warmup_epochs", "budget",
               "profile", "t_start", "t_end", "threads", "device", "seed", "weights")


def _given_train_settings(args) -> dict:
    """The training settings given on the command line (flags left out are absent)."""
    given = {f: getattr(args, f) for f in TRAIN_FLAGS if getattr(args, f, None) is not None}
    if getattr(args, "no_augment", False):
        given["augment"] = False
    return given


def cmd_train(args) -> int:
    from pathlib import Path

    from .train import RESUMABLE, TrainConfig, load_train_config, train

    run = Path(args.out)
    given = _given_train_settings(args)
    if args.resume and (run / "train_config.json").exists():
        cfg = load_train_config(run)
        differ = {k: v for k, v in given.items() if k not in RESUMABLE and getattr(cfg, k) != v}
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
    t = train(cfg, run, resume=args.resume, progress=not args.quiet)
    if t.rank == 0:
        print(f"unaries: {run / 'unaries.json'}; checkpoint: {run / 'checkpoint.pt'}")
    import torch.distributed as dist

    if dist.is_initialized():  # under torchrun: a group left open can abort a rank in gloo's teardown at exit
        dist.destroy_process_group()
    return 0


def _widths_arg(space, args, default=None) -> list[int]:
    """--widths ('8,16,...', a JSON list, 'x0.75') or --config (a chosen-configuration JSON, checked
    against the space's fingerprint)."""
    from widthnas._io import read_json

    if args.widths:
        return space.parse_widths(args.widths)
    if args.config:
        d = read_json(args.config, "configuration", "make one with `widthnas search --out FILE`")
        if not isinstance(d, dict) or "widths" not in d:
            raise ValueError(f"configuration {args.config} has no \"widths\": it is not a chosen configuration; "
                             "make one with `widthnas search --out FILE`, or give --widths")
        fp = d.get("space", {}).get("fingerprint") if isinstance(d.get("space"), dict) else None
        if fp is not None:
            check_fingerprint(fp, space, f"configuration {args.config}")
        return space.validate(d["widths"])
    if default is None:
        raise ValueError("give --config (from `widthnas search`) or --widths")
    return default


def cmd_evaluate(args) -> int:
    from .cli import UserError, check_calib_images, check_outputs
    from .evaluate import evaluate_config
    from .train import load_run

    check_calib_images(args.calib_images)
    if args.json and not args.against:
        raise UserError("--json writes the flip report of --against: give --against OLD as well")
    check_outputs({"--json": args.json}, [args.config, args.against])
    if args.against:
        from .flips import resolve_previous

        resolve_previous(args.against)  # a wrong path fails before the data is loaded
    cfg, space, sup, splits = load_run(args.run)
    widths = _widths_arg(space, args, space.max_widths)
    r = evaluate_config(sup, widths, splits, args.split, args.calib_images)
    print(f"{args.split} accuracy {r['accuracy']:.4f} (loss {r['loss']:.4f}, {r['images']} images) for widths "
          f"{widths} after BN recalibration on {args.calib_images} training images")
    if args.against:
        from .flips import compare_with_previous

        compare_with_previous(sup, space, widths, splits, args.split, args.calib_images, args.against, args.json)
    return 0


def register_train(sub) -> None:
    q = sub.add_parser("train", help="train the slimmable supernet and record per-layer accuracy loss")
    q.add_argument("--out", required=True, help="run directory")
    q.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    q.add_argument("--space", help="mobilenet_v1_small (default), mobilenet_v1, a graph space (mobilenet_v2(_small), "
                                   "resnet(_small)) or a space JSON file")
    q.add_argument("--input-shape")
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
    q.add_argument("--no-augment", action="store_true")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(fn=cmd_train)

    q = sub.add_parser("evaluate", help="accuracy of a configuration after BN recalibration")
    q.add_argument("--run", required=True, help="training run directory")
    q.add_argument("--widths", help="'8,16,...', a JSON list, or 'x0.75'")
    q.add_argument("--config", help="chosen configuration JSON from `widthnas search`")
    q.add_argument("--split", choices=("val", "test"), default="val")
    q.add_argument("--calib-images", type=int, default=512)
    q.add_argument("--against", metavar="OLD", help="a deployed model (.onnx or a `widthnas run` directory): "
                   "report both accuracies and the negative / positive flip rates")
    q.add_argument("--json", help="with --against: write the flip report here")
    q.set_defaults(fn=cmd_evaluate)


# ---- export / run -------------------------------------------------------------------------
def cmd_export(args) -> int:
    from .cli import UserError, check_calib_images, check_outputs
    from .data import normalize
    from .evaluate import accuracy, calibration_images, recalibrate_bn
    from .export import check_onnx_profile, export_onnx, measure_exported, write_sidecar
    from .train import load_run

    if Path(args.out).suffix.lower() == ".json":
        raise UserError(f"--out {args.out}: the model goes to a .onnx file (its sidecar .json is written beside it)")
    check_calib_images(args.calib_images, zero_ok=bool(args.weights))
    check_outputs({"--out": args.out, "the sidecar of --out": Path(args.out).with_suffix(".json")},
                  [args.profile, args.config, args.space, args.weights])
    if args.weights:
        return _export_weights(args)
    if args.space:
        raise ValueError("--space goes with --weights (export your model's own weights sliced to widths); a supernet "
                         "export takes its space from --run")
    if not args.run:
        raise ValueError("give --run DIR (a `widthnas train` directory whose supernet is sliced), or --weights "
                         "model.pt with --space traced.json (your model's weights sliced to the widths)")
    table = None
    if args.profile:  # checked before anything is written
        from widthnas.latency.registry import load_profile

        table = load_profile(args.profile)
        check_onnx_profile(table)
    cfg, space, sup, sp = load_run(args.run)
    if table is not None:
        check_fingerprint(table.space.fingerprint, space, f"profile {args.profile}")
    widths = _widths_arg(space, args)
    net = sup.materialize(widths)
    recalibrate_bn(net, calibration_images(sp, args.calib_images), sp.mean, sp.std)
    val_acc = accuracy(net, *sp.val, sp.mean, sp.std)[0]
    v = export_onnx(net, space, args.out, normalize(sp.val[0][:256], sp.mean, sp.std))
    extra = {"accuracy": {"val": val_acc}, "verify": v,
             "normalization": {"mean": sp.mean.tolist(), "std": sp.std.tolist()}}  # for --against / --congruent
    if table is not None:
        from widthnas.latency.standalone_runner import LoadGuard

        m = measure_exported(args.out, table, guard=LoadGuard())  # a disturbed machine is said and waited out
        m["predicted_ms"] = table.predict(widths)
        extra["latency"] = m
        print(f"latency: measured {m['normalised_ms']:.4f} ms (at the profile's host speed, read off its {m['read_off']}) vs predicted {m['predicted_ms']:.4f} ms")
        if m["host_note"]:
            print(f"note: {m['host_note']}")
    side = write_sidecar(args.out, widths, space, table, **extra)
    print(f"exported {args.out} (widths {widths}); val acc {val_acc:.4f} after BN recalibration; "
          f"ORT vs torch max abs diff {v['max_abs_diff']:.2e}; sidecar {side}")
    return 0


def _export_weights(args) -> int:
    """export --weights: the user's state_dict sliced to the widths (channels chosen by importance,
    models/trace_weights.py), BN recalibrated and judged on the data of --run when given; ONNX verified."""
    from widthnas.models.graph_families import get_space
    from widthnas.models.trace_weights import keep_channels, load_state_file, user_network

    from .data import normalize
    from .evaluate import accuracy, calibration_images, recalibrate_bn
    from .export import check_onnx_profile, export_onnx, measure_exported, write_sidecar

    if not args.space and not args.run:
        raise ValueError("--weights needs the traced space: --space traced.json (or --run DIR of a run on it)")
    table = None
    if args.profile:
        from widthnas.latency.registry import load_profile

        table = load_profile(args.profile)
        check_onnx_profile(table)
    sd = load_state_file(args.weights)
    space = get_space(args.space) if args.space else None
    sp = None
    if args.run:
        from .train import load_run

        _, run_space, _, sp = load_run(args.run)
        if space is not None:
            check_fingerprint(run_space.fingerprint, space, f"the run {args.run}")
        space = run_space
    if table is not None:
        check_fingerprint(table.space.fingerprint, space, f"profile {args.profile}")
    widths = _widths_arg(space, args, space.base_widths)  # default: the model's own widths
    net = user_network(space, sd, widths)
    keep = keep_channels(space, sd, widths)
    extra: dict = {"weights": str(args.weights),
                   "kept_channels": {g.name: keep[g.name].tolist() for g in space.free_groups}}
    real = None
    if sp is not None:
        if args.calib_images:
            recalibrate_bn(net, calibration_images(sp, args.calib_images), sp.mean, sp.std)
        extra["accuracy"] = {"val": accuracy(net, *sp.val, sp.mean, sp.std)[0]}
        extra["normalization"] = {"mean": sp.mean.tolist(), "std": sp.std.tolist()}
        real = normalize(sp.val[0][:256], sp.mean, sp.std)
    v = export_onnx(net, space, args.out, real)
    extra["verify"] = v
    if table is not None:
        m = measure_exported(args.out, table)
        m["predicted_ms"] = table.predict(widths)
        extra["latency"] = m
        print(f"latency: measured {m['normalised_ms']:.4f} ms (at the profile's host speed, read off its {m['read_off']}) vs predicted {m['predicted_ms']:.4f} ms")
        if m["host_note"]:
            print(f"note: {m['host_note']}")
    side = write_sidecar(args.out, widths, space, table, **extra)
    before = sum(p.numel() for p in user_network(space, sd).parameters())
    after = sum(p.numel() for p in net.parameters())
    print("channels (model -> exported), kept by summed BN |gamma| over each group:")
    for g, w in zip(space.free_groups, widths):
        print(f"  {g.name:24s} {g.base:5d} -> {w}")
    acc = f"; val acc {extra['accuracy']['val']:.4f}" + (" after BN recalibration" if args.calib_images else "") \
        if "accuracy" in extra else ""
    print(f"exported {args.out} from {args.weights}: {before} -> {after} parameters{acc}; ORT vs torch max abs diff "
          f"{v['max_abs_diff']:.2e}; sidecar {side}")
    return 0


def cmd_run(args) -> int:
    from .run import Run, RunConfig, full_config

    cfg = RunConfig()
    if args.full:
        cfg = full_config(cfg)
    for f in ("space", "dataset", "data", "budget", "margin", "profile", "sampling", "epochs", "limit", "batch_size",
              "finetune_epochs", "retrain_epochs", "method", "unary_configs", "seed", "profile_networks", "schedule",
              "heldout_networks", "check_networks", "remeasure_networks", "ladder_rungs", "profile_rounds",
              "profile_round_ms", "verify_rounds", "verify_round_ms",
              "max_wait", "greedy", "previous", "congruent", "congruent_weight", "weights"):
        v = getattr(args, f, None)
        if v is not None:
            setattr(cfg, f, v)
    if args.no_guard:
        cfg.guard = False
    from widthnas.latency.margin import parse_margin

    cfg.margin = parse_margin(cfg.margin)  # "auto" or a number, one spelling per setting (resume compares them)
    _check_feature_options(cfg, args)
    if args.all_data:
        cfg.limit = None
    if cfg.sampling == "aows" and cfg.warmup_epochs >= cfg.epochs:
        cfg.warmup_epochs = max(0, cfg.epochs - 1)
    run = Run(cfg, args.out, progress=not args.quiet)
    run.go()
    print()
    print(run.summary())
    return 0


def _check_feature_options(cfg, args) -> None:
    """Refuse bad --schedule/--greedy/--previous/--congruent settings before any stage runs."""
    from .flips import resolve_previous
    from .greedylr import GreedyOptions

    GreedyOptions.parse(cfg.greedy)
    if cfg.greedy and cfg.schedule != "greedy":
        raise ValueError("--greedy sets GreedyLR options; add --schedule greedy to use them")
    if args.congruent_weight is not None and not cfg.congruent:
        raise ValueError("--congruent-weight needs --congruent OLD.onnx (the model to stay congruent with)")
    if not cfg.congruent_weight > 0:
        raise ValueError(f"--congruent-weight {cfg.congruent_weight}: use a value > 0 (e.g. 1)")
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


def register_run(sub) -> None:
    from widthnas.mrf import METHODS

    q = sub.add_parser("export", help="materialize widths from a supernet run (or your model's weights) and "
                                      "export verified ONNX")
    q.add_argument("--run", help="supernet training run directory (with --weights: its data recalibrates BN)")
    q.add_argument("--weights", help="your model's state_dict (torch.save(model.state_dict(), path)) for a space "
                   "traced with `space --from-model`: sliced to the widths instead of the supernet (default widths: "
                   "the model's own)")
    q.add_argument("--space", help="with --weights: the traced space JSON (else the space of --run)")
    q.add_argument("--config", help="chosen configuration JSON")
    q.add_argument("--widths", help="'8,16,...', a JSON list, or 'x0.75'")
    q.add_argument("--out", required=True, help="model.onnx path (a sidecar .json is written beside it)")
    q.add_argument("--profile", help="also measure latency against this profile's prediction")
    q.add_argument("--calib-images", type=int, default=1024, help="training images to recalibrate BN with "
                   "(>= 1 for a supernet, whose shared statistics fit no single network; with --weights, 0 keeps your "
                   "model's own statistics, and without --run there are no images)")
    q.set_defaults(fn=cmd_export)

    q = sub.add_parser("run", help="the whole pipeline: profile, train, search, fine-tune, export, verify, report")
    q.add_argument("--out", default="runs/demo", help="run directory (a rerun resumes it)")
    q.add_argument("--space", help="mobilenet_v1_small (default), mobilenet_v1, or a graph space: mobilenet_v2(_small), "
                                   "resnet(_small), or a space JSON file")
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
    q.add_argument("--no-guard", action="store_true", help="do not watch the reference network for a disturbed "
                   "machine: every timing is kept as measured (for tiny networks, whose timings spread anyway)")
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
    q.add_argument("--seed", type=int)
    q.add_argument("--full", action="store_true", help="longer, better: all data, 20 epochs, 5 fine-tune epochs")
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
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(fn=cmd_run)
