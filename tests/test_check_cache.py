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


def fake_check(samples, timed, speed=1.0):
    """latency_check's contract: a complete samples file is read without timing; else networks are timed
    into it (counted in `timed`). The figures are computed from the file, as load_samples would."""
    def run():
        if not samples.exists():
            timed.append(samples)
            samples.write_text(json.dumps({"speed": speed, "ms": [0.10, 0.20, 0.30]}) + "\n")
        d = json.loads(samples.read_text())
        meas = np.array(d["ms"])
        return ({"n": len(meas), "within_10": 1.0, "nrmse": 0.05, "host_speed": d["speed"], "machine_note": None},
                meas, meas * 1.1)
    return run


def check(name, tmp_path, timed, speed_now, when=NOW, speed=1.0, logs=None, key="k"):
    s = tmp_path / f"{name}.jsonl"
    return cc.cached_check(key, fake_check(s, timed, speed), s, lambda: speed_now, 0.5,
                           (logs.append if logs is not None else print), when)


def test_a_check_is_reused_the_same_day_at_the_same_speed_only(cache, tmp_path):
    timed, logs = [], []
    m, meas, pred = check("a", tmp_path, timed, 1.0)
    assert len(timed) == 1 and "reused" not in m and (cache / "k.json").exists()
    later = NOW + dt.timedelta(hours=5)
    m2, meas2, pred2 = check("b", tmp_path, timed, 1.05, later)
    assert len(timed) == 1  # nothing timed
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()  # the run gets the timings
    assert np.array_equal(meas2, meas) and np.array_equal(pred2, pred)
    assert m2["host_speed"] == 1.05 and m2["reused"] == {"made": NOW.isoformat(timespec="seconds"),
                                                         "host_speed_then": 1.0, "host_speed_now": 1.05}
    # the other machine kind (2 x apart): timed, and kept beside the first kind's check
    check("c", tmp_path, timed, 2.0, later, speed=2.0, logs=logs)
    assert len(timed) == 2 and any("another machine kind" in l and "timing a new one" in l for l in logs)
    assert check("d", tmp_path, timed, 2.1, later)[0]["reused"]["host_speed_then"] == 2.0
    assert check("e", tmp_path, timed, 0.98, later)[0]["reused"]["host_speed_then"] == 1.0
    assert len(timed) == 2
    check("f", tmp_path, timed, 1.0, NOW + dt.timedelta(days=1))  # another day (UTC)
    check("g", tmp_path, timed, 1.0, key="other")  # another profile, network set, protocol or host
    assert len(timed) == 4
    # a samples file already in the run: a check under way, resumed, never replaced by the cache's
    (tmp_path / "h.jsonl").write_text(json.dumps({"speed": 1.0, "ms": [0.5]}) + "\n")
    m, meas, _ = check("h", tmp_path, timed, 1.0)
    assert list(meas) == [0.5] and "reused" not in m and len(timed) == 4


def test_a_reused_check_on_another_machine_still_says_so(cache, tmp_path):
    timed = []
    check("a", tmp_path, timed, 2.2, speed=2.2)
    m, _, _ = check("b", tmp_path, timed, 2.25)
    assert len(timed) == 1 and "not the machine the profile was made on" in m["machine_note"]


def test_a_noisy_level_found_while_timing_is_kept_with_the_check_and_given_back_when_reused(cache, tmp_path, monkeypatch):
    """latency_check_today times the check with the caller's guard (down to profile()); the level it learnt
    (a host noisy by nature) goes into the metrics and the cache, and a reused check gives it back."""
    import types

    from widthnas.latency import check as check_mod
    from widthnas.latency import profile as profile_mod
    from widthnas.latency.standalone_runner import LoadGuard

    class Got(Exception):
        pass

    def no_timing(*a, guard=None, **kw):
        raise Got(guard)

    monkeypatch.setattr(profile_mod, "profile", no_timing)
    g, table = LoadGuard(), types.SimpleNamespace(space=None, reference_ms=0.5)
    with pytest.raises(Got) as got:
        cc.latency_check_today(table, "p.json", None, tmp_path / "x.jsonl", 3, 0, None, reuse=False, guard=g)
    assert got.value.args[0] is g
    timed = []

    def learnt(table, backend, path, *a, guard=None, **kw):
        guard.noisy_spread = 0.31
        return fake_check(path, timed)()

    monkeypatch.setattr(check_mod, "latency_check", learnt)
    monkeypatch.setattr(cc, "check_key", lambda *a: "k")
    be = types.SimpleNamespace(device_info=lambda: {})
    proto = types.SimpleNamespace(settings=lambda: {})
    m = cc.latency_check_today(table, "p.json", be, tmp_path / "a.jsonl", 3, 0, proto, speed_now=lambda: 1.0,
                               guard=LoadGuard())[0]
    assert m["noisy_spread"] == 0.31 and json.loads((cache / "k.json").read_text())["entries"][0]["noisy_spread"] == 0.31
    monkeypatch.setattr(check_mod, "latency_check", lambda *a, **kw: fake_check(tmp_path / "b.jsonl", timed)())
    m = cc.latency_check_today(table, "p.json", be, tmp_path / "b.jsonl", 3, 0, proto, speed_now=lambda: 1.0,
                               guard=LoadGuard())[0]
    assert m["reused"] and m["noisy_spread"] == 0.31 and len(timed) == 1


@pytest.mark.parametrize("damage, said", [
    (lambda d: "{not json", "Expecting property name"),
    (lambda d: "[]", "not a widthnas-check/2 file"),
    (lambda d: json.dumps({**d, "format": "widthnas-check/1"}), "not a widthnas-check/2 file"),
    (lambda d: json.dumps({**d, "entries": [{**d["entries"][0], "host_speed": -1}]}), "1 entries without"),
    (lambda d: json.dumps({**d, "entries": [{**d["entries"][0], "host_speed": "1.0"}]}), "1 entries without"),
    (lambda d: json.dumps({**d, "entries": [{**d["entries"][0], "host_speed": float("nan")}]}), "1 entries without"),
    (lambda d: json.dumps({**d, "entries": [{k: v for k, v in d["entries"][0].items() if k != "made"}]}), "1 entries"),
    (lambda d: json.dumps({**d, "entries": [{**d["entries"][0], "samples": ""}]}), "1 entries without"),
    (lambda d: json.dumps({**d, "entries": ["x"]}), "1 entries without"),
    (lambda d: json.dumps({**d, "entries": [{**d["entries"][0], "noisy_spread": 0.9}]}), "1 entries without"),
])
def test_a_damaged_cached_check_is_said_and_timed_again(cache, tmp_path, damage, said):
    timed, logs = [], []
    check("a", tmp_path, timed, 1.0)
    f = cache / "k.json"
    f.write_text(damage(json.loads(f.read_text())))
    m, _, _ = check("b", tmp_path, timed, 1.0, logs=logs)
    assert len(timed) == 2 and "reused" not in m
    assert any(said in l and "does not read back" in l and "timing a new one" in l for l in logs), logs
    assert "reused" in check("c", tmp_path, timed, 1.0)[0]  # and the new check took its place


def test_a_cache_that_cannot_be_written_never_stops_the_check(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv(cc.CACHE_ENV, str(blocker))
    timed, logs = [], []
    m, _, _ = check("a", tmp_path, timed, 1.0, logs=logs)
    assert len(timed) == 1 and m["n"] == 3 and any("could not keep it" in l for l in logs)


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


def test_a_shipped_profile_given_by_name_has_a_key(tmp_path):
    """`search --profile <shipped name>` on another machine kind: the check's key reads the shipped file."""
    from widthnas.latency.registry import PROFILE_DIR, profile_path, shipped_profiles

    shipped = shipped_profiles()[0]
    assert profile_path(shipped.stem) == PROFILE_DIR / shipped.name
    assert profile_path(str(shipped)) == shipped
    assert cc.check_key(profile_path(shipped.stem), {}, 40, 77, {}) == cc.check_key(shipped, {}, 40, 77, {})
    assert not profile_path(tmp_path / "none.json").exists()  # a missing file stays missing: load_profile says so
