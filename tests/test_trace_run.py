"""Your own model end to end, as a user would run it: `widthnas space --from-model` traces a ResNet
and a MobileNet-v2 written in tests/trace_models.py, then `widthnas run --space traced.json` profiles
this machine, fits, trains the slimmable version of the model, searches, fine-tunes, exports a
physically smaller ONNX and verifies it; then `widthnas export --weights` slices the user's weights
to the chosen widths. Tiny data and timing settings, as tests/test_graph_run.py."""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from scipy import stats

import trace_models as tm
from widthnas.models.graph_space import GraphSpace
from widthnas.nas.cli import main

TINY = ["--budget", "80%", "--batch-size", "32", "--epochs", "1", "--sampling", "ows", "--finetune-epochs", "1",
        "--unary-configs", "12", "--profile-networks", "16", "--heldout-networks", "6", "--check-networks", "4",
        "--profile-rounds", "2", "--profile-round-ms", "1", "--ladder-rungs", "2", "--verify-round-ms", "5", "--quiet",
        "--no-guard"]  # 0.02-0.1 ms networks spread past the guard's thresholds on a busy machine: keep every timing


def _conv_out_channels(path):
    m = onnx.load(str(path))
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    return [inits[n.input[1]][0] for n in m.graph.node if n.op_type == "Conv"]


@pytest.mark.parametrize("factory,weights", [
    # a user's trained model: the supernet and the fine-tuning start from its weights. 171 s on 2026-12-04
    # (124 s of it verifying); tests/test_trace_thirdparty.py runs a traced ResNet with --weights end to end
    pytest.param("resnet_tiny", True, marks=pytest.mark.slow),
    ("mobilenet_v2_tiny", False),  # an untrained architecture: searched from scratch
])
def test_traced_model_runs_end_to_end(factory, weights, write_bar_dataset, tmp_path, capsys):
    data = write_bar_dataset(tmp_path / "bars.npz", 320, 64, seed=0)
    model = tm.__dict__[factory]()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    space_file = tmp_path / "traced.json"
    assert main(["space", "--from-model", f"{tm.__file__}:{factory}", "--input-shape", "1,16,16", "--levels", "3",
                 "--out", str(space_file)]) == 0
    assert "channel groups" in capsys.readouterr().out
    space = GraphSpace.load(space_file)
    out = tmp_path / "run"
    assert main(["run", "--space", str(space_file), "--dataset", "npz", "--data", str(data), "--out", str(out), *TINY,
                 *(["--weights", str(tmp_path / "model.pt")] if weights else [])]) == 0
    text = capsys.readouterr().out
    st = json.loads((out / "run_state.json").read_text())
    assert "profiling this machine" in st["profile"]["why"]  # no shipped profile knows a user's model
    prof = json.loads(Path(st["profile"]["path"]).read_text())
    assert prof["format"] == "widthnas-graph-profile/1" and prof["space"]["fingerprint"] == space.fingerprint
    for f in ("samples.jsonl", "heldout.jsonl", "latency_check.jsonl"):  # --no-guard reached every timing
        assert json.loads((out / f).read_text().splitlines()[0])["settings"]["guard"] is None
    chosen = st["search"]["chosen"]
    assert chosen["predicted_ms"] <= st["search"]["budget_ms"]
    space.validate(chosen["widths"])
    assert ("from model.pt (--weights)" in st["finetune"]["mode"]) == weights
    assert text.splitlines()[-1].startswith("ONNX:") and "group" in text
    if weights:
        assert "supernet seeded with" in (out / "supernet" / "train.log").read_text()

    # the exported network is the traced model at the chosen widths, physically smaller, and runs in ORT
    a, g = space.assignment(chosen["widths"]), space.graph.group_of
    convs = [op for op in space.graph.ops if op.kind == "conv"]
    assert _conv_out_channels(out / "model.onnx") == [a[g[op.name]] for op in convs]
    bases = [space.group(g[op.name]).base for op in convs]
    assert sum(_conv_out_channels(out / "model.onnx")) < sum(bases)
    assert st["export"]["chosen"]["max_abs_diff"] < 1e-3
    from widthnas.models.graph_net import build_graph_network  # and computes the network the run fine-tuned

    net = build_graph_network(space, chosen["widths"])
    net.load_state_dict(torch.load(out / "final_chosen.pt", weights_only=True))
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net.eval()(x).numpy()
    assert ref.std(axis=0).mean() > 0.01  # the logits depend on the image (100 x the tolerance below)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], ref, rtol=1e-4, atol=1e-4)
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

    # export --weights: the user's weights sliced to the run's choice, BN recalibrated on the run's data
    assert main(["export", "--run", str(out / "supernet"), "--config", str(out / "config.json"), "--weights",
                 str(tmp_path / "model.pt"), "--out", str(tmp_path / "user.onnx"), "--calib-images", "64"]) == 0
    side = json.loads((tmp_path / "user.json").read_text())
    assert side["widths"] == chosen["widths"] and 0 <= side["accuracy"]["val"] <= 1
    assert _conv_out_channels(tmp_path / "user.onnx") == _conv_out_channels(out / "model.onnx")
