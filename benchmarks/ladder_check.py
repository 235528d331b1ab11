"""Does the ladder of reference networks keep verification true on a host running at another speed?

The same networks are timed by the verification (`nas.export.measure_exported`) twice: on the quiet
machine, then while a second process loads the other core. Each timing gives the latency at the
profile's speed two ways: off the reference alone (with the profile's elasticity) and off the ladder
(latency/ref_ladder.py). Whatever the load does to the host, a faithful correction reads the same
latency under it as on the quiet machine; the figure is loaded / quiet - 1 per network, by both
methods from the same timings. Resumable: each phase's timings are appended to a JSONL under --out.

    python -m widthnas.benchmarks.latency_accuracy --space mobilenet_v1_small --ladder-check --out runs/bench_latency/ladder
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

LOADS = {
    # a second process busy on the other core: the CPU time the machine's other work takes
    "spin": "while True: pass",
    # streaming 64 MB copies: the caches and memory bandwidth other work takes
    "stream": ("import numpy as np\na = np.ones(8 << 20); b = np.empty_like(a)\n"
               "while True: np.copyto(b, a); np.copyto(a, b)"),
}


def start_load(kind: str) -> subprocess.Popen:
    if kind not in LOADS:
        raise ValueError(f"--load {kind!r}: choose one of {', '.join(LOADS)}")
    p = subprocess.Popen([sys.executable, "-c", LOADS[kind]])
    time.sleep(2.0)  # let it reach its steady state
    if p.poll() is not None:
        raise RuntimeError(f"the {kind} load process exited with {p.returncode}")
    return p


def spread_widths(space, n: int, seed: int) -> list[list[int]]:
    """n networks whose ratios to the reference spread over the space's whole range (uniform sampling
    puts most near 0.5-1 x, where the single reference errs least): a multiplier log-uniform between
    the narrowest and widest, each free group jittered around it by ±25 % (log-normal)."""
    rng = np.random.default_rng(seed)
    ref = np.asarray(space.reference_widths, float)
    ch = space.choices
    lo = float(np.median([min(c) / r for c, r in zip(ch, ref)]))
    hi = float(np.median([max(c) / r for c, r in zip(ch, ref)]))
    out = []
    for _ in range(n):
        m = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        want = m * ref * np.exp(0.25 * rng.standard_normal(len(ref)))
        out.append([int(min(c, key=lambda x: abs(x - t))) for c, t in zip(ch, want)])
    return out


def _networks(table, n: int, seed: int, work: Path, sampling: str = "uniform") -> list[tuple[list[int], Path]]:
    """n sampled networks of the profile's space as ONNX files (the verification times files)."""
    import onnx

    from widthnas.latency.onnx_graph import space_onnx
    from widthnas.latency.sampling import make_sampler

    work.mkdir(parents=True, exist_ok=True)
    if sampling == "spread":
        nets = spread_widths(table.space, n, seed)
    else:
        sampler = make_sampler(table.space, sampling, seed)
        nets = [[int(c) for c in sampler.next()] for _ in range(n)]
    out = []
    for i, w in enumerate(nets):
        p = work / f"net{i:03d}.onnx"
        if not p.exists():
            tmp = p.with_suffix(".onnx.tmp")
            onnx.save(space_onnx(table.space, w, batch=int(table.device.get("batch", 1))), str(tmp))
            tmp.replace(p)
        out.append((w, p))
    return out


def _phase(table, nets, path: Path, log: Callable[[str], None]) -> list[dict]:
    """Time every network once by the verification's protocol; resumes from `path`."""
    from widthnas.latency.standalone_runner import append_line
    from widthnas.nas.export import measure_exported

    done = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []
    for i in range(len(done), len(nets)):
        m = measure_exported(nets[i][1], table)
        rec = {"i": i, "widths": nets[i][0], "ladder_ms": m["normalised_ms"], "reference_ms": m["reference_normalised_ms"],
               "host_speed": m["host_speed"], "raw_ms": m["measured_ms"]}
        append_line(path, rec)
        done.append(rec)
        if (i + 1) % 10 == 0:
            log(f"  {path.stem}: {i + 1}/{len(nets)} timed, host speed now {m['host_speed']:.3f}")
    return done


def summarise(table, quiet: list[dict], loaded: list[dict]) -> dict:
    """Per method, loaded / quiet - 1 (%) over the networks: mean, RMS, worst; and by ratio to the reference."""
    ref_pred = table.predict(table.space.reference_widths)
    ratio = np.array([table.predict(q["widths"]) / ref_pred for q in quiet])
    s = np.array([r["host_speed"] for r in loaded]) / np.array([q["host_speed"] for q in quiet])
    out: dict = {"n": len(quiet), "host_slowdown": {"median": float(np.median(s)), "min": float(s.min()),
                                                    "max": float(s.max())}}
    bins = [(0, 0.3), (0.3, 0.6), (0.6, 1.0), (1.0, 10.0)]
    for key in ("reference_ms", "ladder_ms"):
        d = 100 * (np.array([r[key] for r in loaded]) / np.array([q[key] for q in quiet]) - 1)
        pred = np.array([table.predict(q["widths"]) for q in quiet])
        out[key] = {"mean_pct": float(d.mean()), "rms_pct": float(np.sqrt(np.mean(d ** 2))),
                    "worst_pct": float(d[np.argmax(np.abs(d))]),
                    "quiet_vs_predicted_rmspe_pct": float(100 * np.sqrt(np.mean((np.array([q[key] for q in quiet]) / pred - 1) ** 2))),
                    "by_ratio": [{"ratio": [lo, hi], "n": int(m.sum()), "mean_pct": float(d[m].mean())}
                                 for lo, hi in bins if (m := (ratio >= lo) & (ratio < hi)).any()]}
    return out


def run_ladder_check(profile: str, out: str | Path, n: int = 30, loads: tuple[str, ...] = ("spin", "stream"),
                     seed: int = 7, log: Callable[[str], None] = print, sampling: str = "uniform",
                     recheck: str | None = None) -> dict:
    """Quiet pass, a pass under each load, a second quiet pass; with `recheck`, instead one more pass
    now (a host found in another state later), named so, against the first quiet pass."""
    from widthnas.latency.ref_ladder import read_ladder
    from widthnas.latency.registry import load_profile

    table = load_profile(profile)
    if read_ladder(table.fit, table.space, table.name) is None:
        raise ValueError(f"{profile} has no ladder; time one first: widthnas ladder --profile {profile} --out P.json, "
                         "then pass --profile P.json")
    if not (isinstance(n, int) and n >= 3):
        raise ValueError(f"--networks {n!r}: give at least 3")
    out = Path(out)
    if sampling not in ("uniform", "spread"):
        raise ValueError(f"--sampling {sampling!r}: choose uniform or spread")
    if recheck is not None and not (recheck.isidentifier() and recheck not in ("quiet", "quiet_again")):
        raise ValueError(f"--recheck {recheck!r}: name the pass with letters, digits and _ (not quiet, quiet_again)")
    out = out / sampling if sampling != "uniform" else out
    nets = _networks(table, n, seed, out / "nets", sampling)
    log(f"ladder check: {n} networks of {table.space.name}, quiet first, then under load ({', '.join(loads)})")
    quiet = _phase(table, nets, out / "quiet.jsonl", log)
    result: dict = {"profile": str(profile), "networks": n, "seed": seed, "sampling": sampling, "loads": {}}
    if recheck is not None:
        again = _phase(table, nets, out / f"recheck_{recheck}.jsonl", log)
        r = result["recheck"] = {"name": recheck, **summarise(table, quiet, again)}
        log(f"recheck {recheck} (reference {r['host_slowdown']['median']:.3f} x its time in the first pass, "
            f"{r['host_slowdown']['min']:.3f}-{r['host_slowdown']['max']:.3f}): now / first - 1 off the reference alone: "
            f"mean {r['reference_ms']['mean_pct']:+.2f} %, RMS {r['reference_ms']['rms_pct']:.2f} %, worst "
            f"{r['reference_ms']['worst_pct']:+.2f} %; off the ladder: mean {r['ladder_ms']['mean_pct']:+.2f} %, RMS "
            f"{r['ladder_ms']['rms_pct']:.2f} %, worst {r['ladder_ms']['worst_pct']:+.2f} %")
        for key in ("reference_ms", "ladder_ms"):
            log(f"  {key:12s} by ratio to the reference: " + ", ".join(
                f"{b['ratio'][0]:g}-{b['ratio'][1]:g} x (n={b['n']}) {b['mean_pct']:+.2f} %" for b in r[key]["by_ratio"]))
        return result
    for kind in loads:
        path = out / f"load_{kind}.jsonl"
        if not (path.exists() and len(path.read_text().splitlines()) >= n):
            p = start_load(kind)
            try:
                loaded = _phase(table, nets, path, log)
            finally:
                p.kill()
                p.wait()
        else:
            loaded = _phase(table, nets, path, log)
        r = summarise(table, quiet, loaded)
        result["loads"][kind] = r
        log(f"under {kind} load (reference {r['host_slowdown']['median']:.3f} x its quiet time): loaded / quiet - 1 "
            f"off the reference alone: mean {r['reference_ms']['mean_pct']:+.2f} %, RMS {r['reference_ms']['rms_pct']:.2f} %, "
            f"worst {r['reference_ms']['worst_pct']:+.2f} %; off the ladder: mean {r['ladder_ms']['mean_pct']:+.2f} %, "
            f"RMS {r['ladder_ms']['rms_pct']:.2f} %, worst {r['ladder_ms']['worst_pct']:+.2f} %")
        for key in ("reference_ms", "ladder_ms"):
            log(f"  {key:12s} by ratio to the reference: " + ", ".join(
                f"{b['ratio'][0]:g}-{b['ratio'][1]:g} x (n={b['n']}) {b['mean_pct']:+.2f} %" for b in r[key]["by_ratio"]))
    # a second quiet pass: how far the quiet machine itself drifts over the check, the floor for both methods
    again = _phase(table, nets, out / "quiet_again.jsonl", log)
    r = summarise(table, quiet, again)
    result["quiet_again"] = r
    log(f"quiet again: off the reference RMS {r['reference_ms']['rms_pct']:.2f} %, off the ladder RMS "
        f"{r['ladder_ms']['rms_pct']:.2f} % (the drift of a quiet machine)")
    return result


if __name__ == "__main__":
    print("run through `python -m widthnas.benchmarks.latency_accuracy --ladder-check`", file=sys.stderr)
    sys.exit(2)
