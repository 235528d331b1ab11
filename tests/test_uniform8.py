"""uniform8 (nas/uniform8.py): the largest multiplier rounded to 8 channels measured within the budget,
checked against a scan of every multiplier, and materialized off the search grid from a supernet."""
import numpy as np
import pytest
import torch

from widthnas.models.space import WidthError
from widthnas.nas.uniform8 import NoMultiplierFits, measured_multiplier, multiplier_candidates, uniform8


def _cost(widths):  # a stand-in device: ms grows with every channel
    return 1e-3 * sum(widths) + 0.01


@pytest.mark.parametrize("budget_share", [0.07, 0.3, 0.55, 0.99])
def test_bisection_finds_what_a_scan_of_every_multiplier_finds(small, budget_share):
    cands = multiplier_candidates(small)
    widest = _cost(small.multiplier_widths(10.0))
    budget = budget_share * widest
    calls = []
    m, w = measured_multiplier(cands, budget, lambda w: calls.append(w) or _cost(w))
    scan = [c for c in cands if _cost(c[1]) <= budget][-1]  # ascending: the last that fits
    assert (m, w) == scan
    assert len(calls) <= int(np.ceil(np.log2(len(cands) + 1))) + 1  # bisection, not a scan
    assert all(x % 8 == 0 for x in w)
    assert [c[1] for c in cands] == sorted([c[1] for c in cands], key=_cost)  # ascending in cost


def test_candidates_reach_the_widest_network_and_nothing_fits_below_the_narrowest(small):
    cands = multiplier_candidates(small)
    assert cands[-1][1] == [g.choices[-1] for g in small.free_groups]
    assert len({tuple(c[1]) for c in cands}) == len(cands)
    with pytest.raises(NoMultiplierFits, match="measures within"):
        measured_multiplier(cands, 0.5 * _cost(cands[0][1]), _cost)


def test_a_verdict_that_is_not_within_steps_one_multiplier_down(small):
    budget = 0.4 * _cost(small.multiplier_widths(10.0))
    cands = multiplier_candidates(small)
    first = measured_multiplier(cands, budget, _cost)
    unsure = {tuple(first[1])}  # the verdict cannot tell for the network bisection found

    def verdict(w):
        return {"verdict": "cannot tell at this noise" if tuple(w) in unsure else "within", "mean_ms": _cost(w)}

    judged = []
    u = uniform8(small, budget, _cost, lambda w: judged.append(tuple(w)) or verdict(w))
    i = [c[1] for c in cands].index(first[1])
    assert u["widths"] == cands[i - 1][1] and u["multiplier"] == cands[i - 1][0]
    assert u["verdict"]["verdict"] == "within"
    assert judged == [tuple(first[1]), tuple(cands[i - 1][1])]  # one verdict each, no step back up


def test_no_verdict_within_is_an_error_not_a_network(small):
    """Single timings may fit while no verdict does (noise): uniform8 must not return a network whose
    verdict failed."""
    budget = 0.4 * _cost(small.multiplier_widths(10.0))
    with pytest.raises(NoMultiplierFits, match="is measured within"):
        uniform8(small, budget, _cost, lambda w: {"verdict": "cannot tell at this noise", "mean_ms": _cost(w)})


def test_one_noisy_timing_does_not_cost_the_baseline_a_rung(small):
    """Bisection on single timings can be misled by one high timing; the verdicts step back up to the
    largest multiplier whose verdict is within, the one a scan of every multiplier finds."""
    cands = multiplier_candidates(small)
    budget = 0.5 * _cost(small.multiplier_widths(10.0))
    truth = [c for c in cands if _cost(c[1]) <= budget][-1]
    seen = []

    def noisy(w):  # the first timing of the right answer reads 3x high
        seen.append(w)
        return _cost(w) * (3.0 if w == truth[1] and seen.count(w) == 1 else 1.0)

    misled = measured_multiplier(cands, budget, lambda w: noisy(w))
    assert misled != truth  # the precondition: bisection alone lands lower
    seen.clear()
    verdict = lambda w: {"verdict": "within" if _cost(w) <= budget else "over", "mean_ms": _cost(w)}  # noqa: E731
    u = uniform8(small, budget, noisy, verdict)
    assert (u["multiplier"], u["widths"]) == truth


def test_a_supernet_materializes_widths_off_its_grid(small):
    """Off-grid widths (with_dense_choices) slice the same first channels as on the grid: on grid widths
    the two spaces give the same network, and off grid every weight is the supernet's slice."""
    from widthnas.nas.train import make_supernet

    torch.manual_seed(0)
    sup = make_supernet(small).eval()
    dense = small.with_dense_choices()
    on_grid = small.uniform(0.5)
    x = torch.randn(2, *small.input_shape)
    with torch.no_grad():
        a = sup.materialize(on_grid).eval()(x)
        b = sup.materialize(on_grid, dense).eval()(x)
    assert torch.equal(a, b)
    off = small.multiplier_widths(0.43)
    assert any(w not in g.choices for w, g in zip(off, small.free_groups))  # really off the grid
    with pytest.raises(WidthError):
        sup.materialize(off)  # the search space refuses them
    net = sup.materialize(off, dense).eval()
    # the supernet's own forward over the same weights, sliced on the fly, is the reference
    ref = make_supernet(dense).eval()
    ref.load_state_dict(sup.state_dict())
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x, off), atol=1e-5)
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1][:1] == off[:1]


@pytest.mark.parametrize("budget_share", [0.3, 0.6])
def test_a_band_of_cannot_tell_rungs_costs_a_few_verdicts_not_one_each(small, budget_share):
    """Near the budget on a noisy host every rung's verdict may say "cannot tell" (8 timings each): the
    verdicts gallop and bisect through the band to the largest rung a scan of verdicts finds within."""
    cands = multiplier_candidates(small)
    budget = budget_share * _cost(small.multiplier_widths(10.0))

    def verdict(w):
        c = _cost(w)
        return {"verdict": "within" if c <= 0.85 * budget else "over" if c > 1.1 * budget else "cannot tell at this noise",
                "mean_ms": c}

    judged = []
    u = uniform8(small, budget, _cost, lambda w: judged.append(tuple(w)) or verdict(w))
    scan = [c for c in cands if verdict(c[1])["verdict"] == "within"][-1]
    assert (u["multiplier"], u["widths"]) == scan
    band = sum(0.85 * budget < _cost(c[1]) <= budget for c in cands)  # rungs a single timing fits, no verdict does
    bound = 2 * int(np.ceil(np.log2(band + 1))) + 1
    assert band + 1 > bound  # the precondition: a rung at a time (band + 1 verdicts) would break the bound
    assert len(judged) == len(set(judged)) <= bound
