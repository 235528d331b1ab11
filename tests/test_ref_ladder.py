"""The ladder of reference networks (latency/ref_ladder.py): rung choice, bracketing, the profile field,
timing it only on a host at its profiled speed, and reading a network's latency off it on a slow host
where the single reference misreads narrow networks."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from widthnas.latency import ref_ladder as rl
from widthnas.latency import standalone_runner as sr
from widthnas.latency.sampling import make_sampler


def _truth(space):
    """A latency (ms) that grows with every layer's width, so uniform networks order by multiplier."""
    def ms(widths):
        return 0.02 + 1e-5 * sum(int(a) * int(b) for a, b in zip([space.input_shape[0]] + list(widths), widths))
    return ms


def test_rungs_span_the_space_in_ratio_and_leave_out_the_reference(small):
    pred = _truth(small)
    ref = pred(small.reference_widths)
    for n in (2, 5, 8):
        ws = rl.ladder_widths(small, pred, n)
        r = [pred(w) / ref for w in ws]
        assert 2 <= len(ws) <= n and r == sorted(r) and len({tuple(w) for w in ws}) == len(ws)
        assert small.reference_widths not in ws and all(abs(math.log(x)) > 0.05 for x in r)
        assert math.isclose(r[0], pred(small.min_widths) / ref) and math.isclose(r[-1], pred(small.max_widths) / ref)
        for w in ws:
            small.validate(w)
    with pytest.raises(ValueError, match="at least 2"):
        rl.ladder_widths(small, pred, 1)


def test_bracket_matches_a_linear_scan():
    rng = np.random.default_rng(0)
    ratios = sorted(rng.uniform(0.1, 3, 6).tolist() + [1.0])
    for r in rng.uniform(0.05, 4, 300):
        lo, hi, w = rl.bracket(ratios, r)
        if r <= ratios[0]:
            assert (lo, hi, w) == (0, 0, 0.0)
        elif r >= ratios[-1]:
            assert (lo, hi, w) == (len(ratios) - 1, len(ratios) - 1, 0.0)
        else:
            j = max(i for i, x in enumerate(ratios) if x <= r)
            assert (lo, hi) == (j, j + 1) and 0 <= w < 1
            assert math.isclose(math.exp((1 - w) * math.log(ratios[lo]) + w * math.log(ratios[hi])), r)


def test_bracket_at_rungs_and_repeated_ratios():
    ratios = [0.2, 0.5, 0.5, 1.0, 2.0]
    assert rl.bracket(ratios, 0.5) == (2, 3, 0.0)  # exactly on a rung: that rung, weight 0
    assert rl.bracket(ratios, 1.0) == (3, 4, 0.0)
    lo, hi, w = rl.bracket(ratios, 0.7)
    assert (lo, hi) == (2, 3) and 0 < w < 1  # the repeated ratio never makes an empty interval
    assert rl.bracket(ratios, 2.0) == (4, 4, 0.0) and rl.bracket(ratios, 0.2) == (0, 0, 0.0)


def test_a_ladder_that_does_not_belong_to_its_table_is_refused_at_load(small, tmp_path):
    from widthnas.latency.table import LatencyTable, ProfileError

    pred = _truth(small)
    ws = rl.ladder_widths(small, pred, 3)
    ok = {"rungs": [{"widths": w, "ratio": pred(w) / pred(small.reference_widths)} for w in ws]}
    assert len(rl.read_ladder({"ref_ladder": ok}, small, predict=pred)) == len(ws) + 1
    swapped = {"rungs": [dict(r, ratio=ok["rungs"][-1 - i]["ratio"]) for i, r in enumerate(ok["rungs"])]}
    with pytest.raises(ValueError, match="which the table predicts faster.*does not belong to this table"):
        rl.read_ladder({"ref_ladder": swapped}, small, predict=pred)
    far = {"rungs": ok["rungs"][:-1] + [dict(ok["rungs"][-1], ratio=ok["rungs"][-1]["ratio"] * 10)]}  # in order
    with pytest.raises(ValueError, match="the table predicts .*does not belong to this table"):
        rl.read_ladder({"ref_ladder": far}, small, predict=pred)
    for bad, what in (({"rungs": []}, "malformed"), ({"rungs": [{"widths": small.reference_widths, "ratio": 1.0}]},
                                                     "reference as a rung"),
                      ({"rungs": [ok["rungs"][0], ok["rungs"][0]]}, "twice")):
        with pytest.raises(ValueError, match=what):
            rl.read_ladder({"ref_ladder": bad}, small)
    # the shipped small profile loads with its ladder; the same profile with a rung's ratio doubled does not
    from widthnas.latency.registry import PROFILE_DIR

    d = json.loads((PROFILE_DIR / "amd-epyc-2c_ort-cpu-1t-b1_mobilenet_v1_small.json").read_text())
    assert rl.read_ladder(LatencyTable.from_dict(d).fit, small) is not None
    d["fit"]["ref_ladder"]["rungs"][0]["ratio"] *= 2
    with pytest.raises(ProfileError, match="does not belong"):
        LatencyTable.from_dict(d, "p.json")


def test_the_profile_field_is_checked_and_the_reference_is_a_rung(small):
    assert rl.read_ladder({}, small) is None
    good = {"ref_ladder": {"rungs": [{"widths": small.max_widths, "ratio": 2.0},
                                     {"widths": small.min_widths, "ratio": 0.2}]}}
    rungs = rl.read_ladder(good, small)
    assert [r["ratio"] for r in rungs] == [0.2, 1.0, 2.0] and rungs[1]["widths"] == small.reference_widths
    for bad, what in ((-1.0, "ratio"), (float("nan"), "ratio"), (True, "ratio")):
        d = {"ref_ladder": {"rungs": [{"widths": small.min_widths, "ratio": bad}]}}
        with pytest.raises(ValueError, match=what):
            rl.read_ladder(d, small)
    with pytest.raises(ValueError, match="malformed"):
        rl.read_ladder({"ref_ladder": {"rungs": [{"widths": [1, 2], "ratio": 0.5}]}}, small)
    with pytest.raises(ValueError, match="malformed"):
        rl.read_ladder({"ref_ladder": {"rungs": "x"}}, small)


class SlowHost:
    """A simulated host: a network of `ms` at the profile's speed runs ms x s x (ms / ref_ms)**-e, so
    narrow networks slow more than the reference (e > 0), as on this machine (RESULTS §2.2b)."""

    def __init__(self, ref_ms: float, s: float = 1.0, e: float = 0.0, noise: float = 0.002, seed: int = 0):
        self.t, self.ref_ms, self.s, self.e, self.noise = 0.0, ref_ms, s, e, noise
        self.rng = np.random.default_rng(seed)

    def runner(self, ms: float):
        def run():
            f = self.s * (ms / self.ref_ms) ** -self.e * (1 + self.noise * self.rng.standard_normal())
            self.t += ms * f / 1e3
        return run

    def clock(self) -> float:
        return self.t


class HostBackend:
    def __init__(self, space, host: SlowHost, truth):
        self.space, self.host, self.truth, self.clock = space, host, truth, host.clock

    def sleep(self, s: float) -> None:
        self.host.t += s

    def open(self, widths):
        return self.host.runner(self.truth(widths))


class _Table:
    def __init__(self, space, truth, reference_ms):
        self.space, self.predict, self.reference_ms = space, truth, reference_ms


PROTOCOL = sr.Protocol(5, 5.0, max_rounds=20, guard=None)


def test_ladder_is_timed_only_at_the_profiled_speed(small):
    truth = _truth(small)
    ref_ms = truth(small.reference_widths)
    table = _Table(small, truth, ref_ms)
    lad = rl.measure_ladder(table, HostBackend(small, SlowHost(ref_ms), truth), PROTOCOL, rungs=4, repeats=3,
                            log=lambda m: None)
    for r in lad["rungs"]:  # on a host at its profiled speed a rung's ratio is its true one
        assert r["ratio"] == pytest.approx(truth(r["widths"]) / ref_ms, rel=0.01)
    assert 0.97 <= lad["host_speed"][0] <= lad["host_speed"][1] <= 1.03
    with pytest.raises(ValueError, match=r"1\.10.* x its profiled time.*nothing was written"):
        rl.measure_ladder(table, HostBackend(small, SlowHost(ref_ms, s=1.10), truth), PROTOCOL, rungs=4, repeats=3,
                          log=lambda m: None)
    with pytest.raises(ValueError, match="at least 3"):
        rl.measure_ladder(table, HostBackend(small, SlowHost(ref_ms), truth), PROTOCOL, repeats=2)


def test_a_slow_host_misreads_narrow_networks_off_the_reference_but_not_off_the_ladder(small):
    """Ladder timed on a quiet host; then networks timed on a host 20 % slower where narrow networks
    slow more. Off the reference alone they read several % slow (the §2.2b failure); off the ladder
    they read their true latency to within the interpolation's and the noise's error."""
    truth = _truth(small)
    ref_ms = truth(small.reference_widths)
    table = _Table(small, truth, ref_ms)
    lad = rl.measure_ladder(table, HostBackend(small, SlowHost(ref_ms, noise=0.0), truth), PROTOCOL, rungs=8,
                            repeats=3, log=lambda m: None)
    rungs = rl.read_ladder({"ref_ladder": lad}, small)
    host = SlowHost(ref_ms, s=1.2, e=0.1, noise=0.0, seed=1)
    ref = host.runner(ref_ms)
    sampler = make_sampler(small, "uniform", 3)
    err_ref, err_lad = [], []
    for _ in range(25):
        w = sampler.next()
        net = host.runner(truth(w))
        rec = sr.measure_sample(net, ref, PROTOCOL, clock=host.clock)
        by_ref = rec["norm"] * ref_ms  # what plain normalisation reads
        est = rl.ladder_estimate(net, rec["norm"], rungs, ref_ms, lambda ws: host.runner(truth(ws)), PROTOCOL,
                                 clock=host.clock)
        err_ref.append(by_ref / truth(w) - 1)
        err_lad.append(est["ms"] / truth(w) - 1)
        # brute force: on this host a network's ratio to a rung now is (truth ratio) ** (1 - e)
        assert 1 <= len(est["rungs"]) <= 2 and est["unsettled"] == 0
        for u in est["rungs"]:
            rung_ms = u["rung_ratio"] * ref_ms  # the rung's latency at the profiled speed (timed without noise)
            assert u["norm_to_rung"] == pytest.approx((truth(w) / rung_ms) ** (1 - host.e), rel=1e-3)
    err_ref, err_lad = np.abs(err_ref), np.abs(err_lad)
    assert err_ref.max() > 0.03  # the single reference misreads some network by more than 3 %
    assert err_lad.max() < 0.01 and err_lad.mean() < err_ref.mean() / 5


def test_widthnas_ladder_writes_the_field_and_verification_reads_off_it(tiny, tmp_path, capsys):
    """The CLI end to end on this machine: a profile of the tiny space whose reference time is this
    machine's, its ladder timed, an exported network verified off it; a profile whose reference time
    is half of this machine's is refused, and nothing is written."""
    from widthnas.latency.backends import make_backend
    from widthnas.latency.entries import GraphEntries
    from widthnas.latency.onnx_graph import space_onnx
    from widthnas.latency.table import LatencyTable
    from widthnas.nas.export import measure_exported

    be = make_backend(tiny)
    truth = _truth(tiny)
    ref = be.open(tiny.reference_widths)
    rec = sr.measure_sample(be.open(tiny.min_widths), ref, sr.Protocol(7, 20.0, max_rounds=28, guard=None))
    # a table that orders uniform networks by width, with the fixed cost of these tiny ones: per op, (c_in +
    # c_out) x 2e-5 ms on the stem, the pointwise convs and the classifier (the depthwise convs and the pool free)
    costs = np.array([0.0 if k.signature.groups in ("dw", "none") else (k.c_in + k.c_out) * 2e-5
                      for k in GraphEntries(tiny, "op").keys])
    table = LatencyTable(tiny, costs, 0.02, rec["ref_ms"]["median"], be.device_info(), {}, {}, "tiny", "op")
    p = tmp_path / "tiny.json"
    table.save(p)
    out = tmp_path / "tiny_ladder.json"
    cmd = [sys.executable, "-m", "widthnas", "ladder", "--profile", str(p), "--out", str(out), "--rungs", "2",
           "--repeats", "3", "--tolerance", "30"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert len(d["fit"]["ref_ladder"]["rungs"]) == 1  # the widest tiny network is the reference
    before = json.loads(p.read_text())  # the profile copied unchanged, the ladder added to its fit
    assert {k: v for k, v in d.items() if k != "fit"} == {k: v for k, v in before.items() if k != "fit"}
    assert {k: v for k, v in d["fit"].items() if k != "ref_ladder"} == before["fit"] and d["signatures"]
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(space_onnx(tiny, tiny.min_widths).SerializeToString())
    m = measure_exported(onnx, LatencyTable.load(out))
    assert m["ladder"]["rungs"] and m["read_off"] == "ladder"
    assert m["normalised_ms"] == pytest.approx(m["reference_normalised_ms"], rel=0.15)  # a quiet host: both agree
    assert "ladder" not in measure_exported(onnx, table)  # no ladder: off the reference, as before
    # a host that runs at twice the profile's reference time is refused; nothing written
    d2 = json.loads(p.read_text())
    d2["reference_ms"] = rec["ref_ms"]["median"] / 2
    p2 = tmp_path / "half.json"
    p2.write_text(json.dumps(d2))
    r = subprocess.run(cmd[:5] + [str(p2), "--out", str(tmp_path / "no.json"), "--rungs", "2", "--repeats", "3",
                                  "--max-wait", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "its profiled time" in r.stderr and not (tmp_path / "no.json").exists()
    from widthnas.nas.cli import main  # the option checks in-process: no interpreter start per case

    for bad in (["--rungs", "1"], ["--repeats", "2"], ["--tolerance", "0"], ["--tolerance", "nan"], ["--max-wait", "-1"]):
        assert main(["ladder", "--profile", str(p), "--out", str(tmp_path / "no.json")] + bad) == 2
        assert bad[0] in capsys.readouterr().err and not (tmp_path / "no.json").exists()


def test_verdict_of_fixed_timings_agrees_with_the_sequential_verdict():
    from widthnas.latency.verdict import OVER, UNSURE, WITHIN, budget_verdict, verdict_of

    for ms, budget, want in (([1.0, 1.01, 0.99], 1.2, WITHIN), ([1.0, 1.01, 0.99], 0.8, OVER),
                             ([1.0, 1.2, 0.8], 1.05, UNSURE)):
        it = iter(ms)
        seq = budget_verdict(lambda: next(it), budget, 3, 3)
        v = verdict_of(ms, budget)
        assert v["verdict"] == seq["verdict"] == want and v["ci_low_ms"] == seq["ci_low_ms"]
    with pytest.raises(ValueError, match="at least 2"):
        verdict_of([1.0], 1.0)
