"""Tracing a user's torch model into a graph space (models/trace.py, `widthnas space --from-model`):
the channel groups found against the built-in families written independently, every supported
spelling, the refusals and their messages, --fixed, hand-given ties, and the space file."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import trace_models as tm
from widthnas.models.families import mobilenet_v2_small, resnet_small
from widthnas.models.space import GraphSpace
from widthnas.models.trace import TraceError, apply_constraints, load_factory, trace_model, traced_choices
from widthnas.nas.cli import main

MODELS = str(Path(tm.__file__))  # the user's model file, as --from-model path/to/file.py:factory


@pytest.fixture(scope="module")
def rn_traced():
    return trace_model(tm.resnet18_small(), (1, 28, 28), "rn")


@pytest.fixture(scope="module")
def mb_traced():
    return trace_model(tm.mobilenet_v2_small(), (1, 28, 28), "mb")


def _partition(space, rename=lambda n: n):
    """The channel groups as sets of the convs (and the classifier) whose output they are, by
    (renamed) op name; fixed groups marked."""
    out = set()
    for g in space.graph.groups:
        convs = frozenset(rename(t) for t in g.members
                          if t in space.graph.by_name and space.graph.by_name[t].kind in ("conv", "linear"))
        out.add(convs)
    return out


def _same_convs(builtin, traced, rename):
    """Every conv and linear of the built-in space is the traced op it maps to, with the same kernel,
    stride, base channels, depthwise flag, input and output sizes."""
    by = traced.graph.by_name
    for op in builtin.graph.ops:
        if op.kind not in ("conv", "linear"):
            continue
        t = by[rename(op.name)]
        assert (t.kind, t.kernel, t.stride, t.out, t.depthwise) == (op.kind, op.kernel, op.stride, op.out, op.depthwise), op
        assert traced.graph.sizes[t.name] == builtin.graph.sizes[op.name]
    assert sum(o.kind == "conv" for o in traced.graph.ops) == sum(o.kind == "conv" for o in builtin.graph.ops)


def _rn_name(n):
    """resnet_small's op names -> the torchvision-style module paths of tests/trace_models.py."""
    if n == "stem":
        return "conv1"
    if n == "fc":
        return "fc"
    stage, block, conv = n.split(".")  # s1.b0.conv1
    conv = "downsample.0" if conv == "down" else conv
    return f"layer{stage[1:]}.{block[1:]}.{conv}"


def _mb_name_map():
    """mobilenet_v2_small's op names -> the torchvision-style paths (features.k.conv.i.0 ...)."""
    m, k = {"stem": "features.0.0", "fc": "classifier.1"}, 1
    for i, (t, c, n, s) in enumerate([(1, 8, 1, 1), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 2, 2), (6, 48, 2, 1)]):
        for j in range(n):
            p, q = f"s{i}.b{j}", f"features.{k}.conv"
            if t != 1:
                m[f"{p}.expand"] = f"{q}.0.0"
            m[f"{p}.dw"] = f"{q}.{0 if t == 1 else 1}.0"
            m[f"{p}.project"] = f"{q}.{1 if t == 1 else 2}"
            k += 1
    m["head"] = f"features.{k}.0"
    return m


def test_resnet_traces_into_resnet_small_groups(rn_traced):
    """A torchvision-style ResNet-18 (basic blocks, `out += identity`, a ReLU module called twice,
    projection shortcuts in a Sequential) has the groups of the built-in resnet_small: the stem and
    stage 1 tied by identity shortcuts, each later stage one group with its projection, every
    block's inner width free."""
    ref = resnet_small()
    _same_convs(ref, rn_traced, _rn_name)
    assert _partition(rn_traced) == _partition(ref, _rn_name)
    assert len(rn_traced.free_groups) == len(ref.free_groups) == 12
    stage2 = next(g for g in rn_traced.graph.groups if "layer2.0.downsample.0" in g.members)
    assert {"layer2.0.conv2", "layer2.1.conv2", "layer2.0.downsample.0"} <= set(stage2.members)
    assert "layer2.0.conv1" not in stage2.members
    assert rn_traced.macs(rn_traced.base_widths) == ref.macs(ref.base_widths)
    assert rn_traced.factor_structure().factors and rn_traced.num_classes == 10
    # every group's choices run up to the model's own width and never past it
    for g in rn_traced.free_groups:
        assert g.choices[-1] == g.base and all(c % 8 == 0 for c in g.choices)


def test_mobilenet_v2_traces_into_mobilenet_v2_small_groups(mb_traced):
    """A torchvision-style MobileNet-v2 (ConvBNReLU Sequentials, depthwise convs keeping the expansion
    width, `x + self.conv(x)` only where stride 1 and widths match) has mobilenet_v2_small's groups."""
    ref, m = mobilenet_v2_small(), _mb_name_map()
    _same_convs(ref, mb_traced, m.__getitem__)
    assert _partition(mb_traced) == _partition(ref, m.__getitem__)
    assert mb_traced.macs(mb_traced.base_widths) == ref.macs(ref.base_widths)
    dw = mb_traced.graph.by_name["features.3.conv.1.0"]
    assert dw.depthwise and mb_traced.graph.group_of[dw.name] == mb_traced.graph.group_of["features.3.conv.0.0"]
    # the first stage is 8 channels wide: no narrower multiple of 8, so it is fixed (the built-in offers 16)
    fixed = [g for g in mb_traced.groups if g.fixed and g.name not in ("input", "classes")]
    assert [(g.base, g.choices) for g in fixed] == [(8, (8,))]
    assert len(mb_traced.free_groups) == len(ref.free_groups) - 1


def test_every_supported_spelling_traces_and_reproduces_the_model():
    """F.relu, F.relu6, `+=`, torch.add, F.max_pool2d, a depthwise 5x5, a conv bias, x.mean((2, 3)),
    view(x.size(0), -1), Dropout, an unused layer: the space computes what the model computes."""
    model = tm.FunctionalNet()
    space = trace_model(model, (1, 16, 16), "fn")  # raises unless the rebuilt space reproduces the model
    kinds = [op.kind for op in space.graph.ops]
    assert kinds.count("add") == 2 and kinds.count("maxpool") == 1 and kinds[-2:] == ["gap", "linear"]
    assert [op.fn for op in space.graph.ops if op.kind == "act"] == ["relu", "relu6", "relu", "relu"]
    assert space.graph.by_name["dw"].depthwise and space.graph.by_name["dw"].kernel == 5
    # the residual ties c1 and c2; the depthwise conv keeps it; c3 starts a new group
    assert space.graph.group_of["c2"] == space.graph.group_of["c1"] == space.graph.group_of["dw"] != \
        space.graph.group_of["c3"]
    assert set(space.source.module_of.values()) >= {"c1", "b1", "dw", "bdw", "out"}
    assert space.source.unused_keys == ("unused.weight", "unused.bias")


def test_names_of_a_top_level_sequential_start_with_a_letter():
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    space = trace_model(model, (1, 8, 8), "seq")
    assert [op.name for op in space.graph.ops][:2] == ["m0", "m1"]
    assert space.source.module_of["m0"] == "0" and space.num_classes == 4


@pytest.mark.parametrize("model,needles", [
    (tm.ArithmeticSwish, ["fx node 'mul'", "trace_models.py:", "x * sigmoid(x)", "What to do"]),
    (tm.WithStack, ["stack", "fx node 'stack'", "channel axis", "What to do"]),
    (tm.WithSplit, ["Tensor.chunk()", "splitting", "What to do"]),
    (tm.WithGrouped, ["groups=4", "module 'conv.0'", "16 -> 32", "changes its channel count", "ResNeXt"]),
    (tm.WithTanh, ["Tanh", "module 'act'", "Hardswish", "LeakyReLU"]),
    (tm.Dynamic, ["torch.fx could not trace Dynamic", "control flow", "What to do"]),
    (tm.TwoOutputs, ["returns tuple", "one tensor"]),
])
def test_unsupported_ops_are_refused_with_what_to_do(model, needles):
    with pytest.raises(TraceError) as e:
        trace_model(model(), (1, 16, 16))
    for n in needles:
        assert n in str(e.value), (n, str(e.value))


def test_more_refusals():
    def refused(model, shape=(1, 8, 8)):
        with pytest.raises(TraceError) as e:
            trace_model(model, shape)
        return str(e.value)

    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)]
    cbr = [nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    assert "padding" in refused(nn.Sequential(nn.Conv2d(1, 16, 3, padding=(1, 0), bias=False), nn.BatchNorm2d(16),
                                              *head))
    assert "dilation" in refused(nn.Sequential(nn.Conv2d(1, 16, 3, padding=2, dilation=2, bias=False),
                                               nn.BatchNorm2d(16), *head))
    assert "MaxPool2d(3, 2, 1)" in refused(nn.Sequential(*cbr, nn.MaxPool2d(3, 2, 1, dilation=2), *head))
    assert "flattened 8x8 feature map, not pooled" in refused(nn.Sequential(*cbr, nn.Flatten(), nn.Linear(16 * 64, 4)))
    assert "affine=False" in refused(nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16, affine=False),
                                                   *head))
    assert "after the classifier" in refused(nn.Sequential(*cbr, *head, nn.Softmax(dim=1)))
    assert "does not run on input" in refused(nn.Sequential(*cbr, *head), (3, 8, 8))
    shared = nn.Conv2d(16, 16, 3, padding=1, bias=False)

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.c, self.b1, self.b2, self.fc = nn.Sequential(*cbr), shared, nn.BatchNorm2d(16), \
                nn.BatchNorm2d(16), nn.Linear(16, 4)

        def forward(self, x):
            x = self.stem(x)
            x = self.b2(self.c(self.b1(self.c(x))))
            return self.fc(x.mean((2, 3)))

    assert "called a second time" in refused(Shared())


def test_inplace_ops_the_graph_cannot_follow_fail_the_output_check():
    """An in-place ReLU on a tensor read again afterwards: the pure-op graph would compute another
    function, and tracing says so instead of writing a wrong space."""

    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
            self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            x = self.b1(self.c1(x))
            y = self.b2(self.c2(x))
            h = x.relu_()  # changes x too, which the add below reads
            return self.fc((h + y + x).mean((2, 3)))

    with pytest.raises(TraceError, match="does not compute what the model does"):
        trace_model(Sneaky(), (1, 8, 8))

    class Unused(Sneaky):
        def forward(self, x):
            x = self.b1(self.c1(x))
            x.relu_()  # result unused: only its side effect matters
            return self.fc(self.b2(self.c2(x)).mean((2, 3)))

    with pytest.raises(TraceError, match="in-place op whose result is not used"):
        trace_model(Unused(), (1, 8, 8))


def test_fixed_layers_keep_their_width(rn_traced):
    space = apply_constraints(rn_traced, ["layer3", "conv1"])  # a block's path fixes every conv in it
    a = {g.name: g for g in space.groups}
    for op in ("conv1", "layer1.0.conv2", "layer3.0.conv1", "layer3.1.conv1", "layer3.0.conv2", "layer4.0.conv2"):
        g = a[space.graph.group_of[op]]
        assert g.fixed == (not op.startswith("layer4")) and (g.choices == (g.base,) if g.fixed else len(g.choices) > 1)
    assert len(space.free_groups) == len(rn_traced.free_groups) - 4  # stage 1 (= stem), 3 and two inner widths
    assert space.fingerprint != rn_traced.fingerprint
    again = GraphSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again.fingerprint == space.fingerprint and again.graph.fixed == space.graph.fixed
    with pytest.raises(TraceError) as e:
        apply_constraints(rn_traced, ["layer9.0.conv1"])
    assert "['layer9.0.conv1'] name no layer" in str(e.value) and "layer4.1.conv2" in str(e.value)


def test_ties_merge_groups_given_by_hand(rn_traced, tmp_path):
    """A tie (hand-given group) merges the inner widths of two blocks into one search variable; in the
    JSON as 'ties'; a hand-edited file must list the groups the ties leave."""
    space = apply_constraints(rn_traced, ties=[["layer2.0.conv1", "layer2.1.conv1"]])
    assert len(space.free_groups) == len(rn_traced.free_groups) - 1
    assert space.graph.group_of["layer2.0.conv1"] == space.graph.group_of["layer2.1.conv1"]
    d = space.to_dict()
    assert d["ties"] == [["layer2.0.conv1", "layer2.1.conv1"]]
    assert GraphSpace.from_dict(d).fingerprint == space.fingerprint
    with pytest.raises(ValueError, match="same base width"):  # 32 and 64 channels cannot be one width
        apply_constraints(rn_traced, ties=[["layer1.0.conv1", "layer2.0.conv1"]])
    # by hand: add a tie to the file; the group it removes must go from 'groups' too, and the error says so
    hand = rn_traced.to_dict()
    hand["ties"] = [["layer3.0.conv1", "layer3.1.conv1"]]
    with pytest.raises(ValueError, match="'layer3.1.conv1' is not a channel group"):
        GraphSpace.from_dict(hand)
    hand["groups"] = [g for g in hand["groups"] if g["name"] != "layer3.1.conv1"]
    assert len(GraphSpace.from_dict(hand).free_groups) == len(rn_traced.free_groups) - 1
    hand["ties"] = [["layer3.0.conv1", "nope"]]
    with pytest.raises(ValueError, match="'nope'"):
        GraphSpace.from_dict(hand)


def test_space_file_round_trip_keeps_the_source(mb_traced, tmp_path):
    p = tmp_path / "mb.json"
    mb_traced.save(p)
    back = GraphSpace.load(p)
    assert back.fingerprint == mb_traced.fingerprint and back.source == mb_traced.source
    d = json.loads(p.read_text())
    assert d["source"]["modules"]["features.0.1"] == "features.0.1"
    d["source"]["modules"].pop("features.0.1")
    with pytest.raises(ValueError, match="missing \\['features.0.1'\\]"):
        GraphSpace.from_dict(d)


def test_traced_choices_include_the_models_width():
    assert traced_choices(64) == (16, 24, 32, 40, 48, 56, 64)
    assert traced_choices(20) == (8, 16, 20)  # the model's own width, though not a multiple of 8
    assert traced_choices(64, levels=3) == (16, 40, 64)
    assert traced_choices(32, max_mult=1.5)[-1] == 48 and 32 in traced_choices(32, max_mult=1.5)
    assert traced_choices(4) == (4,)


def test_cli_traces_prints_groups_and_guards_its_output(tmp_path, capsys):
    out = tmp_path / "rn.json"
    args = ["space", "--from-model", f"{MODELS}:resnet18_small", "--input-shape", "1,28,28", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "traced from" in text and "out of: layer2.0.conv2, layer2.0.downsample.0, layer2.1.conv2" in text
    assert "12 free groups" in text and f"space written to {out}" in text
    space = GraphSpace.load(out)
    assert space.name == "resnet18_small" and space.source.factory.endswith("trace_models.py:resnet18_small")
    assert main(args) == 2 and "exists" in capsys.readouterr().err  # never overwritten unasked
    assert main(args + ["--force", "--fixed", "layer4", "--tie", "layer1.0.conv1,layer1.1.conv1"]) == 0
    capsys.readouterr()
    assert len(GraphSpace.load(out).free_groups) == 12 - 3 - 1
    # the same constraints on an existing space file, without the model
    assert main(["space", "--space", str(out), "--tie", "layer2.0.conv1,layer2.1.conv1", "--out",
                 str(tmp_path / "more.json")]) == 0
    assert len(GraphSpace.load(tmp_path / "more.json").free_groups) == 12 - 3 - 2


@pytest.mark.parametrize("args,msg", [
    (["--from-model", "nocolon", "--input-shape", "1,16,16"], "give 'package.module:factory'"),
    (["--from-model", "no_such_module_xyz:make", "--input-shape", "1,16,16"], "importing no_such_module_xyz failed"),
    (["--from-model", "trace_models:nothing", "--input-shape", "1,16,16"], "has no callable 'nothing'"),
    (["--from-model", "trace_models:raises", "--input-shape", "1,16,16"], "raised RuntimeError: no GPU found"),
    (["--from-model", "trace_models:not_a_module", "--input-shape", "1,16,16"], "returned int, not a torch nn.Module"),
    (["--from-model", "trace_models:resnet_tiny", "--input-shape", "1,16"], "--input-shape '1,16'"),
    (["--from-model", "trace_models:resnet_tiny"], "needs --input-shape"),
    (["--from-model", "trace_models:resnet_tiny", "--input-shape", "1,16,16", "--fixed", "layer1.0.convX"],
     "name no layer of the model"),
    (["--from-model", "trace_models:WithSplit", "--input-shape", "1,16,16"], "splitting"),
    (["--space", "resnet_small", "--max-mult", "1.5"], "use them with --from-model"),
])
def test_cli_refuses_bad_input_clearly(args, msg, capsys, monkeypatch):
    monkeypatch.chdir(Path(tm.__file__).parent)  # `trace_models` importable from the working directory
    assert main(["space", *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.startswith("error: ")


def test_load_factory_takes_a_class_and_a_file(monkeypatch):
    model, spec = load_factory(f"{MODELS}:FunctionalNet")
    assert type(model).__name__ == "FunctionalNet" and spec.endswith(":FunctionalNet")
    monkeypatch.chdir(Path(tm.__file__).parent)
    assert isinstance(load_factory("trace_models:resnet_tiny")[0], nn.Module)


def test_a_traced_space_works_where_a_built_in_does(rn_traced, tmp_path):
    """lookup by file, the supernet, the ONNX builder and the factor structure take a traced space."""
    from widthnas.latency.onnx_graph import space_onnx
    from widthnas.models.net import SlimmableGraphNet
    from widthnas.models import get_space

    p = tmp_path / "rn.json"
    rn_traced.save(p)
    space = get_space(str(p))
    sup = SlimmableGraphNet(space)
    with torch.no_grad():
        assert sup(torch.randn(2, 1, 28, 28), space.min_widths).shape == (2, 10)
    model = space_onnx(space, space.min_widths)
    assert model.graph.initializer[0].dims[0] == space.min_widths[0]
