"""Tree decomposition of a graph of channel groups: a greedy elimination order and the junction
tree (a forest, one tree per connected component) built from it.

Exact dynamic programming on the graph costs about prod(K over the largest clique): a chain gives
cliques of two groups, a bottleneck block tying its residual group to two inner groups gives
cliques of three, so 14^3 states per clique, which is cheap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


def elimination_order(n: int, edges: Sequence[tuple[int, int]],
                      state_counts: Sequence[int] | None = None) -> tuple[list[int], dict[int, set[int]]]:
    """A greedy min-fill elimination order: each step removes the vertex adding the fewest fill edges;
    ties go to the smallest clique table (product of state counts), then to the lowest index, so the
    order is deterministic. Also, per vertex, its neighbours not yet eliminated when it was."""
    logk = [math.log(max(int(k), 1)) for k in (state_counts or [1] * n)]
    adj = [set() for _ in range(n)]
    for i, j in edges:
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise ValueError(f"edge ({i}, {j}) is not a pair of distinct vertices in 0..{n - 1}")
        adj[i].add(j)
        adj[j].add(i)
    alive, order, later = set(range(n)), [], {}
    while alive:
        def cost(v: int):
            nb = adj[v]
            fill = sum(1 for a in nb for b in nb if a < b and b not in adj[a])
            return fill, logk[v] + sum(logk[u] for u in nb), v

        v = min(alive, key=cost)
        nb = later[v] = adj[v]
        for a in nb:  # fill: the neighbours of an eliminated vertex become a clique
            adj[a] |= nb - {a}
            adj[a].discard(v)
        alive.discard(v)
        adj[v] = set()
        order.append(v)
    return order, later


@dataclass
class JunctionTree:
    cliques: list[tuple[int, ...]]  # sorted vertex ids per clique
    parent: list[int]  # per clique, its parent clique; -1 for the root of each connected component

    @property
    def width(self) -> int:
        """Treewidth of this decomposition: largest clique size - 1."""
        return max(len(c) for c in self.cliques) - 1

    @property
    def roots(self) -> list[int]:
        return [c for c, p in enumerate(self.parent) if p < 0]

    def children(self, c: int) -> list[int]:
        return [k for k, p in enumerate(self.parent) if p == c]

    def separator(self, c: int) -> tuple[int, ...]:
        """The vertices clique c shares with its parent (sorted); () for a root."""
        p = self.parent[c]
        return () if p < 0 else tuple(sorted(set(self.cliques[c]) & set(self.cliques[p])))

    def postorder(self) -> list[int]:
        """Every clique after all of its children (leaves first, roots last)."""
        out: list[int] = []
        kids = [self.children(c) for c in range(len(self.cliques))]
        for r in self.roots:
            stack = [(r, False)]
            while stack:
                c, done = stack.pop()
                if done:
                    out.append(c)
                else:
                    stack.append((c, True))
                    stack.extend((k, False) for k in reversed(kids[c]))
        return out

    def centred(self) -> "JunctionTree":
        """The same tree with each component rooted at its centre (a clique of least eccentricity).

        Any clique can be a root; the elimination order makes a chain's root one end, so a pass that
        batches the cliques of one height (solvers._max_sum) makes one numpy step per clique. Rooted
        at the centre, the two halves run side by side: about half the steps."""
        m = len(self.cliques)
        nb: list[list[int]] = [[] for _ in range(m)]
        for c, p in enumerate(self.parent):
            if p >= 0:
                nb[c].append(p)
                nb[p].append(c)

        def bfs(s: int) -> dict[int, int]:  # each clique's parent from s outwards (s: -1), in visiting order
            par, seen = {s: -1}, [s]
            for c in seen:
                for k in sorted(nb[c]):
                    if k not in par:
                        par[k] = c
                        seen.append(k)
            return par

        parent = [-1] * m
        for r in self.roots:
            end = list(bfs(r))[-1]  # a farthest clique from r: one end of a longest path
            par_end = bfs(end)
            path = [list(par_end)[-1]]  # the longest path, from its other end back to `end`
            while par_end[path[-1]] >= 0:
                path.append(par_end[path[-1]])
            for c, p in bfs(path[(len(path) - 1) // 2]).items():
                parent[c] = p
        return JunctionTree(list(self.cliques), parent)


def junction_tree(n: int, edges: Sequence[tuple[int, int]],
                  state_counts: Sequence[int] | None = None) -> JunctionTree:
    """The elimination tree of a greedy order, with non-maximal cliques merged away. Eliminating v creates
    clique C_v = {v} + its remaining neighbours; C_v's parent is the clique of the first-eliminated of
    those neighbours, so the separator is C_v minus v. A vertex with no remaining neighbours ends a
    connected component: a root (the clique eliminated last; for a chain, an end)."""
    if n <= 0:
        raise ValueError("a junction tree needs at least one vertex")
    order, later = elimination_order(n, edges, state_counts)
    pos = {v: k for k, v in enumerate(order)}
    clique_of = {v: tuple(sorted(nb | {v})) for v, nb in later.items()}
    par = {v: min(nb, key=pos.__getitem__) if nb else None for v, nb in later.items()}
    # merge non-maximal cliques: C_p inside a child C_c -> c takes p's place in the tree
    alive = list(order)
    inside = lambda c: par[c] is not None and set(clique_of[par[c]]) <= set(clique_of[c])  # noqa: E731
    while (c := next((c for c in alive if inside(c)), None)) is not None:
        p = par[c]
        for k in alive:
            if par[k] == p and k != c:
                par[k] = c
        par[c] = par[p]
        alive.remove(p)
    index = {v: k for k, v in enumerate(alive)}
    return JunctionTree([clique_of[v] for v in alive],
                        [-1 if par[v] is None else index[par[v]] for v in alive])
