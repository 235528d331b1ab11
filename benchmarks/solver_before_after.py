"""Solver speed before and after a change, measured in one run (issue 34): `solver_speed --section graph` of two
checkouts, run alternately (before, after, before, after, ...) so that both see the same machine.

    git worktree add --detach /tmp/before <commit>
    python -m widthnas.benchmarks.solver_before_after --before /tmp/before --after . --rounds 3

Each checkout runs its own benchmarks/solver_speed.py and solvers, imported as `widthnas` through a link in a
temporary folder. Printed: each side's median and minimum over the rounds (ms, process CPU time) and after / before.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

KEYS = {"exact+front": r"exact optimum \+ front\s+([\d.]+) ms", "lagrangian": r"Lagrangian budget solve\s+([\d.]+) ms",
        "marginals": r"marginals \(sum-product\)\s+([\d.]+) ms"}


def run_once(checkout: Path, repeats: int) -> dict[str, float]:
    """One `solver_speed --section graph` of `checkout`: its medians (ms)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "widthnas").symlink_to(checkout.resolve())
        env = {**os.environ, "PYTHONPATH": tmp, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-m", "widthnas.benchmarks.solver_speed", "--section", "graph",
                              "--clock", "cpu", "--repeats", str(repeats)], env=env, capture_output=True, text=True,
                             check=True).stdout
    found = {k: re.search(p, out) for k, p in KEYS.items()}
    missing = [k for k, m in found.items() if m is None]
    if missing:
        raise SystemExit(f"{checkout}: solver_speed printed no {', '.join(missing)}; its output:\n{out}")
    return {k: float(m.group(1)) for k, m in found.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="the checkout before the change (a repository root)")
    p.add_argument("--after", type=Path, default=Path("."), help="the checkout after it (default: here)")
    p.add_argument("--rounds", type=int, default=3, help="alternations before/after (>= 1)")
    p.add_argument("--repeats", type=int, default=30, help="solver_speed's repeats per timing (>= 3)")
    a = p.parse_args(argv)
    if a.rounds < 1 or a.repeats < 3:
        p.error("--rounds must be >= 1 and --repeats >= 3")
    for side in (a.before, a.after):
        if not (side / "benchmarks" / "solver_speed.py").is_file():
            p.error(f"{side} is not a widthnas checkout (no benchmarks/solver_speed.py); give a repository root")
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for r in range(a.rounds):
        for name, side in (("before", a.before), ("after", a.after)):
            runs[name].append(run_once(side, a.repeats))
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in runs[name][-1].items()),
                  flush=True)
    print(f"\nover {a.rounds} rounds (process CPU ms), mobilenet_v1 224 px MRF; the minimum is the steadier figure "
          "on a host whose speed moves:")
    for k in KEYS:
        for how, f in (("median", np.median), ("minimum", np.min)):
            b, n = (float(f([x[k] for x in runs[s]])) for s in ("before", "after"))
            print(f"  {k:12s} {how:8s} before {b:8.3f}  after {n:8.3f}  after/before {n / b:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
