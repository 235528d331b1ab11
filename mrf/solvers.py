"""Exact solvers on a GraphMRF by dynamic programming over its junction tree.

Every solver runs the same two passes over the tree's cliques (leaves up, then root down); they
differ only in what a message holds:
  max-sum       (G, separator states)  best score - gamma * latency, G multipliers at once
  sum-product   (1, separator states)  log-sum-exp of (score - gamma * latency) / T
  Pareto        per separator state, every (latency, score) pair no other partial
                configuration beats in both: exact, no latency rounding; for one budget, labels
                that cannot fit it or beat the Lagrangian's answer are dropped (a certified bound).
                Inside a clique, fronts are combined by bucket elimination (`_schedule`), so the
                fronts hanging on one group meet on its K states, not on the clique's K^2
A virtual root with no groups joins the trees of a disconnected graph and carries the intercept.
The Lagrangian's max-sum (`_max_sum`) runs the same sums as a flat program: one batch per tree level,
decoded by pointer doubling; the tests check it against the clique-by-clique pass (`_upward`, `_decode_max`).
"""
from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from .model import GraphMRF
from .junction_tree import JunctionTree, junction_tree
from .solution import Solution, nondominated, refuse_below, search_gamma


def _lse(a: np.ndarray, axis: int) -> np.ndarray:
    """log-sum-exp along axis; a lean version of scipy's for small arrays on the hot path."""
    m = np.maximum.reduce(a, axis=axis, keepdims=True)  # ufunc.reduce: less call overhead than .max()
    if not np.isfinite(np.add.reduce(m, axis=None)):  # a state no configuration reaches (-inf), or worse
        m = np.where(np.isfinite(m), m, 0.0)
    return np.log(np.add.reduce(np.exp(a - m), axis=axis)) + m.squeeze(axis)


# ---- the plan: cliques and index maps, built once per graph structure --------------------------
@dataclass
class _Clique:
    vars: tuple[int, ...]  # groups: the separator (shared with the parent) first, then the rest
    shape: tuple[int, ...]  # K per group (width choices)
    n_sep: int  # separator states; a state s of this clique has separator state s // (size // n_sep)
    children: list[int]
    proj: list[np.ndarray]  # per child: (size,) the child's separator state for each state here
    perm: list[np.ndarray]  # per child: (size,) the states here, stably sorted by that separator state
    grid: np.ndarray  # (len(vars), size) each state's choice index per group
    sep_stride: np.ndarray  # (n separator groups,) to ravel their choice indices into a separator state
    unary: list[int]  # groups whose unaries this clique carries
    pairs: list[tuple[int, int]]  # merged factors this clique carries
    embed: list[np.ndarray]  # per child, (its n_sep,) the clique state index part of each separator state
    steps: list["_Step"]  # the Pareto DP's schedule (`_schedule`)

    @property
    def size(self) -> int:
        return int(self.grid.shape[1])


@dataclass
class Plan:
    tree: JunctionTree
    cliques: list[_Clique]  # the junction tree's cliques, then the virtual root (no groups)
    post: list[int]  # children before parents; the virtual root last
    home: list[tuple[int, np.ndarray]]  # per group: (a clique holding it, its states sorted by the group's choice)
    up: list[tuple[int, int]]  # per clique: (its parent, its position among the parent's children); root (-1, -1)
    maxsum: "_MaxSum | None" = field(default=None, repr=False)  # built on first use (`_max_sum`)

    @property
    def root(self) -> int:
        return len(self.cliques) - 1


_PLANS: dict = {}


def plan(mrf: GraphMRF, centred: bool = False) -> Plan:
    """The junction tree and index maps for this graph's structure (cached by structure, so
    changing a table's values never serves a stale plan). centred: each tree rooted at its centre
    (JunctionTree.centred), for the level-batched max-sum."""
    mine = ("plan", centred)  # the MRF is read-only once built (GraphMRF): its plan too
    if mine in mrf.cache:
        return mrf.cache[mine]
    ks = tuple(len(c) for c in mrf.choices)
    key = (ks, tuple(mrf.edges), centred)
    if key not in _PLANS:
        if len(_PLANS) > 64:
            _PLANS.clear()
        _PLANS[key] = _build_plan(ks, mrf.edges, centred)
    mrf.cache[mine] = _PLANS[key]
    return _PLANS[key]


def _build_plan(ks: tuple[int, ...], edges: list[tuple[int, int]], centred: bool) -> Plan:
    jt = junction_tree(len(ks), edges, ks)
    if centred:
        jt = jt.centred()
    m = len(jt.cliques)
    vars_ = []
    for c in range(m):
        sep = jt.separator(c)
        vars_.append(sep + tuple(sorted(set(jt.cliques[c]) - set(sep))))
    vars_.append(())  # the virtual root
    nsep = [int(np.prod([ks[v] for v in jt.separator(c)], dtype=np.int64)) for c in range(m)] + [1]
    kids = [jt.children(c) for c in range(m)] + [jt.roots]
    post = jt.postorder() + [m]
    seen_u, seen_p, cliques = set(), set(), [None] * (m + 1)
    for c in post:  # a term goes to the first clique (leaves first) that holds its groups
        shape = tuple(ks[v] for v in vars_[c])
        grid = np.indices(shape).reshape(len(shape), -1) if shape else np.zeros((0, 1), int)
        seps = [jt.separator(k) for k in kids[c]]  # each child's separator: its first groups
        proj = [np.ravel_multi_index(tuple(grid[[vars_[c].index(v) for v in s]]), tuple(ks[v] for v in s)) if s
                else np.zeros(grid.shape[1], int) for s in seps]
        ns = len(jt.separator(c)) if c < m else 0
        unary = [v for v in vars_[c] if v not in seen_u]
        pairs = [e for e in edges if e not in seen_p and e[0] in vars_[c] and e[1] in vars_[c]]
        seen_u.update(unary)
        seen_p.update(pairs)
        embed = [_embed(vars_[c], shape, s, tuple(ks[v] for v in s)) for s in seps]
        steps = _schedule(vars_[c], shape, grid, set(vars_[c][:ns]), [set(s) for s in seps])
        cliques[c] = _Clique(vars_[c], shape, nsep[c], kids[c], proj, [np.argsort(pr, kind="stable") for pr in proj],
                             grid, _strides(shape[:ns]), unary, pairs, embed, steps)
    home = []
    for g in range(len(ks)):
        c = min((c for c in range(m) if g in vars_[c]), key=lambda c: cliques[c].size)
        home.append((c, np.argsort(cliques[c].grid[vars_[c].index(g)], kind="stable")))
    up = [(-1, -1)] * len(cliques)
    for c, q in enumerate(cliques):
        for t, k in enumerate(q.children):
            up[k] = (c, t)
    return Plan(jt, cliques, post, home, up)


@dataclass
class _Step:
    """One step of a clique's Pareto schedule: label set `out` is made from a leaf (op "table": the
    clique's own terms, one label per state; "child": child `a`'s front), by joining sets `a` and
    `b` (op "join": every pair agreeing on the groups they share), or from set `a` (op "prune").
    Then, if `group` is given, labels compete within its groups: the groups still needed later."""
    op: str
    out: int
    a: int = -1
    b: int = -1
    group: np.ndarray | None = None  # (size,) group id of each clique state
    key: np.ndarray | None = None  # join: (size,) state of the shared groups, for each clique state
    n_key: int = 1  # join: states of the shared groups
    shared: np.ndarray | None = None  # join: (size,) the shared groups' part of the clique state index
    table: bool = False  # the set holds the clique's terms (so its labels' clique states are complete)
    pending: tuple[int, ...] = ()  # children (positions) whose fronts the set does not hold


def _strides(shape: tuple[int, ...]) -> np.ndarray:
    """(len(shape),) C-order strides: a clique state index is sum(choice index * stride)."""
    return np.cumprod((1,) + shape[::-1])[:-1][::-1].astype(np.int64)


def _embed(vars_: tuple[int, ...], shape: tuple[int, ...], sep: tuple[int, ...], sep_shape: tuple[int, ...]):
    """(separator states,) each child separator state's part of this clique's state index."""
    st = _strides(shape)
    vals = np.indices(sep_shape).reshape(len(sep), -1) if sep else np.zeros((0, 1), np.int64)
    return sum((vals[i] * st[vars_.index(v)] for i, v in enumerate(sep)), np.zeros(vals.shape[1], np.int64))


def _schedule(vars_: tuple[int, ...], shape: tuple[int, ...], grid: np.ndarray, sep: set,
              seps: list[set]) -> list[_Step]:
    """The order in which the Pareto DP combines a clique's own terms and its children's fronts.

    Bucket elimination inside the clique: the groups not in the separator are eliminated one at
    a time (the cheapest first), each by joining the label sets that hold it (smallest first) and
    projecting it out. Children hanging on one group are thus joined on that group's K states
    before the clique's table multiplies them by the other groups' (a tree: 14, not 14^2 states),
    and a group only the table holds is projected out before any front is added (a bottleneck
    clique (S, a, b) whose children hang on S shrinks from 14^3 states to 14^2, then 14)."""
    st = _strides(shape)

    def rows(keep: set) -> list[int]:
        return [r for r, v in enumerate(vars_) if v in keep]

    def group_map(keep: set) -> np.ndarray:
        r = rows(keep)
        dt = np.int16 if states(keep) < 2 ** 15 else np.int64  # int16: _prune's group sort is a radix sort
        if not r:
            return np.zeros(grid.shape[1], dt)
        return np.ravel_multi_index(tuple(grid[r]), tuple(shape[i] for i in r)).astype(dt)

    def states(scope: set) -> int:
        return math.prod(shape[r] for r in rows(scope))

    # live sets: register -> (scope, children held, holds the table?)
    live = {0: (set(vars_), frozenset(), True)}
    steps = [_Step("table", 0, table=True, pending=tuple(range(len(seps))))]
    for t, s in enumerate(seps):
        live[t + 1] = (set(s), frozenset([t]), False)
        steps.append(_Step("child", t + 1, a=t, pending=tuple(k for k in range(len(seps)) if k != t)))
    nxt = len(seps) + 1

    def needed(excl: tuple[int, ...]) -> set:
        return sep.union(*[live[r][0] for r in live if r not in excl])

    def finish(op: str, a: int, b: int, scope: set, kids: frozenset, table: bool, **kw) -> int:
        nonlocal nxt
        keep = scope & needed((a, b))
        for r in (a, b):
            live.pop(r, None)
        live[nxt] = (keep, kids, table)
        steps.append(_Step(op, nxt, a, b, group_map(keep), table=table,
                           pending=tuple(k for k in range(len(seps)) if k not in kids), **kw))
        nxt += 1
        return nxt - 1

    def join(a: int, b: int) -> int:
        (sa, ka, ta), (sb, kb, tb) = live[a], live[b]
        both = sa & sb
        return finish("join", a, b, sa | sb, ka | kb, ta or tb, key=group_map(both), n_key=states(both),
                      shared=(grid[rows(both)].T @ st[rows(both)]).astype(np.int64))

    def fold(regs: list[int]) -> int:  # smallest first
        return functools.reduce(join, sorted(regs, key=lambda r: (states(live[r][0]), r)))

    todo = set(vars_) - sep
    while todo:
        bucket = lambda v: [r for r in live if v in live[r][0]]  # noqa: E731
        v = min(todo, key=lambda v: (states(set().union(*[live[r][0] for r in bucket(v)])), len(bucket(v)), v))
        regs = bucket(v)
        if len(regs) == 1:
            finish("prune", regs[0], -1, *live[regs[0]])
        else:
            fold(regs)
        todo = {u for u in todo if any(u in live[r][0] for r in live)}
    last = fold(list(live))
    if steps[-1].group is None or steps[-1].op in ("table", "child"):
        finish("prune", last, -1, *live[last])
    return steps


def _solution(mrf: GraphMRF, idx, method: str, budget: float | None = None, **info) -> Solution:
    idx = [int(k) for k in idx]
    lat, sc = mrf.evaluate([idx])
    return Solution(mrf.widths(idx), idx, float(sc[0]), float(lat[0]), method, budget, info)


def _tables(mrf: GraphMRF, p: Plan) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per clique, (size,) score and (size,) latency (ms) of the terms it carries (cached on mrf)."""
    key = ("tables", id(p))
    if mrf.cache.get(key, (None,))[0] is p:
        return mrf.cache[key][1]
    S, L = [], []
    for q in p.cliques:
        s, l = np.zeros(q.shape), np.zeros(q.shape)
        terms = [([q.vars.index(g)], mrf.lat_unary[g], mrf.score_unary[g]) for g in q.unary]
        for i, j in q.pairs:  # a (K_i, K_j) table, its axes put in the clique's order
            lat, sc = mrf.pairs[(i, j)]
            a, c = q.vars.index(i), q.vars.index(j)
            terms.append(([a, c], lat, sc) if a < c else ([c, a], lat.T, sc.T))
        for axes, lat, sc in terms:
            b = [lat.shape[axes.index(ax)] if ax in axes else 1 for ax in range(len(q.shape))]
            s = s + sc.reshape(b)
            l = l + lat.reshape(b)
        S.append(np.ravel(s))
        L.append(np.ravel(l))
    L[-1] = L[-1] + mrf.intercept  # the virtual root carries the intercept
    mrf.cache[key] = (p, (S, L))
    return S, L


# ---- the two passes -----------------------------------------------------------------------------
def _upward(p: Plan, pots: list[np.ndarray], how: str):
    """pots[c] (G, size) -> (beliefs (G, size) with the subtree below folded in, messages
    (G, n_sep) to the parent, argmax (G, n_sep) of the rest given the separator when how='max')."""
    n = len(p.cliques)
    up, msg, arg = [None] * n, [None] * n, [None] * n
    for c in p.post:
        q = p.cliques[c]
        b = pots[c]
        for k, pr in zip(q.children, q.proj):
            b = b + msg[k].take(pr, axis=1)  # take and ufunc.reduce: less call overhead on small arrays
        up[c] = b
        b3 = b.reshape(len(b), q.n_sep, -1)
        if how == "max":
            arg[c] = b3.argmax(axis=2)
            msg[c] = np.maximum.reduce(b3, axis=2)
        else:
            msg[c] = _lse(b3, 2)
    return up, msg, arg


def _downward(p: Plan, up: list, msg: list, how: str):
    """(full beliefs (G, size) including everything outside the subtree, downward messages
    (G, n_sep): the best (or log-summed) rest of the graph given each separator state)."""
    n = len(p.cliques)
    full, down = [None] * n, [None] * n
    full[p.root] = up[p.root]
    for c in reversed(p.post):
        q = p.cliques[c]
        for k, pr, pm in zip(q.children, q.proj, q.perm):
            t = (full[c] - msg[k][:, pr])[:, pm].reshape(len(full[c]), p.cliques[k].n_sep, -1)
            down[k] = t.max(axis=2) if how == "max" else _lse(t, 2)
            full[k] = up[k] + np.repeat(down[k], p.cliques[k].size // p.cliques[k].n_sep, axis=1)
    return full, down


def _decode_max(p: Plan, arg: list, n: int) -> np.ndarray:
    """(G, groups) argmax choice indices, root down: each clique's state from its separator state
    (read off the parent's state); each group from the clique where it is not in the separator."""
    G = len(arg[p.root])
    x = np.zeros((G, n), int)
    rows = np.arange(G)
    state = [None] * len(p.cliques)
    state[p.root] = np.zeros(G, int)
    for c in reversed(p.post[:-1]):
        q = p.cliques[c]
        par, t = p.up[c]
        s = p.cliques[par].proj[t][state[par]]  # (G,) separator state
        state[c] = s * (q.size // q.n_sep) + arg[c][rows, s]
        ns = len(q.sep_stride)
        x[:, q.vars[ns:]] = q.grid[ns:, state[c]].T
    return x


# ---- max-sum for G multipliers as a flat program: a few numpy calls per tree level ----------------
# Cliques of one height (every child lower) run as one batch, each padded to (level's n_sep, rest)
# states; padding has potential -inf, so it is never an argmax (argmax takes the first of equal
# maxima, and padding comes last). Three flat scratch arrays per call:
#   P (G, all padded states) potentials, then beliefs; by level, each level's block (cliques, n_sep, rest)
#   M (1 + G * message states,) 0, then per level a (G, cliques * n_sep) block of messages
#   A like M: the argmax (the best rest given the separator state) of each message, A[0] = 0
# An entry (g, clique c, separator state s) of M or A is at  c0 + G * wb + g * ww  with c0 = 1 +
# c's offset in its level's row + s, wb = message states of the levels before, ww = its level's.
@dataclass
class _Level:
    lo: int  # P columns lo:hi
    hi: int
    rest: int  # states per separator state, the largest here
    kids: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per child slot, (hi - lo,) c0, wb, ww of the child's
    # message each state adds (all 0: M[0] = 0, for padding and cliques with fewer children)
    wb: int  # message states of the levels before
    ww: int  # this level's message states (cliques * n_sep)


@dataclass
class _MaxSum:
    """Index maps for `_max_sum`, built once per plan; per G (multipliers) the flat indices (`_per_g`).
    Decode: H (G, cliques * ns) holds at (c, s) the separator state of c given separator state s
    of an ancestor; first the parent (h_*, proj), then by doubling (anc) the root."""
    n_pad: int  # P columns
    pad: np.ndarray  # (n_pad,) each P column's index in `_tables` laid end to end; padding: one past the last
    levels: list[_Level]
    ns: int  # the largest separator count: H's columns per clique
    h: tuple[np.ndarray, np.ndarray, np.ndarray]  # (cliques * ns,) c0, wb, ww of the parent's argmax for s
    h_base: np.ndarray  # (cliques * ns,) into proj: c's separator state for parent state s * rest + 0
    proj: np.ndarray  # every clique's separator state per parent state, laid end to end; then a 0
    col: np.ndarray  # (cliques * ns,) c * ns: where each column's clique starts in a row of H
    anc: list[np.ndarray]  # per doubling k, (cliques * ns,) column (the 2^k-th ancestor of c, s) of H
    g_sep: np.ndarray  # (groups,) column (c, 0) of H, c the clique that decodes the group (holds it outside its separator)
    g_arg: tuple[np.ndarray, np.ndarray, np.ndarray]  # (groups,) c0, wb, ww of c's first argmax
    g_rest: np.ndarray  # (groups,) c's states per separator state
    g_grid: np.ndarray  # (groups,) into grid: where the group's choice index per state of c starts
    grid: np.ndarray  # the groups' choice indices per state of their decoding clique, end to end
    per_g: dict = field(default_factory=dict)  # G -> `_per_g`'s arrays


def _build_max_sum(p: Plan) -> _MaxSum:
    C, qs = len(p.cliques), p.cliques
    off = np.cumsum([0] + [q.size for q in qs])
    height = [0] * C  # the longest path down to a leaf (leaves 0): cliques of one height are independent
    for c in p.post:
        height[c] = 1 + max((height[k] for k in qs[c].children), default=-1)
    by_level = [[c for c in p.post if height[c] == h] for h in range(max(height) + 1)]
    where = [(0, 0, 0)] * C  # per clique: c0 (without s), wb, ww of its messages
    shapes, wb = [], 0
    for cs in by_level:  # all message places first: a level reads its children's
        ns, rest = max(qs[c].n_sep for c in cs), max(qs[c].size // qs[c].n_sep for c in cs)
        for j, c in enumerate(cs):
            where[c] = (1 + j * ns, wb, len(cs) * ns)
        shapes.append((ns, rest, wb))
        wb += len(cs) * ns
    levels, pads, lo = [], [], 0
    for cs, (ns, rest, wb) in zip(by_level, shapes):
        nk = max(len(qs[c].children) for c in cs)
        pad = np.full((len(cs), ns, rest), off[-1], np.int64)
        kids = np.zeros((nk, 3, len(cs), ns, rest), np.int64)
        for j, c in enumerate(cs):
            q = qs[c]
            r = q.size // q.n_sep
            pad[j, :q.n_sep, :r] = (off[c] + np.arange(q.size)).reshape(q.n_sep, r)
            for t, (k, pr) in enumerate(zip(q.children, q.proj)):
                kids[t, :, j, :q.n_sep, :r] = [x.reshape(q.n_sep, r) for x in
                                               (where[k][0] + pr, np.full_like(pr, where[k][1]), np.full_like(pr, where[k][2]))]
        pads.append(pad.ravel())
        levels.append(_Level(lo, lo + pad.size, rest, [tuple(x.ravel() for x in kt) for kt in kids], wb, len(cs) * ns))
        lo += pad.size
    return _MaxSum(lo, np.concatenate(pads), levels, *_decode_maps(p, where))


def _decode_maps(p: Plan, where: list[tuple[int, int, int]]) -> tuple:
    """The decode fields of `_MaxSum` (see there), from each clique's message place."""
    C, qs = len(p.cliques), p.cliques
    ns = max(q.n_sep for q in qs)
    projs = [np.zeros(1, np.int64)] * C
    for q in qs:
        for k, pr in zip(q.children, q.proj):
            projs[k] = pr
    poff = np.cumsum([0] + [len(x) for x in projs])
    proj = np.concatenate(projs + [np.zeros(1, np.int64)]).astype(np.int64)
    h = np.zeros((3, C, ns), np.int64)  # the root: its own separator state 0, from A[0] = 0
    h_base = np.full((C, ns), poff[-1], np.int64)
    parent = [p.up[c][0] if c != p.root else p.root for c in range(C)]
    for c in range(C):
        if c != p.root:
            q = qs[parent[c]]
            s = np.arange(ns)
            s = np.where(s < q.n_sep, s, 0)  # the parent's padding states: any valid place
            c0, wb, ww = where[parent[c]]
            h[:, c] = [c0 + s, np.full(ns, wb), np.full(ns, ww)]
            h_base[c] = poff[c] + s * (q.size // q.n_sep)
    depth = [0] * C
    for c in reversed(p.post[:-1]):
        depth[c] = depth[parent[c]] + 1
    anc, up = [], np.array(parent)
    for _ in range((max(depth) - 1).bit_length()):  # until 2^k >= the depth: every clique's ancestor is the root
        anc.append((up[:, None] * ns + np.arange(ns)).ravel())
        up = up[up]
    owner = {}
    for c, q in enumerate(qs):
        for v in q.vars[len(q.sep_stride):]:
            assert v not in owner, "a group outside two cliques' separators"
            owner[v] = c
    cl = [owner[g] for g in range(len(owner))]
    grids = [qs[c].grid[qs[c].vars.index(g)].astype(np.int64) for g, c in enumerate(cl)]
    return (ns, tuple(x.ravel() for x in h), h_base.ravel(), proj, np.repeat(np.arange(C) * ns, ns), anc,
            np.array([c * ns for c in cl], np.int64), tuple(np.array([where[c][i] for c in cl], np.int64) for i in range(3)),
            np.array([qs[c].size // qs[c].n_sep for c in cl], np.int64),
            np.cumsum([0] + [len(x) for x in grids])[:-1].astype(np.int64),
            np.concatenate(grids) if grids else np.zeros(0, np.int64))


def _place(G: int, c0: np.ndarray, wb: np.ndarray, ww: np.ndarray) -> np.ndarray:
    """(G, len(c0)) flat indices into M or A of the entries (c0, wb, ww) for each multiplier."""
    return c0 + G * wb + np.arange(G)[:, None] * ww


def _per_g(m: _MaxSum, G: int) -> tuple:
    """The flat indices for G multipliers: per level (the children's message places (G, states)
    per slot, each message state's first belief in P (G, cliques * n_sep), the level's P columns,
    its M and A entries, the beliefs' shape (G, cliques * n_sep, rest)); the parents' argmax
    places for H (G, cliques * ns); H's row starts (G, cliques * ns); each group's argmax place (G, groups)."""
    if G not in m.per_g:
        lv = [([_place(G, *k) for k in l.kids], np.arange(G)[:, None] * m.n_pad + l.lo + np.arange(l.ww) * l.rest,
               slice(l.lo, l.hi), slice(1 + G * l.wb, 1 + G * (l.wb + l.ww)), (G, l.ww, l.rest)) for l in m.levels]
        m.per_g[G] = (lv, _place(G, *m.h), m.col + np.arange(G)[:, None] * len(m.col), _place(G, *m.g_arg))
    return m.per_g[G]


def _pad_tables(mrf: GraphMRF, p: Plan, m: _MaxSum) -> tuple[np.ndarray, np.ndarray]:
    """(n_pad,) score and latency in P's layout; padding scores -inf, latency 0 (cached on mrf)."""
    key = ("maxsum", id(p))
    if mrf.cache.get(key, (None,))[0] is not p:
        S, L = _tables(mrf, p)
        mrf.cache[key] = (p, np.r_[np.concatenate(S), -np.inf][m.pad], np.r_[np.concatenate(L), 0.0][m.pad])
    return mrf.cache[key][1:]


def _max_sum(mrf: GraphMRF, gammas: np.ndarray) -> np.ndarray:
    """(G,) multipliers -> (G, groups) argmax of score - gamma * latency. The same sums in the same
    order as the clique-by-clique pass (so the same answers), with numpy calls per tree level, not
    per clique; on the centred tree, whose levels are about half as many on a chain."""
    p = plan(mrf, centred=True)
    if p.maxsum is None:
        p.maxsum = _build_max_sum(p)
    m = p.maxsum
    s, l = _pad_tables(mrf, p, m)
    g = np.asarray(gammas, float)
    G = len(g)
    lv_idx, h_arg, h_at, g_arg = _per_g(m, G)
    P = _buf("ms.pot", G * m.n_pad, np.float64).reshape(G, m.n_pad)
    np.multiply(g[:, None], l[None], out=P)
    np.subtract(s[None], P, out=P)  # score - gamma * latency; padding: -inf - gamma * 0
    n_msg = 1 + G * (m.levels[-1].wb + m.levels[-1].ww)
    M, A = _buf("ms.msg", n_msg, np.float64), _buf("ms.arg", n_msg, np.intp)
    M[0], A[0] = 0.0, 0
    for kids, first, cols, at, shape in lv_idx:
        b = P[:, cols]  # (G, cliques * n_sep * rest)
        for k in kids:  # the children in order, as `_upward`
            np.add(b, M.take(k), out=b)
        arg = b.reshape(shape).argmax(axis=2, out=A[at].reshape(first.shape))
        P.take(arg + first, out=M[at].reshape(first.shape))  # the max: the belief at the argmax
    return _decode_flat(m, A, h_arg, h_at, g_arg)


def _decode_flat(m: _MaxSum, A: np.ndarray, h_arg: np.ndarray, h_at: np.ndarray, g_arg: np.ndarray) -> np.ndarray:
    """Argmaxes -> (G, groups) choice indices. Each clique's separator state is a function of its
    parent's; composing these functions by pointer doubling (log2(depth) steps) gives every
    clique's separator state from the root's at once, instead of one clique at a time."""
    H = m.proj.take(A.take(h_arg) + m.h_base)  # (G, cliques * ns) c's separator state per parent's
    for anc in m.anc:  # H(c, s) <- H(c, H(ancestor, s)): from the 2^(k+1)-th ancestor's separator state
        H = H.take(H.take(anc, axis=1) + h_at)
    sep = H.take(m.g_sep, axis=1)  # (G, groups) the separator state of each group's decoding clique
    return m.grid.take(sep * m.g_rest + A.take(sep + g_arg) + m.g_grid)


# ---- max-sum, budget checks, the Lagrangian -----------------------------------------------------
def _wide(mrf: GraphMRF):
    """mrf/wide.py when exact dynamic programming would not fit (a DenseNet's concatenations), else None."""
    from . import wide

    return wide if wide.too_wide(mrf) else None


def viterbi(mrf: GraphMRF, gamma: float = 0.0) -> Solution:
    """argmax of score - gamma * latency."""
    if w := _wide(mrf):
        lo = w.fastest(mrf).idx
        return w._solution(mrf, w.coordinate_ascent(mrf, 1.0, gamma, lo)[0], "viterbi", gamma=gamma)
    return _solution(mrf, _max_sum(mrf, np.array([gamma]))[0], "viterbi", gamma=gamma)


def _min_latency(mrf: GraphMRF, sign: float = -1.0) -> np.ndarray:
    p = plan(mrf)
    S, L = _tables(mrf, p)
    _, _, arg = _upward(p, [(sign * l + 1e-9 * s)[None] for s, l in zip(S, L)], "max")
    return _decode_max(p, arg, mrf.n)[0]


def fastest(mrf: GraphMRF) -> Solution:
    """The minimum-latency configuration (ties broken by score)."""
    if w := _wide(mrf):
        return w.fastest(mrf)
    return _solution(mrf, _min_latency(mrf), "fastest")


def slowest_latency(mrf: GraphMRF) -> float:
    if w := _wide(mrf):
        return w.slowest_latency(mrf)
    return mrf.latency(_min_latency(mrf, 1.0))


def check_budget(mrf: GraphMRF, budget: float) -> Solution:
    """The fastest configuration, after refusing a budget below it."""
    return refuse_below(fastest(mrf), budget)


def lagrangian(mrf: GraphMRF, budget: float, rounds: int = 2, width: int = 12) -> Solution:
    """The paper's method: maximise score - gamma * latency, with gamma searched so that the answer
    meets the budget. Reaches only convex-hull points."""
    if w := _wide(mrf):
        return w.lagrangian(mrf, budget, rounds, width, with_greedy=False)
    idx, gamma, passes = search_gamma(mrf, lambda gs: _max_sum(mrf, gs), budget, rounds, width)
    if idx is None:  # even the largest multiplier is over budget
        idx = check_budget(mrf, budget).idx  # raises when the budget is infeasible
    return _solution(mrf, idx, "lagrangian", budget, gamma=gamma, passes=passes)


# ---- marginals and joint samples for narrowing ----------------------------------------------
def _sum_product_up(mrf: GraphMRF, gamma: float, temperature: float):
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    p = plan(mrf)
    S, L = _tables(mrf, p)
    up, msg, _ = _upward(p, [((s - gamma * l) / temperature)[None] for s, l in zip(S, L)], "lse")
    return p, up, msg


def marginals(mrf: GraphMRF, gamma: float, temperature: float) -> list[np.ndarray]:
    """Per-group marginals of p(x) ∝ exp((score - gamma * latency) / T), exactly (log space)."""
    if w := _wide(mrf):
        return w.marginals(mrf, gamma, temperature)
    p, up, msg = _sum_product_up(mrf, gamma, temperature)
    full, _ = _downward(p, up, msg, "lse")
    out = []
    for g, (c, perm) in enumerate(p.home):
        lm = _lse(full[c][0, perm].reshape(len(mrf.choices[g]), -1), 1)
        w = np.exp(lm - lm.max())
        out.append(w / w.sum())
    return out


def sample_configs(mrf: GraphMRF, gamma: float, temperature: float, n: int,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """(n, groups) choice indices drawn jointly and exactly from the same distribution: upward
    sum-product, then each clique's rest sampled given its separator (root down)."""
    rng = rng or np.random.default_rng()
    if w := _wide(mrf):  # Gibbs sampling, approximate
        return w.sample_configs(mrf, gamma, temperature, n, rng)
    p, up, _ = _sum_product_up(mrf, gamma, temperature)
    x = np.zeros((n, mrf.n), int)
    for c in reversed(p.post[:-1]):
        q = p.cliques[c]
        ns, R = len(q.sep_stride), q.size // q.n_sep
        s = x[:, list(q.vars[:ns])] @ q.sep_stride if ns else np.zeros(n, int)
        b = up[c][0].reshape(q.n_sep, R)
        cdf = np.cumsum(np.exp(b - b.max(axis=1, keepdims=True)), axis=1)
        cdf = cdf / cdf[:, -1:] + np.arange(q.n_sep)[:, None]  # row r spans (r, r + 1]
        pos = np.searchsorted(cdf.ravel(), s + rng.random(n), side="right") - s * R
        state = s * R + np.clip(pos, 0, R - 1)
        x[:, list(q.vars)] = q.grid[:, state].T
    return x


# ---- the exact Pareto front and budgeted optimum ---------------------------------------------
class TooManyLabels(RuntimeError):
    """The exact Pareto dynamic program outgrew its label limit."""


_WORK = threading.local()  # per thread: name -> scratch array
_MAX_BUF = 1 << 20  # elements (8 MB of float64) per scratch array; larger ones are not kept


def _buf(name: str, n: int, dtype) -> np.ndarray:
    """(n,) scratch array `name`, reused from call to call, contents undefined. Fresh arrays of a
    few MB cost more in page faults than the arithmetic on them (~40 % of the Pareto DP)."""
    pool = _WORK.__dict__.setdefault("pool", {})
    key = (name, np.dtype(dtype).char)  # one array per name and dtype
    a = pool.get(key)
    if a is None or len(a) < n:
        if n > _MAX_BUF:
            return np.empty(n, dtype)
        a = pool[key] = np.empty(min(max(n, 0 if a is None else 2 * len(a)), _MAX_BUF), dtype)
    return a[:n]


def _prune(group: np.ndarray, lat: np.ndarray, sc: np.ndarray, delta: float | None) -> np.ndarray:
    """Indices of the labels no other label of the same group beats in both latency and score,
    sorted by group then latency. With delta, latencies are compared in ceil(lat / delta) bins.
    Scores closer than ~1e-13 of the score range count as equal."""
    if len(lat) == 0:
        return np.arange(0)
    key_lat = lat if delta is None else np.ceil(lat / delta)
    n = len(lat)
    o1 = np.argsort(key_lat)  # ties in latency are settled below, so no need for a stable sort here
    g1 = np.take(group, o1, out=_buf("p.g1", n, group.dtype))
    o2 = np.argsort(g1, kind="stable")  # a radix sort when group is int16
    o = np.take(o1, o2, out=_buf("p.o", n, o1.dtype))
    g = np.take(g1, o2, out=_buf("p.g", n, group.dtype))
    s = np.take(sc, o, out=_buf("p.s", n, sc.dtype))
    # one running max across groups: each group's keys lie above the last's
    key = np.multiply(g, float(np.ptp(s)) + 1.0, out=_buf("p.key", n, np.float64))
    key += s
    rise = _buf("p.rise", n, bool)  # above every key before it
    rise[0] = True
    np.greater(key[1:], np.maximum.accumulate(key, out=_buf("p.acc", n, np.float64))[:-1], out=rise[1:])
    keep = np.flatnonzero(rise)
    gk, kl = g[keep], key_lat[o[keep]]
    last = np.ones(len(keep), bool)  # equal latency: keep the better
    last[:-1] = (gk[:-1] != gk[1:]) | (kl[:-1] != kl[1:])
    return o[keep[last]]


@dataclass
class _Labels:
    lat: np.ndarray  # (labels,) ms of the subtree below (and including) the clique
    sc: np.ndarray  # (labels,) score of the same
    assign: np.ndarray  # (labels,) the clique's state
    ptrs: list[np.ndarray]  # per child, (labels,) the child's label
    start: np.ndarray  # (n_sep + 1,) labels of separator state s are start[s]:start[s+1]


@dataclass
class _Bound:
    """What the rest of the graph can add to a label, for pruning against a budget.

    For a label of clique c with clique state a, "the rest" is everything outside c's subtree
    plus the children not merged yet. min_lat is the fastest rest (ms); lag is the best rest of
    score - gamma * latency. A label (latency l, score v) can complete to score at most
    v + lag + gamma * (budget - l) within the budget (Lagrangian relaxation, any gamma >= 0).
    """
    budget: float  # ms
    incumbent: float  # score of a known in-budget configuration
    gamma: float
    down_min: list  # per clique (n_sep,) or None (virtual root): the fastest outside, ms
    up_min: list  # per clique (n_sep,): the fastest subtree, ms
    down_lag: list
    up_lag: list

    def keep(self, p: Plan, c: int, assign: np.ndarray, pending: list[int], lat: np.ndarray,
             sc: np.ndarray) -> np.ndarray:
        q = p.cliques[c]
        sep = assign // (q.size // q.n_sep)
        out_min = self.down_min[c][sep] if self.down_min[c] is not None else 0.0
        out_lag = self.down_lag[c][sep] if self.down_lag[c] is not None else 0.0
        for t in pending:
            k, pr = q.children[t], q.proj[t][assign]
            out_min = out_min + self.up_min[k][pr]
            out_lag = out_lag + self.up_lag[k][pr]
        tol = 1e-9 * max(1.0, abs(self.budget), abs(self.incumbent))
        return (lat + out_min <= self.budget + tol) & \
            (sc + out_lag + self.gamma * (self.budget - lat) >= self.incumbent - tol)


def _bound(mrf: GraphMRF, p: Plan, budget: float, incumbent: float, gamma: float) -> _Bound:
    S, L = _tables(mrf, p)
    out = []  # down_min, up_min (max-sum of -latency, negated), down_lag, up_lag
    for sign, pots in ((-1.0, [-l[None] for l in L]), (1.0, [(s - gamma * l)[None] for s, l in zip(S, L)])):
        up, msg, _ = _upward(p, pots, "max")
        _, down = _downward(p, up, msg, "max")
        out += [[None if d is None else sign * d[0] for d in down], [sign * m[0] for m in msg]]
    return _Bound(budget, incumbent, gamma, *out)


@dataclass
class _Set:
    """Labels of a partial combination inside one clique (see `_Step`). Which child labels a
    label holds is kept as links to the two joined sets, resolved only for the labels that
    survive the clique (`_ptrs`): most labels a join makes are pruned at once."""
    lat: np.ndarray  # (labels,) ms
    sc: np.ndarray  # (labels,)
    assign: np.ndarray  # (labels,) clique state index; groups the set does not hold yet count as 0
    ptrs: list | None  # a leaf: per child position, (labels,) the child's label, or None if not held
    parts: tuple | None = None  # a join: (A, B, pairs), pairs(k) -> (labels of A, labels of B) of labels k

    def take(self, k: np.ndarray) -> "_Set":
        if self.parts is None:
            return _Set(self.lat[k], self.sc[k], self.assign[k], [None if r is None else r[k] for r in self.ptrs])
        A, B, pairs = self.parts
        ra, rb = pairs(k)
        return _Set(self.lat[k], self.sc[k], self.assign[k], None, (A, B, lambda j: (ra[j], rb[j])))


def _ptrs(s: _Set, k: np.ndarray) -> list:
    """Per child position, (len(k),) the child labels that labels k of s hold (None: none)."""
    if s.parts is None:
        return [None if r is None else r[k] for r in s.ptrs]
    A, B, pairs = s.parts
    ra, rb = pairs(k)
    return [x if x is not None else y for x, y in zip(_ptrs(A, ra), _ptrs(B, rb))]


def _starts(counts: np.ndarray) -> np.ndarray:
    """(n + 1,) CSR offsets of n runs of the given counts."""
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _join(step: _Step, A: _Set, B: _Set) -> _Set:
    """Every pair of labels of A and B that agree on the groups both hold. When one side has the
    same number m of labels for every shared state (a clique's table), the pairs are laid out as
    (labels of the other, m) and built by broadcasting: a third of the arrays, no index arrays."""
    ka, kb = step.key[A.assign], step.key[B.assign]
    cb = np.bincount(kb, minlength=step.n_key)
    if cb.min() != cb.max():
        ca = np.bincount(ka, minlength=step.n_key)
        if ca.min() == ca.max():
            A, B, ka, kb, cb = B, A, kb, ka, ca
    ob = np.argsort(kb, kind="stable")
    rest = B.assign - step.shared[B.assign]  # B's clique state index without the shared groups
    cols = (("j.lat", A.lat, B.lat), ("j.sc", A.sc, B.sc), ("j.assign", A.assign, rest))
    if cb.min() == cb.max():
        m = int(cb[0])
        per = ob.reshape(step.n_key, m)  # (shared states, m) B's labels of each shared state
        lat, sc, assign = (_outer(name, a, b[per], ka) for name, a, b in cols)
        return _Set(lat, sc, assign, None, (A, B, lambda k: (k // m, per[ka[k // m], k % m])))
    start = _starts(cb)
    cnt = start[ka + 1] - start[ka]
    tot = int(cnt.sum())
    ra = np.repeat(np.arange(len(ka)), cnt)
    rb = ob[np.repeat(start[ka] - (np.cumsum(cnt) - cnt), cnt) + np.arange(tot)]
    lat, sc, assign = (_pairsum(name, a, ra, b, rb) for name, a, b in cols)
    return _Set(lat, sc, assign, None, (A, B, lambda k: (ra[k], rb[k])))


def _outer(name: str, a: np.ndarray, b: np.ndarray, ka: np.ndarray) -> np.ndarray:
    """(len(a) * m,) a[i] + b[ka[i], j], in scratch array `name` (valid until the next join)."""
    n, m = len(a), b.shape[1]
    t = np.take(b, ka, axis=0, out=_buf("j.tmp", n * m, b.dtype).reshape(n, m))
    return np.add(a[:, None], t, out=_buf(name, n * m, b.dtype).reshape(n, m)).ravel()


def _pairsum(name: str, a: np.ndarray, ra: np.ndarray, b: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """(len(ra),) a[ra] + b[rb], in scratch array `name` (valid until the next join)."""
    out = np.take(a, ra, out=_buf(name, len(ra), a.dtype))
    out += np.take(b, rb, out=_buf("j.tmp", len(rb), b.dtype))
    return out


def _pareto_dp(mrf: GraphMRF, p: Plan, delta: float | None, max_labels: int,
               bound: _Bound | None = None) -> tuple[list[_Labels], int]:
    """Upward pass whose messages are Pareto sets per separator state, each clique run by its
    `_schedule`. With a bound, labels of sets holding the clique's terms that cannot fit the
    budget, or cannot beat the incumbent within it, are dropped as they appear."""
    S, L = _tables(mrf, p)
    labs: list = [None] * len(p.cliques)
    total = 0  # labels created
    for c in p.post:
        q = p.cliques[c]
        regs: dict[int, _Set] = {}
        nk = len(q.children)
        for step in q.steps:
            if step.op == "table":
                s = _Set(L[c], S[c], np.arange(q.size), [None] * nk)
                total += q.size
            elif step.op == "child":
                M = labs[q.children[step.a]]
                sep = np.repeat(np.arange(len(M.start) - 1), np.diff(M.start))
                ptrs = [None] * nk
                ptrs[step.a] = np.arange(len(M.lat))
                s = _Set(M.lat, M.sc, q.embed[step.a][sep], ptrs)
            elif step.op == "join":
                s = _join(step, regs.pop(step.a), regs.pop(step.b))
                total += len(s.lat)
                if total > max_labels:
                    raise TooManyLabels(f"more than {max_labels} labels")
            else:
                s = regs.pop(step.a)
            if step.group is not None or (bound is not None and step.table):
                s = _keep(p, c, step, s, delta, bound)
            regs[step.out] = s
        (s,) = regs.values()
        group = s.assign // (q.size // q.n_sep)  # by separator state (its groups come first)
        start = _starts(np.bincount(group, minlength=q.n_sep))
        labs[c] = _Labels(s.lat, s.sc, s.assign, _ptrs(s, np.arange(len(s.lat))), start)
    return labs, total


def _keep(p: Plan, c: int, step: _Step, s: _Set, delta: float | None, bound: _Bound | None) -> _Set:
    """The labels of s that no other of the same group beats (sorted by group, then latency),
    and, for a set holding the clique's terms, that the bound cannot rule out."""
    if step.group is None:
        keep = np.arange(len(s.lat))
    else:
        keep = _prune(np.take(step.group, s.assign, out=_buf("k.group", len(s.assign), step.group.dtype)),
                      s.lat, s.sc, delta)
    if bound is not None and step.table:
        keep = keep[bound.keep(p, c, s.assign[keep], list(step.pending), s.lat[keep], s.sc[keep])]
    return s.take(keep)


def _decode_labels(p: Plan, labs: list[_Labels], labels: np.ndarray, n: int) -> np.ndarray:
    """(P,) labels of the virtual root -> (P, groups) choice indices."""
    x = np.zeros((len(labels), n), int)
    stack = [(p.root, np.asarray(labels, int))]
    while stack:
        c, lab = stack.pop()
        q, M = p.cliques[c], labs[c]
        if q.vars:
            x[:, list(q.vars)] = q.grid[:, M.assign[lab]].T
        stack.extend((k, M.ptrs[t][lab]) for t, k in enumerate(q.children))
    return x


def _run_dp(mrf: GraphMRF, bins: int | None, max_labels: int, bound: _Bound | None = None,
            fallback_bins: int = 1024):
    """(configurations (P, groups) at the root, by increasing latency and non-dominated, their
    latency and score recomputed by mrf.evaluate, labels created, exact?). Over max_labels, the DP
    is rerun with latencies compared in `fallback_bins` bins of the latency span (not exact)."""
    p = plan(mrf)
    span = lambda: max(slowest_latency(mrf) - fastest(mrf).latency, 1e-12)  # noqa: E731 (ms)
    delta, exact_ = (None, True) if bins is None else (span() / bins, False)
    try:
        labs, total = _pareto_dp(mrf, p, delta, max_labels, bound)
    except TooManyLabels:
        delta, exact_ = span() / fallback_bins, False
        labs, total = _pareto_dp(mrf, p, delta, np.iinfo(np.int64).max, bound)
    idx = _decode_labels(p, labs, np.arange(len(labs[p.root].lat)), mrf.n)
    lat, sc = mrf.evaluate(idx)
    keep = nondominated(lat, sc)  # the DP's float sums may differ from evaluate's in the last bits: re-filter
    return idx[keep], lat[keep], sc[keep], total, exact_


def pareto_front(mrf: GraphMRF, bins: int | None = None, max_labels: int = 5_000_000,
                 fallback_bins: int = 1024) -> list[Solution]:
    """Every configuration on the score/latency Pareto front, by increasing latency.

    Exact by default: partial configurations are compared on their true latencies. `bins` (or
    `fallback_bins` after more than `max_labels` labels) compares latencies in bins of (latency
    span / bins) instead: fewer labels, every returned point still a real configuration with its
    exact latency, but the front may miss points closer than about a bin.
    """
    if w := _wide(mrf):  # an approximate front (each point's info says so)
        return w.pareto_front(mrf)
    return _points(mrf, *_run_dp(mrf, bins, max_labels, None, fallback_bins)[:3])


def exact(mrf: GraphMRF, budget: float, with_front: bool = True, bins: int | None = None,
          max_labels: int = 5_000_000, fallback_bins: int = 1024) -> Solution:
    """The highest-score configuration with predicted latency <= budget, and the Pareto front.

    Guarantee: the answer's latency, recomputed by mrf.evaluate, is <= budget (every candidate is
    checked that way). It is the exact optimum (info['certified']) unless latency bins were used:
    read from the exact front when that was affordable, else from a DP that keeps only labels
    able to fit the budget and beat the Lagrangian's answer (bounded by Lagrangian relaxation).
    info['front_exact'] says whether the front is exact or binned.
    """
    if w := _wide(mrf):  # the Lagrangian by coordinate ascent; its info says so
        sol = w.lagrangian(mrf, budget)
        sol.info["proof"] = "none: fell back to the Lagrangian"
        if with_front:
            sol.pareto = [sol]
        return sol
    check_budget(mrf, budget)
    certified, front_exact, labels, how, cands = False, None, 0, "front", []
    if with_front:
        idx, lat, sc, labels, front_exact = _run_dp(mrf, bins, max_labels, None, fallback_bins)
        certified, cands = front_exact, [(idx, lat, sc)]
    if not certified:  # the budgeted DP, bounded by the Lagrangian's answer
        lag = lagrangian(mrf, budget)
        gamma = lag.info["gamma"] if np.isfinite(lag.info["gamma"]) else 0.0
        b = _bound(mrf, plan(mrf), budget, lag.score, gamma)
        i2, l2, s2, n2, certified = _run_dp(mrf, bins, max_labels, b, fallback_bins)
        cands += [(i2, l2, s2), (np.array([lag.idx]), np.array([lag.latency]), np.array([lag.score]))]
        labels, how = labels + n2, "budgeted-dp"
    c_idx, c_lat, c_sc = (np.concatenate(x) for x in zip(*cands))
    ok = np.flatnonzero(c_lat <= budget)
    sol = _solution(mrf, c_idx[ok[np.argmax(c_sc[ok])]], "exact", budget, certified=certified, proof=how, labels=labels,
                    front_exact=front_exact, treewidth=plan(mrf).tree.width)
    if with_front:
        sol.pareto = _points(mrf, idx, lat, sc)
    return sol


def _points(mrf: GraphMRF, idx: np.ndarray, lat: np.ndarray, sc: np.ndarray) -> list[Solution]:
    """Front points as Solutions, from the batch-recomputed latencies and scores (the same floats
    mrf.latency and mrf.score give, without evaluating each point again)."""
    idx = np.asarray(idx, int).reshape(-1, mrf.n)
    widths = np.stack([np.asarray(c)[idx[:, g]] for g, c in enumerate(mrf.choices)], axis=1).tolist()
    return [Solution(w, i, s, l, "pareto") for w, i, l, s in zip(widths, idx.tolist(), lat.tolist(), sc.tolist())]
