"""Reading samples files and checking that they belong together."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from widthnas.models.space import GraphSpace
from widthnas.models.space import check_fingerprint

from .host_state import is_positive
from .standalone_runner import UNRECORDED_OK, describe_differences, device_differences, read_samples


@dataclass
class Samples:
    header: dict
    widths: np.ndarray  # (n, layers) channels
    norm: np.ndarray  # (n,) latency / reference latency, measured side by side
    ms: np.ndarray  # (n,) median latency, ms
    ref_ms: np.ndarray  # (n,) median reference latency, ms
    skipped: int  # corrupt lines skipped
    unsettled: int = 0  # samples whose timing never settled to its target (standalone_runner.measure): kept, flagged
    disturbed: list[str] = field(default_factory=list)  # "file #k" of samples left out: measured disturbed
    remeasured: list[str] = field(default_factory=list)  # "file #k" of kept samples measured again after a disturbance

    def __len__(self) -> int:
        return len(self.norm)

    def quality(self) -> dict:
        """What the load found, for fit and validation records."""
        return {"unsettled": int(self.unsettled), "disturbed": len(self.disturbed),
                "remeasured": len(self.remeasured)}

    def describe(self, what: str = "samples") -> list[str]:
        """Report lines (empty when every sample was clean): skipped, unsettled, disturbed, re-measured."""
        out = []
        if self.skipped:
            out.append(f"{what}: {self.skipped} corrupt or unusable line(s) skipped")
        if self.unsettled:
            out.append(f"{what}: {self.unsettled} of {len(self)} never settled to their timing target (kept, noisier)")
        if self.disturbed:
            out.append(f"{what}: {len(self.disturbed)} left out, measured while the machine was disturbed: "
                       f"{_few(self.disturbed)}")
        if self.remeasured:
            out.append(f"{what}: {len(self.remeasured)} measured again after a disturbance (kept): "
                       f"{_few(self.remeasured)}")
        return out


def _few(locations: list[str], k: int = 8) -> str:
    return ", ".join(locations[:k]) + (f" and {len(locations) - k} more" if len(locations) > k else "")


def load_samples(paths: str | Sequence[str], space: GraphSpace, device: dict | None = None) -> Samples:
    """Samples of one space and device from one or more files; refuses to mix spaces or devices.

    Widths outside the space are an error (another space's file). Samples recorded as disturbed are
    left out and listed; one without a positive, finite latency is skipped with a warning.
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise ValueError("no samples files given")
    widths, norm, ms, ref, skipped, unsettled, first = [], [], [], [], 0, 0, None
    disturbed, remeasured = [], []
    for path in paths:
        try:
            header, recs, bad = read_samples(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"samples file {path} not found; create it with `widthnas profile --out {path}`")
        check_fingerprint(header["space"]["fingerprint"], space, f"samples file {path}")
        want = device if device is not None else (first["device"] if first else header["device"])
        diff = device_differences(want, header["device"])
        if diff:
            raise ValueError(f"samples file {path} was measured on another device or with other settings "
                             f"({describe_differences(diff, 'expected', 'in this file')}); fit each device separately")
        if first is None:
            first = {**header, "device": dict(header["device"])}
        for k in UNRECORDED_OK:  # the first file that records a field fixes it for the rest (and the table)
            if first["device"].get(k) in (None, "") and header["device"].get(k) not in (None, ""):
                first["device"][k] = header["device"][k]
        skipped += bad
        for k, r in enumerate(recs, 1):
            where = f"{Path(path).name} #{k}"
            try:
                values = (r["norm"], r["ms"]["median"], r["ref_ms"]["median"])
            except (KeyError, TypeError):
                values = ()
            if len(values) != 3 or not all(is_positive(v) for v in values):
                skipped += 1
                warnings.warn(f"{path}: sample {k} has no positive, finite norm / ms.median / ref_ms.median; skipped")
                continue
            if r.get("disturbed") is True:  # the load guard could not get a quiet measurement
                disturbed.append(where)
                continue
            if r.get("remeasured"):
                remeasured.append(where)
            unsettled += r.get("settled") is False  # flagged by the timing protocol: noisier than its target
            widths.append(space.validate(r["widths"]))
            norm.append(r["norm"])
            ms.append(r["ms"]["median"])
            ref.append(r["ref_ms"]["median"])
    if skipped:
        warnings.warn(f"{skipped} corrupt or unusable line(s) skipped in {', '.join(paths)}")
    if unsettled:
        warnings.warn(f"{unsettled} of {len(norm)} sample(s) in {', '.join(paths)} never settled to their timing "
                      "target (the machine was busy?): they are used, but noisier; profile on a quiet machine for "
                      "a sharper fit")
    if disturbed:
        warnings.warn(f"{len(disturbed)} sample(s) in {', '.join(paths)} were measured while the machine was disturbed "
                      f"and are left out: {_few(disturbed)}")
    if not norm:
        more = f" ({len(disturbed)} left out as disturbed: profile again on a quieter machine)" if disturbed else ""
        raise ValueError(f"no usable samples in {', '.join(paths)}{more}; run `widthnas profile` first")
    return Samples(first, np.array(widths, int), np.array(norm), np.array(ms), np.array(ref), skipped, unsettled,
                   disturbed, remeasured)
