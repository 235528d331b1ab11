"""`LatencyTable`: the per-layer latency lookup table a device profile holds.

Block k of a network with L searchable layers is the stem (k = 0), a depthwise-separable block
(1 <= k <= L-1) or the head (k = L). Its latency is entries[k][i, j] ms for the i-th c_in choice
and j-th c_out choice. A network's predicted latency is intercept + the sum over its blocks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from widthnas._io import atomic_write_text  # noqa: F401  (also imported from here by older callers)
from widthnas.models.space import SearchSpace, check_fingerprint
from widthnas.mrf import chain

from .host_state import profile_measured_ms, read_elasticity, read_speed_range
from .sampling import block_shapes

FORMAT = "widthnas-profile/1"


class ProfileError(ValueError):
    """A profile file that does not parse or does not fit its schema."""


def _check_header(d: dict, where: str) -> tuple[float, float, dict]:
    """(intercept ms, reference ms, fit) of a profile dict, checked, or a ProfileError naming the field
    (shared by the graph table). A missing or null fit is an old profile's: plain normalisation."""
    fit = d.get("fit")
    fit = {} if fit is None else fit
    try:
        read_elasticity(fit, where)
        read_speed_range(fit, where)
    except ValueError as e:
        raise ProfileError(str(e)) from None
    ref, icpt = d["reference_ms"], d["intercept_ms"]
    if isinstance(ref, bool) or not isinstance(ref, (int, float)) or not np.isfinite(ref) or ref <= 0:
        raise ProfileError(f"{where}: reference_ms is {ref!r}, expected a positive, finite number (ms); "
                           "refit the profile with `widthnas fit`")
    if isinstance(icpt, bool) or not isinstance(icpt, (int, float)) or not np.isfinite(icpt):
        raise ProfileError(f"{where}: intercept_ms is {icpt!r}, expected a finite number (ms); "
                           "refit the profile with `widthnas fit`")
    return float(icpt), float(ref), fit


def check_ladder(table, where: str):
    """The table, once its ladder of reference networks (if any) parses and belongs to it: checked at
    load, not first at verification after a run has trained (shared by the graph table)."""
    from .ref_ladder import read_ladder

    try:
        read_ladder(table.fit, table.space, where, table.predict)
    except ValueError as e:
        raise ProfileError(str(e)) from None
    return table


@dataclass
class LatencyTable:
    space: SearchSpace
    entries: list[np.ndarray]  # L+1 blocks of (len(c_in choices), len(c_out choices)) ms
    intercept: float  # ms, the part of every network not attributed to a block
    reference_ms: float  # median latency of the reference network (base widths) while profiling
    device: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    name: str = ""

    # ---- measurement -----------------------------------------------------------------
    def measured_ms(self, norm, ref_ms):
        """ms at the reference's typical speed, from ratio(s) to a reference that took ref_ms beside them
        (host_state.py); what every prediction of this table is compared with."""
        return profile_measured_ms(self.fit, self.reference_ms, self.name or "profile", norm, ref_ms)

    # ---- prediction ------------------------------------------------------------------
    def predict(self, widths: Sequence[int]) -> float:
        """Predicted latency of one configuration, ms."""
        return float(self.predict_many(np.asarray([self.space.validate(widths)]))[0])

    def predict_many(self, widths: np.ndarray) -> np.ndarray:
        """(n, layers) channels -> (n,) ms."""
        widths = np.asarray(widths)
        idx = np.stack([np.searchsorted(c, widths[:, i]) for i, c in enumerate(self.space.choices)], axis=1)
        for i, c in enumerate(self.space.choices):
            bad = (idx[:, i] >= len(c)) | (np.asarray(c)[np.minimum(idx[:, i], len(c) - 1)] != widths[:, i])
            if bad.any():
                self.space.validate(widths[np.argmax(bad)])  # raises with the layer and choices named
        return chain.evaluate(*self.chain(), idx, self.intercept)  # as the MRF sums it

    def chain(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Latency as a chain over searchable layers: (unary (K_i,) ms, pairwise (K_{i-1}, K_i) ms).

        The stem is folded into node 0 and the head into the last node; add `intercept` to the sum.
        """
        L = self.space.num_layers
        unary = [np.zeros(len(c)) for c in self.space.choices]
        unary[0] = unary[0] + self.entries[0][0]
        unary[-1] = unary[-1] + self.entries[L][:, 0]
        return unary, [self.entries[k] for k in range(1, L)]

    def pairwise(self, i: int) -> np.ndarray:
        """(K_{i-1}, K_i) ms: latency of layer i given the widths of layers i-1 and i (1 <= i < L)."""
        if not 1 <= i < self.space.num_layers:
            raise IndexError(f"pairwise tables exist for layers 1..{self.space.num_layers - 1}, not {i}")
        return self.entries[i]

    # ---- files -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        blocks = []
        for k, ((ci, co), e) in enumerate(zip(block_shapes(self.space), self.entries)):
            name = "stem" if k == 0 else ("head" if k == self.space.num_layers else self.space.layers[k].name)
            blocks.append({"block": k, "name": name, "c_in": list(ci), "c_out": list(co),
                           "ms": np.round(e, 6).tolist()})
        return {
            "format": FORMAT, "name": self.name,
            "space": {"name": self.space.name, "fingerprint": self.space.fingerprint, "def": self.space.to_dict()},
            "device": self.device, "reference_ms": self.reference_ms, "intercept_ms": self.intercept,
            "blocks": blocks, "fit": self.fit, "validation": self.validation,
        }

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict, where: str = "profile") -> "LatencyTable":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ProfileError(f"{where}: format {found!r}, expected {FORMAT!r}; not a widthnas profile")
        try:
            space = SearchSpace.from_dict(d["space"]["def"])
            check_fingerprint(d["space"]["fingerprint"], space, where)
            shapes = block_shapes(space)
            if len(d["blocks"]) != len(shapes):
                raise ProfileError(f"{where}: {len(d['blocks'])} blocks, the space needs {len(shapes)}")
            entries = []
            for k, (b, (ci, co)) in enumerate(zip(d["blocks"], shapes)):
                e = np.asarray(b["ms"], float)
                if e.shape != (len(ci), len(co)) or list(b["c_in"]) != list(ci) or list(b["c_out"]) != list(co):
                    raise ProfileError(f"{where}: block {k} has shape {e.shape} for c_in {b['c_in']} "
                                       f"c_out {b['c_out']}; the space expects {(len(ci), len(co))}")
                if not np.all(np.isfinite(e)):
                    raise ProfileError(f"{where}: block {k} holds non-finite latencies")
                entries.append(e)
            intercept, reference_ms, fit = _check_header(d, where)
            return check_ladder(cls(space, entries, intercept, reference_ms, d.get("device", {}), fit,
                                    d.get("validation", {}), d.get("name", "")), where)
        except (KeyError, TypeError) as e:
            raise ProfileError(f"{where}: missing or malformed field {e}; the file does not fit the profile schema")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"profile {path} not found; list shipped ones with `widthnas profiles`")
        except json.JSONDecodeError as e:
            raise ProfileError(f"profile {path} does not parse as JSON ({e}); refit it with `widthnas fit`")
        return cls.from_dict(d, str(path))
