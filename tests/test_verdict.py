"""The budget verdict re-measures until its 95 % interval clears the budget, or says it cannot tell."""
import numpy as np
import pytest
from scipy import stats

from widthnas.latency.verdict import OVER, UNSURE, WITHIN, budget_verdict, describe


def noisy(mean, sd, seed):
    rng = np.random.default_rng(seed)
    calls = []

    def measure():
        calls.append(float(rng.normal(mean, sd)))
        return calls[-1]
    return measure, calls


@pytest.mark.parametrize("mean,want", [(0.90, WITHIN), (1.10, OVER)])
def test_clear_cases_stop_early(mean, want):
    m, calls = noisy(mean, 0.01, 0)
    v = budget_verdict(m, 1.0)
    assert v["verdict"] == want and len(calls) == 3 and v["measurements_ms"] == calls
    # the interval is the t-interval of the measurements, recomputed here
    x = np.array(calls)
    h = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    assert v["ci_low_ms"] == pytest.approx(x.mean() - h) and v["ci_high_ms"] == pytest.approx(x.mean() + h)
    assert want in describe(v)


def test_a_network_at_the_budget_cannot_be_told_and_says_so():
    m, calls = noisy(1.0, 0.03, 1)
    v = budget_verdict(m, 1.0, max_measurements=6)
    assert v["verdict"] == UNSURE and len(calls) == 6 and v["ci_low_ms"] < 1.0 < v["ci_high_ms"]
    m, calls = noisy(1.0, 0.03, 1)
    assert budget_verdict(m, 1.0)["verdict"] == UNSURE and len(calls) == 8  # the default cap (MAX_MEASUREMENTS)


def test_noise_makes_it_measure_more():
    import itertools

    quiet, loud = itertools.cycle([0.980, 0.981, 0.979]), itertools.cycle([0.93, 1.03])
    q = budget_verdict(lambda: next(quiet), 1.0, max_measurements=20)
    v = budget_verdict(lambda: next(loud), 1.0, max_measurements=20)
    assert q["verdict"] == WITHIN and len(q["measurements_ms"]) == 3
    assert v["verdict"] == UNSURE and len(v["measurements_ms"]) == 20  # mean 0.98 ms, but too noisy to tell


@pytest.mark.parametrize("kw,msg", [(dict(budget_ms=0), r"budget 0 ms: give a positive, finite latency"),
                                    (dict(budget_ms=float("nan")), r"budget nan ms: give a positive, finite"),
                                    (dict(budget_ms=1, min_measurements=1), r"need 2 <= min \(1\) <= max \(8\)"),
                                    (dict(budget_ms=1, min_measurements=5, max_measurements=4),
                                     r"need 2 <= min \(5\) <= max \(4\)")])
def test_bad_settings_are_refused(kw, msg):
    calls = []
    with pytest.raises(ValueError, match=msg):
        budget_verdict(lambda: calls.append(1) or 1.0, **kw)
    assert calls == []  # refused before any measurement


def test_a_broken_measurement_is_refused():
    with pytest.raises(ValueError, match="broken"):
        budget_verdict(lambda: float("nan"), 1.0)
