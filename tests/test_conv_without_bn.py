"""Convs without a BatchNorm after them (issue 32, item 3): with or without a bias, dense or depthwise,
feeding an add; the bias is sliced with the channels, the user's channels kept by their L1 norm."""
import pytest
import torch

import trace_models as tm
from helpers import check_every_form
from widthnas.models.graph import Graph, GraphError, Op
from widthnas.models.trace import trace_model
from widthnas.models.trace_weights import importance, keep_channels


@pytest.mark.parametrize("model", [tm.plain_convs, tm.WithoutBN])
def test_convs_without_bn_trace_and_every_form_computes_them(model, tmp_path):
    m = model().eval()
    space, _ = check_every_form(m, (1, 16, 16), tmp_path)
    convs = {op.name: op.bias for op in space.graph.ops if op.kind == "conv"}
    if model is tm.plain_convs:
        assert convs == {"c1": True, "dw": True, "pw": False, "c2": False}  # c2's bias folds into its BN


def test_channels_of_a_group_without_bn_are_kept_by_their_l1_norm():
    m = tm.plain_convs().eval()
    space = trace_model(m, (1, 16, 16))
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    g = space.graph.group_of
    group = g["c1"]  # c1, dw and pw (tied by the add): no BN among them
    weak = list(range(1, 32, 2))
    for name in ("c1.weight", "pw.weight"):
        sd[name][weak] *= 1e-3  # these output channels carry almost nothing
    imp = importance(space, sd)[group]
    assert set(torch.argsort(imp)[:16].tolist()) == set(weak)
    widths = [16 if s.name == group else s.choices[-1] for s in space.free_groups]
    kept = keep_channels(space, sd, widths)[group].tolist()
    assert kept == [c for c in range(32) if c not in weak]


def test_a_space_file_may_not_give_a_bias_to_a_conv_whose_bn_folds_into_it():
    ops = [Op("c", "conv", ("input",), out=8, kernel=3, stride=1, bias=True), Op("b", "bn", ("c",)),
           Op("g", "gap", ("b",)), Op("fc", "linear", ("g",))]
    with pytest.raises(GraphError, match="its bias folds into the bn"):
        Graph((1, 8, 8), 10, tuple(ops))
    ops = [Op("c", "conv", ("input",), out=8, kernel=3, stride=1, bias=True), Op("b", "bn", ("c",)),
           Op("a", "add", ("b", "c")), Op("g", "gap", ("a",)), Op("fc", "linear", ("g",))]
    assert Graph((1, 8, 8), 10, tuple(ops)).folded_bns == frozenset()  # read beside its BN: keeps its bias, the BN stays
    assert Op("c", "conv", ("input",), out=8, kernel=3, stride=1).to_dict().get("bias") is None  # old files unchanged
