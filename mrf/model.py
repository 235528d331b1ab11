"""The width MRF: a chain over searchable layers with accuracy scores and latency terms.

score(x)   = sum_i score_unary[i][x_i] + sum_i score_pair[i][x_i, x_{i+1}]
                                                             (higher is better; = -accuracy loss)
latency(x) = intercept + sum_i lat_unary[i][x_i] + sum_i lat_pair[i][x_i, x_{i+1}]   (ms)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


class InfeasibleBudget(ValueError):
    """The budget is below the fastest configuration's latency."""


@dataclass
class WidthMRF:
    choices: list[tuple[int, ...]]  # per node, the widths (channels)
    score_unary: list[np.ndarray]  # per node (K_i,)
    lat_unary: list[np.ndarray]  # per node (K_i,) ms (stem on node 0, head on the last)
    lat_pair: list[np.ndarray]  # per edge (K_i, K_{i+1}) ms
    intercept: float = 0.0  # ms
    base: tuple[int, ...] = ()  # base widths, for the uniform-multiplier baseline
    space_fingerprint: str = ""
    score_pair: list[np.ndarray] | None = None  # per edge (K_i, K_{i+1}), e.g. a smoothness prior; None: zeros

    def __post_init__(self) -> None:
        n = len(self.choices)
        if n == 0:
            raise ValueError("empty MRF: the latency table and unaries have no layers")
        if not (len(self.score_unary) == len(self.lat_unary) == n and len(self.lat_pair) == n - 1):
            raise ValueError(f"mismatched MRF: {n} layers, {len(self.score_unary)} score unaries, "
                             f"{len(self.lat_unary)} latency unaries, {len(self.lat_pair)} pairwise tables")
        for i, (c, s, l) in enumerate(zip(self.choices, self.score_unary, self.lat_unary)):
            if len(c) == 0:
                raise ValueError(f"layer {i} has no width choices")
            if np.shape(s) != (len(c),) or np.shape(l) != (len(c),):
                raise ValueError(f"layer {i}: {len(c)} widths but score shape {np.shape(s)}, latency shape {np.shape(l)}")
            if not np.all(np.isfinite(s)):
                raise ValueError(f"layer {i}: NaN or inf in the score unaries {np.asarray(s)}; fix or regenerate unaries.json")
            if not np.all(np.isfinite(l)):
                raise ValueError(f"layer {i}: NaN or inf in the latency terms")
        for i, p in enumerate(self.lat_pair):
            if p.shape != (len(self.choices[i]), len(self.choices[i + 1])):
                raise ValueError(f"pairwise latency {i} has shape {p.shape}, expected "
                                 f"{(len(self.choices[i]), len(self.choices[i + 1]))}")
            if not np.all(np.isfinite(p)):
                raise ValueError(f"pairwise latency {i}: NaN or inf entries")
        if self.score_pair is None:
            self.score_pair = [np.zeros(np.shape(p)) for p in self.lat_pair]
        if len(self.score_pair) != n - 1:
            raise ValueError(f"{n} layers need {n - 1} pairwise score tables, got {len(self.score_pair)}")
        for i, (sp, lp) in enumerate(zip(self.score_pair, self.lat_pair)):
            if np.shape(sp) != np.shape(lp) or not np.all(np.isfinite(sp)):
                raise ValueError(f"pairwise score {i}: shape {np.shape(sp)} (expected {np.shape(lp)}) or non-finite entries")
        self.score_pair = [np.asarray(p, float) for p in self.score_pair]
        self.score_unary = [np.asarray(s, float) for s in self.score_unary]
        self.lat_unary = [np.asarray(s, float) for s in self.lat_unary]
        self.lat_pair = [np.asarray(p, float) for p in self.lat_pair]

    @classmethod
    def from_table(cls, table, unaries) -> "WidthMRF":
        """From a latency.LatencyTable and mrf.unaries.Unaries; refuses another space."""
        from widthnas.models.space import check_fingerprint

        space = table.space
        check_fingerprint(unaries.space_fingerprint, space, f"unaries of search space {unaries.space_name} (for this profile)")
        if len(unaries.widths) != space.num_layers:
            raise ValueError(f"unaries have {len(unaries.widths)} layers, the profile's space {space.num_layers}")
        for i, (w, c) in enumerate(zip(unaries.widths, space.choices)):
            if list(w) != list(c):
                raise ValueError(f"layer {i}: unaries list widths {w}, the profile {list(c)}")
        lu, lp = table.chain()
        return cls([tuple(c) for c in space.choices], unaries.scores(), lu, lp, table.intercept,
                   tuple(space.base_widths), space.fingerprint)

    # ---- evaluation ------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.choices)

    def indices(self, widths: Sequence[int]) -> list[int]:
        try:
            return [self.choices[i].index(int(w)) for i, w in enumerate(widths)]
        except ValueError:
            raise ValueError(f"widths {list(widths)} are not all choices of this MRF")

    def widths(self, idx: Sequence[int]) -> list[int]:
        return [int(self.choices[i][k]) for i, k in enumerate(idx)]

    def score(self, idx: Sequence[int]) -> float:
        return float(sum(s[k] for s, k in zip(self.score_unary, idx))
                     + sum(p[idx[i], idx[i + 1]] for i, p in enumerate(self.score_pair)))

    def latency(self, idx: Sequence[int]) -> float:
        from .chain import evaluate

        return float(evaluate(self.lat_unary, self.lat_pair, [idx], self.intercept)[0])

    def lagrangian_terms(self, gamma: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Chain potentials of score - gamma * latency."""
        return ([s - gamma * l for s, l in zip(self.score_unary, self.lat_unary)],
                [sp - gamma * p for sp, p in zip(self.score_pair, self.lat_pair)])
