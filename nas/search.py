"""`widthnas search`: choose widths under a latency budget from a profile and unaries."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from widthnas._io import atomic_savefig, atomic_write_text, pyplot
from widthnas.latency.margin import resolve_margin
from widthnas.mrf import build_mrf, parse_budget, solve, wide, with_margin
from widthnas.mrf.baselines import uniform
from widthnas.mrf.solvers import fastest
from widthnas.mrf.unaries import from_arrays

from .selection import default_search


def variables(space) -> list[tuple[str, int, tuple[int, ...]]]:
    """(name, base channels, width choices) per search variable, a free channel group; the order
    widths are listed in."""
    return [(g.name, g.base, tuple(g.choices)) for g in space.free_groups]


def aim(table, budget_spec: str, margin: str, check: dict | None = None) -> tuple[float, float, float, float, str]:
    """(budget ms, widest network's ms, target ms, margin %, why that margin): the budget as given
    ('0.8ms' or '60%' of the widest network) and the latency the solvers aim at, a margin under it."""
    widest = table.predict(table.space.max_widths)
    budget = parse_budget(budget_spec, widest)
    margin_pct, margin_how = resolve_margin(margin, table, check)
    target = with_margin(budget, margin_pct)
    # the fastest network is no slower than the narrowest: only a target under the narrowest needs it found
    fastest = fastest_ms(table) if target < table.predict(table.space.min_widths) else target
    if target < fastest <= budget:  # the margin, not the budget, would leave no network: aim at the fastest
        aimed = min(budget, fastest * (1 + 1e-9))  # the MRF sums the same costs in another order: not an ulp under
        margin_how = (f"{margin_how}; reduced from {margin_pct:.2f} % to {100 * (1 - aimed / budget):.2f} %: "
                      f"{margin_pct:.2f} % under the budget is below the fastest network ({fastest:.4f} ms), "
                      "which the budget holds; its measurement decides")
        margin_pct, target = 100 * (1 - aimed / budget), aimed
    return budget, widest, target, margin_pct, margin_how


def flat_mrf(table):
    """The profile's MRF with every unary 0: latency alone."""
    sp = table.space
    return build_mrf(table, from_arrays(sp, [np.zeros(len(c)) for c in sp.choices],
                                        [np.ones(len(c), int) for c in sp.choices]))


def fastest_ms(table) -> float:
    """The fastest network's predicted ms. Not always the narrowest's: on an overhead-bound network a fitted
    table can rank 8 channels slower than 16."""
    return fastest(flat_mrf(table)).latency


def search(table, unaries, method: str, target_ms: float, budget_ms: float, supernet=None, splits=None,
           measure=None, log=print, slim_images: int | None = None):
    """The search `widthnas search` and `widthnas run` both make: (chosen, uniform or None, the MRF).
    method 'select' (the default): nas.selection.default_search; else one solver ('exact', 'lagrangian',
    'greedy', 'uniform') on the unaries. The uniform network, the largest multiplier within target_ms, is
    for comparison."""
    mrf = build_mrf(table, unaries)
    if wide.too_wide(mrf):  # a DenseNet's concatenations: no exact search, and the user is told
        log(f"search: no exact solution for this space: {wide.why(mrf)}")
    if method == "select":
        sol = default_search(supernet, splits, table, unaries, target_ms, log=log, budget_ms=budget_ms,
                             measure=measure, slim_images=slim_images)
    else:
        sol = solve(mrf, target_ms, method)
    try:
        uni = uniform(mrf, target_ms)
    except ValueError as e:  # the search may still fit a budget no uniform multiplier meets
        uni = None
        log(f"search: no uniform network fits {target_ms:.4f} ms ({e}); reporting the chosen network alone")
    return sol, uni, mrf


def chosen_config(space, table, sol, unaries_path: str | None, budget_spec: str, budget_ms: float,
                  margin_pct: float = 0.0, margin_how: str = "") -> dict:
    """The chosen-configuration JSON (docs/design.md section 2). budget_ms: the user's budget; the solver
    aimed at sol.budget (margin_pct % under it, for the reason margin_how gives)."""
    return {
        "format": "widthnas-config/1",
        "widths": sol.widths,
        "base_widths": space.base_widths,
        "predicted_ms": sol.latency,
        "score": sol.score,
        "budget_ms": budget_ms,
        "budget": budget_spec,
        "margin_pct": margin_pct,
        "margin_how": margin_how,
        "target_ms": sol.budget,
        "method": sol.method,
        "info": {k: (v if not isinstance(v, (np.floating, np.integer)) else v.item())
                 for k, v in sol.to_dict()["info"].items()},
        "space": {"name": space.name, "fingerprint": space.fingerprint},
        "profile": {"name": table.name, "reference_ms": table.reference_ms, "device": table.device},
        "unaries": unaries_path,
        "created": time.time(),
    }


def print_widths(space, sol, uniform_sol=None, out=print) -> None:
    vs = variables(space)
    wn = max(8, *(len(n) for n, _, _ in vs))
    out(f"{'group':{wn}s} {'base':>5s} {'chosen':>7s}" + (f" {'uniform':>8s}" if uniform_sol else ""))
    for i, (name, base, _) in enumerate(vs):
        out(f"{name:{wn}s} {base:5d} {sol.widths[i]:7d}" + (f" {uniform_sol.widths[i]:8d}" if uniform_sol else ""))


def write_pareto(path: str | Path, front, chosen=None, uniform_sol=None, budget=None) -> Path:
    """The front as CSV (latency_ms, score, widths) and a PNG beside it with the chosen point."""
    path = Path(path)
    rows = [["latency_ms", "score", "widths"]] + [[f"{s.latency:.6f}", f"{s.score:.6f}", " ".join(map(str, s.widths))]
                                                  for s in front]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    atomic_write_text(path, buf.getvalue())
    png = path.with_suffix(".png")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step([s.latency for s in front], [s.score for s in front], where="post", label="Pareto front (exact)")
    if budget is not None:
        ax.axvline(budget, color="0.6", ls="--", label=f"budget {budget:.3f} ms")
    if chosen is not None:
        ax.plot([chosen.latency], [chosen.score], "r*", ms=14, label=f"chosen ({chosen.method})")
    if uniform_sol is not None:
        ax.plot([uniform_sol.latency], [uniform_sol.score], "ks", label="uniform multiplier (search grid)")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("score (−accuracy loss)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, png)
    plt.close(fig)
    return png
