"""Is a faster `make demo` as good? `widthnas run` under two settings on paired seeds (issue 33).

    python -m widthnas.benchmarks.demo_levers --variant fast:epochs=2,limit=8000,unary_configs=100 \
        --seeds 5 --csv docs/demo_levers.csv

Each (variant, seed) is one `widthnas run --out <out>/<variant>_s<seed> --seed <seed> [its flags]`, run as a
user runs it (the CLI, in a process of its own), one at a time so that no run disturbs another's timings.
"base" is the demo as shipped (no flags); every other variant is `name:option=value,...` with `widthnas run`'s
options (dashes or underscores). A finished run is read back from its run_state.json, an unfinished one
continues where it stopped (the run resumes by itself), so a killed benchmark resumes too.

Reported: per variant, the chosen network's test accuracy after fine-tuning and its measured latency, the
uniform8 network's accuracy and the seconds per stage; per other variant, its paired difference against
"base" in chosen test accuracy (95 % t-interval over the seeds: a faster demo must not be worse, so the
interval's lower end is what to read) and its total time as a ratio to base's, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from widthnas._io import atomic_write_text
from widthnas.benchmarks.stats import paired_diff

BASE = "base"
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


def run_one(out: Path, seed: int, flags: Sequence[str], log=print) -> dict:
    """One `widthnas run` (continued if it stopped); its run_state.json when done."""
    state = out / "run_state.json"
    if state.exists() and "report" in json.loads(state.read_text()):
        return json.loads(state.read_text())
    cli = "import sys; from widthnas.nas.cli import main; sys.exit(main())"  # the `widthnas` command
    cmd = [sys.executable, "-c", cli, "run", "--out", str(out), "--seed", str(seed), *flags]
    log(f"{out.name}: widthnas {' '.join(cmd[3:])}")
    t0 = time.time()
    r = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    log(f"{out.name}: done in {(time.time() - t0) / 60:.1f} min")
    return json.loads(state.read_text())


def row(variant: str, seed: int, st: dict) -> dict:
    """What one finished run says: accuracies (fractions), latency (ms), seconds per stage."""
    f, v = st["finetune"], st["verify"]
    secs = {k: float(st[k]["seconds"]) for k in STAGES if isinstance(st.get(k, {}).get("seconds"), (int, float))}
    return {"variant": variant, "seed": seed, "chosen_acc": f["chosen"]["test_acc"],
            "uniform_acc": f.get("uniform", {}).get("test_acc"), "chosen_ms": v["chosen"]["normalised_ms"],
            "budget_ms": st["search"]["budget_ms"], "total_s": sum(secs.values()), **{f"{k}_s": s for k, s in secs.items()}}


def compare(rows: list[dict]) -> list[dict]:
    """Per variant other than base: paired chosen-accuracy difference against base, and the time ratio."""
    by = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    out = []
    for name, runs in by.items():
        if name == BASE:
            continue
        seeds = sorted(set(runs) & set(by.get(BASE, {})))
        if len(seeds) < 2:
            continue
        d = paired_diff([runs[s]["chosen_acc"] for s in seeds], [by[BASE][s]["chosen_acc"] for s in seeds])
        ratio = sum(runs[s]["total_s"] for s in seeds) / sum(by[BASE][s]["total_s"] for s in seeds)
        out.append({"variant": name, "seeds": len(seeds), "time_ratio": ratio, **d})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", default=[], help="name:option=value,... (repeatable)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default="runs/demo_levers")
    p.add_argument("--csv", help="also write the per-run rows here (e.g. docs/demo_levers.csv)")
    a = p.parse_args(argv)
    if a.seeds < 2:
        p.error(f"--seeds {a.seeds}: a paired difference needs at least 2")
    try:
        variants = [(BASE, [])] + [parse_variant(v) for v in a.variant]
    except ValueError as e:
        p.error(str(e))
    if len({n for n, _ in variants}) != len(variants):
        p.error("two --variant share a name")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(a.seeds):  # seed-major: a stopped benchmark has paired results so far
        for name, flags in variants:
            rows.append(row(name, seed, run_one(out / f"{name}_s{seed}", seed, flags)))
    keys = list(rows[0])
    text = ",".join(keys) + "\n" + "\n".join(",".join("" if r.get(k) is None else str(r.get(k)) for k in keys)
                                             for r in rows) + "\n"
    atomic_write_text(out / "rows.csv", text)
    if a.csv:
        atomic_write_text(Path(a.csv), text)
    for c in compare(rows):
        print(f"{c['variant']} - {BASE}: chosen test accuracy {100 * c['diff']:+.2f} [{100 * c['ci_low']:+.2f}, "
              f"{100 * c['ci_high']:+.2f}] points over {c['seeds']} paired seeds; total time x{c['time_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
