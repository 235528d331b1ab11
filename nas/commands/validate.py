"""`widthnas validate`: judge a profile on held-out samples, beside the measurement's noise floor;
--elasticity sets its host-state correction."""
from __future__ import annotations

import json
import math
import sys

import numpy as np

from widthnas._io import atomic_write_text

from ..checks import UserError, check_outputs, check_plot_path, check_remeasure
from .validation import add_remeasure_options, load_checked_samples, plot_heldout, validation_record


def add_parser(sub) -> None:
    q = sub.add_parser("validate", help="judge a profile on held-out samples, beside the measurement's noise floor")
    q.add_argument("--profile", required=True)
    q.add_argument("--samples", nargs="+", required=True)
    add_remeasure_options(q)
    q.add_argument("--plot")
    q.add_argument("--json")
    q.add_argument("--out", help="write the profile with this validation (and noise floor) here; the auto margin "
                   "of search and run then uses them")
    q.add_argument("--elasticity", help="auto: choose the host-state correction's elasticity k on these samples "
                   "(timed while the machine ran at another speed than when profiled; the table is kept), or a "
                   "number in [0, 2]; recorded in the profile with --out")
    q.add_argument("--force", action="store_true", help="allow --out to replace a shipped profile in hw_profiles/")


def run(args) -> int:
    from widthnas.latency.fit import FlopsProxy
    from widthnas.latency.registry import load_profile

    check_outputs({"--out": args.out, "--json": args.json, "--plot": args.plot, "--remeasure-out": args.remeasure_out},
                  {"--profile": args.profile, "--samples": args.samples,
                   "--remeasure-out": args.remeasure_out},  # re-measurements kept there are resumed
                  force=args.force, in_place={"--out": "--profile"})  # the profile itself, now validated
    args.elasticity = parse_elasticity(args.elasticity)
    check_plot_path(args.plot)
    remeasure = check_remeasure(args)
    table = load_profile(args.profile)
    _, h = load_checked_samples(args.samples, table.space, "held-out samples", table.device)
    if args.elasticity is not None:
        set_elasticity(table, h, args.elasticity, args.samples)
    proxy = FlopsProxy.from_profile(table)
    v = validation_record(table, h, proxy, args.samples, remeasure, args.remeasure_out)
    if args.plot and proxy:
        plot_heldout(args.plot, table, h, proxy)
    if args.json:
        atomic_write_text(args.json, json.dumps(v, indent=1))
    if args.out:
        table.validation = {**v, "command": "widthnas " + " ".join(getattr(args, "argv", sys.argv[1:]))}
        table.save(args.out)
        print(f"profile with this validation written to {args.out}")
    return 0


ELASTICITY_GRID = tuple(np.round(np.arange(0.0, 1.51, 0.125), 3))  # k tried by validate --elasticity auto


def parse_elasticity(text: str | None) -> str | float | None:
    from widthnas.latency.host_state import ELASTICITY_RANGE

    if text is None or text == "auto":
        return text
    try:
        k = float(text)
    except ValueError:
        k = float("nan")
    if not (math.isfinite(k) and ELASTICITY_RANGE[0] <= k <= ELASTICITY_RANGE[1]):
        raise UserError(f"--elasticity {text}: give auto (chosen on these samples) or a number in "
                        f"[{ELASTICITY_RANGE[0]:g}, {ELASTICITY_RANGE[1]:g}] (0: plain normalisation)")
    return k


def set_elasticity(table, h, how, files) -> None:
    """validate --elasticity: set the profile's host-state elasticity (auto: chosen on these held-out
    timings, which must have been taken at other host speeds than profiling) and widen its recorded
    host-speed range to theirs. The table's entries are not touched."""
    from widthnas.latency.host_state import calibrate_elasticity, read_elasticity, read_speed_range

    old_k = read_elasticity(table.fit, table.name or "profile")
    s = h.ref_ms / table.reference_ms
    lo, hi = read_speed_range(table.fit) if "host_speed_range" in table.fit else (1.0, 1.0)
    rec: dict = {"samples": [str(f) for f in files], "n": len(h), "previous": old_k,
                 "host_speed": [float(s.min()), float(s.max())]}
    if how == "auto":
        c = calibrate_elasticity(table.predict_many(h.widths), h.norm, h.ref_ms, table.reference_ms, ELASTICITY_GRID)
        k = c["k"]
        rec.update(rmspe=[{"k": kk, "rmspe": v} for kk, v in c["rmspe"].items()],
                   selection_cv_rmspe=c["selection_cv_rmspe"])
        print(f"elasticity: host speed {s.min():.3f}-{s.max():.3f} x the profile's; RMSPE "
              + ", ".join(f"k={kk:g} {v:.2%}" for kk, v in c["rmspe"].items())
              + f"; chosen k={k:g} (was {old_k:g}; choosing it on other folds: RMSPE {c['selection_cv_rmspe']:.2%})")
    else:
        k = how
        print(f"elasticity: set to k={k:g} (was {old_k:g})")
    rec["k"] = k
    table.fit = {**table.fit, "elasticity": k, "elasticity_calibration": rec,
                 "host_speed_range": [float(min(lo, s.min(), 1.0)), float(max(hi, s.max(), 1.0))]}
