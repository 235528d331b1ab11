"""Squeeze-excitation (issue 32, item 4): a pooled branch through two 1x1 convs multiplied back onto the
feature map. The gate joins the gated map's channel group; its hidden width is a group of its own."""
import pytest
import torch

import trace_models as tm
from helpers import check_every_form
from widthnas.latency.onnx_graph import space_onnx


@pytest.mark.parametrize("model", [tm.se_block_net, tm.WithSE])
def test_squeeze_excitation_traces_and_every_form_computes_it(model, tmp_path):
    space, widths = check_every_form(model().eval(), (1, 16, 16), tmp_path)
    g = space.graph
    muls = [op for op in g.ops if op.kind == "mul"]
    assert len(muls) == 1 and g.sizes[muls[0].inputs[1]] == (1, 1)  # the gate, broadcast over the map
    gate_conv = g.by_name[g.by_name[muls[0].inputs[1]].inputs[0]]  # se2 (or fc2), under the gate's activation
    assert g.group_of[gate_conv.name] == g.group_of[muls[0].inputs[0]]  # tied to the gated map
    assert any(n.op_type == "Mul" for n in space_onnx(space, widths).graph.node)
    if model is tm.se_block_net:
        hidden = g.group_of["se1"]
        assert hidden in [s.name for s in space.free_groups]  # its hidden width is searched
        assert {f.op for f in space.factor_structure().factors} >= {"se1", "se2", muls[0].name}


def test_the_gate_and_its_map_share_channels_in_the_search_space():
    from widthnas.models.trace import trace_model

    sp = trace_model(tm.se_block_net().eval(), (1, 16, 16))
    free = [s.name for s in sp.free_groups]
    assert sp.graph.group_of["se2"] == sp.graph.group_of["expand.0"] and sp.graph.group_of["expand.0"] in free
    sup_widths = [min(c) for c in sp.choices]
    from widthnas.models.net import SlimmableGraphNet

    sup = SlimmableGraphNet(sp).eval()
    with torch.no_grad():
        assert sup(torch.zeros(2, 1, 16, 16), sup_widths).shape == (2, 10)
