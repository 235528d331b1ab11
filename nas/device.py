"""Where training and evaluation run: a CUDA GPU when there is one, else the CPU."""
from __future__ import annotations

import os

import torch
from torch import nn


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> this process's GPU (LOCAL_RANK under torchrun) if CUDA is available, else the CPU."""
    if name == "auto":
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available in this torch build or machine; use 'cpu' or 'auto'")
    return dev


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's parameters (the CPU for a module without any)."""
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
