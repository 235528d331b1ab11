"""Build the ONNX graph of a GraphSpace network directly from its ops, without torch.

Profiling needs thousands of networks: this is far cheaper than `torch.onnx.export`. It is what the
exporter emits for `models.GraphNet` in eval mode after BatchNorm folding, so onnxruntime runs the same
kernels (tests/test_graph_space.py checks outputs against torch).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from widthnas.models import activations
from widthnas.models.graph import INPUT
from widthnas.models.space import GraphSpace

OPSET = 17

Weights = dict[str, dict[str, np.ndarray]]  # conv or linear op name -> {"w": weight, "b": bias}


def random_weights(space: GraphSpace, widths: Sequence[int] | Mapping[str, int], seed: int = 0) -> Weights:
    """He-initialised folded weights: latency does not depend on values, only on shapes."""
    rng = np.random.default_rng(seed)
    a, ch = space.assignment(widths), space.graph.channels
    out = {}
    for op in space.graph.ops:
        c_in, c_out = ch(op.inputs[0], a), ch(op.name, a)  # a concatenation's: the sum of its segments
        if op.kind == "conv":
            per_group = 1 if op.depthwise else c_in // op.conv_groups  # input channels each output reads
            std = np.sqrt(2.0 / (per_group * op.kernel ** 2))
            w = rng.standard_normal((c_out, per_group, op.kernel, op.kernel)) * std
        elif op.kind == "linear":
            w = rng.standard_normal((c_out, c_in)) / np.sqrt(c_in)
        elif op.kind == "bn" and op.name not in space.graph.folded_bns:  # a BatchNormalization of its own
            out[op.name] = _bn_arrays(np.ones(c_out), np.zeros(c_out), np.zeros(c_out), np.ones(c_out))
            continue
        else:
            continue
        out[op.name] = {"w": w.astype(np.float32), "b": np.zeros(c_out, np.float32)}
    return out


def _bn_arrays(scale, bias, mean, var) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32).copy() for k, v in (("scale", scale), ("bias", bias), ("mean", mean),
                                                             ("var", var))}


def build_onnx(space: GraphSpace, weights: Weights, batch: int | str = "batch") -> onnx.ModelProto:
    """The ONNX model of `space`'s ops with folded `weights` (their shapes carry the widths).

    Tensors are named after the ops; a BN's output is its conv's (the BN folded into it).
    """
    nodes, inits, alias = [], [], {INPUT: INPUT}
    shared: dict = {}
    for op in space.graph.ops:
        xs = [alias[i] for i in op.inputs]
        if op.kind == "bn" and op.name in space.graph.folded_bns:
            alias[op.name] = xs[0]
            continue
        alias[op.name] = op.name
        if op.kind in ("conv", "linear"):  # initialisers <op>.w and <op>.b
            w = weights[op.name]["w"]
            inits += [numpy_helper.from_array(weights[op.name][k], f"{op.name}.{k}") for k in ("w", "b")]
        if op.kind == "conv":
            nodes.append(helper.make_node("Conv", [xs[0], f"{op.name}.w", f"{op.name}.b"], [op.name],
                                          kernel_shape=[op.kernel] * 2, strides=[op.stride] * 2,
                                          pads=[op.padding] * 4, group=w.shape[0] if op.depthwise else op.conv_groups))
        elif op.kind == "bn":  # after an add, a pool or the input: its own BatchNormalization (eval mode)
            names = [f"{op.name}.{k}" for k in ("scale", "bias", "mean", "var")]
            inits += [numpy_helper.from_array(weights[op.name][k], n) for k, n in zip(("scale", "bias", "mean", "var"),
                                                                                      names)]
            nodes.append(helper.make_node("BatchNormalization", [xs[0], *names], [op.name], epsilon=op.eps))
        elif op.kind == "act":
            ns, consts = activations.onnx_nodes(op.fn, op.alpha, xs[0], op.name)
            nodes += ns
            shared.update((c.name, c) for c in consts)  # one copy of each constant (clip bounds, ...)
        elif op.kind == "add":
            y = xs[0]
            for k, z in enumerate(xs[1:], start=1):
                out = op.name if k == len(xs) - 1 else f"{op.name}.{k}"
                nodes.append(helper.make_node("Add", [y, z], [out]))
                y = out
        elif op.kind == "mul":  # a map times its (1x1) channel gate, broadcast
            nodes.append(helper.make_node("Mul", xs, [op.name]))
        elif op.kind == "cat":
            nodes.append(helper.make_node("Concat", xs, [op.name], axis=1))
        elif op.kind == "maxpool":
            nodes.append(helper.make_node("MaxPool", xs, [op.name], kernel_shape=[op.kernel] * 2,
                                          strides=[op.stride] * 2, pads=[op.padding] * 4,
                                          **({"ceil_mode": 1} if op.ceil else {})))
        elif op.kind == "avgpool":  # padding zeros counted in the mean, as torch's default
            nodes.append(helper.make_node("AveragePool", xs, [op.name], kernel_shape=[op.kernel] * 2,
                                          strides=[op.stride] * 2, pads=[op.padding] * 4, count_include_pad=1))
        elif op.kind == "gap":
            nodes.append(helper.make_node("GlobalAveragePool", xs, [op.name]))
        else:  # linear
            nodes.append(helper.make_node("Flatten", xs, [f"{op.name}.flat"], axis=1))
            nodes.append(helper.make_node("Gemm", [f"{op.name}.flat", f"{op.name}.w", f"{op.name}.b"], ["logits"],
                                          transB=1))
    inits += list(shared.values())
    inp = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, *space.input_shape])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, space.num_classes])
    graph = helper.make_graph(nodes, f"widthnas_{space.name}", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="widthnas")
    model.ir_version = 8  # readable by onnxruntime builds back to 1.10, for edge devices
    return model


def space_onnx(space: GraphSpace, widths: Sequence[int] | Mapping[str, int], batch: int | str = 1,
                     seed: int = 0) -> onnx.ModelProto:
    """The random-weight graph of `widths` in `space`, as profiling would time it."""
    return build_onnx(space, random_weights(space, widths, seed), batch)
