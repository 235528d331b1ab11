"""`widthnas train`: a slimmable supernet trained with the sandwich rule, recording how much each
(layer, width) loses against the widest network; OWS or AOWS (progressive narrowing).

One variable per free channel group of the space (per layer for MobileNet-v1); everything below
reads only the space's `choices`, widths lists in its free-group order and the MRF it builds.

Accuracy-loss recording: for each *sampled* configuration, (its cross-entropy - the widest
network's) on the same images is credited to each layer's chosen width. The narrowest network is
trained but not recorded: it always pairs every layer's narrowest width, which would bias those
means. Means are kept per epoch; unaries.json holds the last completed epoch's.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from widthnas._io import append_line, append_text, atomic_path, atomic_write_text, read_jsonl
from widthnas.latency.registry import load_profile
from widthnas.models.families import get_space
from widthnas.models.net import GraphNet, SlimmableGraphNet
from widthnas.models.space import check_fingerprint
from widthnas.models.trace_weights import load_state_file, seed_supernet
from widthnas.mrf import Unaries, build_mrf, lagrangian, marginals, parse_budget, sample_configs
from widthnas.mrf.solvers import check_budget
from widthnas.mrf.unaries import from_arrays

from .checks import INT_NONNEG, INT_POS, POSITIVE, Rule, check_settings
from .data import augment, check_fits, load_dataset, normalize, split
from .device import resolve_device
from .evaluate import accuracy
from .greedylr import GreedyLR, GreedyOptions
from .paths import same_setting, with_recorded_paths
from .schedule import SCHEDULES, lr_at, ramp, warmup_steps
from .search import flat_mrf

CKPT = "checkpoint.pt"
# What a training run writes in its directory (an input given inside it must not be one of them)
RUN_FILES = ("train_config.json", CKPT, "unaries.json", "metrics.jsonl", "narrowing.jsonl", "train.log")
# Settings a resumed run may change: more epochs extend it; threads and device only change where it runs.
RESUMABLE = ("epochs", "threads", "device")


@dataclass
class TrainConfig:
    space: str = "mobilenet_v1_small"  # search space name or JSON file
    input_shape: str | None = None  # "C,H,W" to override the space's input
    dataset: str = "fashion_mnist"  # fashion_mnist | cifar10 | imagefolder | npz
    data: str | None = None  # dataset path (default: the Debian package, else a checksummed download)
    limit: int | None = None  # train on only this many images (quick runs)
    val_fraction: float = 0.1  # validation split carved from train; the test set is never used here
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1  # peak SGD learning rate
    momentum: float = 0.9
    weight_decay: float = 4e-5
    schedule: str = "cosine"  # cosine | constant | greedy (GreedyLR on the widest network's validation loss)
    greedy: str = ""  # GreedyLR options, "factor=0.5,patience=0,..." (nas.greedylr.GreedyOptions); "": defaults
    lr_warmup: float = 0.1  # linear lr ramp over this fraction of the steps (at most one epoch); 0: none
    n_random: int = 2  # sampled configurations per step, besides the widest and the narrowest
    sampling: str = "ows"  # ows: uniform widths; aows: MRF marginals under the budget
    warmup_epochs: int = 1  # aows: uniform sampling first
    budget: str | None = None  # aows: "50%" of the widest network or "0.8ms"
    profile: str | None = None  # aows: latency profile (hw_profiles name or path)
    t_start: float = 1.0  # aows: temperature after warm-up, relative to the unaries' spread
    t_end: float = 0.05  # aows: temperature at the last step
    refresh: int = 20  # aows: steps between MRF rebuilds (and narrowing log lines)
    augment: bool = True  # random shifts and flips
    channels_last: bool = True  # faster convolutions on CPU
    threads: int = 0  # torch threads; 0 = all cores
    device: str = "auto"  # auto (a CUDA GPU if present, else cpu) | cpu | cuda | cuda:N
    seed: int = 0
    weights: str | None = None  # a traced space's user state_dict: seeds the supernet (models/trace_weights.py)

    def check(self, where: str = "") -> None:
        """Refuse bad numbers (option names in the message) before anything is trained or written."""
        check_settings(self, {
            "limit": Rule(integer=True, low=1, none_ok=True), "val_fraction": Rule(above=0, below=1),
            "epochs": INT_POS, "batch_size": INT_POS, "lr": POSITIVE, "momentum": Rule(low=0, below=1),
            "weight_decay": Rule(low=0), "lr_warmup": Rule(low=0, high=1), "n_random": INT_NONNEG,
            "warmup_epochs": INT_NONNEG, "t_start": POSITIVE, "t_end": POSITIVE, "refresh": INT_POS,
            "threads": INT_NONNEG, "seed": INT_NONNEG}, where)


def build_space(cfg: TrainConfig):
    """The space of cfg.space (name or JSON file), at cfg.input_shape."""
    space = get_space(cfg.space)
    return space.with_input(cfg.input_shape) if cfg.input_shape else space


def make_supernet(space) -> torch.nn.Module:
    """The slimmable supernet: forward(x, widths, update_bn_stats) and materialize(widths)."""
    return SlimmableGraphNet(space)


def build_plain_network(space, widths) -> torch.nn.Module:
    """A plain (not slimmable) network of the space at `widths`."""
    return GraphNet(space, widths)


# ---- unary statistics ------------------------------------------------------------------
class LossStats:
    """Per (free group, width) sums and counts of the recorded loss increase."""

    def __init__(self, space):
        self.space = space
        self.sum = [torch.zeros(len(c), dtype=torch.float64) for c in space.choices]
        self.count = [torch.zeros(len(c), dtype=torch.float64) for c in space.choices]

    def add(self, idx, delta: float) -> None:
        for i, k in enumerate(idx):
            self.sum[i][k] += delta
            self.count[i][k] += 1

    def merged(self, other: "LossStats") -> "LossStats":
        return LossStats(self.space).load({"sum": [a + b for a, b in zip(self.sum, other.sum)],
                                           "count": [a + b for a, b in zip(self.count, other.count)]})

    def all_reduce(self, device: torch.device | str = "cpu") -> None:
        """Sum over ranks in one all-reduce on the training device (NCCL rejects CPU tensors); the
        counts stay on the CPU between reductions, where `add` is cheap."""
        if dist.is_initialized():
            flat = torch.cat(self.sum + self.count).to(device)
            dist.all_reduce(flat)
            parts = flat.cpu().split([len(t) for t in self.sum + self.count])
            k = len(self.sum)
            self.sum, self.count = list(parts[:k]), list(parts[k:])

    def unaries(self, meta: dict | None = None):
        loss = [np.where(c.numpy() > 0, s.numpy() / np.maximum(c.numpy(), 1), np.nan) for s, c in zip(self.sum, self.count)]
        return from_arrays(self.space, loss, [c.numpy().astype(int) for c in self.count], meta)

    def state(self) -> dict:
        return {"sum": [t.clone() for t in self.sum], "count": [t.clone() for t in self.count]}

    def load(self, st: dict) -> "LossStats":
        self.sum, self.count = [t.clone() for t in st["sum"]], [t.clone() for t in st["count"]]
        return self


# ---- samplers ----------------------------------------------------------------------------
class UniformConfigs:
    """OWS: every layer's width uniformly at random."""

    def __init__(self, space):
        self.space = space

    def draw(self, n: int, rng: np.random.Generator, **_) -> np.ndarray:
        return np.stack([rng.integers(0, len(c), n) for c in self.space.choices], axis=1)


class NarrowingConfigs:
    """AOWS: joint samples from the MRF of (score - gamma * latency) / T, where gamma meets the
    budget and T falls from t_start to t_end (relative to the unaries' spread)."""

    def __init__(self, space, table, budget_ms: float, cfg: TrainConfig, log_path: Path | None):
        self.space, self.table, self.budget, self.cfg, self.log_path = space, table, budget_ms, cfg, log_path
        self.mrf, self.gamma, self.temp, self.built_at = None, 0.0, cfg.t_start, -10 ** 9
        self.unaries = None  # what self.mrf was built from: the checkpoint keeps it, so a resumed run samples alike

    def state(self) -> dict:
        """When and from what the MRF was built: a resumed run rebuilds it exactly and refreshes on schedule."""
        return {"built_at": self.built_at, "gamma": self.gamma, "temp": self.temp,
                "unaries": None if self.unaries is None else self.unaries.to_dict()}

    def load(self, d: dict) -> None:
        self.built_at, self.gamma, self.temp = int(d["built_at"]), float(d["gamma"]), float(d["temp"])
        if d["unaries"] is not None:
            self.unaries = Unaries.from_dict(d["unaries"], "the checkpoint's narrowing unaries")
            self.mrf = build_mrf(self.table, self.unaries)

    def refresh(self, stats: LossStats, step: int, epoch: int, progress: float) -> None:
        u = stats.unaries()
        if any((c > 0).sum() == 0 for c in u.count):
            return  # not every layer measured yet: keep the previous distribution
        self.mrf, self.unaries = build_mrf(self.table, u), u
        sol = lagrangian(self.mrf, self.budget)
        self.gamma = sol.info["gamma"] if math.isfinite(sol.info["gamma"]) else 1e6
        spread = float(np.mean([np.ptp(s) for s in self.mrf.score_unary])) or 1e-3
        self.temp = self.cfg.t_start * (self.cfg.t_end / self.cfg.t_start) ** min(max(progress, 0.0), 1.0) * spread
        self.built_at = step
        if self.log_path is not None:
            margs = marginals(self.mrf, self.gamma, self.temp)
            expected = [float(np.dot(m, c)) for m, c in zip(margs, self.space.choices)]
            rec = {"step": step, "epoch": epoch, "temperature": self.temp, "gamma": self.gamma,
                   "map_widths": sol.widths, "map_ms": sol.latency, "expected_widths": expected,
                   "marginals": [np.round(m, 5).tolist() for m in margs]}
            append_line(self.log_path, rec)

    def draw(self, n: int, rng: np.random.Generator, **_) -> np.ndarray:
        return sample_configs(self.mrf, self.gamma, self.temp, n, rng)


# ---- the loop ----------------------------------------------------------------------------
def sandwich_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  configs: np.ndarray, stats: "LossStats | None" = None, world: int = 1) -> tuple[float, float]:
    """One sandwich-rule step: the widest network on the labels, the narrowest and `configs` ((n, free
    groups) width indices) distilled in place from its detached softmax; returns (widest loss, widest
    accuracy) on the batch."""
    space = model.space
    out = model(x, space.max_widths, update_bn_stats=True)
    loss_max = F.cross_entropy(out, y)
    loss_max.backward()
    soft = out.detach().softmax(1)
    base = loss_max.item()
    _soft_ce(model(x, space.min_widths, update_bn_stats=False), soft).backward()
    for idx in configs:
        o = model(x, space.widths_from_indices(idx), update_bn_stats=False)
        _soft_ce(o, soft).backward()
        if stats is not None:
            stats.add(idx, F.cross_entropy(o.detach(), y).item() - base)
    if world > 1:  # average gradients across ranks once per step
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world
    opt.step()
    opt.zero_grad(set_to_none=True)
    return base, (out.argmax(1) == y).float().mean().item()


def _soft_ce(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    return -(soft * logits.log_softmax(1)).sum(1).mean()


def _dist_info() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(_close_group)  # the group we opened; a script that calls train() need not close it
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _close_group() -> None:
    """A gloo group left open at interpreter exit can abort a rank in its teardown (SIGABRT)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic and fsynced: a temporary file renamed over the old checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, space) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}; start without --resume")
    except Exception as e:  # a torn or foreign file
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); "
                         "it may be from another tool or truncated")
    if "space_fingerprint" not in ck:
        raise ValueError(f"{path} is not a widthnas checkpoint")
    check_fingerprint(ck["space_fingerprint"], space, f"checkpoint {path}")
    return ck


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, log=print, progress: bool = True):
        cfg.check()
        cfg = with_recorded_paths(cfg)  # train_config.json and the checkpoint read the same from any directory
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.rank, self.world = _dist_info()

        def log_both(msg: str) -> None:  # the caller's log, and train.log in the run directory
            log(msg)
            if self.rank == 0:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                append_text(self.run_dir / "train.log", time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n")

        self.log = log_both
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.sampling not in ("ows", "aows"):
            raise ValueError(f"sampling {cfg.sampling!r}: choose 'ows' or 'aows'")
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"schedule {cfg.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        self.space = build_space(cfg)
        ds = load_dataset(cfg.dataset, cfg.data)
        check_fits(ds, self.space)
        self.splits = split(ds, cfg.val_fraction, cfg.seed, cfg.limit)
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.model = make_supernet(self.space)
        if cfg.weights:  # the user's model, each group's channels sorted by importance: first k = best k
            seed_supernet(self.model, load_state_file(cfg.weights))
            self.log(f"supernet seeded with {cfg.weights} (channels sorted by importance per group)")
        self.fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = self.model.to(self.device, memory_format=self.fmt)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, nesterov=True)
        self.sched = GreedyLR(self.opt, GreedyOptions.parse(cfg.greedy)) if cfg.schedule == "greedy" else None
        if self.sched is not None and self.sched.opts.every and self.world > 1:
            raise ValueError("GreedyLR every=N reads each rank's own training loss; under DDP use the "
                             "per-epoch validation reading (leave out every=)")
        self.epoch, self.step = 0, 0
        self.last = LossStats(self.space)  # last completed epoch
        self.history: list[dict] = []
        self.table, self.budget_ms, self.narrowing = None, None, None
        if cfg.sampling == "aows":
            if not cfg.profile or not cfg.budget:
                raise ValueError("aows sampling needs --profile and --budget (it narrows toward that budget)")
            self.table = load_profile(cfg.profile)
            check_fingerprint(self.table.space.fingerprint, self.space, f"profile {cfg.profile}")
            self.budget_ms = parse_budget(cfg.budget, self.table.predict(self.space.max_widths))
            check_budget(flat_mrf(self.table), self.budget_ms)  # refuse an infeasible budget now, not after the warm-up
            self.narrowing = NarrowingConfigs(self.space, self.table, self.budget_ms, cfg,
                                              self.run_dir / "narrowing.jsonl" if self.rank == 0 else None)

    # ---- state ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {"space_fingerprint": self.space.fingerprint, "space": self.space.to_dict(),
                "config": asdict(self.cfg), "epoch": self.epoch, "step": self.step,
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "last_stats": self.last.state(), "history": self.history,
                **({"scheduler": self.sched.state_dict()} if self.sched is not None else {}),
                **({"narrowing": self.narrowing.state()} if self.narrowing is not None else {})}

    def resume(self, allow: tuple[str, ...] = ()) -> None:
        """Continue from the checkpoint. `allow`: settings that may differ from the checkpoint's, for a
        deliberate warm start (AOWS narrowing continuing an OWS warm-up: sampling, budget, profile)."""
        ck = load_checkpoint(self.run_dir / CKPT, self.space)
        now = asdict(self.cfg)
        diff = {k: (v, now[k]) for k, v in ck.get("config", {}).items()
                if k in now and k not in RESUMABLE and k not in allow and not same_setting(k, v, now[k])}
        if diff:
            raise ValueError(f"{self.run_dir} was trained with other settings {diff} (checkpoint vs now); "
                             "resume with the run's own settings, or start a new run with another --out")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.epoch, self.step, self.history = ck["epoch"], ck["step"], ck["history"]
        self.last.load(ck["last_stats"])
        if self.sched is not None and "scheduler" in ck:
            self.sched.load_state_dict(ck["scheduler"])
        if self.narrowing is not None and "narrowing" in ck:
            self.narrowing.load(ck["narrowing"])
        if self.rank == 0:
            self._rewrite_records()
        self.log(f"resumed {self.run_dir} at epoch {self.epoch} (step {self.step})")

    def _rewrite_records(self) -> None:
        """Make metrics.jsonl and narrowing.jsonl agree with the checkpoint: a run killed after its
        checkpoint but before a record, or while logging an epoch it will redo, neither loses nor
        repeats a row."""
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        nar = self.run_dir / "narrowing.jsonl"
        if nar.exists():
            keep = [r for r in read_jsonl(nar, "narrowing log") if r["step"] < self.step]  # a row at the checkpoint's step came after it
            atomic_write_text(nar, "".join(json.dumps(r) + "\n" for r in keep))

    # ---- the run ---------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict:
        """Train to cfg.epochs, or stop after `stop_after` epochs of this call (as a kill would)."""
        from tqdm import tqdm

        cfg, main = self.cfg, self.rank == 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            atomic_write_text(self.run_dir / "train_config.json", json.dumps(
                {**asdict(cfg), "space_fingerprint": self.space.fingerprint, "world_size": self.world}, indent=1))
        xtr, ytr = self.splits.train
        n = len(ytr)
        steps_per_epoch = max(1, n // self.world // cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        warm = warmup_steps(total, steps_per_epoch, cfg.lr_warmup)
        narrowing = self.narrowing
        uniform = UniformConfigs(self.space)
        stop = cfg.epochs if stop_after is None else min(cfg.epochs, self.epoch + stop_after)
        while self.epoch < stop:
            e = self.epoch
            g = torch.Generator().manual_seed(cfg.seed * 100003 + e)
            rng = np.random.default_rng([cfg.seed, e, self.rank])
            perm = torch.randperm(n, generator=g)[self.rank::self.world][: steps_per_epoch * cfg.batch_size]
            stats = LossStats(self.space)
            aows_now = narrowing is not None and e >= cfg.warmup_epochs
            t0, seen, loss_sum, acc_sum = time.time(), 0, 0.0, 0.0
            bar = tqdm(range(steps_per_epoch), disable=not (self.progress and main), dynamic_ncols=True,
                       desc=f"epoch {e + 1}/{cfg.epochs} {'aows' if aows_now else 'ows'}", unit="step", leave=False)
            self.model.train()
            for s in bar:
                if aows_now and self.step - narrowing.built_at >= cfg.refresh:
                    post = max(1, (cfg.epochs - cfg.warmup_epochs) * steps_per_epoch)
                    now = LossStats(self.space).merged(stats)  # a copy: the epoch's own sum is reduced at its end
                    now.all_reduce(self.device)  # every rank narrows by the same MRF, as its checkpoint restores it
                    narrowing.refresh(self.last.merged(now), self.step, e,
                                      (self.step - cfg.warmup_epochs * steps_per_epoch) / post)
                sampler = narrowing if aows_now and narrowing.mrf is not None else uniform
                b = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                xb = augment(xtr[b], g) if cfg.augment else xtr[b]
                xb = normalize(xb, self.splits.mean, self.splits.std).contiguous(memory_format=self.fmt)
                if self.sched is not None:
                    self.sched.set_scale(ramp(self.step, warm))
                else:
                    for group in self.opt.param_groups:
                        group["lr"] = lr_at(cfg.lr, self.step, total, warm, cfg.schedule)
                xb, yb = xb.to(self.device, non_blocking=True), ytr[b].to(self.device, non_blocking=True)
                loss, acc = sandwich_step(self.model, self.opt, xb, yb, sampler.draw(cfg.n_random, rng), stats,
                                          self.world)
                self.step += 1
                if self.sched is not None:
                    self.sched.after_batch(loss)  # (every N steps: the widest network's training loss)
                seen += len(b)
                loss_sum += loss
                acc_sum += acc
                bar.set_postfix_str(f"loss {loss_sum / (s + 1):.3f} acc {acc_sum / (s + 1):.3f} "
                                    f"{seen * self.world / (time.time() - t0):.0f} img/s")
            bar.close()
            stats.all_reduce(self.device)
            if self.world > 1:  # BatchNorm running statistics saw each rank's own images: average them
                for b in self.model.buffers():
                    if b.is_floating_point():
                        dist.all_reduce(b)
                        b /= self.world
            self.last = stats
            self.epoch += 1
            if main:
                self._end_epoch(e, loss_sum / steps_per_epoch, acc_sum / steps_per_epoch,
                                seen * self.world / (time.time() - t0), aows_now, narrowing)
            if self.world > 1:
                if self.sched is not None:  # GreedyLR reads rank 0's validation loss: every rank takes its rates
                    lrs = torch.tensor(self.sched.get_last_lr(), dtype=torch.float64)
                    dist.broadcast(lrs, 0)
                    self.sched.lrs = lrs.tolist()
                dist.barrier()
        return self.history[-1] if self.history else {}

    def _end_epoch(self, e: int, loss: float, acc: float, ips: float, aows_now: bool, narrowing) -> None:
        # the supernet's forward defaults to its widest network; in eval mode no BN statistic changes
        val_acc, val_loss = accuracy(self.model, *self.splits.val, self.splits.mean, self.splits.std)
        rec = {"epoch": e + 1, "step": self.step, "train_loss": loss, "train_acc": acc, "val_acc_widest": val_acc,
               "val_loss_widest": val_loss, "images_per_s": ips, "lr": self.opt.param_groups[0]["lr"],
               "sampling": "aows" if aows_now else "ows", "time": time.time()}
        line = (f"epoch {e + 1}: train loss {loss:.3f} acc {acc:.3f} | widest val acc {val_acc:.3f} | "
                f"{ips:.0f} img/s | {rec['sampling']}")
        if aows_now and narrowing.mrf is not None:
            rec["temperature"] = narrowing.temp
            margs = marginals(narrowing.mrf, narrowing.gamma, narrowing.temp)
            ew = [float(np.dot(m, c)) for m, c in zip(margs, self.space.choices)]
            line += f" | T {narrowing.temp:.3g}, expected widths {[int(round(w)) for w in ew]}"
        if self.sched is not None:  # before the checkpoint, so a resume continues with the next epoch's rate
            self.sched.after_epoch(val_loss)
            rec["next_lr"], rec["lr_action"] = self.sched.get_last_lr()[0], self.sched.last_action
        self.history.append(rec)
        meta = {"epoch": e + 1, "sampling": rec["sampling"], "config": asdict(self.cfg),
                "space_fingerprint": self.space.fingerprint}
        self.last.unaries(meta).save(self.run_dir / "unaries.json")
        save_checkpoint(self.run_dir / CKPT, self.state())  # before its metrics row: see _rewrite_records
        append_line(self.run_dir / "metrics.jsonl", rec)
        self.log(line)


def load_train_config(run_dir: str | Path) -> TrainConfig:
    """The resolved settings a training run recorded (train_config.json); a relative path in it (older runs)
    is read against the current directory."""
    path = Path(run_dir) / "train_config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; {run_dir} is not a `widthnas train` run directory")
    saved = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("space_fingerprint", "world_size")}
    saved.setdefault("lr_warmup", 0.0)  # runs recorded before the ramp existed resume without one
    unknown = set(saved) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}")
    return TrainConfig(**saved)


def load_run(run_dir: str | Path):
    """(config, space, supernet with the checkpoint's weights, data splits) of a training run."""
    cfg = load_train_config(run_dir)
    space = build_space(cfg)
    sup = make_supernet(space)
    sup.load_state_dict(load_checkpoint(Path(run_dir) / CKPT, space)["model"])
    ds = load_dataset(cfg.dataset, cfg.data)
    check_fits(ds, space)
    return cfg, space, sup, split(ds, cfg.val_fraction, cfg.seed, cfg.limit)


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, log=print, progress: bool = True,
          stop_after: int | None = None) -> Trainer:
    """Train (or continue) a supernet in run_dir; refuses to overwrite a run without --resume."""
    run_dir = Path(run_dir)
    if (run_dir / CKPT).exists() and not resume:
        raise ValueError(f"{run_dir} already holds a training checkpoint; pass --resume to continue it, "
                         "or choose another --out")
    t = Trainer(cfg, run_dir, log, progress)
    if resume and (run_dir / CKPT).exists():
        t.resume()
    t.fit(stop_after)
    return t
