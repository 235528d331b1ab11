"""Is a faster `make demo` as good? `widthnas run` under two settings on paired seeds (issue 33).

    python -m widthnas.benchmarks.demo_levers --variant fast:epochs=2,limit=8000,unary_configs=100 \
        --seeds 5 --csv docs/demo_levers.csv

Each (variant, seed) is one `widthnas run --out <out>/<variant>_s<seed> --seed <seed> [its flags]`, run as a
user runs it (the CLI, in a process of its own), one at a time so that no run disturbs another's timings.
"base" is the demo as shipped (no flags); every other variant is `name:option=value,...` with `widthnas run`'s
options (dashes or underscores). --common 'option=value,...' adds flags to every variant, base included (e.g. a
fixed --profile, so that no run profiles the machine and every run reads latency off the same table). A finished
run is read back from its run_state.json, an unfinished one continues where it stopped (the run resumes by
itself), so a killed benchmark resumes too; --keep DIR also copies each finished run's run_state.json there
(docs/, which a new checkout has) and reads runs back from it.

--share-supernet: a variant whose options all act after supernet training (SHAREABLE) starts from a copy of
base's profile and train stages for the same seed (its run_config.json written with its own settings), so the
pair differs in the search and what follows it alone, and the benchmark costs one supernet per seed. The copied
stages' seconds count in the variant's total time, as if it had run them.

Reported: per variant, the chosen network's test accuracy after fine-tuning and its measured latency, the
uniform8 network's accuracy and the seconds per stage; per other variant, its paired difference against
"base" in chosen test accuracy (95 % t-interval over the seeds: a faster demo must not be worse, so the
interval's lower end is what to read) and its total time as a ratio to base's, measured in the same run.

--retrain EPOCHS: the chosen network's accuracy after a demo's fine-tuning mixes the network with the compute
the demo spent on it (a shorter supernet training leaves every network less trained). The decisive benchmark's
protocol separates them: every run's chosen network, and its uniform8, is retrained from scratch (EPOCHS epochs
on --retrain-limit images, learning rate 0.1; benchmarks/retrain_pool.py), retrain seed = the run's seed, and
the paired differences are those of the retrained networks. Its records go to <keep or out>/retrain_<key>/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from widthnas._io import atomic_write_text
from widthnas.benchmarks.stats import paired_diff

BASE = "base"
# settings a run reads only after its supernet is trained: a variant of these alone can share base's supernet
SHAREABLE = ("unary_configs", "slim_images", "finetune_epochs", "method")
STAGES = ("profile", "train", "search", "finetune", "export", "verify", "report")  # nas/run.py's


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'fast:epochs=2,unary_configs=100' -> ('fast', ['--epochs', '2', '--unary-configs', '100'])."""
    name, _, opts = text.partition(":")
    if not name or not name.isidentifier() or name == BASE:
        raise ValueError(f"--variant {text!r}: start with a name (letters, digits, _; not {BASE!r}), then "
                         "':option=value,...' with widthnas run's options")
    flags = []
    for item in filter(None, opts.split(",")):
        key, eq, value = item.partition("=")
        if not key:
            raise ValueError(f"--variant {text!r}: {item!r} names no option; write option=value")
        flags.append("--" + key.strip().replace("_", "-"))
        if eq:  # 'no_guard' alone: a switch
            flags.append(value.strip())
    return name, flags


def run_one(out: Path, seed: int, flags: Sequence[str], log=print, keep: Path | None = None) -> dict:
    """One `widthnas run` (continued if it stopped); its run_state.json when done (also copied to keep/)."""
    state = out / "run_state.json"
    kept = keep / f"{out.name}.json" if keep else None
    if kept is not None and kept.exists():
        return json.loads(kept.read_text())
    if state.exists() and "report" in json.loads(state.read_text()):
        if kept is not None:
            atomic_write_text(kept, state.read_text())
        return json.loads(state.read_text())
    cli = "import sys; from widthnas.nas.cli import main; sys.exit(main())"  # the `widthnas` command
    cmd = [sys.executable, "-c", cli, "run", "--out", str(out), "--seed", str(seed), *flags]
    log(f"{out.name}: widthnas {' '.join(cmd[3:])}")
    t0 = time.time()
    r = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    log(f"{out.name}: done in {(time.time() - t0) / 60:.1f} min")
    if kept is not None:
        atomic_write_text(kept, state.read_text())
    return json.loads(state.read_text())


def shareable(flags: Sequence[str]) -> bool:
    """Do these flags (parse_variant's) all name settings read after supernet training?"""
    names = [f[2:].replace("-", "_") for f in flags if f.startswith("--")]
    return bool(names) and all(n in SHAREABLE for n in names)


def share_supernet(base: Path, out: Path, flags: Sequence[str]) -> None:
    """Start `out` from base's finished profile and train stages: its files but the search's and later
    ones (the measured unaries too), run_state.json cut to those two stages, run_config.json with the
    variant's settings. Nothing is done when `out` exists (a resumed benchmark)."""
    from widthnas.nas.run import RUN_WRITES
    from widthnas.nas.run_config import RunConfig

    if out.exists():
        return
    st = json.loads((base / "run_state.json").read_text())
    if not all(st.get(k, {}).get("done") for k in ("profile", "train")):
        raise RuntimeError(f"{base}: its supernet is not trained; run base first")
    cfg = json.loads((base / "run_config.json").read_text())
    types = {k: type(v) for k, v in RunConfig().__dict__.items()}
    for name, value in zip(flags[::2], flags[1::2]):
        key = name[2:].replace("-", "_")
        cfg[key] = types[key](value)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    later = set(RUN_WRITES) - {"run_config.json", "run_state.json", "samples.jsonl", "heldout.jsonl",
                               "heldout_remeasure.jsonl", "profile.json", "latency_check.jsonl", "latency_fit.png"}
    shutil.copytree(base, tmp, ignore=lambda d, names: [n for n in names if n in later or n == "candidates" or
                                                        n == "unaries_measured.json"])
    atomic_write_text(tmp / "run_config.json", json.dumps(cfg, indent=1))
    atomic_write_text(tmp / "run_state.json", json.dumps({k: st[k] for k in ("profile", "train")}, indent=1))
    tmp.rename(out)


def row(variant: str, seed: int, st: dict) -> dict:
    """What one finished run says: accuracies (fractions), latency (ms), seconds per stage."""
    f, v = st["finetune"], st["verify"]
    secs = {k: float(st[k]["seconds"]) for k in STAGES if isinstance(st.get(k, {}).get("seconds"), (int, float))}
    uni = st["search"].get("uniform") or {}
    return {"variant": variant, "seed": seed, "chosen_acc": f["chosen"]["test_acc"],
            "uniform_acc": f.get("uniform", {}).get("test_acc"), "chosen_ms": v["chosen"]["normalised_ms"],
            "budget_ms": st["search"]["budget_ms"], "total_s": sum(secs.values()), **{f"{k}_s": s for k, s in secs.items()},
            "chosen_widths": " ".join(map(str, st["search"]["chosen"]["widths"])),
            "uniform_widths": " ".join(map(str, uni.get("widths") or []))}


def compare(rows: list[dict], key: str = "chosen_acc") -> list[dict]:
    """Per variant other than base: paired difference of `key` (chosen_acc: after the run's fine-tuning;
    retrained_acc: retrained from scratch) against base, and the time ratio."""
    by = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    out = []
    for name, runs in by.items():
        if name == BASE:
            continue
        seeds = sorted(s for s in set(runs) & set(by.get(BASE, {}))
                       if runs[s].get(key) is not None and by[BASE][s].get(key) is not None)
        if len(seeds) < 2:
            continue
        d = paired_diff([runs[s][key] for s in seeds], [by[BASE][s][key] for s in seeds])
        ratio = sum(runs[s]["total_s"] for s in seeds) / sum(by[BASE][s]["total_s"] for s in seeds)
        out.append({"variant": name, "seeds": len(seeds), "time_ratio": ratio, **d})
    return out


def retrain_rows(rows: list[dict], out: Path, space: str, epochs: int, limit: int, workers: int = 2,
                 log=print) -> None:
    """Add retrained_acc (the chosen network) and retrained_uniform_acc (its uniform8) to every row: each
    network retrained from scratch with the row's seed; a network two rows share is trained once."""
    from widthnas.benchmarks.retrain_pool import Protocol, retrain_many

    proto = Protocol(space=space, limit=limit, epochs=epochs, lr=0.1, split_seed=0)

    def widths(r: dict, k: str) -> tuple[int, ...]:
        return tuple(int(w) for w in r[k].split())

    jobs = sorted({(widths(r, k), r["seed"]) for r in rows for k in ("chosen_widths", "uniform_widths") if r[k]})
    done = retrain_many(out, proto, [(list(w), s) for w, s in jobs], workers=workers, log=log)
    for r in rows:
        r["retrained_acc"] = done[(widths(r, "chosen_widths"), r["seed"])]["test_acc"]
        r["retrained_uniform_acc"] = (done[(widths(r, "uniform_widths"), r["seed"])]["test_acc"]
                                      if r["uniform_widths"] else None)


def _print_comparisons(rows: list[dict]) -> None:
    what = {"chosen_acc": "chosen test accuracy after the run's fine-tuning",
            "retrained_acc": "chosen network retrained from scratch"}
    for key, text in what.items():
        for c in compare(rows, key):
            print(f"{c['variant']} - {BASE}: {text} {100 * c['diff']:+.2f} [{100 * c['ci_low']:+.2f}, "
                  f"{100 * c['ci_high']:+.2f}] points over {c['seeds']} paired seeds; total time x{c['time_ratio']:.2f}")
    if rows and "retrained_acc" in rows[0]:
        for name in dict.fromkeys(r["variant"] for r in rows):
            rs = [r for r in rows if r["variant"] == name and r.get("retrained_uniform_acc") is not None]
            if len(rs) >= 2:
                d = paired_diff([r["retrained_acc"] for r in rs], [r["retrained_uniform_acc"] for r in rs])
                print(f"{name}: chosen - uniform8, both retrained: {100 * d['diff']:+.2f} [{100 * d['ci_low']:+.2f}, "
                      f"{100 * d['ci_high']:+.2f}] points over {d['n']} seeds")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", default=[], help="name:option=value,... (repeatable)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default="runs/demo_levers")
    p.add_argument("--csv", help="also write the per-run rows here (e.g. docs/demo_levers.csv)")
    p.add_argument("--common", default="", help="option=value,... added to every variant, base included")
    p.add_argument("--share-supernet", action="store_true",
                   help=f"variants of {', '.join(SHAREABLE)} alone start from base's trained supernet")
    p.add_argument("--keep", help="copy each finished run's run_state.json here and read runs back from it")
    p.add_argument("--retrain", type=int, default=0, metavar="EPOCHS",
                   help="also retrain every chosen network and its uniform8 from scratch, EPOCHS epochs, paired "
                        "seeds (the decisive benchmark's protocol: 4)")
    p.add_argument("--retrain-limit", type=int, default=20000, help="training images per retraining")
    p.add_argument("--workers", type=int, default=2, help="single-thread retraining processes")
    a = p.parse_args(argv)
    if a.seeds < 2:
        p.error(f"--seeds {a.seeds}: a paired difference needs at least 2")
    for name, low in (("retrain", 0), ("retrain_limit", 1), ("workers", 1)):
        if getattr(a, name) < low:
            p.error(f"--{name.replace('_', '-')} {getattr(a, name)}: must be at least {low}")
    try:
        variants = [(BASE, [])] + [parse_variant(v) for v in a.variant]
        common = parse_variant(f"common:{a.common}")[1]
    except ValueError as e:
        p.error(str(e))
    if a.share_supernet and not all(shareable(f) for n, f in variants if n != BASE):
        p.error(f"--share-supernet: every variant may set only {', '.join(SHAREABLE)}")
    if len({n for n, _ in variants}) != len(variants):
        p.error("two --variant share a name")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    keep = Path(a.keep) if a.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(a.seeds):  # seed-major: a stopped benchmark has paired results so far
        for name, flags in variants:
            run_dir = out / f"{name}_s{seed}"
            if a.share_supernet and name != BASE and not (keep and (keep / f"{run_dir.name}.json").exists()):
                share_supernet(out / f"{BASE}_s{seed}", run_dir, flags)
            rows.append(row(name, seed, run_one(run_dir, seed, [*common, *flags], keep=keep)))
    if a.retrain:
        from widthnas.nas.run_config import RunConfig

        space = common[common.index("--space") + 1] if "--space" in common else RunConfig().space  # switches unpaired
        retrain_rows(rows, keep or out, space, a.retrain, a.retrain_limit, a.workers)
    keys = list(rows[0])
    text = ",".join(keys) + "\n" + "\n".join(",".join("" if r.get(k) is None else str(r.get(k)) for k in keys)
                                             for r in rows) + "\n"
    atomic_write_text(out / "rows.csv", text)
    if a.csv:
        atomic_write_text(Path(a.csv), text)
    _print_comparisons(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
