"""Latency-model accuracy on this machine: the old timing protocol beside the new one.

For each protocol, `fixed` (a fixed number of rounds per sample, no disturbance check: the protocol
before issue 11) and `adaptive` (rounds added until the net/reference ratio is known to ±1 %, and the
load guard), one run profiles a held-out set (uniform sampling, its own run) and the training samples
(coverage sampling by default), fits tables on growing prefixes, judges them on that protocol's
held-out networks (reference-normalised; ±5 %, ±10 %, NRMSE, Kendall τ), and times the first K
held-out networks again by the same protocol: how well the protocol agrees with itself (the noise
floor), and whether the model or the measurement limits its figures.

The protocols take turns in chunks of networks (--chunk), so both meet the same machine, and draw the
same networks (same seeds; a run killed mid-chunk may draw differently after it resumes). Every file
is a cache under --out/<protocol>/: rerunning the same command resumes where it stopped.

    python -m widthnas.benchmarks.latency_accuracy --space mobilenet_v1 --ship hw_profiles/NAME.json
    python -m widthnas.benchmarks.latency_accuracy --space mobilenet_v1_small --smoke      # a few minutes

--space is any registered space or a traced space's JSON file; tables are fitted as `widthnas fit`
fits them (--keying signature by default; op: one set of entries per op).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from widthnas._io import atomic_write_text
from widthnas.latency import noise_floor as nf
from widthnas.latency import registry
from widthnas.latency import standalone_runner as sr
from widthnas.latency.backends import make_backend
from widthnas.latency.fit import FitSettings, fit_flops_proxy
from widthnas.latency.entries import KEYINGS
from widthnas.latency.fit import fit_table
from widthnas.latency.profile import profile
from widthnas.latency.samples import Samples, load_samples
from widthnas.latency.validate import metrics, scatter_plot
from widthnas.models import SPACES, GraphSpace, get_space

PROTOCOLS = ("fixed", "adaptive")
HELDOUT_SEED, TRAIN_SEED = 1000, 1


@dataclass
class Plan:
    """What one run measures and fits; every count is per protocol."""
    n: int = 1000  # training networks per sampling strategy
    heldout: int = 250  # held-out networks (uniform sampling, their own run)
    remeasure: int = 100  # first held-out networks timed again (the noise floor); 0: none
    sizes: tuple[int, ...] = (100, 200, 400, 700, 1000)  # training prefixes fitted
    strategies: tuple[str, ...] = ("coverage",)  # sampling of the training networks; the first one ships
    protocols: tuple[str, ...] = PROTOCOLS
    rounds: int = 5  # rounds per sample (fixed: all of them; adaptive: before the interval is judged)
    round_ms: float = 10.0  # ms per round
    chunk: int = 50  # networks one protocol measures before the other takes its turn
    folds: int = 5  # cross-validation folds of the fit
    keying: str = "signature"  # the tables' entries: shared per op signature, or per op (entries.KEYINGS)

    def check(self) -> "Plan":
        """Every count and setting in range, or a ValueError naming the option and what to give."""
        for name, lo in (("n", 10), ("heldout", 3), ("chunk", 1), ("rounds", 1), ("folds", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"--{name} {v!r}: give a whole number >= {lo}")
        nf.check_count(self.remeasure, "--remeasure")
        if self.remeasure > self.heldout:
            raise ValueError(f"--remeasure {self.remeasure} exceeds --heldout {self.heldout}: it times held-out "
                             "networks again, so give at most as many")
        if not (isinstance(self.round_ms, (int, float)) and math.isfinite(self.round_ms) and self.round_ms > 0):
            raise ValueError(f"--round-ms {self.round_ms!r}: give a positive, finite number of ms")
        if not self.sizes or any(s < 2 * self.folds or s > self.n for s in self.sizes):
            raise ValueError(f"--sizes {','.join(map(str, self.sizes))}: give training counts between "
                             f"{2 * self.folds} (2 x folds) and --n {self.n}")
        bad = [s for s in self.strategies if s not in ("coverage", "uniform")] or not self.strategies
        if bad:
            raise ValueError(f"--strategies {','.join(self.strategies)}: choose from coverage, uniform")
        if self.keying not in KEYINGS:
            raise ValueError(f"--keying {self.keying!r}: choose from {', '.join(KEYINGS)}")
        bad = [p for p in self.protocols if p not in PROTOCOLS] or not self.protocols
        if bad or len(set(self.protocols)) != len(self.protocols):
            raise ValueError(f"--protocols {','.join(self.protocols)}: choose from {', '.join(PROTOCOLS)}, each once")
        return self

    def protocol(self, name: str) -> sr.Protocol:
        return sr.Protocol.fixed(self.rounds, self.round_ms) if name == "fixed" else sr.Protocol(self.rounds,
                                                                                                  self.round_ms)


def chunks(total: int, step: int) -> list[int]:
    """Growing targets 'step, 2 step, ..., total' for measuring in turns."""
    return list(range(step, total, step)) + [total] if total > 0 else []


def measure_all(space: GraphSpace, out: Path, backend, plan: Plan, log: Callable[[str], None] = print) -> None:
    """Profile every file of the plan in turns between the protocols, then re-measure the held-out
    networks; resumable (each profile() and remeasure() continues its file)."""
    jobs = [("heldout", "uniform", HELDOUT_SEED, plan.heldout)] + [(s, s, TRAIN_SEED, plan.n) for s in plan.strategies]
    for name, sampling, seed, total in jobs:
        for target in chunks(total, plan.chunk):
            for proto in plan.protocols:
                t = time.time()
                added = profile(space, out / proto / f"{name}.jsonl", target, backend, sampling, seed,
                                protocol=plan.protocol(proto), progress=False, log=log)
                if added:
                    log(f"{proto:9s} {name:9s} {target:5d}/{total}  {added} networks in {time.time() - t:.0f} s")
    if not plan.remeasure:
        return
    held = {p: _load(out / p / "heldout.jsonl", space) for p in plan.protocols}
    for target in chunks(plan.remeasure, plan.chunk):
        for proto in plan.protocols:
            nf.remeasure(held[proto], min(target, len(held[proto])), backend, out / proto / "remeasure.jsonl", log=log)
    log(f"re-measured the first {plan.remeasure} held-out networks of each protocol")


def _first(samples: Samples, n: int) -> Samples:
    """The first n samples; the counts and lists describe the files the samples came from."""
    return replace(samples, widths=samples.widths[:n], norm=samples.norm[:n], ms=samples.ms[:n],
                   ref_ms=samples.ref_ms[:n])


def _load(path: Path, space: GraphSpace):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counted in Samples and reported in the results
        return load_samples(str(path), space)


def evaluate(space: GraphSpace, out: Path, backend, plan: Plan, log: Callable[[str], None] = print) -> dict:
    """Fits, held-out metrics and the noise floor of each protocol, from the files measure_all wrote."""
    res: dict = {}
    for proto in plan.protocols:
        held = _load(out / proto / "heldout.jsonl", space)
        rows, final = [], None
        for strat in plan.strategies:
            train = _load(out / proto / f"{strat}.jsonl", space)
            for n in plan.sizes:
                t = time.time()
                table = fit_table(space, _first(train, n), FitSettings(folds=plan.folds),
                                        log=lambda *_: None, keying=plan.keying)
                fit_s = time.time() - t
                meas = table.measured_ms(held.norm, held.ref_ms)
                m = metrics(table.predict_many(held.widths), meas)
                rows.append({**m, "protocol": proto, "predictor": f"table/{strat}", "train_n": n, "fit_s": fit_s})
                if strat == plan.strategies[0]:
                    proxy = fit_flops_proxy(space, _first(train, n), table.fit["elasticity"])
                    mp = metrics(proxy.predict_many(space, held.widths) * table.reference_ms / proxy.reference_ms,
                                 meas)
                    rows.append({**mp, "protocol": proto, "predictor": f"flops/{strat}", "train_n": n, "fit_s": 0.0})
                    if n == plan.sizes[-1]:
                        final = {"table": table, "proxy": proxy, "metrics": m, "proxy_metrics": mp,
                                 "train_quality": train.quality()}
                        # the same fit (lam and mu are chosen at k = 0 in both) without the host-state
                        # correction (latency/host_state.py); each is judged on measurements corrected its way
                        plain = fit_table(space, _first(train, n),
                                                FitSettings(lams=(table.fit["lam"],), mus=(table.fit["mu"],),
                                                            folds=plan.folds, elasticities=(0.0,)),
                                                log=lambda *_: None, keying=plan.keying)
                        final["uncorrected"] = metrics(plain.predict_many(held.widths),
                                                       plain.measured_ms(held.norm, held.ref_ms))
                log(f"{proto:9s} table/{strat:9s} n={n:5d}  ±5% {m['within_5']:6.1%}  ±10% {m['within_10']:6.1%}  "
                    f"NRMSE {m['nrmse']:6.2%}  τ {m['kendall_tau']:.3f}  fit {fit_s:5.1f} s")
        floor = None
        if plan.remeasure:
            try:  # the re-measurements are cached: this reads them (and measures any still missing)
                floor = nf.measure_floor(held, plan.remeasure, space, final["table"].measured_ms, backend,
                                         out / proto / "remeasure.jsonl", log=log)
                floor.update(nf.limiting(final["metrics"]["rmspe"], floor))
                scale_ms = final["table"].reference_ms  # plain normalisation: no host-state correction
                final["uncorrected_floor"] = nf.measure_floor(held, plan.remeasure, space,
                                                              lambda norm, ref_ms: np.asarray(norm, float) * scale_ms,
                                                              backend, out / proto / "remeasure.jsonl")
            except nf.FloorUnavailable as e:
                log(f"{proto}: noise floor not measured: {e}")
        res[proto] = {"settings": plan.protocol(proto).settings(), "rows": rows, "final": final, "floor": floor,
                      "heldout_quality": held.quality(),
                      "timing": _timing(out / proto, ["heldout", *plan.strategies],
                                        plan.chunk if len(plan.protocols) > 1 else 0)}
    return res


def _timing(d: Path, names: list[str], turn: int = 0) -> dict:
    """Per file: networks, profiling seconds (from the samples' own timestamps, so resumed runs report true
    figures), seconds per network, share settled, mean rounds. The gap before the first sample of each turn
    (every `turn` samples, 0: none) also holds the other protocol's turn, and a gap over 600 s a stopped run
    (a sample takes at most ~200 s: two 60 s waits and three 20 s time caps): both count as a median gap."""
    out = {}
    for name in names:
        header, recs, _ = sr.read_samples(str(d / f"{name}.jsonl"))
        ts = np.array([header["created"]] + [r["t"] for r in recs], float)
        gaps = np.diff(ts)
        other = np.zeros(gaps.size, bool)
        if turn:
            other[turn::turn] = True
        other |= gaps > 600
        if gaps.size:
            gaps[other] = np.median(gaps[~other]) if (~other).any() else 0.0
        secs = float(gaps.sum())
        out[name] = {"networks": len(recs), "seconds": round(secs, 1),
                     "s_per_network": round(secs / max(1, len(recs)), 3),
                     "settled": float(np.mean([r.get("settled") is not False for r in recs])) if recs else None,
                     "mean_rounds": float(np.mean([r.get("rounds", 0) for r in recs])) if recs else None}
    return out


def side_by_side(res: dict) -> list[str]:
    """The comparison table (markdown), one row per protocol."""
    lines = ["| protocol | held-out ±5 % | ±10 % | NRMSE | Kendall τ | re-measured n | re-measure NRMSE | ±5 % | "
             "±10 % | limits | s / network | settled | disturbed (left out) | measured again |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for proto, r in res.items():
        m, f, tm = r["final"]["metrics"], r["floor"], r["timing"]
        q = {k: r["heldout_quality"][k] + r["final"]["train_quality"][k] for k in ("disturbed", "remeasured")}
        spn = np.mean([v["s_per_network"] for v in tm.values()])
        settled = np.mean([v["settled"] for v in tm.values() if v["settled"] is not None])
        fl = (f"{f['n']} | {f['nrmse']:.2%} | {f['within_5']:.1%} | {f['within_10']:.1%} | {f['limited_by']}"
              if f else "– | – | – | – | –")
        lines.append(f"| {proto} | {m['within_5']:.1%} | {m['within_10']:.1%} | {m['nrmse']:.2%} | "
                     f"{m['kendall_tau']:.3f} | {fl} | {spn:.2f} | {settled:.1%} | {q['disturbed']} | "
                     f"{q['remeasured']} |")
    return lines


def correction_table(res: dict) -> list[str]:
    """What the host-state correction changes (markdown): the final table and the re-measurement with
    the fit's elasticity k, and the same fit at k = 0 (plain reference normalisation)."""
    lines = ["| protocol | elasticity k | held-out ±5 %: k = 0 → k | NRMSE: k = 0 → k | "
             "re-measured ±5 %: k = 0 → k | re-measure NRMSE: k = 0 → k |", "|---|---|---|---|---|---|"]
    for proto, r in res.items():
        fin, f = r["final"], r["floor"]
        u, m, uf = fin["uncorrected"], fin["metrics"], fin.get("uncorrected_floor")
        fl = (f"{uf['within_5']:.1%} → {f['within_5']:.1%} | {uf['nrmse']:.2%} → {f['nrmse']:.2%}"
              if f and uf else "– | –")
        lines.append(f"| {proto} | {fin['table'].fit['elasticity']:g} | {u['within_5']:.1%} → {m['within_5']:.1%} | "
                     f"{u['nrmse']:.2%} → {m['nrmse']:.2%} | {fl} |")
    return lines


def _jsonable(res: dict) -> dict:
    out = {}
    for proto, r in res.items():
        fin = r["final"]
        out[proto] = {**{k: v for k, v in r.items() if k != "final"},
                      "final": {"metrics": fin["metrics"], "proxy_metrics": fin["proxy_metrics"],
                                "train_quality": fin["train_quality"], "elasticity": fin["table"].fit["elasticity"],
                                "elasticity_cv": fin["table"].fit["elasticity_cv"],
                                "uncorrected": fin["uncorrected"],
                                "uncorrected_floor": fin.get("uncorrected_floor")}}
    return out


def _curve(path: Path, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for proto, r in res.items():
        for pred in sorted({x["predictor"] for x in r["rows"]}):
            rs = [x for x in r["rows"] if x["predictor"] == pred]
            style = "o-" if proto == "adaptive" else "s--"
            axes[0].plot([x["train_n"] for x in rs], [100 * x["within_10"] for x in rs], style, label=f"{proto} {pred}")
            axes[1].plot([x["train_n"] for x in rs], [100 * x["nrmse"] for x in rs], style, label=f"{proto} {pred}")
    axes[0].set_ylabel("held-out within ±10 % (%)")
    axes[1].set_ylabel("held-out NRMSE (%)")
    for ax in axes:
        ax.set_xlabel("profiled networks")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def refuse_shipped(out: str | Path, force: bool, flag: str = "--out") -> None:
    """A shipped profile holds validated figures: refuse to overwrite it unless `force` (--force)."""
    p = Path(out).resolve()
    if p.exists() and p.parent == registry.PROFILE_DIR.resolve() and not force:
        raise ValueError(f"{out} is a shipped, validated profile; write the new fit elsewhere "
                         f"(e.g. {flag} {p.stem}_new.json), or pass --force to replace it")


def profile_name(device: dict, space_name: str) -> str:
    cpu = "".join(ch if ch.isalnum() else "-" for ch in device["cpu"].lower()).strip("-")
    prov = device["provider"].replace("ExecutionProvider", "").lower()
    backend = {"onnxruntime": "ort"}.get(device["backend"], device["backend"])
    isa = f"-{device['isa'].replace('.', '')}" if device.get("isa") else ""  # two CPUs of one name may differ in ISA
    return f"{cpu}{isa}-{device['cores']}c_{backend}-{prov}-{device['threads']}t-b{device['batch']}_{space_name}"


def ship(path: str, res: dict, plan: Plan, space: GraphSpace, out: Path, argv: list[str]) -> str:
    """Write the new protocol's table (first strategy, full count) with its validation and noise floor."""
    proto = "adaptive" if "adaptive" in res else plan.protocols[-1]
    r = res[proto]
    table = r["final"]["table"]
    table.name = Path(path).stem
    table.fit["flops_proxy"] = r["final"]["proxy"].to_dict()
    table.validation = {"table": r["final"]["metrics"], "flops_proxy": r["final"]["proxy_metrics"],
                        "heldout": r["final"]["metrics"]["n"], "heldout_separate_run": True,
                        "heldout_files": [str(out / proto / "heldout.jsonl")], "heldout_quality": r["heldout_quality"],
                        "command": "python -m widthnas.benchmarks.latency_accuracy " + " ".join(argv)}
    if r["floor"]:
        table.validation["noise_floor"] = r["floor"]
    from widthnas.latency.ref_ladder import measure_ladder
    from widthnas.nas.export import verify_timing

    try:  # right after the samples, while the host runs as it did for them (latency/ref_ladder.py)
        table.fit["ref_ladder"] = measure_ladder(table, *verify_timing(table))
    except ValueError as e:
        print(f"ladder not timed ({e}); time it on a quiet machine with `widthnas ladder --profile {path} --out {path}`")
    table.save(path)
    return proto


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, Plan]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v1_small",
                   help=f"a registered space ({', '.join(sorted(SPACES))}) or a space JSON file "
                        "(`widthnas space --from-model ... --json`)")
    p.add_argument("--keying", default=Plan.keying, help="the fitted tables' entries: signature (shared by the ops "
                   "of one signature, as `widthnas fit` by default) or op (one set per op)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="fixed, adaptive or both (default)")
    p.add_argument("--n", type=int, default=Plan.n, help="training networks per sampling strategy and protocol")
    p.add_argument("--heldout", type=int, default=Plan.heldout)
    p.add_argument("--remeasure", type=int, default=Plan.remeasure, help="first K held-out networks timed again")
    p.add_argument("--sizes", help="training prefixes to fit (default 100,200,400,700,1000 up to --n)")
    p.add_argument("--strategies", default="coverage", help="coverage, uniform or both; the first one ships")
    p.add_argument("--rounds", type=int, default=Plan.rounds)
    p.add_argument("--round-ms", type=float, default=Plan.round_ms)
    p.add_argument("--chunk", type=int, default=Plan.chunk, help="networks per protocol turn")
    p.add_argument("--out", help="cache and results directory (default runs/bench_latency/<space>[_smoke])")
    p.add_argument("--ship", help="write the adaptive protocol's table here (e.g. hw_profiles/<name>.json)")
    p.add_argument("--force", action="store_true", help="let --ship replace a shipped profile")
    p.add_argument("--smoke", action="store_true", help="a few minutes: 40 training, 20 held-out, 8 re-measured")
    p.add_argument("--budget-check", metavar="RUN", help="instead of profiling: fresh search + export at --budgets "
                   "with this supernet run directory, each exported network verified against its budget "
                   "(benchmarks/budget_check.py)")
    p.add_argument("--budgets", help="--budget-check's budgets, %% of the widest network (default "
                   "12,15,20,25,30,40,50,60,70,85)")
    p.add_argument("--profile", help="--budget-check's and --ladder-check's profile (default: the shipped one for "
                   "--space here)")
    p.add_argument("--ladder-check", action="store_true", help="instead of profiling: time --networks networks by the "
                   "verification, quiet and under load, read off the reference alone and off the profile's ladder "
                   "(benchmarks/ladder_check.py)")
    p.add_argument("--networks", type=int, default=30, help="--ladder-check's networks (default 30)")
    p.add_argument("--loads", default="spin,stream", help="--ladder-check's loads on the other core (spin, stream)")
    p.add_argument("--sampling", default="uniform", help="--ladder-check's networks: uniform, or spread (ratios over "
                   "the space's whole range)")
    p.add_argument("--recheck", metavar="NAME", help="--ladder-check: one more pass now, named NAME, against the first "
                   "quiet pass (for a host found in another state later)")
    a = p.parse_args(argv)
    if a.smoke:
        a.n, a.heldout, a.remeasure, a.chunk, a.sizes = 40, 20, 8, 10, a.sizes or "20,40"
    sizes = a.sizes or ",".join(str(s) for s in Plan.sizes if s < a.n) + f",{a.n}"
    try:
        sizes_t = tuple(sorted({int(s) for s in sizes.split(",") if s.strip()}))
    except ValueError:
        raise SystemExit(f"error: --sizes {sizes!r}: give comma-separated whole numbers, e.g. 100,400,1000")
    plan = Plan(a.n, a.heldout, a.remeasure, sizes_t, tuple(s.strip() for s in a.strategies.split(",")),
                tuple(s.strip() for s in a.protocols.split(",")), a.rounds, a.round_ms, a.chunk, keying=a.keying)
    tag = a.space if a.space in SPACES else Path(a.space).stem  # a space JSON file: its name
    a.out = Path(a.out or (f"runs/bench_latency/budget_check_{tag}" if a.budget_check else
                           f"runs/bench_latency/ladder_{tag}" if a.ladder_check else
                           f"runs/bench_latency/{tag}{'_smoke' if a.smoke else ''}"))
    return a, plan


def _profile_for(a: argparse.Namespace) -> str:
    """--profile, or the shipped profile of --space for this machine."""
    from widthnas.latency.registry import find_profile

    if a.profile is not None:
        return a.profile
    space = get_space(a.space)
    found, why = find_profile(space, make_backend(space).device_info())
    if found is None:
        raise ValueError(f"no shipped profile for {space.name} on this machine ({why}); pass --profile")
    return str(found)


def ladder_check_main(a: argparse.Namespace, argv: list[str]) -> int:
    from widthnas.benchmarks.ladder_check import run_ladder_check

    try:
        profile_path = _profile_for(a)
        loads = tuple(x.strip() for x in a.loads.split(",") if x.strip())
        r = run_ladder_check(profile_path, a.out, a.networks, loads, log=lambda m: print(m, flush=True),
                             sampling=a.sampling, recheck=a.recheck)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = f"ladder_check{'_' + a.sampling if a.sampling != 'uniform' else ''}" \
           f"{'_recheck_' + a.recheck if a.recheck else ''}.json"
    atomic_write_text(a.out / name, json.dumps(
        {"command": "python -m widthnas.benchmarks.latency_accuracy " + " ".join(argv), **r}, indent=1))
    print(f"results: {a.out / name}")
    return 0


def budget_check_main(a: argparse.Namespace, argv: list[str]) -> int:
    from widthnas.benchmarks.budget_check import parse_budgets, run_checks

    try:
        budgets = parse_budgets(a.budgets)
        profile_path = _profile_for(a)
        rows = run_checks(a.budget_check, profile_path, budgets, a.out, lambda m: print(m, flush=True))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write_text(a.out / "budget_check.json", json.dumps(
        {"command": "python -m widthnas.benchmarks.latency_accuracy " + " ".join(argv), "profile": profile_path,
         "run": str(a.budget_check), "rows": rows,
         "within": sum(r["verdict"] == "within" for r in rows), "n": len(rows)}, indent=1))
    print(f"results: {a.out / 'budget_check.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a, plan = parse(argv)
    if a.budget_check:
        return budget_check_main(a, argv)
    if a.ladder_check:
        return ladder_check_main(a, argv)
    try:
        plan.check()
        if a.ship:
            refuse_shipped(a.ship, a.force, "--ship")
        space = get_space(a.space)  # GraphError (a ValueError) names the registered spaces
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    be = make_backend(space)
    dev = be.device_info()
    print(f"device: {dev['cpu']}, {dev['cores']} cores, onnxruntime {dev['runtime_version']} {dev['provider']}, "
          f"{dev['threads']} thread, batch {dev['batch']}; space {space.name} {space.input_shape}; protocols "
          f"{', '.join(plan.protocols)}; cache {a.out}", flush=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    measure_all(space, a.out, be, plan, log)
    res = evaluate(space, a.out, be, plan, log)
    print("\n" + "\n".join(side_by_side(res)))
    print("\nhost-state correction (latency/host_state.py):\n" + "\n".join(correction_table(res)))
    for proto, r in res.items():
        if r["floor"]:
            print(f"{proto}: {r['floor']['verdict']}")
        fin = r["final"]
        meas = _load(a.out / proto / "heldout.jsonl", space)
        scatter_plot(a.out / f"latency_fit_{proto}.png", fin["table"].measured_ms(meas.norm, meas.ref_ms), {
            "table": fin["table"].predict_many(meas.widths),
            "FLOPs proxy": fin["proxy"].predict_many(space, meas.widths) * fin["table"].reference_ms
            / fin["proxy"].reference_ms}, f"{space.name}, {proto} protocol: held-out n={len(meas)}")
    _curve(a.out / "accuracy_vs_samples.png", res)
    result = {"device": dev, "space": space.name, "plan": asdict(plan),
              "command": "python -m widthnas.benchmarks.latency_accuracy " + " ".join(argv), "protocols": _jsonable(res),
              "table_md": side_by_side(res), "correction_md": correction_table(res)}
    atomic_write_text(a.out / "results.json", json.dumps(result, indent=1))
    if a.ship:
        proto = ship(a.ship, res, plan, space, a.out, argv)
        print(f"shipped profile ({proto} protocol): {a.ship}")
    print(f"results: {a.out / 'results.json'}; plots: {a.out / 'accuracy_vs_samples.png'}, "
          f"{', '.join(str(a.out / f'latency_fit_{p}.png') for p in res)}")
    print(f"suggested name for this device: {profile_name(dev, space.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
