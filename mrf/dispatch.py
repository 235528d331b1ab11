"""One MRF interface over chains and graphs: callers hold a `WidthMRF` or a `GraphMRF` and ask
this module for the matching solvers, so the pipeline stages need not branch on the space kind.

Both solver modules (solvers.py for chains, graph_solvers.py for junction trees) export the same
functions with the same signatures: viterbi, fastest, check_budget, lagrangian, exact,
pareto_front, marginals, sample_configs.
"""
from __future__ import annotations

from types import ModuleType

from .graph_model import GraphMRF
from .model import WidthMRF


def solvers_for(mrf: WidthMRF | GraphMRF) -> ModuleType:
    """mrf.solvers for a chain, mrf.graph_solvers for a graph."""
    if isinstance(mrf, GraphMRF):
        from . import graph_solvers

        return graph_solvers
    from . import solvers

    return solvers


def build_mrf(table, unaries) -> WidthMRF | GraphMRF:
    """A chain MRF from a chain LatencyTable, a GraphMRF from a GraphLatencyTable (per-group unaries)."""
    from widthnas.latency.graph_table import GraphLatencyTable

    if isinstance(table, GraphLatencyTable):
        return GraphMRF.from_graph_table(table, unaries)
    return WidthMRF.from_table(table, unaries)
