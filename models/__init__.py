"""Search spaces and the networks built over them. Every space is a graph of ops whose channel
groups are the search variables (graph.py, space.py); the shipped families are in
families.py, a user's own model is traced by trace.py."""
from .graph import Graph, GraphBuilder, GraphError, Op
from .families import SPACES, get_space, mobilenet_v1, mobilenet_v1_small, mobilenet_v2, mobilenet_v2_small
from .families import resnet, resnet_small
from .space import FactorStructure, GraphSpace, GroupSpec, OpFactor, OpSignature
from .space import WidthError, check_fingerprint, width_choices

__all__ = [
    "WidthError", "check_fingerprint", "get_space", "width_choices", "SPACES",
    "mobilenet_v1", "mobilenet_v1_small", "mobilenet_v2", "mobilenet_v2_small", "resnet", "resnet_small",
    "Graph", "GraphBuilder", "GraphError", "Op", "GraphSpace", "GroupSpec", "OpFactor", "OpSignature",
    "FactorStructure", "GraphNet", "SlimmableGraphNet", "build_network", "trace_model", "TraceError",
    "load_factory",
]


def __getattr__(name):  # torch is heavy: import the networks only when asked
    if name in ("GraphNet", "SlimmableGraphNet", "build_network"):
        from . import net
        return getattr(net, name)
    if name in ("trace_model", "TraceError", "load_factory"):  # your own model (torch.fx)
        from . import trace
        return getattr(trace, name)
    raise AttributeError(name)
