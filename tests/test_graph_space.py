import copy
import json

import numpy as np
import pytest
import torch

from helpers import calibrate_bn as _calibrate_bn
from helpers import folded_weights
from helpers import ort_run as _ort
from helpers import scramble_bn as _scramble_bn
from widthnas.latency.onnx_graph import build_onnx, space_onnx
from widthnas.models.graph import Graph, GraphBuilder, GraphError
from widthnas.models.families import get_space, mobilenet_v2, mobilenet_v2_small, resnet, resnet_small
from widthnas.models.net import SlimmableGraphNet, build_network
from widthnas.models.space import GraphSpace, OpSignature
from widthnas.models.space import WidthError

# The architectures as the tests read them, written independently of families.
MBV2_SMALL = [(1, 8, 1, 1), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 2, 2), (6, 48, 2, 1)]  # (t, c, n, s)
RESNET_SMALL = [(32, 2), (64, 2), (128, 2), (256, 2)]  # (stage width, blocks)


@pytest.fixture(scope="module")
def mbv2():
    return mobilenet_v2_small()


@pytest.fixture(scope="module")
def rn():
    return resnet_small()


@pytest.fixture(scope="module")
def rn18():
    """ResNet-18 (7x7 stem, max-pool) at 64 px: small enough to run, with every op kind."""
    return resnet().with_input((3, 64, 64), 10)


def _random_widths(space, seed):
    rng = np.random.default_rng(seed)
    return [int(rng.choice(c)) for c in space.choices]


# ---- groups -------------------------------------------------------------------------------
def test_mobilenet_v2_groups_follow_the_residual_adds(mbv2):
    g = mbv2.graph.group_of
    stage_groups, mids = [], []
    c_in = 16
    for i, (t, c, n, s) in enumerate(MBV2_SMALL):
        projects = {g[f"s{i}.b{j}.project"] for j in range(n)}
        assert len(projects) == 1, f"stage {i}: the adds tie every block's output into one group"
        stage_groups.append(projects.pop())
        for j in range(n):
            p = f"s{i}.b{j}"
            residual = j > 0 or (s == 1 and c_in == c)
            assert (f"{p}.add" in mbv2.graph.by_name) == residual, p
            if t == 1:
                assert g[f"{p}.dw"] == g["stem"], "a depthwise conv keeps its input's group"
            else:
                assert g[f"{p}.dw"] == g[f"{p}.expand"], "a depthwise conv keeps its input's group"
                mids.append(g[f"{p}.expand"])
                # the expansion reads the previous stage's group (or this stage's after block 0)
                assert g[mbv2.graph.by_name[f"{p}.expand"].inputs[0]] == (stage_groups[-2] if j == 0 else stage_groups[-1])
        c_in = c
    assert len(set(stage_groups)) == len(MBV2_SMALL) and len(set(mids)) == len(mids)  # every expansion free
    assert not set(mids) & set(stage_groups)
    free = [s.name for s in mbv2.free_groups]
    assert sorted(free) == sorted(["stem", "head", *stage_groups, *mids])
    assert [s.name for s in mbv2.groups if s.fixed] == ["input", "classes"]
    bases = {s.name: s.base for s in mbv2.groups}
    assert [bases[x] for x in stage_groups] == [c for _, c, _, _ in MBV2_SMALL]


def test_resnet_groups_tie_stages_and_free_inner_widths(rn):
    g = rn.graph.group_of
    for i, (c, n) in enumerate(RESNET_SMALL, start=1):
        tied = {g[f"s{i}.b{j}.{x}"] for j in range(n) for x in ("conv2", "add", "out")}
        if i > 1:
            tied.add(g[f"s{i}.b0.down"])
            assert g[rn.graph.by_name[f"s{i}.b0.conv1"].inputs[0]] == f"s{i - 1}"
        else:
            tied.add(g["stem"])  # identity shortcuts tie the stem to stage 1
            assert "s1.b0.down" not in rn.graph.by_name
        assert tied == {f"s{i}"}, i
        assert all(f"s{i}.b{j}.down" not in rn.graph.by_name for j in range(1, n))
    inner = [g[f"s{i}.b{j}.conv1"] for i, (_, n) in enumerate(RESNET_SMALL, start=1) for j in range(n)]
    assert len(set(inner)) == 8 and not set(inner) & {f"s{i}" for i in range(1, 5)}
    assert len(rn.free_groups) == 4 + 8
    assert {s.name: s.base for s in rn.free_groups}["s3"] == 128


def test_union_find_on_hand_built_graphs():
    b = GraphBuilder((8, 8, 8), 10)  # an add on the image ties the conv to the fixed input channels
    x = b.conv_bn("a", "input", 8, 3)
    b.head(b.add("sum", "input", x))
    space = GraphSpace.from_graph("t", b.build())
    assert space.free_groups == () and space.graph.group_of["a"] == "input"

    b = GraphBuilder((3, 8, 8), 10)
    x = b.conv_bn("a", "input", 16, 3)
    y = b.conv_bn("b", x, 24, 3)
    b.head(b.add("sum", x, y))
    with pytest.raises(GraphError, match="same base width"):
        b.build()


# ---- torch ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, seed", [("mbv2", 0), ("mbv2", 1), ("rn", 0), ("rn", 1), ("rn18", 0)])
def test_plain_network_has_the_groups_channels_and_sizes(name, seed, request):
    space = request.getfixturevalue(name)
    widths = _random_widths(space, seed)
    a, g, sizes = space.assignment(widths), space.graph.group_of, space.graph.sizes
    net = build_network(space, widths).eval()
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, tuple(o.shape[1:])))
             for k, m in net.layers.items() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        assert net(torch.randn(2, *space.input_shape)).shape == (2, space.num_classes)
    for h in hooks:
        h.remove()
    convs = [op for op in space.graph.ops if op.kind == "conv"]
    assert len(seen) == len(convs)
    for op in convs:
        assert seen[op.name.replace(".", "_")] == (a[g[op.name]], *sizes[op.name]), op.name


@pytest.mark.parametrize("name", ["mbv2", "rn", "small"])
def test_slimmable_at_an_assignment_is_the_plain_network_in_its_slices(name, request):
    """A plain network written into the first channels of the supernet's widest weights: the supernet
    at those widths must compute exactly that network (independently of `materialize`)."""
    space = request.getfixturevalue(name)
    torch.manual_seed(0)
    widths = _random_widths(space, 3)
    plain = build_network(space, widths)
    _scramble_bn(plain)
    sup = SlimmableGraphNet(space)
    big = sup.full.state_dict()
    with torch.no_grad():
        for k, p in plain.state_dict().items():
            big[k][tuple(slice(0, n) for n in p.shape)] = p
    plain.eval(), sup.eval()
    x = torch.randn(3, *space.input_shape)
    with torch.no_grad():
        ref = plain(x)
        torch.testing.assert_close(sup(x, widths), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sup(x, dict(zip([s.name for s in space.free_groups], widths))), ref,
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sup.materialize(widths).eval()(x), ref, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(sup(x, space.max_widths), ref, atol=1e-3)  # the widths matter


@pytest.mark.parametrize("name", ["rn", "small"])
def test_narrow_pass_runs_smaller_convolutions(name, request, monkeypatch):
    """Every convolution of a narrow pass has the narrow shape, not masked widest channels."""
    space = request.getfixturevalue(name)
    sup = SlimmableGraphNet(space).eval()
    shapes, conv2d = [], torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda x, w, *a, **k: (shapes.append(tuple(w.shape)), conv2d(x, w, *a, **k))[1])
    with torch.no_grad():
        sup(torch.randn(1, *space.input_shape), space.min_widths)
    a, g = space.assignment(space.min_widths), space.graph.group_of
    expected = [(a[g[op.name]], 1 if op.depthwise else a[g[op.inputs[0]]], op.kernel, op.kernel)
                for op in space.graph.ops if op.kind == "conv"]
    assert shapes == expected and any(op.depthwise for op in space.graph.ops) == (name == "small")


def test_supernet_keeps_running_stats_when_asked(mbv2):
    sup = SlimmableGraphNet(mbv2).train()
    before = copy.deepcopy(sup.full.state_dict())
    sup(torch.randn(4, *mbv2.input_shape), mbv2.min_widths, update_bn_stats=False)
    assert all(torch.equal(before[k], v) for k, v in sup.full.state_dict().items() if "running" in k)
    sup(torch.randn(4, *mbv2.input_shape), mbv2.min_widths)
    assert not all(torch.equal(before[k], v) for k, v in sup.full.state_dict().items() if "running_mean" in k)


def test_materialized_network_recalibrates_its_bn(mbv2):
    """The chosen network goes through BN recalibration (nas.evaluate.recalibrate_bn): finite, non-zero means."""
    from widthnas.nas.evaluate import recalibrate_bn

    net = SlimmableGraphNet(mbv2).materialize(mbv2.uniform(0.5))
    images = torch.randint(0, 256, (32, *mbv2.input_shape), dtype=torch.uint8)
    recalibrate_bn(net, images, torch.tensor([0.3]), torch.tensor([0.3]))
    means = [m.running_mean for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.isfinite(m).all() for m in means) and all(m.abs().sum() > 0 for m in means)


# ---- MACs -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mbv2", "rn", "small"])
def test_macs_equal_a_count_from_torch_hooks(name, request):
    space = request.getfixturevalue(name)
    widths = _random_widths(space, 5)
    net = build_network(space, widths).eval()
    counted = {}

    def hook(m, i, o, k):
        if isinstance(m, torch.nn.Conv2d):
            counted[k] = o[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            counted[k] = m.in_features * m.out_features

    for k, m in net.layers.items():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(lambda m, i, o, k=k: hook(m, i, o, k))
    with torch.no_grad():
        net(torch.randn(1, *space.input_shape))
    ours = {k.replace(".", "_"): v for k, v in space.op_macs(widths).items()}
    assert ours == counted and space.macs(widths) == sum(counted.values())


def test_macs_of_the_published_networks():  # MobileNet-v1's 569 M: tests/test_space.py
    m2, r18 = mobilenet_v2(), resnet()
    assert abs(m2.macs(m2.base_widths) / 1e6 - 300) < 2  # MobileNet-v2 1.0: 300 M (Sandler et al. 2018)
    assert abs(r18.macs(r18.base_widths) / 1e9 - 1.81) < 0.01  # ResNet-18: 1.8 G (He et al. 2016)


# ---- factor structure -------------------------------------------------------------------
def test_factor_structure_keys_latency_by_signature_and_groups(rn, mbv2):
    fs = rn.factor_structure()
    f = {x.op: x for x in fs.factors}
    assert not any(rn.graph.by_name[x.op].kind in ("bn", "act") for x in fs.factors)
    assert {op.name for op in rn.graph.ops if op.kind in ("conv", "linear")} <= set(f)
    c = f["s2.b0.conv1"]
    assert c.signature == OpSignature("conv", 3, 2, "dense", (28, 28)) and c.out_size == (14, 14)
    assert (c.in_group, c.out_group, c.scope) == ("s1", "s2.b0.mid", ("s1", "s2.b0.mid"))  # pairwise
    assert f["s2.b0.down"].signature == OpSignature("conv", 1, 2, "dense", (28, 28))
    assert f["s2.b0.down"].scope == ("s1", "s2")
    assert f["stem"].scope == ("s1",) and f["fc"].scope == ("s4",)  # unary: the other side is fixed
    assert f["s3.b1.add"].scope == ("s3",)
    assert [(s.name, s.fixed) for s in fs.groups if s.fixed] == [("input", True), ("classes", True)]
    assert {x for ff in fs.factors for x in ff.scope} == {s.name for s in rn.free_groups}
    dw = {x.op: x for x in mbv2.factor_structure().factors}["s1.b0.dw"]
    assert dw.signature == OpSignature("conv", 3, 2, "dw", (28, 28)) and dw.scope == ("s1.b0.mid",)


# ---- ONNX -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mbv2", "rn", "rn18"])
def test_onnx_graph_computes_the_torch_network(name, request):
    import onnx

    space = request.getfixturevalue(name)
    torch.manual_seed(1)
    net = build_network(space, space.min_widths if name == "rn18" else _random_widths(space, 7))
    _calibrate_bn(net, space)
    assert any(op.kind == "maxpool" for op in space.graph.ops) == (name == "rn18")
    x = np.random.default_rng(0).random((4, *space.input_shape), dtype=np.float32)
    model = build_onnx(space, folded_weights(net))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert ref.std(axis=0).mean() > 0.05  # the logits depend on the image: a meaningful comparison
    np.testing.assert_allclose(_ort(model, x), ref, rtol=1e-4, atol=1e-4)


def test_torch_export_of_the_plain_network_agrees(mbv2, tmp_path):
    from widthnas.nas.export import export_onnx

    net = _calibrate_bn(build_network(mbv2, mbv2.uniform(0.5)), mbv2)
    v = export_onnx(net, mbv2, tmp_path / "m.onnx")
    assert v["opset"] == 17 and v["max_abs_diff"] < 1e-4
    # the file computes the network, on random images of this test's own (not only the exporter's check)
    x = np.random.default_rng(3).random((3, *mbv2.input_shape), dtype=np.float32)
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(x)).numpy()
    assert ref.std(axis=0).mean() > 0.05  # the logits depend on the image: a meaningful comparison
    np.testing.assert_allclose(_ort(tmp_path / "m.onnx", x), ref, rtol=1e-4, atol=1e-4)


def test_random_graph_has_the_widths(rn):
    widths = _random_widths(rn, 2)
    a, g = rn.assignment(widths), rn.graph.group_of
    shapes = {i.name: tuple(i.dims) for i in space_onnx(rn, widths).graph.initializer}
    for op in rn.graph.ops:
        if op.kind == "conv":
            assert shapes[f"{op.name}.w"][:2] == (a[g[op.name]], a[g[op.inputs[0]]]), op.name
    assert shapes["fc.w"] == (10, a["s4"])


# ---- files and lookup -------------------------------------------------------------------
# Pinned: a change here invalidates every artefact made for these spaces. Change only on purpose.
FINGERPRINTS = {"mobilenet_v1": "e31067c5a8b9b0b1", "mobilenet_v1_small": "9ad355dd8ef7c67d",  # graph spaces since 0.2
                "mobilenet_v2": "b93d8e6dab36c6dd", "mobilenet_v2_small": "75b0607c66b81f22",
                "resnet": "49c69a0d8170fee5", "resnet_small": "167299602371b83c"}


def test_json_round_trip_and_fingerprints(tmp_path):
    for name, fp in FINGERPRINTS.items():
        space = get_space(name)
        d = json.loads(json.dumps(space.to_dict()))
        assert d["format"] == "widthnas-graph/1"
        assert [x["name"] for x in d["groups"] if x.get("fixed")] == ["input", "classes"]
        back = GraphSpace.from_dict(d)
        assert back == space and back.fingerprint == space.fingerprint == fp, name
    rn = resnet_small()
    rn.save(tmp_path / "rn.json")
    assert get_space(str(tmp_path / "rn.json")).fingerprint == rn.fingerprint
    assert rn.with_input((3, 32, 32)).fingerprint != rn.fingerprint
    assert rn.with_input((3, 32, 32)).graph.sizes["fc"] == (1, 1)
    d = rn.to_dict()
    d["groups"][1]["choices"] = d["groups"][1]["choices"][:-1]
    assert GraphSpace.from_dict(d).fingerprint != rn.fingerprint


def _group(d, name):
    return next(g for g in d["groups"] if g["name"] == name)


def _op(d, name):
    return next(o for o in d["ops"] if o["name"] == name)


BAD = [
    (lambda d: d.update(format="widthnas-graph/0"), "expected 'widthnas-graph/1'"),
    (lambda d: d.update(format="widthnas-space/1"), "chain format of widthnas before 0.2"),
    (lambda d: d.pop("ops"), "field 'ops' is missing"),
    (lambda d: _group(d, "s2").update(choices=[12, 16, 24]), r"\[12\] are not multiples of 8"),
    (lambda d: _group(d, "s2").update(choices=[24, 16]), "ascending"),
    (lambda d: _group(d, "s2").update(choices=[16, 24.5]), "whole channel counts"),
    (lambda d: d["groups"].remove(_group(d, "s2")), r"derive group\(s\) \['s2'\] that 'groups' does not list"),
    (lambda d: d["groups"].append({"name": "s9", "choices": [8]}), "'s9' is not a channel group of the ops"),
    (lambda d: _group(d, "input").update(choices=[1, 3]), "fixed group 'input' has the one choice"),
    (lambda d: _group(d, "classes").pop("fixed"), "'classes' is fixed in the ops"),
    (lambda d: _group(d, "s2").update(fixed=True), "'s2' is free in the ops"),
    (lambda d: _group(d, "s2").update(base=72), "base 72, the ops declare 64"),
    (lambda d: _op(d, "s2.b1.conv2").update(out=72), "same base width"),
    (lambda d: _op(d, "s2.b1.conv1").update(stride=2), "different sizes"),
    (lambda d: _op(d, "s2.b1.conv1").update(op="deconv"), "unknown op 'deconv'"),
    (lambda d: _op(d, "s2.b1.conv1").update(depthwise=True), r"unknown field\(s\) \['out', 'tag'\]"),
    (lambda d: _op(d, "s2.b1.conv1").update(inputs=["s3.b0.add"]), "topological order"),
    (lambda d: _op(d, "s2.b1.conv1").update(padding=1), r"unknown field\(s\) \['padding'\]"),
    (lambda d: _op(d, "s2.b1.conv1.bn").update(kernel=3), r"'s2.b1.conv1.bn', bn\): unknown field"),
    (lambda d: _op(d, "s2.b1.conv1").pop("stride"), r"missing field\(s\) \['stride'\]"),
    (lambda d: _op(d, "s2.b1.conv1").update(depthwise="yes"), "'depthwise' must be a bool"),
    (lambda d: _op(d, "s2.b1.conv1").update(kernel=2), "the kernel odd unless 'pad' is given"),
    (lambda d: _op(d, "s2.b1.conv1").update(pad=3), "'pad' 3 is more than half the kernel 3"),
    (lambda d: _op(d, "s2.b1.conv1").update(pad=-2), "'pad' must be 0 or more px"),
    (lambda d: _op(d, "s1.b0.conv1.act").update(fn="tanh"), "activation 'tanh'"),
    (lambda d: d["ops"].remove(_op(d, "pool")) or _op(d, "fc").update(inputs=["s4.b1.out"]), "1x1 tensor"),
    (lambda d: d.update(input_shape=[1, 0, 28]), "must be positive"),
    (lambda d: d.update(input_shape=[1, 28]), r"\[C, H, W\]"),
]


@pytest.mark.parametrize("mutate, msg", BAD)
def test_bad_space_files_are_named(rn, mutate, msg):
    d = copy.deepcopy(rn.to_dict())
    mutate(d)
    with pytest.raises(GraphError, match=msg):
        GraphSpace.from_dict(d)


def test_bad_widths_are_named(rn):
    w = rn.base_widths
    w[1] = 36
    with pytest.raises(WidthError, match="group s1.b0.mid: width 36 is not a choice"):
        rn.validate(w)
    with pytest.raises(WidthError, match="11 widths given"):
        rn.validate(w[:-1])
    with pytest.raises(WidthError, match=r"no width given for group\(s\) \['s4'\]"):
        rn.validate({s.name: s.base for s in rn.free_groups if s.name != "s4"})
    with pytest.raises(WidthError, match="not free groups"):
        rn.validate({**{s.name: s.base for s in rn.free_groups}, "input": 3})


def test_one_registry_by_name_and_the_space_command(capsys, tmp_path):
    from widthnas.models import SPACES
    from widthnas.nas.cli import main

    assert set(SPACES) == set(FINGERPRINTS)  # every shipped space, MobileNet-v1 included, in the one registry
    assert all(isinstance(get_space(n), GraphSpace) for n in SPACES)
    with pytest.raises(GraphError, match=r"unknown search space 'vgg'; shipped: \['mobilenet_v1', "):
        get_space("vgg")
    with pytest.raises(GraphError, match="unknown search space"):
        get_space(str(tmp_path / "missing.json"))  # a file that is not there is not a name either
    assert main(["space", "--space", "mobilenet_v1_small"]) == 0
    out = capsys.readouterr().out
    assert "block3" in out and "ops: block3, block4.dw, block4" in out  # pointwise conv, next block
    assert main(["space", "--space", "mobilenet_v2_small"]) == 0
    out = capsys.readouterr().out
    assert "s1.b1.mid" in out and "ops: s1.b1.expand, s1.b1.dw, s1.b1.project" in out
    assert main(["space", "--space", "resnet_small", "--json"]) == 0
    text = capsys.readouterr().out
    assert json.loads(text[text.index("{"):])["groups"][0] == {"name": "input", "base": 1, "choices": [1], "fixed": True}
