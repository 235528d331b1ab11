"""Search spaces and the networks built over them: chain spaces (MobileNet-v1, space.py) and graph
spaces (MobileNet-v2, ResNet; graph.py, graph_space.py, graph_families.py)."""
from .graph import Graph, GraphBuilder, GraphError, Op
from .graph_families import GRAPH_SPACES, get_graph_space, mobilenet_v2, mobilenet_v2_small, resnet, resnet_small
from .graph_space import FactorStructure, GraphSpace, GroupSpec, OpFactor, OpSignature
from .space import (
    LayerSpec,
    SearchSpace,
    WidthError,
    check_fingerprint,
    get_space,
    lookup_space,
    mobilenet_v1,
    mobilenet_v1_small,
    width_choices,
)

__all__ = [
    "LayerSpec", "SearchSpace", "WidthError", "check_fingerprint", "get_space", "lookup_space",
    "mobilenet_v1", "mobilenet_v1_small", "width_choices", "build_network", "SlimmableMobileNet", "MobileNet",
    "Graph", "GraphBuilder", "GraphError", "Op", "GraphSpace", "GroupSpec", "OpFactor", "OpSignature",
    "FactorStructure", "GRAPH_SPACES", "get_graph_space", "mobilenet_v2", "mobilenet_v2_small", "resnet",
    "resnet_small", "GraphNet", "SlimmableGraphNet", "build_graph_network", "trace_model", "TraceError",
    "load_factory",
]


def __getattr__(name):  # torch is heavy: import the networks only when asked
    if name in ("build_network", "SlimmableMobileNet", "MobileNet"):
        from . import mobilenet
        return getattr(mobilenet, name)
    if name in ("GraphNet", "SlimmableGraphNet", "build_graph_network"):
        from . import graph_net
        return getattr(graph_net, name)
    if name in ("trace_model", "TraceError", "load_factory"):  # your own model (torch.fx)
        from . import trace
        return getattr(trace, name)
    raise AttributeError(name)
