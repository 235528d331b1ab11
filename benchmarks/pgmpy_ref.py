"""The width MRF in pgmpy: the reference our junction-tree solvers are checked against.

Pitfalls handled (docs/design.md section 4): pgmpy works in product space, so every log-potential is
shifted by its maximum before exp; `map_query` builds the joint table and runs out of memory on long
chains, so MAP comes from BeliefPropagation.max_calibrate() and per-variable max-marginals;
state names are the widths; progress bars are off.
"""
from __future__ import annotations

import warnings
import numpy as np



def _quiet():
    from pgmpy import config

    config.set_show_progress(False)
    warnings.filterwarnings("ignore", module="pgmpy")


def _ve_marginals(net, choices, name) -> list[np.ndarray]:
    from pgmpy.inference import VariableElimination

    ve = VariableElimination(net)
    out = []
    for i, ch in enumerate(choices):
        f = ve.query([name(i)], show_progress=False)
        vals = np.array([f.get_value(**{name(i): int(w)}) for w in ch])
        out.append(vals / vals.sum())
    return out


def _bp_map(net, choices, name) -> list[int]:
    from pgmpy.inference import BeliefPropagation

    bp = BeliefPropagation(net)
    bp.max_calibrate()
    beliefs = bp.get_clique_beliefs()
    idx = []
    for i, ch in enumerate(choices):
        clique = next(c for c in beliefs if name(i) in c)
        f = beliefs[clique].copy()
        others = [v for v in f.scope() if v != name(i)]
        if others:
            f.maximize(others, inplace=True)
        vals = np.array([f.get_value(**{name(i): int(w)}) for w in ch])
        idx.append(int(np.argmax(vals)))
    return idx


# ---- graphs of channel groups (GraphMRF) -----------------------------------------------------
def group(g: int) -> str:
    return f"group{g}"


def to_pgmpy(mrf, gamma: float = 0.0, temperature: float = 1.0):
    """A DiscreteMarkovNetwork of exp((score - gamma * latency) / T) over a GraphMRF's groups: one
    factor per group and one per pair of groups joined by factors (summed, as the model does)."""
    _quiet()
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.models import DiscreteMarkovNetwork

    names = {group(g): [int(w) for w in c] for g, c in enumerate(mrf.choices)}
    net = DiscreteMarkovNetwork()
    net.add_nodes_from(names)
    factors = []
    for g, (s, l) in enumerate(zip(mrf.score_unary, mrf.lat_unary)):
        lv = (s - gamma * l) / temperature
        factors.append(DiscreteFactor([group(g)], [len(lv)], np.exp(lv - lv.max()),
                                      state_names={group(g): names[group(g)]}))
    for (i, j), (lat, sc) in mrf.pairs.items():
        lv = (sc - gamma * lat) / temperature
        net.add_edge(group(i), group(j))
        factors.append(DiscreteFactor([group(i), group(j)], list(lv.shape), np.exp(lv - lv.max()).ravel(),
                                      state_names={group(i): names[group(i)], group(j): names[group(j)]}))
    net.add_factors(*factors)
    return net


def pgmpy_marginals(mrf, gamma: float = 0.0, temperature: float = 1.0) -> list[np.ndarray]:
    """Exact per-group marginals of a GraphMRF by VariableElimination."""
    return _ve_marginals(to_pgmpy(mrf, gamma, temperature), mrf.choices, group)


def pgmpy_map(mrf, gamma: float = 0.0) -> list[int]:
    """MAP choice indices of a GraphMRF by BeliefPropagation (pgmpy's own junction tree) and
    per-group max-marginals; correct when the MAP is unique."""
    return _bp_map(to_pgmpy(mrf, gamma), mrf.choices, group)
