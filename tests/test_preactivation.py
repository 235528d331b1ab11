"""Pre-activation blocks (issue 32, item 6): a BN on the input, after a max-pool and after an add stays a
BatchNormalization of its own (at export and in the profiling ONNX, with a latency of its own), and a
conv's output feeds an add directly."""
import pytest
import torch

import trace_models as tm
from helpers import check_every_form
from widthnas.latency.onnx_graph import space_onnx
from widthnas.models.trace import trace_model


def test_a_preactivation_resnet_traces_and_every_form_computes_it(tmp_path):
    space, widths = check_every_form(tm.preact_net().eval(), (1, 16, 16), tmp_path)
    g = space.graph
    own = {op.name for op in g.ops if op.kind == "bn"} - g.folded_bns
    assert own == {"bn_in", "b1.bn1", "b2.bn1", "post"}  # the input's, after the pool and the adds
    assert {"b1.bn2", "b2.bn2"} <= g.folded_bns  # right after conv1: folded
    costed = {f.op for f in space.factor_structure().factors}
    assert own <= costed and not (g.folded_bns & costed)
    bn_nodes = [n for n in space_onnx(space, widths).graph.node if n.op_type == "BatchNormalization"]
    assert len(bn_nodes) == len(own)


def test_pytorchcv_preresnet_traces_at_a_narrower_width(tmp_path):
    pytest.importorskip("pytorchcv")
    from pytorchcv.models.preresnet import preresnet10

    torch.manual_seed(0)
    model = preresnet10().eval()
    model.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)  # its 7x7 pool is for 224 px
    space, widths = check_every_form(model, (3, 64, 64), tmp_path)
    assert len(space.graph.folded_bns) < sum(op.kind == "bn" for op in space.graph.ops)
