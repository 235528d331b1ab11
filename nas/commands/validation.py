"""What `fit --heldout` and `validate` share: the --remeasure options, loading samples, the validation
record on held-out samples (with the noise floor), its printout and the predicted-vs-measured plot."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ..checks import UserError


def add_remeasure_options(q) -> None:
    from widthnas.latency.noise_floor import DEFAULT_REMEASURE

    q.add_argument("--remeasure", type=int, default=DEFAULT_REMEASURE, metavar="N",
                   help="time the first N held-out networks again (same backend and protocol, on the device "
                   f"that measured them) for the measurement's noise floor; 0: skip (default {DEFAULT_REMEASURE})")
    q.add_argument("--remeasure-out", metavar="JSONL", help="keep the re-measurements here (resumable); never "
                   "an input file")


def load_checked_samples(paths, space, what: str = "samples", device: dict | None = None):
    """(space, samples) of the files `paths`, each of which must exist; `space` is a GraphSpace or (fit) a
    function of the first file's header space definition. What the load left out or flagged is said once."""
    from widthnas.latency.samples import load_samples
    from widthnas.latency.standalone_runner import read_samples

    for p in paths:
        if not Path(p).exists():
            raise UserError(f"samples file {p} not found; create it with `widthnas profile --out {p}`")
    if callable(space):
        space = space(read_samples(paths[0])[0]["space"].get("def"))
    with warnings.catch_warnings(record=True):  # counted and reported below, once
        warnings.simplefilter("always")
        s = load_samples(paths, space, device)  # refuses another space or device
    for line in s.describe(what):
        print(f"warning: {line}", file=sys.stderr)
    return space, s


def validation_record(table, h, proxy, heldout_paths, remeasure: int, remeasure_out) -> dict:
    """The profile's validation record on held-out samples h: the metrics, what the load found, and
    (remeasure > 0) the measured noise floor with which of the two limits the figures; printed too."""
    from widthnas.latency.noise_floor import FloorUnavailable, describe, limiting, measure_floor
    from widthnas.latency.validate import validate

    v = {**validate(table, h, proxy), "heldout_files": [str(p) for p in heldout_paths], "heldout_quality": h.quality()}
    for name, m in v.items():
        if isinstance(m, dict) and "nrmse" in m and name != "noise_floor":
            print(f"{name:12s} n={m['n']}  NRMSE {m['nrmse']:.2%}  RMSPE {m['rmspe']:.2%}  "
                  f"within ±5% {m['within_5']:.1%}  ±10% {m['within_10']:.1%}  Kendall τ {m['kendall_tau']:.3f}")
    if remeasure:
        try:
            floor = measure_floor(h, remeasure, table.space, table.measured_ms, out=remeasure_out,
                                  log=lambda m: print(m, file=sys.stderr, flush=True), progress=sys.stderr.isatty())
        except FloorUnavailable as e:
            print(f"noise floor: not measured: {e}")
        else:
            floor.update(limiting(v["table"]["rmspe"], floor))
            v["noise_floor"] = floor
            print(describe(floor))
            print(f"limits: {floor['verdict']}")
    return v


def plot_heldout(path, table, h, proxy) -> None:
    from widthnas.latency.validate import scatter_plot

    meas = table.measured_ms(h.norm, h.ref_ms)
    scatter_plot(path, meas, {"table": table.predict_many(h.widths),
                              "FLOPs proxy": proxy.predict_many(table.space, h.widths) * table.reference_ms
                              / proxy.reference_ms},
                 f"{table.name}: held-out n={len(h)}")
    print(f"plot: {path}")
