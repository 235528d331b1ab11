"""`widthnas ladder`: time a ladder of reference networks into a profile."""
from __future__ import annotations

import math

from ..checks import UserError, check_outputs


def add_parser(sub) -> None:
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


def run(args) -> int:
    from widthnas.latency import standalone_runner as sr
    from widthnas.latency.ref_ladder import measure_ladder
    from widthnas.latency.registry import load_profile

    from ..export import verify_timing

    if args.rungs < 2 or args.repeats < 3:
        raise UserError(f"--rungs {args.rungs} / --repeats {args.repeats}: give at least 2 rungs and 3 timings per rung")
    if not (math.isfinite(args.tolerance) and 0 < args.tolerance < 50):
        raise UserError(f"--tolerance {args.tolerance}: give the % the reference may run off its profiled time, in (0, 50)")
    if not (math.isfinite(args.max_wait) and 0 <= args.max_wait <= 86400):
        raise UserError(f"--max-wait {args.max_wait}: give the seconds to wait per rung, 0 to 86400")
    check_outputs({"--out": args.out}, {"--profile": args.profile}, force=args.force,
                  in_place={"--out": "--profile"})  # the profile itself, now with its ladder
    table = load_profile(args.profile)
    be, protocol = verify_timing(table)  # a ValueError is printed as one line, as a UserError is
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
