import io
import warnings

import numpy as np
import onnxruntime as ort
import torch

from widthnas.latency.onnx_graph import build_onnx, folded_weights, space_onnx
from widthnas.models.mobilenet import build_network


def _run(model_bytes, x):
    s = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_built_graph_equals_torch_and_torch_export(small):
    torch.manual_seed(0)
    widths = small.uniform(0.6)
    net = build_network(small, widths)
    net.train()
    net(torch.randn(16, *small.input_shape))  # non-trivial BN statistics
    net.eval()
    x = np.random.default_rng(0).random((3, *small.input_shape), dtype=np.float32)
    ours = _run(build_onnx(small.input_shape, [l.stride for l in small.layers], folded_weights(net)).SerializeToString(), x)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), f, dynamo=False, input_names=["input"],
                          dynamic_axes={"input": {0: "batch"}})
    np.testing.assert_allclose(_run(f.getvalue(), x), ours, rtol=1e-4, atol=1e-4)


def test_random_graph_has_the_widths(small):
    import onnx

    m = space_onnx(small, small.min_widths)
    onnx.checker.check_model(m, full_check=True)
    shapes = {i.name: tuple(i.dims) for i in m.graph.initializer}
    assert shapes["conv0.w"][0] == small.min_widths[0]
    assert shapes["fc.w"] == (small.num_classes, small.min_widths[-1])
