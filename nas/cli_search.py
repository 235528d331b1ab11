"""The search subcommand (and the later stages' subcommands register here too)."""
from __future__ import annotations

import json


def cmd_search(args) -> int:
    from latency.registry import load_profile
    from latency.table import atomic_write_text
    from mrf import METHODS, WidthMRF, parse_budget, solve
    from mrf.baselines import uniform
    from mrf.solvers import pareto_front, slowest_latency
    from mrf.unaries import Unaries

    from .search import chosen_config, print_widths, write_pareto

    table = load_profile(args.profile)
    space = table.space
    mrf = WidthMRF.from_table(table, Unaries.load(args.unaries))
    widest = table.predict(space.max_widths)
    budget = parse_budget(args.budget, widest)
    sol = solve(mrf, budget, args.method)
    uni = None
    try:
        uni = uniform(mrf, budget)
    except ValueError:
        pass
    print(f"search on {space.name} with profile {table.name or args.profile}: budget {budget:.4f} ms "
          f"({args.budget}; widest network {widest:.4f} ms)")
    print_widths(space, sol, uni)
    print(f"method {sol.method}: predicted {sol.latency:.4f} ms, score {sol.score:.4f}"
          + (f" (uniform x{uni.info['multiplier']}: {uni.latency:.4f} ms, score {uni.score:.4f})" if uni else ""))
    if sol.method == "exact":
        print(f"exact optimum certified: {sol.info['certified']} ({sol.info['proof']})")
    cfg = chosen_config(space, table, sol, args.unaries, args.budget)
    atomic_write_text(args.out, json.dumps(cfg, indent=1))
    print(f"chosen configuration: {args.out}")
    if args.pareto:
        front = sol.pareto if sol.pareto is not None else pareto_front(mrf)
        png = write_pareto(args.pareto, front, sol, uni, budget)
        print(f"Pareto front ({len(front)} points): {args.pareto}, plot {png}")
    return 0


def register(sub) -> None:
    from mrf import METHODS

    q = sub.add_parser("search", help="choose widths under a latency budget (MRF)")
    q.add_argument("--profile", required=True, help="hw_profiles name or profile JSON")
    q.add_argument("--unaries", required=True, help="unaries.json from `widthnas train`")
    q.add_argument("--budget", required=True, help="ms ('0.8ms') or share of the widest network ('60%%')")
    q.add_argument("--method", choices=METHODS, default="exact")
    q.add_argument("--out", default="config.json", help="chosen configuration JSON")
    q.add_argument("--pareto", help="write the Pareto front CSV here (and a PNG beside it)")
    q.set_defaults(fn=cmd_search)
