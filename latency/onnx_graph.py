"""Build the ONNX graph of a MobileNet-v1 configuration directly, without torch.

Profiling needs thousands of networks; `torch.onnx.export` costs ~160 ms each, this ~5 ms. The graph
is what the exporter emits for `models.MobileNet` in eval mode after BatchNorm folding
(Conv+bias, Relu, GlobalAveragePool, Flatten, Gemm), so onnxruntime runs the same kernels;
tests/test_onnx_graph.py checks outputs against the torch export.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def random_weights(in_channels: int, widths: Sequence[int], num_classes: int, seed: int = 0) -> list[dict]:
    """He-initialised folded weights: latency does not depend on values, only on shapes."""
    rng = np.random.default_rng(seed)

    def conv(c_out: int, c_in_per_group: int, k: int) -> dict:
        std = np.sqrt(2.0 / (c_in_per_group * k * k))
        return {"w": (rng.standard_normal((c_out, c_in_per_group, k, k)) * std).astype(np.float32),
                "b": np.zeros(c_out, np.float32)}

    layers = [conv(widths[0], in_channels, 3)]
    for i in range(1, len(widths)):
        layers.append(conv(widths[i - 1], 1, 3))  # depthwise
        layers.append(conv(widths[i], widths[i - 1], 1))  # pointwise
    fc_w = (rng.standard_normal((num_classes, widths[-1])) / np.sqrt(widths[-1])).astype(np.float32)
    layers.append({"w": fc_w, "b": np.zeros(num_classes, np.float32)})
    return layers


def build_onnx(
    input_shape: Sequence[int],
    strides: Sequence[int],
    weights: list[dict],
    batch: int | str = "batch",
) -> onnx.ModelProto:
    """Graph for folded weights as produced by `random_weights` or `folded_weights`.

    Args:
        input_shape: (C, H, W) of one image.
        strides: per searchable layer.
        weights: stem conv, then (depthwise, pointwise) per block, then the linear head.
        batch: a fixed batch size, or a name for a dynamic batch axis.
    """
    nodes, inits = [], []
    x = "input"

    def conv_relu(idx: int, w: np.ndarray, b: np.ndarray, stride: int, group: int) -> None:
        nonlocal x
        k = w.shape[-1]
        wn, bn_, y, r = f"conv{idx}.w", f"conv{idx}.b", f"conv{idx}", f"relu{idx}"
        inits.extend([numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn_)])
        nodes.append(helper.make_node("Conv", [x, wn, bn_], [y], kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4, group=group))
        nodes.append(helper.make_node("Relu", [y], [r]))
        x = r

    conv_relu(0, weights[0]["w"], weights[0]["b"], strides[0], 1)
    for i in range(1, len(strides)):
        dw, pw = weights[2 * i - 1], weights[2 * i]
        conv_relu(2 * i - 1, dw["w"], dw["b"], strides[i], dw["w"].shape[0])
        conv_relu(2 * i, pw["w"], pw["b"], 1, 1)
    fc = weights[-1]
    inits.extend([numpy_helper.from_array(fc["w"], "fc.w"), numpy_helper.from_array(fc["b"], "fc.b")])
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1))
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, *input_shape])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, fc["w"].shape[0]])
    graph = helper.make_graph(nodes, "widthnas_mobilenet", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="widthnas")
    model.ir_version = 8  # readable by onnxruntime builds back to 1.10, for edge devices
    return model


def space_onnx(space, widths: Sequence[int], batch: int | str = 1, seed: int = 0) -> onnx.ModelProto:
    """The random-weight graph of `widths` in `space` (a chain or a graph space), as profiled."""
    from widthnas.models.graph_space import GraphSpace

    if isinstance(space, GraphSpace):  # profiling, bundles and backends build either kind through here
        from .graph_onnx import graph_space_onnx

        return graph_space_onnx(space, widths, batch, seed)
    widths = space.validate(widths)
    w = random_weights(space.input_shape[0], widths, space.num_classes, seed)
    return build_onnx(space.input_shape, [l.stride for l in space.layers], w, batch)


def folded_weights(net) -> list[dict]:
    """Fold a torch `models.MobileNet`'s BatchNorm into its convs (eval mode), as numpy."""
    import torch

    out = []
    with torch.no_grad():
        seqs = [net.features[0]] + [s for blk in net.features[1:] for s in blk]
        for seq in seqs:
            conv, bn = seq[0], seq[1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = conv.weight * scale.reshape(-1, 1, 1, 1)
            b = bn.bias - bn.running_mean * scale
            out.append({"w": w.numpy().astype(np.float32), "b": b.numpy().astype(np.float32)})
        out.append({"w": net.classifier.weight.numpy().copy(), "b": net.classifier.bias.numpy().copy()})
    return out
