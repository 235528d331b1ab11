"""The adaptive timing protocol (latency.standalone_runner.measure) on a scripted clock: rounds are
added until the ratio is known to the target, and samples that never get there are flagged."""
import json
import warnings

import numpy as np
import pytest

from widthnas.latency import standalone_runner as sr
from widthnas.latency.samples import load_samples


class FakeMachine:
    """A clock that advances only when a network runs: net takes `net_ms`, ref `ref_ms`, each times a
    per-call factor drawn with `noise` relative spread (deterministic seed)."""

    def __init__(self, net_ms: float, ref_ms: float, noise: float, seed: int = 0):
        self.t, self.rng, self.noise = 0.0, np.random.default_rng(seed), noise
        self.net = lambda: self._run(net_ms)
        self.ref = lambda: self._run(ref_ms)
        self.calls = 0

    def _run(self, ms: float) -> None:
        self.calls += 1
        self.t += ms / 1e3 * max(0.05, 1 + self.noise * self.rng.standard_normal())

    def clock(self) -> float:
        return self.t


def test_quiet_machine_settles_in_the_first_rounds_with_the_right_ratio():
    m = FakeMachine(2.0, 4.0, noise=0.002)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, clock=m.clock)
    assert rec["settled"] and rec["rounds"] == 5 and rec["ci_rel"] <= 0.01
    assert rec["norm"] == pytest.approx(0.5, rel=0.01)
    assert rec["ms"]["count"] == 5 * 5 and rec["ref_ms"]["count"] == 5 * 5  # ceil(10 ms / 2 ms) = 5 runs per round


def test_runs_per_round_follow_the_latency():
    m = FakeMachine(0.1, 4.0, noise=0.002)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, clock=m.clock)
    assert rec["ms"]["count"] == 5 * 100  # 10 ms rounds of a 0.1 ms network


def test_noisier_timings_take_more_rounds_until_the_target():
    m = FakeMachine(2.0, 4.0, noise=0.03, seed=1)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, max_rounds=200, time_cap_s=1e9, clock=m.clock)
    assert rec["rounds"] > 5 and rec["settled"] and rec["ci_rel"] <= 0.01
    assert rec["norm"] == pytest.approx(0.5, rel=0.03)


def test_a_sample_that_never_settles_is_flagged():
    m = FakeMachine(2.0, 4.0, noise=0.6, seed=2)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, max_rounds=8, retries=0, clock=m.clock)
    assert rec["rounds"] == 8 and not rec["settled"] and rec["ci_rel"] > 0.01


def test_the_time_cap_stops_the_rounds():
    m = FakeMachine(2.0, 4.0, noise=0.3, seed=3)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, max_rounds=1000, time_cap_s=0.5, retries=0, clock=m.clock)
    assert 5 <= rec["rounds"] < 1000 and not rec["settled"]
    assert m.t < 0.5 + 0.15  # stopped within about one round (~2 x 10 ms, noisy) after the cap


@pytest.mark.parametrize("ratios,want", [([1.0, 1.0, 1.0], 0.0), ([1.0], float("inf"))])
def test_rel_half_width_edge_cases(ratios, want):
    assert sr.rel_half_width(ratios) == want


def test_unsettled_samples_are_flagged_when_loaded(tiny, tmp_path):
    from widthnas.latency.backends import make_backend
    from widthnas.latency.profile import profile

    out = tmp_path / "s.jsonl"
    profile(tiny, out, 6, make_backend(tiny), progress=False, rounds=2, round_ms=1.0)
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    assert all("settled" in r and "ci_rel" in r and r["rounds"] >= 2 for r in recs[1:])  # the protocol records them
    for r in recs[1:]:
        r["settled"] = r is not recs[1] and r is not recs[2]
    out.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = load_samples(str(out), tiny)
    assert len(s) == len(recs) - 1 and s.unsettled == 2
    assert any("2 of 6 sample(s)" in str(x.message) and "never settled" in str(x.message) for x in w)
