"""Compress a user's trained model under a measured latency budget: widthnas against a width multiplier
and Torch-Pruning, at equal measured latency, from the same trained weights, with the same fine-tuning.

    pip install '.[bench]'                                  # torch-pruning 1.6.1, the benchmark extra (never a runtime dependency)
    python -m widthnas.benchmarks.compress --model resnet   # README's SmallResNet; --model mbv2: a MobileNet-v2
    python -m widthnas.benchmarks.compress --model resnet --smoke   # end to end in minutes, measures nothing
    python -m widthnas.benchmarks.compress --model mbv2 --budgets 60 --ft-epochs 4 --no-curve --no-secondary
                                     # one budget again with longer fine-tuning (same base model, budgets, starts)

Steps, each kept in --out so that a killed run resumes where it stopped:
 1. trace the model (`space --from-model`), train it on the training split (validation held out) and
    test it: the base model every method is measured against;
 2. profile the traced space on this machine (latency/profile_here.py), time the base model's ONNX:
    budgets are 60 / 40 / 25 % of that (1.7x, 2.5x, 4x speed-ups);
 3. per budget, the starting network of each method, every one within the budget *on measurement*
    (onnxruntime, reference-normalised, latency/verdict.py):
      uniform8     the largest width multiplier rounded to 8 channels that fits, the user's weights sliced;
      tp_uniform   Torch-Pruning, one ratio in every layer, L1 magnitude, round_to 8, the classifier left alone;
      tp_global    the same with global ranking (max ratio 0.9 per layer, as its examples cap it);
      widthnas     `widthnas run --weights`: a supernet seeded with the user's weights (AOWS toward the
                   budget), measured unaries, held-out selection among MRF candidates, the user's weights sliced;
      widthnas_ec  the same at the baselines' compute: a short supernet (ec_* settings), and fine-tuning on
                   only as many images as leave its total CPU time equal to the baselines' mean at that budget;
      widthnas_sup widthnas's network taken from its supernet (BN recalibrated on 512 training images) instead
                   of sliced from the user's weights: does the supernet's training give fine-tuning a better start?
                   (the same network, so widthnas's measurement stands for it);
    the Torch-Pruning ratio is bisected until the exported network's measured latency fits;
 3b. the whole uniform8 curve for the plot: the user's weights sliced to multipliers 0.3-0.9, measured;
 4. fine-tune every starting network with the same protocol on paired seeds (seed s: the same data
    order and augmentation for every method), as parallel single-thread processes; test accuracy and
    negative flips against the base model; widthnas_pc: widthnas's network at the middle budget
    fine-tuned with focal distillation toward the base model (positive-congruent); widthnas_glr: widthnas's
    networks fine-tuned with GreedyLR stepped on the smoothed training loss every 20 steps, against cosine;
 5. report: docs/compress.csv (--docs), a plot of accuracy against measured latency, and the pooled
    paired difference of widthnas against the best baseline of each budget (RESULTS.md states the test).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from widthnas._io import atomic_write_text, read_json
from widthnas.benchmarks.stats import paired_diff
from widthnas.models.trace_weights import IMPORTANCE

BASELINES = ("uniform8", "tp_uniform", "tp_global")
METHODS = BASELINES + ("widthnas",)
CURVE = "uniform8_curve"  # the whole uniform8 curve (the plot), one seed
CONGRUENT = "widthnas_pc"  # widthnas's network at the middle budget, fine-tuned positive-congruently
EQUAL = "widthnas_ec"  # widthnas at the baselines' compute: a short supernet, then what is left for fine-tuning
SUPER = "widthnas_sup"  # widthnas's network fine-tuned from its supernet's weights (BN recalibrated), not the user's
GREEDY_LR = "widthnas_glr"  # widthnas's network fine-tuned with GreedyLR stepped every GLR_EVERY steps, not cosine
GLR_EVERY, GLR_WINDOW = 20, 5  # 21 readings in an epoch of 422 steps, each the mean of 20 training losses, smoothed over 5
FINE_TUNED_ALIKE = {CONGRUENT: "widthnas", GREEDY_LR: "widthnas"}  # variants fine-tuning another method's start
ROUND_TO = 8
TP_MAX_RATIO = 0.9  # Torch-Pruning's cap per layer in global pruning (its examples use 0.9 or 1.0)


@dataclass(frozen=True)
class Setup:
    """Everything that decides a result; its hash names the result files."""
    model: str = "resnet"  # resnet | mbv2 (benchmarks/compress_models.py)
    dataset: str = "fashion_mnist"
    data: str | None = None
    split_seed: int = 0  # the validation split (never the test set)
    base_epochs: int = 12  # to convergence (the base model's validation accuracy is logged per epoch)
    base_lr: float = 0.1
    base_limit: int | None = None  # training images for the base model (None: the whole training split)
    ft_epochs: int = 1  # fine-tuning, the same for every method (one pass over the whole training split)
    ft_lr: float = 0.01
    ft_limit: int | None = None  # fine-tuning images (the first of the split's training images)
    supernet_epochs: int = 2  # widthnas: supernet training from the user's weights
    supernet_lr: float = 0.02  # a seeded supernet starts trained: a fine-tuning rate, not a from-scratch one
    supernet_limit: int | None = 20000
    sampling: str = "aows"  # widthnas run's default
    unary_configs: int = 300  # widthnas run's default
    ec_supernet_epochs: int = 1  # widthnas_ec: its supernet, unaries and selection must leave room for fine-tuning
    ec_supernet_limit: int = 3000
    ec_unary_configs: int = 100
    profile_networks: int = 400
    heldout_networks: int = 100
    budgets: tuple[int, ...] = (60, 40, 25)  # % of the base model's measured latency
    only: tuple[int, ...] = ()  # the budgets this run starts and fine-tunes (empty: all); the budget file is all of them
    methods: tuple[str, ...] = ()  # the methods this run fine-tunes (empty: all); every start is still made and timed
    search_version: int = 2  # widthnas's search, in its starts' names: 1 kept the first candidate measured within,
    # 2 re-aims after measuring (829fd5f); a start made by another search is not reused (its supernet is)
    seeds: int = 5
    curve: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the uniform8 curve's multipliers (seed 0 only)
    importance: str = IMPORTANCE  # which channels widthnas (and uniform8) keep: widthnas's criterion, not a choice here
    secondary: bool = True  # also fine-tune widthnas_pc, widthnas_sup and widthnas_glr (the ResNet run answered them)

    def key(self, *fields: str) -> str:
        import hashlib

        d = asdict(self)
        d = {f: d[f] for f in fields} if fields else d
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


SMOKE = dict(base_epochs=1, base_limit=2000, ft_epochs=1, ft_limit=1000, supernet_epochs=1, supernet_limit=1000,
             unary_configs=20, ec_supernet_limit=300, ec_unary_configs=10, profile_networks=40, heldout_networks=10, budgets=(60, 40), seeds=2, curve=(0.5,))


def _json(path: Path, d: dict) -> dict:
    atomic_write_text(path, json.dumps(d, indent=1, default=float))
    return d


# ---- 1. the base model ---------------------------------------------------------------------------------------
def load_splits(s: Setup):
    from widthnas.nas.data import load_dataset, split

    return split(load_dataset(s.dataset, s.data, download=False), 0.1, s.split_seed)


def first(splits, n: int | None):
    """The splits with only the first n training images; normalisation stays the whole split's."""
    if not n:
        return splits
    x, y = splits.train
    return replace(splits, train=(x[:n], y[:n]))


def make_model(s: Setup) -> torch.nn.Module:
    from widthnas.models.trace import load_factory

    from .compress_models import MODELS

    return load_factory(MODELS[s.model])[0]


class Bench:
    def __init__(self, setup: Setup, out: str | Path, workers: int = 2, log=print):
        self.s, self.out, self.workers, self.log = setup, Path(out), workers, log
        self.out.mkdir(parents=True, exist_ok=True)
        self._splits = None

    @property
    def splits(self):
        if self._splits is None:
            self._splits = load_splits(self.s)
        return self._splits

    def space(self):
        from widthnas.models.space import GraphSpace
        from widthnas.models.trace import trace_model

        from .compress_models import MODELS

        p = self.out / "space.json"
        if not p.exists():
            trace_model(make_model(self.s), (1, 28, 28), f"compress_{self.s.model}", MODELS[self.s.model]).save(p)
        return GraphSpace.load(p)

    def base(self) -> dict:
        """The user's trained model: state_dict in base.pt, its accuracies in base.json."""
        from widthnas.nas.evaluate import accuracy
        from widthnas.nas.finetune import train_plain

        s = self.s
        k = s.key("model", "dataset", "data", "split_seed", "base_epochs", "base_lr", "base_limit")
        p, pt = self.out / f"base_{k}.json", self.out / f"base_{k}.pt"
        if p.exists():
            return read_json(p, "base model record")
        torch.manual_seed(s.split_seed)
        net, sp = make_model(s), self.splits
        t0, c0 = time.time(), time.process_time()
        hist = train_plain(net, first(sp, s.base_limit), s.base_epochs, lr=s.base_lr, seed=10_000, desc="base",
                           log=self.log, checkpoint=self.out / f"base_{k}.ckpt")  # a killed run resumes its epochs
        acc, _ = accuracy(net, *sp.test, sp.mean, sp.std)
        torch.save(net.state_dict(), pt)
        self.log(f"base model: test acc {acc:.4f} after {s.base_epochs} epochs ({(time.time() - t0) / 60:.1f} min)")
        return _json(p, {"state": str(pt), "test_acc": acc, "history": hist, "minutes": (time.time() - t0) / 60,
                         "cpu_min": (time.process_time() - c0) / 60})

    def base_state(self) -> dict:
        return torch.load(self.base()["state"], map_location="cpu", weights_only=True)

    # ---- 2. latency ----------------------------------------------------------------------------------------
    def table(self):
        from widthnas.latency.backends import OrtBackend
        from widthnas.latency.profile_here import HereSettings, profile_here
        from widthnas.latency.registry import load_profile
        from widthnas.latency.standalone_runner import Protocol

        d = self.out / f"profile_{self.s.key('model', 'profile_networks', 'heldout_networks')}"
        p = d / "profile.json"
        if not p.exists():
            d.mkdir(exist_ok=True)
            space = self.space()
            settings = HereSettings(self.s.profile_networks, self.s.heldout_networks, remeasure=0, ladder_rungs=8)
            profile_here(space, d, OrtBackend(space), Protocol(5, 10.0), settings, self.log)
        return load_profile(str(p))

    def measure(self, net: torch.nn.Module, name: str) -> float:
        """One measured latency (ms at the profile's host speed) of `net` exported to ONNX."""
        from widthnas.nas.export import export_onnx, measure_exported

        path = self.out / "onnx" / f"{name}.onnx"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            export_onnx(net.eval(), self.space(), path)
        return measure_exported(path, self.table())["normalised_ms"]

    def verdict(self, net: torch.nn.Module, name: str, budget_ms: float) -> dict:
        from widthnas.latency.verdict import budget_verdict

        return budget_verdict(lambda: self.measure(net, name), budget_ms)

    def budgets(self) -> dict:
        """{pct: budget ms}, from the base model's measured latency (mean of a verdict's timings)."""
        p = self.out / f"budgets_{self.s.key('model', 'budgets', 'profile_networks', 'heldout_networks')}.json"
        if p.exists():
            return read_json(p, "budgets")
        from widthnas.models.trace_weights import user_network

        base = user_network(self.space(), self.base_state())
        v = self.verdict(base, "base", 1e9)  # the verdict's repeated timings, read for their mean
        ms = v["mean_ms"]
        self.log(f"base model: {ms:.4f} ms measured (± {v['half_width_pct']:.1f} %)")
        return _json(p, {"base_ms": ms, "base_verdict": v,
                         "budget_ms": {str(b): b / 100 * ms for b in self.s.budgets}})

    # ---- 3. starting networks ------------------------------------------------------------------------------
    def start_key(self, method: str) -> str:
        """What names a start: the settings that decide it, and for widthnas's the search's version."""
        return self.s.key(*_START_FIELDS[method], *(("search_version",) if method in SEARCHED else ()))

    def start(self, method: str, pct: int) -> dict:
        """The starting network of `method` at budget pct: saved whole (torch.save) with its record."""
        key = self.start_key(method)
        rec_p = self.out / "start" / f"{method}_{pct}_{key}.json"
        if rec_p.exists():
            return read_json(rec_p, "starting network")
        rec_p.parent.mkdir(exist_ok=True)
        budget = self.budgets()["budget_ms"][str(pct)]
        t0 = time.process_time()
        from widthnas.mrf import InfeasibleBudget
        from widthnas.nas.uniform8 import NoMultiplierFits

        try:
            if method == "uniform8":
                net, info = self._uniform8(budget, pct)
            elif method.startswith("tp_"):
                net, info = self._torch_pruning(method, budget, pct)
            elif method in ("widthnas", EQUAL):
                net, info = self._widthnas(budget, pct, equal=method == EQUAL)
            elif method == SUPER:
                net, info = self._from_supernet(pct)
            else:
                raise ValueError(method)
        except (NoMultiplierFits, InfeasibleBudget) as e:  # a method that cannot meet the budget: a result, kept
            self.log(f"{method} at {pct} %: no network within {budget:.4f} ms ({e})")
            return _json(rec_p, {"method": method, "budget_pct": pct, "budget_ms": budget, "budget_met": False,
                                 "failure": str(e), "module": None, "measured_ms": None,
                                 "select_cpu_min": (time.process_time() - t0) / 60})
        # widthnas_sup is widthnas's architecture: its measurement stands (no timing while fine-tunings run)
        v = self.start("widthnas", pct)["verdict"] if method == SUPER else self.verdict(net, f"{method}_{pct}_{key}",
                                                                                          budget)
        pt = rec_p.with_suffix(".pt")
        torch.save(net, pt)
        rec = {"method": method, "budget_pct": pct, "budget_ms": budget, "verdict": v, "measured_ms": v["mean_ms"],
               "budget_met": v["verdict"] == "within", "module": str(pt), "params": sum(t.numel() for t in net.parameters()),
               "select_cpu_min": (time.process_time() - t0) / 60, **info}
        self.log(f"{method} at {pct} %: {v['mean_ms']:.4f} ms measured against {budget:.4f} ({v['verdict']})")
        return _json(rec_p, rec)

    def _uniform8(self, budget: float, pct: int):
        from widthnas.models.trace_weights import user_network
        from widthnas.nas.uniform8 import uniform8

        space, sd = self.space(), self.base_state()
        dense = space.with_dense_choices(ROUND_TO)
        nets = {}

        def net(widths):
            k = tuple(widths)
            nets.setdefault(k, user_network(dense, sd, list(widths), criterion=self.s.importance))
            return nets[k]

        name = lambda w: "u8_" + "_".join(map(str, w))  # noqa: E731
        u = uniform8(space, budget, lambda w: self.measure(net(w), name(w)),
                     lambda w: self.verdict(net(w), name(w), budget))
        return net(u["widths"]), {"multiplier": u["multiplier"], "widths": u["widths"]}

    def curve_start(self, mult: float) -> dict:
        """A point of the whole uniform8 curve: the user's weights sliced to mult x base rounded to 8
        channels, measured (its verdict's mean) and saved like a starting network; fine-tuned on seed 0."""
        from widthnas.models.trace_weights import user_network

        key = self.s.key(*_START_FIELDS[CURVE])
        rec_p = self.out / "start" / f"{CURVE}_{round(100 * mult)}_{key}.json"
        if rec_p.exists():
            return read_json(rec_p, "curve point")
        rec_p.parent.mkdir(exist_ok=True)
        space = self.space()
        widths = space.multiplier_widths(mult, ROUND_TO)
        net = user_network(space.with_dense_choices(ROUND_TO), self.base_state(), widths, criterion=self.s.importance)
        v = self.verdict(net, "u8_" + "_".join(map(str, widths)), 1e9)  # its repeated timings, for their mean
        pt = rec_p.with_suffix(".pt")
        torch.save(net, pt)
        self.log(f"uniform8 curve x{mult}: {v['mean_ms']:.4f} ms measured")
        return _json(rec_p, {"method": CURVE, "multiplier": mult, "widths": widths, "measured_ms": v["mean_ms"],
                             "verdict": v, "module": str(pt)})

    def _torch_pruning(self, method: str, budget: float, pct: int):
        """Bisect Torch-Pruning's ratio: the least pruning whose exported network measures within budget."""
        lo, hi, best = 0.0, 0.97, None  # lo: too slow (or untried), hi: fits
        for _ in range(9):
            mid = (lo + hi) / 2
            net = self._pruned(method, mid)
            if self.measure(net, f"{method}_{mid:.5f}") <= budget:
                hi, best = mid, net
            else:
                lo = mid
        ratio = hi
        if best is None:
            best = self._pruned(method, hi)
        while self.verdict(best, f"{method}_{ratio:.5f}", budget)["verdict"] != "within" and ratio < 0.97:
            ratio = min(0.97, ratio + 0.02)
            best = self._pruned(method, ratio)
        return best, {"ratio": ratio, "channels": _conv_channels(best)}

    def _pruned(self, method: str, ratio: float) -> torch.nn.Module:
        import torch_pruning as tp

        from .compress_models import classifier

        model = make_model(self.s)
        model.load_state_dict(self.base_state())
        model.eval()
        imp = tp.importance.MagnitudeImportance(p=1)
        pruner = tp.pruner.MetaPruner(model, torch.randn(1, 1, 28, 28), importance=imp, pruning_ratio=ratio,
                                      global_pruning=method == "tp_global", max_pruning_ratio=TP_MAX_RATIO,
                                      ignored_layers=[classifier(model)], round_to=ROUND_TO)
        pruner.step()
        return model

    def _widthnas(self, budget: float, pct: int, equal: bool = False):
        from widthnas.models.trace_weights import user_network
        from widthnas.nas.export import network_measurer
        from widthnas.nas.search import aim, search
        from widthnas.nas.selection import cached_measured_unaries
        from widthnas.nas.train import CKPT, TrainConfig, Trainer, load_checkpoint, make_supernet

        s, space, table = self.s, self.space(), self.table()
        if s.importance != IMPORTANCE:
            raise ValueError(f"importance {s.importance!r}: widthnas run seeds its supernet with its own criterion "
                             f"({IMPORTANCE!r}) and its fine-tuning must start from the same channels; set "
                             f"Setup.importance to {IMPORTANCE!r}")
        name = EQUAL if equal else "widthnas"
        epochs, limit, configs = ((s.ec_supernet_epochs, s.ec_supernet_limit, s.ec_unary_configs) if equal
                                  else (s.supernet_epochs, s.supernet_limit, s.unary_configs))
        d = self.out / f"supernet{'_ec' if equal else ''}_{pct}_{s.key(*_START_FIELDS[name])}"
        state = d / "base_weights.pt"
        if not state.exists():
            d.mkdir(exist_ok=True)
            torch.save(self.base_state(), state)
        t0 = time.process_time()
        tc = TrainConfig(space=str(self.out / "space.json"), dataset=s.dataset, data=s.data, limit=limit,
                         epochs=epochs, lr=s.supernet_lr, sampling=s.sampling, budget=f"{budget}ms",
                         profile=str(self._profile_path()), seed=s.split_seed, weights=str(state))
        t = Trainer(tc, d, self.log, progress=False)
        if (d / CKPT).exists():
            t.resume()
        t.fit()
        sup = make_supernet(space)
        sup.load_state_dict(load_checkpoint(d / CKPT, space)["model"])
        sp = self.splits
        unaries = cached_measured_unaries(sup, sp, d / "unaries_measured.json", configs, log=self.log)
        _, _, target, margin_pct, _ = aim(table, f"{budget!r}ms", "auto")  # as widthnas run aims
        measure = network_measurer(sup, table, d / "candidates")
        sol, _, _ = search(table, unaries, "select", target, budget, sup, sp, measure, self.log)
        return user_network(space, self.base_state(), sol.widths, criterion=s.importance), {
            "widths": list(sol.widths), "margin_pct": margin_pct, "search_cpu_min": (time.process_time() - t0) / 60,
            "supernet_epochs": epochs, "supernet_limit": limit, "unary_configs": configs}

    def _from_supernet(self, pct: int):
        """widthnas's chosen network cut from its supernet (the one `_widthnas` trained), BN recalibrated."""
        from widthnas.nas.evaluate import calibrated_network
        from widthnas.nas.train import CKPT, load_checkpoint, make_supernet

        t0, wn = time.process_time(), self.start("widthnas", pct)
        space, w = self.space(), wn["widths"]
        ckpt = self.out / f"supernet_{pct}_{self.s.key(*_START_FIELDS['widthnas'])}" / CKPT
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt} is missing, though widthnas's start at {pct} % exists: remove "
                                    f"{self.out / 'start'}/widthnas_{pct}_*.json so that widthnas runs again")
        sup = make_supernet(space)
        sup.load_state_dict(load_checkpoint(ckpt, space)["model"])
        net = calibrated_network(sup, w, self.splits).eval()
        # its cost: widthnas's whole selection, then this
        return net, {"widths": w, "supernet": str(ckpt),
                     "select_cpu_min": wn["select_cpu_min"] + (time.process_time() - t0) / 60}

    def _profile_path(self) -> Path:
        self.table()
        return self.out / f"profile_{self.s.key('model', 'profile_networks', 'heldout_networks')}" / "profile.json"

    # ---- 4. fine-tuning ------------------------------------------------------------------------------------
    @property
    def run_budgets(self) -> tuple[int, ...]:
        return self.s.only or self.s.budgets

    def jobs(self) -> list[tuple[str, int, int]]:
        mid = sorted(self.run_budgets)[len(self.run_budgets) // 2]
        seeds, budgets = range(self.s.seeds), self.run_budgets
        secondary = ([(CONGRUENT, mid, seed) for seed in seeds]
                     + [(SUPER, b, seed) for b in budgets for seed in seeds]
                     + [(GREEDY_LR, b, seed) for b in budgets for seed in seeds]) if self.s.secondary else []
        jobs = ([(m, b, seed) for b in budgets for m in METHODS for seed in seeds] + secondary
                + [(EQUAL, b, seed) for b in budgets for seed in seeds]  # once the others' CPU time is known
                + [(CURVE, round(100 * m), 0) for m in self.s.curve])  # last: only the plot needs them
        return [j for j in jobs if not self.s.methods or j[0] in self.s.methods]

    def met(self, method: str, pct: int) -> bool:
        """Did `method`'s starting network at pct measure within the budget? Only those are fine-tuned and
        compared: a network over the budget is not an answer to the user's question."""
        if method == SUPER and not self.met("widthnas", pct):  # widthnas's network: none within, nothing to cut
            return False
        return bool(self.start(FINE_TUNED_ALIKE.get(method, method), pct)["budget_met"])

    def equal_images(self, pct: int, done: dict) -> int | None:
        """widthnas_ec's fine-tuning images at budget pct: its selection's CPU time plus its fine-tuning's equals
        the baselines' mean (selection + fine-tuning); the rate (CPU s per image) is widthnas's own fine-tuning
        at that budget. None until those records exist."""
        seeds = range(self.s.seeds)
        if not all((m, pct, seed) in done for m in METHODS for seed in seeds):
            return None
        fit = [m for m in BASELINES if self.met(m, pct)]
        if not fit or not self.met("widthnas", pct):
            return 0  # no baseline's compute to equal, or no fine-tuning rate of widthnas's: nothing to spend
        target = np.mean([done[(m, pct, seed)]["cpu_s"] + 60 * self.start(m, pct)["select_cpu_min"]
                          for m in fit for seed in seeds])  # CPU s
        images = len(first(self.splits, self.s.ft_limit).train[1]) * self.s.ft_epochs
        rate = np.mean([done[("widthnas", pct, seed)]["cpu_s"] for seed in seeds]) / images  # CPU s per image
        left = target - 60 * self.start(EQUAL, pct)["select_cpu_min"]
        return max(0, int(left / rate))

    def start_of(self, method: str, pct: int) -> dict:
        """The starting-network record of a fine-tuning job (a curve point's pct is its multiplier x 100)."""
        return self.curve_start(pct / 100) if method == CURVE else self.start(FINE_TUNED_ALIKE.get(method, method), pct)

    def finetune_all(self) -> dict:
        """Every job whose inputs are known, in rounds: widthnas_ec's wait for the others' CPU times."""
        done: dict = {}
        while self._finetune_round(done):
            pass
        missing = [j for j in self.jobs() if j not in done]
        if missing:
            raise RuntimeError(f"fine-tuning jobs never became ready: {missing}")
        return done

    def _finetune_round(self, done: dict) -> bool:
        ft_key = self.s.key("ft_epochs", "ft_lr", "ft_limit")
        todo = []
        for m, b, seed in self.jobs():
            if (m, b, seed) in done:
                continue
            images = None
            if m == EQUAL:
                images = self.equal_images(b, done)
                if images is None:
                    continue
            start = self.start_of(m, b)
            if m != CURVE and not self.met(m, b):
                done[(m, b, seed)] = {"method": m, "budget_pct": b, "seed": seed, "skipped": "over the budget"}
                continue
            tail = "" if images is None else f"_n{images}"
            p = self.out / "ft" / f"{m}_{b}_s{seed}_{ft_key}_{Path(start['module']).stem.split('_')[-1]}{tail}.json"
            if p.exists():
                done[(m, b, seed)] = read_json(p, "fine-tuning record")
            else:
                todo.append((m, b, seed, start["module"], str(p), images))
        if todo:
            (self.out / "ft").mkdir(exist_ok=True)
            self.log(f"fine-tuning {len(todo)} networks ({len(done)} done before), {self.workers} x 1 thread")
            t0 = time.time()
            ctx = mp.get_context("spawn")
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            with ctx.Pool(self.workers, initializer=_init, initargs=(self.s, self.base()["state"])) as pool:
                for k, rec in enumerate(pool.imap_unordered(_finetune_one, todo), 1):
                    done[(rec["method"], rec["budget_pct"], rec["seed"])] = rec
                    el = time.time() - t0
                    self.log(f"  {k}/{len(todo)} {rec['method']} {rec['budget_pct']} % seed {rec['seed']}: "
                             f"acc {rec['test_acc']:.4f}, NFR {rec['nfr']:.4f} ({rec['seconds']:.0f} s); "
                             f"ETA {el / k * (len(todo) - k) / 60:.0f} min")
        return bool(todo)  # another round only after one that ran something (it may have readied widthnas_ec)

    # ---- 5. report -----------------------------------------------------------------------------------------
    def report(self, docs: str | None = None) -> list[dict]:
        res = self.finetune_all()
        base, budgets = self.base(), self.budgets()
        rows, pooled, pooled_ec, unpaired = [], [], [], []
        seeds = range(self.s.seeds)
        for b in self.run_budgets:
            fine = [m for m in METHODS + (EQUAL,) if self.met(m, b)  # fine-tuned: their starts met the budget
                    and (not self.s.methods or m in self.s.methods)]
            accs = {m: [res[(m, b, s)]["test_acc"] for s in seeds] for m in fine}
            fit = [m for m in BASELINES if m in fine]
            best = max(fit, key=lambda m: np.mean(accs[m])) if fit else ""  # only a baseline within the budget
            for m in (x for x in METHODS + (EQUAL, CONGRUENT, SUPER, GREEDY_LR) if (x, b, 0) in res):  # those run
                st = self.start_of(m, b)
                row = {"model": self.s.model, "budget_pct": b, "method": m, "best_baseline": best or "none within",
                       "measured_ms": st["measured_ms"] if st["measured_ms"] is not None else "",
                       "budget_ms": st["budget_ms"], "budget_met": st["budget_met"]}
                if "skipped" in res[(m, b, 0)]:  # over the budget (or no network at all): not fine-tuned, no accuracy
                    rows.append({**row, "acc_mean": "", "acc_std": "", "nfr_mean": "", "diff_vs_best_baseline": "",
                                 "ci_low": "", "ci_high": "", "cpu_min": st["select_cpu_min"]})
                    continue
                a = [res[(m, b, s)]["test_acc"] for s in seeds]
                nfr = [res[(m, b, s)]["nfr"] for s in seeds]
                ft_cpu = np.mean([res[(m, b, s)]["cpu_s"] for s in seeds]) / 60
                d = paired_diff(a, accs[best]) if best and m != best else None
                rows.append({**row, "acc_mean": np.mean(a), "acc_std": np.std(a, ddof=1), "nfr_mean": np.mean(nfr),
                             "diff_vs_best_baseline": d["diff"] if d else (0.0 if best else ""),
                             "ci_low": d["ci_low"] if d else (0.0 if best else ""),
                             "ci_high": d["ci_high"] if d else (0.0 if best else ""),
                             "cpu_min": ft_cpu + st["select_cpu_min"]})
            if best and "widthnas" in accs:
                pooled += [x - y for x, y in zip(accs["widthnas"], accs[best])]
                if EQUAL in accs:
                    pooled_ec += [x - y for x, y in zip(accs[EQUAL], accs[best])]
            else:  # one side has no network within the budget: nothing to pair, said in the summary
                unpaired.append({"budget_pct": b, "widthnas_met": "widthnas" in accs, "baselines_met": fit})
        if unpaired:
            self.log(f"not paired (a side has no network within the budget): {unpaired}")
        p = paired_diff(pooled, [0.0] * len(pooled)) if pooled else {"diff": float("nan"), "ci_low": float("nan"),
                                                                     "ci_high": float("nan"), "n": 0}
        p_ec = (paired_diff(pooled_ec, [0.0] * len(pooled_ec)) if pooled_ec  # secondary: the stated test is p
                else {"diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0})
        summary = {"setup": asdict(self.s), "base": {k: base[k] for k in ("test_acc", "minutes", "cpu_min")},
                   "base_ms": budgets["base_ms"], "pooled_vs_best_baseline": p, "pooled_ec_vs_best_baseline": p_ec,
                   "unpaired_budgets": unpaired}
        mid = sorted(self.run_budgets)[len(self.run_budgets) // 2]
        if (CONGRUENT, mid, 0) in res and "skipped" not in res[(CONGRUENT, mid, 0)]:  # positive-congruent against plain fine-tuning of the same network
            pc = [res[(CONGRUENT, mid, s)] for s in range(self.s.seeds)]
            plain = [res[("widthnas", mid, s)] for s in range(self.s.seeds)]
            summary["congruent_vs_plain"] = {
                "budget_pct": mid, "acc": paired_diff([r["test_acc"] for r in pc], [r["test_acc"] for r in plain]),
                "nfr": paired_diff([r["nfr"] for r in pc], [r["nfr"] for r in plain])}
        for m, name in ((SUPER, "supernet_start_vs_user_start"), (GREEDY_LR, "greedylr_vs_cosine")):  # secondary
            fine = [b for b in self.run_budgets if (m, b, 0) in res and "skipped" not in res[(m, b, 0)]]
            if fine:
                pairs = [(res[(m, b, s)]["test_acc"], res[("widthnas", b, s)]["test_acc"]) for b in fine for s in seeds]
                summary[name] = paired_diff([x for x, _ in pairs], [y for _, y in pairs])
        summary["uniform8_curve"] = [{"multiplier": m, "measured_ms": self.curve_start(m)["measured_ms"],
                                      "test_acc": res[(CURVE, round(100 * m), 0)]["test_acc"]}
                                     for m in self.s.curve if (CURVE, round(100 * m), 0) in res]
        _json(self.out / "summary.json", summary)
        for m, q in (("widthnas", p), (EQUAL, p_ec)):
            rows.append({"model": self.s.model, "budget_pct": "pooled", "method": m, "acc_mean": "",
                         "acc_std": "", "nfr_mean": "", "best_baseline": "best per budget",
                         "diff_vs_best_baseline": q["diff"], "ci_low": q["ci_low"], "ci_high": q["ci_high"],
                         "measured_ms": "", "budget_ms": "", "budget_met": "", "cpu_min": ""})
        text = _csv(rows)
        atomic_write_text(self.out / "compress.csv", text)
        self._plot(rows, base, budgets, res)
        if docs:
            _merge_csv(Path(docs), rows, self.s.model, partial=bool(self.s.only or self.s.methods))
        self.log(text)
        self.log(f"base model {base['test_acc']:.4f}, {budgets['base_ms']:.4f} ms; pooled widthnas - best baseline "
                 f"{100 * p['diff']:+.2f} [{100 * p['ci_low']:+.2f}, {100 * p['ci_high']:+.2f}] points over "
                 f"{p['n']} (budget, seed) pairs; at equal compute (widthnas_ec, secondary) {100 * p_ec['diff']:+.2f} "
                 f"[{100 * p_ec['ci_low']:+.2f}, {100 * p_ec['ci_high']:+.2f}]")
        return rows

    def _plot(self, rows: list[dict], base: dict, budgets: dict, res: dict) -> None:
        from widthnas._io import atomic_savefig, pyplot

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for m in METHODS + (EQUAL, CONGRUENT):
            r = [x for x in rows if x["method"] == m and x["budget_pct"] != "pooled" and x["acc_mean"] != ""]
            if r:
                ax.errorbar([x["measured_ms"] for x in r], [100 * x["acc_mean"] for x in r],
                            yerr=[100 * x["acc_std"] for x in r], marker="o", ls="-" if m in METHODS + (EQUAL,) else "none",
                            capsize=3, label=m)
        curve = sorted((self.curve_start(m)["measured_ms"], 100 * res[(CURVE, round(100 * m), 0)]["test_acc"])
                       for m in self.s.curve if (CURVE, round(100 * m), 0) in res)
        if curve:
            ax.plot(*zip(*curve, (budgets["base_ms"], 100 * base["test_acc"])), color="0.5", lw=1, marker=".",
                    label="uniform8 curve (seed 0)")
        ax.plot([budgets["base_ms"]], [100 * base["test_acc"]], "k*", ms=12, label="base model")
        for b, ms in budgets["budget_ms"].items():
            ax.axvline(ms, color="0.8", ls="--", lw=0.8)
        ax.set_xlabel("measured latency (ms, onnxruntime, reference-normalised)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{self.s.model}: fine-tuned {self.s.ft_epochs} epochs, {self.s.seeds} paired seeds")
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic_savefig(fig, self.out / "compress.png")
        plt.close(fig)


# which settings decide each method's starting network (its file name carries their hash)
_COMMON = ("model", "dataset", "data", "split_seed", "base_epochs", "base_lr", "base_limit", "budgets",
           "profile_networks", "heldout_networks")
_SLICED = _COMMON + ("importance",)  # the methods that slice the user's weights by widthnas's importance
_START_FIELDS = {"uniform8": _SLICED, "tp_uniform": _COMMON, "tp_global": _COMMON, CURVE: _SLICED,
                 "widthnas": _SLICED + ("supernet_epochs", "supernet_lr", "supernet_limit", "sampling", "unary_configs"),
                 EQUAL: _SLICED + ("ec_supernet_epochs", "supernet_lr", "ec_supernet_limit", "sampling",
                                   "ec_unary_configs")}
_START_FIELDS[SUPER] = _START_FIELDS["widthnas"]  # widthnas's network from its supernet: decided by the same
SEARCHED = ("widthnas", EQUAL, SUPER)  # starts chosen by widthnas's search (named with Setup.search_version)

_W: dict = {}


def _init(setup: Setup, base_state: str) -> None:
    torch.set_num_threads(1)
    from widthnas.nas.flips import torch_predictions

    sp = load_splits(setup)
    base = make_model(setup)
    base.load_state_dict(torch.load(base_state, map_location="cpu", weights_only=True))
    base.eval()
    _W.update(setup=setup, splits=sp, base=base, base_pred=torch_predictions(base, sp.test[0], sp.mean, sp.std))


def _finetune_one(job: tuple[str, int, int, str, str, int | None]) -> dict:
    """One fine-tuning; images (widthnas_ec): that many of the training images, 0: none (its selection spent all)."""
    from widthnas.nas.data import normalize
    from widthnas.nas.flips import congruent_loss, flip_report, torch_predictions
    from widthnas.nas.evaluate import accuracy
    from widthnas.nas.finetune import train_plain

    method, pct, seed, module, out, images = job
    s, sp = _W["setup"], _W["splits"]
    net = torch.load(module, map_location="cpu", weights_only=False)  # our own file: a pickled module
    t0, c0 = time.time(), time.process_time()
    kw = {}
    if method == CONGRUENT:
        base = _W["base"]

        def old(images):
            with torch.no_grad():
                return base(normalize(images, sp.mean, sp.std))

        kw["loss_fn"] = congruent_loss(old, 1.0)
    elif method == GREEDY_LR:
        from widthnas.nas.greedylr import GreedyOptions

        kw.update(schedule="greedy", greedy=GreedyOptions(every=GLR_EVERY, window=GLR_WINDOW))
    torch.manual_seed(seed)
    if images is None or images >= 128:  # fewer than one batch: nothing to fine-tune
        train_plain(net, first(sp, s.ft_limit if images is None else images // s.ft_epochs or 1), s.ft_epochs,
                    lr=s.ft_lr, seed=seed, log=lambda *_: None, validate_each_epoch=False, **kw)
    acc, _ = accuracy(net, *sp.test, sp.mean, sp.std)
    flips = flip_report(sp.test[1], _W["base_pred"], torch_predictions(net, sp.test[0], sp.mean, sp.std), 10)
    rec = {"method": method, "budget_pct": pct, "seed": seed, "test_acc": acc, "nfr": flips["nfr"],
           "seconds": time.time() - t0, "cpu_s": time.process_time() - c0, "start": module, "ft_images": images}
    atomic_write_text(Path(out), json.dumps(rec))
    return rec


def _conv_channels(net: torch.nn.Module) -> list[int]:
    return [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


FIELDS = ("model", "budget_pct", "method", "acc_mean", "acc_std", "nfr_mean", "best_baseline", "diff_vs_best_baseline",
          "ci_low", "ci_high", "measured_ms", "budget_ms", "budget_met", "cpu_min")


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    for r in rows:
        w.writerow([_fmt(r[f]) for f in FIELDS])
    return buf.getvalue()


def _merge_csv(path: Path, rows: list[dict], model: str, partial: bool = False) -> None:
    """docs/compress.csv holds every model: a whole run replaces its model's rows; a partial one (some budgets
    or methods) only the (model, budget, method) rows it wrote, keeping those it left out."""
    keep = []
    if path.exists():
        mine = {(model, str(r["budget_pct"]), r["method"]) for r in rows}
        keep = [r for r in csv.DictReader(io.StringIO(path.read_text()))
                if r["model"] != model or (partial and (r["model"], r["budget_pct"], r["method"]) not in mine)]
    atomic_write_text(path, _csv(keep + rows))


STEPS = ("base", "profile", "budgets", "start", "curve", "finetune", "report")  # "curve" times the uniform8 curve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("resnet", "mbv2"), default="resnet")
    p.add_argument("--out", help="default: runs/compress_<model>[_smoke]")
    p.add_argument("--smoke", action="store_true", help="tiny settings: runs every step in minutes, measures nothing")
    p.add_argument("--workers", type=int, default=2, help="single-thread fine-tuning processes")
    p.add_argument("--seeds", type=int)
    p.add_argument("--base-epochs", type=int)
    p.add_argument("--ft-epochs", type=int)
    p.add_argument("--ft-limit", type=int)
    p.add_argument("--until", choices=STEPS, default="report",
                   help="stop after this step (e.g. 'start' while the machine must stay quiet for timing)")
    p.add_argument("--docs", help="merge the rows into this CSV, e.g. docs/compress.csv")
    p.add_argument("--budgets", help="start and fine-tune only these budgets, e.g. 60 (of the setup's 60,40,25)")
    p.add_argument("--no-curve", action="store_true", help="skip the uniform8 curve (the plot's 7 extra fine-tunings)")
    p.add_argument("--methods", help=f"fine-tune only these methods, e.g. widthnas,tp_global (of {','.join(METHODS + (EQUAL,))}); "
                   "the best baseline is then the best of those given; no curve and no secondary variants")
    p.add_argument("--no-secondary", action="store_true",
                   help="skip widthnas_pc, widthnas_sup and widthnas_glr (45 of the 117 fine-tunings)")
    a = p.parse_args(argv)
    s = Setup(model=a.model, secondary=not a.no_secondary, **(SMOKE if a.smoke else {}))
    for f in ("seeds", "base_epochs", "ft_epochs", "ft_limit"):
        v = getattr(a, f)
        if v is not None:
            if v <= 0:
                p.error(f"--{f.replace('_', '-')} {v}: give a positive number")
            s = replace(s, **{f: v})
    if a.budgets:
        try:
            only = tuple(dict.fromkeys(int(x) for x in a.budgets.split(",")))  # "60,60": one budget, once
        except ValueError:
            p.error(f"--budgets {a.budgets!r}: give budgets as integers separated by commas, e.g. 60,25")
        bad = [x for x in only if x not in s.budgets]
        if bad:
            p.error(f"--budgets {a.budgets}: {bad} not among the setup's budgets {list(s.budgets)}")
        s = replace(s, only=only)
    if a.methods:
        methods = tuple(dict.fromkeys(m.strip() for m in a.methods.split(",")))
        bad = [m for m in methods if m not in METHODS + (EQUAL,)]
        if bad or "widthnas" not in methods or not set(methods) & set(BASELINES):
            p.error(f"--methods {a.methods}: give widthnas and at least one baseline among "
                    f"{', '.join(METHODS + (EQUAL,))}" + (f" ({bad} unknown)" if bad else ""))
        if EQUAL in methods and not set(METHODS) <= set(methods):
            p.error(f"--methods {a.methods}: {EQUAL} is held to the mean CPU time of every baseline; list all of "
                    f"{', '.join(METHODS)} with it")
        s = replace(s, methods=methods, curve=())
    if a.no_curve:
        s = replace(s, curve=())
    if a.workers < 1:
        p.error(f"--workers {a.workers}: give at least 1")
    import importlib.util

    if importlib.util.find_spec("torch_pruning") is None:
        p.error("torch-pruning is not installed: pip install torch-pruning (a benchmark extra, not a widthnas dependency)")
    out = a.out or f"runs/compress_{a.model}{'_smoke' if a.smoke else ''}"
    b = Bench(s, out, a.workers)
    torch.set_num_threads(2)
    for step in STEPS:
        if step == "base":
            b.base()
        elif step == "profile":
            b.table()
        elif step == "budgets":
            b.budgets()
        elif step == "start":
            for pct in b.run_budgets:
                for m in METHODS + (EQUAL,):
                    b.start(m, pct)
        elif step == "curve":
            for m in s.curve:
                b.curve_start(m)
        elif step == "finetune":
            b.finetune_all()
        else:
            b.report(a.docs)
        if step == a.until:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
