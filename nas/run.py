"""`widthnas run`: dataset + device + budget -> a verified ONNX model, in resumable stages.

Stages (each recorded in run_state.json when done; a rerun continues at the first undone one):
  profile   use --profile, a shipped profile matching this machine, or profile this machine
  train     the slimmable supernet (OWS or AOWS), resumable from its checkpoint
  search    held-out selection (nas.selection) by default, with the uniform, greedy and Lagrangian answers beside it
  finetune  materialize, recalibrate BN, fine-tune (or retrain) the chosen and the uniform network
  export    ONNX with real channel counts, checked against torch
  verify    measured latency of the exported models against prediction and budget
  report    report.md / report.json with plots
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from widthnas._io import atomic_path, atomic_write_text, read_json, read_jsonl
from widthnas.latency.check import CHECK_NETWORKS

from .paths import recorded_path, same_setting, with_recorded_paths
from .runlog import LOG_NAME, WIDTH, short
from .threads import using_threads

RECOVER = "delete it to redo the run's stages (finished artefacts stay), or choose another --out"

FREE_ON_RESUME = ("threads", "time_threads")  # settings that change where a run computes, not what: a resume may change them
STAGES = ("profile", "train", "search", "finetune", "export", "verify", "report")

# What a run writes in its directory (the stages below), and in its supernet/ (nas/train.py's RUN_FILES)
RUN_WRITES = ("run_config.json", "run_state.json", "samples.jsonl", "heldout.jsonl", "heldout_remeasure.jsonl",
              "profile.json", "latency_check.jsonl", "latency_fit.png", "config.json", "pareto.csv", "pareto.png",
              "final_chosen.pt", "final_uniform.pt", "model.onnx", "model.json", "uniform.onnx", "uniform.json",
              "widths.png", "training.png", "narrowing.png", "curve.csv", "curve.png", "report.json", "report.md", "run.log")



@dataclass
class RunConfig:
    space: str = "mobilenet_v1_small"  # search space
    dataset: str = "fashion_mnist"  # fashion_mnist | cifar10 | imagefolder | npz
    data: str | None = None  # dataset path
    budget: str = "50%"  # ms, or % of the widest network's predicted latency
    margin: float | str = "auto"  # % under the budget the search aims at; auto: 2x the profile's held-out error
    profile: str | None = None  # a profile to use; default: a shipped one matching this machine
    profile_networks: int = 800  # networks to time when this machine must be profiled
    heldout_networks: int = 150  # held-out networks timed to validate that profile
    check_networks: int = CHECK_NETWORKS  # networks timed to check any profile on this machine today
    remeasure_networks: int = 30  # held-out networks timed again for a new profile's noise floor (0: none)
    ladder_rungs: int = 8  # rungs of the ladder of reference networks timed into a new profile (0: none)
    profile_rounds: int = 5  # timed rounds per network while profiling (the check uses at most 3)
    profile_round_ms: float = 10.0  # ms per timed round
    verify_rounds: int = 7  # rounds before a verification timing's interval is judged (it may grow to 4 x)
    verify_round_ms: float = 20.0  # ms per verification round (the search's measured candidates, verify; not the ladder)
    guard: bool = True  # watch the reference network for a disturbed machine while timing (--no-guard: off)
    max_wait: float = 60.0  # s, longest wait for a disturbed machine to settle, per disturbance
    sampling: str = "aows"  # ows | aows
    epochs: int = 3  # supernet epochs
    warmup_epochs: int = 1  # aows: uniform epochs first
    limit: int | None = 12000  # training images (None: all); the demo trains on a subset
    batch_size: int = 128
    n_random: int = 2
    lr: float = 0.1
    finetune_epochs: int = 2  # fine-tune the chosen network from the supernet's weights
    retrain_epochs: int = 0  # > 0: retrain from scratch instead
    method: str = "select"  # select (held-out selection, nas.selection) | exact | lagrangian | greedy | uniform
    unary_configs: int = 300  # select: configurations measured for the unaries after training (--full: 1000)
    slim_images: int = 256  # select: validation images greedy slimming scores each of its steps on (<= 512)
    seed: int = 0
    schedule: str = "cosine"  # cosine | greedy (GreedyLR) for supernet training, fine-tuning and retraining
    greedy: str = ""  # GreedyLR options ("factor=0.5,patience=0,..."); "": defaults
    previous: str | None = None  # a deployed model (.onnx or run directory): the report gives the flips against it
    congruent: str | None = None  # fine-tune/retrain with focal distillation toward this model (.onnx or run dir)
    congruent_weight: float = 1.0  # weight of that term beside the cross-entropy
    weights: str | None = None  # the user's state_dict (traced space): seeds the supernet, fine-tuning starts from it
    curve: bool = False  # the report's width-error curve along every uniform multiplier (--curve; ~1.5 min in the demo)
    threads: int = 0  # torch threads for training, search and fine-tuning; 0: torch's default (every core)
    time_threads: bool = False  # time 1 thread against torch's default on each stage's own work, keep the faster


def check_run_config(cfg: RunConfig, where: str = "") -> None:
    """Refuse bad numbers (option names in the message) before anything is measured or written."""
    from widthnas.latency.noise_floor import MIN_REMEASURE

    from .selection import UNARY_IMAGES

    from .checks import INT_NONNEG, INT_POS, POSITIVE, Rule, check_settings

    check_settings(cfg, {
        "profile_networks": Rule(integer=True, low=10), "heldout_networks": Rule(integer=True, low=3),
        "check_networks": Rule(integer=True, low=3), "remeasure_networks": Rule(integer=True, low=MIN_REMEASURE,
                                                                                zero_ok=True),
        "ladder_rungs": Rule(integer=True, low=2, zero_ok=True), "profile_rounds": INT_POS, "profile_round_ms": POSITIVE,
        "verify_rounds": Rule(integer=True, low=1, high=10_000), "verify_round_ms": Rule(above=0, high=1e6), "max_wait": Rule(low=0, high=86400),
        "epochs": INT_POS, "warmup_epochs": INT_NONNEG,
        "limit": Rule(integer=True, low=1, none_ok=True), "batch_size": INT_POS, "n_random": INT_NONNEG,
        "lr": POSITIVE, "finetune_epochs": INT_NONNEG, "retrain_epochs": INT_NONNEG,
        "unary_configs": Rule(integer=True, low=10), "slim_images": Rule(integer=True, low=16, high=UNARY_IMAGES),
        "seed": INT_NONNEG, "congruent_weight": POSITIVE,
        "threads": Rule(integer=True, low=0, high=1024)}, where)
    for flag, v in (("guard", cfg.guard), ("curve", cfg.curve), ("time_threads", cfg.time_threads)):
        if not isinstance(v, bool):
            raise ValueError(f"{where + ': ' if where else ''}{flag} {v!r}: expected true or false (--no-guard, --curve)")
    from widthnas.mrf import parse_budget

    try:
        parse_budget(cfg.budget, 1.0)  # its syntax and sign now, not after profiling or training
    except ValueError as e:
        raise ValueError(f"{where + ': ' if where else ''}--{e}") from None


def full_config(cfg: RunConfig) -> RunConfig:
    """--full: the whole training set and longer training."""
    cfg.limit, cfg.epochs, cfg.warmup_epochs, cfg.finetune_epochs, cfg.unary_configs = None, 20, 4, 5, 1000
    cfg.curve = True
    return cfg


def host_notes(records: list[dict]) -> tuple[str | None, str | None]:
    """A verification's repeated timings each name their own host speed in their notes: one note per kind
    instead, (another machine, a host speed the profile's correction was not fitted on), each the note of
    the kind's median-speed timing with the range of speeds every timing saw, or None."""
    speeds = [r["host_speed"] for r in records if isinstance(r.get("host_speed"), (int, float))]
    out = []
    for machine in (True, False):
        noted = [r for r in records if r.get("host_note") and bool(r.get("machine_note")) == machine]
        if not noted:
            out.append(None)
            continue
        noted.sort(key=lambda r: r.get("host_speed") or 0.0)
        mid = noted[len(noted) // 2]["machine_note" if machine else "host_note"]
        if len(records) > 1 and speeds:
            mid += (f" ({len(noted)} of {len(records)} timings noted; the reference ran {min(speeds):.2f}-"
                    f"{max(speeds):.2f} x its profiled time across them)")
        out.append(mid)
    return out[0], out[1]


class Run:
    def __init__(self, cfg: RunConfig, out: str | Path, log=print, progress: bool = True):
        from widthnas.latency.margin import parse_margin

        parse_margin(cfg.margin)  # a bad margin is refused before anything is written
        check_run_config(cfg)
        cfg = with_recorded_paths(cfg)  # run_config.json reads the same from any directory (nas/paths.py)
        self.cfg, self.dir, self.log, self.progress = cfg, Path(out), log, progress
        from widthnas.models.families import get_space

        self.space = get_space(cfg.space)  # the space, --weights and --profile are refused before anything is saved
        if cfg.weights:  # refused now, not after profiling and training
            from widthnas.models.trace_weights import check_state, load_state_file

            check_state(self.space, load_state_file(cfg.weights))
        if cfg.profile:
            from widthnas.latency.registry import load_profile
            from widthnas.models.space import check_fingerprint

            check_fingerprint(load_profile(cfg.profile).space.fingerprint, self.space, f"--profile {cfg.profile}")
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self.dir / "run_config.json"
        if saved.exists():
            old = read_json(saved, "run settings", RECOVER)
            try:  # numbers read back from the file are checked as the options are
                check_run_config(RunConfig(**{k: v for k, v in old.items() if k in asdict(cfg)}), str(saved))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{e}; the saved settings are damaged: choose another --out") from None
            defaults = asdict(RunConfig())  # settings added since that run was saved hold their defaults
            diff = {k: (old.get(k, defaults[k]), v) for k, v in asdict(cfg).items()
                    if k not in FREE_ON_RESUME and not same_setting(k, old.get(k, defaults[k]), v)}
            if diff:
                raise ValueError(f"{self.dir} holds a run with other settings {diff} (saved vs now); "
                                 "rerun with the same settings to resume, or choose another --out")
        else:
            atomic_write_text(saved, json.dumps(asdict(cfg), indent=1))
        self.state_path = self.dir / "run_state.json"
        self.state = read_json(self.state_path, "run state", RECOVER) if self.state_path.exists() else {}
        self._splits = None
        self._flips: dict = {}

    # ---- plumbing --------------------------------------------------------------------------
    def _done(self, stage: str, result: dict, seconds: float) -> None:
        self.state[stage] = {"done": True, "seconds": seconds, **result}
        atomic_write_text(self.state_path, json.dumps(self.state, indent=1, default=float))

    @property
    def splits(self):
        if self._splits is None:
            from .data import check_fits, load_dataset, split

            ds = load_dataset(self.cfg.dataset, self.cfg.data)
            check_fits(ds, self.space)
            self._splits = split(ds, 0.1, self.cfg.seed, self.cfg.limit)
        return self._splits

    def table(self):
        from widthnas.latency.registry import load_profile

        return load_profile(self.state["profile"]["path"])

    def go(self) -> dict:
        import warnings

        for stage in STAGES:
            if self.state.get(stage, {}).get("done"):
                self._say(f"[{stage}] done earlier, skipped")
                continue
            t0 = self._stage_t0 = time.time()
            begin, end = getattr(self.log, "begin", None), getattr(self.log, "end", None)
            begin(stage) if begin else self.log(f"[{stage}]")
            with warnings.catch_warnings(record=True) as caught:  # said in run.log, counted on the terminal
                warnings.simplefilter("default")  # once per place that warns, not once per batch
                try:
                    threads = self._stage_threads(stage)
                    with using_threads(threads["threads"] if threads else torch.get_num_threads()):
                        result = getattr(self, f"stage_{stage}")()
                    if threads:
                        result = {**result, "threads": threads}
                except BaseException:
                    self._log_warnings(stage, caught)  # often what explains the failure
                    self.log(f"[{stage}] failed after {_duration(time.time() - t0)}")
                    raise
                finally:
                    if end:
                        end()
            counts = self._log_warnings(stage, caught)
            secs = time.time() - t0
            self._done(stage, result, secs)
            head = f"[{stage}] {_duration(secs)}: "
            self._say(head + short(self._outcome(stage, result), WIDTH - len(head) - len(counts), " …") + counts)
        return self.state

    def _log_warnings(self, stage: str, caught: list) -> str:
        """Every warning a stage raised, into run.log; ' (2 notes, 1 library warning in run.log)' or ''."""
        ours = [w for w in caught if _ours(w.filename)]
        for w in caught:
            self.log(f"{stage}: note: {w.message}" if w in ours else
                     f"{stage}: library warning ({Path(w.filename).name}:{w.lineno}): {w.message}")
        parts = [f"{n} {what}{'s' * (n > 1)}" for n, what in ((len(ours), "note"),
                                                                (len(caught) - len(ours), "library warning")) if n]
        return f" ({', '.join(parts)} in {LOG_NAME})" if parts else ""

        return self.state

    def _stage_threads(self, stage: str) -> dict | None:
        """Torch threads for the stage's own work: --threads; with --time-threads the faster of 1 and torch's
        default on a few repetitions of that work (nas/threads.py); else None (torch's default), as where
        torch does little (profile, export, verify). On this machine's demo 2 threads were 1.6-1.7 x faster
        than 1 for every job (RESULTS §6), so timing is not the default: it would cost ~25 s for nothing."""
        from .threads import describe, evaluation_probe, fastest_threads, finetune_probe, thread_counts, training_probe

        if stage not in ("train", "search", "finetune", "report"):
            return None
        if self.cfg.threads:
            return {"threads": self.cfg.threads, "how": "--threads"}
        counts = thread_counts()
        if not self.cfg.time_threads or len(counts) == 1:  # torch runs on one thread here (OMP_NUM_THREADS=1, one core)
            return None
        if stage == "search" and self.cfg.method != "select":  # little torch work: a validation pass or none
            return None
        if stage == "report":  # predictions on the test set: the search's kind of work
            return self.state.get("search", {}).get("threads")
        self.log(f"{stage}: timing its work on 1 and on {max(counts)} threads")
        try:
            if stage == "train":
                job = training_probe(self.space, self.cfg.batch_size, self.cfg.n_random, self.cfg.seed)
            elif stage == "search":
                from .selection import unary_image_count

                job = evaluation_probe(self._supernet(), unary_image_count(self.splits), self.cfg.seed)
            else:
                from .train import build_plain_network

                job = finetune_probe(build_plain_network(self.space, self.state["search"]["chosen"]["widths"]),
                                     self.cfg.batch_size, self.cfg.seed)
            best, med = fastest_threads(job, counts)
        except (RuntimeError, MemoryError) as e:  # the probe, not the stage: it runs on torch's default
            self.log(f"{stage}: could not time its threads ({e}); torch's default {torch.get_num_threads()}")
            return None
        self.log(f"{stage}: torch on {describe(best, med)}")
        return {"threads": best, "median_s": {str(k): v for k, v in med.items()}, "how": "measured"}

    def _say(self, msg: str) -> None:
        """A line for the terminal (RunLog.say), beside the details that go to run.log."""
        getattr(self.log, "say", self.log)(msg)

    def _outcome(self, stage: str, r: dict) -> str:
        """The stage's one terminal line: what it found, in a few words (run.log and report.md say why)."""
        if stage == "profile":
            c = r["check"]
            line = f"{r['name']}; {c['within_10']:.0%} of a fresh check within ±10 % of it"
            if c.get("machine_note"):
                line += f" ({_other_machine(c['host_speed'])}: ms are at its speed)"
            return line
        if stage == "train":
            acc = r.get("final", {}).get("val_acc_widest")
            return f"{r['epochs']} epochs" + (f", widest network val acc {acc:.2%}" if isinstance(acc, float) else "")
        if stage == "search":
            uni = r.get("uniform")
            return (f"chosen network predicted {r['chosen']['predicted_ms']:.4f} ms for a {r['budget_ms']:.4f} ms "
                    f"budget; compared with {_uniform_name(uni) if uni else 'no multiplier (none fits)'}")
        if stage == "finetune":
            return "test acc " + ", ".join(f"{self._label(k)} {r[k]['test_acc']:.2%}" for k in self._networks())
        if stage == "export":
            return ", ".join(f"{Path(r[k]['path']).name}" for k in self._networks()) + \
                f" (onnxruntime matches PyTorch to {max(r[k]['max_abs_diff'] for k in self._networks()):.0e})"
        if stage == "verify":
            return "; ".join(f"{self._label(k)} measured {r[k]['normalised_ms']:.4f} ms, "
                             f"{r[k]['budget_verdict']['verdict']}" for k in self._networks()) + \
                f" (budget {self.state['search']['budget_ms']:.4f} ms)"
        if stage == "report":
            return str(r["report"])
        return "done"

    def _label(self, name: str) -> str:
        """'chosen', or the compared network's name ('uniform8 x0.55')."""
        return name if name != "uniform" else _uniform_name(self.state["search"]["uniform"])

    def _guard_settings(self):
        """The load guard's settings for this run's timings, or None (--no-guard)."""
        from widthnas.latency.standalone_runner import GuardSettings

        return GuardSettings(max_wait_s=self.cfg.max_wait) if self.cfg.guard else None

    def _protocol(self, rounds: int | None = None):
        """How this run times a profiling or check sample (recorded in the samples headers)."""
        from widthnas.latency.standalone_runner import Protocol

        return Protocol(rounds or self.cfg.profile_rounds, self.cfg.profile_round_ms, guard=self._guard_settings())

    # ---- stages ----------------------------------------------------------------------------
    def stage_profile(self) -> dict:
        from widthnas.latency.backends import OrtBackend
        from widthnas.latency.check import other_machine_choice
        from widthnas.latency.registry import load_profile, matching_profiles
        from widthnas.models.space import check_fingerprint
        from widthnas.mrf import budget_is_share

        from .export import verify_timing

        backend = OrtBackend(self.space)
        if self.cfg.profile:
            path, why = self.cfg.profile, "given with --profile"
            table = load_profile(path)
            check_fingerprint(table.space.fingerprint, self.space, f"profile {path}")
            # onnxruntime with the profile's settings (threads, batch, ...): the check times networks as it was
            # made, as verify times the exported models; another backend's profile is refused here
            backend = verify_timing(table)[0]
        else:
            found, why = matching_profiles(self.space, backend.device_info())
            if found:
                path = str(found[0])
            else:
                why += "; profiling this machine"
                self.log(f"profile: {why}")
                path = self._profile_here(backend)
            table = load_profile(path)
        self.log(f"profile: {table.name or path}: {why}")
        check = self._latency_check(table, backend)
        if check["machine_note"] and not self.cfg.profile and Path(path).parent != self.dir:
            # a shipped profile of another machine behind the same device key (latency/check.py)
            action, path, table, why = other_machine_choice(path, table, found[1:], check,
                                                            budget_is_share(self.cfg.budget))
            self.log(f"profile: {why}")
            if action == "profile":
                path = self._profile_here(backend)
                table = load_profile(path)
            if action != "keep":
                check = self._latency_check(table, backend)  # the same timed networks, against the new profile
        if check["machine_note"]:  # a profile used anyway (given, or its ratios hold): say what its ms mean here
            self.log(f"profile: note: {check['machine_note']}")
        return {"path": recorded_path(path, "profile"), "name": table.name or Path(path).stem, "why": why,
                "check": check}

    def _profile_here(self, backend) -> str:
        from widthnas.latency.profile_here import HereSettings, profile_here

        c = self.cfg
        settings = HereSettings(c.profile_networks, c.heldout_networks, c.remeasure_networks, c.ladder_rungs, c.seed,
                                c.max_wait)
        return str(profile_here(self.space, self.dir, backend, self._protocol(), settings, self.log, self.progress))

    def _latency_check(self, table, backend, n: int | None = None) -> dict:
        """Time n random networks now and compare with the profile: is it valid here today?"""
        from widthnas.latency.check import CHECK_ROUNDS, CHECK_SEED, latency_check
        from widthnas.latency.validate import scatter_plot

        n = self.cfg.check_networks if n is None else n
        m, meas, pred = latency_check(table, backend, self.dir / "latency_check.jsonl", n, self.cfg.seed + CHECK_SEED,
                                      self._protocol(min(CHECK_ROUNDS, self.cfg.profile_rounds)), log=self.log,
                                      progress=self.progress)
        scatter_plot(self.dir / "latency_fit.png", meas, {"table": pred},
                     f"{table.name}: {n} networks measured in this run")
        self.log(f"latency check on {n} fresh networks: within ±10% {m['within_10']:.0%}, NRMSE {m['nrmse']:.2%}")
        return m

    def stage_train(self) -> dict:
        from .train import CKPT, TrainConfig, Trainer

        c = self.cfg
        tc = TrainConfig(space=c.space, dataset=c.dataset, data=c.data, limit=c.limit, epochs=c.epochs,
                         batch_size=c.batch_size, lr=c.lr, n_random=c.n_random, sampling=c.sampling,
                         warmup_epochs=c.warmup_epochs, budget=c.budget, profile=self.state["profile"]["path"],
                         seed=c.seed, schedule=c.schedule, greedy=c.greedy, weights=c.weights)
        sup_dir = self.dir / "supernet"
        t = Trainer(tc, sup_dir, self.log, self.progress)
        if (sup_dir / CKPT).exists():
            t.resume()
        t.fit()
        return {"dir": recorded_path(sup_dir), "epochs": t.epoch, "final": t.history[-1] if t.history else {}}

    def _mrf(self):
        from widthnas.mrf import build_mrf
        from widthnas.mrf.unaries import Unaries

        return build_mrf(self.table(), Unaries.load(self.dir / "supernet" / "unaries.json"))

    def _supernet(self):
        from .train import CKPT, load_checkpoint, make_supernet

        sup = make_supernet(self.space)
        sup.load_state_dict(load_checkpoint(self.dir / "supernet" / CKPT, self.space)["model"])
        return sup

    def stage_search(self) -> dict:
        from widthnas.mrf.baselines import greedy

        from .search import aim, chosen_config, search, write_pareto
        from .selection import cached_measured_unaries, holdout_split, supernet_accuracy

        table, sup, sp = self.table(), self._supernet(), self.splits
        unaries_path = self.dir / "supernet" / "unaries.json"  # training-time statistics
        if self.cfg.method == "select":  # measured after training, on validation images selection never sees
            unaries_path = self.dir / "supernet" / "unaries_measured.json"
            unaries = cached_measured_unaries(sup, sp, unaries_path, self.cfg.unary_configs, log=self.log,
                                              progress=self.progress)
        else:
            from widthnas.mrf.unaries import Unaries

            unaries = Unaries.load(unaries_path)
        from widthnas.mrf import lagrangian, pareto_front

        try:
            budget, widest, target, margin_pct, margin_how = aim(table, self.cfg.budget, self.cfg.margin,
                                                                 self.state["profile"].get("check"))
        except ValueError as e:  # the check recorded by the profile stage is broken
            raise ValueError(f"{self.dir / 'run_state.json'}, profile.check: {e}; {RECOVER}") from None
        if margin_pct:
            self.log(f"search: aiming at {target:.4f} ms, margin {margin_how}")
        if self.cfg.method == "select":
            self.log("search: MRF candidates, uniform and greedy, judged by the supernet on held-out validation images")
        measure = self._candidate_measurer(sup, table) if self.cfg.method == "select" else None
        sol, uni, mrf = search(table, unaries, self.cfg.method, target, budget, sup, sp, measure, self.log,
                               slim_images=self.cfg.slim_images)
        gre, lag = greedy(mrf, target), lagrangian(mrf, target)
        front = sol.pareto
        if front is None:
            front = pareto_front(mrf)
        write_pareto(self.dir / "pareto.csv", front, sol, uni, target)
        cfg = chosen_config(self.space, table, sol, recorded_path(unaries_path), self.cfg.budget, budget, margin_pct,
                            margin_how)
        atomic_write_text(self.dir / "config.json", json.dumps(cfg, indent=1))
        d = lambda s: None if s is None else {**s.to_dict(), "info": {  # noqa: E731
            k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in s.to_dict()["info"].items()}}
        # the network compared with the chosen one: the multiplier rounded to 8 channels that spends the
        # budget on measurement (uniform8, as the benchmarks define it); the ladder's uniform where nothing
        # can be timed here
        compared = self._uniform8(sup, table, budget)
        if compared is _CANNOT_TIME:
            compared = d(uni)
        # what the supernet itself says of the chosen and the uniform network, on held-out images:
        # the MRF's predicted gain is only real if this agrees
        held = holdout_split(sp)
        sup_acc = {"chosen": supernet_accuracy(sup, sol.widths, sp, held)[0]}
        if compared:
            sup_acc["uniform"] = supernet_accuracy(sup, compared["widths"], sp, held,
                                                   space=self._space_of_record(compared))[0]
        self.log(f"search: chosen {sol.widths}, predicted {sol.latency:.4f} ms (budget {budget:.4f} ms), supernet "
                 f"held-out acc {sup_acc['chosen']:.4f}" + (f"; {_uniform_name(compared)}: supernet held-out acc "
                                                            f"{sup_acc['uniform']:.4f}" if compared else ""))
        return {"budget_ms": budget, "widest_ms": widest, "target_ms": target, "margin_pct": margin_pct,
                "margin_how": margin_how, "chosen": d(sol), "uniform": compared, "uniform_ladder": d(uni),
                "greedy": d(gre), "lagrangian": d(lag), "pareto_points": len(front),
                "unaries": recorded_path(unaries_path), "supernet_holdout_acc": sup_acc, "holdout_images": len(held[1])}

    def _uniform8(self, sup, table, budget: float):
        """uniform8 (nas/uniform8.py) from the supernet, timed here as verify times networks; None when no
        multiplier fits; _CANNOT_TIME when this profile's networks cannot be timed here (not onnxruntime)."""
        from widthnas.latency.verdict import budget_verdict

        from .export import network_measurer
        from .uniform8 import NoMultiplierFits, uniform8

        dense = self._dense_space
        try:
            measure = network_measurer(sup, table, self.dir / "candidates", self.cfg.verify_rounds,
                                       self.cfg.verify_round_ms, space=dense)
        except ValueError as e:
            self.log(f"search: compared with the search grid's uniform network ({e})")
            return _CANNOT_TIME
        timed = 0

        def measure_said(w):  # the status line shows the bisection going on
            nonlocal timed
            timed += 1
            self.log(f"search: uniform8: timing network {timed} (bisection over the multipliers)")
            return measure(w)

        try:
            u = uniform8(self.space, budget, measure_said, lambda w: budget_verdict(lambda: measure_said(w), budget))
        except NoMultiplierFits as e:
            self.log(f"search: {e}; the chosen network is reported alone")
            return None
        v = u["verdict"]
        self.log(f"search: uniform8 x{u['multiplier']} {u['widths']}: {v['mean_ms']:.4f} ms measured ({v['verdict']})")
        return {"widths": u["widths"], "method": "uniform8", "grid": "dense8", "predicted_ms": None, "score": None,
                "info": {"multiplier": u["multiplier"], "rounded_to": 8, "measured_ms": v["mean_ms"],
                         "verdict": v["verdict"]}}

    @cached_property
    def _dense_space(self):
        """The space with every multiple of 8 channels: uniform8's widths (nas/uniform8.py)."""
        return self.space.with_dense_choices()

    def _space_of_record(self, rec: dict | None):
        """The space a network record's widths belong to: uniform8's lie off the search grid."""
        return self._dense_space if rec and rec.get("grid") == "dense8" else self.space

    def _space_of(self, name: str):
        return self._space_of_record(self.state["search"].get(name))


    def stage_finetune(self) -> dict:
        from .evaluate import accuracy, calibration_images, recalibrate_bn
        from .finetune import train_plain
        from .train import build_plain_network as build_network

        sp, c = self.splits, self.cfg
        sup = self._supernet()
        from widthnas.models.trace_weights import IMPORTANCE

        out = {"mode": f"retrain {c.retrain_epochs} epochs" if c.retrain_epochs else f"finetune {c.finetune_epochs} epochs"
                       + (f" from {Path(c.weights).name} (--weights), channels by {IMPORTANCE} importance"
                          if c.weights else "")}
        user_sd = None
        if c.weights and not c.retrain_epochs:
            from widthnas.models.trace_weights import load_state_file, user_network

            user_sd = load_state_file(c.weights)
        kw = self._plain_training_options()
        if c.congruent:
            out["mode"] += f", positive-congruent toward {Path(c.congruent).name} (weight {c.congruent_weight:g})"
        for name in self._networks():
            widths = self.state["search"][name]["widths"]
            if c.retrain_epochs:
                torch.manual_seed(c.seed)
                net = build_network(self._space_of(name), widths)
                hist = train_plain(net, sp, c.retrain_epochs, lr=c.lr, seed=c.seed, log=self.log, desc=f"{name} retrain",
                                   progress=self.progress, **kw)
            else:  # from the user's model sliced to the widths (--weights), or from the supernet
                space = self._space_of(name)
                net = sup.materialize(widths, space) if user_sd is None else user_network(space, user_sd, widths)
                recalibrate_bn(net, calibration_images(sp, 1024), sp.mean, sp.std)
                before = accuracy(net, *sp.val, sp.mean, sp.std)[0]
                self.log(f"{name}: val acc {before:.4f} from "
                         f"{'the supernet' if user_sd is None else Path(c.weights).name} after BN recalibration")
                hist = train_plain(net, sp, c.finetune_epochs, lr=c.lr * 0.2, seed=c.seed, log=self.log,
                                   desc=f"{name} finetune", progress=self.progress, **kw) if c.finetune_epochs else []
            val_acc = accuracy(net, *sp.val, sp.mean, sp.std)[0]
            test_acc = accuracy(net, *sp.test, sp.mean, sp.std)[0]  # reported, never used for decisions
            with atomic_path(self.dir / f"final_{name}.pt") as tmp:
                torch.save(net.state_dict(), tmp)
            out[name] = {"widths": widths, "val_acc": val_acc, "test_acc": test_acc, "history": hist}
            self.log(f"{name}: val acc {val_acc:.4f}, test acc {test_acc:.4f}")
        return out

    def _networks(self) -> tuple[str, ...]:
        """The networks carried past the search: the chosen one, and the uniform one when one fits."""
        return ("chosen", "uniform") if self.state["search"].get("uniform") else ("chosen",)

    def _plain_training_options(self) -> dict:
        """Schedule and positive-congruent loss for fine-tuning / retraining."""
        from .greedylr import GreedyOptions

        kw = {"schedule": self.cfg.schedule, "greedy": GreedyOptions.parse(self.cfg.greedy)}
        if self.cfg.congruent:
            from .flips import congruent_loss, load_previous

            kw["loss_fn"] = congruent_loss(load_previous(self.cfg.congruent, self.splits, self.space),
                                           self.cfg.congruent_weight)
        return kw

    def _final_net(self, name: str):
        from .train import build_plain_network

        net = build_plain_network(self._space_of(name), self.state["finetune"][name]["widths"])
        net.load_state_dict(torch.load(self.dir / f"final_{name}.pt", map_location="cpu", weights_only=True))
        return net.eval()

    def stage_export(self) -> dict:
        from .data import normalize
        from .export import export_onnx

        sp, out = self.splits, {}
        real = normalize(sp.test[0][:256], sp.mean, sp.std)
        for name in self._networks():
            fname = {"chosen": "model.onnx", "uniform": "uniform.onnx"}[name]
            v = export_onnx(self._final_net(name), self._space_of(name), self.dir / fname, real)
            out[name] = {"path": recorded_path(self.dir / fname), **v}  # verify reads it, maybe from elsewhere
            self.log(f"export {name}: {self.dir / fname}, ORT vs torch max abs diff {v['max_abs_diff']:.2e}")
        return out

    def _candidate_measurer(self, sup, table):
        """Time the selection's candidates here, as verify will, when the profile was measured with
        onnxruntime; None (prediction only) otherwise."""
        from .export import network_measurer

        try:
            return network_measurer(sup, table, self.dir / "candidates", self.cfg.verify_rounds, self.cfg.verify_round_ms)
        except ValueError as e:
            self.log(f"search: candidates judged on predicted latency only ({e})")
            return None

    def stage_verify(self) -> dict:
        from widthnas.latency.standalone_runner import LoadGuard
        from widthnas.latency.verdict import WITHIN, budget_verdict, describe

        from .export import measure_exported, write_sidecar

        table, out = self.table(), {}
        budget = self.state["search"]["budget_ms"]
        gs = self._guard_settings()  # a disturbed machine is waited out, not averaged into the verdict
        guard = LoadGuard(gs, log=self.log) if gs is not None else None
        for name in self._networks():
            path = self.state["export"][name]["path"]
            records: list[dict] = []

            def measure() -> float:
                self.log(f"verify {self._label(name)}: timing {len(records) + 1}")
                for _ in range(3):  # each already waited and re-measured up to twice; then keep it, flagged
                    records.append(measure_exported(path, table, self.cfg.verify_rounds, self.cfg.verify_round_ms,
                                                    guard=guard))
                    if not records[-1]["disturbed"]:
                        break
                return records[-1]["normalised_ms"]

            bv = budget_verdict(measure, budget)  # re-measured until the 95 % interval clears the budget
            m = {**records[0], "normalised_ms": bv["mean_ms"],  # both readings over the same timings
                 "reference_normalised_ms": sum(r["reference_normalised_ms"] for r in records) / len(records)}
            pred = self.state["search"][name]["predicted_ms"]
            m.update({"predicted_ms": pred, "budget_ms": budget, "within_budget": bv["verdict"] == WITHIN,
                      "budget_verdict": bv, "error": None if pred is None else m["normalised_ms"] / pred - 1,
                      "max_abs_diff": self.state["export"][name]["max_abs_diff"],
                      # measurements repeated after a disturbance; still disturbed (dropped when a clean one followed)
                      "remeasured": sum(r["remeasured"] > 0 for r in records),
                      "disturbed": sum(r["disturbed"] for r in records),
                      "unsettled": sum(r.get("unsettled", 0) for r in records)})
            other, speed = host_notes(records)  # over every timing, not records[0]'s alone
            notes = [n for n in (other, speed) if n]
            m.update(host_notes=notes, host_note="; ".join(notes) or None, machine_note=other)
            fin = self.state["finetune"][name]
            write_sidecar(path, fin["widths"], self._space_of(name), table, accuracy={"val": fin["val_acc"], "test": fin["test_acc"]},
                          latency=m, verify=self.state["export"][name], budget=self.cfg.budget,
                          normalization={"mean": self.splits.mean.tolist(), "std": self.splits.std.tolist()})
            out[name] = m
            noisy = (f"; {m['remeasured']} measurement(s) repeated after a disturbance, {m['disturbed']} still "
                     "disturbed" if m["remeasured"] or m["disturbed"] else "")
            if m["unsettled"]:
                noisy += f"; {m['unsettled']} timing(s) never met their spread target (noisier; the interval counts it)"
            for n in notes:
                self.log(f"verify {name}: note: {n}")
            vs = "off the profile's grid, not predicted" if pred is None else f"vs predicted {pred:.4f} ms ({m['error']:+.1%})"
            self.log(f"verify {name}: measured {m['normalised_ms']:.4f} ms (at the profile's host speed, read off its "
                     f"{m['read_off']}; raw median {m['measured_ms']:.4f} ms) {vs}; {describe(bv)}{noisy}")
        return out

    def stage_report(self) -> dict:
        from .report import plot_narrowing, plot_training, plot_widths, write_report

        st = self.state
        fix = "delete the run's supernet/ directory and run_state.json to retrain, or choose another --out"
        sup_metrics = read_jsonl(self.dir / "supernet" / "metrics.jsonl", "supernet metrics", fix)
        nar = self.dir / "supernet" / "narrowing.jsonl"
        snaps = read_jsonl(nar, "narrowing log", fix) if nar.exists() else []
        uni = st["search"]["uniform"]
        plot_widths(self.dir / "widths.png", self.space, st["search"]["chosen"]["widths"], uni and uni["widths"])
        plot_training(self.dir / "training.png", sup_metrics,
                      {k: st["finetune"][k]["history"] for k in self._networks()})
        has_nar = plot_narrowing(self.dir / "narrowing.png", self.space, snaps)
        extra = self._flips_section() + (self._curve_section() if self.cfg.curve else [])
        res = {"space": {"name": self.space.name, "fingerprint": self.space.fingerprint}, "dataset": self.cfg.dataset,
               "budget": self.cfg.budget, "config": asdict(self.cfg), "profile": st["profile"], "search": st["search"],
               "finetune": {k: v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "history"}
                            for k, v in st["finetune"].items()},
               "verify": st["verify"], "onnx": st["export"]["chosen"]["path"], "narrowing_plot": has_nar,
               "supernet": sup_metrics,
               # the report's own time up to writing it (the write is what is left)
               "stage_seconds": {**{k: st[k]["seconds"] for k in STAGES if k in st and "seconds" in st[k]},
                                 "report": time.time() - getattr(self, "_stage_t0", time.time())}}
        res["flips"] = self._flips
        path = write_report(self.dir, res, extra)
        return {"report": recorded_path(path),
                "flips": {k: {m: r[m] for m in ("nfr", "pfr")} for k, r in self._flips.items()}}

    def _flips_section(self) -> list[str]:
        """Negative flips of the chosen network against the uniform one (and --previous) on the test set."""
        from .flips import flips_markdown, load_previous, torch_predictions

        sp = self.splits
        x, y = sp.test
        pred = {k: torch_predictions(self._final_net(k), x, sp.mean, sp.std) for k in self._networks()}
        old = {"uniform network": pred["uniform"]} if "uniform" in pred else {}
        if self.cfg.previous:
            prev = load_previous(self.cfg.previous, sp, self.space)
            old[f"previous model `{self.cfg.previous}`"] = prev(x).argmax(1)
        self._flips, lines = flips_markdown(y, old, pred["chosen"], self.space.num_classes)
        return lines

    def _curve_section(self) -> list[str]:
        """The supernet's width-error curve (every uniform multiplier, BN recalibrated), predicted latency."""
        from .curve import curve_markdown, supernet_curve, write_curve

        sup = self._supernet()
        rows = supernet_curve(sup, self.space, self.splits, table=self.table(), log=self.log)
        write_curve(self.dir / "curve.csv", self.dir / "curve.png", rows)
        return curve_markdown(rows, "curve.png")

    # ---- summary ---------------------------------------------------------------------------
    def summary(self) -> str:
        st = self.state
        s, f, v = st["search"], st["finetune"], st["verify"]
        uni = s.get("uniform")
        from .search import variables

        vs = variables(self.space)
        wn = max(8, *(len(n) for n, _, _ in vs))
        rows = [f"{'group':{wn}s} {'base':>5s} {'chosen':>7s} {'uniform':>8s}"]
        for i, (name, base, _) in enumerate(vs):
            rows.append(f"{name:{wn}s} {base:5d} {s['chosen']['widths'][i]:7d} {uni['widths'][i] if uni else '-':>8}")
        un = _uniform_name(uni) if uni else None
        if uni:
            what = ("the largest multiplier rounded to 8 channels measured within budget" if uni.get("grid") == "dense8"
                    else "the largest multiplier of the search grid within budget")
            rows.append(f"uniform: {un} ({what})")
            rows.append(f"test accuracy: chosen {f['chosen']['test_acc']:.2%}, {un} {f['uniform']['test_acc']:.2%} "
                        f"({f['mode']})")
        else:
            rows.append("uniform: no width multiplier fits the budget")
            rows.append(f"test accuracy: chosen {f['chosen']['test_acc']:.2%} ({f['mode']})")
        for name in self._networks():
            vn = v[name]
            pred = "" if vn["predicted_ms"] is None else f"predicted {vn['predicted_ms']:.4f} ms, "
            rows.append(f"latency {name if name == 'chosen' else un}: {pred}measured {vn['normalised_ms']:.4f} ms, "
                        f"budget {s['budget_ms']:.4f} ms -> "
                        f"{vn.get('budget_verdict', {}).get('verdict') or ('within' if vn['within_budget'] else 'over')}")
        chk = st["profile"].get("check") or {}
        if chk.get("machine_note"):  # a profile of the other machine kind, kept: its ms, not this machine's
            rows.append(f"ms are the profile machine's ({_other_machine(chk['host_speed'])}; run.log, report.md)")
        elif isinstance(chk.get("host_speed"), (int, float)):
            rows.append(f"ms are this machine's: its reference network ran at {chk['host_speed']:.2f} x "
                        "the profile's time")
        for name, r in st["report"].get("flips", {}).items():
            rows.append(f"negative flip rate of the chosen network against the {name}: {r['nfr']:.2%} "
                        f"(positive {r['pfr']:.2%})")
        rows.append("one run cannot tell two networks apart by accuracy: that takes paired seeds and a confidence "
                    "interval (docs/RESULTS.md)")
        rows.extend(time_table({k: st[k]["seconds"] for k in STAGES
                                if isinstance(st.get(k, {}).get("seconds"), (int, float))}))
        rows.append(f"ONNX: {st['export']['chosen']['path']}  (report: {st['report']['report']}; every message in full: "
                    f"{self.dir / LOG_NAME})")
        return "\n".join(rows)


_PACKAGE = Path(__file__).resolve().parent.parent  # warnings raised in widthnas's own code are a run's notes


def _ours(filename: str) -> bool:
    """Raised in widthnas's code (not a library's, even one installed in a venv inside the checkout)."""
    p = Path(filename).resolve()
    if _PACKAGE not in p.parents:
        return False
    return not {"site-packages", "dist-packages"} & set(p.relative_to(_PACKAGE).parts)

_CANNOT_TIME = object()  # Run._uniform8: no timing here, the search grid's uniform network stands in


def _uniform_name(rec: dict) -> str:
    """'uniform8 x0.55' or 'uniform x0.55' (the ladder's, on the search grid)."""
    return f"{'uniform8' if rec.get('grid') == 'dense8' else 'uniform'} x{rec['info'].get('multiplier')}"


def _other_machine(speed: float) -> str:
    """'made on a machine 1.76 x faster than this one' from this machine's time over the profile's."""
    return (f"made on a machine {speed:.2f} x faster than this one" if speed > 1 else
            f"made on a machine {1 / speed:.2f} x slower than this one")


def time_table(secs: dict[str, float]) -> list[str]:
    """Two aligned lines, stage names over their times, and the total: where the run's time went."""
    cols = [(k, _duration(v)) for k, v in secs.items()] + [("total", _duration(sum(secs.values())))]
    w = [max(len(a), len(b)) for a, b in cols]
    return ["time  " + "  ".join(f"{a:>{n}}" for (a, _), n in zip(cols, w)),
            "      " + "  ".join(f"{b:>{n}}" for (_, b), n in zip(cols, w))]


def _duration(s: float) -> str:
    """'42 s' or '6.1 min'."""
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"
