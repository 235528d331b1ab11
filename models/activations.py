"""The elementwise activations a space can hold, one place for each of their three forms: torch
functional (the supernet), torch module (the plain network, exported by torch), and the ONNX nodes the
latency profiles time, which must be what torch's exporter writes for the same module (opset 17).

They change no channel group. ReLU and ReLU6 fuse into the conv before them in onnxruntime and cost
nothing of their own; the others are costed ops of the latency model (models/space.py factor_structure).
"""
from __future__ import annotations

import math

import numpy as np

ACTIVATIONS = ("relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid", "gelu", "leaky_relu")
FUSED = ("relu", "relu6")  # folded into the preceding conv by onnxruntime: no latency entry of their own
HAS_ALPHA = ("leaky_relu",)  # the negative slope, recorded in the op


def _check(fn: str) -> None:
    if fn not in ACTIVATIONS:
        raise ValueError(f"activation {fn!r}: choose one of {list(ACTIVATIONS)}")


def apply(fn: str, x, alpha: float = 0.0):
    """fn(x) as torch computes it (the supernet's forward)."""
    import torch
    import torch.nn.functional as F

    _check(fn)
    if fn == "leaky_relu":
        return F.leaky_relu(x, alpha)
    return {"relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
            "silu": F.silu, "sigmoid": torch.sigmoid, "gelu": F.gelu}[fn](x)


def module(fn: str, alpha: float = 0.0):
    """The torch module of fn (the plain network; torch.onnx exports it)."""
    from torch import nn

    _check(fn)
    if fn == "leaky_relu":
        return nn.LeakyReLU(alpha)
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid,
            "silu": nn.SiLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}[fn]()


def onnx_nodes(fn: str, alpha: float, x: str, y: str) -> tuple[list, list]:
    """(nodes, initializers) computing y = fn(x) in ONNX, as torch.onnx (opset 17) writes the module."""
    from onnx import helper, numpy_helper

    _check(fn)
    const = lambda name, v: numpy_helper.from_array(np.array(v, np.float32), name)  # noqa: E731
    if fn in ("relu", "hardswish", "sigmoid"):
        return [helper.make_node({"relu": "Relu", "hardswish": "HardSwish", "sigmoid": "Sigmoid"}[fn], [x], [y])], []
    if fn == "relu6":
        return [helper.make_node("Clip", [x, "clip.min", "clip.max"], [y])], [const("clip.min", 0.0),
                                                                            const("clip.max", 6.0)]
    if fn == "hardsigmoid":
        return [helper.make_node("HardSigmoid", [x], [y], alpha=1.0 / 6, beta=0.5)], []
    if fn == "silu":
        return [helper.make_node("Sigmoid", [x], [f"{y}.sig"]), helper.make_node("Mul", [x, f"{y}.sig"], [y])], []
    if fn == "gelu":  # 0.5 x (1 + erf(x / sqrt 2)), torch's exact GELU
        return [helper.make_node("Div", [x, "gelu.sqrt2"], [f"{y}.d"]), helper.make_node("Erf", [f"{y}.d"], [f"{y}.e"]),
                helper.make_node("Add", [f"{y}.e", "gelu.one"], [f"{y}.a"]),
                helper.make_node("Mul", [x, f"{y}.a"], [f"{y}.m"]),
                helper.make_node("Mul", [f"{y}.m", "gelu.half"], [y])], [
            const("gelu.sqrt2", math.sqrt(2.0)), const("gelu.one", 1.0), const("gelu.half", 0.5)]
    return [helper.make_node("LeakyRelu", [x], [y], alpha=float(alpha))], []  # leaky_relu
