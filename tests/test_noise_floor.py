"""The measured noise floor: held-out networks timed again by the same protocol (latency.noise_floor),
beside the model's error in `fit --heldout` and `validate`, and recorded in the profile. All on the
simulated machine (conftest.FakeBackend), so the true noise and the true latency are known."""
import json
import math

import numpy as np
import pytest

from widthnas.latency import noise_floor as nf
from widthnas.latency import standalone_runner as sr
from widthnas.latency.profile import profile
from widthnas.latency.samples import load_samples


def _heldout(fakes, space, tmp_path, n=30, session_noise=0.0, extra=0.0, seed=0, name="h.jsonl"):
    be = fakes.Backend(space, fakes.Machine(noise=0.002, seed=seed), fakes.truth(space, extra), session_noise, seed)
    profile(space, tmp_path / name, n, be, "uniform", seed=7 + seed, progress=False)
    return be, load_samples(str(tmp_path / name), space)


@pytest.mark.parametrize("n", [0, 3, 30, np.int64(5)])
def test_check_count_accepts(n):
    assert nf.check_count(n) == int(n)


@pytest.mark.parametrize("n", [1, 2, -1, True, 2.5, "10"])
def test_check_count_refuses_with_what_to_do(n):
    with pytest.raises(ValueError, match="give 0 to skip the noise floor, or at least 3"):
        nf.check_count(n)


def test_floor_metrics_by_hand():
    m = nf.floor_metrics(np.array([1.0, 1.0, 1.0, 1.0]), np.array([1.02, 0.98, 1.0, 1.06]))
    assert m["n"] == 4 and m["within_5"] == 0.75 and m["within_10"] == 1.0
    assert m["rmspe"] == pytest.approx(math.sqrt((0.02 ** 2 * 2 + 0.06 ** 2) / 4))
    assert m["per_measurement_rmspe"] == pytest.approx(m["rmspe"] / math.sqrt(2))


@pytest.mark.parametrize("model,noise,by", [(0.03, 0.028, "measurement"), (0.05, 0.01, "model"),
                                            (0.0, 0.01, "measurement")])
def test_limiting_says_which_dominates(model, noise, by):
    got = nf.limiting(model, {"per_measurement_rmspe": noise})
    assert got["limited_by"] == by and got["verdict"].startswith(f"the {by} limits")
    assert 0 <= got["noise_share"] <= 1 and got["model_rmspe_est"] <= model + 1e-12


def test_remeasure_times_the_same_networks_and_resumes(fakes, tiny, tmp_path):
    be, h = _heldout(fakes, tiny, tmp_path, n=12)
    out = tmp_path / "re.jsonl"
    first = nf.remeasure(h, 4, be, out)
    opened = be.opened
    recs = nf.remeasure(h, 8, be, out)  # a rerun continues: only the 4 new ones are measured (plus the reference)
    assert be.opened - opened == 4 + 1 and recs[:4] == first
    assert [r["widths"] for r in recs] == h.widths[:8].tolist() and [r["remeasure_of"] for r in recs] == list(range(8))
    header, on_disk, _ = sr.read_samples(str(out))
    assert header["remeasure"] is True and header["settings"] == h.header["settings"] and len(on_disk) == 8
    assert nf.remeasure(h, 8, be, out) == recs and be.opened - opened == 5  # nothing left to measure
    _, other = _heldout(fakes, tiny, tmp_path, n=12, seed=3, name="other.jsonl")
    with pytest.raises(ValueError, match="re-measurements of other networks"):
        nf.remeasure(other, 8, be, out)


def _twice(norm, ref_ms):
    """ms of a profile whose reference takes 2 ms, without host-state correction."""
    return np.asarray(norm, float) * 2.0


def test_the_floor_finds_the_session_noise(fakes, tiny, tmp_path):
    be, h = _heldout(fakes, tiny, tmp_path, n=40, session_noise=0.04)
    floor = nf.measure_floor(h, 40, tiny, _twice, be)
    assert floor["n"] == 40 and floor["requested"] == 40 and floor["disturbed"] == 0
    assert 0.025 < floor["per_measurement_rmspe"] < 0.06  # one measurement's noise is 4 %
    assert floor["protocol"] == sr.Protocol.from_settings(h.header["settings"]).settings()
    be, h = _heldout(fakes, tiny, tmp_path, n=10, name="quiet.jsonl")
    quiet = nf.measure_floor(h, 30, tiny, _twice, be)  # more asked than held out: all of them
    assert quiet["n"] == quiet["requested"] == 10 and quiet["per_measurement_rmspe"] < 0.005 and quiet["within_5"] == 1


def test_the_floor_is_only_measured_on_the_device_that_measured_the_samples(tiny, tmp_path):
    device = sr.device_info("onnxruntime", "CPUExecutionProvider", 1, 1, "all", "0")
    with pytest.raises(nf.FloorUnavailable, match="another device.*cpu"):
        nf.backend_for(tiny, {**device, "cpu": "Some ARM board"})
    with pytest.raises(nf.FloorUnavailable, match="cannot run here"):
        nf.backend_for(tiny, {**device, "provider": "CUDAExecutionProvider"})


@pytest.mark.parametrize("floor,msg", [("x", "expected an object"), ({"per_measurement_rmspe": float("nan")}, "nan"),
                                       ({"per_measurement_rmspe": 0.01, "rmspe": 1.5, "nrmse": 0.01}, "rmspe")])
def test_read_floor_names_a_broken_record(floor, msg):
    with pytest.raises(ValueError, match=msg):
        nf.read_floor({"noise_floor": floor}, "profile p.json")
    assert nf.read_floor({}) is None and nf.read_floor({"table": {}}) is None


# ---- the CLI: fit --heldout and validate report the floor beside the model -----------------------------
@pytest.fixture
def fake_cli(fakes, tiny, tmp_path, monkeypatch):
    """samples and held-out files of `tiny` on the simulated machine, and the CLI's re-measurements routed to it."""
    def make(session_noise: float, extra: float, train_noise: float = 0.0):
        machine = fakes.Machine(noise=0.002)
        truth = fakes.truth(tiny, extra)
        train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
        profile(tiny, train, 40, fakes.Backend(tiny, machine, truth, train_noise), "coverage", seed=1, progress=False)
        be = fakes.Backend(tiny, machine, truth, session_noise, seed=1)
        profile(tiny, held, 16, be, "uniform", seed=1000, progress=False)
        monkeypatch.setattr(nf, "backend_for", lambda space, device: be)
        return train, held
    return make


def _fit(train, held, out, *extra):
    from widthnas.nas.cli import main

    return main(["fit", "--samples", str(train), "--heldout", str(held), "--out", str(out), "--folds", "2", *extra])


def test_fit_reports_a_measurement_limited_profile(fake_cli, tmp_path, capsys):
    train, held = fake_cli(session_noise=0.04, extra=0.0)  # a table-shaped device, its held-out networks timed noisily
    prof = tmp_path / "p.json"
    assert _fit(train, held, prof, "--remeasure", "12") == 0
    out = capsys.readouterr().out
    assert "re-measured" in out and "second vs first measurement" in out and "limits: the measurement limits" in out
    v = json.loads(prof.read_text())["validation"]
    f = v["noise_floor"]
    assert f["n"] == 12 and f["limited_by"] == "measurement" and 0 < f["per_measurement_rmspe"] < 0.1
    assert set(v["heldout_quality"]) == {"unsettled", "disturbed", "remeasured"}


def test_fit_reports_a_model_limited_profile_and_the_margin_uses_the_floor(fake_cli, tmp_path, capsys):
    from widthnas.latency.margin import auto_margin_pct
    from widthnas.latency.registry import load_profile

    train, held = fake_cli(session_noise=0.0, extra=3.0)  # quiet timing, but an interaction no table holds
    prof = tmp_path / "p.json"
    assert _fit(train, held, prof, "--remeasure", "5") == 0
    assert "limits: the model limits" in capsys.readouterr().out
    table = load_profile(prof)
    v = table.validation
    pct, how = auto_margin_pct(table)
    err, noise = v["table"]["rmspe"], v["noise_floor"]["per_measurement_rmspe"]
    assert pct == pytest.approx(min(200 * math.hypot(err, noise), 20), abs=0.01) and "re-measurement noise" in how
    assert _fit(train, held, tmp_path / "q.json", "--remeasure", "0") == 0
    assert "noise_floor" not in json.loads((tmp_path / "q.json").read_text())["validation"]
    assert "re-measured" not in capsys.readouterr().out


def test_validate_records_the_floor_only_where_asked(fake_cli, tmp_path, capsys, monkeypatch):
    from widthnas.latency import registry
    from widthnas.nas.cli import main

    train, held = fake_cli(session_noise=0.02, extra=0.0)
    prof = tmp_path / "p.json"
    assert _fit(train, held, prof, "--remeasure", "0") == 0
    before = prof.read_bytes()
    js, new = tmp_path / "v.json", tmp_path / "p2.json"
    assert main(["validate", "--profile", str(prof), "--samples", str(held), "--remeasure", "6", "--json", str(js),
                 "--remeasure-out", str(tmp_path / "re.jsonl")]) == 0
    assert json.loads(js.read_text())["noise_floor"]["n"] == 6 and prof.read_bytes() == before  # no --out: unchanged
    assert main(["validate", "--profile", str(prof), "--samples", str(held), "--remeasure", "6", "--out", str(new),
                 "--remeasure-out", str(tmp_path / "re.jsonl")]) == 0  # the kept re-measurements are reused
    v = json.loads(new.read_text())["validation"]
    assert v["noise_floor"]["n"] == 6 and "limits:" in capsys.readouterr().out
    assert v["command"].startswith(f"widthnas validate --profile {prof}")
    # refusals, before anything is measured or written
    for args, msg in [(["--out", str(held)], "input files"), (["--remeasure-out", str(held)], "input files"),
                      (["--remeasure-out", str(prof)], "input files"), (["--remeasure", "2"], "at least 3"),
                      (["--json", str(held)], "input files"), (["--out", str(new), "--remeasure-out", str(new)],
                                                               "input files"),
                      (["--remeasure", "0", "--remeasure-out", str(tmp_path / "r2.jsonl")], "needs --remeasure")]:
        assert main(["validate", "--profile", str(prof), "--samples", str(held), *args]) == 2
        assert msg in capsys.readouterr().err
    assert _fit(train, held, train) == 2 and "input files" in capsys.readouterr().err
    from widthnas.nas.cli import main as cli

    assert cli(["fit", "--samples", str(train), "--out", str(tmp_path / "z.json"), "--remeasure-out",
                str(tmp_path / "z.jsonl")]) == 2 and "give --heldout too" in capsys.readouterr().err
    assert json.loads(train.read_text().splitlines()[0])["type"] == "header"  # the samples survived
    shipped = tmp_path / "hw_profiles"
    shipped.mkdir()
    monkeypatch.setattr(registry, "PROFILE_DIR", shipped)
    target = shipped / "device.json"
    target.write_bytes(before)
    assert main(["validate", "--profile", str(prof), "--samples", str(held), "--remeasure", "0", "--out",
                 str(target)]) == 2
    assert "shipped" in capsys.readouterr().err and target.read_bytes() == before
    assert main(["validate", "--profile", str(prof), "--samples", str(held), "--remeasure", "0", "--out",
                 str(target), "--force"]) == 0


def test_validate_without_the_device_says_so_and_still_judges(fakes, tiny, tmp_path, capsys):
    from widthnas.nas.cli import main

    be = fakes.Backend(tiny, fakes.Machine(noise=0.002))
    profile(tiny, tmp_path / "t.jsonl", 40, be, progress=False)
    profile(tiny, tmp_path / "h.jsonl", 10, be, "uniform", seed=5, progress=False)
    assert _fit(tmp_path / "t.jsonl", tmp_path / "h.jsonl", tmp_path / "p.json", "--remeasure", "0") == 0
    assert main(["validate", "--profile", str(tmp_path / "p.json"), "--samples", str(tmp_path / "h.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "noise floor: not measured" in out and "cannot run here" in out and "NRMSE" in out


def test_a_cached_re_measurement_without_a_reference_time_is_left_out(fakes, tiny, tmp_path):
    """A resumed re-measure file whose record lost its ref_ms: the floor leaves it out, not a KeyError."""
    be, h = _heldout(fakes, tiny, tmp_path, n=8)
    out = tmp_path / "re.jsonl"
    nf.remeasure(h, 6, be, out)
    lines = out.read_text().splitlines()
    rec = json.loads(lines[2])  # the second record (line 0 is the header)
    del rec["ref_ms"]
    lines[2] = json.dumps(rec)
    out.write_text("\n".join(lines) + "\n")
    floor = nf.measure_floor(h, 6, tiny, lambda norm, ref_ms: np.asarray(norm) * 2.0, be, out=out)
    assert floor["requested"] == 6 and floor["n"] == 5
