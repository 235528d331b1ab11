"""Is a profile valid on this machine today? Time random networks here and compare with its predictions.

`widthnas run` checks every profile it uses; `widthnas search` only when the reference runs more than
OTHER_MACHINE x off its profiled time (another machine: `--margin auto` counts the check's error).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .host_state import OTHER_MACHINE, machine_note
from .standalone_runner import Protocol, measure_sample

CHECK_NETWORKS = 40  # random networks a check times
CHECK_ROUNDS = 3  # timing rounds per network: fewer than profiling's 5, the check is a look, not a fit
CHECK_SEED = 77  # search's check draws the networks `run --seed 0` checks
REFERENCE_SAMPLES = 3  # reference timings whose median tells another machine: one disturbed timing does not
CHECK_PASS = 0.95  # share of a check within ±10 % for which another machine's profile is kept


def check_protocol():
    """How `search` times a check: adaptive rounds from CHECK_ROUNDS, with the default load guard (`run`
    times its check with its own round length and guard settings)."""
    return Protocol(CHECK_ROUNDS)


def reference_speed(table, backend, protocol) -> float:
    """The reference network's time here now over its profiled time (1.99: it runs 1.99 x slower here),
    the median of REFERENCE_SAMPLES timings."""
    ref = backend.open(table.space.reference_widths)  # timed beside itself: ref_ms is the reference alone
    ms = [measure_sample(ref, ref, protocol, what="the reference network")["ref_ms"]["median"]
          for _ in range(REFERENCE_SAMPLES)]
    return float(np.median(ms)) / table.reference_ms


def latency_check(table, backend, path: str | Path, n: int, seed: int, protocol,
                  log: Callable[[str], None] | None = None, progress: bool = False,
                  guard=None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(metrics, measured ms, predicted ms) of n uniform random networks timed here into `path` (a
    resumable samples file); adds `host_speed` (now over profiled) and `machine_note` (None: same machine)."""
    from .profile import profile
    from .samples import load_samples
    from .validate import metrics

    profile(table.space, path, n, backend, "uniform", seed, protocol=protocol, progress=progress, log=log,
            desc="latency check", guard=guard)
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


def other_machine_choice(path: str, table, others: list, check: dict, budget_is_share: bool) -> tuple[str, str, object, str]:
    """What to do with a shipped profile whose reference ran more than OTHER_MACHINE x off here (its ms
    are not this machine's, its ratios may not be): (action, path, table, why), action one of
      'other'   another matching profile (`others`, paths) whose reference ran at today's speed;
      'keep'    this one, when the check holds to it (CHECK_PASS) and the budget is a share of the widest;
      'profile' profile this machine (the check failed, or the budget is in this machine's ms)."""
    from .registry import load_profile

    ref_now = check["host_speed"] * table.reference_ms  # ms, the reference here today
    off = f"shipped profile {Path(path).name} matches the device key, but {check['machine_note'].split(':')[0]}"
    near = sorted(((str(p), load_profile(p)) for p in others), key=lambda pt: abs(np.log(ref_now / pt[1].reference_ms)))
    if near and abs(np.log(ref_now / near[0][1].reference_ms)) <= np.log(OTHER_MACHINE):
        path, table = near[0]
        return "other", path, table, (f"{off}; {Path(path).name}, also matching, was profiled with the reference at "
                                      f"{table.reference_ms:.4g} ms (here {ref_now:.4g} ms): using it")
    if check["within_10"] < CHECK_PASS:  # its ratios do not hold here either
        return "profile", path, table, (f"{off}, and only {check['within_10']:.0%} of the check's networks are "
                                        "within ±10 % of it; profiling this machine")
    if not budget_is_share:
        return "profile", path, table, f"{off}, and the budget is in milliseconds, this machine's; profiling this machine"
    return "keep", path, table, f"{off}; its ratios hold here ({check['within_10']:.0%} of the check within ±10 %): using it"
