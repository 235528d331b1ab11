"""Accuracy of one width configuration: BatchNorm recalibration, then evaluation on a split."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn

from .data import normalize
from .device import device_of


def calibration_images(splits, n: int, seed: int = 0) -> torch.Tensor:
    """The training images BatchNorm is recalibrated on: `n` of them, drawn by a seeded permutation."""
    xtr = splits.train[0]
    return xtr[torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed))[:n]]


def recalibrate_bn(net: nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                   n_images: int | None = None, batch: int = 128) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them from (the first `n_images`
    of) `images`: torch.optim.swa_utils.update_bn, a cumulative average with the weights frozen.
    Shared supernet statistics fit no single configuration."""
    images = images[:n_images]
    if len(images) == 0:
        raise ValueError("no images to recalibrate BatchNorm on: its statistics would be reset to mean 0, "
                         "variance 1; give at least one calibration image")
    update_bn((normalize(images[i:i + batch], mean, std) for i in range(0, len(images), batch)), net, device_of(net))


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             batch: int = 128) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) in eval mode. batch 128: on a CPU, larger batches evaluate
    several times slower (their activations leave the cache)."""
    was = net.training
    net.eval()
    dev = device_of(net)
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch):
        out = net(normalize(x[i:i + batch], mean, std).to(dev))
        yb = y[i:i + batch].to(dev)
        loss += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    net.train(was)
    return correct / len(y), loss / len(y)


def calibrated_network(supernet, widths: Sequence[int], splits, calib_images: int = 512, seed: int = 0,
                       space=None) -> nn.Module:
    """`widths` materialized from the supernet (on `space`: widths off its grid), BN recalibrated on
    seeded random training images."""
    net = supernet.materialize(widths, space).to(device_of(supernet))
    recalibrate_bn(net, calibration_images(splits, calib_images, seed), splits.mean, splits.std)
    return net


def evaluate_config(supernet, widths: Sequence[int], splits, split: str = "val", calib_images: int = 512,
                    seed: int = 0) -> dict:
    """Materialize `widths` from the supernet, recalibrate BN on training images, evaluate."""
    net = calibrated_network(supernet, widths, splits, calib_images, seed)
    x, y = getattr(splits, split)
    acc, loss = accuracy(net, x, y, splits.mean, splits.std)
    return {"widths": list(widths), "split": split, "accuracy": acc, "loss": loss, "images": len(y)}
