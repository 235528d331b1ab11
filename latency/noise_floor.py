"""The measurement's own noise floor: re-time held-out networks and compare with their first timing.

A profile can look no better than its held-out labels, each one measurement (docs/design.md §3);
re-measuring K of them shows which of the two limits the figures (`margin.auto_margin_pct` uses it
too). It uses the backend and protocol the held-out header records: only on the device that measured it.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import standalone_runner as sr
from .backends import clocks, make_backend
from .host_state import is_positive
from .samples import Samples
from .validate import metrics

DEFAULT_REMEASURE = 30  # held-out networks timed again; 0 disables
MIN_REMEASURE = 3  # fewer pairs say nothing about a spread


class FloorUnavailable(ValueError):
    """The noise floor cannot be measured here (another device, a missing execution provider)."""


def check_count(n: int, what: str = "--remeasure") -> int:
    """A re-measurement count: 0 (off) or at least MIN_REMEASURE, else a clear error."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or (n != 0 and n < MIN_REMEASURE):
        raise ValueError(f"{what} {n!r}: give 0 to skip the noise floor, or at least {MIN_REMEASURE} held-out networks "
                         f"to time again (default {DEFAULT_REMEASURE})")
    return int(n)


def backend_for(space, device: dict):
    """The backend that produced samples of `device`, if this machine is that device (same device key)."""
    try:
        be = make_backend(space, device.get("backend", "onnxruntime"), device.get("provider"),
                          int(device.get("threads", 1)), int(device.get("batch", 1)), device.get("opt_level", "all"))
        here = be.device_info()
    except (ValueError, TypeError) as e:
        raise FloorUnavailable(f"the held-out samples' backend cannot run here ({e})") from None
    diff = sr.device_differences(device, here)
    if diff:
        raise FloorUnavailable(f"the held-out samples were measured on another device "
                               f"({sr.describe_differences(diff, 'recorded', 'here')}); "
                               "re-measure on that device, or pass --remeasure 0")
    return be


def remeasure(samples: Samples, k: int, backend, out: str | Path | None = None, guard: sr.LoadGuard | None = None,
              log: Callable[[str], None] | None = None, progress: bool = False) -> list[dict]:
    """Time the first k samples again by their header's protocol; record i re-measures sample i. With
    `out`, records are appended there (a samples file, same header) and a rerun continues."""
    protocol = sr.Protocol.from_settings(samples.header.get("settings") or {}, "held-out samples header")
    widths = [[int(x) for x in w] for w in samples.widths[:k]]
    done = _resume(out, samples.header, protocol, widths) if out is not None else []
    clock, sleep = clocks(backend)
    if guard is None and protocol.guard is not None:
        guard = sr.LoadGuard(protocol.guard, clock, sleep, log=log)
    todo = widths[len(done):]
    if not todo:
        return done
    from tqdm import tqdm

    ref = backend.open(samples.header.get("reference_widths") or backend.space.reference_widths)
    for j, w in enumerate(tqdm(todo, disable=not progress, desc="re-measure held-out", unit="net",
                               dynamic_ncols=True, leave=False), len(done)):
        rec = {"type": "sample", "widths": w, **sr.measure_sample(backend.open(w), ref, protocol, guard, clock,
                                                                  what=f"re-measurement {j + 1}"),
               "t": time.time(), "remeasure_of": j}
        if out is not None:
            sr.append_line(str(out), rec)
        done.append(rec)
    return done


def _resume(out: str | Path, header: dict, protocol: sr.Protocol, widths: list[list[int]]) -> list[dict]:
    """Records already in `out` (checked to be re-measurements of these networks), or a fresh file."""
    out = str(out)
    if not (os.path.exists(out) and os.path.getsize(out) > 0):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        sr.append_line(out, {**header, "created": time.time(), "remeasure": True})
        return []
    have, recs, _ = sr.read_samples(out)
    diff = sr.device_differences(have.get("device", {}), header.get("device", {}))
    if have.get("space", {}).get("fingerprint") != header.get("space", {}).get("fingerprint") or diff:
        what = sr.describe_differences(diff, "in the file", "held-out") if diff else "another search space"
        raise ValueError(f"{out} holds samples of another space or device ({what}); "
                         "choose another re-measurement file")
    sr.check_same_protocol(have, protocol, out)
    recs = recs[:len(widths)]
    for j, r in enumerate(recs):
        if list(r["widths"]) != widths[j]:
            raise ValueError(f"{out} holds re-measurements of other networks (its sample {j + 1} is not held-out "
                             f"network {j + 1}); choose another re-measurement file or delete it")
    return recs


def floor_metrics(first: np.ndarray, second: np.ndarray) -> dict:
    """The second measurement judged against the first, as a prediction against a label; adds
    `per_measurement_rmspe`, RMS / sqrt(2), as a difference of two measurements has twice one's variance."""
    m = metrics(second, first)
    m["per_measurement_rmspe"] = m["rmspe"] / math.sqrt(2)
    return m


def limiting(model_rmspe: float, floor: dict) -> dict:
    """Which limits the held-out figures, and a sentence: the labels' noise share of the held-out
    squared error (>= 1/2: the measurement, else the model)."""
    noise = float(floor["per_measurement_rmspe"])
    total = float(model_rmspe)
    share = 1.0 if total <= 0 else min(1.0, noise ** 2 / total ** 2)
    model = math.sqrt(max(total ** 2 - noise ** 2, 0.0))
    by = "measurement" if share >= 0.5 else "model"
    advice = ". A better model cannot show here: measure longer or on a quieter machine" if by == "measurement" else ""
    text = (f"the {by} limits these figures: re-measurement noise ({noise:.2%} per measurement) is "
            f"{'only ' if by == 'model' else ''}{share:.0%} of the held-out squared error ({total:.2%} RMS); the "
            f"model's own error is about {model:.2%}{advice}")
    return {"limited_by": by, "noise_share": share, "model_rmspe_est": model, "verdict": text}


def measure_floor(samples: Samples, k: int, space, to_ms: Callable, backend=None,
                  out: str | Path | None = None, guard: sr.LoadGuard | None = None,
                  log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """A profile's `validation.noise_floor`: the first k held-out samples re-measured and compared in
    reference-ms, through the profile's `table.measured_ms` (`to_ms`) as its predictions are."""
    k = min(check_count(k), len(samples))
    if k < MIN_REMEASURE:
        raise FloorUnavailable(f"only {len(samples)} held-out sample(s); at least {MIN_REMEASURE} are needed")
    backend = backend if backend is not None else backend_for(space, samples.header["device"])
    t0 = time.time()
    recs = remeasure(samples, k, backend, out, guard, log, progress)
    keep = [j for j, r in enumerate(recs) if r.get("disturbed") is not True and is_positive(r.get("norm"))
            and isinstance(r.get("ref_ms"), dict) and is_positive(r["ref_ms"].get("median"))]
    if len(keep) < MIN_REMEASURE:
        raise FloorUnavailable(f"{k - len(keep)} of {k} re-measurements were disturbed or unusable; the machine is "
                               "too busy for a noise floor now")
    first = to_ms(samples.norm[keep], samples.ref_ms[keep])
    second = to_ms(np.array([recs[j]["norm"] for j in keep]), np.array([recs[j]["ref_ms"]["median"] for j in keep]))
    protocol = sr.Protocol.from_settings(samples.header.get("settings") or {}, "held-out samples header")
    return {**floor_metrics(first, second), "requested": k,
            "disturbed": sum(r.get("disturbed") is True for r in recs),
            "remeasured": sum(bool(r.get("remeasured")) for r in recs),
            "unsettled": sum(recs[j].get("settled") is False for j in keep),
            "protocol": protocol.settings(), "seconds": round(time.time() - t0, 1), "measured": time.time(),
            **({"file": str(out)} if out is not None else {})}


def describe(floor: dict) -> str:
    """One report line: the re-measurement's agreement with the first measurement."""
    extra = []
    if floor.get("remeasured"):
        extra.append(f"{floor['remeasured']} measured again after a disturbance")
    if floor.get("disturbed"):
        extra.append(f"{floor['disturbed']} left out as disturbed")
    return (f"{'re-measured':12s} n={floor['n']}  NRMSE {floor['nrmse']:.2%}  RMSPE {floor['rmspe']:.2%}  "
            f"within ±5% {floor['within_5']:.1%}  ±10% {floor['within_10']:.1%}  (second vs first measurement, "
            f"same protocol{'; ' + ', '.join(extra) if extra else ''})")


def read_floor(validation: dict, where: str = "profile") -> dict | None:
    """The noise-floor record of a profile's validation, each figure checked in [0, 1); None when absent."""
    floor = (validation or {}).get("noise_floor")
    if floor is None:
        return None
    if not isinstance(floor, dict):
        raise ValueError(f"{where}: validation.noise_floor is {type(floor).__name__}, expected an object; "
                         "measure it again with `widthnas validate --out` or delete the record")
    for key in ("per_measurement_rmspe", "rmspe", "nrmse"):
        v = floor.get(key)
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1):
            raise ValueError(f"{where}: validation.noise_floor.{key} is {v!r}, expected a finite number in [0, 1); "
                             "measure it again with `widthnas validate --out` or delete the record")
    return floor
