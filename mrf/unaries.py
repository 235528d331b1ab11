"""unaries.json: per layer, per width, the recorded accuracy-loss statistic (written by training).

Sign: `loss` is how much worse (higher cross-entropy, nats) the sampled networks were than the
widest network on the same images, credited to each layer's width. Lower is better; the MRF's
score is its negative, so higher scores are better. Widths never sampled have count 0 and
loss null; they are given the layer's worst observed loss, then (by default) the scores are made
monotone in width, where an unsampled width carries no weight and takes its neighbours' value.

Graph spaces (models/space.py): one entry per free channel group, in `free_groups` order,
each with its group's "name".
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

FORMAT = "widthnas-unaries/1"
# Scores that tie (e.g. after isotonic pooling) are broken toward the wider width: capacity the
# unaries cannot tell apart is free. Far below any measured difference (~1e-3 nats and up).
TIE_BREAK = 1e-6


def isotonic_decreasing(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares fit that is non-increasing in the index (scipy's pool adjacent
    violators); zero weights count as 1e-9, so an unweighted value takes its neighbours'."""
    from scipy.optimize import isotonic_regression

    return isotonic_regression(np.asarray(y, float), weights=np.maximum(np.asarray(w, float), 1e-9),
                               increasing=False).x


@dataclass
class Unaries:
    space_name: str
    space_fingerprint: str
    widths: list[list[int]]  # per layer, the width choices
    loss: list[np.ndarray]  # per layer (K_i,) mean loss increase, nats; NaN where never sampled
    count: list[np.ndarray]  # per layer (K_i,) samples behind each mean
    meta: dict = field(default_factory=dict)
    names: list[str] | None = None  # per entry, its channel group's name (None in files before 0.2)

    def scores(self, monotone: bool = True) -> list[np.ndarray]:
        """Per layer (K_i,) MRF scores (= -loss), never-sampled widths at the layer's worst.

        monotone: a wider width never scores below a narrower one (count-weighted isotonic fit);
        noisy training-time means otherwise make a narrower width look better by chance, and the
        solver leaves budget unused for it.
        """
        out = []
        for i, (l, c) in enumerate(zip(self.loss, self.count)):
            l = np.array(l, float)
            seen = (c > 0) & np.isfinite(l)
            if not seen.any():
                raise ValueError(f"unaries: layer {i} has no sampled width; train longer or check the file")
            l[~seen] = l[seen].max()
            if monotone:
                l = isotonic_decreasing(l, np.where(seen, c, 0).astype(float))
            out.append(-l + TIE_BREAK * np.arange(len(l)) / max(1, len(l) - 1))
        return out

    def to_dict(self) -> dict:
        layers = [{**({"name": self.names[k]} if self.names else {}), "widths": list(map(int, w)),
                   "loss": [None if not np.isfinite(x) else float(x) for x in l], "count": [int(x) for x in c]}
                  for k, (w, l, c) in enumerate(zip(self.widths, self.loss, self.count))]
        return {"format": FORMAT, "space": {"name": self.space_name, "fingerprint": self.space_fingerprint},
                "statistic": "mean cross-entropy increase against the widest network (nats); lower is better",
                "layers": layers, "meta": self.meta}

    def save(self, path: str | Path) -> None:
        from widthnas._io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict, where: str = "unaries") -> "Unaries":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{where}: not a widthnas unaries file (format {d.get('format') if isinstance(d, dict) else None!r}, "
                             f"expected {FORMAT!r})")
        try:
            widths, loss, count = [], [], []
            for i, l in enumerate(d["layers"]):
                vals = l["loss"]
                for x in vals:
                    if x is not None and (not isinstance(x, (int, float)) or not math.isfinite(x)):
                        raise ValueError(f"{where}: layer {i} has a non-finite loss {x!r}; "
                                         "unaries must be finite numbers (null = never sampled)")
                if len(vals) != len(l["widths"]) or len(l["count"]) != len(l["widths"]):
                    raise ValueError(f"{where}: layer {i} lists {len(l['widths'])} widths but "
                                     f"{len(vals)} losses and {len(l['count'])} counts")
                widths.append([int(w) for w in l["widths"]])
                loss.append(np.array([np.nan if x is None else float(x) for x in vals]))
                count.append(np.array(l["count"], int))
            names = [l.get("name") for l in d["layers"]]
            if any(n is not None for n in names) and not all(isinstance(n, str) for n in names):
                raise ValueError(f"{where}: some entries name their channel group and some do not; "
                                 "regenerate the file")
            return cls(d["space"]["name"], d["space"]["fingerprint"], widths, loss, count, d.get("meta", {}),
                       names if names and all(isinstance(n, str) for n in names) else None)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: missing or malformed field {e}")

    @classmethod
    def load(cls, path: str | Path) -> "Unaries":
        from widthnas._io import read_json  # not at the top: _io imports widthnas.latency, which imports this

        if not Path(path).is_file():
            raise FileNotFoundError(f"unaries file {path} not found; `widthnas train` writes one into its run directory")
        return cls.from_dict(read_json(path, "unaries file", "`widthnas train` writes it again"), str(path))


def from_arrays(space, loss: Sequence[np.ndarray], count: Sequence[np.ndarray], meta: dict | None = None) -> Unaries:
    """Unaries for a space from per-free-group arrays (NaN or count 0: never sampled)."""
    loss = [np.asarray(l, float) for l in loss]
    if any(np.isinf(l).any() for l in loss):
        warnings.warn("infinite unaries replaced by 'never sampled'")
        loss = [np.where(np.isinf(l), np.nan, l) for l in loss]
    names = [g.name for g in space.free_groups]
    return Unaries(space.name, space.fingerprint, [list(c) for c in space.choices], loss,
                   [np.asarray(c, int) for c in count], meta or {}, names)
