"""Padding 0, even kernels and max-pools of any kernel, stride, padding and ceil_mode (issue 32, item 7):
the latency ONNX and the exported network compute the shapes the model computes."""
import pytest

import trace_models as tm
from helpers import check_every_form
from widthnas.latency.onnx_graph import space_onnx


def test_convs_without_padding_and_ceil_mode_pools_keep_the_models_shapes(tmp_path):
    space, widths = check_every_form(tm.pools().eval(), (1, 17, 17), tmp_path)
    g = space.graph
    assert [g.sizes[n] for n in ("c1", "p1", "c2", "p2")] == [(15, 15), (7, 7), (8, 8), (4, 4)]  # torch's sizes
    ops = {op.name: op for op in g.ops}
    assert (ops["c1"].pad, ops["p1"].ceil, ops["c2"].kernel, ops["p2"].pad) == (0, True, 2, 0)
    tags = {f.op: f.signature.kind for f in space.factor_structure().factors}
    assert tags["c1"] == "conv/p0" and tags["p1"] == "maxpool/p0/ceil" and tags["p2"] == "maxpool/p0"
    node = next(n for n in space_onnx(space, widths).graph.node if n.name == "" and n.op_type == "MaxPool"
                and any(a.name == "ceil_mode" for a in n.attribute))
    assert next(a.i for a in node.attribute if a.name == "ceil_mode") == 1


def test_resnet_default_padding_writes_no_new_fields():
    from widthnas.models.families import get_space

    space = get_space("resnet_small")
    assert all("pad" not in op.to_dict() and "ceil" not in op.to_dict() for op in space.graph.ops)
    assert all("/" not in f.signature.kind for f in space.factor_structure().factors)
