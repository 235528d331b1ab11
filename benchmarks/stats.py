"""Paired statistics for accuracy differences between networks trained with the same seeds."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats


def paired_diff(a: Sequence[float], b: Sequence[float], level: float = 0.95, comparisons: int = 1) -> dict:
    """Mean of a[s] - b[s] over paired seeds with its t-interval.

    comparisons > 1 widens the interval by Bonferroni (level spread over that many comparisons), for
    a difference that was picked as the best of several.
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"a paired difference needs >= 2 paired seeds, got {len(d)}")
    alpha = (1 - level) / comparisons
    half = stats.t.ppf(1 - alpha / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    m = float(d.mean())
    return {"diff": m, "ci_low": m - float(half), "ci_high": m + float(half), "sd": float(d.std(ddof=1)), "n": len(d)}


def cell_diffs(csv_paths: Sequence[str], a: str, b: str) -> list[dict]:
    """Per (file, budget) cell of search-quality CSVs: the mean paired difference a − b over its seeds
    (the `accs` columns list one accuracy per seed, in seed order)."""
    import csv
    from pathlib import Path

    out = []
    for p in csv_paths:
        rows = {(r["method"], r["budget"]): r for r in csv.DictReader(Path(p).open())}
        for budget in sorted({bud for _, bud in rows}):
            if (a, budget) in rows and (b, budget) in rows:
                xa = [float(v) for v in rows[(a, budget)]["accs"].split()]
                xb = [float(v) for v in rows[(b, budget)]["accs"].split()]
                out.append({"file": Path(p).name, "budget": budget, **paired_diff(xa, xb)})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Pooled paired difference of two methods over search-quality CSVs' (file, budget) cells: the
    t-interval over the cells' mean differences, and over every (cell, seed) pair."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("csv", nargs="+")
    p.add_argument("--a", default="default")
    p.add_argument("--b", default="ows")
    args = p.parse_args(argv)
    cells = cell_diffs(args.csv, args.a, args.b)
    if len(cells) < 2:
        p.error(f"{len(cells)} cell(s) hold both {args.a!r} and {args.b!r}: need at least 2")
    for c in cells:
        print(f"{c['file']:40s} {c['budget']:>5s}  {100 * c['diff']:+.2f} [{100 * c['ci_low']:+.2f}, "
              f"{100 * c['ci_high']:+.2f}] points ({c['n']} seeds)")
    m = [c["diff"] for c in cells]
    pc = paired_diff(m, [0.0] * len(m))
    print(f"pooled over {len(m)} cells: {args.a} − {args.b} {100 * pc['diff']:+.2f} [{100 * pc['ci_low']:+.2f}, "
          f"{100 * pc['ci_high']:+.2f}] points (95 % t-interval over the cells' means)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
