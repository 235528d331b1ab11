"""benchmarks/latency_accuracy.py, old protocol beside the new, on the simulated machine: its pieces
(options, turns, caches, the side-by-side table, shipping) without real timing."""
import json

import pytest

from widthnas.benchmarks import latency_accuracy as la


def test_turns_grow_to_the_total():
    assert la.chunks(25, 10) == [10, 20, 25] and la.chunks(20, 10) == [10, 20] and la.chunks(0, 10) == []


@pytest.mark.parametrize("kw,msg", [(dict(remeasure=300), "exceeds --heldout"), (dict(remeasure=2), "at least 3"),
                                    (dict(sizes=(100, 2000)), "--sizes"), (dict(sizes=(4,)), "--sizes"),
                                    (dict(protocols=("fixed", "fixed")), "each once"),
                                    (dict(protocols=("quick",)), "--protocols"),
                                    (dict(strategies=("grid",)), "--strategies"),
                                    (dict(round_ms=float("nan")), "--round-ms"), (dict(n=True), "--n"),
                                    (dict(chunk=0), "--chunk")])
def test_the_plan_refuses_what_cannot_run(kw, msg):
    with pytest.raises(ValueError, match=msg):
        la.Plan(**kw).check()


def test_options(capsys):
    a, plan = la.parse(["--smoke", "--space", "mobilenet_v1"])
    assert (plan.n, plan.heldout, plan.remeasure, plan.sizes, plan.protocols) == (40, 20, 8, (20, 40), la.PROTOCOLS)
    assert str(a.out) == "runs/bench_latency/mobilenet_v1_smoke" and plan.check() is plan
    _, plan = la.parse(["--n", "600", "--protocols", "adaptive"])
    assert plan.sizes == (100, 200, 400, 600) and plan.protocols == ("adaptive",)
    assert plan.protocol("adaptive").rounds_cap() == 5 * la.sr.ROUNDS_CAP and plan.protocol("fixed").rounds_cap() == 5
    assert plan.protocol("fixed").guard is None and plan.protocol("adaptive").guard is not None
    with pytest.raises(SystemExit):
        la.parse(["--sizes", "ten"])
    assert la.main(["--remeasure", "300"]) == 2 and "exceeds --heldout" in capsys.readouterr().err


def test_both_protocols_measure_fit_and_agree_with_themselves(fakes, tiny, tmp_path, monkeypatch):
    from widthnas.latency import registry
    from widthnas.latency.registry import load_profile

    be = fakes.Backend(tiny, fakes.Machine(noise=0.002), session_noise=0.01)
    plan = la.Plan(n=30, heldout=12, remeasure=6, sizes=(20, 30), chunk=10, folds=2).check()
    logs = []
    la.measure_all(tiny, tmp_path, be, plan, logs.append)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jsonl"))
    assert files == sorted(f"{p}/{f}.jsonl" for p in la.PROTOCOLS for f in ("coverage", "heldout", "remeasure"))
    held = {p: [json.loads(x) for x in (tmp_path / p / "heldout.jsonl").read_text().splitlines()] for p in la.PROTOCOLS}
    assert [r["widths"] for r in held["fixed"][1:]] == [r["widths"] for r in held["adaptive"][1:]]  # the same networks
    assert held["fixed"][0]["settings"]["guard"] is None and held["fixed"][0]["settings"]["max_rounds"] == 5
    assert held["adaptive"][0]["settings"]["guard"] is not None
    before = {f: (tmp_path / f).read_bytes() for f in files}
    la.measure_all(tiny, tmp_path, be, plan, logs.append)  # a rerun resumes: everything is there already
    assert {f: (tmp_path / f).read_bytes() for f in files} == before
    res = la.evaluate(tiny, tmp_path, be, plan, logs.append)
    assert {f: (tmp_path / f).read_bytes() for f in files} == before  # evaluating reads the re-measurement cache
    for proto in la.PROTOCOLS:
        r = res[proto]
        assert r["final"]["metrics"]["n"] == 12 and r["floor"]["n"] == 6
        assert r["floor"]["limited_by"] in ("model", "measurement")
        assert [x["train_n"] for x in r["rows"] if x["predictor"] == "table/coverage"] == [20, 30]
        assert r["timing"]["heldout"]["networks"] == 12 and r["timing"]["coverage"]["networks"] == 30
    table = la.side_by_side(res)
    assert len(table) == 4 and table[2].startswith("| fixed |") and table[3].startswith("| adaptive |")
    json.dumps(la._jsonable(res))
    prof = tmp_path / "p.json"
    assert la.ship(str(prof), res, plan, tiny, tmp_path, ["--smoke"]) == "adaptive"
    v = load_profile(prof).validation
    assert v["noise_floor"]["n"] == 6 and v["heldout_files"] == [str(tmp_path / "adaptive" / "heldout.jsonl")]
    monkeypatch.setattr(registry, "PROFILE_DIR", tmp_path)
    with pytest.raises(ValueError, match="shipped"):
        la.refuse_shipped(prof, False, "--ship")


def test_the_old_protocol_averages_a_burst_in_and_the_new_one_does_not(fakes, tiny, tmp_path):
    """Load that slows the networks more than the reference, for a while: the fixed protocol's labels keep
    it; the adaptive one waits it out."""
    truth = fakes.truth(tiny)
    for proto in la.PROTOCOLS:
        be = fakes.Backend(tiny, fakes.Machine(noise=0.002, bursts=[dict(start=0.5, end=3.0, net=1.5, ref=1.2)]),
                           truth)
        plan = la.Plan(n=10, heldout=12, remeasure=0, sizes=(10,), chunk=12, folds=2, protocols=(proto,))
        la.measure_all(tiny, tmp_path, be, plan, lambda m: None)
    ref = truth(tiny.reference_widths)
    worst = {}
    for proto in la.PROTOCOLS:
        recs = [json.loads(x) for x in (tmp_path / proto / "heldout.jsonl").read_text().splitlines()[1:]]
        worst[proto] = max(abs(r["norm"] / (truth(r["widths"]) / ref) - 1) for r in recs)
    assert worst["fixed"] > 0.1 and worst["adaptive"] < 0.02


def test_seconds_per_network_leave_out_the_other_protocols_turns(tmp_path):
    from widthnas.latency import standalone_runner as sr

    d = tmp_path / "fixed"
    d.mkdir()
    ts = [100.0]  # header; then turns of 3 networks, 1 s each, with the other protocol's 30 s turn between
    for k in range(9):
        ts.append(ts[-1] + (31.0 if k and k % 3 == 0 else 1.0))
    ts[-1] += 5000  # and a stopped run before the last one
    lines = [{"type": "header", "format": sr.SAMPLES_FORMAT, "created": ts[0]}]
    lines += [{"type": "sample", "widths": [8], "norm": 1.0, "t": t, "settled": k % 2 == 0, "rounds": 5}
              for k, t in enumerate(ts[1:])]
    (d / "heldout.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = la._timing(d, ["heldout"], turn=3)["heldout"]
    assert got["networks"] == 9 and got["seconds"] == 9.0 and got["s_per_network"] == 1.0
    assert got["settled"] == pytest.approx(5 / 9) and got["mean_rounds"] == 5
