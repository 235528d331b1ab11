"""The ONNX graphs of MobileNet-v1 (latency/onnx_graph.py) against PyTorch on random inputs: the exported
network with folded BN, and the random-weight networks profiling times."""
import io
import warnings

import numpy as np
import onnx
import torch

from helpers import calibrate_bn, folded_weights, ort_run
from widthnas.latency.onnx_graph import OPSET, build_onnx, random_weights, space_onnx
from widthnas.models.net import build_network, module_key


def test_built_graph_equals_torch_and_torch_export(small):
    torch.manual_seed(0)
    widths = small.uniform(0.6)
    net = calibrate_bn(build_network(small, widths), small, seed=1)
    x = np.random.default_rng(0).random((3, *small.input_shape), dtype=np.float32)
    model = build_onnx(small, folded_weights(net))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET
    ours = ort_run(model, x)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert ref.std(axis=0).mean() > 0.05  # the logits depend on the image: a meaningful comparison
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), f, dynamo=False, input_names=["input"],
                          dynamic_axes={"input": {0: "batch"}})
    np.testing.assert_allclose(ort_run(f.getvalue(), x), ours, rtol=1e-4, atol=1e-4)


def test_the_profiled_network_computes_the_torch_network_of_its_weights(small):
    """space_onnx (what profiling times): its random weights, loaded into the torch network of the
    same widths with identity BNs, give its outputs; so the timed graph is that network, op for op."""
    widths = [int(c[len(c) // 3]) for c in small.choices]
    model = space_onnx(small, widths, batch=2, seed=4)
    weights = random_weights(small, widths, seed=4)
    net = build_network(small, widths).eval()
    with torch.no_grad():
        for op in small.graph.ops:
            m = net.layers[module_key(op)] if module_key(op) in net.layers else None
            if op.kind in ("conv", "linear"):
                m.weight.copy_(torch.from_numpy(weights[op.name]["w"]))
            if op.kind == "linear":
                m.bias.copy_(torch.from_numpy(weights[op.name]["b"]))
            if op.kind == "bn":  # the folded conv's bias, and nothing else
                m.weight.fill_(1.0)
                m.bias.copy_(torch.from_numpy(weights[op.inputs[0]]["b"]))
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)
    x = np.random.default_rng(5).standard_normal((2, *small.input_shape)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(ref[0] - ref[1]).max() > 1e-3 * np.abs(ref).max()
    np.testing.assert_allclose(ort_run(model, x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_random_graph_has_the_widths(small):
    m = space_onnx(small, small.min_widths, batch=3)
    onnx.checker.check_model(m, full_check=True)
    shapes = {i.name: tuple(i.dims) for i in m.graph.initializer}
    w = small.min_widths
    assert shapes["stem.w"] == (w[0], small.input_shape[0], 3, 3)
    for i in range(1, len(w)):
        assert shapes[f"block{i}.dw.w"] == (w[i - 1], 1, 3, 3) and shapes[f"block{i}.w"] == (w[i], w[i - 1], 1, 1)
    assert shapes["fc.w"] == (small.num_classes, w[-1])
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [3, *small.input_shape]
    assert ort_run(m, np.zeros((3, *small.input_shape), np.float32)).shape == (3, small.num_classes)
