"""--margin: 'auto' from the profile's held-out error, a number, or a clear refusal."""
import math

import numpy as np

import pytest

from widthnas.latency.margin import FALLBACK_PCT, MAX_AUTO_PCT, auto_margin_pct, parse_margin, resolve_margin
from widthnas.latency.registry import load_profile


@pytest.mark.parametrize("text,want", [("auto", "auto"), ("AUTO ", "auto"), ("0", 0.0), ("2.5", 2.5), (3, 3.0)])
def test_parse_margin_accepts(text, want):
    assert parse_margin(text) == want


@pytest.mark.parametrize("text", ["-1", "100", "nan", "inf", "two", "", None])
def test_parse_margin_refuses_with_what_to_do(text):
    with pytest.raises(ValueError, match=r"'auto' or a percentage in \[0, 100\)"):
        parse_margin(text)


class _Table:
    def __init__(self, validation):
        self.validation = validation


def test_auto_margin_follows_the_shipped_profiles_validation():
    for name in ("amd-epyc-2c_ort-cpu-1t-b1_mobilenet_v1_small", "amd-epyc-2c_ort-cpu-1t-b1_mobilenet_v1"):
        table = load_profile(name)
        err = table.validation["table"]["rmspe"]
        noise = (table.validation.get("noise_floor") or {}).get("per_measurement_rmspe", 0.0)  # once re-shipped
        pct, how = resolve_margin("auto", table)
        assert pct == pytest.approx(min(200 * math.hypot(err, noise), MAX_AUTO_PCT), abs=0.01)
        assert "held-out" in how
        assert resolve_margin(1.5, table) == (1.5, "1.5 % (given)")


@pytest.mark.parametrize("validation", [{}, {"table": {}}, {"table": {"rmspe": float("nan")}}, {"table": {"rmspe": -0.1}}])
def test_auto_margin_without_a_usable_validation_is_generous_and_says_so(validation):
    pct, how = auto_margin_pct(_Table(validation))
    assert pct == FALLBACK_PCT and "widthnas validate" in how


def test_auto_margin_is_capped():
    pct, _ = auto_margin_pct(_Table({"table": {"rmspe": 0.5, "n": 10}}))
    assert pct == MAX_AUTO_PCT and math.isfinite(pct)


def _floor(noise, **kw):
    return {"per_measurement_rmspe": noise, "rmspe": noise * math.sqrt(2), "nrmse": noise * 1.4, "n": 30, **kw}


@pytest.mark.parametrize("err,noise", [(0.02, 0.0), (0.02, 0.015), (0.005, 0.03)])
def test_auto_margin_adds_the_noise_floor_in_quadrature(err, noise):
    pct, how = auto_margin_pct(_Table({"table": {"rmspe": err, "n": 250}, "noise_floor": _floor(noise)}))
    assert pct == pytest.approx(200 * math.hypot(err, noise), abs=0.01)
    assert pct >= auto_margin_pct(_Table({"table": {"rmspe": err, "n": 250}}))[0]  # never narrower than without it
    assert "re-measurement noise" in how and "30 re-measured" in how


def test_auto_margin_with_a_floor_keeps_its_cap_and_fallback():
    pct, _ = auto_margin_pct(_Table({"table": {"rmspe": 0.05}, "noise_floor": _floor(0.09)}))
    assert pct == MAX_AUTO_PCT
    pct, how = auto_margin_pct(_Table({"noise_floor": _floor(0.01)}))  # a floor alone is not a validation
    assert pct == FALLBACK_PCT and "widthnas validate" in how


def test_profiles_without_a_floor_say_so():
    _, how = auto_margin_pct(_Table({"table": {"rmspe": 0.02, "n": 10}}))
    assert "no noise floor measured" in how


@pytest.mark.parametrize("floor", [_floor(float("nan")), _floor(-0.01), _floor(1.5), "3 %", _floor(0.01, nrmse=None)])
def test_a_broken_floor_is_an_error_naming_the_field(floor):
    with pytest.raises(ValueError, match=r"validation\.noise_floor"):
        auto_margin_pct(_Table({"table": {"rmspe": 0.02}, "noise_floor": floor}))


def _check(rmspe, other=True, speed=2.0):
    return {"n": 40, "rmspe": rmspe, "nrmse": 0.02, "within_10": 1.0, "host_speed": speed,
            "machine_note": "the reference network ran 2.00 x its profiled ..." if other else None}


@pytest.mark.parametrize("err,noise,check_err", [(0.0075, 0.0065, 0.034), (0.0075, 0.0065, 0.002), (0.02, 0.0, 0.5)])
def test_auto_margin_on_another_machine_counts_the_check_made_there(err, noise, check_err):
    """RESULTS §2.2e: a profile validated at 0.75 % missed by 2.0 % on the other machine kind, whose check
    showed 3.4 %: the larger of the two errors sets the margin there, and only there."""
    table = _Table({"table": {"rmspe": err, "n": 250}, "noise_floor": _floor(noise)})
    own, _ = auto_margin_pct(table)
    pct, how = auto_margin_pct(table, _check(check_err))
    assert pct == pytest.approx(min(max(own, 200 * check_err), MAX_AUTO_PCT), abs=0.01)
    assert "latency check on this machine (reference at 2.00 x" in how
    assert ("the profile was made on another machine" in how) == (200 * check_err > own)
    assert resolve_margin("auto", table, _check(check_err)) == (pct, how)
    # on the profile's own machine a check changes nothing (under load it misreports), nor does a given margin
    assert auto_margin_pct(table, _check(check_err, other=False)) == auto_margin_pct(table)
    assert resolve_margin("1.5", table, _check(check_err)) == (1.5, "1.5 % (given)")


@pytest.mark.parametrize("bad", [float("nan"), -0.01, None, "3 %", True])
def test_a_broken_check_error_is_refused(bad):
    with pytest.raises(ValueError, match="latency check: its RMS relative error"):
        auto_margin_pct(_Table({"table": {"rmspe": 0.01}}), _check(bad))


def test_a_margin_that_would_leave_no_network_aims_at_the_narrowest_the_budget_holds(graph_toy):
    """A budget the narrowest network meets, with a margin under which no network fits (a tiny profile's large
    auto margin): the search aims at the narrowest network and says why, instead of refusing the budget; a
    budget below the narrowest network is still left to the solver's refusal."""
    from helpers import width_table
    from widthnas.mrf import build_mrf, solve
    from widthnas.mrf.solution import InfeasibleBudget
    from widthnas.nas.search import aim

    table = width_table(graph_toy)
    narrowest = table.predict(graph_toy.min_widths)
    budget, _, target, pct, how = aim(table, f"{narrowest * 1.05}ms", "20")
    assert narrowest <= target == pytest.approx(narrowest) and pct == pytest.approx(100 * (1 - 1 / 1.05))
    assert "reduced from 20.00 %" in how
    import numpy as np
    from widthnas.mrf.unaries import Unaries

    free = graph_toy.free_groups
    unaries = Unaries(graph_toy.name, graph_toy.fingerprint, [list(g.choices) for g in free],
                      [np.linspace(1.0, 0.0, len(g.choices)) for g in free], [np.ones(len(g.choices)) for g in free],
                      names=[g.name for g in free])  # wider is better: only the budget holds the search back
    assert solve(build_mrf(table, unaries), target, "exact").widths == list(graph_toy.min_widths)
    budget, _, target, pct, how = aim(table, f"{narrowest * 1.5}ms", "20")  # room under the margin: unchanged
    assert pct == 20 and target == pytest.approx(budget * 0.8) and "reduced" not in how
    _, _, target, _, _ = aim(table, f"{narrowest * 0.9}ms", "20")
    with pytest.raises(InfeasibleBudget):
        solve(build_mrf(table, unaries), target, "exact")


@pytest.mark.parametrize("seed", range(4))
def test_the_margin_aims_at_the_fastest_network_when_the_narrowest_is_not_it(graph_toy, seed):
    """A fitted table need not be monotone (a traced DenseNet's narrowest network took 0.091 ms, another 0.076):
    aim's floor is the fastest network, found as table.predict over every configuration finds it; a budget that
    network meets is never refused because the narrowest misses the margin."""
    import itertools

    from helpers import SYNTHETIC, random_costs
    from widthnas.latency.table import LatencyTable
    from widthnas.mrf import build_mrf, solve
    from widthnas.mrf.unaries import from_arrays
    from widthnas.nas.search import aim, fastest_ms

    table = LatencyTable(graph_toy, random_costs(graph_toy, seed), 0.01, 1.0, SYNTHETIC)
    every = [table.predict(list(w)) for w in itertools.product(*graph_toy.choices)]
    assert fastest_ms(table) == pytest.approx(min(every), rel=1e-9)
    narrowest = table.predict(graph_toy.min_widths)
    if narrowest <= min(every) * (1 + 1e-9):
        pytest.skip("this seed's table is monotone at its narrowest network")
    budget = (min(every) + narrowest) / 2  # the fastest network meets it, the narrowest does not
    _, _, target, pct, how = aim(table, f"{budget}ms", "20")
    assert target == pytest.approx(min(every)) and "fastest network" in how
    ones = from_arrays(graph_toy, [np.linspace(1, 0, len(c)) for c in graph_toy.choices],
                       [np.ones(len(c), int) for c in graph_toy.choices])
    assert solve(build_mrf(table, ones), target, "exact").latency <= target
