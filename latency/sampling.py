"""Which graph-space networks to profile: uniform random widths per free group, or coverage-biased
widths that use the least-measured (signature, c_in, c_out) entries next.

The least-measured network is a min-sum problem over the MRF's graph; iterated conditional modes from
a random start, not an exact solve, are enough to steer sampling towards unmeasured entries.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from widthnas.models.space import GraphSpace

from .entries import GraphEntries


class UniformSampler:
    def __init__(self, space: GraphSpace, seed: int = 0):
        self.space, self.rng = space, np.random.default_rng(seed)

    def observe(self, widths: Sequence[int]) -> None:
        pass

    def next(self) -> list[int]:
        return [int(self.rng.choice(c)) for c in self.space.choices]


class CoverageSampler:
    """Each new network (locally) minimises the summed measurement counts of the entries it uses."""

    def __init__(self, space: GraphSpace, seed: int = 0, sweeps: int = 10):
        self.space, self.rng, self.sweeps = space, np.random.default_rng(seed), sweeps
        self.entries = GraphEntries(space)
        self.counts = np.zeros(self.entries.E)  # (E,) times each entry was in a measured network
        self.touch = [[fc for fc in self.entries.factors if g in fc.scope_pos] for g in range(len(space.choices))]

    def observe(self, widths: Sequence[int]) -> None:
        cols = self.entries.columns(self.entries.indices([self.space.validate(widths)]))[0]
        np.add.at(self.counts, cols, 1)

    def _cost(self, g: int, idx: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """(K_g,) summed cost of the entries of the ops touching group g, for each of g's choices."""
        out = np.zeros(len(self.space.choices[g]))
        for fc in self.touch[g]:
            tab = cost[fc.cols]  # (K_in, K_out) or (K,)
            if len(fc.scope_pos) == 1:
                out += tab
            elif fc.scope_pos[0] == g:
                out += tab[:, idx[fc.scope_pos[1]]]
            else:
                out += tab[idx[fc.scope_pos[0]], :]
        return out

    def next(self) -> list[int]:
        jitter = 1.0 / (len(self.entries.factors) + 1)  # sums to less than one count: breaks ties only
        cost = self.counts + jitter * self.rng.random(self.entries.E)
        idx = np.array([self.rng.integers(len(c)) for c in self.space.choices])
        for _ in range(self.sweeps):
            changed = False
            for g in self.rng.permutation(len(idx)):
                best = int(np.argmin(self._cost(g, idx, cost)))
                changed |= best != idx[g]
                idx[g] = best
            if not changed:
                break
        return [int(c[i]) for c, i in zip(self.space.choices, idx)]


def make_sampler(space: GraphSpace, kind: str, seed: int = 0, seen: Iterable[Sequence[int]] = ()):
    """A sampler for the space, having observed `seen`."""
    if kind not in ("uniform", "coverage"):
        raise ValueError(f"unknown sampling {kind!r}; choose 'uniform' or 'coverage'")
    s = (UniformSampler if kind == "uniform" else CoverageSampler)(space, seed)
    for w in seen:
        s.observe(w)
    return s
