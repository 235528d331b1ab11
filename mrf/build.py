"""A GraphMRF from a graph profile and per-group unaries: what the search solves.

Variables are the space's free groups (in `free_groups` order, the order widths are listed in).
Fixed groups are not variables: the profile's `mrf_terms` already folds an op touching one free
and one fixed group into the free group's unary, and an op on fixed groups only into the intercept.
So `mrf.latency(idx) == table.predict(widths)` for every configuration.
"""
from __future__ import annotations

from .model import GraphMRF, PairFactor


def build_mrf(table, unaries) -> GraphMRF:
    """From a latency.table.LatencyTable and mrf.unaries.Unaries (one entry per free group);
    refuses unaries of another space, group order or width choices."""
    from widthnas.models.space import check_fingerprint

    space = table.space
    check_fingerprint(unaries.space_fingerprint, space,
                      f"unaries of search space {unaries.space_name} (for this profile)")
    free = space.free_groups
    if len(unaries.widths) != len(free):
        raise ValueError(f"unaries have {len(unaries.widths)} entries, the profile's space {len(free)} free groups")
    for k, (w, g) in enumerate(zip(unaries.widths, free)):
        name = unaries.names[k] if unaries.names else g.name
        if name != g.name or list(w) != list(g.choices):
            raise ValueError(f"unaries entry {k} ({name}, widths {list(w)}) does not match the profile's group "
                             f"{g.name} (widths {list(g.choices)})")
    terms = table.mrf_terms()  # latency in ms, per free group and per op on two free groups
    factors = [PairFactor(i, j, ms) for i, j, ms in terms.pairs]
    return GraphMRF([g.choices for g in free], unaries.scores(), terms.unary, factors, terms.intercept,
                    names=[g.name for g in free], base=tuple(g.base for g in free),
                    space_fingerprint=space.fingerprint)
