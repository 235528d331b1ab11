"""A user's weights on a traced space (models/trace_weights.py, `widthnas export --weights`): the
model's own widths reproduce the model in PyTorch and in onnxruntime; narrower widths keep the same
channels in every op of a group, chosen by importance, and export physically smaller ONNX; bad
weights are named; a supernet seeded from the weights is the model at its widest."""
import json

import numpy as np
import onnx
import pytest
import torch

import trace_models as tm
from helpers import ort_run
from widthnas.models.net import SlimmableGraphNet
from widthnas.models.families import resnet_small
from widthnas.models.trace import trace_model
from widthnas.models.trace_weights import (
    WeightsError, check_state, importance, keep_channels, load_state_file, seed_supernet, user_network,
)
from widthnas.nas.cli import main
from widthnas.nas.export import export_onnx


def _trained_like(model, seed=0):
    """Weights that are not an initialisation: BN statistics and affine parameters off identity, conv
    biases where there are any, so a slicing or folding mistake changes the outputs. Not helpers.scramble_bn:
    its gammas (-0.5 to 0.5) leave these deeper models' logits nearly independent of the image."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.1)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.rand(m.out_channels, generator=g) - 0.5)
    return model.eval()


@pytest.fixture(scope="module", params=["resnet_tiny", "mobilenet_v2_tiny", "FunctionalNet"])
def traced(request):
    model = _trained_like(getattr(tm, request.param)())
    return model, trace_model(model, (1, 16, 16), request.param)


def _ort(path, x):
    return ort_run(path, x.numpy())


def _conv_weight_shapes(path):
    """The weight shape of every Conv node of an ONNX file, in graph order."""
    m = onnx.load(str(path))
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    return [inits[n.input[1]] for n in m.graph.node if n.op_type == "Conv"]


def test_the_models_own_widths_reproduce_the_model_in_torch_and_onnxruntime(traced, tmp_path):
    model, space = traced
    net = user_network(space, model.state_dict()).eval()
    x = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = model(x), net(x)
    assert torch.allclose(got, ref, rtol=0, atol=1e-5), float((got - ref).abs().max())
    v = export_onnx(net, space, tmp_path / "full.onnx")
    np.testing.assert_allclose(_ort(tmp_path / "full.onnx", x), ref.numpy(), rtol=0, atol=1e-4)
    assert v["max_abs_diff"] < 1e-4


def test_narrower_widths_export_physically_smaller_onnx(traced, tmp_path):
    model, space = traced
    widths = space.min_widths
    net = user_network(space, model.state_dict(), widths).eval()
    export_onnx(net, space, tmp_path / "small.onnx")
    full = user_network(space, model.state_dict()).eval()
    export_onnx(full, space, tmp_path / "full.onnx")
    small, big = _conv_weight_shapes(tmp_path / "small.onnx"), _conv_weight_shapes(tmp_path / "full.onnx")
    assert len(small) == len(big) == sum(op.kind == "conv" for op in space.graph.ops)
    assert sum(np.prod(s) for s in small) < sum(np.prod(s) for s in big)
    a, g = space.assignment(widths), space.graph.group_of
    convs = [op for op in space.graph.ops if op.kind == "conv"]
    assert [s[0] for s in small] == [a[g[op.name]] for op in convs]  # physically the chosen widths
    assert [s[0] for s in big] == [space.group(g[op.name]).base for op in convs]
    out = _ort(tmp_path / "small.onnx", torch.randn(3, 1, 16, 16))
    assert out.shape == (3, 10) and np.isfinite(out).all()


def test_every_op_of_a_group_keeps_the_same_channels_the_most_important_ones():
    """Give stage 1 (stem + identity shortcuts) of the ResNet large gammas on channels 3, 5 and 9 in
    one BN only: summed over the group they win, and every op of the group keeps exactly them."""
    model = _trained_like(tm.resnet_tiny())
    space = trace_model(model, (1, 16, 16), "rn")
    grp = space.graph.group_of["conv1"]
    with torch.no_grad():
        model.layer1[0].bn2.weight.fill_(0.1)
        model.bn1.weight.fill_(0.1)
        model.bn1.weight[[3, 5, 9]] = 5.0
    sd = model.state_dict()
    imp = importance(space, sd)[grp]
    assert imp.argsort(descending=True)[:3].sort().values.tolist() == [3, 5, 9]
    widths = {g.name: g.choices[0] for g in space.free_groups}  # 8 channels everywhere
    keep = keep_channels(space, sd, widths)[grp]
    assert len(keep) == 8 and {3, 5, 9} <= set(keep.tolist()) and keep.tolist() == sorted(keep.tolist())
    net = user_network(space, sd, widths)
    torch.testing.assert_close(net.layers["conv1"].weight, model.conv1.weight[keep])
    torch.testing.assert_close(net.layers["bn1"].running_mean, model.bn1.running_mean[keep])
    torch.testing.assert_close(net.layers["layer1_0_bn2"].weight, model.layer1[0].bn2.weight[keep])
    inner = keep_channels(space, sd, widths)[space.graph.group_of["layer1.0.conv1"]]
    torch.testing.assert_close(net.layers["layer1_0_conv1"].weight, model.layer1[0].conv1.weight[inner][:, keep])
    torch.testing.assert_close(net.layers["layer1_0_conv2"].weight, model.layer1[0].conv2.weight[keep][:, inner])
    s2 = keep_channels(space, sd, widths)[space.graph.group_of["layer2.0.conv2"]]
    torch.testing.assert_close(net.layers["layer2_0_downsample_0"].weight,
                               model.layer2[0].downsample[0].weight[s2][:, keep])
    torch.testing.assert_close(net.layers["fc"].weight, model.fc.weight[:, s2])


def test_a_depthwise_conv_keeps_its_groups_channels():
    model = _trained_like(tm.mobilenet_v2_tiny())
    space = trace_model(model, (1, 16, 16), "mb")
    sd, widths = model.state_dict(), space.uniform(0.5)
    net = user_network(space, sd, widths)
    keep = keep_channels(space, sd, widths)[space.graph.group_of["features.2.conv.0.0"]]
    torch.testing.assert_close(net.layers["features_2_conv_1_0"].weight, model.features[2].conv[1][0].weight[keep])
    project = space.assignment(widths)[space.graph.group_of["features.2.conv.2"]]
    assert tuple(net.layers["features_2_conv_2"].weight.shape) == (project, len(keep), 1, 1)


def test_bad_weights_are_named(tmp_path):
    model = tm.resnet_tiny()
    space = trace_model(model, (1, 16, 16), "rn")
    sd = model.state_dict()
    with pytest.raises(WeightsError, match=r"missing keys \['layer2.0.bn1.running_var'\]"):
        check_state(space, {k: v for k, v in sd.items() if k != "layer2.0.bn1.running_var"})
    with pytest.raises(WeightsError, match=r"unexpected keys \['head.weight'\]"):
        check_state(space, {**sd, "head.weight": torch.zeros(3)})
    with pytest.raises(WeightsError, match="layer1.0.conv1.weight: \\(8, 32, 3, 3\\), the space needs \\(32, 32, 3, 3\\)"):
        check_state(space, {**sd, "layer1.0.conv1.weight": torch.zeros(8, 32, 3, 3)})
    wrapped = {f"module.{k}": v for k, v in sd.items()}  # saved from DataParallel
    assert check_state(space, wrapped).keys() == sd.keys()
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "ckpt.pt")
    assert load_state_file(tmp_path / "ckpt.pt").keys() == sd.keys()
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="not a state_dict"):
        load_state_file(tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(WeightsError, match="cannot be read"):
        load_state_file(tmp_path / "junk.pt")
    with pytest.raises(WeightsError, match="was not traced from a model"):
        check_state(resnet_small(), sd)
    with pytest.raises(WeightsError, match="wider than the model's"):
        wide = trace_model(model, (1, 16, 16), "rn", max_mult=1.5)
        user_network(wide, sd, wide.max_widths)


def test_a_supernet_seeded_from_the_weights_is_the_model_at_its_widest():
    """Each group's channels sorted by importance: the supernet's full widths compute the model, and its
    first k channels of a group are the group's k most important ones."""
    model = _trained_like(tm.mobilenet_v2_tiny())
    space = trace_model(model, (1, 16, 16), "mb")
    sup = SlimmableGraphNet(space).eval()
    seed_supernet(sup, model.state_dict())
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(sup(x), model(x), rtol=0, atol=1e-5)
    sd, widths = model.state_dict(), space.min_widths
    grp = space.graph.group_of["features.0.0"]
    k = space.assignment(widths)[grp]
    top = importance(space, sd)[grp].argsort(descending=True, stable=True)[:k]
    torch.testing.assert_close(sup.full.layers["features_0_0"].weight[:k], model.features[0][0].weight[top])
    # so the supernet's narrow network and the importance-sliced model hold the same channels (in another order)
    assert set(keep_channels(space, sd, widths)[grp].tolist()) == set(top.tolist())


def test_export_cli_slices_the_users_weights(tmp_path, capsys):
    model = _trained_like(tm.resnet_tiny())
    torch.save(model.state_dict(), tmp_path / "model.pt")
    space = trace_model(model, (1, 16, 16), "rn")
    space.save(tmp_path / "rn.json")
    assert main(["export", "--space", str(tmp_path / "rn.json"), "--weights", str(tmp_path / "model.pt"),
                 "--widths", "x0.5", "--out", str(tmp_path / "m.onnx")]) == 0
    text = capsys.readouterr().out
    assert "kept by importance over each group" in text and "parameters" in text
    side = json.loads((tmp_path / "m.json").read_text())
    assert side["widths"] == space.uniform(0.5) and side["weights"].endswith("model.pt")
    assert all(len(v) == w for v, w in zip(side["kept_channels"].values(), side["widths"]))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        ref = user_network(space, model.state_dict(), space.uniform(0.5)).eval()(x).numpy()
    np.testing.assert_allclose(_ort(tmp_path / "m.onnx", x), ref, atol=1e-4)
    # the model's own widths by default: the exported ONNX is the user's model
    assert main(["export", "--space", str(tmp_path / "rn.json"), "--weights", str(tmp_path / "model.pt"),
                 "--out", str(tmp_path / "full.onnx")]) == 0
    with torch.no_grad():
        np.testing.assert_allclose(_ort(tmp_path / "full.onnx", x), model(x).numpy(), atol=1e-4)
    assert main(["export", "--weights", str(tmp_path / "model.pt"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--space traced.json" in capsys.readouterr().err
    bad = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    torch.save(bad, tmp_path / "bad.pt")
    assert main(["export", "--space", str(tmp_path / "rn.json"), "--weights", str(tmp_path / "bad.pt"),
                 "--out", str(tmp_path / "y.onnx")]) == 2
    assert "missing keys ['fc.weight']" in capsys.readouterr().err and not (tmp_path / "y.onnx").exists()


def test_magnitude_importance_also_asks_what_reads_a_channel():
    """Equal BN gammas say nothing; the layer reading the group says which channels it uses. 'bn' keeps the
    first channels (a stable tie), 'magnitude' the ones the next conv reads hardest."""
    model = _trained_like(tm.mobilenet_v2_tiny())
    space = trace_model(model, (1, 16, 16), "mb")
    g = space.graph.group_of
    op = next(o for o in space.graph.ops if o.kind == "conv" and not o.keeps_group
              and g[o.name] in [s.name for s in space.free_groups] and g[o.inputs[0]] in
              [s.name for s in space.free_groups])
    grp, mods = g[op.inputs[0]], dict(model.named_modules())
    src = space.source.module_of
    with torch.no_grad():
        for o in space.graph.ops:  # every BN of the group the conv reads: gamma 1
            if o.kind == "bn" and g[o.name] == grp:
                mods[src[o.name]].weight.fill_(1.0)
        base = space.group(grp).base
        assert base >= 16
        mods[src[op.name]].weight[:, base - 8:] *= 50  # the reader leans on the last 8 channels
    sd = model.state_dict()
    widths = {s.name: (8 if s.name == grp else s.base) for s in space.free_groups}
    dense = space.with_dense_choices(8)
    assert keep_channels(dense, sd, widths, "bn")[grp].tolist() == list(range(8))
    assert keep_channels(dense, sd, widths)[grp].tolist() == list(range(base - 8, base))  # magnitude, the default
    with pytest.raises(ValueError, match="criterion"):
        importance(space, sd, "l2")


def test_the_tp_criterion_keeps_the_channels_torch_pruning_keeps():
    """Sliced by 'tp' at the widths Torch-Pruning's uniform L1 pruning leaves, the user's weights compute
    exactly Torch-Pruning's pruned model (its group magnitude, reduced and normalised as it does)."""
    tp = pytest.importorskip("torch_pruning")
    model = _trained_like(tm.resnet_tiny())
    space = trace_model(model, (1, 16, 16), "rn")
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = _trained_like(tm.resnet_tiny())
    pruned.load_state_dict(sd)
    tp.pruner.MetaPruner(pruned, torch.randn(1, 1, 16, 16), importance=tp.importance.MagnitudeImportance(p=1),
                         pruning_ratio=0.5, ignored_layers=[pruned.fc]).step()
    small = trace_model(pruned.eval(), (1, 16, 16), "rn_pruned")
    widths = {s.name: small.group(s.name).base for s in space.free_groups}  # the same op names, so groups
    assert widths != {s.name: s.base for s in space.free_groups}
    dense = space.with_dense_choices(8)
    net = user_network(dense, sd, widths, criterion="tp").eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), pruned(x), rtol=1e-4, atol=1e-4)
        assert (user_network(dense, sd, widths, criterion="bn").eval()(x) - pruned(x)).abs().max() > 1e-2
