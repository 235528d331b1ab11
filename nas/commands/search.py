"""`widthnas search`: choose widths under a latency budget (MRF)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from widthnas._io import atomic_write_text
from widthnas.models.space import check_fingerprint

from ..checks import Rule, UserError, check_outputs, check_settings, run_inputs


def add_parser(sub) -> None:
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
    q.add_argument("--recheck", action="store_true", help="time that check anew even when one of this profile made "
                   "today on this machine kind is kept in $WIDTHNAS_CACHE (default ~/.cache/widthnas)")
    q.add_argument("--out", default="config.json", help="chosen configuration JSON")
    q.add_argument("--pareto", help="write the Pareto front CSV here (and a PNG beside it)")


def run(args) -> int:
    from widthnas.latency.margin import parse_margin
    from widthnas.latency.registry import load_profile
    from widthnas.mrf import pareto_front, parse_budget
    from widthnas.mrf.unaries import Unaries

    from ..search import aim, chosen_config, print_widths, search, write_pareto

    check_settings(args, {"check_networks": Rule(integer=True, low=3, high=10_000, zero_ok=True)}, "search")
    parse_margin(args.margin)  # a bad --margin is refused before the supernet is loaded and the unaries measured
    if args.pareto and Path(args.pareto).suffix.lower() == ".png":  # the CSV would go there, then the plot over it
        raise UserError(f"--pareto {args.pareto}: give the CSV's path (e.g. pareto.csv); the plot goes beside it as .png")
    png = None if not args.pareto else Path(args.pareto).with_suffix(".png")
    check_outputs({"--out": args.out, "--pareto": args.pareto, f"the plot beside --pareto {args.pareto}": png},
                  [("--profile", args.profile), ("--unaries", args.unaries), *run_inputs(args.run),
                   # the unaries cache search writes in --run (it may not exist yet)
                   (f"the unaries cache of --run {args.run}", Path(args.run) / "unaries_measured.json" if args.run else None)])
    table = load_profile(args.profile)
    space = table.space
    parse_budget(args.budget, table.predict(space.max_widths))  # refused before the supernet, unaries or a check
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
    sup = splits = unaries = None
    if args.run:
        from ..selection import cached_measured_unaries
        from ..train import load_run

        _, run_space, sup, splits = load_run(args.run)
        check_fingerprint(run_space.fingerprint, space, f"the supernet in {args.run}")
        if not args.unaries:  # measured after training: paired against the widest network, many configurations
            args.unaries = str(Path(args.run) / "unaries_measured.json")
            unaries = cached_measured_unaries(sup, splits, args.unaries)
    if unaries is None:
        unaries = Unaries.load(args.unaries)
    check = None  # on another machine, --margin auto counts a latency check made here (latency/margin.py)
    if parse_margin(args.margin) == "auto" and args.check_networks:
        check = check_if_another_machine(table, args.check_networks, args.profile, not args.recheck)
    budget, widest, target, margin_pct, margin_how = aim(table, args.budget, args.margin, check)
    with tempfile.TemporaryDirectory() as tmp:  # the candidates' ONNX files, timed here
        measure = None
        if method == "select":
            from ..export import network_measurer

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


def check_if_another_machine(table, n: int, path: str | None = None, reuse: bool = True) -> dict | None:
    """A latency check of n random networks when the profile's reference runs so far off here that the
    profile was made on another machine (latency/check.py), else None; None, said, for a profile this
    machine cannot time (not onnxruntime). path: the profile (a file or a shipped profile's name), whose
    check made today on this machine kind is reused unless reuse=False (latency/check_cache.py)."""
    from widthnas.latency.check import CHECK_SEED, check_protocol, reference_speed
    from widthnas.latency.check_cache import latency_check_today
    from widthnas.latency.registry import profile_path
    from widthnas.latency.host_state import machine_note
    from widthnas.latency.standalone_runner import describe_differences, device_differences

    from ..export import verify_timing

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
          f"the profile's device key; checking {n} random networks here for the margin (--check-networks 0: skip)",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        m, _, _ = latency_check_today(table, path and profile_path(path), be, Path(tmp) / "check.jsonl", n, CHECK_SEED,
                                      check_protocol(), reuse and path is not None, lambda: speed, log=print)
    print(f"latency check on {m['n']} networks: within ±10 % {m['within_10']:.0%}, RMS error {m['rmspe']:.2%}, "
          f"NRMSE {m['nrmse']:.2%}, reference at {m['host_speed']:.2f} x"
          + ("" if m["machine_note"] else ": the profile's machine after all, the margin from the profile alone"))
    return m if m["machine_note"] else None
