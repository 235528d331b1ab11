"""End to end on a tiny space: `widthnas run` (profiling this machine), resume, and the CLIs."""
import json
import os
from dataclasses import asdict
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_onnx_computes, check_budget_verdict, fine_tuned_network, write_inputs
from widthnas.latency.standalone_runner import read_samples
from widthnas.nas.cli import main
from widthnas.nas.run import Run, RunConfig
from widthnas.nas.run_summary import STAGES, duration as _duration
from widthnas.nas.runlog import LOG_NAME, RunLog

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("quick_timing_module")  # tests/helpers.py quick_timing

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A small space whose widest network is several times slower than its narrowest."""
    from widthnas.models.families import mobilenet_v1_like

    space = mobilenet_v1_like("pipe", [16, 64, 64, 128], [1, 1, 2, 1], (1, 16, 16), 10,
                              [(8, 16, 32), (16, 32, 64, 96), (16, 32, 64, 96), (32, 64, 128, 192)])
    return write_inputs(tmp_path_factory.mktemp("pipe"), space, 256, 64, seed=1)


@pytest.fixture(scope="module")
def finished_run(inputs, tmp_path_factory, quick_timing_module):
    out = tmp_path_factory.mktemp("run") / "r"
    cfg = RunConfig(space=str(inputs / "space.json"), dataset="npz", data=str(inputs / "data.npz"), budget="60%",
                    profile_networks=40, epochs=2, warmup_epochs=1, limit=None, batch_size=32, finetune_epochs=1,
                    max_wait=0.5,  # the guard stays on; a disturbance costs a re-measurement and at most 0.5 s
                    profile_round_ms=2.0, heldout_networks=60, ladder_rungs=3,  # 0.02-0.1 ms networks: 2 ms rounds hold 20-100 runs
                    verify_round_ms=5.0,  # and 5 ms rounds 50-250 runs (20 ms: the suite's slowest stage)
                    curve=True)
    shown = []  # the terminal, as `widthnas run` prints it (terse: a line per stage)
    run = Run(cfg, out, log=RunLog(out, shown.append, terse=True), progress=False)
    run.go()
    run.terminal_lines = shown  # for the tests below
    stamp = len("2026-12-06 03:40:00 ")
    logs = [line[stamp:] for line in (out / LOG_NAME).read_text().splitlines()]  # every message, in full
    return cfg, out, run, logs


def test_run_goes_from_data_to_verified_onnx(finished_run):
    cfg, out, run, logs = finished_run
    st = run.state
    assert "profiling this machine" in st["profile"]["why"]  # no shipped profile for the tiny space
    for f in ("samples.jsonl", "heldout.jsonl", "latency_check.jsonl"):  # the run's guard settings, recorded
        assert json.loads((out / f).read_text().splitlines()[0])["settings"]["guard"]["max_wait_s"] == 0.5
    side = json.loads((out / "model.json").read_text())
    assert side["widths"] == st["search"]["chosen"]["widths"] and side["space"]["fingerprint"] == run.space.fingerprint
    assert st["search"]["chosen"]["predicted_ms"] <= st["search"]["budget_ms"]
    v = st["verify"]["chosen"]
    assert abs(v["error"]) < 0.3 and v["max_abs_diff"] < 1e-3
    bv = v["budget_verdict"]  # repeated timings, their 95 % interval judged against the budget
    assert len(check_budget_verdict(v, st["search"]["budget_ms"])) >= 3
    # the file computes the network the run fine-tuned (final_chosen.pt), here on random images at a batch
    # size of its own (a dynamic batch axis), not only on the exporter's own check
    x = np.random.default_rng(0).standard_normal((3, 1, 16, 16)).astype(np.float32)
    assert_onnx_computes(out / "model.onnx", fine_tuned_network(out, run.space, side["widths"]), x)
    report = (out / "report.md").read_text()
    for section in ("## Result", "## Latency model", "## Search", "## Training", "## Narrowing"):
        assert section in report
    m = st["search"]  # the margin, said (the profile is this machine's: its held-out error and noise floor)
    assert f"{m['margin_pct']:g} % under the budget {m['budget_ms']:.4f} ms: margin {m['margin_how']}." in report
    own = "2 x sqrt(held-out RMS error"
    if m["margin_how"].startswith(f"{m['margin_pct']:.2f} % = 2 x the RMS error"):
        # only when a noisy host slowed between profiling and the check, so that the check took this machine
        # for another: its larger error sets the margin, and the profile's own is said beside it
        assert st["profile"]["check"]["machine_note"] and own in m["margin_how"]
    else:
        assert m["margin_how"].startswith(f"{m['margin_pct']:.2f} % = {own}")
    assert f"| within budget on measurement (95 % interval of repeated timings, ms) | {bv['verdict']} [" in report
    for png in ("latency_fit.png", "pareto.png", "widths.png", "training.png", "narrowing.png"):
        assert (out / png).stat().st_size > 1000
    assert "test accuracy" in run.summary() and "a quick run" not in run.summary()  # all the training images
    limit, epochs = run.cfg.limit, run.cfg.epochs
    run.cfg.limit, run.cfg.epochs = 6000, 2  # a run on part of the data says so beside its accuracies
    try:
        acc_line = next(l for l in run.summary().splitlines() if l.startswith("test accuracy"))
    finally:
        run.cfg.limit, run.cfg.epochs = limit, epochs
    assert "a quick run: supernet 2 epochs on 6000 images, --full trains on all)" in acc_line
    lines = run.summary().splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith("time  "))  # stages over their times, then the total
    assert lines[head].split()[1:] == [*STAGES, "total"]
    secs = [st[k]["seconds"] for k in STAGES]
    assert lines[head + 1].split()[-2:] == _duration(sum(secs)).split()
    for stage in STAGES:  # one terminal line per stage, with its time and what it found
        said = [m for m in logs if m.startswith(f"[{stage}] ") and ": " in m]
        assert len(said) == 1 and said[0].split(": ", 1)[0] == f"[{stage}] {_duration(st[stage]['seconds'])}"
    assert f"{st['search']['chosen']['predicted_ms']:.4f} ms for a" in next(m for m in logs if m.startswith("[search] "))
    shown = run.terminal_lines  # the terminal: the stage lines and nothing else (no warning to act on here)
    assert [m.split("]")[0] + "]" for m in shown] == [f"[{s}]" for s in STAGES], shown
    assert all(len(m) <= 150 for m in shown) and len(logs) > 3 * len(shown)  # the details went to run.log
    assert "| report |" in report and f"| total | " in report
    assert "one run cannot tell two networks apart" in run.summary()
    assert "negative flip rate of the chosen network against the uniform network" in run.summary()


def test_the_run_compares_with_the_multiplier_rounded_to_8_channels_that_measures_within_budget(finished_run):
    """The uniform network of a run is uniform8: widths a multiplier rounded to 8 channels gives, off the
    search grid, measured within the budget, and the next multiplier up is not (by the run's own timings);
    its ONNX has those channels and computes its fine-tuned network."""
    from widthnas.nas.uniform8 import multiplier_candidates

    _, out, run, logs = finished_run
    st = run.state
    u = st["search"]["uniform"]
    assert u["method"] == "uniform8" and u["grid"] == "dense8" and u["predicted_ms"] is None
    cands = multiplier_candidates(run.space)
    i = [c[1] for c in cands].index(u["widths"])
    assert cands[i][0] == u["info"]["multiplier"] and all(w % 8 == 0 for w in u["widths"])
    dense = run.space.with_dense_choices()
    v = st["verify"]["uniform"]
    assert v["budget_verdict"]["verdict"] == "within" or i == 0
    assert v["predicted_ms"] is None and v["error"] is None
    if i + 1 < len(cands):  # the next multiplier up was timed (and judged not within): none wider was skipped
        assert (out / "candidates" / ("_".join(map(str, cands[i + 1][1])) + ".onnx")).exists()
    side = json.loads((out / "uniform.json").read_text())
    assert side["widths"] == u["widths"] and side["space"]["fingerprint"] == dense.fingerprint
    x = np.random.default_rng(1).standard_normal((2, 1, 16, 16)).astype(np.float32)
    assert_onnx_computes(out / "uniform.onnx", fine_tuned_network(out, dense, u["widths"], "uniform"), x)
    summary = run.summary()
    assert f"uniform: uniform8 x{u['info']['multiplier']} (the largest multiplier rounded to 8 channels" in summary
    assert f"latency uniform8 x{u['info']['multiplier']}: measured " in summary
    assert "| | chosen | uniform8 |" in (out / "report.md").read_text()


def test_verify_judges_spread_by_the_noisy_level_the_run_check_found(finished_run, monkeypatch):
    """A host the check found noisy by nature (its guard's level, recorded in the check) is not waited out again
    at every verification timing: verify's guard starts at that level. No check level: a fresh guard."""
    import types

    import widthnas.latency.check as check_mod
    import widthnas.nas.run as run_mod

    _, out, run, _ = finished_run
    table, prof = run.table(), run.state["profile"]["path"]
    given = {}

    def timed_check(*a, guard=None, **kw):  # the first check found the host noisy (its guard's level; no timing here)
        if "check" not in given:
            guard.noisy_spread = 0.27
        given["check"] = guard
        return {"within_10": 1.0, "nrmse": 0.01}, np.ones(3), np.ones(3)

    def verify(path, table, budget_ms, predicted_ms, rounds, round_ms, guard, *a):
        given.setdefault("verify", []).append(guard.thresholds[1])
        return {"normalised_ms": predicted_ms}

    monkeypatch.setattr(check_mod, "latency_check", timed_check)
    for name, fake in (("scatter_plot", lambda *a: None), ("verify_exported", verify),
                       ("write_sidecar", lambda *a, **kw: None)):
        monkeypatch.setattr(run_mod, name, fake)  # nothing of the finished run is rewritten
    be = types.SimpleNamespace(device_info=lambda: {})  # nothing is timed
    m = run._latency_check(table, prof, be)  # its samples file is there: read back through latency_check
    assert given["check"] is run._check_guard is not None and m["noisy_spread"] == 0.27
    assert run._latency_check(table, prof, be)["noisy_spread"] == 0.27  # a second check (another profile) keeps it
    state = run.state
    monkeypatch.setattr(run, "state", {**state, "profile": {**state["profile"], "check": m}})
    run.stage_verify()
    assert given["verify"] == [0.27] * len(given["verify"]) and given["verify"]
    given.clear()
    monkeypatch.setattr(run, "state", {**state, "profile": {**state["profile"], "check": {}}})
    run.stage_verify()
    assert given["verify"] and all(t < 0.27 for t in given["verify"])
    for damaged in ({"noisy_spread": 7}, ["x"]):
        monkeypatch.setattr(run, "state", {**state, "profile": {**state["profile"], "check": damaged}})
        with pytest.raises(ValueError, match="run_state.json damaged"):
            run.stage_verify()


def test_a_profile_made_by_run_records_its_noise_floor(finished_run):
    """The run profiled this machine: its first 30 held-out networks were timed again, the floor is in
    the profile, and --margin auto (the run's default) counted it."""
    from widthnas.latency.margin import auto_margin_pct
    from widthnas.latency.registry import load_profile
    from widthnas.latency.samples import load_samples

    cfg, out, run, logs = finished_run
    table = load_profile(run.state["profile"]["path"])
    floor = table.validation["noise_floor"]
    again = [json.loads(l) for l in (out / "heldout_remeasure.jsonl").read_text().splitlines()[1:]]
    first = load_samples(str(out / "heldout.jsonl"), run.space)
    assert len(again) == cfg.remeasure_networks == 30 and floor["requested"] == 30
    assert [r["widths"] for r in again] == [list(map(int, w)) for w in first.widths[:30]]
    kept = [j for j, r in enumerate(again) if r.get("disturbed") is not True]
    second = table.measured_ms(np.array([again[j]["norm"] for j in kept]),
                               np.array([again[j]["ref_ms"]["median"] for j in kept]))
    ratio = second / table.measured_ms(first.norm[kept], first.ref_ms[kept])  # second over first measurement
    assert floor["n"] == len(kept) and floor["within_10"] == pytest.approx(np.mean(np.abs(ratio - 1) <= 0.10))
    # the ladder was timed right after profiling (or the log says why not), and verification read off it
    lad = table.fit.get("ref_ladder")
    assert (lad is not None and len(lad["rungs"]) >= 2) or any(l.startswith("ladder: not timed") for l in logs)
    assert run.state["verify"]["chosen"]["read_off"] == ("ladder" if lad else "reference")
    pct, how = auto_margin_pct(table)
    assert "re-measurement noise" in how and any("noise floor:" in l for l in logs)
    assert pct == pytest.approx(min(200 * np.hypot(table.validation["table"]["rmspe"], floor["per_measurement_rmspe"]),
                                    pct + 1), abs=0.01)


def test_rerun_resumes_and_other_settings_are_refused(finished_run):
    cfg, out, run, _ = finished_run
    logs = []
    Run(cfg, out, log=logs.append, progress=False).go()
    assert sum("done earlier" in l for l in logs) == 7
    from dataclasses import replace

    with pytest.raises(ValueError, match="other settings.*budget"):
        Run(replace(cfg, budget="70%"), out, progress=False)


def test_a_run_records_its_paths_absolute_and_resumes_from_another_directory(inputs, tmp_path, monkeypatch):
    """run_config.json records --space and --data absolute: the run resumes from another directory with
    those paths, and where it was made with the relative ones it was given; another file is refused."""
    import shutil
    from dataclasses import replace

    made, elsewhere = tmp_path / "made", tmp_path / "elsewhere"
    shutil.copytree(inputs, made / "in")
    elsewhere.mkdir()
    monkeypatch.chdir(made)
    typed = RunConfig(space="in/space.json", dataset="npz", data="in/data.npz", budget="60%")
    Run(typed, "r", log=lambda *_: None, progress=False)
    saved = json.loads((made / "r" / "run_config.json").read_text())
    assert saved["space"] == str(made / "in" / "space.json") and saved["data"] == str(made / "in" / "data.npz")
    Run(typed, "r", log=lambda *_: None, progress=False)  # the same flags resume it
    monkeypatch.chdir(elsewhere)
    here = replace(typed, space=str(made / "in" / "space.json"), data=str(made / "in" / "data.npz"))
    Run(here, made / "r", log=lambda *_: None, progress=False)
    with pytest.raises(ValueError, match="other settings.*'data'"):
        Run(replace(here, data=str(made / "in" / "other.npz")), made / "r", progress=False)


def test_export_and_evaluate_clis(finished_run, tmp_path, capsys, monkeypatch):
    import onnx
    import torch

    import widthnas.nas.export as ex

    _, out, run, _ = finished_run
    exported, real_export = [], ex.export_onnx
    monkeypatch.setattr(ex, "export_onnx", lambda net, *a, **k: (exported.append(net), real_export(net, *a, **k))[1])
    m = tmp_path / "m.onnx"
    assert main(["export", "--run", str(out / "supernet"), "--widths", "x0.5", "--out", str(m)]) == 0
    side = json.loads(m.with_suffix(".json").read_text())
    assert side["widths"] == run.space.uniform(0.5) and side["verify"]["max_abs_diff"] < 1e-3
    # the file computes the network the command exported, on random images of this test's own
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    assert len(exported) == 1
    assert_onnx_computes(m, exported[0], x)
    a, g = run.space.assignment(run.space.uniform(0.5)), run.space.graph.group_of  # and it is the x0.5 network
    convs = {i.name: i.dims[0] for i in onnx.load(str(m)).graph.initializer if len(i.dims) == 4}
    assert sorted(convs.values()) == sorted(a[g[op.name]] for op in run.space.graph.ops if op.kind == "conv")
    assert main(["evaluate", "--run", str(out / "supernet"), "--widths", "x0.5"]) == 0
    assert "val accuracy" in capsys.readouterr().out


def test_search_cli_and_bad_budget(finished_run, tmp_path, capsys):
    _, out, run, _ = finished_run
    prof, un = run.state["profile"]["path"], str(out / "supernet" / "unaries.json")
    cfgp = tmp_path / "c.json"
    for method in ("exact", "lagrangian", "greedy", "uniform"):
        assert main(["search", "--profile", prof, "--unaries", un, "--budget", "70%", "--method", method,
                     "--out", str(cfgp), "--pareto", str(tmp_path / "front.csv")]) == 0
        c = json.loads(cfgp.read_text())
        assert c["predicted_ms"] <= c["budget_ms"] and run.space.validate(c["widths"])
    assert (tmp_path / "front.png").exists() and len((tmp_path / "front.csv").read_text().splitlines()) > 2
    capsys.readouterr()
    assert main(["search", "--profile", prof, "--unaries", un, "--budget", "0.0001ms", "--out", str(cfgp)]) == 2
    assert "below the fastest network" in capsys.readouterr().err


def test_search_cli_default_selects_on_held_out_images(finished_run, tmp_path, capsys):
    _, out, run, _ = finished_run
    prof, cfgp = run.state["profile"]["path"], tmp_path / "sel.json"
    assert main(["search", "--profile", prof, "--run", str(out / "supernet"), "--budget", "70%", "--out", str(cfgp)]) == 0
    c = json.loads(cfgp.read_text())
    assert c["method"] == "select"
    cands = c["info"]["candidates"]
    ranked = sorted(cands, key=lambda r: (-r["holdout_acc"], r["holdout_loss"]))
    # candidates are timed here in order of accuracy; the most accurate measured within the budget wins
    # (a second, re-aimed round when the first winner measured well under its prediction)
    timed = [r for r in ranked if "verdict" in r]
    assert timed and all(r["measured_ms"] > 0 for r in timed)
    best = next((r for r in timed if r["verdict"] == "within"), None)
    if best is not None:
        assert c["info"]["selected"] == best["name"] and c["widths"] == best["widths"]
        # nothing more accurate went untimed, and none of it measured within
        assert all(r.get("verdict", "untimed") not in ("within", "untimed") for r in ranked[:ranked.index(best)])
        assert ("reaimed_ms" in c["info"]) == any(r["name"].endswith("re-aimed") for r in cands)
        if "reaimed_ms" not in c["info"]:
            assert c["predicted_ms"] <= c["target_ms"]
    else:  # nothing clearly within at this noise: every candidate was timed
        assert len(timed) == len(ranked)
    from widthnas.latency.registry import load_profile
    from widthnas.mrf import build_mrf, uniform
    from widthnas.mrf.unaries import Unaries

    mrf = build_mrf(load_profile(prof), Unaries.load(out / "supernet" / "unaries_measured.json"))
    # the uniform network competes (under the name of whichever candidate proposed it first)
    assert uniform(mrf, c["target_ms"]).widths in [r["widths"] for r in cands]
    assert len({tuple(r["widths"]) for r in cands}) == len(cands)
    assert (out / "supernet" / "unaries_measured.json").exists()  # measured once, reused
    capsys.readouterr()
    assert main(["search", "--profile", prof, "--unaries", str(out / "supernet" / "unaries.json"), "--budget", "70%",
                 "--method", "select", "--out", str(tmp_path / "x.json")]) == 2
    assert "--run" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_run_report_shows_measured_supernet_accuracy(finished_run):
    _, out, run, _ = finished_run
    s = run.state["search"]
    assert s["chosen"]["method"] == "select"
    assert set(s["supernet_holdout_acc"]) == {"chosen", "uniform"}
    report = (out / "report.md").read_text()
    assert "supernet accuracy on" in report and "--method select: held-out selection" in report and "(selected)" in report
    assert "Exact budgeted optimum" not in report


def test_search_margin_aims_under_the_budget(finished_run, tmp_path, capsys):
    _, out, run, _ = finished_run
    prof, un = run.state["profile"]["path"], str(out / "supernet" / "unaries.json")
    got = {}
    for margin in ("0", "5"):
        cfgp = tmp_path / f"m{margin}.json"
        assert main(["search", "--profile", prof, "--unaries", un, "--budget", "70%", "--margin", margin,
                     "--out", str(cfgp)]) == 0
        got[margin] = json.loads(cfgp.read_text())
    assert got["5"]["budget_ms"] == got["0"]["budget_ms"]  # the user's budget is kept as given
    assert got["5"]["target_ms"] == pytest.approx(0.95 * got["0"]["budget_ms"])
    assert got["5"]["predicted_ms"] <= got["5"]["target_ms"] < got["0"]["budget_ms"]
    # the default, auto: twice the profile's held-out RMS relative error, combined with the noise floor
    # that the run measured when it profiled this machine
    cfgp = tmp_path / "auto.json"
    assert main(["search", "--profile", prof, "--unaries", un, "--budget", "70%", "--out", str(cfgp)]) == 0
    auto = json.loads(cfgp.read_text())
    v = json.loads(Path(prof).read_text())["validation"]
    err, noise = v["table"]["rmspe"], v["noise_floor"]["per_measurement_rmspe"]
    own = 200 * np.hypot(err, noise)
    if "latency_check" in auto:  # a noisy host ran the reference 1.4 x off its profiled time: search took it for
        # another machine and checked the profile here; a larger error from that check sets the margin, said beside its own
        assert auto["margin_pct"] >= own - 0.01 and f"{own:.2f} % = 2 x sqrt(held-out RMS error" in auto["margin_how"]
    else:
        assert auto["margin_pct"] == pytest.approx(own, abs=0.01) and auto["margin_pct"] > 0
    assert auto["target_ms"] == pytest.approx(auto["budget_ms"] * (1 - auto["margin_pct"] / 100))
    assert auto["predicted_ms"] <= auto["target_ms"]
    capsys.readouterr()
    assert main(["search", "--profile", prof, "--unaries", un, "--budget", "70%", "--margin", "120",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "margin" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_search_on_another_machine_counts_a_check_made_here_in_its_margin(finished_run, tmp_path, capsys, monkeypatch):
    """A profile whose reference runs 3 x off here (another machine behind the same device key, its ratios
    intact): search --margin auto times --check-networks networks here and aims at least twice their RMS
    error under the budget; on the profile's own machine, with a given margin, or with 0 networks it does not."""
    from widthnas.latency.host_state import OTHER_MACHINE
    from widthnas.latency.margin import MAX_AUTO_PCT, auto_margin_pct
    from widthnas.latency.registry import load_profile

    _, out, run, _ = finished_run
    prof, un = run.state["profile"]["path"], str(out / "supernet" / "unaries.json")
    d = json.loads(Path(prof).read_text())
    for s in d["signatures"]:  # every ms a third: a machine 3 x faster, the same ratios
        s["entries"] = [[a, b, ms / 3] for a, b, ms in s["entries"]]
    d["intercept_ms"] /= 3
    d["reference_ms"] /= 3
    other = tmp_path / "other.json"
    other.write_text(json.dumps(d))
    own = auto_margin_pct(load_profile(str(other)))[0]
    cfgp = tmp_path / "c.json"
    capsys.readouterr()
    assert main(["search", "--profile", str(other), "--unaries", un, "--budget", "70%", "--check-networks", "6",
                 "--out", str(cfgp)]) == 0
    said, c = capsys.readouterr(), json.loads(cfgp.read_text())
    printed, chk = said.out, c["latency_check"]
    assert "another machine behind the profile's device key; checking 6 random networks here" in printed
    left_out = (said.out + said.err).count("recorded as disturbed, left out of fits")  # by the guard, on a noisy host
    assert chk["n"] == 6 - left_out and left_out < 6 and chk["host_speed"] > OTHER_MACHINE
    assert c["margin_pct"] == pytest.approx(min(max(own, 200 * chk["rmspe"]), MAX_AUTO_PCT), abs=0.01)
    assert ("the profile was made on another machine" in c["margin_how"]) == (200 * chk["rmspe"] > own)
    assert c["target_ms"] == pytest.approx(c["budget_ms"] * (1 - c["margin_pct"] / 100)) and c["predicted_ms"] <= c["target_ms"]
    import widthnas.latency.check as check_mod  # the same search again today, the reference at the check's speed

    import widthnas.latency.check_cache as cc

    speed = {"x": chk["host_speed"]}  # another machine still (> 1.4 x), whatever the tiny reference does now
    monkeypatch.setattr(check_mod, "reference_speed", lambda table, be, protocol: speed["x"])
    monkeypatch.setattr(cc, "_today", lambda now: "9999-01-01")  # a day of its own: the check above is not its
    monkeypatch.setenv("WIDTHNAS_CACHE", str(tmp_path / "cache"))
    search_again = ["search", "--profile", str(other), "--unaries", un, "--budget", "70%", "--check-networks", "6",
                    "--out", str(cfgp)]
    assert main(search_again) == 0 and "reused" not in capsys.readouterr().out
    fresh = json.loads(cfgp.read_text())["latency_check"]
    (kept,) = (tmp_path / "cache" / "checks").glob("*.json")
    speed["x"] = json.loads(kept.read_text())["entries"][0]["host_speed"]  # the kept check's own speed
    assert main(search_again) == 0 and "today's check of this profile reused" in capsys.readouterr().out
    again = json.loads(cfgp.read_text())["latency_check"]
    assert {k: again[k] for k in ("n", "rmspe", "within_10")} == {k: fresh[k] for k in ("n", "rmspe", "within_10")}
    monkeypatch.undo()
    board = tmp_path / "board.json"  # another device altogether (a bundle's board): nothing timed here tells
    board.write_text(json.dumps({**d, "device": {**d["device"], "cpu": "Cortex-A72 (a board)"}}))
    for extra, mine in ((["--check-networks", "0"], other), (["--margin", "3"], other), ([], board)):
        assert main(["search", "--profile", str(mine), "--unaries", un, "--budget", "70%", *extra,
                     "--out", str(tmp_path / "n.json")]) == 0
        c = json.loads((tmp_path / "n.json").read_text())
        (tmp_path / "n.json").unlink()
        out_text = capsys.readouterr().out
        assert "random networks here" not in out_text and "latency_check" not in c  # no check: skipped, given, another device
        assert c["margin_pct"] == (3.0 if "3" in extra else own)
    assert "it is of another device (cpu: Cortex-A72 (a board) in the profile" in out_text
    import widthnas.latency.check as check_mod  # on the profile's machine (its reference at its profiled speed)

    monkeypatch.setattr(check_mod, "reference_speed", lambda table, be, protocol: 1.0)
    assert main(["search", "--profile", str(other), "--unaries", un, "--budget", "70%", "--out", str(tmp_path / "n.json")]) == 0
    assert "random networks here" not in capsys.readouterr().out and "latency_check" not in json.loads((tmp_path / "n.json").read_text())
    assert main(["search", "--profile", str(other), "--unaries", un, "--budget", "70%", "--check-networks", "2",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "--check-networks 2" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    sup = out / "supernet"  # no file of --run may be the output: its checkpoint, its unaries cache (even unwritten)
    for victim in (sup / "checkpoint.pt", sup / "train_config.json", sup / "unaries_measured.json"):
        before = victim.read_bytes() if victim.exists() else None
        assert main(["search", "--profile", prof, "--run", str(sup), "--budget", "70%", "--out", str(victim)]) == 2
        assert "is one of the input files" in capsys.readouterr().err
        assert (victim.read_bytes() if victim.exists() else None) == before


def test_run_on_another_machine_aims_by_its_check(finished_run, tmp_path, monkeypatch):
    """The run's own check, made on another machine, reaches the search's margin, its config and its report."""
    import shutil

    import widthnas.nas.run as run_mod

    cfg, out, run, _ = finished_run
    copy = tmp_path / "r"
    shutil.copytree(out, copy)
    st = json.loads((copy / "run_state.json").read_text())
    st["profile"]["check"].update(rmspe=0.07, host_speed=2.5, machine_note="the reference network ran 2.50 x ...")
    for stage in ("search", "report"):
        st.pop(stage, None)
    (copy / "run_state.json").write_text(json.dumps(st))
    monkeypatch.setattr(run_mod, "STAGES", ("profile", "train", "search", "report"))  # the margin's part of the run
    r = Run(cfg, copy, log=lambda *_: None, progress=False)
    r.go()
    s, c = r.state["search"], json.loads((copy / "config.json").read_text())
    assert s["margin_pct"] == c["margin_pct"] == pytest.approx(14.0) and "RMS error 7.00 %" in c["margin_how"]
    assert c["predicted_ms"] <= s["target_ms"] == c["target_ms"] == pytest.approx(0.86 * s["budget_ms"])
    assert f"14 % under the budget {s['budget_ms']:.4f} ms: margin 14.00 % = 2 x the RMS error 7.00 %" in (
        copy / "report.md").read_text()
    st["profile"]["check"]["rmspe"] = -1.0  # a broken check in the state: named, with what to do
    st.pop("search", None)
    (copy / "run_state.json").write_text(json.dumps(st))
    with pytest.raises(ValueError, match=r"run_state.json, profile.check: latency check: its RMS relative error"):
        Run(cfg, copy, log=lambda *_: None, progress=False).go()


def test_fit_cli_refuses_samples_of_another_space(finished_run, tmp_path, capsys, small):
    _, out, run, _ = finished_run
    code = main(["fit", "--space", "mobilenet_v1_small", "--samples", str(out / "samples.jsonl"),
                 "--out", str(tmp_path / "p.json")])
    assert code == 2 and "fingerprint" in capsys.readouterr().err
    assert main(["fit", "--samples", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "p.json")]) == 2
    assert "not found" in capsys.readouterr().err


def test_validate_cli_judges_the_profile_on_new_samples(finished_run, tmp_path, capsys):
    _, out, run, _ = finished_run
    plot = tmp_path / "v.png"
    assert main(["validate", "--profile", run.state["profile"]["path"], "--samples", str(out / "latency_check.jsonl"),
                 "--plot", str(plot), "--json", str(tmp_path / "v.json"), "--remeasure", "4"]) == 0
    v = json.loads((tmp_path / "v.json").read_text())
    printed = capsys.readouterr().out
    floor = v.get("noise_floor")  # the first 4 samples timed again, less any the load guard found disturbed
    if floor is None:  # all of them disturbed: said, not faked
        assert "noise floor: not measured" in printed and "too busy" in printed
    else:
        assert floor["requested"] == 4 and 3 <= floor["n"] <= 4 and 0 <= floor["per_measurement_rmspe"] < 0.5
    # the load guard leaves out samples taken while the machine was disturbed (how many depends on the
    # machine's load; on a quiet machine none, in slow phases of this shared host half): validate judges
    # exactly the file's clean ones
    _, recs, _ = read_samples(str(out / "latency_check.jsonl"))
    clean = sum(r.get("disturbed") is not True for r in recs)
    assert len(recs) == 40 and clean >= 4, (len(recs), clean)
    assert v["table"]["n"] == clean and 0 <= v["table"]["nrmse"] < 0.5 and plot.exists()
    assert "NRMSE" in printed


def test_console_script_entry_point():
    """The `widthnas` script the install put beside this interpreter (the venv's bin), not `python -m`."""
    script = Path(sys.executable).parent / "widthnas"
    assert script.exists(), f"no console script at {script}; install the package (`make install`)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([str(script), "--help"], cwd="/", capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    for cmd in ("profile", "fit", "validate", "train", "search", "export", "evaluate", "run"):
        assert cmd in r.stdout
    r = subprocess.run([str(script), "search", "--profile", "x", "--unaries", "y", "--budget=50%"], cwd="/",
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


def _no_temporaries(d: Path) -> bool:
    return not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_config_files_are_checked(finished_run, tmp_path, capsys):
    _, out, run, _ = finished_run
    sup = str(out / "supernet")
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"format": "widthnas-config/1", "predicted_ms": 1.0}))
    assert main(["evaluate", "--run", sup, "--config", str(bad)]) == 2
    assert 'has no "widths"' in capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    cfg["space"]["fingerprint"] = "0" * 16  # made for another space
    bad.write_text(json.dumps(cfg))
    assert main(["export", "--run", sup, "--config", str(bad), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "fingerprint" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
    bad.write_text('{"widths": [8, ')
    assert main(["evaluate", "--run", sup, "--config", str(bad)]) == 2
    assert "is corrupt" in capsys.readouterr().err
    for w in ("x abc", "x-1", "x100"):
        assert main(["evaluate", "--run", sup, "--widths", w]) == 2
        assert "uniform multiplier" in capsys.readouterr().err


def test_negative_and_zero_budgets_are_refused(finished_run, tmp_path, capsys, monkeypatch):
    """... before the supernet is loaded, the unaries measured or the reference timed."""
    from widthnas.latency import check
    from widthnas.nas import train
    from widthnas.nas.commands import search as search_cmd

    def late(*a, **k):
        raise AssertionError("a bad budget must be refused first")

    for mod, name in ((check, "reference_speed"), (search_cmd, "check_if_another_machine"), (train, "load_run")):
        monkeypatch.setattr(mod, name, late)
    _, out, run, _ = finished_run
    prof, un = run.state["profile"]["path"], str(out / "supernet" / "unaries.json")
    for b in ("-10%", "0ms", "0", "-0.2"):
        for src in (["--unaries", un], ["--run", str(out / "supernet")]):
            assert main(["search", "--profile", prof, *src, f"--budget={b}", "--out", str(tmp_path / "c.json")]) == 2
            assert "not a positive latency" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_export_parity_failure_writes_nothing(finished_run, tmp_path, capsys, monkeypatch):
    import widthnas.nas.export as ex

    _, out, run, _ = finished_run
    monkeypatch.setattr(ex, "_compare", lambda *a: (0.5, {"random_batch1": 0.5}))
    m = tmp_path / "m.onnx"
    assert main(["export", "--run", str(out / "supernet"), "--widths", "x0.5", "--out", str(m)]) == 2
    err = capsys.readouterr().err
    assert "disagree" in err and "was not written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no model, no .onnx.tmp, no sidecar


def test_export_refuses_a_torch_profile(finished_run, tmp_path, capsys):
    _, out, run, _ = finished_run
    d = json.loads(Path(run.state["profile"]["path"]).read_text())
    d["device"]["backend"], d["device"]["provider"] = "torch", "cpu"
    prof = tmp_path / "torch_profile.json"
    prof.write_text(json.dumps(d))
    m = tmp_path / "m.onnx"
    assert main(["export", "--run", str(out / "supernet"), "--widths", "x0.5", "--out", str(m), "--profile", str(prof)]) == 2
    assert "torch backend" in capsys.readouterr().err and not m.exists()


def test_train_resume_names_the_flags_it_would_ignore(finished_run, capsys):
    from widthnas.nas.train import CKPT

    _, out, run, _ = finished_run
    ck = out / "supernet" / CKPT
    before = ck.stat().st_mtime_ns
    assert main(["train", "--out", str(out / "supernet"), "--resume", "--lr", "0.3", "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert "--lr 0.3" in err and "--seed 9" in err and ck.stat().st_mtime_ns == before


def test_fit_refuses_to_overwrite_a_shipped_profile(finished_run, tmp_path, capsys, monkeypatch):
    import shutil

    from widthnas.latency import registry

    _, out, run, _ = finished_run
    shipped = tmp_path / "hw_profiles"  # a stand-in directory, so a failing test cannot damage the real one
    shipped.mkdir()
    target = shipped / "device.json"
    shutil.copy(run.state["profile"]["path"], target)
    monkeypatch.setattr(registry, "PROFILE_DIR", shipped)
    before = target.read_bytes()
    args = ["fit", "--samples", str(out / "samples.jsonl"), "--out", str(target), "--folds", "2"]
    assert main(args) == 2
    assert "shipped" in capsys.readouterr().err and target.read_bytes() == before
    assert main(args + ["--force"]) == 0 and target.read_bytes() != before


def test_corrupt_run_records_are_named(finished_run, tmp_path):
    import shutil

    from widthnas._io import CorruptFileError

    cfg, out, run, _ = finished_run
    d = tmp_path / "r"
    shutil.copytree(out, d)
    (d / "run_state.json").write_text('{"profile": {"done": tr')
    with pytest.raises(CorruptFileError, match=r"run state .*run_state\.json is corrupt"):
        Run(cfg, d, progress=False)
    state = dict(run.state)
    del state["report"]
    (d / "run_state.json").write_text(json.dumps(state))
    for name in ("narrowing.jsonl", "metrics.jsonl"):
        good = (out / "supernet" / name).read_text()
        (d / "supernet" / name).write_text(good[: len(good) // 2])
        with pytest.raises(CorruptFileError, match=name.replace(".", r"\.") + " is corrupt at line"):
            Run(cfg, d, log=lambda *_: None, progress=False).go()
        (d / "supernet" / name).write_text(good)


def test_run_goes_on_when_no_uniform_network_fits(finished_run, tmp_path):
    """A device where the fastest network is not uniform: the exact solver meets a budget that no
    width multiplier does; the run reports that and finishes with the chosen network alone."""
    import shutil
    from dataclasses import replace

    from widthnas.latency.entries import GraphEntries
    from widthnas.latency.table import LatencyTable
    from widthnas.mrf import build_mrf, exact, fastest
    from widthnas.mrf.baselines import uniform
    from widthnas.mrf.unaries import Unaries

    cfg, out, run, _ = finished_run
    space, real = run.space, run.table()
    rng = np.random.default_rng(0)
    unaries = Unaries.load(out / "supernet" / "unaries.json")
    for _ in range(200):
        # microseconds: below what any network measures here, so that no multiplier fits on measurement either
        table = LatencyTable(space, 1e-3 * rng.uniform(0.01, 0.2, GraphEntries(space, "op").E), 1e-5, real.reference_ms,
                                  real.device, name="non-uniform-device", keying="op")
        m = build_mrf(table, unaries)
        uni_ms = min(table.predict(space.uniform(k)) for k in np.arange(0.05, 2.0001, 0.005))
        if fastest(m).latency < 0.9 * uni_ms:
            break
    budget = 0.5 * (fastest(m).latency + uni_ms)
    with pytest.raises(ValueError, match="no uniform multiplier"):
        uniform(m, budget)
    assert exact(m, budget).latency <= budget  # the precondition: exact fits, uniform cannot
    prof = tmp_path / "p.json"
    table.save(prof)
    d = tmp_path / "r"
    d.mkdir()
    shutil.copytree(out / "supernet", d / "supernet")
    cfg2 = replace(cfg, budget=f"{budget}ms", method="lagrangian", profile=str(prof))
    r = Run(cfg2, d, log=lambda *_: None, progress=False)
    r.state = {"profile": {"done": True, "path": str(prof), "name": table.name, "why": "test"},
               "train": dict(run.state["train"])}
    logs = []
    r.log = logs.append
    r.go()
    assert r.state["search"]["uniform"] is None and any("no uniform network fits" in l for l in logs)
    assert any("no width multiplier rounded to 8 channels measures within" in l for l in logs)  # uniform8's bisection
    assert (d / "model.onnx").exists() and not (d / "uniform.onnx").exists()
    report = (d / "report.md").read_text()
    assert "none fits the budget" in report and "--method lagrangian" in report
    assert "Exact budgeted optimum" not in report and "exact budgeted optimum" not in report
    assert "uniform: no width multiplier fits the budget" in r.summary()


def test_report_has_negative_flips_and_the_width_error_curve(finished_run):
    _, out, run, _ = finished_run
    report = (out / "report.md").read_text()
    assert "## Negative flips" in report and "| uniform network |" in report
    assert "## Width-error curve (supernet)" in report and "![width-error curve](curve.png)" in report
    from helpers import read_curve

    rows = read_curve(out / "curve.csv")
    assert len(rows) >= 3 and all(r["predicted_ms"] is not None for r in rows)
    assert (out / "curve.png").stat().st_size > 1000
    flips = json.loads((out / "report.json").read_text())["flips"]["uniform network"]
    fin = run.state["finetune"]
    assert flips["new_accuracy"] == pytest.approx(fin["chosen"]["test_acc"])
    assert flips["old_accuracy"] == pytest.approx(fin["uniform"]["test_acc"])
    import torch

    from widthnas.nas.flips import torch_predictions

    sp = run.splits  # the flips read the predictions fine-tuning saved: those of the saved networks
    for k in ("chosen", "uniform"):
        fresh = torch_predictions(run._final_net(k), sp.test[0], sp.mean, sp.std)
        saved = out / f"final_{k}_test_pred.pt"
        assert torch.equal(torch.load(saved, weights_only=True).long(), fresh)
        assert (fresh == sp.test[1]).double().mean().item() == pytest.approx(fin[k]["test_acc"])
        moved = saved.rename(saved.with_suffix(".away"))  # a run fine-tuned before they were saved
        try:
            assert torch.equal(run._test_predictions(k), fresh)
        finally:
            moved.rename(saved)
    # --previous: the exported uniform.onnx (own normalisation from its sidecar) gives the same flips
    run.cfg.previous = str(out / "uniform.onnx")
    try:
        flips_by, lines = run._flips_section()
    finally:
        run.cfg.previous = None
    assert any("previous model" in l for l in lines)
    prev = flips_by[f"previous model `{out / 'uniform.onnx'}`"]
    assert prev["nfr"] == pytest.approx(flips["nfr"], abs=2 / flips["n"])  # ORT vs torch may differ on a tie


@pytest.mark.parametrize("extra, msg", [(["--previous", "nowhere.onnx"], "--previous: previous model nowhere.onnx not found"),
                                        (["--congruent-weight", "2"], "needs --congruent"),
                                        (["--greedy", "factor=0.5"], "add --schedule greedy"),
                                        (["--schedule", "greedy", "--greedy", "window=0"], "window 0"),
                                        (["--congruent", "{out}/model.onnx", "--congruent-weight", "0"], "> 0"),
                                        (["--congruent", "{out}/model.onnx", "--finetune-epochs", "0"],
                                         "during fine-tuning or retraining")])
def test_run_refuses_bad_feature_options(finished_run, tmp_path, capsys, extra, msg):
    _, out, _, _ = finished_run
    rc = main(["run", "--out", str(tmp_path / "r"), *[e.format(out=out) for e in extra]])
    assert rc == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.parametrize("cmd, extra, msg", [
    ("run", ["--batch-size", "0"], "--batch-size 0: give a whole number >= 1"),
    ("run", ["--epochs", "0"], "--epochs 0"),
    ("run", ["--limit", "-3"], "--limit -3"),
    ("run", ["--profile-round-ms", "nan"], "--profile-round-ms nan: give a finite number > 0"),
    ("run", ["--verify-round-ms", "0"], "--verify-round-ms 0.0: give a finite number > 0"),
    ("run", ["--verify-rounds", "0"], "--verify-rounds 0: give a whole number >= 1"),
    ("run", ["--heldout-networks", "2"], "--heldout-networks 2: give a whole number >= 3"),
    ("run", ["--remeasure-networks", "2"], "--remeasure-networks 2: give a whole number >= 3 (or 0)"),
    ("run", ["--ladder-rungs", "1"], "--ladder-rungs 1: give a whole number >= 2 (or 0)"),
    ("run", ["--unary-configs", "5"], "--unary-configs 5"),
    ("run", ["--slim-images", "600"], "--slim-images 600: give a whole number >= 16 and <= 512"),
    ("run", ["--slim-images", "8"], "--slim-images 8"),
    ("run", ["--max-wait", "-1"], "--max-wait -1.0: give a finite number >= 0 and <= 86400"),
    ("run", ["--max-wait", "inf"], "--max-wait inf"),
    ("run", ["--budget", "0.5s"], "--budget '0.5s': give milliseconds"),  # not after profiling and training
    ("run", ["--budget=-5%"], "--budget '-5%' is not a positive latency"),
    ("train", ["--batch-size", "-1"], "--batch-size -1"),
    ("train", ["--lr", "nan"], "--lr nan: give a finite number > 0"),
    ("train", ["--epochs", "0"], "--epochs 0"),
])
def test_bad_numbers_are_refused_before_anything_is_written(tmp_path, capsys, cmd, extra, msg):
    rc = main([cmd, "--out", str(tmp_path / "r"), *extra])
    assert rc == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_profile_of_another_space_is_refused_before_the_run_saves_its_settings(tmp_path, capsys):
    """Nothing saved: the corrected command is a fresh run, not 'a run with other settings'."""
    from widthnas.latency.registry import PROFILE_DIR

    other = next(PROFILE_DIR.glob("*_resnet_small.json"))
    rc = main(["run", "--out", str(tmp_path / "r"), "--profile", str(other)])
    assert rc == 2 and "--profile" in capsys.readouterr().err
    assert not (tmp_path / "r" / "run_config.json").exists()


def test_a_resumed_run_checks_the_numbers_it_reads_back(finished_run, tmp_path):
    cfg, _, _, _ = finished_run
    d = tmp_path / "damaged"
    d.mkdir()
    (d / "run_config.json").write_text(json.dumps({**asdict(cfg), "batch_size": -5}))
    before = (d / "run_config.json").read_text()
    with pytest.raises(ValueError, match="--batch-size -5.*damaged"):
        Run(cfg, d, log=lambda *_: None, progress=False)
    assert (d / "run_config.json").read_text() == before


def test_curve_cli_on_a_run_measures_latency(finished_run, tmp_path, capsys):
    from helpers import read_curve

    _, out, run, _ = finished_run
    csv_path = tmp_path / "curve.csv"
    assert main(["curve", "--run", str(out), "--calib-images", "128", "--out", str(csv_path)]) == 0
    rows = read_curve(csv_path)
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in rows)  # the run's profile, measured
    assert rows[-1]["measured_ms"] > rows[0]["measured_ms"]  # the widest uniform network is slower
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_budget_check_benchmark_searches_exports_and_verifies(finished_run, tmp_path, monkeypatch):
    """benchmarks/budget_check.py (latency_accuracy.py --budget-check) on the finished run's supernet:
    each budget's network is searched and exported by the CLI, then timed against its budget."""
    from widthnas.benchmarks import budget_check as bc

    with pytest.raises(ValueError, match="percentage"):
        bc.parse_budgets("30,150")
    with pytest.raises(ValueError, match="no supernet checkpoint"):
        bc.run_checks(tmp_path, "p.json", (50,), tmp_path / "o", log=lambda *_: None)
    _, out, run, _ = finished_run
    prof = run.state["profile"]["path"]
    rows = bc.run_checks(out / "supernet", prof, (45, 80), tmp_path / "bc", log=lambda *_: None)
    for r, pct in zip(rows, (45, 80)):
        cfg = json.loads((tmp_path / "bc" / f"b{pct}_config.json").read_text())
        assert r["widths"] == cfg["widths"] and r["predicted_ms"] <= r["budget_ms"]
        assert r["budget_ms"] == pytest.approx(pct / 100 * run.table().predict(run.space.max_widths))
        assert r["mean_ms"] == pytest.approx(np.mean(r["measurements_ms"])) and len(r["measurements_ms"]) >= 3
        want = ("within" if r["ci_high_ms"] < r["budget_ms"] else "over" if r["ci_low_ms"] > r["budget_ms"]
                else "cannot tell at this noise")
        assert r["verdict"] == want
        assert len(r["host_speed"]) == len(r["disturbed"]) == len(r["measurements_ms"])  # one per timing
        assert all(0.3 < s < 3 for s in r["host_speed"])  # reference now / profiled, on the machine that profiled
        # the same timings read off the reference alone, judged the same way, side by side
        ref_only = r["reference_only"]
        assert r["read_off"] == ("ladder" if run.table().fit.get("ref_ladder") else "reference")
        assert len(ref_only["measurements_ms"]) == len(r["measurements_ms"])
        assert ref_only["verdict"] == ("within" if ref_only["ci_high_ms"] < r["budget_ms"] else "over"
                                       if ref_only["ci_low_ms"] > r["budget_ms"] else "cannot tell at this noise")
    assert rows[1]["predicted_ms"] > rows[0]["predicted_ms"] * 0.9  # a larger budget buys no smaller network
    monkeypatch.setattr(bc, "check_one", lambda *a: pytest.fail("a finished budget was measured again"))
    assert bc.run_checks(out / "supernet", prof, (45, 80), tmp_path / "bc", log=lambda *_: None) == rows


def test_a_rung_timing_that_never_settles_is_counted_not_taken_for_a_disturbance(finished_run, monkeypatch):
    """Tiny networks' rung timings rarely meet ±1 %: taken as disturbances, each verification timing was
    repeated up to 3 times (a 0.1 ms network's verify took 190 s). They are counted; the verdict's
    interval over repeated timings carries their noise."""
    import widthnas.latency.ref_ladder as rl
    from widthnas.nas.export import measure_exported

    _, out, run, _ = finished_run
    v = run.state["verify"]["chosen"]
    assert isinstance(v["unsettled"], int) and v["unsettled"] >= 0  # the run's verify counts them too
    import widthnas.latency.standalone_runner as sr
    import widthnas.nas.export as ex

    rung = {"widths": run.space.max_widths, "ratio": 1.5}
    monkeypatch.setattr(rl, "read_ladder", lambda *a, **k: [rung])
    real_timing, real_measure, recs = ex.verify_timing, sr.measure_sample, []
    # real timings that cannot settle: a spread target no 3 rounds of a real clock meet
    monkeypatch.setattr(ex, "verify_timing", lambda table, *a: (real_timing(table)[0], sr.Protocol(
        3, 1.0, target_ci=1e-12, max_rounds=3, guard=None)))
    monkeypatch.setattr(sr, "measure_sample", lambda *a, **k: (recs.append(real_measure(*a, **k)), recs[-1])[1])
    table = run.table()
    m = measure_exported(out / "model.onnx", table)
    # timed once beside the reference and once beside the rung, neither repeated; both counted as unsettled
    assert len(recs) == 2 and [r["settled"] for r in recs] == [False, False]
    assert m["read_off"] == "ladder" and m["disturbed"] is False and m["remeasured"] == 0 and m["unsettled"] == 2
    assert m["ladder"]["rungs"] == [{"rung_ratio": 1.5, "norm_to_rung": recs[1]["norm"], "settled": False}]
    # read off the one rung: the network's ratio to it x its ratio x the reference's profiled time
    assert m["normalised_ms"] == pytest.approx(recs[1]["norm"] * 1.5 * table.reference_ms, rel=1e-12)
    assert m["reference_normalised_ms"] == pytest.approx(table.measured_ms(recs[0]["norm"], recs[0]["ref_ms"]["median"]))


def test_ladder_check_benchmark_reads_the_same_networks_both_ways(finished_run, tmp_path, monkeypatch):
    """benchmarks/ladder_check.py on the run's profile, its ladder timed here: quiet, under a load, quiet
    again, and a recheck; each pass times every network once and the summary compares them per network."""
    from widthnas.benchmarks import ladder_check as lc

    from widthnas.latency.ref_ladder import measure_ladder
    from widthnas.latency.registry import load_profile
    from widthnas.nas.export import verify_timing

    _, out, run, _ = finished_run
    table = load_profile(run.state["profile"]["path"])
    bare = tmp_path / "bare.json"
    table.fit.pop("ref_ladder", None)
    table.save(bare)
    with pytest.raises(ValueError, match="has no ladder"):
        lc.run_ladder_check(str(bare), tmp_path / "x", 3, log=lambda *_: None)
    table.fit["ref_ladder"] = measure_ladder(table, *verify_timing(table), rungs=3, repeats=3, tolerance=0.45,
                                             log=lambda *_: None)
    prof = tmp_path / "lad.json"
    table.save(prof)
    r = lc.run_ladder_check(str(prof), tmp_path / "lc", 4, ("spin",), log=lambda *_: None, sampling="spread")
    assert set(r["loads"]) == {"spin"} and r["quiet_again"]["n"] == 4
    for key in ("reference_ms", "ladder_ms"):
        rows = [json.loads(l) for l in (tmp_path / "lc" / "spread" / "load_spin.jsonl").read_text().splitlines()]
        quiet = [json.loads(l) for l in (tmp_path / "lc" / "spread" / "quiet.jsonl").read_text().splitlines()]
        d = 100 * (np.array([x[key] for x in rows]) / np.array([x[key] for x in quiet]) - 1)
        assert r["loads"]["spin"][key]["rms_pct"] == pytest.approx(float(np.sqrt(np.mean(d ** 2))))
        assert sum(b["n"] for b in r["loads"]["spin"][key]["by_ratio"]) == 4
    rc = lc.run_ladder_check(str(prof), tmp_path / "lc", 4, log=lambda *_: None, sampling="spread", recheck="later")
    assert rc["recheck"]["name"] == "later" and rc["recheck"]["n"] == 4
    with pytest.raises(ValueError, match="--recheck"):
        lc.run_ladder_check(str(prof), tmp_path / "lc", 4, log=lambda *_: None, recheck="../x")
    for w in lc.spread_widths(run.space, 20, 1):
        run.space.validate(w)


def test_no_command_writes_over_its_inputs_or_a_second_output(finished_run, tmp_path, capsys):
    """export's sidecar, search's --out and --pareto, evaluate's --json: each refused before any work
    when it would replace an input file or another output, and the input is left as it was."""
    _, out, run, _ = finished_run
    sup = str(out / "supernet")
    prof = tmp_path / "mine.json"
    prof.write_text(Path(run.state["profile"]["path"]).read_text())
    before = prof.read_text()
    cfg = tmp_path / "c.json"
    assert main(["search", "--profile", str(prof), "--unaries", str(out / "supernet" / "unaries.json"),
                 "--budget", "60%", "--out", str(cfg)]) == 0
    capsys.readouterr()
    cases = [
        (["export", "--run", sup, "--widths", "x0.5", "--profile", str(prof), "--out", str(tmp_path / "mine.onnx")],
         "the sidecar of --out"),
        (["export", "--run", sup, "--config", str(cfg), "--out", str(tmp_path / "c.onnx")], "the sidecar of --out"),
        (["export", "--run", sup, "--widths", "x0.5", "--out", str(tmp_path / "m.json")], "goes to a .onnx file"),
        (["search", "--profile", str(prof), "--unaries", str(out / "supernet" / "unaries.json"), "--budget", "60%",
          "--out", str(prof)], "is one of the input files"),
        (["search", "--profile", str(prof), "--unaries", str(out / "supernet" / "unaries.json"), "--budget", "60%",
          "--out", str(tmp_path / "o.json"), "--pareto", str(tmp_path / "o.json")], "is also --out"),
        (["evaluate", "--run", sup, "--config", str(cfg), "--json", str(tmp_path / "f.json")], "--json writes the flip"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (argv, err)
    assert prof.read_text() == before and json.loads(cfg.read_text())["widths"]
    assert not (tmp_path / "mine.onnx").exists() and not (tmp_path / "c.onnx").exists()


@pytest.mark.parametrize("argv, msg", [
    (["export", "--widths", "x0.5", "--calib-images", "0"], "must be re-estimated"),  # a supernet's BN needs it
    (["export", "--widths", "x0.5", "--calib-images", "-5"], "--calib-images -5: use 1 or more"),
    (["evaluate", "--widths", "x0.5", "--calib-images", "0"], "--calib-images 0: use 1 or more"),
])
def test_calibration_on_no_images_is_refused(finished_run, tmp_path, capsys, argv, msg):
    _, out, _, _ = finished_run
    full = argv[:1] + ["--run", str(out / "supernet")] + argv[1:]
    if argv[0] == "export":
        full += ["--out", str(tmp_path / "m.onnx")]
    assert main(full) == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_recalibrating_on_no_images_raises_instead_of_resetting_the_statistics():
    import torch

    from widthnas.nas.evaluate import recalibrate_bn

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    net[1].running_mean.fill_(3.0)
    with pytest.raises(ValueError, match="no images to recalibrate"):
        recalibrate_bn(net, torch.zeros(0, 1, 8, 8), torch.zeros(1), torch.ones(1))
    assert torch.all(net[1].running_mean == 3.0)


@pytest.mark.parametrize("extra, msg", [
    (["--threads", "0"], "--threads 0: give a whole number >= 1"),
    (["--batch", "0"], "--batch 0: give a whole number >= 1"),
    (["-n", "0"], "-n/--networks 0"),
    (["--time-limit", "nan"], "--time-limit nan"),
    (["--input-shape", "1,28"], "--input-shape '1,28': give C,H,W"),
    (["--input-shape", "1,28,28,"], "--input-shape '1,28,28,'"),
])
def test_profile_refuses_bad_numbers_before_timing(tmp_path, capsys, extra, msg):
    out = tmp_path / "s.jsonl"
    assert main(["profile", "--out", str(out), *extra]) == 2
    assert msg in capsys.readouterr().err and not out.exists()


def test_fit_refuses_bad_folds_and_plot_paths_before_fitting(finished_run, tmp_path, capsys):
    _, out, _, _ = finished_run
    samples = str(out / "samples.jsonl")  # the run profiled this machine
    for extra, msg in ((["--folds", "1"], "--folds 1"), (["--plot", str(tmp_path / "p.png")], "give --heldout too"),
                       (["--heldout", samples, "--plot", str(tmp_path / "fit.txt")], "--plot")):
        rc = main(["fit", "--samples", samples, "--out", str(tmp_path / "p.json"), *extra])
        assert rc == 2 and msg in capsys.readouterr().err, extra
    assert not (tmp_path / "p.json").exists()


def test_a_space_with_a_zero_stride_or_a_2d_input_is_refused(small):
    from widthnas.models import GraphSpace

    d = small.to_dict()
    d["ops"][3]["stride"] = 0
    with pytest.raises(ValueError, match="stride"):
        GraphSpace.from_dict(d)
    d = small.to_dict()
    d["input_shape"] = [1, 28]
    with pytest.raises(ValueError, match="input_shape"):
        GraphSpace.from_dict(d)
    with pytest.raises(ValueError, match="three positive whole numbers"):
        small.with_input("1,28")


def test_a_shipped_profile_of_a_machine_of_another_speed_is_not_used(finished_run, tmp_path, monkeypatch):
    """Two machines behind one device key ran the 224 px reference 1.84 x apart: a shipped profile whose
    reference runs far off its profiled time here is said to be another machine's, by verification (with
    or without a ladder) and by `run`, which then takes another match profiled at today's speed, else keeps
    it if its ratios hold on the run's check, else profiles this machine."""
    from dataclasses import replace

    from widthnas.latency import registry
    from widthnas.latency.host_state import OTHER_MACHINE
    from widthnas.latency.registry import load_profile
    from widthnas.nas.export import measure_exported

    cfg, out, run, _ = finished_run
    d = json.loads(Path(run.state["profile"]["path"]).read_text())
    f = 1 / (3 * OTHER_MACHINE)  # as if made on a machine 4.2 x faster than this one, with the same ratios
    d["reference_ms"] *= f
    d["intercept_ms"] *= f
    for s in d["signatures"]:
        s["entries"] = [[a, b, ms * f] for a, b, ms in s["entries"]]
    d["fit"].get("flops_proxy", {})["reference_ms"] = d["reference_ms"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(d))
    m = measure_exported(out / "model.onnx", load_profile(other))
    assert "not the machine the profile was made on" in m["host_note"] and m["host_speed"] > OTHER_MACHINE
    mine = measure_exported(out / "model.onnx", run.table())  # this machine's own profile: noted only if its
    # 0.04 ms reference itself strays past 1.4 x (it ran 1.61 x in one clean-clone suite): the rule, not the host
    off = not 1 / OTHER_MACHINE <= mine["host_speed"] <= OTHER_MACHINE
    assert ("not the machine" in (mine["host_note"] or "")) == off == (mine["machine_note"] is not None)

    mine = tmp_path / "mine.json"  # this machine's profile, as a second match of the same device key
    mine.write_text(Path(run.state["profile"]["path"]).read_text())
    matches = [other, mine]
    monkeypatch.setattr(registry, "matching_profiles", lambda space, dev: (list(matches), f"{other.name} matches"))
    import widthnas.nas.run as run_mod
    from widthnas.latency.host_state import machine_note

    # the check's figures given: a 0.04 ms reference strays past 1.4 x of itself within minutes here, so the
    # choice is tested on the rule (this machine at mine's profiled speed); the real check is timed below (r3)
    within = {"other": 1.0}

    def check(self, table, path, backend, n=None):
        speed = json.loads(mine.read_text())["reference_ms"] / table.reference_ms
        return {"within_10": within["other"] if speed > OTHER_MACHINE else 1.0, "nrmse": 0.02, "host_speed": speed,
                "machine_note": machine_note(speed, table.reference_ms)}

    real_check = run_mod.Run._latency_check
    monkeypatch.setattr(run_mod.Run, "_latency_check", check)
    monkeypatch.setattr(run_mod.Run, "_profile_here", lambda self, backend: str(self.dir / "profile.json"))
    logs = []
    small = dict(profile_networks=12, heldout_networks=6, check_networks=4, remeasure_networks=3, ladder_rungs=0)
    res = Run(replace(cfg, **small), tmp_path / "r1", log=logs.append, progress=False).stage_profile()
    assert res["path"] == str(mine) and "mine.json, also matching, was profiled with the reference at" in res["why"]
    assert res["check"]["machine_note"] is None and not (tmp_path / "r1" / "samples.jsonl").exists()
    matches.pop()  # no other match, and its ratios hold here: used, and the run says its ms are another machine's
    res = Run(replace(cfg, **small), tmp_path / "r0", log=logs.append, progress=False).stage_profile()
    assert res["path"] == str(other) and "its ratios hold here" in res["why"] and res["check"]["within_10"] >= 0.95
    assert "not the machine" in res["check"]["machine_note"] and not (tmp_path / "r0" / "samples.jsonl").exists()
    for sig in d["signatures"]:  # another machine whose ratios do not hold here either: this machine is profiled
        sig["entries"] = [[a, b, 1.5 * ms] for a, b, ms in sig["entries"]]
    d["intercept_ms"] *= 1.5  # every network predicted 1.5 x its reference-normalised time
    other.write_text(json.dumps(d))
    within["other"] = 0.0
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "profile.json").write_text(mine.read_text())  # what profiling this machine writes
    res = Run(replace(cfg, **small), tmp_path / "r2", log=logs.append, progress=False).stage_profile()
    assert res["path"] == str(tmp_path / "r2" / "profile.json") and "profiling this machine" in res["why"]
    assert "other.json matches the device key, but the reference network ran" in res["why"] and "only 0%" in res["why"]
    assert res["check"]["machine_note"] is None and 1 / OTHER_MACHINE < res["check"]["host_speed"] < OTHER_MACHINE
    assert any("profiling this machine" in l for l in logs)
    # given with --profile, the same file is used as given, and the run's real check says what its ms mean here
    monkeypatch.setattr(run_mod.Run, "_latency_check", real_check)
    d["device"]["threads"] = 2  # the check times networks with the given profile's settings, as verify does
    other.write_text(json.dumps(d))
    r3 = Run(replace(cfg, profile=str(other), check_networks=4), tmp_path / "r3", log=logs.append, progress=False)
    res = r3.stage_profile()
    assert res["path"] == str(other) and "not the machine" in res["check"]["machine_note"]
    assert json.loads((tmp_path / "r3" / "latency_check.jsonl").read_text().splitlines()[0])["device"]["threads"] == 2
    assert any(l.startswith("profile: note: the reference network ran") for l in logs)


@pytest.mark.parametrize("within, budget, kept", [(38 / 40, "60%", True), (37 / 40, "60%", False),
                                                  (1.0, "0.05ms", False), (1.0, "0.05", False)])
def test_another_machines_profile_is_kept_only_when_its_check_holds_and_the_budget_is_a_share(
        finished_run, tmp_path, monkeypatch, within, budget, kept):
    """The rule at its edge (CHECK_PASS = 95 % of the check within ±10 %), with the check's figures given:
    a kept profile's ms are another machine's, so a budget in ms would be read in them."""
    from dataclasses import replace

    import widthnas.nas.run as run_mod
    from widthnas.latency import registry
    from widthnas.latency.host_state import machine_note

    cfg, _, run, _ = finished_run
    mine = Path(run.state["profile"]["path"])
    d = json.loads(mine.read_text())
    d["reference_ms"] /= 3  # another machine's reference
    other = tmp_path / "other.json"
    other.write_text(json.dumps(d))
    monkeypatch.setattr(registry, "matching_profiles", lambda space, dev: ([other], f"{other.name} matches"))

    def check(self, table, path, backend, n=None):
        speed = 3.0 if table.reference_ms == d["reference_ms"] else 1.0
        return {"within_10": within if speed == 3.0 else 1.0, "nrmse": 0.02, "host_speed": speed,
                "machine_note": machine_note(speed, table.reference_ms)}

    monkeypatch.setattr(run_mod.Run, "_latency_check", check)
    monkeypatch.setattr(run_mod.Run, "_profile_here", lambda self, backend: str(mine))  # this machine's profile
    res = Run(replace(cfg, budget=budget), tmp_path / "r", log=lambda *_: None, progress=False).stage_profile()
    assert res["path"] == str(other if kept else mine)
    assert ("its ratios hold here (95% of the check" in res["why"]) if kept else "profiling this machine" in res["why"]
    if not kept:
        assert ("in milliseconds" in res["why"]) == (within == 1.0) and res["check"]["machine_note"] is None


def test_the_list_of_files_a_run_writes_holds_every_file_it_wrote(finished_run):
    """The output checks protect a run's files by this list (nas/run.py RUN_WRITES, nas/train.py
    RUN_FILES): a stage that writes a file the list lacks would go unprotected."""
    from widthnas.nas.run import RUN_WRITES
    from widthnas.nas.train import RUN_FILES

    _, out, _, _ = finished_run
    top = {p.name for p in out.iterdir() if p.is_file()}
    sup = {p.name for p in (out / "supernet").iterdir() if p.is_file()}
    assert top - set(RUN_WRITES) == set()
    assert sup - set(RUN_FILES) - {"unaries_measured.json"} == set()


def test_the_next_run_today_reuses_the_latency_check_on_this_machine_kind_only(finished_run, tmp_path, monkeypatch):
    """Two runs of one profile the same day: the second reads the first's check back (its timings written into
    its own directory) while the reference runs at the check's speed; on the other machine kind (2 x), or with
    --recheck, it times its own. The reference's speed is given: a 0.04 ms reference strays by itself here."""
    from dataclasses import replace

    import widthnas.latency.check as check_mod

    import widthnas.latency.check_cache as cc

    cfg, out, run, _ = finished_run
    monkeypatch.setenv("WIDTHNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cc, "_today", lambda now: "2026-12-07")  # one day, though the clock may pass midnight
    # no load guard: what is tested is the cache, and 4 networks all waited out on a noisy host fail the check
    c = replace(cfg, profile=run.state["profile"]["path"], check_networks=4, guard=False)
    logs = []
    first = Run(c, tmp_path / "a", log=logs.append, progress=False).stage_profile()["check"]
    assert "reused" not in first and len(list((tmp_path / "cache" / "checks").glob("*.json"))) == 1
    speed = {"x": first["host_speed"] * 1.03}
    monkeypatch.setattr(check_mod, "reference_speed", lambda table, backend, protocol: speed["x"])
    second = Run(c, tmp_path / "b", log=logs.append, progress=False).stage_profile()["check"]
    assert second["reused"]["host_speed_then"] == first["host_speed"] and second["host_speed"] == speed["x"]
    assert {k: second[k] for k in ("n", "within_10", "nrmse", "rmspe")} == {k: first[k] for k in ("n", "within_10", "nrmse", "rmspe")}
    assert (tmp_path / "b" / "latency_check.jsonl").read_text() == (tmp_path / "a" / "latency_check.jsonl").read_text()
    assert (tmp_path / "b" / "latency_fit.png").exists()
    assert any("today's check of this profile reused" in l for l in logs)
    from widthnas.nas.report import latency_check_lines

    said = "\n".join(latency_check_lines(second))
    assert "earlier today" in said and f"They were timed at {second['reused']['made']}" in said and "--recheck" in said
    assert "earlier today" not in "\n".join(latency_check_lines(first))
    speed["x"] = first["host_speed"] * 2  # the other machine kind: timed, and kept in the cache in its place
    third = Run(c, tmp_path / "c", log=logs.append, progress=False).stage_profile()["check"]
    assert "reused" not in third and any("another machine kind" in l for l in logs)
    speed["x"] = third["host_speed"]
    assert "reused" not in Run(replace(c, reuse_check=False), tmp_path / "d", log=logs.append,
                               progress=False).stage_profile()["check"]
    assert Run(c, tmp_path / "e", log=logs.append, progress=False).stage_profile()["check"]["reused"]["host_speed_then"] \
        == third["host_speed"]
