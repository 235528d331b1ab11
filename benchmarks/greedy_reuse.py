"""Greedy slimming on a finished run's supernet, with and without reusing the network it stands on (issue 33).

    python -m widthnas.benchmarks.greedy_reuse --run runs/demo [--reps 1]

The run's own supernet, measured unaries, profile and target: the descent `widthnas run` makes, timed with
nas.selection.EstimationScorer (each candidate computed from its narrowed group on) and with full passes
(the same scorer told nothing), alternating, in one process. Prints both times, their ratio, and whether the
two descents took the same networks with the same scores (they must: the reuse is exact). Nothing else may
run meanwhile.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from widthnas.latency.registry import load_profile
from widthnas.mrf import build_mrf, greedy
from widthnas.mrf.unaries import Unaries
from widthnas.nas.selection import GREEDY_STEP, EstimationScorer
from widthnas.nas.train import load_run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished `widthnas run` directory (run_state.json, supernet/)")
    p.add_argument("--reps", type=int, default=1, help="descents timed each way (alternating)")
    a = p.parse_args()
    if a.reps < 1:
        p.error(f"--reps {a.reps}: give 1 or more")
    run = Path(a.run)
    state = json.loads((run / "run_state.json").read_text())
    _, space, sup, splits = load_run(run / "supernet")
    mrf = build_mrf(load_profile(state["profile"]["path"]), Unaries.load(run / "supernet" / "unaries_measured.json"))
    target = float(state["search"]["target_ms"])
    times: dict[str, list[float]] = {"reusing": [], "full passes": []}
    paths = {}
    for _ in range(a.reps):
        for name in times:
            scorer = EstimationScorer(sup, splits)
            fn = scorer if name == "reusing" else (lambda w, s=scorer: s(w))  # a plain function: told nothing
            t0 = time.perf_counter()
            sol = greedy(mrf, target, score_fn=fn, step=GREEDY_STEP)
            times[name].append(time.perf_counter() - t0)
            paths[name] = [(list(w), s) for w, _, s in sol.info["path"]]
            print(f"{name:12s} {times[name][-1]:7.1f} s  {len(paths[name]) - 1} steps, {sol.info['evals']} evaluations"
                  + ("" if name != "reusing" or scorer.keep else "  (nothing kept: over KEEP_BYTES)"), flush=True)
    r, f = min(times["reusing"]), min(times["full passes"])
    print(f"space {space.name}: reusing {r:.1f} s, full passes {f:.1f} s, ratio {r / f:.2f}; "
          f"same networks and scores: {paths['reusing'] == paths['full passes']}")
    return 0 if paths["reusing"] == paths["full passes"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
