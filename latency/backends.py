"""Latency backends: open a network by widths and return a zero-argument call that runs it once.

ONNX models come from onnx_graph.space_onnx, torch networks from models.net."""
from __future__ import annotations

import time
from typing import Callable, Sequence

from widthnas.models.space import GraphSpace

from . import standalone_runner as sr
from .onnx_graph import space_onnx


class OrtBackend:
    """onnxruntime with any installed execution provider (CPU by default)."""

    def __init__(self, space: GraphSpace, provider: str = "CPUExecutionProvider", threads: int = 1,
                 batch: int = 1, opt_level: str = "all"):
        sr.check_provider(provider)
        self.space, self.provider, self.threads, self.batch, self.opt_level = space, provider, threads, batch, opt_level

    def device_info(self) -> dict:
        import onnxruntime as ort

        return sr.device_info("onnxruntime", self.provider, self.threads, self.batch, self.opt_level, ort.__version__)

    def open(self, widths: Sequence[int]) -> Callable[[], None]:
        return self.open_file(space_onnx(self.space, widths, batch=self.batch).SerializeToString())

    def open_file(self, path: str | bytes) -> Callable[[], None]:
        """An exported model (dynamic batch; or a serialized one) timed the same way, for verifying predictions."""
        return sr.ort_runner(sr.ort_session(path, self.provider, self.threads, self.opt_level), self.batch,
                             self.provider)


class TorchBackend:
    """PyTorch eager on CPU or CUDA (synchronised around every run)."""

    def __init__(self, space: GraphSpace, device: str = "cpu", threads: int = 1, batch: int = 1):
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("torch backend on CUDA asked for, but this torch build sees no CUDA device")
        if not (device == "cpu" or device.startswith("cuda")):
            raise ValueError(f"torch device {device!r}: use 'cpu' or 'cuda[:N]'")
        self.space, self.device, self.threads, self.batch = space, device, threads, batch

    def device_info(self) -> dict:
        import torch

        gpu = torch.cuda.get_device_name(self.device) if self.device.startswith("cuda") else ""
        return sr.device_info("torch", self.device, self.threads, self.batch, "eager", torch.__version__, gpu)

    def open(self, widths: Sequence[int]) -> Callable[[], None]:
        import torch

        from widthnas.models.net import build_network as build_network

        torch.set_num_threads(self.threads)
        net = build_network(self.space, widths).eval().to(self.device)
        x = torch.rand(self.batch, *self.space.input_shape, device=self.device)
        cuda = self.device.startswith("cuda")

        @torch.no_grad()
        def run() -> None:
            net(x)
            if cuda:
                torch.cuda.synchronize()

        return run


def clocks(backend) -> tuple[Callable[[], float], Callable[[float], None]]:
    """(clock in s, sleep) to time a backend's runs and wait with: a backend may bring its own (a
    simulated device in the tests); the real ones use time.perf_counter and time.sleep."""
    return getattr(backend, "clock", time.perf_counter), getattr(backend, "sleep", time.sleep)


def make_backend(space: GraphSpace, backend: str = "onnxruntime", provider: str | None = None,
                 threads: int = 1, batch: int = 1, opt_level: str = "all"):
    if backend in ("onnxruntime", "ort"):
        return OrtBackend(space, provider or "CPUExecutionProvider", threads, batch, opt_level)
    if backend == "torch":
        return TorchBackend(space, provider or "cpu", threads, batch)
    raise ValueError(f"unknown backend {backend!r}; choose 'onnxruntime' or 'torch'")
