"""A smoothness prior between consecutive layers' width multipliers, as pairwise MRF scores.

Noisy unaries let an exact optimiser pick jagged networks (152 channels next to 768) whose
noise flatters them. Penalising the change of log-multiplier between neighbouring layers pulls
the choice toward smooth width profiles, of which the uniform network is the smoothest; the
weight decides how far, and is chosen on held-out images (nas.selection), not fixed here.
"""
from __future__ import annotations

import numpy as np

from .model import GraphMRF, PairFactor


def with_smoothness(mrf: GraphMRF, weight: float) -> GraphMRF:
    """A new GraphMRF (they are read-only once built) with the prior added as one zero-latency factor
    per pair of groups (i, j) an op joins, (K_i, K_j) scores -weight * (log(w_i / base_i) - log(w_j / base_j))**2
    (weight 0: the same scores)."""
    if not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"smoothness weight {weight!r}: give a finite number >= 0")
    if not mrf.base:
        raise ValueError("the smoothness prior needs the base widths (build the MRF with build_mrf)")
    logm = [np.log(np.asarray(c, float) / b) for c, b in zip(mrf.choices, mrf.base)]
    prior = [(i, j, -weight * np.subtract.outer(logm[i], logm[j]) ** 2) for i, j in mrf.edges]
    return GraphMRF(mrf.choices, mrf.score_unary, mrf.lat_unary,
                    list(mrf.factors) + [PairFactor(i, j, np.zeros_like(s), s) for i, j, s in prior], mrf.intercept,
                    mrf.fixed, mrf.names, mrf.base, mrf.space_fingerprint)
