"""Cost of one sandwich step against one plain training step of the widest network.

    python -m widthnas.benchmarks.train_throughput [--space mobilenet_v1_small] [--batch 128] [--steps 12]
Modes, timed interleaved in one process (ratios of medians), peak memory each in a fresh process:
  plain     one step of the plain network at the space's widest widths
  sandwich  widest + narrowest + 2 random configurations, slicing weights (widthnas)
  masked    the same four passes as full-width networks with channel masks (what slicing avoids)
Any registered space or a space JSON file (--space).
Target (issue 4): sandwich <= 2.0x plain; masking costs ~4x.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")  # as nas/__init__ sets for training

from widthnas.models import SlimmableGraphNet, build_network, get_space
from widthnas.models.graph import INPUT
from widthnas.nas.train import sandwich_step


def masked_forward(sup: SlimmableGraphNet, x: torch.Tensor, widths) -> torch.Tensor:
    """The supernet's widest network with every tensor's channels past its group's width zeroed: the
    function of the sliced network at `widths`, at the cost of the widest one. Masks follow each
    activation, add and pooling, and each BatchNorm that feeds anything but an activation."""
    space, layers = sup.space, sup.full.layers
    a, top, group = space.assignment(widths), space.assignment(space.max_widths), space.graph.group_of
    mask = {g: (torch.arange(top[g], device=x.device) < a[g]).to(x.dtype)[None, :, None, None] for g in top}
    readers: dict[str, set] = {}
    for op in space.graph.ops:
        for i in op.inputs:
            readers.setdefault(i, set()).add(op.kind)
    t = {INPUT: x}
    for op in space.graph.ops:
        xs = [t[i] for i in op.inputs]
        key = op.name.replace(".", "_")  # the op's module in GraphNet.layers (models/net.py)
        if op.kind == "add":
            y = xs[0]
            for z in xs[1:]:
                y = y + z
        elif op.kind == "gap":
            y = F.adaptive_avg_pool2d(xs[0], 1)
        elif op.kind == "linear":
            y = layers[key](torch.flatten(xs[0], 1))
        else:
            y = layers[key](xs[0])
        if op.kind in ("act", "add", "maxpool") or (op.kind == "bn" and readers.get(op.name, set()) != {"act"}):
            y = y * mask[group[op.name]]
        t[op.name] = y
    return y


def make_mode(mode: str, space, batch: int, device: str, channels_last: bool):
    torch.manual_seed(0)
    x = torch.randn(batch, *space.input_shape, device=device)
    y = torch.randint(0, space.num_classes, (batch,), device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    if mode == "plain":
        net = build_network(space, space.max_widths).to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def step():
            F.cross_entropy(net(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
        return step
    sup = SlimmableGraphNet(space).to(device)
    if channels_last:
        sup = sup.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(sup.parameters(), lr=0.01, momentum=0.9)
    draw = lambda: np.stack([rng.integers(0, len(c), 2) for c in space.choices], 1)  # noqa: E731
    if mode == "sandwich":
        def step():
            sandwich_step(sup, opt, x, y, draw())
            sync()
        return step
    if mode == "masked":
        def step():
            out = masked_forward(sup, x, space.max_widths)
            F.cross_entropy(out, y).backward()
            soft = out.detach().softmax(1)
            for w in [space.min_widths] + [space.widths_from_indices(i) for i in draw()]:
                (-(soft * masked_forward(sup, x, w).log_softmax(1)).sum(1).mean()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
        return step
    raise ValueError(mode)


def peak_memory_mb(mode: str, a) -> float:
    """Peak resident memory of a fresh process running a few steps of `mode`."""
    cmd = [sys.executable, __file__, "--child", mode, "--space", a.space, "--batch", str(a.batch), "--device", a.device]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"memory probe for {mode} failed: {r.stderr[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v1_small", help="a registered space or a space JSON file")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--child")
    a = p.parse_args()
    space = get_space(a.space)
    cl = not a.no_channels_last and a.device == "cpu"
    if a.child:
        step = make_mode(a.child, space, a.batch, a.device, cl)
        for _ in range(3):
            step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if a.device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2 ** 20
        print(json.dumps({"peak_mb": peak}))
        return 0
    modes = ["plain", "sandwich", "masked"]
    steps = {m: make_mode(m, space, a.batch, a.device, cl) for m in modes}
    for m in modes:
        steps[m]()  # warm-up

    def timed(names) -> dict:
        times = {m: [] for m in names}
        for _ in range(a.steps):  # interleaved, so drift hits every mode alike
            for m in names:
                t = time.perf_counter()
                steps[m]()
                times[m].append(time.perf_counter() - t)
        return {m: float(np.median(v)) for m, v in times.items()}

    print(f"{space.name} {space.input_shape}, batch {a.batch}, {a.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, channels_last={cl}; medians of {a.steps} interleaved steps")
    cold = timed(modes)
    print("cold (sampled configurations mostly new convolution shapes to oneDNN):")
    for m in modes:
        print(f"  {m:9s} {cold[m] * 1e3:8.1f} ms/step  {a.batch / cold[m]:8.0f} img/s  "
              f"{cold[m] / cold['plain']:5.2f}x plain  peak memory {peak_memory_mb(m, a):7.0f} MB")
    warm = _warm_shapes(space, a, cl)
    steady = timed(["plain", "sandwich"])
    print(f"steady state (after one pass over all {warm} covering configurations, as in a long run):")
    for m in ("plain", "sandwich"):
        print(f"  {m:9s} {steady[m] * 1e3:8.1f} ms/step  {a.batch / steady[m]:8.0f} img/s  "
              f"{steady[m] / steady['plain']:5.2f}x plain")
    print(f"sandwich / plain = {cold['sandwich'] / cold['plain']:.2f} cold, "
          f"{steady['sandwich'] / steady['plain']:.2f} steady (target <= 2.0); "
          f"masked / plain = {cold['masked'] / cold['plain']:.2f}")
    return 0


def covering_widths(space) -> list[list[int]]:
    """Configurations that together give every op every (c_in, c_out) it can take: every pair of
    choices of every two free groups an op joins, and every choice of every free group. Greedy: each
    configuration takes as many still-missing pairs as agree with one another (on a chain of 14
    groups x 14 widths, about 14 x 14 configurations)."""
    pos = {g.name: k for k, g in enumerate(space.free_groups)}
    ks = [len(c) for c in space.choices]
    need: dict[tuple[int, int], set] = {}
    for f in space.factor_structure().factors:
        if len(f.scope) == 2:
            i, j = pos[f.scope[0]], pos[f.scope[1]]
            need.setdefault((i, j), {(a, b) for a in range(ks[i]) for b in range(ks[j])})
    single = [set(range(k)) for k in ks]
    out = []
    while any(need.values()) or any(single):
        idx = [-1] * len(ks)
        for (i, j), todo in sorted(need.items(), key=lambda kv: -len(kv[1])):
            for a, b in sorted(todo):
                if idx[i] in (-1, a) and idx[j] in (-1, b):
                    idx[i], idx[j] = a, b
                    break
        idx = [k if k >= 0 else (min(single[g]) if single[g] else 0) for g, k in enumerate(idx)]
        for (i, j), todo in need.items():
            todo.discard((idx[i], idx[j]))
        for g, todo in enumerate(single):
            todo.discard(idx[g])
        out.append(space.widths_from_indices(idx))
    return out


def _warm_shapes(space, a, cl) -> int:
    """Run one forward/backward of configurations that together cover every op's (c_in, c_out)."""
    sup = SlimmableGraphNet(space).to(a.device)
    if cl:
        sup = sup.to(memory_format=torch.channels_last)
    x = torch.randn(a.batch, *space.input_shape, device=a.device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (a.batch,), device=a.device)
    nets = covering_widths(space)
    for w in nets:
        F.cross_entropy(sup(x, w, update_bn_stats=False), y).backward()
    return len(nets)


if __name__ == "__main__":
    sys.exit(main())
