"""The host-state correction (latency.host_state): on a simulated host whose slowdowns hit narrow
networks harder than the reference, as this machine's do (RESULTS §2.1e), the fit finds the true
elasticity by cross-validation and the corrected measurements agree across host speeds; on a host
without the effect it keeps plain normalisation."""
import json

import numpy as np
import pytest

from helpers import synthetic_device as synthetic
from widthnas.latency.fit import FitSettings
from widthnas.latency.fit import fit_table as _fit
from widthnas.latency.table import LatencyTable, ProfileError
from widthnas.latency.host_state import read_elasticity, typical_speed_ms
from widthnas.latency.samples import Samples
from widthnas.latency.validate import metrics

QUICK = FitSettings(lams=(1e-2, 1.0, 100.0), mus=(0.0,), folds=3)  # the default elasticities; no monotonicity


def fit_table(space, samples, settings):
    return _fit(space, samples, settings, log=lambda *_: None)


def elastic_host(truth, widths, k, seed, spread=0.1, noise=0.002):
    """Samples timed on a host whose speed wanders: the reference slows by s (log-uniform within
    ±spread), a network of true ratio r by s**(1 - k ln r). Returns (samples, true ms at s = 1)."""
    rng = np.random.default_rng(seed)
    true_ms = truth.predict_many(widths)  # at the typical speed
    ref0 = truth.predict(truth.space.reference_widths)  # the reference network (base widths), ms
    r0 = true_ms / ref0
    s = np.exp(rng.uniform(-spread, spread, len(widths)))
    ref = ref0 * s
    net = true_ms * s ** (1 - k * np.log(r0)) * (1 + noise * rng.standard_normal(len(widths)))
    return Samples({"device": {"cpu": "synthetic"}}, widths, net / ref, net, ref, 0), true_ms


def test_typical_speed_by_hand():
    assert typical_speed_ms(0.5, 2.0, 2.0, 0.7) == pytest.approx(1.0)  # at the typical speed: no change
    assert typical_speed_ms(0.5, 2.2, 2.0, 0.0) == pytest.approx(1.0)  # k = 0: plain normalisation
    # a narrow network on a 10 % slower host: its ratio is inflated by 1.1**(-k ln r), the correction removes it
    r0, s, k = 0.4, 1.1, 0.5
    measured = r0 * s ** (-k * np.log(r0))
    assert measured > r0
    # exact to first order in k ln s: the second-order term is (k ln s)**2 |ln r0| = 0.21 % here
    assert typical_speed_ms(measured, 2.0 * s, 2.0, k) == pytest.approx(2.0 * r0, rel=3e-3)
    out = typical_speed_ms(np.array([0.5, 1.0, 2.0]), np.array([2.2, 2.2, 2.2]), 2.0, 0.5)
    assert out.shape == (3,) and out[1] == pytest.approx(2.0)  # the reference's own ratio needs no correction
    assert out[0] < 1.0 and out[2] > 4.0  # narrower: slowed more than the reference; wider: less


@pytest.mark.parametrize("k_true", [0.0, 0.5])
def test_the_fit_finds_the_host_elasticity(small, k_true):
    truth, base = synthetic(small, 400, 1)
    train, _ = elastic_host(truth, base.widths, k_true, seed=1)
    _, base_test = synthetic(small, 200, 2)
    test, true_ms = elastic_host(truth, base_test.widths, k_true, seed=2)
    table = fit_table(small, train, QUICK)
    cv = {row["k"]: row["rmspe"] for row in table.fit["elasticity_cv"]}
    assert table.fit["elasticity"] == k_true and set(cv) == set(FitSettings().elasticities)
    assert cv[k_true] == min(cv.values())
    m = metrics(table.predict_many(test.widths), table.measured_ms(test.norm, test.ref_ms))
    assert m["rmspe"] < 0.01  # against the corrected measurements of other networks at other host speeds
    if k_true:
        plain = fit_table(small, train, FitSettings(lams=QUICK.lams, mus=QUICK.mus, folds=3, elasticities=(0.0,)))
        mp = metrics(plain.predict_many(test.widths), plain.measured_ms(test.norm, test.ref_ms))
        assert cv[0.0] > 1.5 * cv[k_true] and mp["rmspe"] > 2 * m["rmspe"]
        # the table itself is nearer the truth at the typical speed
        assert metrics(table.predict_many(test.widths), true_ms)["rmspe"] < metrics(plain.predict_many(test.widths),
                                                                                    true_ms)["rmspe"]


def test_two_timings_at_different_host_speeds_agree_once_corrected(small):
    """The re-measurement check of issue 11 in miniature: the same networks timed on a fast and on a slow
    host agree within their noise after the correction with the true k, not before."""
    truth, base = synthetic(small, 200, 3)
    fast, _ = elastic_host(truth, base.widths, 0.6, seed=4, spread=0.0)
    slow, _ = elastic_host(truth, base.widths, 0.6, seed=5, spread=0.0)
    slow.ref_ms, slow.norm = slow.ref_ms * 1.12, slow.norm * 1.12 ** (-0.6 * np.log(slow.norm))  # 12 % slower
    ref0 = float(np.median(fast.ref_ms))
    plain = metrics(slow.norm * ref0, fast.norm * ref0)
    fixed = metrics(typical_speed_ms(slow.norm, slow.ref_ms, ref0, 0.6), typical_speed_ms(fast.norm, fast.ref_ms,
                                                                                          ref0, 0.6))
    assert plain["rmspe"] > 0.02 and fixed["rmspe"] < 0.006


def _profile_dict(small, fit: dict) -> dict:
    truth, _ = synthetic(small, 10, 1)
    d = truth.to_dict()
    d["fit"] = fit
    return json.loads(json.dumps(d))


def test_old_profiles_keep_plain_normalisation(small):
    table = LatencyTable.from_dict(_profile_dict(small, {}))  # fitted before the correction existed
    assert read_elasticity(table.fit) == 0.0
    np.testing.assert_allclose(table.measured_ms(np.array([0.3, 1.7]), np.array([5.0, 0.1])),
                               np.array([0.3, 1.7]) * table.reference_ms)


@pytest.mark.parametrize("k", [-0.1, 2.5, float("nan"), float("inf"), "0.5", True, None])
def test_a_broken_elasticity_is_refused_with_its_field_named(small, k):
    with pytest.raises(ProfileError, match=r"fit\.elasticity .*refit the profile"):
        LatencyTable.from_dict(_profile_dict(small, {"elasticity": k}), "p.json")


def test_fit_refuses_elasticities_out_of_range(small):
    _, train = synthetic(small, 40, 1)
    with pytest.raises(ValueError, match="elasticities"):
        fit_table(small, train, FitSettings(folds=3, elasticities=(0.0, 3.0)))


def test_the_elasticity_benchmark_reads_the_slope_off_timing_pairs(small, tmp_path):
    """benchmarks/elasticity.py on pairs from the simulated host: it finds beta = 1 - k ln r by ratio
    and the k that fits, and the correction at that k brings the pairs together."""
    from widthnas.benchmarks import elasticity as eb
    from widthnas.latency.standalone_runner import SAMPLES_FORMAT

    truth, base = synthetic(small, 120, 6)
    first, _ = elastic_host(truth, base.widths, 0.6, seed=7, spread=0.12)
    second, _ = elastic_host(truth, base.widths, 0.6, seed=8, spread=0.12)
    for name, s in (("heldout", first), ("remeasure", second)):
        lines = [{"type": "header", "format": SAMPLES_FORMAT}] + [
            {"type": "sample", "widths": w.tolist(), "norm": r, "ms": {"median": ms}, "ref_ms": {"median": ref}}
            for w, r, ms, ref in zip(s.widths, s.norm, s.ms, s.ref_ms)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = eb.report(tmp_path, 0.6)
    assert r["pairs"] == 120 and r["k_best"] == pytest.approx(0.6, abs=0.08)
    narrow = [b for b in r["bins"] if b["ratio"][1] <= 0.7 and b["n"] >= 10]
    assert narrow and all(b["beta"] > 1.1 for b in narrow)  # the narrow ones slow more than the reference
    plain, fixed = r["agreement"]
    assert fixed["rms"] < plain["rms"] / 2 and fixed["within_5"] == 1.0
    assert eb.main([str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize("norm,ref,typical", [(0.0, 2.0, 2.0), (-0.5, 2.0, 2.0), (float("nan"), 2.0, 2.0),
                                              (0.5, 0.0, 2.0), (0.5, float("inf"), 2.0), (0.5, 2.0, 0.0)])
def test_the_correction_refuses_timings_that_are_not_positive(norm, ref, typical):
    with pytest.raises(ValueError, match="positive, finite"):
        typical_speed_ms(norm, ref, typical, 0.5)


def test_the_correction_is_held_at_the_edge_of_the_fitted_host_speeds():
    """Beyond the speeds the elasticity was fitted on, the extra slowdown is divided out plainly."""
    r, k = 0.4, 0.5
    inside = typical_speed_ms(r, 2.0 * 1.05, 2.0, k, (0.9, 1.1))
    assert inside == pytest.approx(2.0 * r * 1.05 ** (k * np.log(r)))  # within the range: the full correction
    far = typical_speed_ms(r, 2.0 * 1.5, 2.0, k, (0.9, 1.1))
    assert far == pytest.approx(2.0 * r * 1.1 ** (k * np.log(r)))  # s = 1.5 is corrected as s = 1.1
    assert typical_speed_ms(r, 2.0 * 0.5, 2.0, k, (0.9, 1.1)) == pytest.approx(2.0 * r * 0.9 ** (k * np.log(r)))
    assert far != pytest.approx(typical_speed_ms(r, 2.0 * 1.5, 2.0, k))  # unclamped it would extrapolate


def test_the_fit_records_the_host_speeds_and_measured_ms_clamps_to_them(small):
    truth, base = synthetic(small, 300, 1)
    train, _ = elastic_host(truth, base.widths, 0.5, seed=1, spread=0.05)
    table = fit_table(small, train, QUICK)
    lo, hi = table.fit["host_speed_range"]
    s = train.ref_ms / table.reference_ms
    assert lo == pytest.approx(s.min()) and hi == pytest.approx(s.max()) and lo < 1 < hi
    k = table.fit["elasticity"]
    assert k > 0
    got = table.measured_ms(np.array([0.4, 0.4]), table.reference_ms * np.array([hi, 3.0]))
    assert got[0] == pytest.approx(got[1])  # a host 3x slower is corrected no more than the slowest fitted one
    assert got[0] == pytest.approx(0.4 * table.reference_ms * hi ** (k * np.log(0.4)))
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    np.testing.assert_allclose(again.measured_ms(np.array([0.4]), np.array([3.0 * table.reference_ms])), got[1:])


def test_old_profiles_with_an_elasticity_clamp_to_the_default_range(small):
    from widthnas.latency.host_state import DEFAULT_SPEED_RANGE

    table = LatencyTable.from_dict(_profile_dict(small, {"elasticity": 0.5}))
    hi = DEFAULT_SPEED_RANGE[1]
    assert DEFAULT_SPEED_RANGE[0] < 1 < hi
    got = table.measured_ms(0.4, 2.0 * table.reference_ms)
    assert got == pytest.approx(0.4 * table.reference_ms * hi ** (0.5 * np.log(0.4)))


@pytest.mark.parametrize("rng", [[1.1, 0.9], [0.0, 1.2], [0.9], "0.9,1.1", [0.9, float("inf")], [1.05, 1.2]])
def test_a_broken_host_speed_range_is_refused(small, rng):
    with pytest.raises(ProfileError, match=r"fit\.host_speed_range .*refit the profile"):
        LatencyTable.from_dict(_profile_dict(small, {"elasticity": 0.5, "host_speed_range": rng}), "p.json")


@pytest.mark.parametrize("field,value", [("reference_ms", 0.0), ("reference_ms", -1.0), ("reference_ms", "nan"),
                                         ("reference_ms", True), ("intercept_ms", float("nan")),
                                         ("intercept_ms", None)])
def test_a_profile_with_a_broken_reference_or_intercept_is_refused(small, field, value):
    d = _profile_dict(small, {})
    d[field] = float(value) if value == "nan" else value
    with pytest.raises(ProfileError, match=f"{field} is .*refit the profile"):
        LatencyTable.from_dict(d, "p.json")


def test_a_profile_whose_fit_is_null_loads_with_plain_normalisation(small):
    table = LatencyTable.from_dict(_profile_dict(small, None))
    assert table.measured_ms(0.5, 3.0 * table.reference_ms) == pytest.approx(0.5 * table.reference_ms)


def test_an_old_table_learns_its_elasticity_from_timings_on_a_slower_host(small):
    """validate --elasticity auto: a table fitted while the host held one speed (k unidentifiable, so 0)
    meets networks timed on a host 15-25 % slower whose narrow networks slow more (k = 0.5): the
    calibration finds k = 0.5, keeps the entries, and the corrected timings agree with the table."""
    from widthnas.latency.host_state import calibrate_elasticity
    from widthnas.nas.commands.validate import ELASTICITY_GRID, set_elasticity

    truth, base = synthetic(small, 300, 1)
    train, _ = elastic_host(truth, base.widths, 0.5, seed=1, spread=0.0)
    table = fit_table(small, train, QUICK)
    assert table.fit["elasticity"] == 0.0
    _, other = synthetic(small, 200, 2)
    slow, _ = elastic_host(truth, other.widths, 0.5, seed=2, spread=0.0)
    s = np.exp(np.random.default_rng(3).uniform(np.log(1.15), np.log(1.25), len(slow.norm)))
    r0 = slow.norm.copy()
    slow.ref_ms, slow.norm = slow.ref_ms * s, r0 * s ** (-0.5 * np.log(r0))  # narrow networks slowed more
    c = calibrate_elasticity(table.predict_many(slow.widths), slow.norm, slow.ref_ms, table.reference_ms,
                             ELASTICITY_GRID)
    assert c["k"] == 0.5 and c["rmspe"][0.5] < 0.01 < c["rmspe"][0.0]
    assert c["selection_cv_rmspe"] < 0.01 and 1.1 < c["host_speed"][0] < c["host_speed"][1] < 1.3
    before = table.costs.copy()
    plain = metrics(table.predict_many(slow.widths), table.measured_ms(slow.norm, slow.ref_ms))
    set_elasticity(table, slow, "auto", ["h.jsonl"])
    fixed = metrics(table.predict_many(slow.widths), table.measured_ms(slow.norm, slow.ref_ms))
    assert table.fit["elasticity"] == 0.5 and table.fit["elasticity_calibration"]["previous"] == 0.0
    lo, hi = table.fit["host_speed_range"]
    assert lo <= 1.0 and hi == pytest.approx(float(s.max()))  # widened to the speeds the k was chosen on
    assert fixed["rmspe"] < plain["rmspe"] / 3 and np.array_equal(before, table.costs)  # the entries untouched
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.fit["elasticity"] == 0.5


def test_timings_at_the_profiles_own_speed_cannot_choose_an_elasticity(small):
    from widthnas.latency.host_state import calibrate_elasticity

    truth, base = synthetic(small, 50, 1)
    same, _ = elastic_host(truth, base.widths, 0.5, seed=1, spread=0.0)
    ref0 = float(np.median(same.ref_ms))
    with pytest.raises(ValueError, match="within 2 % of the profile's reference speed"):
        calibrate_elasticity(truth.predict_many(base.widths), same.norm, same.ref_ms, ref0, (0.0, 0.5))


@pytest.mark.parametrize("text", ["-0.1", "2.5", "nan", "fast"])
def test_validate_refuses_a_bad_elasticity(text):
    from widthnas.nas.checks import UserError
    from widthnas.nas.commands.validate import parse_elasticity

    with pytest.raises(UserError, match="--elasticity"):
        parse_elasticity(text)
    assert parse_elasticity("auto") == "auto" and parse_elasticity("0.5") == 0.5


def test_a_timing_at_an_unfitted_host_speed_is_noted():
    from widthnas.latency.host_state import speed_note

    assert speed_note({"elasticity": 0.5, "host_speed_range": [0.9, 1.2]}, 1.15) is None
    assert "1.25 x its profiled time" in speed_note({"elasticity": 0.5, "host_speed_range": [0.9, 1.2]}, 1.25)
    assert speed_note({}, 1.03) is None and "widthnas ladder" in speed_note({}, 1.19)  # old profiles: ±5 %


def test_a_reference_far_off_its_profiled_time_is_another_machine():
    """The host's slow spells reached 1.31 x; machines behind one device key ran 0.53 x and 1.84 x."""
    from widthnas.latency.host_state import OTHER_MACHINE, machine_note

    for s in (1.0, 1.31, 1 / 1.31, OTHER_MACHINE, 1 / OTHER_MACHINE):
        assert machine_note(s, 6.92) is None
    for s in (0.53, 1.84):
        note = machine_note(s, 6.92)
        assert f"ran {s:.2f} x its profiled 6.92 ms" in note and "widthnas profile" in note


def test_a_verification_says_its_host_note_once_with_the_speeds_it_saw():
    """15 repeated timings of one network each named their own host speed: 15 lines for one fact."""
    from widthnas.latency.host_state import machine_note
    from widthnas.nas.verify import host_notes

    speeds = [1.55, 2.42, 2.05, 1.3, 2.3]  # one within 1.4 x: not noted
    recs = [{"host_speed": s, "host_note": machine_note(s, 0.0927)} for s in speeds]
    for r in recs:
        r["machine_note"] = r["host_note"]
    other, speed = host_notes(recs)
    assert speed is None and "ran 2.30 x its profiled 0.0927 ms" in other  # the upper median of the four noted
    assert "(4 of 5 timings noted; the reference ran 1.30-2.42 x" in other
    assert host_notes([{"host_speed": 1.0, "host_note": None}]) == (None, None)
    assert host_notes(recs[:1]) == (recs[0]["host_note"], None)  # one timing: its note as it is
