"""Negative flips: the rates against a scripted case, focal distillation, the previous model as ONNX,
`widthnas evaluate --against`, and refused inputs."""
import json

import pytest
import torch

from helpers import train_config, write_inputs
from widthnas.nas.flips import (PreviousModel, congruent_loss, flip_report, focal_distillation, load_previous,
                                resolve_previous, torch_predictions)


def test_flip_report_counts_each_kind():
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2, 1])
    old = torch.tensor([0, 0, 1, 0, 2, 1, 2, 0])  # right on 0,1,2,4,6
    new = torch.tensor([0, 1, 1, 1, 0, 2, 2, 0])  # right on 0,2,3,5,6
    r = flip_report(y, old, new, 3)
    assert r["old_accuracy"] == 5 / 8 and r["new_accuracy"] == 5 / 8  # same accuracy ...
    assert r["negative_flips"] == 2 and r["nfr"] == 2 / 8  # ... yet samples 1 and 4 broke
    assert r["positive_flips"] == 2 and r["pfr"] == 2 / 8  # samples 3 and 5 were fixed
    assert r["nfr_of_old_correct"] == 2 / 5
    assert [c["nfr"] for c in r["per_class"]] == [0.5, 0.0, 1 / 3]
    assert [c["pfr"] for c in r["per_class"]] == [0.0, 1 / 3, 1 / 3]
    same = flip_report(y, old, old, 3)
    assert same["nfr"] == same["pfr"] == 0
    with pytest.raises(ValueError, match="one prediction per label"):
        flip_report(y, old[:3], new, 3)


def test_focal_distillation_only_where_the_old_model_is_right():
    torch.manual_seed(0)
    old = torch.randn(6, 4)
    y = old.argmax(1).clone()
    y[3:] = (y[3:] + 1) % 4  # the old model is wrong on the last three
    assert focal_distillation(old.clone(), old, y).item() == pytest.approx(0, abs=1e-6)  # already congruent
    new = torch.randn(6, 4, requires_grad=True)
    loss = focal_distillation(new, old, y)
    loss.backward()
    assert loss.item() > 0
    assert new.grad[:3].abs().sum() > 0 and new.grad[3:].abs().sum() == 0  # mistakes are not copied
    new.grad = None
    focal_distillation(new, old, y, alpha=0.5).backward()  # alpha: a little everywhere
    assert new.grad[3:].abs().sum() > 0
    with pytest.raises(ValueError, match="> 0"):
        congruent_loss(lambda x: x, 0.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny):
    """A tiny trained network exported as ONNX with a normalisation sidecar, and its data splits."""
    from widthnas.models.net import build_network as build_network
    from widthnas.nas.data import load_dataset, normalize, split
    from widthnas.nas.export import export_onnx, write_sidecar
    from widthnas.nas.finetune import train_plain

    d = write_inputs(tmp_path_factory.mktemp("flips"), tiny, 256, 64, seed=2)
    sp = split(load_dataset("npz", str(d / "data.npz")), 0.1, 0)
    torch.manual_seed(0)
    net = build_network(tiny, tiny.max_widths)
    train_plain(net, sp, 2, lr=0.05, log=lambda *_: None, device="cpu")
    export_onnx(net, tiny, d / "old.onnx", normalize(sp.val[0][:16], sp.mean, sp.std))
    write_sidecar(d / "old.onnx", tiny.max_widths, tiny, normalization={"mean": sp.mean.tolist(), "std": sp.std.tolist()})
    return d, net.eval(), sp


def test_previous_model_predicts_like_torch(exported, tiny):
    d, net, sp = exported
    old = load_previous(d / "old.onnx", sp, tiny)
    assert old.own_normalization
    x = sp.test[0]
    assert torch.equal(old(x).argmax(1), torch_predictions(net, x, sp.mean, sp.std))
    # without the sidecar's statistics, other statistics are used: predictions may change (here they must
    # differ in the logits at least)
    off = PreviousModel(d / "old.onnx", sp.mean + 0.3, sp.std)
    off.mean, off.std = sp.mean + 0.3, sp.std
    assert not torch.allclose(off(x[:8]), old(x[:8]))
    with pytest.raises(ValueError, match="takes 1x16x16 inputs but the data is 3x16x16"):
        old.check_fits((3, 16, 16), 10)
    with pytest.raises(ValueError, match="classes"):
        old.check_fits((1, 16, 16), 5)


def test_congruent_loss_trains_toward_the_old_model(exported, tiny):
    """Where the old model is right, fine-tuning with a strong focal-distillation weight moves the new
    network's outputs toward the old model's (smaller KL) than plain fine-tuning from the same start."""
    from widthnas.models.net import build_network as build_network
    from widthnas.nas.data import normalize
    from widthnas.nas.finetune import train_plain

    d, _, sp = exported
    old = load_previous(d / "old.onnx", sp, tiny)
    seen = []

    def spy(logits, y, images):
        seen.append(images.dtype)
        return congruent_loss(old, 5.0)(logits, y, images)

    kls = {}
    for name, fn in (("plain", None), ("congruent", spy)):
        torch.manual_seed(7)
        new = build_network(tiny, tiny.min_widths)
        train_plain(new, sp, 2, lr=0.05, seed=1, log=lambda *_: None, device="cpu", loss_fn=fn)
        x, y = sp.test
        with torch.no_grad():
            kls[name] = focal_distillation(new.eval()(normalize(x, sp.mean, sp.std)), old(x), y).item()
    assert seen and all(t == torch.uint8 for t in seen)  # the teacher gets the raw (augmented) images
    assert kls["congruent"] < kls["plain"]


def test_resolve_previous_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        resolve_previous(tmp_path / "nope.onnx")
    (tmp_path / "m.pt").write_text("x")
    with pytest.raises(ValueError, match="not an .onnx file"):
        resolve_previous(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="holds no model.onnx"):
        resolve_previous(tmp_path)
    (tmp_path / "checkpoint.pt").write_text("x")
    with pytest.raises(ValueError, match="supernet training directory"):
        resolve_previous(tmp_path)
    (tmp_path / "model.onnx").write_text("x")
    assert resolve_previous(tmp_path) == tmp_path / "model.onnx"
    with pytest.raises(ValueError, match="cannot be loaded by onnxruntime"):
        PreviousModel(tmp_path / "model.onnx", torch.zeros(1), torch.ones(1))


def test_evaluate_against_reports_flips(exported, tmp_path, capsys):
    from widthnas.nas.cli import main
    from widthnas.nas.train import train

    d, _, _ = exported
    train(train_config(d, epochs=1, lr=0.05, seed=0), tmp_path / "sup", progress=False, log=lambda *_: None)
    out = tmp_path / "flips.json"
    rc = main(["evaluate", "--run", str(tmp_path / "sup"), "--widths", "x1.0", "--split", "test",
               "--against", str(d / "old.onnx"), "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "negative flip rate" in text and "positive flip rate" in text and "per class" in text
    r = json.loads(out.read_text())
    assert r["n"] == 64 and len(r["per_class"]) == 10 and 0 <= r["nfr"] <= 1 - r["new_accuracy"] + 1e-9
    assert r["nfr"] - r["pfr"] == pytest.approx(r["old_accuracy"] - r["new_accuracy"])  # flips explain the gap
    rc = main(["evaluate", "--run", str(tmp_path / "sup"), "--against", str(tmp_path / "missing.onnx")])
    assert rc == 2 and "not found" in capsys.readouterr().err
