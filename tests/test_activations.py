"""Activations beyond ReLU and BNs ported from TensorFlow (issue 32, items 1-2): a model with Hardswish,
Hardsigmoid, SiLU, Sigmoid, GELU and LeakyReLU (modules and functionals) and BN eps 1e-3 traces, and
every form of the space computes the model: the plain network at a narrower width exported by torch,
the supernet's functional forward, and the ONNX graph the latency profiles time."""
import json

import pytest
import torch

import trace_models as tm
from helpers import check_every_form
from widthnas.models.graph import GraphError, Op
from widthnas.models.net import GraphNet
from widthnas.models.space import GraphSpace
from widthnas.models.trace import TraceError, trace_model

ACTS = ("hardswish", "hardsigmoid", "sigmoid", "silu", "gelu")


@pytest.mark.parametrize("act", ACTS)
def test_a_model_with_modern_activations_traces_and_every_form_computes_it(act, tmp_path):
    torch.manual_seed(0)
    model = tm.ModernActs(act).eval()
    for m in model.modules():  # trained-looking BN statistics, so that eps and the folding matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.01, 0.5)
    space = trace_model(model, (1, 16, 16))  # raises unless the traced space reproduces the model
    fns = [op.fn for op in space.graph.ops if op.kind == "act"]
    assert fns == ["hardswish", "silu", "sigmoid", act, "leaky_relu", "leaky_relu", "gelu"]
    assert [op.alpha for op in space.graph.ops if op.fn == "leaky_relu"] == [0.1, 0.2]
    assert {op.eps for op in space.graph.ops if op.kind == "bn"} == {1e-3}
    assert GraphSpace.from_dict(json.loads(json.dumps(space.to_dict()))).fingerprint == space.fingerprint  # alpha, eps

    check_every_form(model, (1, 16, 16), tmp_path)


def test_unfused_activations_are_costed_ops_and_relu_stays_free():
    space = trace_model(tm.ModernActs("hardswish").eval(), (1, 16, 16))
    costed = {f.op: f.signature.groups for f in space.factor_structure().factors if f.signature.kind == "act"}
    acts = {op.name: op.fn for op in space.graph.ops if op.kind == "act"}
    assert costed == acts  # every one of them costs its own time (onnxruntime does not fuse them all)
    relu = trace_model(tm.resnet_tiny().eval(), (1, 16, 16))
    assert not [f for f in relu.factor_structure().factors if f.signature.kind == "act"]


def test_default_ops_write_no_new_fields_so_old_fingerprints_hold():
    assert Op("b", "bn", ("c",)).to_dict() == {"name": "b", "op": "bn", "inputs": ["c"]}
    assert Op("a", "act", ("b",), fn="relu").to_dict() == {"name": "a", "op": "act", "inputs": ["b"], "fn": "relu"}
    assert Op("a", "act", ("b",), fn="leaky_relu", alpha=0.1).to_dict()["alpha"] == 0.1
    assert Op("b", "bn", ("c",), eps=1e-3).to_dict()["eps"] == 1e-3


@pytest.mark.parametrize("field,value,needle", [
    ("eps", 0.0, "'eps' must be a number in (0, 1)"), ("eps", "1e-3", "'eps' must be a number"),
    ("alpha", float("nan"), "'alpha' must be a number in [0, 1)"), ("alpha", 2.0, "in [0, 1)")])
def test_bad_alpha_and_eps_in_a_space_file_are_refused(field, value, needle):
    d = {"name": "x", "op": "bn" if field == "eps" else "act", "inputs": ["c"], field: value}
    if field == "alpha":
        d["fn"] = "leaky_relu"
    with pytest.raises(GraphError) as e:
        Op.from_dict(d)
    assert needle in str(e.value)


def test_approximate_gelu_and_tanh_are_refused_with_what_to_do():
    class Tanhy(tm._Base):
        def forward(self, x):
            return self.head(torch.nn.functional.gelu(self.stem(x), approximate="tanh"))

    with pytest.raises(TraceError, match="approximate='tanh'"):
        trace_model(Tanhy(), (1, 8, 8))
    with pytest.raises(TraceError, match="Tanh"):
        trace_model(tm.WithTanh(), (1, 8, 8))


def test_a_space_file_with_these_activations_loads_and_builds(tmp_path):
    space = trace_model(tm.ModernActs("silu").eval(), (1, 16, 16))
    p = tmp_path / "s.json"
    space.save(p)
    again = GraphSpace.load(p)
    assert again.fingerprint == space.fingerprint
    assert json.loads(p.read_text())["ops"] and GraphNet(again, again.base_widths)(torch.zeros(1, 1, 16, 16)).shape == (1, 10)


def test_a_models_own_activation_module_is_read_by_what_it_computes(tmp_path):
    """pytorchcv writes Swish as x * sigmoid(x) and HSwish as x * relu6(x + 3) / 6 in modules of its own:
    a weightless module of the user's that computes a known activation is read as that activation."""
    import torch.nn.functional as F
    from torch import nn

    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    class HSwish(nn.Module):
        def forward(self, x):
            return x * F.relu6(x + 3.0) / 6.0

    class Odd(nn.Module):  # computes nothing a space has
        def forward(self, x):
            return x * 0.5

    class Net(tm._Base):
        def __init__(self, act):
            super().__init__(16)
            self.act = act

        def forward(self, x):
            return self.head(self.act(self.stem(x)))

    for act, fn in ((Swish(), "silu"), (HSwish(), "hardswish")):
        space = trace_model(Net(act).eval(), (1, 8, 8))
        assert [op.fn for op in space.graph.ops if op.kind == "act"] == ["relu", fn]
    with pytest.raises(TraceError, match="constant"):
        trace_model(Net(Odd()).eval(), (1, 8, 8))
