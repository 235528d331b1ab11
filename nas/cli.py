"""The `widthnas` command line: one subcommand per pipeline stage."""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np


class UserError(Exception):
    """Bad input: printed as one clear line, exit code 2."""


def _space(args, header_space: dict | None = None):
    """The space of --space, or else of a samples header's definition."""
    from widthnas.models.graph_families import get_space
    from widthnas.models.graph_space import GraphSpace

    if header_space is not None and not args.space:
        return GraphSpace.from_dict(header_space, "the samples header's space")
    space = get_space(args.space or "mobilenet_v1_small")
    if getattr(args, "input_shape", None):
        space = space.with_input(args.input_shape)
    return space


# ---- profile ---------------------------------------------------------------------------
def cmd_profile(args) -> int:
    from widthnas.latency.profile import profile, write_bundle

    for flag, v in (("--threads", args.threads), ("--batch", args.batch), ("-n/--networks", args.networks)):
        if v < 1:
            raise UserError(f"{flag} {v}: give a whole number >= 1 (onnxruntime reads --threads 0 as 'all cores', "
                            "which the profile would not record)" if flag == "--threads" else
                            f"{flag} {v}: give a whole number >= 1")
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise UserError(f"--time-limit {args.time_limit}: give a positive number of seconds (rerun to continue)")
    space = _space(args)
    if args.bundle:
        out = write_bundle(space, args.bundle, args.networks, args.sampling, args.seed, args.batch)
        print(f"bundle of {args.networks} networks in {out}: copy it to the device and run "
              f"`python3 runner.py --out samples.jsonl` there (needs numpy and onnxruntime only)")
        return 0
    from widthnas.latency import standalone_runner as sr
    from widthnas.latency.backends import make_backend

    if args.rounds < 1 or not (math.isfinite(args.round_ms) and args.round_ms > 0):
        raise UserError(f"--rounds {args.rounds} / --round-ms {args.round_ms}: give a whole number >= 1 and a "
                        "positive, finite number of ms")
    if args.max_rounds != 0 and args.max_rounds < args.rounds:
        raise UserError(f"--max-rounds {args.max_rounds}: give 0 (up to {sr.ROUNDS_CAP} x --rounds, the default) or a "
                        f"whole number >= --rounds {args.rounds} (equal to it: a fixed number of rounds)")
    if not (math.isfinite(args.max_wait) and 0 <= args.max_wait <= 86400):
        raise UserError(f"--max-wait {args.max_wait}: give the seconds to wait for a disturbed machine, 0 to 86400")
    guard = None if args.no_guard else sr.GuardSettings(max_wait_s=args.max_wait)
    backend = make_backend(space, args.backend, args.provider, args.threads, args.batch, args.opt_level)
    protocol = sr.Protocol(args.rounds, args.round_ms, max_rounds=args.max_rounds, guard=guard)
    added = profile(space, args.out, args.networks, backend, args.sampling, args.seed, progress=not args.quiet,
                    time_limit_s=args.time_limit, protocol=protocol)
    print(f"{added} networks measured; {args.out} now holds the samples ({space.name}, {backend.device_info()['provider']})")
    return 0


# ---- fit / validate --------------------------------------------------------------------
def _load(paths, args, what: str = "samples"):
    from widthnas.latency.standalone_runner import read_samples
    from widthnas.latency.samples import load_samples

    for p in paths:
        if not Path(p).exists():
            raise UserError(f"samples file {p} not found; create it with `widthnas profile --out {p}`")
    header, _, _ = read_samples(paths[0])
    space = _space(args, header["space"].get("def"))
    with warnings.catch_warnings(record=True):  # counted and reported below, once
        warnings.simplefilter("always")
        s = load_samples(paths, space)
    for line in s.describe(what):
        print(f"warning: {line}", file=sys.stderr)
    return space, s


def cmd_fit(args) -> int:
    from widthnas.latency.fit import FitSettings, FlopsProxy
    from widthnas.latency.graph_fit import fit_profile

    _refuse_shipped(args.out, args.force)
    _refuse_inputs(args.out, args.samples + (args.heldout or []), "--out")
    if args.folds < 2:
        raise UserError(f"--folds {args.folds}: cross-validation needs at least 2 folds (default 5)")
    if args.plot and not args.heldout:
        raise UserError("--plot draws predicted against measured held-out latency: give --heldout too")
    _check_plot_path(args.plot)
    if args.remeasure_out and not args.heldout:
        raise UserError("--remeasure-out times held-out networks again: give --heldout too")
    remeasure = _check_remeasure(args, args.samples + (args.heldout or []) + [args.out])
    space, s = _load(args.samples, args)
    table = fit_profile(space, s, FitSettings(folds=args.folds), args.name or Path(args.out).stem,
                        keying=args.keying)
    proxy = FlopsProxy.from_profile(table)
    if args.heldout:
        _, h = _load(args.heldout, args, "held-out samples")
        table.validation = _validation(table, h, proxy, args.heldout, remeasure, args.remeasure_out)
        if args.plot:
            _plot(args.plot, table, h, proxy)
    table.save(args.out)
    n_entries = table.fit["entries"]
    print(f"profile written to {args.out}: {n_entries} entries, "
          f"reference {table.reference_ms:.3f} ms, intercept {table.intercept:.4f} ms")
    return 0


def _refuse_shipped(out: str, force: bool, flag: str = "--out") -> None:
    """A shipped profile holds validated figures: overwrite it only when asked to."""
    from widthnas.latency.registry import refuse_shipped

    refuse_shipped(out, force, flag)


def _refuse_inputs(out: str | None, inputs, flag: str) -> None:
    """An output that is one of the command's input files would destroy measurements: refuse it."""
    if out is None:
        return
    for p in inputs:
        if Path(out).resolve() == Path(p).resolve():
            raise UserError(f"{flag} {out} is one of the input files; its measurements would be overwritten. "
                            "Choose another path")


def check_outputs(outputs: dict[str, str | Path | None], inputs, force: bool = False) -> None:
    """Before anything is computed: no output may be an input file, a shipped profile (unless
    `force`), or another output of the same command. `outputs` maps the option that names a file
    (or what it is, e.g. "the sidecar of --out") to its path; None entries are skipped."""
    seen: dict[Path, str] = {}
    for flag, out in outputs.items():
        if out is None:
            continue
        _refuse_inputs(str(out), [p for p in inputs if p is not None], flag)
        _refuse_shipped(str(out), force, flag)
        r = Path(out).resolve()
        if r in seen:
            raise UserError(f"{flag} {out} is also {seen[r]}: one would overwrite the other; choose two paths")
        seen[r] = flag


def _check_plot_path(path: str | None) -> None:
    """A plot path matplotlib can write, checked before the fit or the measurements it would follow."""
    if path is None:
        return
    import matplotlib

    ok = matplotlib.figure.Figure().canvas.get_supported_filetypes()
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in ok:
        raise UserError(f"--plot {path}: give a file ending in one of {', '.join('.' + e for e in sorted(ok))} "
                        "(e.g. fit.png)")


def check_calib_images(n: int, zero_ok: bool = False) -> None:
    """--calib-images: recalibrating BatchNorm on no images would reset its statistics to 0 and 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < (0 if zero_ok else 1):
        raise UserError(f"--calib-images {n}: use 1 or more (e.g. 1024)" + (", or 0 to keep the model's own "
                        "BatchNorm statistics" if zero_ok else "; a supernet's shared statistics fit no single "
                        "network, so they must be re-estimated"))


def _check_remeasure(args, inputs) -> int:
    """--remeasure N (0 = off) and --remeasure-out, checked before anything is measured or written;
    `inputs` are the command's other files, which --remeasure-out must not be."""
    from widthnas.latency.noise_floor import check_count

    n = check_count(args.remeasure)
    if args.remeasure_out is not None:
        if n == 0:
            raise UserError("--remeasure-out needs --remeasure N > 0")
        _refuse_inputs(args.remeasure_out, inputs, "--remeasure-out")
        _refuse_shipped(args.remeasure_out, False, "--remeasure-out")
    return n


def _validation(table, h, proxy, heldout_paths, remeasure: int, remeasure_out) -> dict:
    """The profile's validation record on held-out samples h: the metrics, what the load found, and
    (remeasure > 0) the measured noise floor with which of the two limits the figures; printed too."""
    from widthnas.latency.noise_floor import FloorUnavailable, describe, limiting, measure_floor
    from widthnas.latency.validate import validate

    v = validate(table, h, proxy)
    v["heldout_files"] = [str(p) for p in heldout_paths]
    v["heldout_quality"] = h.quality()
    _print_validation(v)
    if remeasure:
        try:
            floor = measure_floor(h, remeasure, table.space, table.measured_ms, out=remeasure_out,
                                  log=lambda m: print(m, file=sys.stderr, flush=True), progress=sys.stderr.isatty())
        except FloorUnavailable as e:
            print(f"noise floor: not measured: {e}")
        else:
            floor.update(limiting(v["table"]["rmspe"], floor))
            v["noise_floor"] = floor
            print(describe(floor))
            print(f"limits: {floor['verdict']}")
    return v


def _plot(path, table, h, proxy) -> None:
    from widthnas.latency.validate import scatter_plot

    meas = table.measured_ms(h.norm, h.ref_ms)
    scatter_plot(path, meas, {"table": table.predict_many(h.widths),
                              "FLOPs proxy": proxy.predict_many(table.space, h.widths) * table.reference_ms
                              / proxy.reference_ms},
                 f"{table.name}: held-out n={len(h)}")
    print(f"plot: {path}")


def _print_validation(v: dict) -> None:
    for name, m in v.items():
        if isinstance(m, dict) and "nrmse" in m and name != "noise_floor":
            print(f"{name:12s} n={m['n']}  NRMSE {m['nrmse']:.2%}  RMSPE {m['rmspe']:.2%}  "
                  f"within ±5% {m['within_5']:.1%}  ±10% {m['within_10']:.1%}  Kendall τ {m['kendall_tau']:.3f}")


def cmd_validate(args) -> int:
    from widthnas.latency.fit import FlopsProxy
    from widthnas.latency.registry import load_profile
    from widthnas.latency.samples import load_samples

    if args.out:
        _refuse_shipped(args.out, args.force)
        _refuse_inputs(args.out, args.samples, "--out")
    _refuse_inputs(args.json, args.samples + [args.profile], "--json")
    args.elasticity = _parse_elasticity(args.elasticity)
    _check_plot_path(args.plot)
    remeasure = _check_remeasure(args, args.samples + [args.profile] + [p for p in (args.out, args.json) if p])
    table = load_profile(args.profile)
    for p in args.samples:
        if not Path(p).exists():
            raise UserError(f"samples file {p} not found; create it with `widthnas profile --out {p}`")
    with warnings.catch_warnings(record=True):  # counted and reported below, once
        warnings.simplefilter("always")
        h = load_samples(args.samples, table.space, table.device)  # refuses another space or device
    for line in h.describe("held-out samples"):
        print(f"warning: {line}", file=sys.stderr)
    if args.elasticity is not None:
        _calibrate_elasticity(table, h, args.elasticity, args.samples)
    proxy = FlopsProxy.from_profile(table)
    v = _validation(table, h, proxy, args.samples, remeasure, args.remeasure_out)
    if args.plot and proxy:
        _plot(args.plot, table, h, proxy)
    if args.json:
        from widthnas._io import atomic_write_text

        atomic_write_text(args.json, json.dumps(v, indent=1))
    if args.out:
        table.validation = {**v, "command": "widthnas " + " ".join(getattr(args, "argv", sys.argv[1:]))}
        table.save(args.out)
        print(f"profile with this validation written to {args.out}")
    return 0


ELASTICITY_GRID = tuple(np.round(np.arange(0.0, 1.51, 0.125), 3))  # k tried by validate --elasticity auto


def _parse_elasticity(text: str | None) -> str | float | None:
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


def _calibrate_elasticity(table, h, how, files) -> None:
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


def cmd_ladder(args) -> int:
    """Time the profile's ladder of reference networks on this machine, while it runs at its profiled speed."""
    from widthnas.latency import standalone_runner as sr
    from widthnas.latency.ref_ladder import measure_ladder
    from widthnas.latency.registry import load_profile

    from .export import verify_timing

    if args.rungs < 2 or args.repeats < 3:
        raise UserError(f"--rungs {args.rungs} / --repeats {args.repeats}: give at least 2 rungs and 3 timings per rung")
    if not (math.isfinite(args.tolerance) and 0 < args.tolerance < 50):
        raise UserError(f"--tolerance {args.tolerance}: give the % the reference may run off its profiled time, in (0, 50)")
    if not (math.isfinite(args.max_wait) and 0 <= args.max_wait <= 86400):
        raise UserError(f"--max-wait {args.max_wait}: give the seconds to wait per rung, 0 to 86400")
    _refuse_shipped(args.out, args.force)
    table = load_profile(args.profile)
    try:
        be, protocol = verify_timing(table)
    except ValueError as e:
        raise UserError(str(e)) from None
    diff = sr.device_differences(table.device, be.device_info())
    if diff:
        raise UserError(f"{args.profile} was measured on another device "
                        f"({sr.describe_differences(diff, 'in the profile', 'here')}); time its ladder on that device")
    try:
        ladder = measure_ladder(table, be, protocol, args.rungs, args.repeats, args.tolerance / 100,
                                max_wait_s=args.max_wait)  # checked as a profile load checks it
    except ValueError as e:
        raise UserError(f"{e}; nothing was written" if "does not belong" in str(e) else str(e)) from None
    table.fit = {**table.fit, "ref_ladder": ladder}
    table.save(args.out)
    print(f"ladder of {len(ladder['rungs'])} rungs (host speed {ladder['host_speed'][0]:.3f}-"
          f"{ladder['host_speed'][1]:.3f} x profiled) written into {args.out}: verifications read networks off it")
    return 0


def cmd_profiles(args) -> int:
    from widthnas.latency.registry import shipped_profiles

    for p in shipped_profiles():
        d = json.loads(p.read_text())
        dev, v = d.get("device", {}), d.get("validation", {}).get("table", {})
        acc = f"held-out ±10% {v['within_10']:.1%}, NRMSE {v['nrmse']:.2%}" if v else "not validated"
        floor = d.get("validation", {}).get("noise_floor")
        if isinstance(floor, dict) and isinstance(floor.get("nrmse"), (int, float)):
            acc += f", re-measured NRMSE {floor['nrmse']:.2%}"
        lad = (d.get("fit") or {}).get("ref_ladder")
        acc += f", ladder of {len(lad['rungs'])} rungs" if isinstance(lad, dict) and isinstance(lad.get("rungs"), list) \
            else ", no ladder"
        print(f"{p.stem:40s} {d['space']['name']:20s} {dev.get('backend')}/{dev.get('provider')} "
              f"{dev.get('threads')}T b{dev.get('batch')} {dev.get('isa') or 'ISA not recorded'} ref {d['reference_ms']:.3f} ms  {acc}")
    return 0


def cmd_space(args) -> int:
    from widthnas.models.graph_families import get_space

    if args.from_model:
        space = _traced_space(args)
    else:
        if args.max_mult is not None or args.levels is not None:
            raise UserError("--max-mult and --levels set the width choices of a traced model: use them with "
                            "--from-model")
        space = get_space(args.space or "mobilenet_v1_small")
        if args.input_shape:
            space = space.with_input(args.input_shape)
        if args.fixed or args.tie:
            from widthnas.models.trace import apply_constraints

            space = apply_constraints(space, _names(args.fixed), [_names(t) for t in args.tie or ()])
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            raise UserError(f"{out} exists; choose another --out, or pass --force to replace it")
    _print_space(space)
    if args.json:
        print(json.dumps(space.to_dict(), indent=1))
    if args.out:
        from widthnas._io import atomic_write_text

        atomic_write_text(args.out, json.dumps(space.to_dict(), indent=1))
        print(f"space written to {args.out}; use it with --space {args.out} in profile, train, run, export")
    return 0


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _traced_space(args):
    """`--from-model package.module:factory --input-shape C,H,W`: the user's model traced (models/trace.py)."""
    from widthnas.models.trace import load_factory, parse_input_shape, trace_model

    if args.space:
        raise UserError("give --from-model (trace your model) or --space (a shipped space or file), not both")
    if not args.input_shape:
        raise UserError("--from-model needs --input-shape C,H,W (one image, e.g. 3,32,32): the model is run once "
                        "on it to know every tensor's shape")
    shape = parse_input_shape(args.input_shape)
    model, spec = load_factory(args.from_model)
    name = args.name or spec.split(":")[1]
    return trace_model(model, shape, name, spec, _names(args.fixed), [_names(t) for t in args.tie or ()],
                       1.0 if args.max_mult is None else args.max_mult, 14 if args.levels is None else args.levels)


def _print_space(space) -> None:
    """Groups (the search variables), their choices, and the costed ops each one's channels enter or leave
    (for a traced space: the model's layers whose output each group is)."""
    touches = space.touches()
    print(f"{space.name}  input {space.input_shape}  classes {space.num_classes}  fingerprint {space.fingerprint}  "
          f"{len(space.free_groups)} free groups, {len(space.graph.ops)} ops, "
          f"{space.macs(space.base_widths) / 1e6:.1f} M MACs at base widths")
    if space.source is not None:
        from widthnas.models.trace import format_groups

        print(f"traced from {space.source.factory}; channel groups (one width each):")
        print("\n".join(format_groups(space)))
        return
    for g in space.groups:
        what = "fixed" if g.fixed else f"base {g.base:5d}  choices {list(g.choices)}"
        print(f"  {g.name:12s} {what}")
        print(f"  {'':12s} ops: {', '.join(touches[g.name])}")


# ---- parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="widthnas", description="Hardware-aware channel-width search (AOWS).")
    sub = p.add_subparsers(dest="cmd", required=True)

    def space_opts(q, default=None):
        q.add_argument("--space", default=default, help="mobilenet_v1_small (default), mobilenet_v1, mobilenet_v2"
                       "(_small), resnet(_small), or a space JSON file (`widthnas space --json`, --from-model)")
        q.add_argument("--input-shape", help="C,H,W to override the space's input shape")

    def remeasure_opts(q):
        from widthnas.latency.noise_floor import DEFAULT_REMEASURE

        q.add_argument("--remeasure", type=int, default=DEFAULT_REMEASURE, metavar="N",
                       help="time the first N held-out networks again (same backend and protocol, on the device "
                       f"that measured them) for the measurement's noise floor; 0: skip (default {DEFAULT_REMEASURE})")
        q.add_argument("--remeasure-out", metavar="JSONL", help="keep the re-measurements here (resumable); never "
                       "an input file")

    q = sub.add_parser("space", help="show a search space, its channel groups and their width choices")
    q.add_argument("--space", help="mobilenet_v1_small (default), mobilenet_v1, mobilenet_v2, "
                   "mobilenet_v2_small, resnet, resnet_small, or a space JSON file")
    q.add_argument("--input-shape", help="C,H,W to override the space's input shape (with --from-model: the "
                   "shape the model is traced on, required)")
    q.add_argument("--json", action="store_true")
    q.add_argument("--from-model", metavar="PKG.MODULE:FACTORY", help="trace your own nn.Module into a graph "
                   "space: a function or class (called without arguments) in an importable module or a .py file, "
                   "e.g. mymodels:make_resnet or path/to/models.py:make_resnet")
    q.add_argument("--name", help="--from-model: the space's name (default: the factory's)")
    q.add_argument("--fixed", help="layers kept at their own width: module paths, comma-separated (a block's path "
                   "fixes every conv in it), e.g. conv1,layer4")
    q.add_argument("--tie", action="append", metavar="A,B[,...]", help="give the listed layers' output channels one "
                   "width (merge their groups by hand); repeatable")
    q.add_argument("--max-mult", type=float, help="--from-model: widest choice as a multiple of the model's own "
                   "widths (default 1.0: the model is the widest network, so its weights slice to every choice)")
    q.add_argument("--levels", type=int, help="--from-model: width levels per group between 0.2x and --max-mult "
                   "(default 14, as the shipped spaces; fewer: a quicker profile fit and search)")
    q.add_argument("--out", help="write the space JSON here (refused if it exists, unless --force)")
    q.add_argument("--force", action="store_true", help="let --out replace an existing file")
    q.set_defaults(fn=cmd_space)

    q = sub.add_parser("profile", help="time random-width networks on this device into a samples JSONL")
    space_opts(q)
    q.add_argument("--out", default="samples.jsonl")
    q.add_argument("-n", "--networks", type=int, default=1000, help="total networks the file should hold")
    q.add_argument("--sampling", choices=("coverage", "uniform"), default="coverage")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--backend", choices=("onnxruntime", "torch"), default="onnxruntime")
    q.add_argument("--provider", help="ORT execution provider (default CPUExecutionProvider) or torch device (cpu, cuda)")
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--batch", type=int, default=1)
    q.add_argument("--opt-level", choices=("disable", "basic", "extended", "all"), default="all")
    q.add_argument("--rounds", type=int, default=5, help="alternating net/reference timing rounds per sample")
    q.add_argument("--round-ms", type=float, default=10.0, help="length of one timing round, ms")
    q.add_argument("--max-rounds", type=int, default=0, help="rounds a sample may grow to while its interval is "
                   "wider than ±1 %% (default 0: 12 x --rounds; smaller is quicker and noisier)")
    q.add_argument("--time-limit", type=float, help="stop after this many seconds (rerun to continue)")
    q.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for a disturbed machine to settle "
                   "before measuring a sample again (the load guard; default 60)")
    q.add_argument("--no-guard", action="store_true", help="do not watch the reference network for a disturbed "
                   "machine (every sample is kept as measured)")
    q.add_argument("--bundle", help="write an edge-device bundle to this directory instead of timing here")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(fn=cmd_profile)

    q = sub.add_parser("fit", help="fit a per-op latency table to samples")
    space_opts(q)
    q.add_argument("--samples", nargs="+", required=True)
    q.add_argument("--heldout", nargs="+", help="samples from a separate run to validate on")
    remeasure_opts(q)
    q.add_argument("--out", required=True, help="profile JSON, e.g. hw_profiles/<device>.json")
    q.add_argument("--name")
    q.add_argument("--folds", type=int, default=5)
    q.add_argument("--keying", choices=("signature", "op"), default="signature",
                   help="entries shared by ops of one signature (default), or one set per op (more unknowns)")
    q.add_argument("--plot", help="predicted-vs-measured PNG (needs --heldout)")
    q.add_argument("--force", action="store_true", help="allow --out to replace a shipped profile in hw_profiles/")
    q.set_defaults(fn=cmd_fit)

    q = sub.add_parser("validate", help="judge a profile on held-out samples, beside the measurement's noise floor")
    q.add_argument("--profile", required=True)
    q.add_argument("--samples", nargs="+", required=True)
    remeasure_opts(q)
    q.add_argument("--plot")
    q.add_argument("--json")
    q.add_argument("--out", help="write the profile with this validation (and noise floor) here; the auto margin "
                   "of search and run then uses them")
    q.add_argument("--elasticity", help="auto: choose the host-state correction's elasticity k on these samples "
                   "(timed while the machine ran at another speed than when profiled; the table is kept), or a "
                   "number in [0, 2]; recorded in the profile with --out")
    q.add_argument("--force", action="store_true", help="allow --out to replace a shipped profile in hw_profiles/")
    q.set_defaults(fn=cmd_validate)

    q = sub.add_parser("ladder", help="time a ladder of reference networks into a profile, so that verification "
                       "holds when the host runs at another speed than when profiled")
    q.add_argument("--profile", required=True)
    q.add_argument("--out", required=True, help="the profile with its ladder (may be --profile itself)")
    from widthnas.latency.ref_ladder import MAX_WAIT_S, REPEATS, RUNGS, SPEED_TOLERANCE

    q.add_argument("--rungs", type=int, default=RUNGS, help=f"uniform networks besides the reference (default {RUNGS})")
    q.add_argument("--repeats", type=int, default=REPEATS, help="timings per rung beside the reference (default "
                   f"{REPEATS})")
    q.add_argument("--tolerance", type=float, default=100 * SPEED_TOLERANCE, help="%% the reference may run off its "
                   f"profiled time while the ladder is timed (default {100 * SPEED_TOLERANCE:g})")
    q.add_argument("--max-wait", type=float, default=MAX_WAIT_S, help="seconds per rung to wait for the reference to "
                   f"return to its profiled time before giving up (default {MAX_WAIT_S:g})")
    q.add_argument("--force", action="store_true", help="allow --out to replace a shipped profile in hw_profiles/")
    q.set_defaults(fn=cmd_ladder)

    q = sub.add_parser("profiles", help="list shipped device profiles")
    q.set_defaults(fn=cmd_profiles)

    from . import cli_features, cli_stages

    cli_stages.register(sub)
    cli_features.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded in what a command writes
    try:
        return args.fn(args)
    except (UserError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return 130
