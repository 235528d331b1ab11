"""Do budgets hold on measurement? Fresh `widthnas search` + `widthnas export` at many budgets, each
exported network then timed again here until the 95 % interval of its timings clears the budget.

This is issue 11's last check: with `--margin auto` (the default of search) every exported network
must measure within its budget. Each budget runs the CLI in-process exactly as a user types it
(held-out selection, whose candidates are timed, then export with its own latency check), then a
verification separate from both: `latency.verdict.budget_verdict` over `measure_exported` timings,
with the load guard on. Results are cached per budget under --out (a killed run resumes).

    python -m widthnas.benchmarks.latency_accuracy --budget-check runs/sq_seed2/ows   # any supernet run dir, any space
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Callable

from widthnas._io import atomic_write_text

BUDGETS_PCT = (12, 15, 20, 25, 30, 40, 50, 60, 70, 85)  # % of the widest network's predicted latency


def parse_budgets(text: str | None) -> tuple[float, ...]:
    if not text:
        return BUDGETS_PCT
    try:
        out = tuple(float(b) for b in text.split(","))
    except ValueError:
        raise ValueError(f"--budgets {text!r}: give percentages separated by commas, e.g. 12,30,70") from None
    if not out or not all(math.isfinite(b) and 0 < b <= 100 for b in out):
        raise ValueError(f"--budgets {text!r}: every budget is a percentage in (0, 100]")
    return out


def _cli(argv: list[str]) -> str:
    """Run a widthnas command in-process; its output, or an error with that output."""
    from widthnas.nas.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"widthnas {' '.join(argv)} failed ({rc}):\n{buf.getvalue()[-2000:]}")
    return buf.getvalue()


def check_one(run_dir: Path, profile: str, pct: float, out: Path) -> dict:
    """search + export at `pct` % of the widest network, then the separate verification."""
    from widthnas.latency.registry import load_profile
    from widthnas.latency.standalone_runner import LoadGuard
    from widthnas.latency.verdict import budget_verdict, verdict_of
    from widthnas.nas.export import measure_exported

    tag = f"b{pct:g}"
    cfg, onnx = out / f"{tag}_config.json", out / f"{tag}.onnx"
    _cli(["search", "--profile", profile, "--run", str(run_dir), "--budget", f"{pct:g}%", "--out", str(cfg)])
    _cli(["export", "--run", str(run_dir), "--config", str(cfg), "--profile", profile, "--out", str(onnx)])
    chosen = json.loads(cfg.read_text())
    table = load_profile(profile)
    budget_ms = pct / 100 * table.predict(table.space.max_widths)
    guard = LoadGuard()
    timings: list[dict] = []  # each timing's host speed and guard flags, to read a verdict by

    def measure() -> float:
        timings.append(measure_exported(onnx, table, guard=guard))
        return timings[-1]["normalised_ms"]

    v = budget_verdict(measure, budget_ms)
    # the same timings read off the reference alone, as every verification did before the ladder
    by_ref = verdict_of([t["reference_normalised_ms"] for t in timings], budget_ms)
    if abs(chosen["budget_ms"] - budget_ms) > 1e-9 * budget_ms:
        raise RuntimeError(f"search took the budget as {chosen['budget_ms']} ms, expected {budget_ms} ms")
    return {"budget_pct": pct, "budget_ms": budget_ms, "widths": chosen["widths"],
            "predicted_ms": chosen["predicted_ms"], "selected": chosen["info"].get("selected"),
            "margin_pct": chosen["margin_pct"], "margin_how": chosen.get("margin_how"),
            "latency_check": chosen.get("latency_check"),  # search's check, made when the profile is another machine's
            **{k: v[k] for k in ("verdict", "mean_ms", "ci_low_ms", "ci_high_ms",
                                                                  "measurements_ms")},
            "host_speed": [t["host_speed"] for t in timings],  # reference now / profiled (1.2: host 20 % slower)
            "disturbed": [t["disturbed"] for t in timings], "remeasured": [t["remeasured"] for t in timings],
            "unsettled": [t.get("unsettled", 0) for t in timings],  # timings that never met their spread target
            "read_off": "ladder" if "ladder" in timings[-1] else "reference",
            "reference_only": {k: by_ref[k] for k in ("verdict", "mean_ms", "ci_low_ms", "ci_high_ms", "measurements_ms")}}


def run_checks(run_dir: str | Path, profile: str, budgets: tuple[float, ...], out: str | Path,
               log: Callable[[str], None] = print) -> list[dict]:
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "checkpoint.pt").exists():
        raise ValueError(f"--budget-check {run_dir}: no supernet checkpoint there; give a `widthnas train` run "
                         "directory (or runs/demo/supernet after `make demo`)")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for pct in budgets:
        cache = out / f"b{pct:g}.json"
        if cache.exists():
            row = json.loads(cache.read_text())
        else:
            row = check_one(run_dir, profile, pct, out)
            atomic_write_text(cache, json.dumps(row, indent=1))
        rows.append(row)
        log(f"budget {pct:4g} % = {row['budget_ms']:.4f} ms: predicted {row['predicted_ms']:.4f} ms, measured "
            f"{row['mean_ms']:.4f} [{row['ci_low_ms']:.4f}, {row['ci_high_ms']:.4f}] ms over "
            f"{len(row['measurements_ms'])} timings: {row['verdict']} (selected {row['selected']}, margin {row['margin_pct']:g} %)"
            + (f"; host speed {min(row['host_speed']):.2f}-{max(row['host_speed']):.2f}; off the reference alone "
               f"{row['reference_only']['mean_ms']:.4f} ms: {row['reference_only']['verdict']}" if "reference_only" in row else ""))
    within = sum(r["verdict"] == "within" for r in rows)
    log(f"{within} of {len(rows)} exported networks measured within budget (95 % interval below it)")
    if all("reference_only" in r for r in rows) and any(r.get("read_off") == "ladder" for r in rows):
        w2 = sum(r["reference_only"]["verdict"] == "within" for r in rows)
        log(f"the same timings read off the reference alone: {w2} of {len(rows)} within")
    return rows
