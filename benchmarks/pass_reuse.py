"""The search's passes on a finished run's supernet, with and without reusing another pass's ops (issue 33).

    python -m widthnas.benchmarks.pass_reuse --run runs/demo [--stage greedy|unaries|both] [--reps 1]

greedy: the descent `widthnas run` makes (its supernet, measured unaries, profile and target), scored by
nas.selection.EstimationScorer (each candidate computed from its narrowed group on) and by full passes (the same
scorer told nothing). unaries: the run's measured unaries (nas.unary_eval.sample_deltas, as many configurations
and images as the run used), taken in width order reusing the previous pass, and with no memory to keep one
(models.net.KEEP_BYTES = 0). Each way is timed alternately in one process; prints both times, their ratio, and
whether the two ways gave the same networks and scores (they must: the reuse is exact). Nothing else may run
meanwhile.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import widthnas.models.net as net
from widthnas.latency.registry import load_profile
from widthnas.mrf import build_mrf, greedy
from widthnas.mrf.unaries import Unaries
from widthnas.nas.selection import GREEDY_STEP, EstimationScorer
from widthnas.nas.train import load_run
from widthnas.nas.unary_eval import sample_deltas


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished `widthnas run` directory (run_state.json, supernet/)")
    p.add_argument("--stage", choices=("greedy", "unaries", "both"), default="both")
    p.add_argument("--reps", type=int, default=1, help="times each way (alternating)")
    a = p.parse_args()
    if a.reps < 1:
        p.error(f"--reps {a.reps}: give 1 or more")
    run = Path(a.run)
    state = json.loads((run / "run_state.json").read_text())
    _, space, sup, splits = load_run(run / "supernet")
    unaries = Unaries.load(run / "supernet" / "unaries_measured.json")
    same = True
    for stage in ("greedy", "unaries") if a.stage == "both" else (a.stage,):
        if stage == "greedy":
            mrf = build_mrf(load_profile(state["profile"]["path"]), unaries)
            target = float(state["search"]["target_ms"])

            def descend(reusing: bool):
                scorer = EstimationScorer(sup, splits)
                sol = greedy(mrf, target, score_fn=scorer if reusing else (lambda w, s=scorer: s(w)), step=GREEDY_STEP)
                note = "" if not reusing or scorer.keep else "  (nothing kept: over KEEP_BYTES)"
                return [(list(w), s) for w, _, s in sol.info["path"]], f"{len(sol.info['path']) - 1} steps{note}"
        else:
            configs, images = int(unaries.meta["configs"]), int(unaries.meta["batch"])

            def measure(reusing: bool):
                keep_bytes = net.KEEP_BYTES
                net.KEEP_BYTES = keep_bytes if reusing else 0
                try:
                    idx, delta = sample_deltas(sup, splits, configs, images, design=unaries.meta.get("design", "random"))
                finally:
                    net.KEEP_BYTES = keep_bytes
                kept = net.records_fit(space, images)
                return (idx.tolist(), delta.tolist()), f"{configs} configurations on {images} images" + (
                    "" if not reusing or kept else "  (nothing kept: over KEEP_BYTES)")
        times: dict[str, list[float]] = {"reusing": [], "whole passes": []}
        out = {}
        for _ in range(a.reps):
            for name in times:
                t0 = time.perf_counter()
                out[name], what = (descend if stage == "greedy" else measure)(name == "reusing")
                times[name].append(time.perf_counter() - t0)
                print(f"{stage} {name:12s} {times[name][-1]:7.1f} s  {what}", flush=True)
        r, f = min(times["reusing"]), min(times["whole passes"])
        agree = out["reusing"] == out["whole passes"]
        same &= agree
        print(f"space {space.name}, {stage}: reusing {r:.1f} s, whole passes {f:.1f} s, ratio {r / f:.2f}; "
              f"the same {'networks and scores' if stage == 'greedy' else 'losses'}: {agree}", flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
