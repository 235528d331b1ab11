"""Graph spaces end to end: `widthnas run --space mobilenet_v2_small / resnet_small` on tiny data and a
tiny profile of this machine (profile, fit, train, search, fine-tune, export, verify, report), then
`widthnas search` and `widthnas export` on the trained run."""
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import TINY_RUN, assert_onnx_computes, check_budget_verdict, fine_tuned_network
from helpers import QUICK_VERDICT_MAX, write_bar_dataset
from widthnas.nas.cli import main
from widthnas.nas.run import Run, RunConfig


pytestmark = pytest.mark.usefixtures("quick_timing_module")  # tests/helpers.py quick_timing


@pytest.fixture(scope="module")
def data28(tmp_path_factory):
    """A learnable .npz of 28x28 grey images: a bright bar whose row encodes the class."""
    return write_bar_dataset(tmp_path_factory.mktemp("data28") / "bars28.npz", 320, 64, seed=0, side=28)


def _run(space, data, out, **kw):
    cfg = RunConfig(space=space, dataset="npz", data=str(data), budget="70%", limit=None, **TINY_RUN, **kw)
    logs = []
    run = Run(cfg, out, log=logs.append, progress=False)
    run.go()
    return run, logs


@pytest.mark.parametrize("space,kw", [  # ~45 s and ~85 s on 2 shared cores: the second is marked slow
    ("mobilenet_v2_small", dict(sampling="aows", epochs=2, warmup_epochs=1)),
    pytest.param("resnet_small", dict(sampling="ows", epochs=1), marks=pytest.mark.slow)])
def test_run_on_a_graph_space(space, kw, data28, tmp_path, capsys):
    out = tmp_path / "r"
    run, logs = _run(space, data28, out, **kw)
    st = run.state
    why = st["profile"]["why"]  # a shipped graph profile of this machine, or this machine profiled now
    assert "profiling this machine" in why or ("shipped profile" in why and space in why)
    prof = json.loads(Path(st["profile"]["path"]).read_text())
    assert prof["format"] == "widthnas-graph-profile/1" and prof["space"]["fingerprint"] == run.space.fingerprint
    ch = st["search"]["chosen"]
    assert ch["predicted_ms"] <= st["search"]["budget_ms"] and len(ch["widths"]) == len(run.space.free_groups)
    run.space.validate(ch["widths"])
    u = json.loads((out / "supernet" / "unaries_measured.json").read_text())
    assert [l["name"] for l in u["layers"]] == [g.name for g in run.space.free_groups]
    side = json.loads((out / "model.json").read_text())
    assert side["widths"] == ch["widths"] and side["space"]["fingerprint"] == run.space.fingerprint
    assert st["export"]["chosen"]["max_abs_diff"] < 1e-3
    # the file computes the network the run fine-tuned, on random images of this test's own
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert_onnx_computes(out / "model.onnx", fine_tuned_network(out, run.space, ch["widths"]), x)
    ms = check_budget_verdict(st["verify"]["chosen"], st["search"]["budget_ms"])
    told = st["verify"]["chosen"]["budget_verdict"]["verdict"] != "cannot tell at this noise"
    assert 3 <= len(ms) <= QUICK_VERDICT_MAX and (told or len(ms) == QUICK_VERDICT_MAX)  # timed until it could tell
    assert "## Result" in (out / "report.md").read_text()
    assert run.summary().splitlines()[0].startswith("group")
    if kw["sampling"] == "aows":
        assert (out / "supernet" / "narrowing.jsonl").exists()

    # the stages as commands, on the same run: search and export of its choice (`search --run`'s held-out
    # selection is the run's own search stage above; as a command: tests/test_pipeline.py, test_graph_train.py)
    # on the other machine kind than the shipped profile's, search times a check of its own (40 networks with the
    # load guard by default, minutes beside another test process); 4 are enough here, the check is tested elsewhere
    quick = ["--check-networks", "4"]
    assert main(["search", "--profile", st["profile"]["path"], "--unaries",
                 str(out / "supernet" / "unaries_measured.json"), "--budget", "60%", "--method", "exact",
                 "--out", str(tmp_path / "e.json"), "--pareto", str(tmp_path / "front.csv"), *quick]) == 0
    assert (tmp_path / "front.csv").exists()
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["predicted_ms"] <= e["target_ms"] and e["info"]["certified"]
    before = (tmp_path / "e.json").read_text()
    assert main(["export", "--run", str(out / "supernet"), "--config", str(tmp_path / "e.json"),
                 "--out", str(tmp_path / "e.onnx"), "--calib-images", "64"]) == 2  # its sidecar would replace e.json
    assert main(["export", "--run", str(out / "supernet"), "--config", str(tmp_path / "e.json"),
                 "--out", str(tmp_path / "e_model.onnx"), "--calib-images", "64"]) == 0
    assert (tmp_path / "e.json").read_text() == before  # the configuration is an input: untouched
    assert "group" in capsys.readouterr().out
    # flips of a new choice against the deployed graph model (the run directory as --against)
    assert main(["evaluate", "--run", str(out / "supernet"), "--config", str(tmp_path / "e.json"), "--split", "test",
                 "--calib-images", "64", "--against", str(out), "--json", str(tmp_path / "flips.json")]) == 0
    assert "nfr" in json.loads((tmp_path / "flips.json").read_text())
