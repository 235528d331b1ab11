"""A smoothness prior between consecutive layers' width multipliers, as pairwise MRF scores.

Noisy unaries let an exact optimiser pick jagged networks (152 channels next to 768) whose
noise flatters them. Penalising the change of log-multiplier between neighbouring layers pulls
the choice toward smooth width profiles, of which the uniform network is the smoothest; the
weight decides how far, and is chosen on held-out images (nas.selection), not fixed here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .model import GraphMRF, PairFactor


def smoothness_pairs(choices: Sequence[Sequence[int]], base: Sequence[int], weight: float) -> list[np.ndarray]:
    """Per edge (K_i, K_{i+1}): -weight * (log(w_i / base_i) - log(w_{i+1} / base_{i+1}))**2 (score units)."""
    if not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"smoothness weight {weight!r}: give a finite number >= 0")
    if len(base) != len(choices):
        raise ValueError(f"{len(choices)} layers but {len(base)} base widths")
    logm = [np.log(np.asarray(c, float) / b) for c, b in zip(choices, base)]
    return [-weight * np.subtract.outer(logm[i], logm[i + 1]) ** 2 for i in range(len(choices) - 1)]


def with_smoothness(mrf: GraphMRF, weight: float) -> GraphMRF:
    """A new GraphMRF (they are read-only once built) with the prior added as one zero-latency factor
    per pair of groups an op joins (weight 0: the same scores)."""
    if not mrf.base:
        raise ValueError("the smoothness prior needs the base widths (build the MRF with GraphMRF.from_table)")
    prior = []
    for i, j in mrf.edges:
        (s,) = smoothness_pairs([mrf.choices[i], mrf.choices[j]], [mrf.base[i], mrf.base[j]], weight)
        prior.append(PairFactor(i, j, np.zeros_like(s), s))
    return GraphMRF(mrf.choices, mrf.score_unary, mrf.lat_unary, list(mrf.factors) + prior, mrf.intercept,
                    mrf.fixed, mrf.names, mrf.base, mrf.space_fingerprint)
