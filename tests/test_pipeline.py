"""End to end on a tiny space: `widthnas run` (profiling this machine), resume, and the CLIs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from widthnas.nas.cli import main
from widthnas.nas.run import Run, RunConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, write_bar_dataset):
    """A small space whose widest network is several times slower than its narrowest."""
    from widthnas.models.space import LayerSpec, SearchSpace

    space = SearchSpace("pipe", (1, 16, 16), 10, (
        LayerSpec("stem", "conv", 1, 16, (8, 16, 32)),
        LayerSpec("block1", "dwsep", 1, 64, (16, 32, 64, 96)),
        LayerSpec("block2", "dwsep", 2, 64, (16, 32, 64, 96)),
        LayerSpec("block3", "dwsep", 1, 128, (32, 64, 128, 192)),
    ))
    d = tmp_path_factory.mktemp("pipe")
    (d / "space.json").write_text(json.dumps(space.to_dict()))
    write_bar_dataset(d / "data.npz", 256, 64, seed=1)
    return d


@pytest.fixture(scope="module")
def finished_run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    cfg = RunConfig(space=str(inputs / "space.json"), dataset="npz", data=str(inputs / "data.npz"), budget="60%",
                    profile_networks=40, epochs=2, warmup_epochs=1, limit=None, batch_size=32, finetune_epochs=1)
    logs = []
    run = Run(cfg, out, log=logs.append, progress=False)
    run.go()
    return cfg, out, run, logs


def test_run_goes_from_data_to_verified_onnx(finished_run):
    cfg, out, run, logs = finished_run
    st = run.state
    assert "profiling this machine" in st["profile"]["why"]  # no shipped profile for the tiny space
    side = json.loads((out / "model.json").read_text())
    assert side["widths"] == st["search"]["chosen"]["widths"] and side["space"]["fingerprint"] == run.space.fingerprint
    assert st["search"]["chosen"]["predicted_ms"] <= st["search"]["budget_ms"]
    v = st["verify"]["chosen"]
    assert abs(v["error"]) < 0.3 and v["max_abs_diff"] < 1e-3
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((3, 1, 16, 16), np.float32)})[0].shape == (3, 10)  # dynamic batch
    report = (out / "report.md").read_text()
    for section in ("## Result", "## Latency model", "## Search", "## Training", "## Narrowing"):
        assert section in report
    for png in ("latency_fit.png", "pareto.png", "widths.png", "training.png", "narrowing.png"):
        assert (out / png).stat().st_size > 1000
    assert "test accuracy" in run.summary()
    assert "negative flip rate of the chosen network against the uniform network" in run.summary()


def test_rerun_resumes_and_other_settings_are_refused(finished_run):
    cfg, out, run, _ = finished_run
    logs = []
    Run(cfg, out, log=logs.append, progress=False).go()
    assert sum("done earlier" in l for l in logs) == 7
    from dataclasses import replace

    with pytest.raises(ValueError, match="other settings.*budget"):
        Run(replace(cfg, budget="70%"), out, progress=False)


def test_export_and_evaluate_clis(finished_run, tmp_path, capsys):
    _, out, run, _ = finished_run
    m = tmp_path / "m.onnx"
    assert main(["export", "--run", str(out / "supernet"), "--widths", "x0.5", "--out", str(m)]) == 0
    side = json.loads(m.with_suffix(".json").read_text())
    assert side["widths"] == run.space.uniform(0.5) and side["verify"]["max_abs_diff"] < 1e-3
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
    capsys.readouterr()
    assert main(["search", "--profile", prof, "--unaries", un, "--budget", "70%", "--margin", "120",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "margin" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


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
                 "--plot", str(plot), "--json", str(tmp_path / "v.json")]) == 0
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["table"]["n"] == 40 and 0 <= v["table"]["nrmse"] < 0.5 and plot.exists()
    assert "NRMSE" in capsys.readouterr().out


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "widthnas", "--help"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0
    for cmd in ("profile", "fit", "validate", "train", "search", "export", "evaluate", "run"):
        assert cmd in r.stdout


def test_report_has_negative_flips_and_the_width_error_curve(finished_run):
    _, out, run, _ = finished_run
    report = (out / "report.md").read_text()
    assert "## Negative flips" in report and "| uniform network |" in report
    assert "## Width-error curve (supernet)" in report and "![width-error curve](curve.png)" in report
    from widthnas.nas.curve import read_curve

    rows = read_curve(out / "curve.csv")
    assert len(rows) >= 3 and all(r["predicted_ms"] is not None for r in rows)
    assert (out / "curve.png").stat().st_size > 1000
    flips = json.loads((out / "report.json").read_text())["flips"]["uniform network"]
    fin = run.state["finetune"]
    assert flips["new_accuracy"] == pytest.approx(fin["chosen"]["test_acc"])
    assert flips["old_accuracy"] == pytest.approx(fin["uniform"]["test_acc"])
    # --previous: the exported uniform.onnx (own normalisation from its sidecar) gives the same flips
    run.cfg.previous = str(out / "uniform.onnx")
    try:
        lines = run._flips_section()
    finally:
        run.cfg.previous = None
    assert any("previous model" in l for l in lines)
    prev = run._flips[f"previous model `{out / 'uniform.onnx'}`"]
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


def test_curve_cli_on_a_run_measures_latency(finished_run, tmp_path, capsys):
    from widthnas.nas.curve import read_curve

    _, out, run, _ = finished_run
    csv_path = tmp_path / "curve.csv"
    assert main(["curve", "--run", str(out), "--calib-images", "128", "--out", str(csv_path)]) == 0
    rows = read_curve(csv_path)
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in rows)  # the run's profile, measured
    assert rows[-1]["measured_ms"] > rows[0]["measured_ms"]  # the widest uniform network is slower
    assert (tmp_path / "curve.png").stat().st_size > 1000
