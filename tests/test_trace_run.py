"""Your own model end to end, as a user would run it: `widthnas space --from-model` traces a ResNet
and a MobileNet-v2 written in tests/trace_models.py, then `widthnas run --space traced.json` profiles
this machine, fits, trains the slimmable version of the model, searches, fine-tunes, exports a
physically smaller ONNX and verifies it; then `widthnas export --weights` slices the user's weights
to the chosen widths. Tiny data and timing settings, as tests/test_graph_run.py."""
import json
from pathlib import Path

import pytest
import torch

import trace_models as tm
from helpers import TRACED_RUN_FLAGS as TINY
from helpers import assert_onnx_computes, check_budget_verdict, conv_out_channels, fine_tuned_network
from helpers import QUICK_VERDICT_MAX, write_bar_dataset
from widthnas.models.space import GraphSpace
from widthnas.nas.cli import main


pytestmark = pytest.mark.usefixtures("quick_timing_module")  # tests/helpers.py quick_timing


@pytest.mark.parametrize("factory,weights", [
    # a user's trained model: the supernet and the fine-tuning start from its weights. 171 s on 2026-12-04
    # (124 s of it verifying); tests/test_trace_thirdparty.py runs a traced ResNet with --weights end to end
    pytest.param("resnet_tiny", True, marks=pytest.mark.slow),
    ("mobilenet_v2_tiny", False),  # an untrained architecture: searched from scratch
    ("resnext_se_tiny", True),  # grouped convs in 4 and 3 blocks, squeeze-excitation on them (issue 32)
    ("tiny_densenet", True),  # concatenations, BNs on them, 2x2 average pools (issue 32), from its weights
])  # the operators' runs: tests/test_trace_run_ops.py (a file of their own, so that make test's two workers share them)
def test_traced_model_runs_end_to_end(factory, weights, tmp_path, capsys):
    check_traced_run(factory, weights, tmp_path, capsys)


def check_traced_run(factory: str, weights: bool, tmp_path, capsys, budget: str | None = None):
    """trace tests/trace_models.py's `factory`, `widthnas run` it (from its weights if `weights`; at `budget`
    instead of TINY's), check the run's files, the exported network and `export --weights`."""
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
                 *(["--budget", budget] if budget else []),  # after TINY's: the last one counts
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
    assert ("from model.pt (--weights), channels by magnitude importance" in st["finetune"]["mode"]) == weights
    assert text.splitlines()[-1].startswith("ONNX:") and "group" in text
    if weights:
        assert "supernet seeded with" in (out / "supernet" / "train.log").read_text()

    # the exported network is the traced model at the chosen widths, physically smaller, and runs in ORT
    a, g = space.assignment(chosen["widths"]), space.graph.group_of
    convs = [op for op in space.graph.ops if op.kind == "conv"]
    assert conv_out_channels(out / "model.onnx") == [a[g[op.name]] for op in convs]
    bases = [space.group(g[op.name]).base for op in convs]
    assert sum(conv_out_channels(out / "model.onnx")) < sum(bases)
    assert st["export"]["chosen"]["max_abs_diff"] < 1e-3
    # and computes the network the run fine-tuned
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert_onnx_computes(out / "model.onnx", fine_tuned_network(out, space, chosen["widths"]), x)
    ms = check_budget_verdict(st["verify"]["chosen"], st["search"]["budget_ms"])
    told = st["verify"]["chosen"]["budget_verdict"]["verdict"] != "cannot tell at this noise"
    assert 3 <= len(ms) <= QUICK_VERDICT_MAX and (told or len(ms) == QUICK_VERDICT_MAX)  # timed until it could tell

    # export --weights: the user's weights sliced to the run's choice, BN recalibrated on the run's data
    assert main(["export", "--run", str(out / "supernet"), "--config", str(out / "config.json"), "--weights",
                 str(tmp_path / "model.pt"), "--out", str(tmp_path / "user.onnx"), "--calib-images", "64"]) == 0
    side = json.loads((tmp_path / "user.json").read_text())
    assert side["widths"] == chosen["widths"] and 0 <= side["accuracy"]["val"] <= 1
    assert conv_out_channels(tmp_path / "user.onnx") == conv_out_channels(out / "model.onnx")
