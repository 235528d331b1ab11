"""Grouped convolutions (ResNeXt, RegNet): a conv with in = out channels in b groups keeps its input's channel
group, which then has b blocks: its widths are multiples of b and a width keeps the same channels in every
block. Checked against the user's model in every form of the space (torch export, the profiling ONNX, the
supernet), against importance-sliced weights, against a synthetic device for the latency fit, and against
pytorchcv's ResNeXt and RegNet."""
import json

import numpy as np
import pytest
import torch

import trace_models as tm
from helpers import check_every_form, draw_widths, lively_bn
from widthnas.latency.entries import GraphEntries
from widthnas.latency.fit import FitSettings, System, fit_table
from widthnas.latency.samples import Samples
from widthnas.latency.table import LatencyTable
from widthnas.latency.validate import metrics
from widthnas.models.graph import GraphError
from widthnas.models.net import SlimmableGraphNet, channel_index
from widthnas.models.space import GraphSpace, block_round
from widthnas.models.trace import format_groups, trace_model
from widthnas.models.trace_weights import WeightsError, importance, keep_channels, seed_supernet, user_network



def _blocked(space):
    """{module path of the grouped conv: (its group, block count)}."""
    src, g = space.source.module_of, space.graph.group_of
    return {src[op.name]: (g[op.name], op.conv_groups) for op in space.graph.ops if op.conv_groups > 1}


@pytest.mark.parametrize("se", [False, True], ids=["resnext", "regnety_se"])
def test_a_grouped_conv_traces_into_blocks_and_every_form_computes_it(se, tmp_path):
    space, widths = check_every_form(lively_bn(tm.ResNeXtTiny(se=se)), (1, 16, 16), tmp_path)
    blocked = _blocked(space)
    assert {p: b for p, (_, b) in blocked.items()} == {"layer1.b.0": 4, "layer2.b.0": 3}
    chosen = dict(zip([s.name for s in space.free_groups], widths))
    for grp, b in blocked.values():
        assert space.graph.blocks[grp] == b
        c = space.choices[[s.name for s in space.free_groups].index(grp)]
        assert all(x % b == 0 for x in c) and len(c) >= 3
        assert chosen[grp] < space.group(grp).base  # narrower than the model in that group too
    # 4 blocks of 8 round to 8 (lcm); 3 blocks of 16 would leave 48 one width on multiples of 24: multiples of 3
    assert space.choices[[s.name for s in space.free_groups].index(blocked["layer1.b.0"][0])] == (8, 16, 24, 32)
    assert 9 in space.choices[[s.name for s in space.free_groups].index(blocked["layer2.b.0"][0])]
    # the grouped conv's MACs: k*k * (c / b) * c * h * w
    a = space.assignment(widths)
    name = next(op.name for op in space.graph.ops if op.conv_groups == 4)
    c, (h, w) = a[space.graph.group_of[name]], space.graph.sizes[name]
    assert space.op_macs(widths)[name] == 9 * (c // 4) * c * h * w


def test_block_round_and_channel_index():
    assert [block_round(b, k) for b, k in [(32, 1), (32, 4), (48, 3), (96, 3), (152, 19), (64, 32)]] == \
           [8, 8, 3, 24, 19, 32]
    space = trace_model(tm.ResNeXtTiny(), (1, 16, 16))
    grp = _blocked(space)["layer1.b.0"][0]
    assert channel_index(space, grp, 32, 32) == slice(0, 32)
    assert channel_index(space, grp, 8, 32).tolist() == [0, 1, 8, 9, 16, 17, 24, 25]  # 2 of every block of 8
    free = space.free_groups[0].name  # no blocks: the first channels
    assert channel_index(space, free, 8, 16) == slice(0, 8)
    shown = "\n".join(format_groups(space))  # what `widthnas space --from-model` prints
    assert f"{grp}" in shown and "in 4 blocks" in shown and "in 3 blocks" in shown


def test_a_seeded_supernet_keeps_each_blocks_most_important_channels():
    """Seeded from the user's weights with choices up to 1.5x the model, the supernet at the model's widths
    is the model, and at narrower widths it computes the model sliced by importance inside each block."""
    model = lively_bn(tm.ResNeXtTiny(se=True))
    space = trace_model(model, (1, 16, 16), max_mult=1.5)
    sd = model.state_dict()
    sup = SlimmableGraphNet(space).eval()
    seed_supernet(sup, sd)
    x = 8 * torch.randn(3, 1, 16, 16)
    base = [space.group(s.name).base for s in space.free_groups]
    with torch.no_grad():
        torch.testing.assert_close(sup(x, base), model(x), rtol=1e-4, atol=1e-4)
        for pick in (0, 1):
            widths = [c[pick] for c in space.choices]
            torch.testing.assert_close(sup(x, widths), user_network(space, sd, widths).eval()(x), rtol=1e-4,
                                       atol=1e-4)
            torch.testing.assert_close(sup(x, widths), sup.materialize(widths).eval()(x), rtol=1e-4, atol=1e-4)
    # the kept channels are the most important of each block, the same number in each
    grp = _blocked(space)["layer1.b.0"][0]
    imp = importance(space, sd)[grp].view(4, 8)
    kept = keep_channels(space, sd, {**dict(zip([s.name for s in space.free_groups], space.min_widths))})[grp]
    assert kept.tolist() == sorted(kept.tolist()) and len(kept) == 8
    for j in range(4):
        mine = [int(k) - 8 * j for k in kept if 8 * j <= k < 8 * (j + 1)]
        assert sorted(mine) == sorted(imp[j].argsort(descending=True)[:2].tolist())


def test_a_supernet_narrower_than_the_model_is_refused_when_seeded():
    model = lively_bn(tm.ResNeXtTiny())
    space = trace_model(model, (1, 16, 16), max_mult=0.75)
    with pytest.raises(WeightsError, match="narrower than the model"):
        seed_supernet(SlimmableGraphNet(space), model.state_dict())


def test_the_space_file_keeps_the_blocks_and_refuses_bad_ones(tmp_path):
    space = trace_model(tm.ResNeXtTiny(), (1, 16, 16))
    space.save(tmp_path / "s.json")
    back = GraphSpace.load(tmp_path / "s.json")
    assert back.graph.blocks == space.graph.blocks and back.fingerprint == space.fingerprint
    d = json.loads((tmp_path / "s.json").read_text())
    grouped = next(op for op in d["ops"] if op.get("conv_groups"))
    assert "out" not in grouped  # it keeps its input's channels

    def refused(mutate, match):
        e = json.loads(json.dumps(d))
        mutate(e)
        with pytest.raises(GraphError, match=match):
            GraphSpace.from_dict(e)

    def op_of(e):
        return next(op for op in e["ops"] if op.get("conv_groups") == 4)

    for bad in (1, 0, True, 2.0):
        refused(lambda e: op_of(e).update(conv_groups=bad), "conv_groups")
    refused(lambda e: op_of(e).update(depthwise=True), "conv_groups")
    refused(lambda e: op_of(e).update(conv_groups=5), "5 groups do not divide")
    grp = _blocked(space)["layer1.b.0"][0]

    def odd_choices(e):
        for c in e["groups"]:
            if c["name"] == grp:
                c["choices"] = [8, 10, 32]
    refused(odd_choices, "multiples of its 4 blocks")


def test_the_latency_fit_recovers_a_device_whose_grouped_convs_cost_quadratically():
    """A grouped conv does c * c / b work: the fit's anchor for its entries holds c'^2 besides c', so a device
    whose grouped convs cost exactly that is recovered from whole-network times."""
    space = trace_model(tm.ResNeXtTiny(), (1, 16, 16))
    e = GraphEntries(space, "signature")
    grouped = [i for i, k in enumerate(e.keys) if k.signature.grouped]
    assert grouped and {e.keys[i].signature.groups for i in grouped} == {"g4", "g3"}
    costs = np.array([2e-4 * k.c_in * k.c_in if k.signature.grouped
                      else 1e-3 * k.c_in if e.diagonal(k.signature)
                      else 1e-4 * k.c_in * k.c_out + 1e-3 * (k.c_in + k.c_out) for k in e.keys])
    truth = LatencyTable(space, costs, 0.01, 1.0)
    W = draw_widths(space, "uniform", 150, 1)
    y = truth.predict_many(W)
    train = Samples({"device": {"cpu": "synthetic"}}, W, y, y, np.ones(len(y)), 0)
    table = fit_table(space, train, FitSettings(lams=(1.0,), mus=(0.0,), folds=3, elasticities=(0.0,)),
                      log=lambda *_: None)
    test = draw_widths(space, "uniform", 100, 2)
    assert metrics(table.predict_many(test), truth.predict_many(test))["rmspe"] < 0.01
    s = System(space)  # the c'^2 column exists for the grouped entries, and only for them
    cols = s.B.tocsc()
    quad = [j for j in range(s.P) if set(cols[:, j].nonzero()[0]) <= set(grouped)
            and len(cols[:, j].nonzero()[0]) > 1
            and np.allclose(cols[:, j].toarray().ravel()[cols[:, j].nonzero()[0]],
                            np.square(cols[:, j - 1].toarray().ravel()[cols[:, j].nonzero()[0]]))]
    assert len(quad) == 2  # one per grouped signature


pcv = pytest.importorskip("pytorchcv")


@pytest.mark.parametrize("module,factory", [("resnext", "resnext14_16x4d"), ("regnet", "regnetx002"),
                                            ("regnet", "regnety002")])
def test_pytorchcv_resnext_and_regnet_trace_and_compute_at_a_narrower_width(module, factory, tmp_path):
    import importlib

    torch.manual_seed(0)
    model = getattr(importlib.import_module(f"pytorchcv.models.{module}"), factory)()
    model.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)  # its 7x7 pool is for 224 px
    space, widths = check_every_form(model.eval(), (3, 64, 64), tmp_path)
    assert space.graph.blocks and sum(widths) < sum(space.base_widths)
    for grp, b in space.graph.blocks.items():
        assert space.group(grp).base % b == 0
        assert all(x % b == 0 for x in space.choices[[s.name for s in space.free_groups].index(grp)])


def test_a_multiplier_and_the_dense_space_keep_whole_blocks():
    """uniform8 (the run's comparison and the compress benchmark's baseline) rounds a blocked group to its
    block_round step, so its widths are in the dense space and keep whole blocks."""
    space = trace_model(tm.ResNeXtTiny(), (1, 16, 16))
    dense = space.with_dense_choices(8)
    for mult in (0.3, 0.5, 0.77, 1.0):
        w = space.multiplier_widths(mult)
        dense.validate(w)  # raises if a width is not a choice
        for g, x in zip(space.free_groups, w):
            assert x % space.graph.blocks.get(g.name, 1) == 0
    steps = {g.name: g.choices[:3] for g in dense.free_groups}
    assert steps[_blocked(space)["layer2.b.0"][0]] == (3, 6, 9) and steps[_blocked(space)["layer1.b.0"][0]] == (8, 16, 24)


def test_an_updating_pass_at_a_narrow_width_updates_a_blocked_groups_running_statistics():
    """Slices of a group without blocks update in place; a blocked group's index is a copy, written back."""
    space = trace_model(tm.ResNeXtTiny(), (1, 16, 16))
    sup = SlimmableGraphNet(space).train()
    grp = _blocked(space)["layer1.b.0"][0]
    bn = next(op for op in space.graph.ops if op.kind == "bn" and space.graph.group_of[op.name] == grp)
    stats = sup.full.layers[bn.name.replace(".", "_")].running_mean
    before = stats.clone()
    widths = {s.name: (8 if s.name == grp else s.choices[-1]) for s in space.free_groups}
    sup(torch.randn(4, 1, 16, 16), widths, update_bn_stats=True)
    kept = channel_index(space, grp, 8, 32)
    assert not torch.equal(stats[kept], before[kept])  # the kept channels moved
    rest = torch.ones(32, dtype=torch.bool)
    rest[kept] = False
    assert torch.equal(stats[rest], before[rest])  # the others did not
