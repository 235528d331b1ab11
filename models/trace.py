"""Your own model as a graph space: trace a torch CNN with torch.fx into the ops of models/graph.py.

Why torch.fx (as mmrazor): symbolic tracing sees the forward's data flow, functionals and `+`
included, with torch.nn modules as leaves, so every op keeps the qualified name of the module that
ran it and the user's weights map back onto the ops. jit.trace loses the module names and
Torch-Pruning's autograd graph loses the ops that have no gradient; fx refuses dynamic control flow,
and we pass that on with what to do. The model is traced in eval mode and run once on a random
input of --input-shape to know every tensor's shape; afterwards the traced space, rebuilt as a
plain `GraphNet` with the model's own weights, must reproduce the model's outputs, or tracing fails:
a graph that reads the model wrongly is never written.

What maps onto which op, and what is refused (with a TraceError naming the fx node, the op, the module
path and the source line, and saying what to do): README.md ("Bring your own model") and each `_Builder`
handler. `fixed` and `ties` only constrain widths: they cannot carry an op the space cannot express past
the tracer, because every later stage (profiling on a device, the supernet, ONNX export) rebuilds the
network from the space file alone, without the user's code.
"""
from __future__ import annotations

import importlib.util
import math
import operator
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import activations
from .graph import CLASSES, INPUT, Graph, GraphError, Op
from .space import GraphSpace, TraceSource, block_round, width_choices
from .space import parse_input_shape as _parse_input_shape
from .trace_weights import expected_keys, user_network

_NAME_OK = re.compile(r"[^A-Za-z0-9_.]")
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')
_TORCH_DIR = str(Path(torch.__file__).parent)


class TraceError(GraphError):
    """The model cannot be traced into a space; the message names the op and says what to do."""


# ---- the factory ----------------------------------------------------------------------------
def load_factory(spec: str) -> tuple[nn.Module, str]:
    """'package.module:factory' or 'path/to/file.py:factory' -> (the module it returns, spec). The factory (a
    class counts) is called without arguments; the working directory is on the import path, as for `python -m`."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise TraceError(f"--from-model {spec!r}: give 'package.module:factory' (a function or class that returns "
                         "your nn.Module, called without arguments), e.g. 'mymodels:make_resnet' or "
                         "'path/to/models.py:make_resnet'")
    mod_name, fn_name = spec.split(":")
    try:
        if mod_name.endswith(".py") or "/" in mod_name:
            path = Path(mod_name)
            if not path.is_file():
                raise TraceError(f"--from-model {spec!r}: file {mod_name} not found")
            ms = importlib.util.spec_from_file_location(f"widthnas_user_{path.stem}", path)
            module = importlib.util.module_from_spec(ms)
            ms.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(mod_name)
    except TraceError:
        raise
    except Exception as e:
        raise TraceError(f"--from-model {spec!r}: importing {mod_name} failed ({type(e).__name__}: {e}); run from "
                         "the directory that holds it, or give its file path ('path/to/models.py:factory')") from None
    factory = getattr(module, fn_name, None)
    if not callable(factory):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise TraceError(f"--from-model {spec!r}: {mod_name} has no callable {fn_name!r}; callables there: {names}")
    try:
        model = factory()
    except Exception as e:
        raise TraceError(f"--from-model {spec!r}: calling {fn_name}() raised {type(e).__name__}: {e}; the factory "
                         "must build the model without arguments") from None
    if not isinstance(model, nn.Module):
        raise TraceError(f"--from-model {spec!r}: {fn_name}() returned {type(model).__name__}, not a torch nn.Module")
    return model, spec


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, int, int]:
    """'3,32,32' (C,H,W of one image) -> (3, 32, 32); space.parse_input_shape, as a TraceError."""
    try:
        return _parse_input_shape(text)
    except ValueError as e:
        raise TraceError(str(e)) from None


# ---- tracing --------------------------------------------------------------------------------
@dataclass
class _T:
    """An fx value that is a tensor of the network: the IR tensor it is, and how far along it is."""

    name: str  # IR tensor (op name, or "input")
    pooled: bool = False  # after the global average pool (N, C, 1, 1) or its flattening (N, C)
    flat: bool = False  # flattened (N, C): only the classifier reads it
    map_side: int = 0  # a square (N, C, H, H) map flattened to (N, C*H*H) (VGG): H; only an MLP head reads it
    logits: bool = False  # the classifier's output


_ACT_MODULES = {type(activations.module(fn)): fn for fn in activations.ACTIVATIONS}  # nn.ReLU: "relu", ...
_ACT_FUNCS = {F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu", F.relu6: "relu6",
              F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.silu: "silu", torch.sigmoid: "sigmoid",
              F.sigmoid: "sigmoid", F.gelu: "gelu", F.leaky_relu: "leaky_relu", F.leaky_relu_: "leaky_relu",
              "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}  # and Tensor methods
_ADD_FUNCS = (operator.add, operator.iadd, torch.add)
_PASS_MODULES = (nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout, nn.Identity)
_FLATTEN = {torch.flatten, torch.squeeze, torch.reshape, "flatten", "view", "reshape", "squeeze"}  # and methods
_SHAPE_METHODS = {"size", "dim", "numel"}
_CAT = {torch.cat, torch.concat, torch.stack, torch.hstack, torch.vstack}
_SPLIT = {torch.split, torch.chunk, torch.tensor_split, torch.unbind, torch.narrow}
_MUL = {operator.mul, operator.imul, torch.mul, operator.truediv, torch.div, operator.matmul, torch.matmul}
_OTHER_ACTS = (nn.PReLU, nn.ELU, nn.SELU, nn.Tanh, nn.Mish, nn.Softplus, nn.CELU)  # refused (and subclasses)

_TODO_SUPPORTED = ("the space supports Conv2d (dense, depthwise or grouped) + BatchNorm2d (any eps), ReLU, ReLU6, "
                   "Hardswish, Hardsigmoid, SiLU, Sigmoid, GELU, LeakyReLU, residual adds, channel concatenation "
                   "(torch.cat, dim=1), MaxPool2d, AvgPool2d, global average pooling and one Linear classifier")
_TODO_LOGITS = ("return the Linear classifier's logits as the model's output (apply softmax and the like outside "
                "the model)")
_TODO_ACTS = ("use one of ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, Sigmoid, GELU, LeakyReLU (the activations the "
              "latency profiles and the ONNX builder know), or search a model that has them")


class _Tracer(fx.Tracer):
    """torch.fx's tracer with source lines recorded, so errors can point at the user's code; a model's own
    activation module (pytorchcv's Swish, HSwish, ...) is a leaf when it computes a known activation."""

    def __init__(self, own_acts: dict[int, tuple[str, float]] | None = None):
        super().__init__()
        self.record_stack_traces = True
        self.own_acts = own_acts or {}  # id(module) -> (fn, alpha): found before tracing, never run inside it

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return super().is_leaf_module(m, qualname) or id(m) in self.own_acts


_PROBE = torch.linspace(-8, 8, 2 * 3 * 5 * 5).reshape(2, 3, 5, 5)


def _as_activation(m: nn.Module) -> tuple[str, float] | None:
    """(fn, alpha) when `m`, a module of the user's own with no weights, computes one of the activations a
    space holds (checked on a probe tensor, -8..8); None otherwise. Torch's own modules map by type."""
    if type(m).__module__.startswith("torch.") or any(True for _ in m.parameters()) or \
            any(True for _ in m.buffers()) or any(True for _ in m.children()):
        return None
    try:
        with torch.no_grad():
            y = m(_PROBE.clone())
    except Exception:  # not an elementwise function of one tensor
        return None
    if not isinstance(y, torch.Tensor) or y.shape != _PROBE.shape:
        return None
    for fn in activations.ACTIVATIONS:
        alpha = float(-y.flatten()[0] / 8) if fn in activations.HAS_ALPHA else 0.0  # slope at x = -8
        if not (fn in activations.HAS_ALPHA and not 0 <= alpha < 1) and \
                torch.allclose(y, activations.apply(fn, _PROBE, alpha), atol=1e-5, rtol=1e-5):
            return fn, alpha
    return None


def _source_line(node: fx.Node) -> str:
    """' at file.py:42 (`y = self.conv(x)`)' for the user's line that made the node, or ''."""
    frames = [m for m in _FRAME.finditer(node.stack_trace or "") if not m.group(1).startswith(_TORCH_DIR)]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {f.group(1)}:{f.group(2)} (`{f.group(4).strip()}`)"


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"{type(gm.get_submodule(node.target)).__name__} module"
    if node.op == "call_method":
        return f"Tensor.{node.target}()"
    if node.op == "call_function":
        t = node.target
        return f"{getattr(t, '__module__', '') or ''}.{getattr(t, '__name__', str(t))}()".lstrip(".")
    return node.op


def _scope(node: fx.Node) -> str:
    """The qualified name of the module whose forward made the node ('' at the top level)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    return str(list(stack.values())[-1][0]) if stack else ""


def _arg(node: fx.Node, i: int, key: str, default=None):
    """Argument i of a call, given by position or by keyword `key` (`default` when neither)."""
    v = node.args[i] if len(node.args) > i else None
    return node.kwargs.get(key, default) if v is None else v


def _call_args(node: fx.Node, **defaults) -> list:
    """A functional's arguments after its input, by position or keyword, in the order of `defaults` (their values
    when not given)."""
    return [_arg(node, i, key, d) for i, (key, d) in enumerate(defaults.items(), start=1)]


def _pair(v) -> tuple:
    """A pooling's kernel, stride or padding as (H, W)."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _refusal(node: fx.Node, gm: fx.GraphModule, problem: str, todo: str) -> TraceError:
    """What was found, where (the fx node, its module, the user's source line), and what to do."""
    scope = _scope(node)
    where = f"fx node {node.name!r} ({_describe(node, gm)}" + (f", module {scope!r}" if scope else
                                                               ", top-level forward") + ")"
    return TraceError(f"cannot trace {where}{_source_line(node)}: {problem}. What to do: {todo}")


class _Builder:
    def __init__(self, gm: fx.GraphModule, shapes: dict, own_acts: dict[int, tuple[str, float]] | None = None):
        self.gm, self.shapes = gm, shapes
        self.own_acts = own_acts or {}  # the tracer's: id(module) -> (fn, alpha) of the model's own activations
        self.ops: list[Op] = []
        self.env: dict[fx.Node, _T | None] = {}
        self.names: dict[fx.Node, str] = {}
        self.calls: dict[str, fx.Node] = {}  # module path -> its first call (shared weights are refused)

    # ---- errors and names -------------------------------------------------------------------
    def refuse(self, node: fx.Node, problem: str, todo: str) -> TraceError:
        return _refusal(node, self.gm, problem, todo)

    def assign_names(self) -> None:
        """Conv, BN and Linear ops take their module's path (sanitised: IR names start with a letter);
        other ops '<enclosing module>.<fx name>'; clashes get a suffix."""
        taken: set[str] = {INPUT, CLASSES}

        def free(base: str) -> str:
            base = _NAME_OK.sub("_", base)
            if not base[:1].isalpha():
                base = "m" + base
            name, k = base, 1
            while name.replace(".", "_") in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name.replace(".", "_"))
            return name

        calls = [n for n in self.gm.graph.nodes if n.op in ("call_module", "call_function", "call_method")]
        weighted = {n for n in calls if n.op == "call_module"
                    and isinstance(self.gm.get_submodule(n.target), (nn.Conv2d, nn.BatchNorm2d, nn.Linear))}
        for n in sorted(calls, key=lambda n: n not in weighted):  # weighted first, each in graph order
            if n.op == "call_module":
                self.names[n] = free(str(n.target))
            else:
                fn = re.sub(r"_\d+$", "", n.name)  # fx's add_1 -> add (the suffix comes back if needed)
                self.names[n] = free(f"{_scope(n)}.{fn}".lstrip("."))

    def emit(self, node: fx.Node, kind: str, x: _T | Sequence[_T], **fields) -> _T:
        xs = [x] if isinstance(x, _T) else list(x)
        op = Op(self.names[node], kind, tuple(t.name for t in xs), **fields)
        self.ops.append(op)
        pooled = all(t.pooled for t in xs) if kind == "mul" else (any(t.pooled for t in xs) or kind == "gap")
        return _T(op.name, pooled=pooled, logits=kind == "linear", flat=any(t.flat for t in xs) and kind != "mul")

    # ---- helpers ------------------------------------------------------------------------------
    def tensor_args(self, node: fx.Node) -> list[_T]:
        return [v for a in node.all_input_nodes if isinstance(v := self.env.get(a), _T)]

    def need_map(self, node: fx.Node, x: _T, what: str) -> None:
        if x.logits:
            raise self.refuse(node, f"{what} after the classifier", _TODO_LOGITS)
        if x.pooled:
            raise self.refuse(node, f"{what} on globally pooled features (as in a squeeze-excitation or attention "
                              "branch, or a conv classifier)", "remove that branch, or search a model without it; "
                              "the space's network has one Linear classifier right after the global average pool; "
                              + _TODO_SUPPORTED)

    # ---- the walk -----------------------------------------------------------------------------
    def run(self) -> None:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise TraceError(f"the model's forward takes {len(placeholders)} inputs "
                             f"({[n.target for n in placeholders]}); a space has one image input: wrap the model "
                             "in a module whose forward(x) calls it with the other arguments fixed")
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.env[node] = _T(INPUT)
            elif node.op == "get_attr":
                raise self.refuse(node, f"the forward reads the parameter or buffer {node.target!r} directly",
                                  "use it inside a supported module (Conv2d, BatchNorm2d, Linear), or search a "
                                  "model without it")
            elif node.op == "output":
                self.output(node)
            elif node.op == "call_module":
                self.env[node] = self.module(node, self.gm.get_submodule(node.target))
            else:
                self.env[node] = self.function(node)

    def output(self, node: fx.Node) -> None:
        res = node.args[0]
        v = self.env.get(res) if isinstance(res, fx.Node) else None
        if not isinstance(v, _T) or not v.logits:
            got = type(res).__name__ if not isinstance(res, fx.Node) else (
                "a tensor that is not the Linear classifier's output" if isinstance(v, _T) else "no tensor")
            raise self.refuse(node, f"the model returns {got}", "return one tensor, the logits of the model's "
                              "classifier: a Linear, or a 1x1 conv on the globally pooled features. Nothing may follow "
                              "it (an activation or a pooling after a conv classifier, as in SqueezeNet, softmax); "
                              "detection heads and several outputs are outside a space")

    def module(self, node: fx.Node, m: nn.Module) -> _T | None:
        xs = self.tensor_args(node)
        if len(xs) != 1:
            raise self.refuse(node, f"the module takes {len(xs)} tensors", _TODO_SUPPORTED)
        x = xs[0]
        path = str(node.target)
        if x.logits and not isinstance(m, (nn.Linear, *_PASS_MODULES)):
            raise self.refuse(node, f"{type(m).__name__} after the classifier", _TODO_LOGITS)
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            if path in self.calls:
                raise self.refuse(node, f"module {path!r} is called a second time (first by fx node "
                                  f"{self.calls[path].name!r}): its weights are shared", "give each call its own "
                                  "module (weight sharing would tie widths across calls, which the space cannot "
                                  "express)")
            self.calls[path] = node
        if type(m) is nn.Conv2d:
            return self.conv(node, m, x)
        if type(m) is nn.BatchNorm2d:
            return self.bn(node, m, x)
        act = self.own_acts.get(id(m))  # (fn, alpha) of the model's own activation module, computing a known one
        if type(m) in _ACT_MODULES:
            if type(m) is nn.GELU and m.approximate != "none":
                raise self.refuse(node, f"GELU(approximate={m.approximate!r})", "use nn.GELU() (the exact, erf form)")
            act = _ACT_MODULES[type(m)], getattr(m, "negative_slope", 0.0)
        if type(m) is nn.Hardtanh and (m.min_val, m.max_val) == (0.0, 6.0):
            act = "relu6", 0.0
        if act is not None:  # alpha: leaky_relu's slope, 0 (unused) for the others
            return self.emit(node, "act", x, fn=act[0], alpha=float(act[1]))
        if type(m) is nn.MaxPool2d:
            return self.maxpool(node, x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                m.return_indices)
        if type(m) is nn.AdaptiveAvgPool2d:
            return self.gap(node, x, m.output_size)
        if type(m) is nn.AvgPool2d:
            return self.avgpool(node, x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                m.divisor_override)
        if isinstance(m, _PASS_MODULES):
            return x
        if type(m) is nn.Flatten:
            return self.flatten(node, x)
        if type(m) is nn.Linear:
            return self.linear(node, m, x)
        if isinstance(m, _OTHER_ACTS):
            raise self.refuse(node, f"activation {type(m).__name__} is not supported", _TODO_ACTS)
        if isinstance(m, nn.Conv2d) or isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise self.refuse(node, f"{type(m).__name__} is a subclass of a torch module with a forward of its own",
                              "use torch.nn.Conv2d / nn.BatchNorm2d themselves")
        raise self.refuse(node, f"torch module {type(m).__name__} is not an op a space has",
                          _TODO_SUPPORTED + "; torch.fx traces into your own modules, so this is a torch.nn "
                          "module widthnas does not map")

    def conv(self, node: fx.Node, m: nn.Conv2d, x: _T) -> _T:
        on_pooled = x.pooled and not x.flat and not x.logits and tuple(m.kernel_size) == (1, 1) and m.groups == 1
        if on_pooled and _reaches_output_by_reshapes(node):  # a 1x1 conv classifier (MobileNet-v2): the linear op
            return self.linear(node, m, x)
        if not on_pooled:  # else a 1x1 conv on the pooled (N, C, 1, 1) features: a channel gate's branch, or a
            self.need_map(node, x, "a convolution")  # hidden layer of the head
        k, s = m.kernel_size, m.stride
        dw = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        if m.groups != 1 and not dw and m.in_channels != m.out_channels:
            raise self.refuse(node, f"grouped convolution (groups={m.groups}, {m.in_channels} -> {m.out_channels} "
                              "channels) changes its channel count", "a space's grouped conv keeps its channels "
                              "(in = out, as in ResNeXt and RegNet), its blocks tied to its input's; a depthwise "
                              "conv with a channel multiplier, or a grouped conv that widens, is not supported")
        if k[0] != k[1] or s[0] != s[1]:
            raise self.refuse(node, f"kernel {tuple(k)}, stride {tuple(s)}: a space's conv has a square kernel "
                              "and one stride", "use a square kernel (1x1, 3x3, 5x5, ...)")
        pad = m.padding if isinstance(m.padding, tuple) else {"same": (k[0] // 2,) * 2, "valid": (0, 0)}.get(m.padding)
        if (pad is None or pad[0] != pad[1] or 2 * pad[0] > k[0] or (m.padding == "same" and k[0] % 2 == 0)
                or m.padding_mode != "zeros" or tuple(m.dilation) != (1, 1)):
            raise self.refuse(node, f"padding {m.padding!r} ({m.padding_mode}), dilation {tuple(m.dilation)}: a space's "
                              "conv pads every side alike with zeros, at most half its kernel, and has no dilation",
                              f"set e.g. padding={k[0] // 2} and dilation=1")
        # a BN that is its only reader folds into it (Graph.folded_bns), its bias folded into the BN's; else the
        # conv keeps its own bias
        users = list(node.users)
        folds = len(users) == 1 and users[0].op == "call_module" and \
            isinstance(self.gm.get_submodule(users[0].target), nn.modules.batchnorm._BatchNorm)
        grouped = m.groups if m.groups > 1 and not dw else 1
        return self.emit(node, "conv", x, out=0 if dw or grouped > 1 else m.out_channels, kernel=k[0], stride=s[0],
                         depthwise=dw, conv_groups=grouped,
                         pad=-1 if (k[0] % 2 and pad[0] == k[0] // 2) else pad[0],
                         bias=not folds and m.bias is not None)

    def bn(self, node: fx.Node, m: nn.BatchNorm2d, x: _T) -> _T:
        self.need_map(node, x, "a BatchNorm2d")  # folded into its conv when it is the conv's only reader
        if not m.affine or not m.track_running_stats or not 0 < m.eps < 1:
            raise self.refuse(node, f"BatchNorm2d(affine={m.affine}, track_running_stats={m.track_running_stats}, "
                              f"eps={m.eps:g})", "use nn.BatchNorm2d with affine=True, track_running_stats=True "
                              "(any eps in (0, 1) and any momentum)")
        return self.emit(node, "bn", x, eps=float(m.eps))  # momentum: training only, the supernet uses its own

    def maxpool(self, node, x, kernel, stride, padding, dilation, ceil_mode, indices) -> _T:
        self.need_map(node, x, "a max-pool")
        k, s, p = _pair(kernel), _pair(stride if stride not in (None, [], ()) else kernel), _pair(padding)
        if (k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or 2 * p[0] > k[0] or _pair(dilation) != (1, 1) or indices):
            raise self.refuse(node, f"max-pool kernel {k}, stride {s}, padding {padding}, dilation {dilation}, "
                              f"return_indices {indices}: a space's max-pool has a square kernel, one stride, the "
                              "same padding on every side (at most half the kernel) and no dilation",
                              "use e.g. nn.MaxPool2d(3, 2, 1) (ResNet's stem) or nn.MaxPool2d(2, 2)")
        default = k[0] % 2 == 1 and p[0] == k[0] // 2
        return self.emit(node, "maxpool", x, kernel=k[0], stride=s[0], pad=-1 if default else p[0], ceil=bool(ceil_mode))

    def gap(self, node, x: _T, output_size) -> _T:
        if output_size not in (1, (1, 1), [1, 1]):
            raise self.refuse(node, f"adaptive average pool to {output_size}", "pool to 1 (global average pooling) "
                              "before the classifier")
        self.need_map(node, x, "global average pooling")
        return self.emit(node, "gap", x)

    def avgpool(self, node, x: _T, kernel, stride, padding, ceil_mode=False, count_include_pad=True,
                divisor_override=None) -> _T:
        self.need_map(node, x, "an average pool")
        shape_in, shape_out = self.shapes.get(node.all_input_nodes[0]), self.shapes.get(node)
        k, s, p = _pair(kernel), _pair(stride if stride not in (None, [], ()) else kernel), _pair(padding)
        if shape_in is not None and shape_out is not None and tuple(shape_out[2:]) == (1, 1) and \
                k == tuple(shape_in[2:]) and p == (0, 0):
            return self.emit(node, "gap", x)  # over the whole map: global average pooling
        if k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or 2 * p[0] > k[0] or ceil_mode or divisor_override or \
                (p[0] and not count_include_pad):
            raise self.refuse(node, f"average pool kernel {k}, stride {s}, padding {padding}, ceil_mode {ceil_mode}, "
                              f"count_include_pad {count_include_pad}, divisor_override {divisor_override}: a space's "
                              "average pool has a square kernel, one stride, the same padding on every side (at most "
                              "half the kernel, its zeros counted) and no ceil_mode", "use e.g. nn.AvgPool2d(2, 2) "
                              "(DenseNet's transition), or nn.AdaptiveAvgPool2d(1) before the classifier")
        return self.emit(node, "avgpool", x, kernel=k[0], stride=s[0], pad=p[0])

    def flatten(self, node, x: _T) -> _T:
        shape_in, shape_out = self.shapes.get(node.all_input_nodes[0]), self.shapes.get(node)  # x is an input
        if x.logits:
            if shape_in is not None and shape_out is not None and len(shape_out) == 2 and \
                    all(d == 1 for d in shape_in[2:]):  # a conv classifier's (N, classes, 1, 1) squeezed
                return x
            raise self.refuse(node, "reshapes the classifier's output", "return the Linear classifier's logits")
        if not x.pooled and not x.map_side and shape_in is not None and shape_out is not None and len(shape_in) == 4 \
                and shape_in[2] == shape_in[3] > 1 and tuple(shape_out) == (shape_in[0], math.prod(shape_in[1:])):
            return _T(x.name, map_side=int(shape_in[2]))  # VGG: the map flattened for its MLP head
        if not x.pooled or shape_in is None or shape_out is None or shape_out[0] != shape_in[0] or \
                [d for d in shape_out[1:] if d != 1] != [d for d in shape_in[1:] if d != 1]:
            size = "x".join(map(str, shape_in[2:])) if shape_in is not None and len(shape_in) == 4 else "?"
            raise self.refuse(node, f"reshapes a tensor of shape {tuple(shape_in or ())} to {tuple(shape_out or ())}"
                              f"{' (a ' + size + ' feature map, not yet pooled)' if not x.pooled else ''}: only "
                              "flattening the globally pooled features (N, C, 1, 1) -> (N, C) is supported",
                              "pool globally (nn.AdaptiveAvgPool2d(1)) before flattening for the classifier")
        return _T(x.name, pooled=True, flat=len(shape_out) == 2)

    def linear(self, node, m: nn.Linear, x: _T) -> _T:
        later, seen, todo = False, set(), list(node.users)
        while todo and not later:  # a Linear downstream of this one: an MLP head
            u = todo.pop()
            if u not in seen:
                seen.add(u)
                later = u.op == "call_module" and type(self.gm.get_submodule(u.target)) is nn.Linear
                todo += list(u.users)
        shape_in = self.shapes.get(node.all_input_nodes[0])
        if x.map_side and later:  # VGG's first head layer on a flattened H x H map: an H x H conv without padding,
            t = self.emit(node, "conv", x, out=m.out_features, kernel=x.map_side, stride=1, pad=0,  # to a 1x1 map
                          bias=m.bias is not None)
            return _T(t.name, pooled=True, flat=True)
        if x.map_side:
            raise self.refuse(node, f"the classifier reads a flattened {x.map_side}x{x.map_side} feature map, not "
                              "pooled features", "pool globally (nn.AdaptiveAvgPool2d(1)) before flattening for the "
                              "classifier, or keep hidden Linear layers before it (an MLP head, as VGG's)")
        if later and x.pooled and not x.logits and shape_in is not None and len(shape_in) == 2:
            # a hidden layer of an MLP head on the pooled (N, C) features: a 1x1 conv in the space
            return self.emit(node, "conv", x, out=m.out_features, kernel=1, stride=1, bias=m.bias is not None)
        second = x.logits or any(o.kind == "linear" for o in self.ops)
        if not x.pooled or second:
            problem = ("a second Linear layer: the space's network has one, the classifier" if second else
                       "a Linear layer on features that are not globally average-pooled")
            raise self.refuse(node, problem, "pool globally (nn.AdaptiveAvgPool2d(1)), flatten, then nn.Linear "
                              "layers; the last one, the classifier, gives the model's output")
        return self.emit(node, "linear", x)

    def function(self, node: fx.Node) -> _T | None:
        t, xs = node.target, self.tensor_args(node)
        name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
        if not xs:  # shape arithmetic (x.size(0), ints): not a tensor of the network
            return None
        x = xs[0]
        if node.op == "call_method" and t in _SHAPE_METHODS or (t is getattr and node.args[1] in
                                                                 ("shape", "dtype", "device", "ndim")):
            return None
        if t in (torch.cat, torch.concat) or t in ("cat", "concat"):
            return self.cat(node)
        if t is torch.hstack:  # on (N, C, H, W) maps: the channel axis, as cat(xs, dim=1)
            return self.cat(node, dim=1)
        if t in _CAT:
            axis = "the batch axis" if t is torch.vstack else "a new axis"
            raise self.refuse(node, f"{name} joins tensors along {axis}", "concatenate feature maps on the "
                              "channel axis (torch.cat(xs, dim=1)), the one joining a space holds")
        if t in _SPLIT or t in ("split", "chunk", "tensor_split", "unbind", "narrow") or (
                t is operator.getitem and isinstance(self.env.get(node.args[0]), _T)):
            raise self.refuse(node, "splitting or slicing a tensor's channels (split, chunk, x[:, a:b]) is not "
                              "supported: a width search would move the channel offsets", "search a model "
                              "without channel splits, or a sub-network without them")
        if t in _ADD_FUNCS or t in ("add", "add_", "__add__", "__iadd__"):
            return self.add(node, xs)
        if t in _ACT_FUNCS:
            fn = _ACT_FUNCS[t]
            if fn == "gelu" and (node.kwargs.get("approximate", "none") != "none" or len(node.args) > 1):
                raise self.refuse(node, "GELU with approximate='tanh'", "use F.gelu(x) (the exact, erf form)")
            alpha = _arg(node, 1, "negative_slope", 0.01) if fn == "leaky_relu" else 0.0
            return self.emit(node, "act", x, fn=fn, alpha=float(alpha))
        if t in (F.hardtanh, F.hardtanh_) or t in ("hardtanh", "hardtanh_"):
            if tuple(_call_args(node, min_val=-1.0, max_val=1.0)) == (0, 6):
                return self.emit(node, "act", x, fn="relu6")
        if t is F.adaptive_avg_pool2d:
            return self.gap(node, x, _arg(node, 1, "output_size"))
        if t is F.avg_pool2d:
            return self.avgpool(node, x, *_call_args(node, kernel_size=None, stride=None, padding=0, ceil_mode=False,
                                                     count_include_pad=True, divisor_override=None))
        if t is F.max_pool2d:
            return self.maxpool(node, x, *_call_args(node, kernel_size=None, stride=None, padding=0, dilation=1,
                                                     ceil_mode=False, return_indices=False))
        if t in (torch.mean, "mean"):
            dims = _arg(node, 1, "dim")
            dims = sorted(d % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims]) if isinstance(d, int))
            if dims == [2, 3]:
                return self.gap(node, x, 1)
            raise self.refuse(node, f"mean over dims {dims}", "average over the spatial dims (2, 3) for global "
                              "pooling; other reductions are not supported")
        if t in _FLATTEN:
            return self.flatten(node, x)
        if t in (F.dropout, F.dropout2d, F.dropout1d) or t in ("contiguous", "clone", "detach"):
            return x
        if t in (operator.mul, operator.imul, torch.mul) or t in ("mul", "mul_", "__mul__"):
            return self.mul(node, xs)
        if t in _MUL or t in ("div", "div_", "matmul"):
            raise self.refuse(node, "divides or matrix-multiplies feature maps (e.g. attention)", "remove that "
                              "block, or search a model without it; " + _TODO_SUPPORTED)
        if t in (F.elu, torch.tanh, F.tanh, F.mish, F.selu, F.celu, F.softplus) or t in ("tanh", "tanh_"):
            raise self.refuse(node, f"activation {name} is not supported", _TODO_ACTS)
        if x.logits:
            raise self.refuse(node, f"{name} after the classifier", _TODO_LOGITS)
        raise self.refuse(node, f"{name} is not an op a space has", _TODO_SUPPORTED)

    def mul(self, node: fx.Node, xs: list[_T]) -> _T:
        """A feature map times its channel gate (N, C, 1, 1): squeeze-excitation and the like."""
        consts = [a for a in list(node.args) + list(node.kwargs.values()) if not isinstance(a, fx.Node)]
        shapes = [self.shapes.get(a) for a in node.args[:2] if isinstance(a, fx.Node)]
        maps = [x for x in xs if not x.pooled]
        gates = [x for x in xs if x.pooled and not x.flat and not x.logits]
        if len(xs) != 2 or consts or len(maps) != 1 or len(gates) != 1 or None in shapes or \
                len({tuple(sh[:2]) for sh in shapes}) != 1:
            raise self.refuse(node, f"multiplies {len(xs)} network tensor(s) of shapes "
                              f"{[tuple(sh) for sh in shapes if sh is not None]} and the constants {consts}",
                              "a space multiplies a feature map by its channel gate (N, C, 1, 1), as squeeze-"
                              "excitation does (x * sigmoid(conv(relu(conv(pool(x)))))); other products "
                              "(x * sigmoid(x), scaling by constants) are not supported")
        self.need_map(node, maps[0], "a channel gate")
        return self.emit(node, "mul", [maps[0], gates[0]])

    def cat(self, node: fx.Node, dim: int | None = None) -> _T:
        """torch.cat of feature maps on the channel axis: each input keeps its own channel group at its offset
        (`dim`: the axis a function joins on by definition, torch.hstack's 1)."""
        seq = _arg(node, 0, "tensors")
        dim = _arg(node, 1, "dim", 0) if dim is None else dim
        ins = [self.env.get(a) for a in seq] if isinstance(seq, (list, tuple)) else []
        if not ins or not all(isinstance(a, fx.Node) for a in seq) or not all(isinstance(x, _T) for x in ins):
            raise self.refuse(node, "a cat of values that are not all the network's tensors (constants, or "
                              "tensors made outside the network)", "concatenate feature maps of the network only")
        sh = self.shapes.get(node)
        if sh is None or len(sh) != 4 or dim not in (1, -3):
            raise self.refuse(node, f"a cat on dim {dim} of {'?' if sh is None else len(sh)}-d tensors",
                              "concatenate (N, C, H, W) feature maps on the channel axis, dim=1")
        for x in ins:
            self.need_map(node, x, "a concatenation")
        if len(ins) == 1:  # a cat of one tensor is that tensor
            return ins[0]
        return self.emit(node, "cat", ins)

    def add(self, node: fx.Node, xs: list[_T]) -> _T:
        consts = [a for a in list(node.args) + list(node.kwargs.values()) if not isinstance(a, fx.Node)]
        if len(xs) != 2 or any(not isinstance(a, fx.Node) for a in node.args[:2]) or \
                node.kwargs.get("alpha", 1) != 1:
            raise self.refuse(node, f"an add of {len(xs)} network tensor(s) and the constants {consts}",
                              "a space's add sums two feature maps of equal shape (a residual)")
        for x in xs:
            self.need_map(node, x, "an add")
        shapes = [tuple(self.shapes.get(a)) for a in node.args[:2] if self.shapes.get(a) is not None]
        if len(set(shapes)) > 1:
            raise self.refuse(node, f"adds tensors of shapes {shapes} (broadcasting)", "add feature maps of equal shape")
        return self.emit(node, "add", xs)


def _reaches_output_by_reshapes(node: fx.Node) -> bool:
    """Whether every path from `node` to the model's output passes only reshapes (flatten, view, squeeze):
    a conv classifier on the pooled features."""
    users = list(node.users)
    while users:
        u = users.pop()
        if u.op == "output" or (u.op == "call_method" and u.target in _SHAPE_METHODS):  # x.size(0) for a view
            continue
        if u.op == "call_module" and isinstance(u.graph.owning_module.get_submodule(u.target), nn.Flatten):
            users += list(u.users)
        elif u.op in ("call_function", "call_method") and u.target in _FLATTEN:
            users += list(u.users)
        else:
            return False
    return bool(node.users)


def _inplace(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return (name.endswith("_") and not name.startswith("_")) or node.kwargs.get("inplace") is True \
        or node.target in (operator.iadd, operator.imul)


def _drop_dead_code(gm: fx.GraphModule) -> None:
    """Remove computations whose result nothing reads; refuse an in-place one, which changes its input
    (the space's ops are pure, so they cannot follow it)."""
    for node in gm.graph.nodes:
        if node.op in ("call_module", "call_function", "call_method") and not node.users and _inplace(node, gm):
            raise _refusal(node, gm, "an in-place op whose result is not used changes its input in place, which a "
                           "graph of pure ops cannot follow", "assign its result (x = x.relu()) and use that")
    gm.graph.eliminate_dead_code()


def _shapes(gm: fx.GraphModule, x: torch.Tensor) -> dict:
    """fx node -> output shape (None for values that are not tensors), by running the traced module."""
    shapes: dict = {}

    class _Run(fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            shapes[n] = tuple(r.shape) if isinstance(r, torch.Tensor) else None
            return r

    with torch.no_grad():
        _Run(gm).run(x)
    return shapes


def _resolve(names: Sequence[str], space: GraphSpace, what: str, containers: bool) -> list[str]:
    """Module paths or op names -> op names. With `containers`, a module that holds layers (a block,
    'layer1.0') stands for every conv inside it."""
    src = space.source.module_of if space.source is not None else {}
    by_path = {path: op for op, path in src.items()}
    ops = {op.name for op in space.graph.ops}
    convs = [op.name for op in space.graph.ops if op.kind == "conv"]
    out, unknown = [], []
    for n in names:
        n = n.strip()
        if n in ops:
            out.append(n)
        elif n in by_path:
            out.append(by_path[n])
        elif containers and (inside := [c for c in convs if src.get(c, c).startswith(n + ".")]):
            out += inside
        else:
            unknown.append(n)
    if unknown:
        valid = [src.get(c, c) for c in convs]
        raise TraceError(f"{what}: {unknown} name no layer of the model; give module paths of its layers "
                         f"(a conv fixes its output channels' group), one of {valid}"
                         + (" or a module that holds some of them" if containers else ""))
    return out


def traced_choices(base: int, max_mult: float = 1.0, levels: int = 14, blocks: int = 1) -> tuple[int, ...]:
    """0.2x-max_mult x base in `levels` levels on multiples of 8, as the built-in spaces, never above
    max_mult x base; the model's own width is always a choice (when max_mult >= 1), so the model
    itself is in the space and its weights can be sliced to every choice below it. Fewer levels mean
    fewer latency-table entries: a quicker fit and search, a coarser choice. A group of a grouped conv
    (`blocks` > 1) rounds to multiples of its block count (space.block_round)."""
    c = {w for w in width_choices(base, 0.2, max_mult, levels, block_round(base, blocks))
         if w <= base * max_mult + 1e-9}
    if max_mult >= 1:
        c.add(base)
    return tuple(sorted(c)) or (base,)


def apply_constraints(space: GraphSpace, fixed: Sequence[str] = (), ties: Sequence[Sequence[str]] = ()) -> GraphSpace:
    """--fixed (module paths, op names or blocks holding convs) and --tie groups on a graph space."""
    fixed_ops = _resolve(fixed, space, "--fixed", containers=True)
    tie_ops = [_resolve(t, space, "--tie", containers=False) for t in ties]
    for t, given in zip(tie_ops, ties):
        if len(set(t)) < 2:
            raise TraceError(f"--tie {','.join(given)}: a tie names two or more layers whose channel groups it "
                             "merges")
    try:
        return space.with_constraints(fixed_ops, tie_ops)
    except GraphError as e:
        raise TraceError(f"--tie/--fixed: {e}") from None


def trace_model(model: nn.Module, input_shape: Sequence[int] | str, name: str = "traced", factory: str = "",
                fixed: Sequence[str] = (), ties: Sequence[Sequence[str]] = (), max_mult: float = 1.0,
                levels: int = 14, check: bool = True) -> GraphSpace:
    """The graph space of `model` on images of `input_shape` (C, H, W).

    fixed: layers kept at their own width (module paths; a block's path fixes every conv in it).
    ties: groups of layers whose output channels must have one width (merged by hand).
    max_mult: the widest choice of every group, x its width in the model (1.0: the model is the
    widest network, so its weights slice to every choice).
    levels: width levels between 0.2x and max_mult x (fewer after rounding to multiples of 8).
    check: rebuild the traced space as a GraphNet with the model's weights and require the model's
    outputs (eval mode) on a random input.
    """
    shape = parse_input_shape(input_shape)
    if not max_mult >= 0.2:
        raise TraceError(f"--max-mult {max_mult}: the widest choice must be at least 0.2x the model's widths")
    if not isinstance(levels, int) or levels < 2:
        raise TraceError(f"--levels {levels}: give at least 2 width levels per group (default 14)")
    was_training = model.training
    model.eval()  # traced as deployed: eval-mode branches, dropout off
    try:
        try:
            own = {id(m): a for m in model.modules() if (a := _as_activation(m)) is not None}
            tracer = _Tracer(own)
            graph = tracer.trace(model)
            gm = fx.GraphModule(tracer.root, graph)
        except Exception as e:
            raise TraceError(f"torch.fx could not trace {type(model).__name__} ({type(e).__name__}: {e}). fx runs the "
                             "forward on symbolic tensors, so control flow that depends on tensor values (if on a "
                             "tensor, loops over its size) cannot be traced. What to do: make that part of the "
                             "forward static (decide it in __init__), or give a factory that returns a model "
                             "without it") from None
        try:
            shapes = _shapes(gm, torch.randn(2, *shape))
        except Exception as e:
            raise TraceError(f"{type(model).__name__} does not run on input (2, {', '.join(map(str, shape))}) "
                             f"({type(e).__name__}: {str(e).splitlines()[0]}); check --input-shape C,H,W") from None
        _drop_dead_code(gm)
        b = _Builder(gm, shapes, tracer.own_acts)
        b.assign_names()
        b.run()
        if not b.ops or b.ops[-1].kind != "linear":
            raise TraceError("the traced model does not end in a Linear classifier")
        num_classes = shapes[[n for n in gm.graph.nodes if n.op == "output"][0].args[0]][1]
        modules = {b.names[n]: str(n.target) for n in gm.graph.nodes if n in b.names and n.op == "call_module"
                   and b.names[n] in {op.name for op in b.ops if op.kind in ("conv", "bn", "linear")}}
        try:
            g = Graph(shape, int(num_classes), tuple(b.ops))
        except GraphError as e:
            raise TraceError(f"the traced ops do not form a space ({e})") from None
        src = TraceSource(factory or type(model).__name__, tuple(modules.items()))
        space = GraphSpace.from_graph(name, g, {gr.name: traced_choices(gr.base, max_mult, levels,
                                                                        g.blocks.get(gr.name, 1))
                                                for gr in g.groups if not gr.fixed}, src)
        used = expected_keys(space)
        unused = tuple(k for k in model.state_dict() if k not in used)
        if unused:  # e.g. an auxiliary head that only training calls: its weights are ignored, by name
            space = replace(space, source=replace(src, unused_keys=unused))
        if fixed or ties:
            space = apply_constraints(space, fixed, ties)
        space = _fix_unsearchable(space)
        if check:
            check_against_model(space, model)
        return space
    finally:
        model.train(was_training)


def _fix_unsearchable(space: GraphSpace) -> GraphSpace:
    """Groups whose one choice is their own width (fewer than 8 channels) are fixed: nothing to search."""
    one = [space.group(g.name).members[0] for g in space.free_groups if len(g.choices) == 1]
    return space.with_constraints(one) if one else space


def check_against_model(space: GraphSpace, model: nn.Module, atol: float = 1e-4) -> float:
    """The space at its base widths with the model's weights must compute the model's outputs
    (eval mode, a random input); returns the max abs difference, raises TraceError past `atol`
    (relative to the outputs' scale)."""
    was_training = model.training
    model.eval()
    try:
        net = user_network(space, model.state_dict(), allow_unexpected=True).eval()
        x = torch.randn(3, *space.input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref, got = model(x), net(x)
    finally:
        model.train(was_training)
    diff = float((ref - got).abs().max())
    if not diff <= atol * (1 + float(ref.abs().max())):
        raise TraceError(f"the traced space does not compute what the model does (max abs difference {diff:.3g} on "
                         "a random input, eval mode). An in-place op on a tensor that is read again (e.g. "
                         "nn.ReLU(inplace=True) on a residual's identity) changes the model in a way a graph of "
                         "pure ops cannot; make it out-of-place. Otherwise it is a tracer bug: please report it "
                         "with the model")
    return diff


def format_groups(space: GraphSpace) -> list[str]:
    """One line per channel group: its width choices, and the model's layers whose output it is."""
    src = space.source.module_of if space.source is not None else {}
    lines, by = [], space.graph.by_name
    for g in space.groups:
        ops = [by[t] for t in space.group(g.name).members if t in by]
        starts = [src.get(o.name, o.name) for o in ops if o.kind in ("conv", "linear") and not o.keeps_group]
        dws = [src.get(o.name, o.name) for o in ops if o.keeps_group]
        what = (f"fixed at {g.base}" if g.fixed else f"base {g.base}, choices {list(g.choices)}")
        if space.graph.blocks.get(g.name, 1) > 1:
            what += f", in {space.graph.blocks[g.name]} blocks (a grouped conv's)"
        lines.append(f"  {g.name:24s} {what}")
        if starts or dws:
            lines.append(f"  {'':24s} out of: {', '.join(starts) or '-'}"
                         + (f"; kept by depthwise/grouped {', '.join(dws)}" if dws else ""))
    return lines


__all__ = ["TraceError", "load_factory", "parse_input_shape", "trace_model", "apply_constraints",
           "check_against_model", "traced_choices", "format_groups"]
