"""`widthnas fit` on a graph space: the networks x entries system solved into a GraphLatencyTable.

A black-box end-to-end fit (fit.py holds the solver, penalties and cross-validation): whole random
networks are timed, and per-entry costs solved for.
Entries are (signature, c_in, c_out), shared by every op of that signature, or one set per op
(keying 'op', graph_entries.py), and anchored per signature on a bilinear surface:
    T[c_in, c_out] = theta_s . (c_in', c_out', c_in' c_out') + R[c_in, c_out]
with c' = c / (the signature's widest), theta >= 0, and R ridge-penalised; an op that keeps its
channels (depthwise, add, pooling) has the one feature c'. Monotonicity pairs join neighbouring
channel counts of one signature.
"""
from __future__ import annotations


import numpy as np
import scipy.sparse as sp

from widthnas.models.graph_space import GraphSpace

from .fit import FitSettings, Solver, solve_samples
from .graph_entries import GraphEntries
from .graph_table import GraphLatencyTable
from .samples import Samples


def _features(ci: np.ndarray, co: np.ndarray, diagonal: bool) -> list[np.ndarray]:
    """Bilinear anchor features of one signature's entries (channels ci, co, each (m,)), normalised;
    a feature that is constant over the entries is left out (the intercept carries constants)."""
    ci_n, co_n = ci / ci.max(), co / co.max()
    if diagonal:
        return [ci_n] if len(set(ci)) > 1 else []
    feats = []
    if len(set(ci)) > 1:
        feats.append(ci_n)
    if len(set(co)) > 1:
        feats.append(co_n)
    if len(set(ci)) > 1 and len(set(co)) > 1:
        feats.append(ci_n * co_n)
    return feats


def _neighbours(idx: np.ndarray, along: np.ndarray, across: np.ndarray) -> list[tuple[int, int]]:
    """(fewer, more channels) pairs of entries that share `across` and are adjacent in `along`."""
    out = []
    for v in np.unique(across):
        m = idx[across == v]
        m = m[np.argsort(along[across == v], kind="stable")]
        out += list(zip(m[:-1], m[1:]))
    return out


class GraphSystem(Solver):
    """The fit's bookkeeping for one graph space: design matrix, anchors, monotonicity pairs."""

    def __init__(self, space: GraphSpace, keying: str = "signature"):
        self.space = space
        self.entries = GraphEntries(space, keying)
        self.E = self.entries.E
        keys = self.entries.keys
        c_in = np.array([k.c_in for k in keys], float)
        c_out = np.array([k.c_out for k in keys], float)
        rows, cols, vals, P, pairs = [], [], [], 0, []
        for sig, idx in self.entries.by_signature().items():
            diag = self.entries.diagonal(sig)
            for f in _features(c_in[idx], c_out[idx], diag):
                rows.extend(idx)
                cols.extend([P] * len(idx))
                vals.extend(f)
                P += 1
            if diag:  # one chain of ascending channels
                pairs += _neighbours(idx, c_in[idx], np.zeros(len(idx)))
            else:
                pairs += _neighbours(idx, c_in[idx], c_out[idx]) + _neighbours(idx, c_out[idx], c_in[idx])
        self.P = P  # bilinear coefficients
        self.B = sp.csr_matrix((vals, (rows, cols)), shape=(self.E, P))
        self.T = sp.hstack([self.B, sp.identity(self.E)]).tocsr()  # entries from (theta, R)
        self.pairs = np.array(pairs, int).reshape(-1, 2)

    def design(self, widths: np.ndarray) -> sp.csr_matrix:
        """(n, E) counts of every entry in each network."""
        return self.entries.design(widths)


def fit_graph_table(space: GraphSpace, samples: Samples, settings: FitSettings | None = None,
                    name: str = "", log=print, keying: str = "signature") -> GraphLatencyTable:
    """Fit a GraphLatencyTable to reference-normalised samples, choosing lam and mu by cross-validation.
    keying 'op': one set of entries per op (more unknowns; what the chain tables before 0.2 had)."""
    sys_ = GraphSystem(space, keying)
    costs, c, reference_ms, A, fit = solve_samples(sys_, samples, settings or FitSettings())
    fit.update(entries_measured=int((A.sum(axis=0) > 0).sum()), signatures=len(sys_.entries.signatures))
    log(f"fit: {fit['samples']} samples, {sys_.E} entries ({fit['entries_measured']} measured) in "
        f"{fit['signatures']} signatures; cv RMSPE {fit['cv_rmspe']:.4f} at lam={fit['lam']:g} mu={fit['mu']:g} "
        f"elasticity={fit['elasticity']:g}; "
        f"train RMSPE {fit['train_rmspe']:.4f}; {fit['seconds']:.1f} s")
    return GraphLatencyTable(space, costs, c, reference_ms, samples.header["device"], fit, {}, name, keying)


def fit_profile(space: GraphSpace, samples: Samples, settings: FitSettings | None = None, name: str = "",
                log=print, keying: str = "signature") -> GraphLatencyTable:
    """The fit `widthnas fit` and `widthnas run` both make: the table, and beside it (in fit.flops_proxy)
    the FLOPs-linear proxy on the same targets, the baseline validation compares it with."""
    from .fit import fit_flops_proxy

    table = fit_graph_table(space, samples, settings, name, log, keying)
    table.fit["flops_proxy"] = fit_flops_proxy(space, samples, table.fit["elasticity"]).to_dict()
    return table
