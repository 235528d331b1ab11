"""The width MRF and its solvers: pure numpy/scipy (pgmpy as reference, benchmarks/pgmpy_ref.py), no torch."""
from .baselines import greedy, uniform
from .build import build_mrf
from .model import GraphMRF, PairFactor
from .solvers import exact, fastest, lagrangian, marginals, pareto_front, sample_configs, viterbi
from .solution import InfeasibleBudget, Solution
from .unaries import Unaries

__all__ = ["GraphMRF", "PairFactor", "InfeasibleBudget", "Unaries", "Solution", "viterbi", "lagrangian", "exact",
           "pareto_front", "marginals", "sample_configs", "fastest", "uniform", "greedy", "solve", "parse_budget",
           "with_margin", "build_mrf"]

SOLVERS = {"exact": exact, "lagrangian": lagrangian, "greedy": greedy, "uniform": uniform}
METHODS = tuple(SOLVERS)


def budget_is_share(text: str | float) -> bool:
    """'60%' (a share of the widest network, which reads the same on any machine) rather than ms."""
    return str(text).strip().endswith("%")


def parse_budget(text: str | float, widest_ms: float) -> float:
    """'0.8ms', '0.8' (ms) or '60%' of the widest network's predicted latency -> ms (positive)."""
    t = str(text).strip().lower()
    try:
        ms = float(t[:-1]) / 100.0 * widest_ms if budget_is_share(t) else float(t[:-2] if t.endswith("ms") else t)
    except ValueError:
        raise ValueError(f"budget {text!r}: give milliseconds ('0.8ms') or a share of the widest network ('60%')")
    if not 0 < ms < float("inf"):
        raise ValueError(f"budget {text!r} is not a positive latency; give milliseconds ('0.8ms') or a share "
                         "of the widest network ('60%')")
    return ms


def with_margin(budget_ms: float, margin_pct: float) -> float:
    """The latency the solver aims at: `margin_pct` % under the budget, so that a network predicted
    just under it still measures under it (held-out prediction errors are ~1 %, see the profile's fit)."""
    if not 0 <= margin_pct < 100:
        raise ValueError(f"margin {margin_pct!r} %: give a percentage in [0, 100), e.g. 1 for 1 % under the budget")
    return budget_ms * (1 - margin_pct / 100)


def solve(mrf: GraphMRF, budget: float, method: str = "exact", **kw) -> Solution:
    """One entry point for every method, same inputs, same output."""
    if method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return SOLVERS[method](mrf, budget, **kw)
