"""The timing protocol on a scripted clock (conftest.FakeMachine): rounds are added until the ratio is
known to the target and samples that never get there are flagged (standalone_runner.measure); a
disturbed machine is detected from the reference, waited out and measured again (LoadGuard,
measure_sample), in profiling too."""
import json
import warnings

import numpy as np
import pytest

from helpers import FAST_ROUNDS, fast_protocol
from widthnas.latency import standalone_runner as sr
from widthnas.latency.samples import load_samples


def test_quiet_machine_settles_in_the_first_rounds_with_the_right_ratio(fakes):
    m = fakes.Machine(2.0, 4.0, noise=0.002)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, clock=m.clock)
    assert rec["settled"] and rec["rounds"] == 5 and rec["ci_rel"] <= 0.01
    assert rec["norm"] == pytest.approx(0.5, rel=0.01)
    assert rec["ms"]["count"] == 5 * 5 and rec["ref_ms"]["count"] == 5 * 5  # ceil(10 ms / 2 ms) = 5 runs per round


def test_runs_per_round_follow_the_latency(fakes):
    m = fakes.Machine(0.1, 4.0, noise=0.002)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, clock=m.clock)
    assert rec["ms"]["count"] == 5 * 100  # 10 ms rounds of a 0.1 ms network


def test_noisier_timings_take_more_rounds_until_the_target(fakes):
    m = fakes.Machine(2.0, 4.0, noise=0.03, seed=1)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, max_rounds=200, time_cap_s=1e9, clock=m.clock)
    assert rec["rounds"] > 5 and rec["settled"] and rec["ci_rel"] <= 0.01
    assert rec["norm"] == pytest.approx(0.5, rel=0.03)


def test_a_sample_that_never_settles_is_flagged(fakes):
    m = fakes.Machine(2.0, 4.0, noise=0.6, seed=2)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, max_rounds=8, retries=0, clock=m.clock)
    assert rec["rounds"] == 8 and not rec["settled"] and rec["ci_rel"] > 0.01


def test_the_time_cap_stops_the_rounds(fakes):
    m = fakes.Machine(2.0, 4.0, noise=0.3, seed=3)
    rec = sr.measure(m.net, m.ref, rounds=5, round_ms=10, max_rounds=1000, time_cap_s=0.5, retries=0, clock=m.clock)
    assert 5 <= rec["rounds"] < 1000 and not rec["settled"]
    assert m.t < 0.5 + 0.15  # stopped within about one round (~2 x 10 ms, noisy) after the cap


@pytest.mark.parametrize("ratios,want", [([1.0, 1.0, 1.0], 0.0), ([1.0], float("inf"))])
def test_rel_half_width_edge_cases(ratios, want):
    assert sr.rel_half_width(ratios) == want


def _flickering_host(seed: int, slow: float = 1.3, until_s: float = 5.0) -> list[dict]:
    """Bursts of a host that flips between normal and `slow` in spells of 40-120 ms, slow half the time:
    both the network and the reference slow down alike (a shared host's neighbours)."""
    rng, t, bursts = np.random.default_rng(seed), 0.0, []
    while t < until_s:
        d = rng.uniform(0.04, 0.12)
        if rng.random() < 0.5:
            bursts.append(dict(start=t, end=t + d, net=slow, ref=slow))
        t += d
    return bursts


def test_per_round_ratios_divide_out_a_flickering_host(fakes):
    """The default estimate (median of per-round ratios) holds on a host whose speed changes between
    rounds; the pooled medians of before stop 21 take the network and the reference from different spells."""
    err = {"rounds": [], "pooled": []}
    for seed in range(10):
        m = fakes.Machine(2.0, 4.0, noise=0.01, seed=seed, bursts=_flickering_host(seed))
        rec = sr.measure(m.net, m.ref, rounds=20, round_ms=10.0, max_rounds=20, max_ref_iqr=1.0, clock=m.clock)
        assert rec["norm"] == rec["norms"]["rounds"]  # the default
        for k in err:
            err[k].append(abs(rec["norms"][k] / 0.5 - 1))
    assert max(err["rounds"]) < 0.01, err["rounds"]
    assert max(err["pooled"]) > 0.05 and np.mean(err["pooled"]) > 5 * np.mean(err["rounds"]), err
    m = fakes.Machine(2.0, 4.0, bursts=_flickering_host(0))
    pooled = sr.measure(m.net, m.ref, rounds=20, round_ms=10.0, max_rounds=20, max_ref_iqr=1.0, clock=m.clock,
                        ratio="pooled")
    assert pooled["norm"] == pooled["norms"]["pooled"]
    with pytest.raises(ValueError, match="ratio 'mean'"):
        sr.measure(m.net, m.ref, clock=m.clock, ratio="mean")


def test_the_ratio_estimate_is_recorded_and_old_files_keep_theirs(fakes, tiny, tmp_path):
    from widthnas.latency.profile import profile

    assert sr.Protocol().ratio == "rounds" and sr.Protocol.fixed().ratio == "pooled"  # fixed: the old protocol
    be = fakes.Backend(tiny, fakes.Machine(noise=0.002))
    out = tmp_path / "s.jsonl"
    profile(tiny, out, 3, be, progress=False)
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["settings"]["ratio"] == "rounds"
    del header["settings"]["ratio"]  # a file of stops 11-20: adaptive rounds, pooled medians
    old = tmp_path / "old.jsonl"
    old.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    assert sr.Protocol.from_settings(header["settings"]).ratio == "pooled"
    logs = []
    assert profile(tiny, old, 5, be, progress=False, log=logs.append) == 2  # continued with its own estimate
    assert any("pooled medians" in line for line in logs)
    _, recs, _ = sr.read_samples(str(old))
    assert [r["norm"] == r["norms"]["pooled"] for r in recs[3:]] == [True, True]
    with pytest.raises(ValueError, match="another timing protocol.*ratio"):  # the API asks for the other one
        sr.check_same_protocol(json.loads(old.read_text().splitlines()[0]), sr.Protocol(), str(old))
    with pytest.raises(ValueError, match="settings.ratio"):
        sr.Protocol.from_settings({**header["settings"], "ratio": "mean"}, "h.jsonl header")


def test_unsettled_samples_are_flagged_when_loaded(tiny, tmp_path):
    from widthnas.latency.backends import make_backend
    from widthnas.latency.profile import profile

    out = tmp_path / "s.jsonl"
    profile(tiny, out, 6, make_backend(tiny), progress=False, protocol=fast_protocol())
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


# ---- the load guard: a disturbed machine is said, waited out and measured again -------------------
def _measure_all(m, nets_ms, guard, protocol=None):
    protocol = protocol or sr.Protocol(max_rounds=20)  # samples short beside the fake 2 s bursts
    return [sr.measure_sample(m.runner(ms), m.ref, protocol, guard, m.clock) for ms in nets_ms]


NETS_MS = [1.0 + 0.25 * k for k in range(20)]  # reference 4 ms: true ratios ms / 4
BURST = dict(start=1.0, end=3.0, net=2.0, ref=1.6)  # 2 s of load that slows the network more than the reference


def _guard(m, logs, **kw):
    return sr.LoadGuard(sr.GuardSettings(**kw), m.clock, m.sleep, logs.append)


def test_a_quiet_machine_flags_nothing(fakes):
    m, logs = fakes.Machine(noise=0.002), []
    recs = _measure_all(m, NETS_MS, _guard(m, logs))
    assert not logs and all(r["remeasured"] == 0 and r["disturbed"] is False and "rejected" not in r for r in recs)
    assert [r["norm"] for r in recs] == pytest.approx([ms / 4 for ms in NETS_MS], rel=0.01)


def test_a_reference_that_spreads_by_itself_is_not_a_disturbance(fakes):
    # a tiny reference on a quiet machine: single runs spread ~25 % (IQR / median), past the fixed 10 %
    m, logs = fakes.Machine(noise=0.2), []
    fixed = sr.LoadGuard(sr.GuardSettings(), m.clock, m.sleep, logs.append)
    fixed.quiet_spread = 0.0  # what the guard did before it measured the reference's own spread
    assert fixed.check(sr.stats(sr.time_runs(m.ref, 50, m.clock))) is not None
    m, logs = fakes.Machine(noise=0.2), []
    g = _guard(m, logs)
    recs = _measure_all(m, NETS_MS, g)
    assert g.quiet_spread > 0.1 and g.thresholds[1] == pytest.approx(2 * g.quiet_spread)
    assert sum(r["remeasured"] for r in recs) <= 3 and not any(r["disturbed"] for r in recs)  # of 20 samples
    # and load on such a machine is still seen: the reference 1.8x slower for 2 s
    m, logs = fakes.Machine(noise=0.2, bursts=[dict(start=1.0, end=3.0, net=2.0, ref=1.8)]), []
    recs = _measure_all(m, NETS_MS, _guard(m, logs))
    assert any(r["remeasured"] for r in recs) and any("over its baseline" in line for line in logs)


def test_a_load_burst_is_said_waited_out_and_measured_again(fakes):
    # without the guard the burst corrupts the ratios of the samples it hits
    m = fakes.Machine(noise=0.002, bursts=[BURST])
    bad = [r["norm"] / (ms / 4) - 1 for r, ms in zip(_measure_all(m, NETS_MS, None), NETS_MS)]
    assert max(np.abs(bad)) > 0.1
    m, logs = fakes.Machine(noise=0.002, bursts=[BURST]), []
    recs = _measure_all(m, NETS_MS, _guard(m, logs))
    flagged = [k for k, r in enumerate(recs) if r["remeasured"]]
    assert 1 <= len(flagged) <= 6 and not any(r["disturbed"] for r in recs)
    assert [r["norm"] for r in recs] == pytest.approx([ms / 4 for ms in NETS_MS], rel=0.015)  # the undisturbed truth
    for k in flagged:
        for x in recs[k]["rejected"]:
            assert ("over its baseline" in x["why"] or "spread" in x["why"]) and x["quiet"]
    assert any("machine disturbed" in line and "waiting up to 60 s" in line for line in logs)


@pytest.mark.parametrize("max_wait_s", [10.0, 1.0])  # 1 s: shorter than the 2 s step between probes
def test_a_machine_that_stays_slower_becomes_the_new_baseline(fakes, max_wait_s):
    m, logs = fakes.Machine(noise=0.002, bursts=[dict(start=1.0, end=float("inf"), net=1.3, ref=1.3)]), []
    recs = _measure_all(m, NETS_MS, _guard(m, logs, max_wait_s=max_wait_s))
    assert sum(r["remeasured"] for r in recs) == 1 and not any(r["disturbed"] for r in recs)  # one wait, not one each
    assert any("new baseline" in line for line in logs)
    assert [r["norm"] for r in recs] == pytest.approx([ms / 4 for ms in NETS_MS], rel=0.01)


def test_a_machine_that_never_settles_records_the_samples_as_disturbed(fakes):
    m, logs = fakes.Machine(noise=0.002, bursts=[dict(start=0.8, end=float("inf"), net=1.0, ref=1.8, share=0.4)]), []
    recs = _measure_all(m, NETS_MS[:8], _guard(m, logs, max_wait_s=4))
    late = [r for r in recs if r["disturbed"]]
    assert late and recs[0]["disturbed"] is False
    assert all(len(r["rejected"]) == 2 and "spread" in r["disturbance"] for r in late)
    assert any("recorded as disturbed, left out of fits" in line for line in logs)


def test_a_host_noisy_by_nature_is_waited_out_once_then_judged_by_its_own_spread(fakes):
    # a shared host from 1 s on: 35 % of runs, network and reference alike, 1.3x slower; waits never find it quiet
    flicker = dict(start=1.0, end=float("inf"), net=1.3, ref=1.3, share=0.35)
    m, logs = fakes.Machine(noise=0.002, bursts=[flicker]), []
    g = _guard(m, logs, max_wait_s=4)
    recs = _measure_all(m, NETS_MS, g)
    out = [k for k, r in enumerate(recs) if r["disturbed"]]
    # a few left out, the last NOISY_SAMPLES of them within one window: a 4 s wait probes every second (every
    # 2 s before the step became min(step_s, max_wait_s / 4)), and a quiet probe lets a sample through, so the
    # host is learnt noisy a sample or two later than with fewer probes
    assert sr.NOISY_SAMPLES <= len(out) <= 2 * sr.NOISY_SAMPLES and out[-1] - out[-sr.NOISY_SAMPLES] < sr.NOISY_WINDOW
    assert all("spread" in recs[k]["disturbance"] for k in out) and out[0] > 0  # not before the flicker began
    said = [line for line in logs if "noisy by nature" in line]
    assert len(said) == 1 and 0.1 < g.noisy_spread <= sr.NOISY_MAX_SPREAD and g.thresholds[1] == g.noisy_spread
    assert not any(r["disturbed"] for r in recs[out[-1] + 1:])  # every later sample kept, and right
    assert [r["norm"] for r in recs[out[-1] + 1:]] == pytest.approx([ms / 4 for ms in NETS_MS[out[-1] + 1:]], rel=0.01)
    # the same flicker at 1.8x spreads past NOISY_MAX_SPREAD: its samples stay out (the test above)
    m, logs = fakes.Machine(noise=0.002, bursts=[{**flicker, "net": 1.8, "ref": 1.8, "share": 0.4}]), []
    g = _guard(m, logs, max_wait_s=4)
    recs = _measure_all(m, NETS_MS[:10], g)
    assert g.noisy_spread == 0 and all(r["disturbed"] for r in recs[-3:]) and not any("nature" in x for x in logs)


def test_a_later_stage_told_the_host_is_noisy_keeps_its_samples_from_the_start(fakes):
    """`widthnas run` hands the level its check found to verify's guard (LoadGuard.assume_noisy): on the same
    noisy host no timing is waited out and left out again; a level read back from a damaged file is refused."""
    flicker = dict(start=0.0, end=float("inf"), net=1.3, ref=1.3, share=0.35)
    m, logs = fakes.Machine(noise=0.002, bursts=[flicker]), []
    check = _guard(m, logs, max_wait_s=4)
    _measure_all(m, NETS_MS, check)
    later = _guard(m, logs, max_wait_s=4)
    later.assume_noisy(check.noisy_spread)
    recs = _measure_all(m, NETS_MS[:8], later)
    assert check.noisy_spread > 0.1 and later.thresholds[1] == check.noisy_spread
    assert not any(r["disturbed"] or r.get("remeasured") for r in recs)
    assert [r["norm"] for r in recs] == pytest.approx([ms / 4 for ms in NETS_MS[:8]], rel=0.01)
    for bad in (-0.1, sr.NOISY_MAX_SPREAD + 0.01, True, "0.2", float("nan"), None):
        with pytest.raises(ValueError, match="noisy host's reference spread"):
            later.assume_noisy(bad)


def test_spread_on_three_of_the_last_six_samples_is_the_hosts_own_whatever_lies_between(fakes):
    """A noisy host drifts too and lets a sample through now and then (the demo at 56d1e02: 8.4 min of waits, no
    level learnt while the count restarted): spread left-outs count within the last NOISY_WINDOW samples."""
    spread, drift = "reference timings spread", "reference 5 ms, +25% over its baseline"
    g = _guard(fakes.Machine(), [])
    g.left_out({"median": 4.0, "iqr": 1.0}, spread)  # 25 %
    g.left_out({"median": 4.0, "iqr": 0.8}, spread)
    for _ in range(sr.NOISY_WINDOW - 2):  # clean samples: the first spread falls out of the window
        g.accept({"median": 4.0, "iqr": 0.1})
    g.left_out({"median": 4.0, "iqr": 0.8}, spread)
    assert g.noisy_spread == 0  # two within the window: a passing disturbance, not the host
    g = _guard(fakes.Machine(), [])
    for med, iqr, why in ((4.0, 0.8, spread), (5.0, 0.1, drift), (4.0, 0.1, None), (4.0, 0.8, spread),
                          (5.0, 0.1, drift)):  # spread, drift and a clean sample mixed: counted, not reset
        g.left_out({"median": med, "iqr": iqr}, why) if why else g.accept({"median": med, "iqr": iqr})
        assert g.noisy_spread == 0
    g.left_out({"median": 4.0, "iqr": 1.6}, spread)  # the third spread within six: 40 %, 1.1 x the largest
    assert g.noisy_spread == pytest.approx(0.44) and g.thresholds[1] == pytest.approx(0.44)
    for _ in range(2):  # the window starts afresh once a level is learnt: two more spreads are not three
        g.left_out({"median": 4.0, "iqr": 1.9}, spread)
    assert g.noisy_spread == pytest.approx(0.44)
    g = _guard(fakes.Machine(), [])
    for _ in range(3):  # left out for drift, but spread too (check() names the drift first): counted
        g.left_out({"median": 5.0, "iqr": 1.0}, drift)
    assert g.noisy_spread == pytest.approx(0.22)


def test_guard_thresholds(fakes):
    m = fakes.Machine()
    g = _guard(m, [])
    g.start(m.ref)
    assert g.baseline == pytest.approx(4.0)
    assert "over its baseline" in g.check({"median": 4.7, "iqr": 0.0})  # +17.5 % > 15 %
    assert g.check({"median": 4.5, "iqr": 0.0}) is None and g.check({"median": 3.0, "iqr": 0.0}) is None  # faster: fine
    assert "spread" in g.check({"median": 4.0, "iqr": 0.5})


def test_protocol_round_trips_and_refuses_bad_numbers():
    for p in (sr.Protocol(), sr.Protocol.fixed(3, 30.0), sr.Protocol(7, 5.0, guard=sr.GuardSettings(drift=0.3))):
        assert sr.Protocol.from_settings(p.settings()).settings() == p.settings()
    assert sr.Protocol.fixed(3).rounds_cap() == 3 and sr.Protocol(5).rounds_cap() == 5 * sr.ROUNDS_CAP
    old = sr.Protocol.from_settings({"rounds": 3, "round_ms": 30.0, "sampling": "uniform", "seed": 1})  # older header
    assert old.rounds == 3 and old.round_ms == 30.0 and old.guard == sr.GuardSettings() and old.rounds_cap() == 3 * sr.ROUNDS_CAP
    for bad, field in [({"rounds": 0}, "rounds"), ({"round_ms": float("nan")}, "round_ms"),
                       ({"rounds": 2.5}, "rounds"), ({"guard": {"drift": -1}}, "drift"), ({"guard": "on"}, "guard"),
                       ({"rounds": 5, "max_rounds": 3}, "max_rounds"), ({"target_ci": True}, "target_ci")]:
        with pytest.raises(ValueError, match=field):
            sr.Protocol.from_settings(bad, "h.jsonl header")


# ---- profiling with the guard: recorded per sample, left out when disturbed, resumable ------------
def _small_truth(w) -> float:
    return 0.5 + 1e-3 * sum(w)  # ms


def test_profile_waits_out_a_burst_records_it_and_resumes(fakes, small, tmp_path):
    from widthnas.latency.profile import profile

    m, logs = fakes.Machine(noise=0.002, bursts=[BURST]), []
    be = fakes.Backend(small, m, truth=_small_truth)
    out = tmp_path / "s.jsonl"
    protocol = sr.Protocol(max_rounds=20)  # samples short beside the fake 2 s burst
    assert profile(small, out, 14, be, progress=False, log=logs.append, protocol=protocol) == 14
    header, recs, _ = sr.read_samples(str(out))
    assert header["settings"]["guard"]["drift"] == 0.15 and header["settings"]["max_rounds"] == 20
    flagged = [k for k, r in enumerate(recs, 1) if r["remeasured"]]
    assert flagged and not any(r["disturbed"] for r in recs) and any("s.jsonl sample" in line for line in logs)
    ref = _small_truth(small.reference_widths)
    assert [r["norm"] for r in recs] == pytest.approx([_small_truth(r["widths"]) / ref for r in recs], rel=0.015)
    s = load_samples(str(out), small)
    assert s.remeasured == [f"s.jsonl #{k}" for k in flagged] and not s.disturbed and len(s) == 14
    assert any("measured again after a disturbance" in line for line in s.describe())
    assert profile(small, out, 16, be, progress=False, log=logs.append, protocol=protocol) == 2  # a rerun continues
    with pytest.raises(ValueError, match="another timing protocol"):
        profile(small, out, 18, be, progress=False, protocol=sr.Protocol.fixed())


def test_disturbed_samples_are_left_out_of_the_fit_and_counted(fakes, tiny, tmp_path):
    from widthnas.latency.fit import FitSettings
    from widthnas.latency.fit import fit_table
    from widthnas.latency.profile import profile

    be = fakes.Backend(tiny, fakes.Machine(noise=0.002))
    out = tmp_path / "s.jsonl"
    profile(tiny, out, 24, be, progress=False, log=print)
    lines = out.read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    recs[3].update(disturbed=True, remeasured=2, norm=9.0)  # what the guard writes when it never got a quiet sample
    recs[5].update(remeasured=1)
    out.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = load_samples(str(out), tiny)
    assert len(s) == 23 and s.disturbed == ["s.jsonl #3"] and s.remeasured == ["s.jsonl #5"]
    assert 9.0 not in s.norm and any("left out" in str(x.message) for x in w)
    fit = fit_table(tiny, s, FitSettings(folds=2, lams=(1.0,), mus=(0.0,)), log=lambda *_: None).fit
    assert fit["disturbed_samples"] == 1 and fit["remeasured_samples"] == 1 and fit["samples"] == 23


def test_files_from_before_the_guard_still_load_and_resume(fakes, tiny, tmp_path):
    from widthnas.latency.profile import profile

    be = fakes.Backend(tiny, fakes.Machine(noise=0.002))
    out = tmp_path / "old.jsonl"
    profile(tiny, out, 5, be, progress=False)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    recs[0]["settings"] = {k: recs[0]["settings"][k] for k in ("sampling", "seed", "rounds", "round_ms")}
    for r in recs[1:]:
        for k in ("remeasured", "disturbed", "rejected", "rounds", "ci_rel", "settled"):
            r.pop(k, None)
    out.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    s = load_samples(str(out), tiny)
    assert len(s) == 5 and not s.disturbed and not s.remeasured and s.unsettled == 0
    assert sr.Protocol.from_settings(recs[0]["settings"]).ratio == "pooled"
    # an old file records no protocol to check against: it is continued as before, with its own estimate
    assert profile(tiny, out, 7, be, progress=False, protocol=sr.Protocol(**FAST_ROUNDS)) == 2
    assert all(r["norm"] == r["norms"]["pooled"] for r in sr.read_samples(str(out))[1][5:])


@pytest.mark.parametrize("bad", [{"norm": float("nan")}, {"norm": -1.0}, {"ms": {"median": "x"}}])
def test_unusable_latencies_are_skipped_and_named(fakes, tiny, tmp_path, bad):
    from widthnas.latency.profile import profile

    out = tmp_path / "s.jsonl"
    profile(tiny, out, 4, fakes.Backend(tiny, fakes.Machine()), progress=False)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    recs[2].update(bad)
    out.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = load_samples(str(out), tiny)
    assert len(s) == 3 and s.skipped == 1
    assert any("sample 2 has no positive, finite" in str(x.message) for x in w)


def test_profile_cli_records_the_guard_setting_and_refuses_bad_ones(tiny, tmp_path, capsys):
    from widthnas.nas.cli import main

    (tmp_path / "tiny.json").write_text(json.dumps(tiny.to_dict()))
    base = ["profile", "--space", str(tmp_path / "tiny.json"), "-n", "2", "--rounds", "2", "--round-ms", "1", "--quiet"]
    out = tmp_path / "s.jsonl"
    assert main(base + ["--out", str(out), "--no-guard", "--max-rounds", "6"]) == 0  # real timing of two tiny networks
    header, recs, _ = sr.read_samples(str(out))
    assert header["settings"]["guard"] is None and all("disturbed" not in r for r in recs)
    assert header["settings"]["max_rounds"] == 6 and all(2 <= r["rounds"] <= 6 for r in recs)
    assert main(base + ["--out", str(out), "-n", "3", "--no-guard"]) == 2  # the default cap is another protocol
    assert "another timing protocol" in capsys.readouterr().err
    for bad in (["--max-rounds", "1"], ["--max-wait", "-1"], ["--max-wait", "nan"], ["--round-ms", "0"], ["--rounds", "0"]):
        assert main(base + ["--out", str(tmp_path / "x.jsonl"), *bad]) == 2
        assert "give" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
