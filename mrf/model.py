"""The width MRF on a graph of channel groups (a chain for MobileNet-v1, a tree or small cycles for
residual networks).

A variable is a channel group: every tensor whose channel count must agree (a residual add ties
them) shares one width. A convolution from group i to group j is a pairwise factor on (i, j).

score(x)   = sum_g score_unary[g][x_g] + sum_f score_f[x_i, x_j]                (higher is better)
latency(x) = intercept + sum_g lat_unary[g][x_g] + sum_f lat_f[x_i, x_j]       (ms)

Several factors on the same pair of groups are summed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class PairFactor:
    """A pairwise term between groups i and j, e.g. a convolution from group i's channels to j's."""

    i: int
    j: int
    lat: np.ndarray  # (K_i, K_j) ms
    score: np.ndarray | None = None  # (K_i, K_j), higher is better; None: zeros


@dataclass
class GraphMRF:
    """Treat as read-only once built: factors are merged per pair here, and the solvers cache
    per-clique tables on the instance. Build a new one to change a table."""

    choices: list[tuple[int, ...]]  # per group, the widths (channels)
    score_unary: list[np.ndarray]  # per group (K_g,)
    lat_unary: list[np.ndarray]  # per group (K_g,) ms
    factors: list[PairFactor]  # pairwise terms; tuples (i, j, lat[, score]) are accepted
    intercept: float = 0.0  # ms, the part of every network no group or factor carries
    fixed: list[bool] | None = None  # per group: True = not searched (exactly one width); None: all free
    names: list[str] | None = None  # per group, for messages and reports; None: "group <g>"
    base: tuple[int, ...] = ()  # base widths per group, for a uniform-multiplier baseline
    space_fingerprint: str = ""
    pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(init=False, repr=False)
    # (i, j) with i < j -> (lat (K_i, K_j) ms, score (K_i, K_j)): the factors merged per pair
    cache: dict = field(init=False, repr=False, compare=False, default_factory=dict)  # the solvers' own
    _flat: tuple = field(init=False, repr=False, compare=False, default=())  # evaluate's gather tables

    def __post_init__(self) -> None:
        n = len(self.choices)
        if n == 0:
            raise ValueError("empty graph MRF: no channel groups; give at least one group with its width choices")
        if self.names is not None:
            self.names = [str(s) for s in self.names]
            if len(self.names) != n or len(set(self.names)) != n:
                raise ValueError(f"names: {n} groups need {n} distinct names, got {list(self.names)}")
        self.choices = [self._widths(g, c) for g, c in enumerate(self.choices)]
        for what, arrs in (("score", self.score_unary), ("latency", self.lat_unary)):
            if len(arrs) != n:
                raise ValueError(f"{n} groups but {len(arrs)} {what} unaries; give one (K_g,) array per group")
        self.score_unary = [self._table(f"{self.name(g)}: score unary", s, (len(c),))
                            for g, (c, s) in enumerate(zip(self.choices, self.score_unary))]
        self.lat_unary = [self._table(f"{self.name(g)}: latency unary", l, (len(c),))
                          for g, (c, l) in enumerate(zip(self.choices, self.lat_unary))]
        if not np.isfinite(float(self.intercept)):
            raise ValueError(f"intercept {self.intercept!r} ms is not finite")
        self.intercept = float(self.intercept)
        self.fixed = [False] * n if self.fixed is None else [bool(f) for f in self.fixed]
        if len(self.fixed) != n:
            raise ValueError(f"fixed: {n} groups need {n} flags, got {len(self.fixed)}")
        for g, f in enumerate(self.fixed):
            if f and len(self.choices[g]) != 1:
                raise ValueError(f"{self.name(g)} is fixed but has {len(self.choices[g])} widths "
                                 f"{list(self.choices[g])}; give a fixed group exactly one width")
        if self.base and len(self.base) != n:
            raise ValueError(f"base: {n} groups need {n} base widths, got {len(self.base)}")
        self.factors = [self._factor(k, f) for k, f in enumerate(self.factors)]
        self.pairs = {}
        for f in self.factors:  # merge factors on the same pair, oriented i < j
            lat, sc = (f.lat, f.score) if f.i < f.j else (f.lat.T, f.score.T)
            key = (min(f.i, f.j), max(f.i, f.j))
            if key in self.pairs:
                lat, sc = self.pairs[key][0] + lat, self.pairs[key][1] + sc
            self.pairs[key] = (lat, sc)
        ks = np.array([len(c) for c in self.choices])
        k_out = np.array([len(self.choices[f.j]) for f in self.factors], np.int64)
        self._flat = (np.r_[0, np.cumsum(ks)[:-1]], np.concatenate(self.lat_unary), np.concatenate(self.score_unary),
                      np.r_[0, np.cumsum([f.lat.size for f in self.factors])[:-1]].astype(np.int64), k_out,
                      np.array([f.i for f in self.factors], int), np.array([f.j for f in self.factors], int),
                      np.concatenate([f.lat.ravel() for f in self.factors] + [np.zeros(0)]),
                      np.concatenate([f.score.ravel() for f in self.factors] + [np.zeros(0)]))

    # ---- validation helpers --------------------------------------------------------
    def name(self, g: int) -> str:
        return f"group {g} ({self.names[g]})" if self.names else f"group {g}"

    def _widths(self, g: int, c) -> tuple[int, ...]:
        try:
            w = tuple(int(x) for x in c)
            ok = all(float(x) == int(x) for x in c)
        except (TypeError, ValueError):
            w, ok = (), False
        if not w or not ok or min(w) <= 0 or len(set(w)) != len(w):
            raise ValueError(f"{self.name(g)}: width choices {c!r} must be distinct positive integers (channels), "
                             "at least one")
        return w

    @staticmethod
    def _table(what: str, a, shape: tuple[int, ...]) -> np.ndarray:
        try:
            a = np.asarray(a, float)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: not an array of numbers ({type(a).__name__})")
        if a.shape != shape:
            raise ValueError(f"{what} has shape {a.shape}, expected {shape} (one entry per width choice)")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}: NaN or inf entries; fix the profile or unaries that produced it")
        return a

    def _factor(self, k: int, f) -> PairFactor:
        if not isinstance(f, PairFactor):
            if not isinstance(f, (tuple, list)) or len(f) not in (3, 4):
                raise ValueError(f"factor {k}: give a PairFactor or a tuple (i, j, lat[, score]), got {f!r}")
            f = PairFactor(*f)
        n = len(self.choices)
        try:
            i, j = int(f.i), int(f.j)
        except (TypeError, ValueError):
            raise ValueError(f"factor {k}: groups ({f.i!r}, {f.j!r}) are not integers")
        if not (0 <= i < n and 0 <= j < n):
            raise ValueError(f"factor {k} joins groups ({i}, {j}), but the groups are 0..{n - 1}")
        if i == j:
            raise ValueError(f"factor {k} joins {self.name(i)} with itself; put a one-group term in its unary "
                             "(e.g. the diagonal of the table)")
        shape = (len(self.choices[i]), len(self.choices[j]))
        where = f"factor {k} ({self.name(i)} -> {self.name(j)})"
        lat = self._table(f"{where}: latency table", f.lat, shape)
        sc = np.zeros(shape) if f.score is None else self._table(f"{where}: score table", f.score, shape)
        return PairFactor(i, j, lat, sc)

    # ---- evaluation --------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.choices)

    @property
    def edges(self) -> list[tuple[int, int]]:
        """The pairs of groups joined by at least one factor, i < j."""
        return list(self.pairs)

    def indices(self, widths: Sequence[int]) -> list[int]:
        if len(widths) != self.n:
            raise ValueError(f"{len(widths)} widths given for {self.n} groups")
        out = []
        for g, w in enumerate(widths):
            if int(w) not in self.choices[g]:
                raise ValueError(f"{self.name(g)}: width {w} is not one of its choices {list(self.choices[g])}")
            out.append(self.choices[g].index(int(w)))
        return out

    def widths(self, idx: Sequence[int]) -> list[int]:
        return [int(self.choices[g][k]) for g, k in enumerate(idx)]

    def evaluate(self, idx) -> tuple[np.ndarray, np.ndarray]:
        """(P, groups) choice indices -> ((P,) latency ms, (P,) score): the one way both are summed
        (intercept, then unaries, then factors in order), so every caller gets the same floats."""
        idx = np.asarray(idx, int).reshape(-1, self.n)
        u_off, u_lat, u_sc, f_off, k_out, fi, fj, f_lat, f_sc = self._flat
        u = (idx + u_off).T  # (groups, P) rows of the concatenated unaries
        f = f_off[:, None] + idx[:, fi].T * k_out[:, None] + idx[:, fj].T  # (factors, P) into the raveled tables
        lat = self.intercept + _rowsum(u_lat[u]) + _rowsum(f_lat[f])
        sc = _rowsum(u_sc[u]) + _rowsum(f_sc[f])
        return np.asarray(lat, float), np.asarray(sc, float)

    def latency(self, idx: Sequence[int]) -> float:
        return float(self.evaluate([idx])[0][0])

    def score(self, idx: Sequence[int]) -> float:
        return float(self.evaluate([idx])[1][0])


def _rowsum(a: np.ndarray) -> np.ndarray | float:
    """(rows, P) -> (P,) the rows added one after another, in order (an accumulate, never numpy's
    pairwise summation), so every latency is the float the per-term loop gave; 0.0 for no rows."""
    return np.add.accumulate(a, axis=0)[-1] if len(a) else 0.0
