"""Tracing models that were not written for widthnas: pytorchcv's model zoo (MIT; installed by
`make test` without its declared torchvision dependency, which these models never import).

Its ResNet-18 must trace into the groups of the built-in `resnet` family, written independently;
its MobileNet (v1) into one free group per pointwise conv, depthwise convs keeping their input's
group, and the traced network must reproduce the model's outputs. Its MobileNet-v2 ends in a 1x1
conv classifier, read as the space's linear classifier. A width-quartered
ResNet-18 then goes through `widthnas run` with the user's weights, as a user would run it."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from helpers import TRACED_RUN_FLAGS, conv_out_channels, write_bar_dataset
from widthnas.models.families import resnet
from widthnas.models.space import GraphSpace
from widthnas.models.trace import TraceError, check_against_model, trace_model
from widthnas.nas.cli import main

pytest.importorskip("pytorchcv")
from pytorchcv.models.mobilenet import mobilenet_w1  # noqa: E402
from pytorchcv.models.mobilenetv2 import mobilenetv2_w1  # noqa: E402
from pytorchcv.models.resnet import resnet18, resnet18_wd4  # noqa: E402


pytestmark = pytest.mark.usefixtures("quick_timing_module")  # tests/helpers.py quick_timing


def _pcv_name(n: str) -> str:
    """The built-in resnet's op names -> pytorchcv's module paths."""
    if n == "stem":
        return "features.init_block.conv.conv"
    if n == "fc":
        return "output"
    stage, block, conv = n.split(".")  # s2.b0.down
    unit = f"features.stage{stage[1:]}.unit{int(block[1:]) + 1}"
    return f"{unit}.identity_conv.conv" if conv == "down" else f"{unit}.body.{conv}.conv"


def _partition(space, rename=lambda n: n):
    return {frozenset(rename(t) for t in g.members if t in space.graph.by_name
                      and space.graph.by_name[t].kind in ("conv", "linear")) for g in space.graph.groups}


def test_pytorchcv_resnet18_traces_into_the_builtin_resnet_groups():
    torch.manual_seed(0)
    model = resnet18().eval()  # 224 px, 1000 classes: the built-in `resnet`'s setting
    traced = trace_model(model, (3, 224, 224), "pcv_resnet18")
    ref = resnet()
    by = traced.graph.by_name
    for op in ref.graph.ops:
        if op.kind in ("conv", "linear"):
            t = by[_pcv_name(op.name)]
            assert (t.kind, t.kernel, t.stride, t.out, t.depthwise) == (op.kind, op.kernel, op.stride, op.out,
                                                                         op.depthwise), op.name
            assert traced.graph.sizes[t.name] == ref.graph.sizes[op.name], op.name
    assert _partition(traced) == _partition(ref, _pcv_name)
    assert len(traced.free_groups) == len(ref.free_groups) == 12
    assert traced.macs(traced.base_widths) == ref.macs(ref.base_widths)
    assert check_against_model(traced, model) < 1e-3  # the traced network is the model, weights and all


def test_pytorchcv_mobilenet_v1_traces_one_group_per_pointwise_conv():
    torch.manual_seed(0)
    model = mobilenet_w1().eval()
    traced = trace_model(model, (3, 224, 224), "pcv_mobilenet")
    convs = [op for op in traced.graph.ops if op.kind == "conv"]
    assert len(convs) == 27 and sum(op.depthwise for op in convs) == 13
    g = traced.graph.group_of
    for prev, op in zip(convs, convs[1:]):
        if op.depthwise:  # keeps the group of the conv before it
            assert g[op.name] == g[prev.name], op.name
    assert len(traced.free_groups) == 14  # the stem and 13 pointwise convs, as mobilenet_v1
    assert [grp.base for grp in traced.free_groups] == [32, 64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]
    assert check_against_model(traced, model) < 1e-3


def test_pytorchcv_mobilenet_v2_conv_classifier_is_read_as_the_linear_classifier(tmp_path):
    """Its classifier is a 1x1 conv on the pooled features, then x.view(x.size(0), -1): the space's linear op,
    with the user's (classes, C, 1, 1) weights read as (classes, C). Refused until issue 32."""
    from helpers import check_every_form

    torch.manual_seed(0)
    model = mobilenetv2_w1().eval()
    model.features.final_pool = nn.AdaptiveAvgPool2d(1)  # its 7x7 pool is for 224 px
    space, _ = check_every_form(model, (3, 64, 64), tmp_path)
    assert space.graph.ops[-1].kind == "linear" and space.source.module_of[space.graph.ops[-1].name] == "output"


def resnet18_quarter_small():
    """A user's factory: pytorchcv's width-quartered ResNet-18 for 1-channel 16 px images, its fixed
    7x7 average pool replaced by a global one (as a user adapting an ImageNet model would)."""
    torch.manual_seed(0)
    m = resnet18_wd4(in_channels=1, in_size=(16, 16), num_classes=10)
    m.features.final_pool = nn.AdaptiveAvgPool2d(1)
    return m


def test_pytorchcv_resnet_runs_end_to_end_with_the_users_weights(tmp_path, capsys):
    """~20 s: trace, then `widthnas run` (profile, fit, slimmable training from the user's weights,
    search, fine-tune, export, verify) and `export --weights`, tiny settings (as tests/test_trace_run.py)."""
    data = write_bar_dataset(tmp_path / "bars.npz", 320, 64, seed=0)
    torch.save(resnet18_quarter_small().state_dict(), tmp_path / "model.pt")
    space_file = tmp_path / "traced.json"
    assert main(["space", "--from-model", f"{__file__}:resnet18_quarter_small", "--input-shape", "1,16,16",
                 "--levels", "3", "--out", str(space_file)]) == 0
    space = GraphSpace.load(space_file)
    out = tmp_path / "run"
    assert main(["run", "--space", str(space_file), "--dataset", "npz", "--data", str(data), "--out", str(out),
                 *TRACED_RUN_FLAGS, "--weights", str(tmp_path / "model.pt")]) == 0
    st = json.loads((out / "run_state.json").read_text())
    chosen = st["search"]["chosen"]
    space.validate(chosen["widths"])
    assert chosen["predicted_ms"] <= st["search"]["budget_ms"]
    assert "from model.pt (--weights)" in st["finetune"]["mode"]
    a, g = space.assignment(chosen["widths"]), space.graph.group_of
    convs = [op for op in space.graph.ops if op.kind == "conv"]
    assert conv_out_channels(out / "model.onnx") == [a[g[op.name]] for op in convs]
    assert sum(conv_out_channels(out / "model.onnx")) < sum(space.group(g[op.name]).base for op in convs)
    assert st["export"]["chosen"]["max_abs_diff"] < 1e-3
    assert main(["export", "--run", str(out / "supernet"), "--config", str(out / "config.json"), "--weights",
                 str(tmp_path / "model.pt"), "--out", str(tmp_path / "user.onnx"), "--calib-images", "64"]) == 0
    assert conv_out_channels(tmp_path / "user.onnx") == conv_out_channels(out / "model.onnx")
    assert onnx.load(str(tmp_path / "user.onnx")).graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1
    assert np.isfinite(json.loads((tmp_path / "user.json").read_text())["accuracy"]["val"])


@pytest.mark.parametrize("module,factory,eps", [("proxylessnas", "proxylessnas_mobile", 1e-3),
                                                ("mnasnet", "mnasnet_b1", 1e-5),
                                                ("mnasnet", "mnasnet_a1", None),  # squeeze-excitation
                                                # SE, hardswish, and a hidden 1x1 conv on the pooled features
                                                ("mobilenetv3", "mobilenetv3_small_w7d20", None)])
# EfficientNet-B0: its own test below, with BN statistics under which its logits depend on the image
def test_models_ported_from_tensorflow_trace_and_compute_at_a_narrower_width(module, factory, eps, tmp_path):
    """ProxylessNAS (BN eps 1e-3, TensorFlow's), MnasNet (A1: squeeze-excitation) and MobileNet-v3 (its
    hidden head layer): refused until issue 32. Traced
    at 64 px, every form of the space (torch export, the profiling ONNX, the supernet) computes the
    model at widths narrower than its own."""
    import importlib

    from helpers import check_every_form

    torch.manual_seed(0)
    model = getattr(importlib.import_module(f"pytorchcv.models.{module}"), factory)().eval()
    model.features.final_pool = nn.AdaptiveAvgPool2d(1)  # its 7x7 pool is for 224 px
    space, widths = check_every_form(model, (3, 64, 64), tmp_path)
    assert len(space.free_groups) >= 20 and sum(widths) < sum(space.base_widths)
    assert eps is None or {op.eps for op in space.graph.ops if op.kind == "bn"} == {eps}
    if module == "mobilenetv3":  # its head: pool, 1x1 conv + hardswish, 1x1 conv classifier
        hidden = space.graph.by_name[space.graph.ops[-1].inputs[0]]
        while hidden.kind != "conv":
            hidden = space.graph.by_name[hidden.inputs[0]]
        assert space.graph.sizes[hidden.inputs[0]] == (1, 1) and hidden.out == 1280
        assert space.graph.group_of[hidden.name] in [s.name for s in space.free_groups]


def test_pytorchcv_efficientnet_b0_traces_and_computes_at_a_narrower_width(tmp_path):
    """EfficientNet-B0 (Swish, squeeze-excitation, BN eps 1e-3): untrained, its logits hardly depend on the
    image; with trained-looking BN statistics they do (checked), so the parity checks of every form can fail."""
    from pytorchcv.models.efficientnet import efficientnet_b0

    from helpers import check_every_form

    torch.manual_seed(0)
    model = efficientnet_b0().eval()
    model.features.final_pool = nn.AdaptiveAvgPool2d(1)  # its 7x7 pool is for 224 px
    for m in model.modules():  # unequal BN statistics: channels differ in importance, logits move. Between
        if isinstance(m, nn.BatchNorm2d):  # signals that die out (variances >= 1) and ones that grow past 1e4
            m.weight.data.uniform_(0.5, 1.5)  # through 16 blocks (<= 0.5), where float32 rounding fails the check
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.7, 1.2)
    with torch.no_grad():
        out = model(torch.randn(8, 3, 64, 64))
    assert float(out.std(0).mean()) > 0.05 * float(out.abs().mean()) + 1e-3  # the logits depend on the image
    space, widths = check_every_form(model, (3, 64, 64), tmp_path)
    assert len(space.free_groups) >= 30 and sum(widths) < sum(space.base_widths)
    assert {op.fn for op in space.graph.ops if op.kind == "act"} >= {"silu", "sigmoid"}
