"""Exact solvers on a GraphMRF by dynamic programming over its junction tree.

Every solver runs the same two passes over the tree's cliques (leaves up, then root down); they
differ only in what a message holds:
  max-sum       (G, separator states)  best score - gamma * latency, G multipliers at once
  sum-product   (1, separator states)  log-sum-exp of (score - gamma * latency) / T
  Pareto        per separator state, every (latency, score) pair no other partial
                configuration beats in both: exact, no latency rounding; for one budget, labels
                that cannot fit it or beat the Lagrangian's answer are dropped (a certified bound)
A virtual root with no groups joins the trees of a disconnected graph and carries the intercept.
Results are `Solution`s, as from the chain solvers; a chain given as a graph gives the same answers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .chain import _lse
from .graph_model import GraphMRF
from .junction_tree import JunctionTree, junction_tree
from .solvers import Solution, refuse_below, search_gamma


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
    # the Pareto DP's schedule: merge the children in `merge_order`; before the first merge
    # (`pre`) and after each but the last (`mid`), labels compete within groups of the
    # (size,) map given: the state of the groups still needed (parent separator + children to come)
    pre: np.ndarray | None
    merge_order: list[int]
    mid: list[np.ndarray]

    @property
    def size(self) -> int:
        return int(self.grid.shape[1])


@dataclass
class Plan:
    tree: JunctionTree
    cliques: list[_Clique]  # the junction tree's cliques, then the virtual root (no groups)
    post: list[int]  # children before parents; the virtual root last
    home: list[tuple[int, np.ndarray]]  # per group: (a clique holding it, its states sorted by the group's choice)

    @property
    def root(self) -> int:
        return len(self.cliques) - 1


_PLANS: dict = {}


def plan(mrf: GraphMRF, heuristic: str = "min-fill") -> Plan:
    """The junction tree and index maps for this graph's structure (cached by structure, so
    changing a table's values never serves a stale plan)."""
    ks = tuple(len(c) for c in mrf.choices)
    key = (ks, tuple(mrf.edges), heuristic)
    if key not in _PLANS:
        if len(_PLANS) > 64:
            _PLANS.clear()
        _PLANS[key] = _build_plan(ks, mrf.edges, heuristic)
    return _PLANS[key]


def _build_plan(ks: tuple[int, ...], edges: list[tuple[int, int]], heuristic: str) -> Plan:
    jt = junction_tree(len(ks), edges, ks, heuristic)
    m = len(jt.cliques)
    vars_ = []
    for c in range(m):
        sep = jt.separator(c)
        vars_.append(sep + tuple(sorted(set(jt.cliques[c]) - set(sep))))
    vars_.append(())  # the virtual root
    nsep = [int(np.prod([ks[v] for v in jt.separator(c)], dtype=np.int64)) for c in range(m)] + [1]
    kids = [jt.children(c) for c in range(m)] + [jt.roots]
    post = jt.postorder() + [m]
    seen_u, seen_p, cliques = set(), set(), []
    for c in post:  # a term goes to the first clique (leaves first) that holds its groups
        shape = tuple(ks[v] for v in vars_[c])
        grid = np.indices(shape).reshape(len(shape), -1) if shape else np.zeros((0, 1), int)
        proj, perm = [], []
        for k in kids[c]:
            sep = vars_[k][:len(jt.separator(k))]
            rows = [vars_[c].index(v) for v in sep]
            pr = (np.ravel_multi_index(tuple(grid[rows]), tuple(ks[v] for v in sep)) if sep
                  else np.zeros(grid.shape[1], int))
            proj.append(pr)
            perm.append(np.argsort(pr, kind="stable"))
        ns = len(jt.separator(c)) if c < m else 0
        stride = np.cumprod([1] + [ks[v] for v in vars_[c][:ns]][::-1])[:-1][::-1].astype(np.int64)
        unary = [v for v in vars_[c] if v not in seen_u]
        pairs = [e for e in edges if e not in seen_p and e[0] in vars_[c] and e[1] in vars_[c]]
        seen_u.update(unary)
        seen_p.update(pairs)
        seps = [set(vars_[k][:len(jt.separator(k))]) for k in kids[c]]
        sched = _schedule(vars_[c], shape, grid, set(vars_[c][:ns]), seps)
        cliques.append((c, _Clique(vars_[c], shape, nsep[c], kids[c], proj, perm, grid, stride, unary, pairs,
                                   *sched)))
    cliques = [q for _, q in sorted(cliques, key=lambda t: t[0])]
    home = []
    for g in range(len(ks)):
        c = min((c for c in range(m) if g in vars_[c]), key=lambda c: cliques[c].size)
        home.append((c, np.argsort(cliques[c].grid[vars_[c].index(g)], kind="stable")))
    return Plan(jt, cliques, post, home)


def _schedule(vars_: tuple[int, ...], shape: tuple[int, ...], grid: np.ndarray, parent_sep: set,
              seps: list[set]) -> tuple[np.ndarray | None, list[int], list[np.ndarray]]:
    """The order in which the Pareto DP merges a clique's children, and how labels may be grouped
    between merges. A group no later step needs is projected out as soon as possible: in a
    bottleneck clique (S, a, b) whose children hang on S, the 14^3 states shrink to the 14 of S
    before the children's fronts are added, instead of multiplying them."""
    def needed(rest: list[int]) -> set:
        return parent_sep.union(*[seps[k] for k in rest])

    def group_map(keep: set) -> np.ndarray:
        rows = [r for r, v in enumerate(vars_) if v in keep]
        if not rows:
            return np.zeros(grid.shape[1], np.int64)
        return np.ravel_multi_index(tuple(grid[rows]), tuple(shape[r] for r in rows)).astype(np.int64)

    rest = list(range(len(seps)))
    pre = group_map(needed(rest)) if rest and needed(rest) != set(vars_) else None
    order, mid = [], []
    while rest:  # greedily, the child whose merge leaves the fewest states to tell apart
        k = min(rest, key=lambda k: (math.prod(shape[r] for r, v in enumerate(vars_)
                                               if v in needed([j for j in rest if j != k])), k))
        rest.remove(k)
        order.append(k)
        if rest:
            mid.append(group_map(needed(rest)))
    return pre, order, mid


def _solution(mrf: GraphMRF, idx, method: str, budget: float | None = None, **info) -> Solution:
    idx = [int(k) for k in idx]
    lat, sc = mrf.evaluate([idx])
    return Solution(mrf.widths(idx), idx, float(sc[0]), float(lat[0]), method, budget, info)


def _tables(mrf: GraphMRF, p: Plan) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per clique, (size,) score and (size,) latency (ms) of the terms it carries (cached on mrf)."""
    key = ("tables", id(p))
    if mrf.cache.get(key, (None,))[0] is not p:
        mrf.cache[key] = (p, _build_tables(mrf, p))
    return mrf.cache[key][1]


def _build_tables(mrf: GraphMRF, p: Plan) -> tuple[list[np.ndarray], list[np.ndarray]]:
    S, L = [], []
    for q in p.cliques:
        s, l = np.zeros(q.shape), np.zeros(q.shape)
        for g in q.unary:
            b = [1] * len(q.shape)
            b[q.vars.index(g)] = q.shape[q.vars.index(g)]
            s = s + mrf.score_unary[g].reshape(b)
            l = l + mrf.lat_unary[g].reshape(b)
        for i, j in q.pairs:
            lat, sc = mrf.pairs[(i, j)]
            a, c = q.vars.index(i), q.vars.index(j)
            if a > c:
                lat, sc, a, c = lat.T, sc.T, c, a
            b = [1] * len(q.shape)
            b[a], b[c] = lat.shape
            s = s + sc.reshape(b)
            l = l + lat.reshape(b)
        S.append(np.ravel(s))
        L.append(np.ravel(l))
    L[-1] = L[-1] + mrf.intercept  # the virtual root carries the intercept
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
            b = b + msg[k][:, pr]
        up[c] = b
        b3 = b.reshape(len(b), q.n_sep, -1)
        if how == "max":
            arg[c] = b3.argmax(axis=2)
            msg[c] = b3.max(axis=2)
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
    """(G, groups) argmax choice indices, root down."""
    G = len(arg[p.root])
    x = np.zeros((G, n), int)
    rows = np.arange(G)
    for c in reversed(p.post[:-1]):
        q = p.cliques[c]
        ns = len(q.sep_stride)
        s = x[:, list(q.vars[:ns])] @ q.sep_stride if ns else np.zeros(G, int)
        state = s * (q.size // q.n_sep) + arg[c][rows, s]
        x[:, list(q.vars)] = q.grid[:, state].T
    return x


def _max_sum(mrf: GraphMRF, gammas: np.ndarray) -> np.ndarray:
    """(G,) multipliers -> (G, groups) argmax of score - gamma * latency."""
    p = plan(mrf)
    S, L = _tables(mrf, p)
    g = np.asarray(gammas, float)[:, None]
    _, _, arg = _upward(p, [s[None] - g * l[None] for s, l in zip(S, L)], "max")
    return _decode_max(p, arg, mrf.n)


# ---- max-sum, budget checks, the Lagrangian -----------------------------------------------------
def viterbi(mrf: GraphMRF, gamma: float = 0.0) -> Solution:
    """argmax of score - gamma * latency."""
    return _solution(mrf, _max_sum(mrf, np.array([gamma]))[0], "viterbi", gamma=gamma)


def _min_latency(mrf: GraphMRF, sign: float = -1.0) -> np.ndarray:
    p = plan(mrf)
    S, L = _tables(mrf, p)
    _, _, arg = _upward(p, [(sign * l + 1e-9 * s)[None] for s, l in zip(S, L)], "max")
    return _decode_max(p, arg, mrf.n)[0]


def fastest(mrf: GraphMRF) -> Solution:
    """The minimum-latency configuration (ties broken by score)."""
    return _solution(mrf, _min_latency(mrf), "fastest")


def slowest_latency(mrf: GraphMRF) -> float:
    return mrf.latency(_min_latency(mrf, 1.0))


def check_budget(mrf: GraphMRF, budget: float) -> Solution:
    """The fastest configuration, after refusing a budget below it."""
    return refuse_below(fastest(mrf), budget, "graph")


def lagrangian(mrf: GraphMRF, budget: float, rounds: int = 2, width: int = 12) -> Solution:
    """The paper's method on the graph: maximise score - gamma * latency, gamma searched (as the
    chain's `lagrangian`) so the answer meets the budget. Reaches only convex-hull points."""
    p = plan(mrf)
    S, L = _tables(mrf, p)
    if "ranges" not in mrf.cache:  # (score, latency ms) spread of all terms: scales the multipliers
        spread = lambda arrs: sum(float(a.max() - a.min()) for a in arrs)  # noqa: E731
        mrf.cache["ranges"] = (spread(mrf.score_unary) + spread(s for _, s in mrf.pairs.values()),
                               spread(mrf.lat_unary) + spread(l for l, _ in mrf.pairs.values()))
    srange, lrange = mrf.cache["ranges"]

    def batch(gs: np.ndarray):
        _, _, arg = _upward(p, [s[None] - gs[:, None] * l[None] for s, l in zip(S, L)], "max")
        idx = _decode_max(p, arg, mrf.n)
        lat, sc = mrf.evaluate(idx)
        return idx, lat, sc

    idx, gamma, passes = search_gamma(batch, budget, srange + 1e-12, lrange + 1e-12, rounds, width)
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
    p, up, msg = _sum_product_up(mrf, gamma, temperature)
    full, _ = _downward(p, up, msg, "lse")
    out = []
    for g, (c, perm) in enumerate(p.home):
        lm = _lse(full[c][0, perm].reshape(len(mrf.choices[g]), -1), 1)
        w = np.exp(lm - lm.max())
        out.append(w / w.sum())
    return out


def log_partition(mrf: GraphMRF, gamma: float, temperature: float) -> float:
    """log sum_x exp((score - gamma * latency) / T)."""
    _, up, _ = _sum_product_up(mrf, gamma, temperature)
    return float(up[-1][0, 0])


def sample_configs(mrf: GraphMRF, gamma: float, temperature: float, n: int,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """(n, groups) choice indices drawn jointly and exactly from the same distribution: upward
    sum-product, then each clique's rest sampled given its separator (root down)."""
    rng = rng or np.random.default_rng()
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


def _prune(group: np.ndarray, lat: np.ndarray, sc: np.ndarray, delta: float | None) -> np.ndarray:
    """Indices of the labels no other label of the same group beats in both latency and score,
    sorted by group then latency. With delta, latencies are compared in ceil(lat / delta) bins.
    Scores closer than ~1e-13 of the score range count as equal."""
    if len(lat) == 0:
        return np.arange(0)
    key_lat = lat if delta is None else np.ceil(lat / delta)
    o = np.argsort(key_lat)  # ties in latency are settled below, so no need for a stable sort here
    o = o[np.argsort(group[o], kind="stable")]
    g, s, kl = group[o], sc[o], key_lat[o]
    key = s + g * (float(np.ptp(s)) + 1.0)  # one running max across groups: each group's keys lie above the last's
    keep = np.flatnonzero(key > np.r_[-np.inf, np.maximum.accumulate(key)[:-1]])
    same = (g[keep][:-1] == g[keep][1:]) & (kl[keep][:-1] == kl[keep][1:])  # equal latency: keep the better
    return o[keep[np.r_[~same, True]]]


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
    out = []
    for pots in ([-l[None] for l in L], [(s - gamma * l)[None] for s, l in zip(S, L)]):
        up, msg, _ = _upward(p, pots, "max")
        _, down = _downward(p, up, msg, "max")
        out.append(([None if d is None else d[0] for d in down], [m[0] for m in msg]))
    (dmin, umin), (dlag, ulag) = out
    return _Bound(budget, incumbent, gamma, [None if d is None else -d for d in dmin], [-u for u in umin],
                  dlag, ulag)


def _pareto_dp(mrf: GraphMRF, p: Plan, delta: float | None, max_labels: int,
               bound: _Bound | None = None) -> tuple[list[_Labels], int]:
    """Upward pass whose messages are Pareto sets per separator state. With a bound, labels that
    cannot fit the budget, or cannot beat the incumbent within it, are dropped as they appear."""
    S, L = _tables(mrf, p)
    labs: list = [None] * len(p.cliques)
    total = 0  # labels created
    for c in p.post:
        q = p.cliques[c]
        lat, sc, assign, ptrs = L[c], S[c], np.arange(q.size), [None] * len(q.children)
        total += q.size
        pending = list(q.merge_order)

        def prune(group):
            nonlocal lat, sc, assign, ptrs
            keep = _prune(group, lat, sc, delta)
            if bound is not None:
                keep = keep[bound.keep(p, c, assign[keep], pending, lat[keep], sc[keep])]
            lat, sc, assign = lat[keep], sc[keep], assign[keep]
            ptrs = [None if r is None else r[keep] for r in ptrs]
            return group[keep]

        if q.pre is not None or bound is not None:
            prune(q.pre[assign] if q.pre is not None else assign)
        for step, t in enumerate(q.merge_order):
            M, srow = labs[q.children[t]], q.proj[t][assign]
            cnt = M.start[srow + 1] - M.start[srow]
            tot = int(cnt.sum())
            total += tot
            if total > max_labels:
                raise TooManyLabels(f"more than {max_labels} labels")
            rep = np.repeat(np.arange(len(lat)), cnt)
            ci = np.repeat(M.start[srow] - (np.cumsum(cnt) - cnt), cnt) + np.arange(tot)
            lat, sc, assign = lat[rep] + M.lat[ci], sc[rep] + M.sc[ci], assign[rep]
            ptrs = [None if r is None else r[rep] for r in ptrs]
            ptrs[t] = ci
            pending.remove(t)
            if step < len(q.mid):
                prune(q.mid[step][assign])
        group = prune(assign // (q.size // q.n_sep))  # by separator state (its groups come first)
        start = np.r_[0, np.cumsum(np.bincount(group, minlength=q.n_sep))]
        labs[c] = _Labels(lat, sc, assign, ptrs, start)
    return labs, total


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
    delta, exact_ = None, bins is None
    if bins is not None:
        delta = max(slowest_latency(mrf) - fastest(mrf).latency, 1e-12) / bins
    try:
        labs, total = _pareto_dp(mrf, p, delta, max_labels, bound)
    except TooManyLabels:
        delta, exact_ = max(slowest_latency(mrf) - fastest(mrf).latency, 1e-12) / fallback_bins, False
        labs, total = _pareto_dp(mrf, p, delta, np.iinfo(np.int64).max, bound)
    idx = _decode_labels(p, labs, np.arange(len(labs[p.root].lat)), mrf.n)
    lat, sc = mrf.evaluate(idx)
    order = np.lexsort((-sc, lat))
    keep, best = [], -np.inf
    for k in order:  # the DP's float sums may differ from evaluate's in the last bits: re-filter
        if sc[k] > best + 1e-12:
            keep.append(k)
            best = sc[k]
    keep = np.array(keep, int)
    return idx[keep], lat[keep], sc[keep], total, exact_


def pareto_front(mrf: GraphMRF, bins: int | None = None, max_labels: int = 5_000_000,
                 fallback_bins: int = 1024) -> list[Solution]:
    """Every configuration on the score/latency Pareto front, by increasing latency.

    Exact by default: partial configurations are compared on their true latencies. `bins` (or
    `fallback_bins` after more than `max_labels` labels) compares latencies in bins of (latency
    span / bins) instead: fewer labels, every returned point still a real configuration with its
    exact latency, but the front may miss points closer than about a bin. (A ResNet-50-like graph
    with 14 widths per group outgrows 5M labels; 1024 bins then cost ~2 s of CPU.)
    """
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
    check_budget(mrf, budget)
    idx = lat = sc = None
    certified, front_exact, labels, how = False, None, 0, "front"
    if with_front:
        idx, lat, sc, labels, front_exact = _run_dp(mrf, bins, max_labels, None, fallback_bins)
        certified = front_exact
    cands = [] if idx is None else [(idx, lat, sc)]
    if not certified:  # the budgeted DP, bounded by the Lagrangian's answer
        lag = lagrangian(mrf, budget)
        gamma = lag.info["gamma"] if np.isfinite(lag.info["gamma"]) else 0.0
        b = _bound(mrf, plan(mrf), budget, lag.score, gamma)
        i2, l2, s2, n2, certified = _run_dp(mrf, bins, max_labels, b, fallback_bins)
        cands.append((i2, l2, s2))
        cands.append((np.array([lag.idx]), np.array([lag.latency]), np.array([lag.score])))
        labels, how = labels + n2, "budgeted-dp"
    best, best_sc = None, -np.inf
    for i, l, s in cands:
        ok = np.flatnonzero(l <= budget)
        if len(ok) and s[ok].max() > best_sc:
            best, best_sc = i[ok[np.argmax(s[ok])]], s[ok].max()
    sol = _solution(mrf, best, "exact", budget, certified=certified, proof=how, labels=labels,
                    front_exact=front_exact, treewidth=plan(mrf).tree.width)
    if with_front:
        sol.pareto = _points(mrf, idx, lat, sc)
    return sol


def _points(mrf: GraphMRF, idx: np.ndarray, lat: np.ndarray, sc: np.ndarray) -> list[Solution]:
    """Front points as Solutions, from the batch-recomputed latencies and scores (the same floats
    mrf.latency and mrf.score give, without evaluating each point again)."""
    return [Solution(mrf.widths(i), [int(k) for k in i], float(s), float(l), "pareto")
            for i, l, s in zip(idx, lat, sc)]
