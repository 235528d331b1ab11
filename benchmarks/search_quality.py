"""Search quality at equal latency: uniform multiplier, greedy slimming (AutoSlim), OWS, AOWS and
the default search (held-out selection among MRF candidates, nas.selection).

    python -m widthnas.benchmarks.search_quality --decisive   # <= 90 min on 2 CPU cores: 3 low budgets, 5 paired seeds
    python -m widthnas.benchmarks.search_quality --quick      # smoke mode, <= 30 min
    python -m widthnas.benchmarks.search_quality              # full: meant for a GPU (never run here)
Setup: Fashion-MNIST, --space (default mobilenet_v1_small; any registered space or a traced space's
JSON file), this machine's shipped CPU profile for it (or --profile). Every chosen network
is retrained from scratch with the same paired seeds (benchmarks/retrain_pool.py: same seed, same
initialisation stream and data order); reported per method and budget: test accuracy, the paired
difference against uniform and against greedy with a 95 % t-interval over seeds, and predicted and
measured latency of the exported ONNX (onnxruntime, reference-normalised, measured before any
retraining) against the budget. Resumable: supernets keep checkpoints and every retraining is kept in --out.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from widthnas._io import atomic_write_text, read_json
from widthnas.benchmarks.retrain_pool import Protocol, retrain_many
from widthnas.benchmarks.stats import paired_diff
from widthnas.latency.backends import OrtBackend
from widthnas.latency.registry import find_profile, load_profile, profile_path
from widthnas.models import SlimmableGraphNet, build_network, get_space
from widthnas.mrf import build_mrf, exact, greedy, uniform, with_margin
from widthnas.mrf.unaries import Unaries
from widthnas.nas.uniform8 import measured_multiplier, multiplier_candidates
from widthnas.nas.data import load_dataset, split
from widthnas.latency.verdict import budget_verdict
from widthnas.nas.export import export_onnx, measure_exported, network_measurer
from widthnas.nas.selection import GREEDY_STEP, EstimationScorer, cached_measured_unaries, propose, select
from widthnas.nas.train import CKPT, TrainConfig, Trainer

MODES = {
    # decisive: low budgets where capacity binds (docs/RESULTS.md, headroom), 5 paired seeds, <= 90 min here
    "decisive": dict(limit=20000, epochs=4, warmup=1, retrain_epochs=4, seeds=5, unary_configs=1000,
                     aows_unary_configs=400, unary_batch=512, budgets=(0.10, 0.14, 0.20)),
    "quick": dict(limit=6000, epochs=3, warmup=1, retrain_epochs=2, seeds=3, unary_configs=300,
                  unary_batch=256, budgets=(0.35, 0.50, 0.70)),
    "smoke": dict(limit=1500, epochs=2, warmup=1, retrain_epochs=1, seeds=2, unary_configs=30,
                  unary_batch=64, budgets=(0.12, 0.20)),  # checks that the script runs end to end (~5 min)
    "full": dict(limit=None, epochs=30, warmup=10, retrain_epochs=15, seeds=3, unary_configs=1000,
                 unary_batch=512, budgets=(0.35, 0.50, 0.70)),  # meant for a GPU; never run here
}
METHODS = ("uniform", "uniform8", "greedy", "ows", "aows", "default")
REFERENCES = ("uniform", "uniform8", "greedy")  # every method's paired difference against these
MARGIN_PCT = 1.0  # the reference methods aim 1 % under the budget; `default` uses the product's --margin auto


WARM_START = ("sampling", "budget", "profile")  # what AOWS changes when it continues the OWS warm-up


def train_supernet(out: Path, cfg: TrainConfig, log, stop_after: int | None = None) -> SlimmableGraphNet:
    t = Trainer(cfg, out, log=log, progress=False)
    if (out / CKPT).exists():
        t.resume(allow=WARM_START if cfg.sampling == "aows" else ())
    t.fit(stop_after=stop_after)
    return t.model


def cached_unaries(path: Path, sup, sp, mode: dict, seed: int, log, n_configs: int | None = None) -> Unaries:
    """Measured unaries, kept on disk so a resumed run makes the same choices."""
    return cached_measured_unaries(sup, sp, path, n_configs or mode["unary_configs"], mode["unary_batch"], seed, log)


def busy_cores(window_s: float = 3.0) -> float:
    """CPU cores busy over the next `window_s` seconds, from /proc/stat: unlike the load average it
    does not lag a minute behind (our own training that just stopped no longer counts)."""
    import os

    def snap():
        with open("/proc/stat") as f:
            v = [float(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0.0)  # total, idle + iowait (jiffies)

    try:
        t0, i0 = snap()
        time.sleep(window_s)
        t1, i1 = snap()
    except OSError:  # not Linux: the load average, lag and all
        return os.getloadavg()[0]
    return (1 - (i1 - i0) / max(t1 - t0, 1e-9)) * (os.cpu_count() or 1)


def wait_for_quiet(log, busy: float = 0.3, max_minutes: float = 60.0) -> bool:
    """Wait until other work uses less than `busy` cores (it disturbs every latency figure); say so,
    and go on after `max_minutes` with a note in the log."""
    t0 = time.time()
    said = False
    now = busy_cores()
    while now >= busy and time.time() - t0 < 60 * max_minutes:
        if not said:
            log(f"machine busy ({now:.2f} cores in use): waiting for it to settle before timing latency")
            said = True
        time.sleep(10)
        now = busy_cores()
    quiet = now < busy
    log(f"latency measured {'on a quiet machine' if quiet else 'UNDER LOAD'} ({now:.2f} cores busy"
        f"{f', after waiting {(time.time() - t0) / 60:.1f} min' if said else ''})")
    return quiet


SETUP = "setup.json"
RESUMABLE = ("budgets", "seeds")  # a resumed run may add budgets (each has its own supernet) and seeds


def check_setup(out: Path, setup: dict) -> None:
    """A directory's cached supernets, greedy path, selections and latencies hold for one space, profile and
    protocol: a resume with another (a profile of this machine instead of the shipped one) would mix two runs."""
    p = out / SETUP
    if not p.exists():
        atomic_write_text(p, json.dumps(setup, indent=1))
        return
    old = read_json(p, "benchmark setup", "choose another --out")
    diff = {k: (old.get(k), v) for k, v in setup.items() if k not in RESUMABLE and old.get(k) != v}
    if diff:
        raise SystemExit(f"{out} holds a run made with other settings {diff} (saved vs now): resume it with its own, "
                         "or choose another --out")


def cached_json(path: Path, make):
    if path.exists():
        return json.loads(path.read_text())
    v = make()
    atomic_write_text(path, json.dumps(v, indent=1))
    return v


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--decisive", action="store_true", help="3 low budgets, 5 paired seeds, <= 90 min on 2 CPU cores")
    g.add_argument("--quick", action="store_true", help="the earlier quick mode, <= 30 min")
    g.add_argument("--smoke", action="store_true", help="a few minutes: checks the script end to end, measures nothing")
    p.add_argument("--out", default=None, help="default: runs/search_quality_<mode>")
    p.add_argument("--space", default="mobilenet_v1_small", help="a registered space or a space JSON file")
    p.add_argument("--profile", help="default: the shipped profile of --space matching this machine")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data")
    p.add_argument("--seed", type=int, default=0, help="split, supernet and unary-sampling seed")
    p.add_argument("--budgets", help="override the mode's budgets, e.g. 12,17,25 (%% of the widest network)")
    p.add_argument("--seeds", type=int, help="override the mode's number of retraining seeds")
    p.add_argument("--seed-offset", type=int, default=0, help="retraining seeds start here (re-checks on fresh seeds)")
    p.add_argument("--workers", type=int, default=2, help="single-thread retraining processes")
    p.add_argument("--contiguous", action="store_true",
                   help="retrain in the default memory layout, as runs made before channels_last did (their caches)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing more: report the retrainings that finished (the seeds every network has)")
    p.add_argument("--docs", help="also copy the CSV and plot to this path stem, e.g. docs/search_quality_decisive")
    p.add_argument("--quiet-flag", help="a file this run writes 'measuring' to while it times latency (and 'idle' "
                                        "after), so that other jobs on the machine can hold back")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    mode_name = "decisive" if a.decisive else "quick" if a.quick else "smoke" if a.smoke else "full"
    mode = dict(MODES[mode_name])
    if a.budgets:
        try:
            mode["budgets"] = tuple(float(b) / 100 for b in a.budgets.split(","))
        except ValueError:
            raise SystemExit(f"--budgets {a.budgets!r}: give percentages separated by commas, e.g. 12,17,25")
        if not all(0 < b <= 1 for b in mode["budgets"]):
            raise SystemExit(f"--budgets {a.budgets!r}: every budget is a percentage in (0, 100]")
    if a.seeds is not None:
        if a.seeds < 2:
            raise SystemExit(f"--seeds {a.seeds}: a confidence interval needs at least 2 seeds")
        mode["seeds"] = a.seeds
    if a.workers < 1 or a.seed_offset < 0:
        raise SystemExit("--workers must be >= 1 and --seed-offset >= 0")
    if a.quiet_flag and Path(a.quiet_flag).exists() and (
            Path(a.quiet_flag).is_dir() or Path(a.quiet_flag).read_text(errors="replace").split()[:1] not in ([], ["measuring"], ["idle"])):
        raise SystemExit(f"--quiet-flag {a.quiet_flag}: that file holds something other than a flag "
                         "('measuring' or 'idle'); it would be overwritten. Give a path of its own, e.g. /tmp/widthnas_quiet")
    out = Path(a.out or f"runs/search_quality_{mode_name}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    logf = open(out / "log.txt", "a")

    def log(msg: str) -> None:
        line = f"[{time.time() - t_start:6.0f} s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    space_name = a.space
    ds = load_dataset(a.dataset, a.data)
    space = get_space(space_name)
    input_shape = None
    if ds.shape != space.input_shape:  # e.g. CIFAR-10 (3x32x32): the same ops, another input
        space = space.with_input(ds.shape)
        input_shape = ",".join(map(str, ds.shape))
        if not a.profile:
            raise SystemExit(f"{ds.name} images are {ds.shape}: profile that space first, e.g. `widthnas profile "
                             f"--input-shape {input_shape} --out s.jsonl` and `widthnas fit`, then pass --profile")
    if a.profile:
        prof_path = a.profile
    else:
        found, why = find_profile(space, OrtBackend(space).device_info())
        if found is None:
            raise SystemExit(f"no shipped profile for this machine ({why}); profile first and pass --profile")
        prof_path = str(found)
    table = load_profile(prof_path)
    widest = table.predict(space.max_widths)
    budgets = mode["budgets"]
    log(f"mode {mode_name} {mode}; profile {table.name}; widest {widest:.4f} ms; torch threads {torch.get_num_threads()}")
    check_setup(out, {"mode": mode_name, **mode, "space": space.fingerprint,
                      "profile": table.name, "profile_sha256": hashlib.sha256(profile_path(prof_path).read_bytes()).hexdigest(),
                      "dataset": a.dataset, "data": a.data, "seed": a.seed, "channels_last": not a.contiguous})
    sp = split(ds, 0.1, a.seed, mode["limit"])
    base = dict(space=space_name, input_shape=input_shape, dataset=a.dataset, data=a.data, limit=mode["limit"],
                epochs=mode["epochs"], seed=a.seed)

    # ---- OWS supernet (its warm-up checkpoint seeds every AOWS run: identical uniform epochs) ----
    ows_dir, warm_dir = out / "ows", out / "warmup"
    if not (warm_dir / CKPT).exists():
        t = Trainer(TrainConfig(**base, sampling="ows"), ows_dir, log=log, progress=False)
        if (ows_dir / CKPT).exists():
            t.resume()
        t.fit(stop_after=max(0, mode["warmup"] - t.epoch))
        shutil.copytree(ows_dir, warm_dir, dirs_exist_ok=True)
    ows = train_supernet(ows_dir, TrainConfig(**base, sampling="ows"), log)
    u_ows = cached_unaries(out / "unaries_ows_measured.json", ows, sp, mode, a.seed, log)
    mrf_ows = build_mrf(table, u_ows)

    from widthnas.latency.margin import resolve_margin

    default_margin, margin_how = resolve_margin("auto", table)  # what `widthnas run` aims at on the profile's machine
    log(f"default search margin: {margin_how}; the other methods aim {MARGIN_PCT:g} % under the budget")
    from widthnas.latency.check import CHECK_NETWORKS
    from widthnas.nas.commands.search import check_if_another_machine

    here = check_if_another_machine(table, CHECK_NETWORKS)
    if here is not None:  # every seed keeps one margin (cached results were taken at it); say what run would do
        log(f"note: this is another machine than the profile's: `widthnas run` here would aim "
            f"{resolve_margin('auto', table, here)[0]:g} % under the budget (its latency check); this benchmark "
            f"keeps the profile's {default_margin:g} % for its default search")
    lowest = with_margin(min(budgets) * widest, max(MARGIN_PCT, default_margin))  # where the descent must reach

    # ---- greedy slimming on the supernet itself (AutoSlim): one descent answers every budget ----
    def greedy_path():
        t0 = time.time()
        gsol = greedy(mrf_ows, lowest,
                      score_fn=EstimationScorer(ows, sp, min(256, mode["unary_batch"])), step=GREEDY_STEP)
        log(f"greedy AutoSlim: {len(gsol.info['path'])} steps, {gsol.info['evals']} supernet evaluations, "
            f"{time.time() - t0:.0f} s")
        return [[w, lat] for w, lat, _ in gsol.info["path"]]

    gpath = out / "greedy_path.json"
    if gpath.exists() and json.loads(gpath.read_text())[-1][1] > lowest:  # stopped short of a lower budget
        gpath.rename(gpath.with_name("greedy_path_short.json"))
    path = cached_json(gpath, greedy_path)

    choices: dict[tuple[str, float], list[int]] = {}
    selections = {}
    for b in budgets:
        target = with_margin(b * widest, MARGIN_PCT)  # what each method aims at; "met" is judged on b * widest
        try:
            choices[("uniform", b)] = uniform(mrf_ows, target).widths
        except ValueError as e:
            log(f"uniform {b:.0%}: {e}")
        choices[("greedy", b)] = next(w for w, lat in path if lat <= target)
        choices[("ows", b)] = exact(mrf_ows, target, with_front=False).widths
    # ---- AOWS: narrowing toward each budget, continuing from the shared warm-up; the default
    #      search (held-out selection) runs on the same supernet, as `widthnas run` does ----
    for b in budgets:
        d = out / f"aows_{b * 100:g}"
        if not (d / CKPT).exists():
            shutil.copytree(warm_dir, d, dirs_exist_ok=True)
            (d / "narrowing.jsonl").unlink(missing_ok=True)
        cfg = TrainConfig(**base, sampling="aows", warmup_epochs=mode["warmup"], budget=f"{b * 100:g}%",
                          profile=prof_path)
        sup = train_supernet(d, cfg, log)
        u = cached_unaries(d / "unaries_measured.json", sup, sp, mode, a.seed, log, mode.get("aows_unary_configs"))
        mrf = build_mrf(table, u)
        target = with_margin(b * widest, MARGIN_PCT)
        choices[("aows", b)] = exact(mrf, target, with_front=False).widths

        target_default = with_margin(b * widest, default_margin)

        def make_selection():
            log(f"default search at {b:.0%}: candidates judged on held-out validation images, aiming at "
                f"{target_default:.4f} ms")
            # greedy's answer from the OWS descent above (one descent answers every budget), so the
            # default costs no second descent
            g = next(w for w, lat in path if lat <= target_default)
            cands = propose(mrf, target_default, greedy_widths=g)
            wait_for_quiet(log)  # the candidates are timed: as `widthnas run` does, the winner must measure within
            measure = network_measurer(sup, table, out / "candidates")
            sel = select(sup, mrf, cands, sp, unary_images=mode["unary_batch"], log=log,
                         check=lambda w: budget_verdict(lambda: measure(w), b * widest))
            return {"widths": sel.widths, "target_ms": target_default, "measured_check": True, **sel.to_info()}

        sel_path = d / "selection.json"
        if sel_path.exists():
            made = json.loads(sel_path.read_text())
            if abs(made.get("target_ms", -1) - target_default) > 1e-12 or not made.get("measured_check"):
                # made for another margin, or before candidates were timed: kept aside, made again
                sel_path.rename(sel_path.with_name("selection_other_target.json" if made.get("measured_check")
                                                   else "selection_predicted_only.json"))
        selections[b] = cached_json(sel_path, make_selection)
        choices[("default", b)] = selections[b]["widths"]
        log(f"{b:.0%}: aows {choices[('aows', b)]}; default ({selections[b]['selected']}) {choices[('default', b)]}")

    # ---- latency first (on a quiet machine: nothing else of ours runs yet), then retraining ----
    lat_path = out / "latency.json"
    lat = json.loads(lat_path.read_text()) if lat_path.exists() else {}
    dense = space.with_dense_choices(8)  # the multiplier baseline's widths lie off the search grid
    waited = []

    def measure_ms(widths) -> float:
        """Reference-normalised ms of the exported ONNX, the mean of two measurements (cached)."""
        key = " ".join(map(str, widths))
        if key not in lat:
            if not waited:
                if a.quiet_flag:  # first ask the other jobs to hold back, then wait for the machine to settle
                    atomic_write_text(Path(a.quiet_flag), "measuring\n")
                waited.append(wait_for_quiet(log))
            onnx_path = out / "onnx" / f"{key.replace(' ', '_')}.onnx"
            export_onnx(build_network(dense, list(widths)), dense, onnx_path)
            ms = [measure_exported(onnx_path, table)["normalised_ms"] for _ in range(2)]
            if abs(ms[0] - ms[1]) > 0.03 * min(ms):
                log(f"latency of {key}: two measurements disagree ({ms[0]:.4f}, {ms[1]:.4f} ms): machine disturbed?")
            lat[key] = float(np.mean(ms))
            atomic_write_text(lat_path, json.dumps(lat, indent=1))
        return lat[key]

    mult_cands = multiplier_candidates(space)
    multipliers = {}
    for b in budgets:
        m, w = measured_multiplier(mult_cands, with_margin(b * widest, MARGIN_PCT), measure_ms)
        choices[("uniform8", b)], multipliers[b] = w, m
        log(f"uniform8 {b:.0%}: x{m} (rounded to 8 channels) {w}, measured {lat[' '.join(map(str, w))]:.4f} ms")
    networks = {tuple(w) for w in choices.values()}
    for widths in sorted(networks):
        measure_ms(widths)
    if a.quiet_flag and waited:
        atomic_write_text(Path(a.quiet_flag), "idle\n")
    seeds = list(range(a.seed_offset, a.seed_offset + mode["seeds"]))
    proto = Protocol(dataset=a.dataset, data=a.data, space=space_name, limit=mode["limit"],
                     epochs=mode["retrain_epochs"], lr=0.1, split_seed=a.seed, channels_last=not a.contiguous)
    # seed-major: a run stopped part-way leaves every network with about as many seeds (--report-only)
    res = retrain_many(out, proto, [(list(w), s) for s in seeds for w in sorted(networks)], a.workers, log=log,
                       done_only=a.report_only)
    if a.report_only:  # the seeds every network has finished: the differences stay paired
        seeds = [s for s in seeds if all((w, s) in res for w in networks)]
        log(f"report only: {len(seeds)} seeds finished for every network ({seeds})")
        if len(seeds) < 2:
            raise SystemExit("fewer than 2 seeds finished for every network: nothing to report yet")
    acc = {w: [res[(w, s)]["test_acc"] for s in seeds] for w in networks}

    rows = []
    for (method, b), widths in choices.items():
        w = tuple(widths)
        key = " ".join(map(str, widths))
        on_grid = all(x in c for x, c in zip(widths, space.choices))
        row = {"method": method, "budget": f"{b * 100:g}%", "budget_ms": b * widest,
               "predicted_ms": table.predict(widths) if on_grid else float("nan"),
               "measured_ms": lat[key], "budget_met": lat[key] <= b * widest, "acc_mean": float(np.mean(acc[w])),
               "acc_std": float(np.std(acc[w], ddof=1)), "n_seeds": len(seeds)}
        for ref in REFERENCES:
            other = choices.get((ref, b))
            d = paired_diff(acc[w], acc[tuple(other)]) if other is not None else None
            sfx = "" if ref == "uniform" else f"_{ref}"
            row[f"diff_vs_{ref}"] = d["diff"] if d else float("nan")
            row[f"ci_low{sfx}"] = d["ci_low"] if d else float("nan")
            row[f"ci_high{sfx}"] = d["ci_high"] if d else float("nan")
        row["accs"] = " ".join(f"{x:.4f}" for x in acc[w])
        row["widths"] = key
        if method == "default":
            row["selected"] = selections[b]["selected"]
        if method == "uniform8":
            row["selected"] = f"x{multipliers[b]}"
        rows.append(row)
        log(f"{method:8s} {b:4.0%}  acc {100 * row['acc_mean']:.2f} ± {100 * row['acc_std']:.2f}  vs uniform "
            f"{100 * row['diff_vs_uniform']:+.2f} [{100 * row['ci_low']:+.2f}, {100 * row['ci_high']:+.2f}]  vs uniform8 "
            f"{100 * row['diff_vs_uniform8']:+.2f} [{100 * row['ci_low_uniform8']:+.2f}, {100 * row['ci_high_uniform8']:+.2f}]  vs greedy "
            f"{100 * row['diff_vs_greedy']:+.2f} [{100 * row['ci_low_greedy']:+.2f}, {100 * row['ci_high_greedy']:+.2f}]  "
            f"predicted {row['predicted_ms']:.4f} ms measured {row['measured_ms']:.4f} ms "
            f"{'met' if row['budget_met'] else 'OVER'}")
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=fields)
    wr.writeheader()
    wr.writerows(rows)
    atomic_write_text(out / "search_quality.csv", buf.getvalue())
    _plot(out / "search_quality.png", rows)
    atomic_write_text(out / "search_quality.json", json.dumps(
        {"mode": mode_name, "settings": {**mode, "budgets": list(budgets)}, "seeds": seeds, "margin_pct": MARGIN_PCT,
         "default_margin_pct": default_margin, "multipliers": {f"{b * 100:g}%": m for b, m in multipliers.items()},
         "profile": table.name, "widest_ms": widest, "seconds": time.time() - t_start, "selections": {
             f"{b * 100:g}%": v for b, v in selections.items()}, "rows": rows}, indent=1))
    if a.docs:
        Path(a.docs).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "search_quality.csv", f"{a.docs}.csv")
        shutil.copyfile(out / "search_quality.png", f"{a.docs}.png")
    log(f"done in {(time.time() - t_start) / 60:.1f} min: {out / 'search_quality.csv'}, {out / 'search_quality.png'}")
    return 0


def _plot(path: Path, rows: list[dict]) -> None:
    """Left: accuracy against measured latency. Right: paired difference against uniform, 95 % CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    for j, m in enumerate(methods):
        rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r["measured_ms"])
        ax.errorbar([r["measured_ms"] for r in rs], [100 * r["acc_mean"] for r in rs],
                    yerr=[100 * r["acc_std"] for r in rs], marker="o", capsize=3, label=m)
        if m == "uniform":
            continue
        x = [budgets.index(r["budget"]) + 0.12 * (j - len(methods) / 2) for r in rs]
        d = np.array([100 * r["diff_vs_uniform"] for r in rs])
        err = np.array([[100 * (r["diff_vs_uniform"] - r["ci_low"]), 100 * (r["ci_high"] - r["diff_vs_uniform"])]
                        for r in rs]).T
        bx.errorbar(x, d, yerr=err, marker="o", ls="", capsize=3, label=m, color=f"C{j}")
    ax.set_xlabel("measured latency (ms, exported ONNX, onnxruntime CPU)")
    ax.set_ylabel("test accuracy after retraining (%)")
    ax.legend(fontsize=8)
    bx.axhline(0, color="0.5", lw=1)
    bx.set_xticks(range(len(budgets)), [f"budget {b}" for b in budgets])
    bx.set_ylabel("paired difference vs uniform (points, 95 % CI)")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
