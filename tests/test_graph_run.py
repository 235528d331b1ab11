"""Graph spaces end to end: `widthnas run --space mobilenet_v2_small / resnet_small` on tiny data and a
tiny profile of this machine (profile, fit, train, search, fine-tune, export, verify, report), then
`widthnas search` and `widthnas export` on the trained run."""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from scipy import stats

from widthnas.nas.cli import main
from widthnas.nas.run import Run, RunConfig

TINY_TIMING = dict(profile_networks=12, heldout_networks=6, check_networks=4, profile_rounds=2, profile_round_ms=1.0,
                   ladder_rungs=2, verify_round_ms=5.0,
                   guard=False)  # the load guard is tested by test_pipeline's run and tests/test_timing.py


@pytest.fixture(scope="module")
def data28(tmp_path_factory):
    """A learnable .npz of 28x28 grey images: a bright bar whose row encodes the class."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 2 * c + 4, 4:24] = 250
        return x, y

    (xtr, ytr), (xte, yte) = make(320), make(64)
    p = tmp_path_factory.mktemp("data28") / "bars28.npz"
    np.savez(p, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return p


def _run(space, data, out, **kw):
    cfg = RunConfig(space=space, dataset="npz", data=str(data), budget="70%", limit=None, batch_size=32,
                    finetune_epochs=1, unary_configs=12, **TINY_TIMING, **kw)
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
    import torch

    from widthnas.models.graph_net import build_graph_network

    net = build_graph_network(run.space, ch["widths"])
    net.load_state_dict(torch.load(out / "final_chosen.pt", weights_only=True))
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(x)).numpy()
    assert ref.std(axis=0).mean() > 0.01  # the logits depend on the image (100 x the tolerance below)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], ref, rtol=1e-4, atol=1e-4)
    v = st["verify"]["chosen"]  # the verdict follows from its timings: their 95 % t-interval against the budget
    bv = v["budget_verdict"]
    ms = np.array(bv["measurements_ms"])
    h = stats.t.ppf(0.975, len(ms) - 1) * ms.std(ddof=1) / np.sqrt(len(ms))
    assert bv["ci_low_ms"] == pytest.approx(ms.mean() - h) and bv["ci_high_ms"] == pytest.approx(ms.mean() + h)
    want = ("within" if bv["ci_high_ms"] < bv["budget_ms"] else "over" if bv["ci_low_ms"] > bv["budget_ms"]
            else "cannot tell at this noise")
    assert bv["verdict"] == want and v["within_budget"] == (want == "within")
    assert bv["budget_ms"] == st["search"]["budget_ms"] and v["normalised_ms"] == pytest.approx(ms.mean())
    assert 3 <= len(ms) <= 8 and (want != "cannot tell at this noise" or len(ms) == 8)  # timed until it could tell
    assert "## Result" in (out / "report.md").read_text()
    assert run.summary().splitlines()[0].startswith("group")
    if kw["sampling"] == "aows":
        assert (out / "supernet" / "narrowing.jsonl").exists()

    # the stages as commands, on the same run: search (held-out selection) and export of its choice
    assert main(["search", "--profile", st["profile"]["path"], "--run", str(out / "supernet"), "--budget", "60%",
                 "--out", str(tmp_path / "c.json"), "--pareto", str(tmp_path / "front.csv")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["method"] == "select" and c["space"]["fingerprint"] == run.space.fingerprint
    assert main(["search", "--profile", st["profile"]["path"], "--unaries",
                 str(out / "supernet" / "unaries_measured.json"), "--budget", "60%", "--method", "exact",
                 "--out", str(tmp_path / "e.json")]) == 0
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
