"""`widthnas evaluate`: accuracy of a configuration after BN recalibration (and its flips --against OLD)."""
from __future__ import annotations

from ..checks import UserError, check_calib_images, check_outputs, previous_inputs, run_inputs
from .options import widths_arg


def add_parser(sub) -> None:
    q = sub.add_parser("evaluate", help="accuracy of a configuration after BN recalibration")
    q.add_argument("--run", required=True, help="training run directory")
    q.add_argument("--widths", help="'8,16,...', a JSON list, or 'x0.75'")
    q.add_argument("--config", help="chosen configuration JSON from `widthnas search`")
    q.add_argument("--split", choices=("val", "test"), default="val")
    q.add_argument("--calib-images", type=int, default=512)
    q.add_argument("--against", metavar="OLD", help="a deployed model (.onnx or a `widthnas run` directory): "
                   "report both accuracies and the negative / positive flip rates")
    q.add_argument("--json", help="with --against: write the flip report here")


def run(args) -> int:
    from ..evaluate import evaluate_config
    from ..train import load_run

    check_calib_images(args.calib_images)
    if args.json and not args.against:
        raise UserError("--json writes the flip report of --against: give --against OLD as well")
    check_outputs({"--json": args.json}, [("--config", args.config), ("--against", previous_inputs(args.against)),
                                          *run_inputs(args.run)])
    if args.against:
        from ..flips import compare_with_previous, resolve_previous

        resolve_previous(args.against)  # a wrong path fails before the data is loaded
    cfg, space, sup, splits = load_run(args.run)
    widths = widths_arg(space, args, space.max_widths)
    r = evaluate_config(sup, widths, splits, args.split, args.calib_images)
    print(f"{args.split} accuracy {r['accuracy']:.4f} (loss {r['loss']:.4f}, {r['images']} images) for widths "
          f"{widths} after BN recalibration on {args.calib_images} training images")
    if args.against:
        compare_with_previous(sup, space, widths, splits, args.split, args.calib_images, args.against, args.json)
    return 0
