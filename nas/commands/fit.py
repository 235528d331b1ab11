"""`widthnas fit`: fit a per-op latency table to samples (validated on --heldout ones)."""
from __future__ import annotations

from pathlib import Path

from ..checks import UserError, check_outputs, check_plot_path, check_remeasure
from .options import add_space_options, space_file, space_from_args
from .validation import add_remeasure_options, load_checked_samples, plot_heldout, validation_record


def add_parser(sub) -> None:
    q = sub.add_parser("fit", help="fit a per-op latency table to samples")
    add_space_options(q)
    q.add_argument("--samples", nargs="+", required=True)
    q.add_argument("--heldout", nargs="+", help="samples from a separate run to validate on")
    add_remeasure_options(q)
    q.add_argument("--out", required=True, help="profile JSON, e.g. hw_profiles/<device>.json")
    q.add_argument("--name")
    q.add_argument("--folds", type=int, default=5)
    q.add_argument("--keying", choices=("signature", "op"), default="signature",
                   help="entries shared by ops of one signature (default), or one set per op (more unknowns)")
    q.add_argument("--plot", help="predicted-vs-measured PNG (needs --heldout)")
    q.add_argument("--force", action="store_true", help="allow --out to replace a shipped profile in hw_profiles/")


def run(args) -> int:
    from widthnas.latency.fit import FitSettings, FlopsProxy, fit_profile

    check_outputs({"--out": args.out, "--plot": args.plot, "--remeasure-out": args.remeasure_out},
                  {"--samples": args.samples, "--heldout": args.heldout, "--space": space_file(args.space),
                   "--remeasure-out": args.remeasure_out},  # re-measurements kept there are resumed
                  force=args.force)
    if args.folds < 2:
        raise UserError(f"--folds {args.folds}: cross-validation needs at least 2 folds (default 5)")
    if args.plot and not args.heldout:
        raise UserError("--plot draws predicted against measured held-out latency: give --heldout too")
    check_plot_path(args.plot)
    if args.remeasure_out and not args.heldout:
        raise UserError("--remeasure-out times held-out networks again: give --heldout too")
    remeasure = check_remeasure(args)
    space_of = lambda header_space: space_from_args(args, header_space)  # noqa: E731
    space, s = load_checked_samples(args.samples, space_of)
    table = fit_profile(space, s, FitSettings(folds=args.folds), args.name or Path(args.out).stem,
                        keying=args.keying)
    proxy = FlopsProxy.from_profile(table)
    if args.heldout:
        _, h = load_checked_samples(args.heldout, space_of, "held-out samples")
        table.validation = validation_record(table, h, proxy, args.heldout, remeasure, args.remeasure_out)
        if args.plot:
            plot_heldout(args.plot, table, h, proxy)
    table.save(args.out)
    print(f"profile written to {args.out}: {table.fit['entries']} entries, "
          f"reference {table.reference_ms:.3f} ms, intercept {table.intercept:.4f} ms")
    return 0
