"""Search spaces and the MobileNet networks built over them."""
from .space import (
    LayerSpec,
    SearchSpace,
    WidthError,
    check_fingerprint,
    get_space,
    mobilenet_v1,
    mobilenet_v1_small,
    width_choices,
)

__all__ = [
    "LayerSpec", "SearchSpace", "WidthError", "check_fingerprint", "get_space",
    "mobilenet_v1", "mobilenet_v1_small", "width_choices", "build_network", "SlimmableMobileNet", "MobileNet",
]


def __getattr__(name):  # torch is heavy: import the networks only when asked
    if name in ("build_network", "SlimmableMobileNet", "MobileNet"):
        from . import mobilenet
        return getattr(mobilenet, name)
    raise AttributeError(name)
