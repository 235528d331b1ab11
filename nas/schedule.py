"""The learning-rate schedule shared by supernet training and plain (re)training."""
from __future__ import annotations

import math


def warmup_steps(total: int, steps_per_epoch: int, fraction: float = 0.1) -> int:
    """Linear warm-up length: `fraction` of the run, at most one epoch (0 when fraction is 0)."""
    if fraction <= 0:
        return 0
    return max(1, min(int(total * fraction), steps_per_epoch))


SCHEDULES = ("cosine", "constant", "greedy")  # greedy: nas.greedylr.GreedyLR, stepped on validation loss


def ramp(step: int, warm: int) -> float:
    """The linear warm-up's share of the peak rate at `step` (1 after the ramp)."""
    return (step + 1) / warm if step < warm else 1.0


def lr_at(peak: float, step: int, total: int, warm: int = 0, schedule: str = "cosine") -> float:
    """Linear ramp to `peak` over `warm` steps, then cosine decay to 0 at `total` (or constant).
    The ramp: from scratch at lr 0.1 without one, BatchNorm networks sometimes start astray."""
    if step < warm:
        return peak * ramp(step, warm)
    if schedule == "constant":
        return peak
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
