"""Torch threads per job, measured: small networks often run faster on one thread than on two here.

Two OpenMP threads spin on a 28-px network's small convolutions; a 224-px network wants every core.
Which holds is a property of the network, the batch and the machine, so it is timed on the job itself,
not assumed. The thread count changes float rounding only, never which data or widths a job sees.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .train import UniformConfigs, make_supernet, sandwich_step

REPS = 3  # timed repetitions per thread count, after one warm-up each (oneDNN meets its shapes)
MARGIN = 0.9  # fewer threads only when they take at most this share of the time: a tie keeps all cores


def thread_counts() -> list[int]:
    """1 and the threads torch runs on now (every core by default; OMP_NUM_THREADS=1 or a one-core
    machine leave one entry: nothing to choose)."""
    return sorted({1, torch.get_num_threads()})


def fastest_threads(job: Callable[[], object], counts: list[int] | None = None, reps: int = REPS) -> tuple[int, dict]:
    """(the thread count whose median time per call is lowest, {threads: median s}). Fewer threads win
    only by a clear margin (MARGIN): a noisy tie keeps today's default, all cores."""
    counts = counts or thread_counts()
    times: dict[int, list[float]] = {t: [] for t in counts}
    with using_threads(torch.get_num_threads()):  # as many threads afterwards as before
        for rep in range(reps + 1):  # round 0 warms every count up, untimed
            for t in counts:  # interleaved: a disturbance hits every count alike
                torch.set_num_threads(t)
                t0 = time.perf_counter()
                job()
                if rep:
                    times[t].append(time.perf_counter() - t0)
    med = {t: float(np.median(v)) for t, v in times.items()}
    most = max(counts)
    best = min(counts, key=lambda t: med[t])
    if best != most and med[best] > MARGIN * med[most]:
        best = most
    return best, med


@contextmanager
def using_threads(n: int) -> Iterator[None]:
    """torch runs on n threads inside the block, on as many as before after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def describe(best: int, med: dict) -> str:
    """'1 thread (1.8 x faster than 2: 41 ms against 74 ms per call)'."""
    most = max(med)
    if best == most or len(med) == 1:
        return f"{best} thread{'s' * (best > 1)}" + (
            f" (1 thread: {1e3 * med[1]:.0f} ms against {1e3 * med[most]:.0f} ms per call)" if len(med) > 1 else "")
    return (f"{best} thread{'s' * (best > 1)} ({med[most] / med[best]:.2f} x faster than {most}: "
            f"{1e3 * med[best]:.0f} ms against {1e3 * med[most]:.0f} ms per call)")


def training_probe(space, batch: int, n_random: int = 2, seed: int = 0) -> Callable[[], object]:
    """One sandwich step of a fresh supernet of `space` on random images (NHWC, as training runs), the same
    configurations every call: each thread count times the same work."""
    gen = torch.Generator().manual_seed(seed)
    sup = make_supernet(space).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(sup.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, *space.input_shape, generator=gen).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (batch,), generator=gen)
    configs = UniformConfigs(space).draw(n_random, np.random.default_rng(seed))
    return lambda: sandwich_step(sup, opt, x, y, configs)


def evaluation_probe(supernet, images: int, seed: int = 0) -> Callable[[], object]:
    """No-grad forwards of `supernet` on `images` random images at 3 random widths, the same every call
    (measured unaries, greedy's scorer, held-out accuracy)."""
    space = supernet.space
    x = torch.randn(images, *space.input_shape, generator=torch.Generator().manual_seed(seed))
    widths = [space.widths_from_indices(c) for c in UniformConfigs(space).draw(3, np.random.default_rng(seed))]
    was = supernet.training

    def job():
        supernet.eval()
        with torch.no_grad():
            for w in widths:
                supernet(x, w, update_bn_stats=False)
        supernet.train(was)

    return job


def finetune_probe(net, batch: int, seed: int = 0) -> Callable[[], object]:
    """One training step of a copy of `net` (the network itself stays as it is), NHWC."""
    twin = copy.deepcopy(net).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(twin.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *twin.space.input_shape, generator=gen).contiguous(memory_format=torch.channels_last)

    def job():
        out = twin(x)
        F.cross_entropy(out, torch.zeros(len(out), dtype=torch.long)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return job
