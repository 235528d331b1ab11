"""How many torch threads should the demo's small networks use? (issue 33, "thread count per job")

    python -m widthnas.benchmarks.demo_threads [--space mobilenet_v1_small] [--reps 7]

On the demo's space, each job timed with 1 and with all cores' threads, interleaved in one process
(medians of `--reps` repetitions after a warm-up, ratios against all threads measured in the same run):
  train step   one sandwich step of the supernet (widest + narrowest + 2 random), batch 128
  unaries      one no-grad supernet forward at random widths on 512 images (measured unaries, greedy's scorer)
  finetune     one plain training step of the network at half the widths, batch 128
  eval         one no-grad forward of that network on 1024 images (held-out accuracy, BN recalibration)
and, for fine-tuning, two single-thread processes side by side (the chosen and the uniform8 network at
once) against one process with all threads doing both in turn. Nothing else may run meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")  # as nas/__init__ sets for training


def _jobs(space_name: str, seed: int = 0) -> dict:
    """name -> a callable doing one unit of that job (its images counted in `images`)."""
    from widthnas.models import SlimmableGraphNet, build_network, get_space
    from widthnas.nas.train import UniformConfigs, sandwich_step

    space = get_space(space_name)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cl = torch.channels_last  # as training and fine-tuning run here (NHWC)
    sup = SlimmableGraphNet(space).to(memory_format=cl)
    opt = torch.optim.SGD(sup.parameters(), lr=0.01, momentum=0.9)
    draw = UniformConfigs(space)
    half = [len(ch) // 2 for ch in space.choices]  # width indices: the middle choice of every group
    net = build_network(space, space.widths_from_indices(half)).to(memory_format=cl)
    nopt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    shape = space.input_shape
    xb, yb = torch.randn(128, *shape).contiguous(memory_format=cl), torch.randint(0, space.num_classes, (128,))
    xu, xe = torch.randn(512, *shape), torch.randn(1024, *shape)

    def train_step():
        sup.train()
        sandwich_step(sup, opt, xb, yb, draw.draw(2, rng))

    def unaries():
        sup.eval()
        with torch.no_grad():
            sup(xu, space.widths_from_indices(draw.draw(1, rng)[0]))

    def finetune():
        net.train()
        F.cross_entropy(net(xb), yb).backward()
        nopt.step()
        nopt.zero_grad(set_to_none=True)

    def evaluate():
        net.eval()
        with torch.no_grad():
            net(xe)

    return {"train step": (train_step, 128), "unaries": (unaries, 512), "finetune": (finetune, 128),
            "eval": (evaluate, 1024)}


def time_threads(space: str, reps: int, threads: list[int]) -> dict:
    """job -> threads -> median seconds per call, interleaved over thread counts."""
    jobs = _jobs(space)
    out = {j: {t: [] for t in threads} for j in jobs}
    for j, (fn, _) in jobs.items():
        for t in threads:  # warm-up: oneDNN meets each shape once per thread count
            torch.set_num_threads(t)
            fn(), fn()
        for _ in range(reps):
            for t in threads:
                torch.set_num_threads(t)
                t0 = time.perf_counter()
                fn()
                out[j][t].append(time.perf_counter() - t0)
    return {j: {t: float(np.median(v)) for t, v in d.items()} for j, d in out.items()}


def _child(space: str, steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    fn, _ = _jobs(space)["finetune"]
    fn(), fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def side_by_side(space: str, steps: int, cores: int) -> dict:
    """Wall seconds for 2 x `steps` fine-tuning steps: two 1-thread processes at once, and one process
    with `cores` threads doing both jobs in turn (each a fresh process, started the same way)."""
    cmd = [sys.executable, "-m", "widthnas.benchmarks.demo_threads", "--space", space, "--child"]

    def launch(n: int, t: int):
        return subprocess.Popen(cmd + [str(n), str(t)], stdout=subprocess.PIPE, text=True)

    t0 = time.perf_counter()
    ps = [launch(steps, 1), launch(steps, 1)]
    for p in ps:
        p.communicate()
    pair = time.perf_counter() - t0
    t0 = time.perf_counter()
    launch(2 * steps, cores).communicate()
    one = time.perf_counter() - t0
    return {"two 1-thread processes s": pair, f"one {cores}-thread process s": one, "ratio": pair / one}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v1_small")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--steps", type=int, default=40, help="fine-tuning steps per process, side by side")
    p.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a.space, *a.child)
        return 0
    if a.reps < 1 or a.steps < 1:
        p.error("--reps and --steps must be >= 1")
    cores = os.cpu_count() or 1
    threads = sorted({1, cores})
    res = time_threads(a.space, a.reps, threads)
    jobs = _jobs(a.space)
    print(f"{a.space}, medians of {a.reps} interleaved repetitions; ratio = 1 thread's time over {cores} threads'")
    print(f"| job | {' | '.join(f'{t} thr img/s' for t in threads)} | ratio 1/{cores} |\n|---|{'---|' * len(threads)}---|")
    for j, d in res.items():
        n = jobs[j][1]
        print(f"| {j} | {' | '.join(f'{n / d[t]:.0f}' for t in threads)} | {d[1] / d[cores]:.2f} |")
    if cores > 1:
        s = side_by_side(a.space, a.steps, cores)
        print(f"fine-tuning, {2 * a.steps} steps in all: two 1-thread processes side by side "
              f"{s['two 1-thread processes s']:.1f} s, one {cores}-thread process {s[f'one {cores}-thread process s']:.1f} s "
              f"(ratio {s['ratio']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
