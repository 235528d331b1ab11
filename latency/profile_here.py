"""Profile this machine for one space in one call (samples, fit, validation, noise floor, ladder), for
`widthnas run` when no shipped profile fits and for benchmarks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from widthnas.models.space import GraphSpace

from . import standalone_runner as sr

LADDER_WAIT_S = 30.0  # s, longest wait per rung of the ladder for a disturbed machine


@dataclass(frozen=True)
class HereSettings:
    networks: int = 800  # networks timed for the fit
    heldout: int = 150  # networks timed to validate it
    remeasure: int = 30  # held-out networks timed again for the noise floor (0: none)
    ladder_rungs: int = 8  # rungs of the ladder of reference networks (0: none)
    seed: int = 0
    max_wait: float = 60.0  # s, longest wait for a disturbed machine to settle


def profile_here(space: GraphSpace, out_dir: str | Path, backend, protocol: sr.Protocol,
                 settings: HereSettings = HereSettings(), log: Callable[[str], None] = print,
                 progress: bool = True) -> Path:
    """The profile of `space` on this machine, saved as out_dir/profile.json (returned). Resumable:
    the samples files in out_dir are continued, not re-timed."""
    from .fit import FlopsProxy, fit_profile
    from .noise_floor import FloorUnavailable, describe, limiting, measure_floor
    from .profile import profile
    from .samples import load_samples
    from .validate import validate

    out_dir, s = Path(out_dir), settings
    samples, held = out_dir / "samples.jsonl", out_dir / "heldout.jsonl"
    profile(space, samples, s.networks, backend, "coverage", s.seed, protocol=protocol, progress=progress, log=log)
    profile(space, held, s.heldout, backend, "uniform", s.seed + 1000, protocol=protocol, progress=progress, log=log)
    table = fit_profile(space, load_samples(str(samples), space), name="this-machine", log=log)
    h = load_samples(str(held), space)
    table.validation = validate(table, h, FlopsProxy.from_profile(table))
    if s.remeasure:  # the measurement's own noise (resumable file): --margin auto counts it (latency/margin.py)
        try:
            floor = measure_floor(h, s.remeasure, space, table.measured_ms, backend,
                                  out=out_dir / "heldout_remeasure.jsonl", log=log, progress=progress)
        except FloorUnavailable as e:
            log(f"noise floor: not measured: {e}")
        else:
            floor.update(limiting(table.validation["table"]["rmspe"], floor))
            log(f"noise floor: {describe(floor)}")
            log(f"limits: {floor['verdict']}")
            table.validation["noise_floor"] = floor
    if s.ladder_rungs:  # timed now, as the host ran for the samples: verification reads networks off it later
        from widthnas.nas.export import verify_timing

        from .ref_ladder import measure_ladder

        be, protocol = verify_timing(table)  # as every ladder is, whatever round length verification reads it with
        try:
            table.fit["ref_ladder"] = measure_ladder(table, be, protocol, s.ladder_rungs, log=log,
                                                     max_wait_s=min(LADDER_WAIT_S, s.max_wait))
        except ValueError as e:  # the host drifted since profiling: verify off the reference alone
            log(f"ladder: not timed: {e}")
    out = out_dir / "profile.json"
    table.save(out)
    return out

