"""`LatencyTable`: the latency model of a graph space, as a device profile holds it.

A network's predicted latency is intercept + the sum of the entry each costed op uses (entries.py);
for the MRF the same sum is read per op (`factor_tables`, `mrf_terms`).

File format 'widthnas-graph-profile/1': the space's definition and fingerprint, the device, and per
signature the ops sharing it and its entries as [c_in, c_out, ms] rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from widthnas._io import atomic_write_text, read_json
from widthnas.models.graph import GraphError
from widthnas.models.space import GraphSpace, OpSignature
from widthnas.models.space import check_fingerprint

from .entries import EntryKey, GraphEntries, check_keying, signature_from_dict, signature_to_dict
from .host_state import read_elasticity, read_speed_range, typical_speed_ms
from .ref_ladder import read_ladder

FORMAT = "widthnas-graph-profile/1"
CHAIN_FORMAT = "widthnas-profile/1"  # MobileNet-v1 profiles of widthnas before 0.2 (latency/legacy_profile.py converts)


class ProfileError(ValueError):
    """A profile file that does not parse or does not fit its schema."""


def _check_header(d: dict, where: str) -> tuple[float, float, dict]:
    """(intercept ms, reference ms, fit) of a profile dict, checked; a missing fit: plain normalisation."""
    fit = {} if d.get("fit") is None else d["fit"]
    try:
        read_elasticity(fit, where)
        read_speed_range(fit, where)
    except ValueError as e:
        raise ProfileError(str(e)) from None
    for key, lowest in (("reference_ms", 0.0), ("intercept_ms", -np.inf)):  # reference: positive
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= lowest:
            raise ProfileError(f"{where}: {key} is {v!r}, expected a {'positive, ' if lowest == 0 else ''}finite "
                               "number (ms); refit the profile with `widthnas fit`")
    return float(d["intercept_ms"]), float(d["reference_ms"]), fit


def describe(s: OpSignature) -> str:
    """'conv 3x3/2 dw at 14x14' (and 'of block3' in a profile keyed per op) for messages."""
    return (f"{s.kind} {s.kernel}x{s.kernel}/{s.stride} {s.groups} at {s.resolution[0]}x{s.resolution[1]}"
            + (f" of {s.op}" if s.op else ""))


@dataclass(frozen=True)
class FactorTable:
    """One op's latency over the choices of the free groups it touches."""

    op: str
    scope: tuple[str, ...]  # free groups the table is indexed by, (in, out) order
    ms: np.ndarray  # (K_in, K_out), (K,) or () ms


@dataclass(frozen=True)
class MrfTerms:
    """Latency as the graph MRF takes it: per free group a unary, per op on two free groups a pair."""

    unary: list[np.ndarray]  # per free group (space.free_groups order), (K_g,) ms
    pairs: list[tuple[int, int, np.ndarray]]  # (i, j, (K_i, K_j) ms), i = input group, j = output group
    intercept: float  # ms, the table's intercept plus the ops whose groups are all fixed


@dataclass
class LatencyTable:
    space: GraphSpace
    costs: np.ndarray  # (E,) ms, one per entry in GraphEntries(space).keys order
    intercept: float  # ms, the part of every network not attributed to an op
    reference_ms: float  # median latency of the reference network (base widths) while profiling
    device: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    name: str = ""
    keying: str = "signature"  # entries shared per op signature, or per op ("op": entries.KEYINGS)

    def measured_ms(self, norm, ref_ms):
        """ms at the reference's typical speed, from ratio(s) to a reference that took ref_ms beside them
        (host_state.py); what every prediction of this table is compared with."""
        where = self.name or "profile"
        return typical_speed_ms(norm, ref_ms, self.reference_ms, read_elasticity(self.fit, where),
                                read_speed_range(self.fit, where))

    @cached_property
    def entries(self) -> GraphEntries:
        return GraphEntries(self.space, self.keying)

    def __post_init__(self) -> None:
        self.costs = np.asarray(self.costs, float)
        if self.costs.shape != (self.entries.E,):
            raise ValueError(f"{self.costs.shape} costs for the {self.entries.E} entries of space {self.space.name}")

    # ---- prediction ------------------------------------------------------------------
    def predict(self, widths: Sequence[int] | Mapping[str, int]) -> float:
        """Predicted latency of one configuration (a list in free-group order or {group: channels}), ms."""
        return float(self.predict_many(np.asarray([self.space.validate(widths)]))[0])

    def predict_many(self, widths: np.ndarray) -> np.ndarray:
        """(n, free groups) channels -> (n,) ms, through the design matrix the fit solved."""
        return self.entries.design(widths) @ self.costs + self.intercept

    def factor_tables(self) -> list[FactorTable]:
        """Per costed op, in graph order, its latency table over its scope's choices."""
        free = [g.name for g in self.space.free_groups]
        return [FactorTable(fc.factor.op, tuple(free[p] for p in fc.scope_pos), self.costs[fc.cols])
                for fc in self.entries.factors]

    def mrf_terms(self) -> MrfTerms:
        """Factor tables summed into per-group unaries, per-op pairs and one constant (ms)."""
        pos = {g.name: k for k, g in enumerate(self.space.free_groups)}
        unary = [np.zeros(len(g.choices)) for g in self.space.free_groups]
        pairs, const = [], self.intercept
        for t in self.factor_tables():
            if len(t.scope) == 2:
                pairs.append((pos[t.scope[0]], pos[t.scope[1]], t.ms))
            elif len(t.scope) == 1:
                unary[pos[t.scope[0]]] += t.ms
            else:
                const += float(t.ms)
        return MrfTerms(unary, pairs, const)

    # ---- files -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        ops = self.entries.ops_of()
        sigs = [{"signature": signature_to_dict(s), "ops": ops[s],
                 "entries": [[self.entries.keys[i].c_in, self.entries.keys[i].c_out, round(float(self.costs[i]), 6)]
                             for i in idx]}
                for s, idx in self.entries.by_signature().items()]
        return {
            "format": FORMAT, "name": self.name,
            "space": {"name": self.space.name, "fingerprint": self.space.fingerprint, "def": self.space.to_dict()},
            "device": self.device, "reference_ms": self.reference_ms, "intercept_ms": self.intercept,
            "keying": self.keying, "signatures": sigs, "fit": self.fit, "validation": self.validation,
        }

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict, where: str = "graph profile") -> "LatencyTable":
        """Rebuild and check: the entries must be exactly those the space's ops need, finite."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            if found == CHAIN_FORMAT:
                raise ProfileError(f"{where}: a MobileNet-v1 profile in the chain format of widthnas before 0.2; "
                                   "convert it exactly with `python -m widthnas.latency.legacy_profile OLD.json "
                                   "NEW.json`, or profile the device again (`widthnas profile`)")
            raise ProfileError(f"{where}: format {found!r}, expected {FORMAT!r}; not a widthnas profile")
        try:
            try:
                space = GraphSpace.from_dict(d["space"]["def"], "space")
            except GraphError as e:
                raise ProfileError(f"{where}: the space it records is not a valid graph space ({e})")
            check_fingerprint(d["space"]["fingerprint"], space, where)
            try:
                keying = check_keying(d.get("keying", "signature"), f"{where}: keying")
            except ValueError as e:
                raise ProfileError(str(e)) from None
            entries = GraphEntries(space, keying)
            costs = np.full(entries.E, np.nan)
            for sd in d["signatures"]:
                sig = signature_from_dict(sd["signature"])
                for c_in, c_out, ms in sd["entries"]:
                    i = entries.index.get(EntryKey(sig, int(c_in), int(c_out)))
                    entry = f"{where}: entry {describe(sig)} c_in {c_in} c_out {c_out}"
                    if i is None:
                        raise ProfileError(f"{entry} is not one the space's ops use; the file does not belong to "
                                           "this space")
                    if not np.isnan(costs[i]):
                        raise ProfileError(f"{entry} is listed twice")
                    if not isinstance(ms, (int, float)) or not np.isfinite(ms):
                        raise ProfileError(f"{entry} has latency {ms!r}; latencies are finite numbers (ms)")
                    costs[i] = ms
            missing = np.flatnonzero(np.isnan(costs))
            if missing.size:
                k = entries.keys[missing[0]]
                raise ProfileError(f"{where}: {missing.size} of the space's {entries.E} entries are missing, e.g. "
                                   f"{describe(k.signature)} c_in {k.c_in} c_out {k.c_out}; refit it with `widthnas fit`")
            intercept, reference_ms, fit = _check_header(d, where)
            table = cls(space, costs, intercept, reference_ms, d.get("device", {}), fit, d.get("validation", {}),
                        d.get("name", ""), keying)
            try:  # its ladder of reference networks: checked at load, not first at verification after training
                read_ladder(fit, space, where, table.predict)
            except ValueError as e:
                raise ProfileError(str(e)) from None
            return table
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ProfileError) or "fingerprint" in str(e):
                raise
            raise ProfileError(f"{where}: missing or malformed field ({type(e).__name__}: {e}); the file does not "
                               "fit the graph profile schema")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        if not Path(path).is_file():
            raise FileNotFoundError(f"profile {path} not found; fit one with `widthnas fit --space SPACE`")
        return cls.from_dict(read_json(path, "profile", "refit it with `widthnas fit`", ProfileError), str(path))
