"""`widthnas export`: materialize widths from a supernet run (or your model's weights) and export
verified ONNX."""
from __future__ import annotations

from pathlib import Path

from widthnas.models.space import check_fingerprint

from ..checks import UserError, check_calib_images, check_outputs, run_inputs
from .options import widths_arg


def add_parser(sub) -> None:
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


def run(args) -> int:
    from ..data import normalize
    from ..evaluate import accuracy, calibration_images, recalibrate_bn
    from ..export import check_onnx_profile, export_onnx, write_sidecar
    from ..train import load_run

    if Path(args.out).suffix.lower() == ".json":
        raise UserError(f"--out {args.out}: the model goes to a .onnx file (its sidecar .json is written beside it)")
    check_calib_images(args.calib_images, zero_ok=bool(args.weights))
    check_outputs({"--out": args.out, f"the sidecar of --out {args.out}": Path(args.out).with_suffix(".json")},
                  [*{"--profile": args.profile, "--config": args.config, "--space": args.space,
                     "--weights": args.weights}.items(), *run_inputs(args.run)])
    if args.space and not args.weights:
        raise ValueError("--space goes with --weights (export your model's own weights sliced to widths); a supernet "
                         "export takes its space from --run")
    if not args.run and not args.weights:
        raise ValueError("give --run DIR (a `widthnas train` directory whose supernet is sliced), or --weights "
                         "model.pt with --space traced.json (your model's weights sliced to the widths)")
    if not args.space and not args.run:
        raise ValueError("--weights needs the traced space: --space traced.json (or --run DIR of a run on it)")
    table = None
    if args.profile:  # checked before anything is loaded or written
        from widthnas.latency.registry import load_profile

        table = load_profile(args.profile)
        check_onnx_profile(table)
    if args.weights:
        return _export_weights(args, table)
    cfg, space, sup, sp = load_run(args.run)
    if table is not None:
        check_fingerprint(table.space.fingerprint, space, f"profile {args.profile}")
    widths = widths_arg(space, args)
    net = sup.materialize(widths)
    recalibrate_bn(net, calibration_images(sp, args.calib_images), sp.mean, sp.std)
    val_acc = accuracy(net, *sp.val, sp.mean, sp.std)[0]
    v = export_onnx(net, space, args.out, normalize(sp.val[0][:256], sp.mean, sp.std))
    extra = {"accuracy": {"val": val_acc}, "verify": v,
             "normalization": {"mean": sp.mean.tolist(), "std": sp.std.tolist()}}  # for --against / --congruent
    if table is not None:
        from widthnas.latency.standalone_runner import LoadGuard

        extra["latency"] = _measured(args.out, table, widths, LoadGuard())  # a disturbed machine is waited out
    side = write_sidecar(args.out, widths, space, table, **extra)
    print(f"exported {args.out} (widths {widths}); val acc {val_acc:.4f} after BN recalibration; "
          f"ORT vs torch max abs diff {v['max_abs_diff']:.2e}; sidecar {side}")
    return 0


def _export_weights(args, table) -> int:
    """export --weights: the user's state_dict sliced to the widths (channels chosen by importance,
    models/trace_weights.py), BN recalibrated and judged on the data of --run when given; ONNX verified."""
    from widthnas.models.families import get_space
    from widthnas.models.trace_weights import keep_channels, load_state_file, user_network

    from ..data import normalize
    from ..evaluate import accuracy, calibration_images, recalibrate_bn
    from ..export import export_onnx, write_sidecar
    from ..train import load_run

    sd = load_state_file(args.weights)
    space = get_space(args.space) if args.space else None
    sp = None
    if args.run:
        _, run_space, _, sp = load_run(args.run)
        if space is not None:
            check_fingerprint(run_space.fingerprint, space, f"the run {args.run}")
        space = run_space
    if table is not None:
        check_fingerprint(table.space.fingerprint, space, f"profile {args.profile}")
    widths = widths_arg(space, args, space.base_widths)  # default: the model's own widths
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
        extra["latency"] = _measured(args.out, table, widths)
    side = write_sidecar(args.out, widths, space, table, **extra)
    before = sum(p.numel() for p in user_network(space, sd).parameters())
    after = sum(p.numel() for p in net.parameters())
    print("channels (model -> exported), kept by importance over each group (BN |gamma| and what reads them):")
    for g, w in zip(space.free_groups, widths):
        print(f"  {g.name:24s} {g.base:5d} -> {w}")
    acc = f"; val acc {extra['accuracy']['val']:.4f}" + (" after BN recalibration" if args.calib_images else "") \
        if "accuracy" in extra else ""
    print(f"exported {args.out} from {args.weights}: {before} -> {after} parameters{acc}; ORT vs torch max abs diff "
          f"{v['max_abs_diff']:.2e}; sidecar {side}")
    return 0


def _measured(path, table, widths, guard=None) -> dict:
    """The exported model timed here beside the profile's prediction, said in one line (and its host note)."""
    from widthnas.nas.export import measure_exported

    m = measure_exported(path, table, guard=guard)
    m["predicted_ms"] = table.predict(widths)
    print(f"latency: measured {m['normalised_ms']:.4f} ms (at the profile's host speed, read off its {m['read_off']}) "
          f"vs predicted {m['predicted_ms']:.4f} ms")
    if m["host_note"]:
        print(f"note: {m['host_note']}")
    return m
