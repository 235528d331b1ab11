"""Reading samples files and checking that they belong together."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from widthnas.models.space import SearchSpace, check_fingerprint

from .standalone_runner import device_key, read_samples


@dataclass
class Samples:
    header: dict
    widths: np.ndarray  # (n, layers) channels
    norm: np.ndarray  # (n,) latency / reference latency, measured side by side
    ms: np.ndarray  # (n,) median latency, ms
    ref_ms: np.ndarray  # (n,) median reference latency, ms
    skipped: int  # corrupt lines skipped
    unsettled: int = 0  # samples whose timing never settled to its target (standalone_runner.measure): kept, flagged

    def __len__(self) -> int:
        return len(self.norm)

    def subset(self, idx) -> "Samples":
        return Samples(self.header, self.widths[idx], self.norm[idx], self.ms[idx], self.ref_ms[idx], self.skipped,
                       self.unsettled)


def load_samples(paths: str | Sequence[str], space: SearchSpace, device: dict | None = None) -> Samples:
    """Samples of one space and device from one or more files; refuses to mix spaces or devices.

    Widths outside the space are an error, since they mean the file came from another space.
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise ValueError("no samples files given")
    widths, norm, ms, ref, skipped, unsettled, first = [], [], [], [], 0, 0, None
    for path in paths:
        try:
            header, recs, bad = read_samples(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"samples file {path} not found; create it with `widthnas profile --out {path}`")
        check_fingerprint(header["space"]["fingerprint"], space, f"samples file {path}")
        key = device_key(header["device"])
        want = device_key(device) if device is not None else (device_key(first["device"]) if first else key)
        if key != want:
            diff = {k: (want[k], key[k]) for k in key if key[k] != want[k]}
            raise ValueError(f"samples file {path} was measured on another device or with other settings "
                             f"(expected vs found: {diff}); fit each device separately")
        first = first or header
        skipped += bad
        for r in recs:
            unsettled += r.get("settled") is False  # flagged by the timing protocol: noisier than its target
            widths.append(space.validate(r["widths"]))
            norm.append(r["norm"])
            ms.append(r["ms"]["median"])
            ref.append(r["ref_ms"]["median"])
    if skipped:
        warnings.warn(f"{skipped} corrupt line(s) skipped in {', '.join(paths)}")
    if unsettled:
        warnings.warn(f"{unsettled} of {len(norm)} sample(s) in {', '.join(paths)} never settled to their timing "
                      "target (the machine was busy?): they are used, but noisier; profile on a quiet machine for "
                      "a sharper fit")
    if not norm:
        raise ValueError(f"no samples in {', '.join(paths)}; run `widthnas profile` first")
    return Samples(first, np.array(widths, int), np.array(norm), np.array(ms), np.array(ref), skipped, unsettled)
