"""`widthnas profile`: time random-width networks on this device into a samples JSONL."""
from __future__ import annotations

import math

from ..checks import UserError, check_outputs
from .options import add_space_options, space_file, space_from_args


def add_parser(sub) -> None:
    q = sub.add_parser("profile", help="time random-width networks on this device into a samples JSONL")
    add_space_options(q)
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


def run(args) -> int:
    from widthnas.latency.profile import profile, write_bundle

    for flag, v in (("--threads", args.threads), ("--batch", args.batch), ("-n/--networks", args.networks)):
        if v < 1:
            raise UserError(f"{flag} {v}: give a whole number >= 1" + (" (onnxruntime reads --threads 0 as 'all "
                            "cores', which the profile would not record)" if flag == "--threads" else ""))
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise UserError(f"--time-limit {args.time_limit}: give a positive number of seconds (rerun to continue)")
    outputs = {"--bundle": args.bundle} if args.bundle else {"--out": args.out}
    check_outputs(outputs, {"--space": space_file(args.space)})
    space = space_from_args(args)
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
