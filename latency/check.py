"""Is a profile valid on this machine today? Time random networks here and compare with its predictions.

`widthnas run` checks every profile it uses this way. `widthnas search` checks only when the profile's
reference network runs more than OTHER_MACHINE x off its profiled time: then the profile was made on
another machine behind the same device key, and its own validation says nothing of the error here, so
`--margin auto` counts this check's (latency/margin.py; RESULTS §2.2e: a profile validated at RMSPE
0.75 % missed by up to 2.0 % on the other machine kind, whose check showed RMSPE 3.4 %).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

CHECK_NETWORKS = 40  # random networks a check times (14 s for the small space on a quiet machine here, 2026-12-04)
CHECK_ROUNDS = 3  # timing rounds per network: fewer than profiling's 5, the check is a look, not a fit
CHECK_SEED = 77  # search's check draws the networks `run --seed 0` checks
REFERENCE_SAMPLES = 3  # reference timings whose median tells another machine: one disturbed timing does not


def check_protocol():
    """How `search` times a check: adaptive rounds from CHECK_ROUNDS, with the default load guard (`run`
    times its check with its own round length and guard settings)."""
    from .standalone_runner import Protocol

    return Protocol(CHECK_ROUNDS)


def reference_speed(table, backend, protocol) -> float:
    """The reference network's time here now over its profiled time (1.99: it runs 1.99 x slower here),
    the median of REFERENCE_SAMPLES timings."""
    from .standalone_runner import measure_sample

    ref = backend.open(table.space.reference_widths)  # timed beside itself: ref_ms is the reference alone
    ms = [measure_sample(ref, ref, protocol, what="the reference network")["ref_ms"]["median"]
          for _ in range(REFERENCE_SAMPLES)]
    return float(np.median(ms)) / table.reference_ms


def latency_check(table, backend, path: str | Path, n: int, seed: int, protocol,
                  log: Callable[[str], None] | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(metrics, measured ms, predicted ms) of n uniform random networks timed here into `path` (a
    samples file: resumable, and reused by a later check of the same networks against another profile).
    The metrics add `host_speed` (reference now over profiled) and `machine_note` (None on the
    profile's machine)."""
    import warnings

    from .host_state import machine_note
    from .profile import profile
    from .samples import load_samples
    from .validate import metrics

    profile(table.space, path, n, backend, "uniform", seed, protocol=protocol, progress=False, log=log)
    with warnings.catch_warnings():  # said below in the check's terms (the file's advice is for profiles)
        warnings.simplefilter("ignore")
        try:
            s = load_samples(str(path), table.space)
        except ValueError as e:  # every network timed while the machine was disturbed
            raise ValueError(f"latency check: none of its {n} networks could be timed undisturbed ({e}); run it "
                             "again on a quieter machine") from None
    for line in s.describe("latency check") if log is not None else ():
        log(line)
    pred, meas = table.predict_many(s.widths), table.measured_ms(s.norm, s.ref_ms)  # ms at the profile's speed
    m = metrics(pred, meas)
    speed = float(np.median(s.ref_ms)) / table.reference_ms
    m.update(host_speed=speed, machine_note=machine_note(speed, table.reference_ms))
    return m, meas, pred
