"""Today's latency check reused (latency/check_cache.py): only the same profile, networks, protocol,
host and day, and only while the reference runs at the cached check's speed."""
import datetime as dt
import json

import numpy as np
import pytest

from widthnas.latency import check_cache as cc

NOW = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.timezone.utc)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cc.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "checks"


def fake_check(samples, calls, speed=1.0):
    """A check that writes a samples file and returns figures, counting its calls."""
    def run():
        calls.append(samples)
        samples.write_text('{"header": 1}\n{"ms": 0.1}\n')
        meas, pred = np.array([0.10, 0.20, 0.30]), np.array([0.11, 0.19, 0.30])
        return ({"n": 3, "rmse": 0.01, "nrmse": 0.05, "rmspe": 0.06, "within_5": 1 / 3, "within_10": 1.0,
                 "kendall_tau": 1.0, "median_abs_rel": 0.05, "host_speed": speed, "machine_note": None}, meas, pred)
    return run


def test_a_check_is_reused_the_same_day_at_the_same_speed_only(cache, tmp_path):
    calls, logs = [], []
    m, meas, pred = cc.cached_check("k", fake_check(tmp_path / "a.jsonl", calls), tmp_path / "a.jsonl",
                                    lambda: 1.0, 0.5, logs.append, NOW)
    assert len(calls) == 1 and "reused" not in m and (cache / "k.json").exists()
    later = NOW + dt.timedelta(hours=5)
    m2, meas2, pred2 = cc.cached_check("k", fake_check(tmp_path / "b.jsonl", calls), tmp_path / "b.jsonl",
                                       lambda: 1.05, 0.5, logs.append, later)
    assert len(calls) == 1  # nothing timed
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()  # the run gets the timings
    assert np.array_equal(meas2, meas) and np.array_equal(pred2, pred)
    assert {k: v for k, v in m2.items() if k not in ("reused", "host_speed")} == {k: v for k, v in m.items() if k != "host_speed"}
    assert m2["host_speed"] == 1.05 and m2["reused"] == {"made": NOW.isoformat(timespec="seconds"),
                                                         "host_speed_then": 1.0, "host_speed_now": 1.05}
    # the other machine kind (2 x apart), another day, another key: timed again
    cc.cached_check("k", fake_check(tmp_path / "c.jsonl", calls), tmp_path / "c.jsonl", lambda: 2.0, 0.5, logs.append,
                    later)
    assert len(calls) == 2 and any("another machine kind" in l for l in logs)
    cc.cached_check("k", fake_check(tmp_path / "d.jsonl", calls, 2.0), tmp_path / "d.jsonl", lambda: 2.0, 0.5,
                    logs.append, NOW + dt.timedelta(days=1))
    assert len(calls) == 3
    cc.cached_check("other", fake_check(tmp_path / "e.jsonl", calls), tmp_path / "e.jsonl", lambda: 1.0, 0.5,
                    logs.append, NOW)
    assert len(calls) == 4
    # a samples file already in the run: a check under way, resumed, never replaced by the cache's
    (tmp_path / "f.jsonl").write_text("partial\n")
    cc.cached_check("k", fake_check(tmp_path / "f.jsonl", calls), tmp_path / "f.jsonl", lambda: 1.0, 0.5,
                    logs.append, NOW)
    assert len(calls) == 5


def test_a_reused_check_on_another_machine_still_says_so(cache, tmp_path):
    calls = []
    cc.cached_check("k", fake_check(tmp_path / "a.jsonl", calls, speed=2.2), tmp_path / "a.jsonl", lambda: 2.2, 0.5,
                    print, NOW)
    m, _, _ = cc.cached_check("k", fake_check(tmp_path / "b.jsonl", calls), tmp_path / "b.jsonl", lambda: 2.25, 0.5,
                              print, NOW)
    assert len(calls) == 1 and "not the machine the profile was made on" in m["machine_note"]


@pytest.mark.parametrize("damage, said", [
    (lambda d: "{not json", "does not read back"),
    (lambda d: json.dumps({**d, "metrics": {**d["metrics"], "within_10": 1.5}}), "within_10 1.5"),
    (lambda d: json.dumps({**d, "measured_ms": [0.1, float("nan"), 0.3]}), "positive finite ms"),
    (lambda d: json.dumps({**d, "predicted_ms": [0.1, 0.2]}), "number of networks"),
    (lambda d: json.dumps({**d, "metrics": {**d["metrics"], "host_speed": -1}}), "host_speed -1"),
    (lambda d: json.dumps({**d, "samples": ""}), "no samples"),
    (lambda d: json.dumps({**d, "format": "other/9"}), "format 'other/9'"),
])
def test_a_damaged_cached_check_is_said_and_timed_again(cache, tmp_path, damage, said):
    calls, logs = [], []
    cc.cached_check("k", fake_check(tmp_path / "a.jsonl", calls), tmp_path / "a.jsonl", lambda: 1.0, 0.5, print, NOW)
    f = cache / "k.json"
    f.write_text(damage(json.loads(f.read_text())))
    m, _, _ = cc.cached_check("k", fake_check(tmp_path / "b.jsonl", calls), tmp_path / "b.jsonl", lambda: 1.0, 0.5,
                              logs.append, NOW)
    assert len(calls) == 2 and "reused" not in m
    assert any(said in l and "timing a new one" in l for l in logs), logs


def test_the_key_changes_with_the_profile_the_networks_and_the_protocol(tmp_path):
    p = tmp_path / "p.json"
    p.write_text('{"a": 1}')
    dev = {"cpu": "x", "threads": 1}
    k = cc.check_key(p, dev, 40, 77, {"rounds": 3})
    assert k == cc.check_key(p, dict(dev), 40, 77, {"rounds": 3})
    assert len({k, cc.check_key(p, {**dev, "threads": 2}, 40, 77, {"rounds": 3}), cc.check_key(p, dev, 41, 77, {"rounds": 3}),
                cc.check_key(p, dev, 40, 78, {"rounds": 3}), cc.check_key(p, dev, 40, 77, {"rounds": 5})}) == 5
    p.write_text('{"a": 2}')  # a profile re-fitted under the same name
    assert cc.check_key(p, dev, 40, 77, {"rounds": 3}) != k
