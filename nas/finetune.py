"""Fine-tune (or retrain from scratch) one chosen network: plain supervised training."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from widthnas._io import atomic_path

from .data import augment, normalize
from .device import resolve_device
from .evaluate import accuracy
from .greedylr import GreedyLR
from .schedule import SCHEDULES, lr_at, ramp, warmup_steps


def train_plain(net, splits, epochs: int, lr: float = 0.05, batch_size: int = 128, weight_decay: float = 4e-5,
                seed: int = 0, log=print, desc: str = "finetune", device: str = "auto", schedule: str = "cosine",
                greedy=None, loss_fn=None, channels_last: bool = True, validate_each_epoch: bool = True,
                progress: bool = False, checkpoint=None) -> list[dict]:
    """SGD with momentum, a linear warm-up (nas.schedule), then cosine decay, or GreedyLR
    (`schedule="greedy"`, options `greedy`, stepped on the validation loss after every epoch);
    returns per-epoch metrics (val accuracy, lr).

    loss_fn(logits, labels, uint8 images) replaces the cross-entropy, e.g. nas.flips.congruent_loss.
    channels_last: train in NHWC, faster on CPU (docs/RESULTS.md §0.6); the network is handed back in
    the default layout, so export and state dicts do not change.
    validate_each_epoch=False: validate after the last epoch only (earlier records carry None).
    progress: a bar over every step of every epoch (`desc` names it), left off the terminal when done.
    checkpoint: a file written (atomically) after every epoch and read back first, so that a killed training
    (a benchmark's 64-minute base model) resumes at its last epoch with the same result: each epoch's data
    order and augmentation come from (seed, epoch), the rest of the state is in the file.
    """
    from tqdm import tqdm

    xtr, ytr = splits.train
    dev = resolve_device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(dev, memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps = max(1, len(ytr) // batch_size)
    total, step, history = steps * epochs, 0, []
    warm = warmup_steps(total, steps)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if schedule == "greedy" and not validate_each_epoch and not (greedy is not None and greedy.every):
        raise ValueError("schedule 'greedy' steps on every epoch's validation loss: keep validate_each_epoch, "
                         "or step it on the training loss every N steps (greedy every=N)")
    sched = GreedyLR(opt, greedy) if schedule == "greedy" else None
    first = 0
    if checkpoint is not None and Path(checkpoint).exists():
        first, history = _resume(checkpoint, net, opt, sched, epochs, desc, log)
        step = first * steps
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", disable=not progress, dynamic_ncols=True, leave=False)
    for e in range(first, epochs):
        g = torch.Generator().manual_seed(seed * 7919 + e)
        perm = torch.randperm(len(ytr), generator=g)
        net.train()
        t0, loss_sum = time.time(), 0.0
        for s in range(steps):
            b = perm[s * batch_size:(s + 1) * batch_size]
            if sched is not None:
                sched.set_scale(ramp(step, warm))
            else:
                for group in opt.param_groups:
                    group["lr"] = lr_at(lr, step, total, warm, schedule)
            raw = augment(xtr[b], g)
            xb = normalize(raw, splits.mean, splits.std).to(dev, non_blocking=True).contiguous(memory_format=fmt)
            yb = ytr[b].to(dev, non_blocking=True)
            loss = F.cross_entropy(net(xb), yb) if loss_fn is None else loss_fn(net(xb), yb, raw)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += loss.item()
            step += 1
            bar.update()
            if sched is not None:
                sched.after_batch(loss.item())
        val_acc = val_loss = None
        if validate_each_epoch or e == epochs - 1:
            val_acc, val_loss = accuracy(net, *splits.val, splits.mean, splits.std)
        rec = {"epoch": e + 1, "train_loss": loss_sum / steps, "val_acc": val_acc, "val_loss": val_loss,
               "images_per_s": steps * batch_size / (time.time() - t0), "lr": opt.param_groups[0]["lr"]}
        if sched is not None:
            sched.after_epoch(val_loss)  # the rate for the next epoch (unless stepped every N steps)
            rec["next_lr"], rec["lr_action"] = sched.get_last_lr()[0], sched.last_action
        history.append(rec)
        val_txt = f", val acc {val_acc:.4f}" if val_acc is not None else ""
        log(f"{desc} epoch {e + 1}/{epochs}: loss {rec['train_loss']:.3f}{val_txt}, {rec['images_per_s']:.0f} img/s")
        if checkpoint is not None:
            with atomic_path(checkpoint) as tmp:
                torch.save({"epoch": e + 1, "epochs": epochs, "model": net.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict() if sched is not None else None, "history": history,
                            "rng": torch.get_rng_state()}, tmp)
    bar.close()
    net.to(memory_format=torch.contiguous_format)
    return history


def _resume(path, net, opt, sched, epochs: int, desc: str, log) -> tuple[int, list[dict]]:
    """(epochs done, their records) from train_plain's checkpoint, its state loaded into net, opt and sched."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("epochs") != epochs or not 0 < ck.get("epoch", 0) <= epochs:
        raise ValueError(f"{path}: not a checkpoint of this {epochs}-epoch training (delete it to start again)")
    net.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    if sched is not None:
        sched.load_state_dict(ck["sched"])
    torch.set_rng_state(ck["rng"])
    log(f"{desc}: resumed after epoch {ck['epoch']}/{epochs} from {path}")
    return int(ck["epoch"]), list(ck["history"])
