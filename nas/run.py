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
import warnings
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from widthnas._io import atomic_path, atomic_write_text, read_json, read_jsonl
from widthnas.latency import registry
from widthnas.latency.backends import OrtBackend
from widthnas.latency.check import CHECK_ROUNDS, CHECK_SEED, other_machine_choice
from widthnas.latency.check_cache import latency_check_today
from widthnas.latency.margin import parse_margin
from widthnas.latency.profile_here import HereSettings, profile_here
from widthnas.latency.standalone_runner import GuardSettings, LoadGuard, Protocol
from widthnas.latency.validate import scatter_plot
from widthnas.models.families import get_space
from widthnas.models.space import check_fingerprint
from widthnas.models.trace_weights import IMPORTANCE, check_state, load_state_file, user_network
from widthnas.mrf import budget_is_share, lagrangian, pareto_front
from widthnas.mrf.baselines import greedy
from widthnas.mrf.unaries import Unaries

from .curve import curve_markdown, supernet_curve, write_curve
from .data import check_fits, load_dataset, normalize, split
from .evaluate import accuracy, calibration_images, recalibrate_bn
from .export import export_onnx, network_measurer, verify_timing, write_sidecar
from .finetune import train_plain
from .flips import congruent_loss, flips_markdown, load_previous, torch_predictions
from .greedylr import GreedyOptions
from .paths import recorded_path, with_recorded_paths
from .report import plot_narrowing, plot_training, plot_widths, write_report
from .run_config import RECOVER, RunConfig, check_run_config, settle
from .run_summary import STAGES, duration, label, networks, stage_line, summary_text, uniform_name
from .runlog import LOG_NAME, WIDTH, short
from .search import aim, chosen_config, search, write_pareto
from .selection import cached_measured_unaries, holdout_split, supernet_accuracy, unary_image_count
from .threads import using_threads
from .train import CKPT, TrainConfig, Trainer, build_plain_network, load_checkpoint, make_supernet
from .uniform8 import CANNOT_TIME, measured_uniform8
from .verify import verify_exported


# What a run writes in its directory (the stages below), and in its supernet/ (nas/train.py's RUN_FILES)
RUN_WRITES = ("run_config.json", "run_state.json", "samples.jsonl", "heldout.jsonl", "heldout_remeasure.jsonl",
              "profile.json", "latency_check.jsonl", "latency_fit.png", "config.json", "pareto.csv", "pareto.png",
              "final_chosen.pt", "final_uniform.pt", "final_chosen_test_pred.pt", "final_uniform_test_pred.pt",
              "model.onnx", "model.json", "uniform.onnx", "uniform.json",
              "widths.png", "training.png", "narrowing.png", "curve.csv", "curve.png", "report.json", "report.md", "run.log")


class Run:
    def __init__(self, cfg: RunConfig, out: str | Path, log=print, progress: bool = True):
        parse_margin(cfg.margin)  # a bad margin is refused before anything is written
        check_run_config(cfg)
        cfg = with_recorded_paths(cfg)  # run_config.json reads the same from any directory (nas/paths.py)
        self.cfg, self.dir, self.log, self.progress = cfg, Path(out), log, progress
        self.space = get_space(cfg.space)  # the space, --weights and --profile are refused before anything is saved
        if cfg.weights:  # refused now, not after profiling and training
            check_state(self.space, load_state_file(cfg.weights))
        if cfg.profile:
            table = registry.load_profile(cfg.profile)
            check_fingerprint(table.space.fingerprint, self.space, f"--profile {cfg.profile}")
        self.dir.mkdir(parents=True, exist_ok=True)
        settle(cfg, self.dir)
        self.state_path = self.dir / "run_state.json"
        self.state = read_json(self.state_path, "run state", RECOVER) if self.state_path.exists() else {}

    # ---- plumbing --------------------------------------------------------------------------
    @cached_property
    def splits(self):
        ds = load_dataset(self.cfg.dataset, self.cfg.data)
        check_fits(ds, self.space)
        return split(ds, 0.1, self.cfg.seed, self.cfg.limit)

    def table(self):
        return registry.load_profile(self.state["profile"]["path"])

    def go(self) -> dict:
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
                    self.log(f"[{stage}] failed after {duration(time.time() - t0)}")
                    raise
                finally:
                    if end:
                        end()
            counts = self._log_warnings(stage, caught)
            secs = time.time() - t0
            self.state[stage] = {"done": True, "seconds": secs, **result}
            atomic_write_text(self.state_path, json.dumps(self.state, indent=1, default=float))
            head = f"[{stage}] {duration(secs)}: "
            self._say(head + short(stage_line(stage, result, self.state), WIDTH - len(head) - len(counts), " …") + counts)
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

    def _stage_threads(self, stage: str) -> dict | None:
        """Torch threads for the stage's own work: --threads; with --time-threads the faster of 1 and torch's
        default on a few repetitions of that work (nas/threads.py); else None (torch's default), as where
        torch does little. Not timed by default: it costs time, and more threads were faster (RESULTS §6)."""
        # imported here, not at the top: looked up when called (tests replace thread_counts)
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
                job = evaluation_probe(self._supernet(), unary_image_count(self.splits), self.cfg.seed)
            else:
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

    def _guard_settings(self):
        """The load guard's settings for this run's timings, or None (--no-guard)."""
        return GuardSettings(max_wait_s=self.cfg.max_wait) if self.cfg.guard else None

    def _protocol(self, rounds: int | None = None):
        """How this run times a profiling or check sample (recorded in the samples headers)."""
        return Protocol(rounds or self.cfg.profile_rounds, self.cfg.profile_round_ms, guard=self._guard_settings())

    # ---- stages ----------------------------------------------------------------------------
    def stage_profile(self) -> dict:
        backend = OrtBackend(self.space)
        if self.cfg.profile:
            path, why = self.cfg.profile, "given with --profile"
            table = registry.load_profile(path)  # its space was checked when the run was set up
            # onnxruntime with the profile's settings (threads, batch, ...): the check times networks as it was
            # made, as verify times the exported models; another backend's profile is refused here
            backend = verify_timing(table)[0]
        else:
            found, why = registry.matching_profiles(self.space, backend.device_info())
            if found:
                path = str(found[0])
            else:
                why += "; profiling this machine"
                self.log(f"profile: {why}")
                path = self._profile_here(backend)
            table = registry.load_profile(path)
        self.log(f"profile: {table.name or path}: {why}")
        check = self._latency_check(table, path, backend)
        if check["machine_note"] and not self.cfg.profile and Path(path).parent != self.dir:
            # a shipped profile of another machine behind the same device key (latency/check.py)
            action, path, table, why = other_machine_choice(path, table, found[1:], check,
                                                            budget_is_share(self.cfg.budget))
            self.log(f"profile: {why}")
            if action == "profile":
                path = self._profile_here(backend)
                table = registry.load_profile(path)
            if action != "keep":
                check = self._latency_check(table, path, backend)  # the same timed networks, against the new profile
        if check["machine_note"]:  # a profile used anyway (given, or its ratios hold): say what its ms mean here
            self.log(f"profile: note: {check['machine_note']}")
        return {"path": recorded_path(path, "profile"), "name": table.name or Path(path).stem, "why": why,
                "check": check}

    def _profile_here(self, backend) -> str:
        c = self.cfg
        settings = HereSettings(c.profile_networks, c.heldout_networks, c.remeasure_networks, c.ladder_rungs, c.seed,
                                c.max_wait)
        return str(profile_here(self.space, self.dir, backend, self._protocol(), settings, self.log, self.progress))

    @cached_property
    def _check_guard(self) -> LoadGuard | None:
        """One guard for the run's checks: a noisy level learnt on the first holds for a second (another profile)."""
        gs = self._guard_settings()
        return LoadGuard(gs, log=self.log) if gs is not None else None

    def _latency_check(self, table, path: str, backend) -> dict:
        """Time --check-networks random networks now and compare with the profile (at `path`): is it valid
        here today? A check of the same profile and networks made today on this machine kind is reused."""
        n = self.cfg.check_networks
        m, meas, pred = latency_check_today(table, path, backend, self.dir / "latency_check.jsonl", n,
                                            self.cfg.seed + CHECK_SEED,
                                            self._protocol(min(CHECK_ROUNDS, self.cfg.profile_rounds)),
                                            self.cfg.reuse_check, log=self.log, progress=self.progress,
                                            guard=self._check_guard)  # the level of a noisy host: m["noisy_spread"]
        when = f"timed today at {m['reused']['made'][11:16]} UTC" if m.get("reused") else "timed in this run"
        scatter_plot(self.dir / "latency_fit.png", meas, {"table": pred}, f"{table.name}: {n} networks {when}")
        self.log(f"latency check on {n} fresh networks ({when}): within ±10% {m['within_10']:.0%}, "
                 f"NRMSE {m['nrmse']:.2%}")
        return m

    def stage_train(self) -> dict:
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

    def _supernet(self):
        sup = make_supernet(self.space)
        sup.load_state_dict(load_checkpoint(self.dir / "supernet" / CKPT, self.space)["model"])
        return sup

    def stage_search(self) -> dict:
        table, sup, c = self.table(), self._supernet(), self.cfg
        if c.method == "select":  # measured after training on validation images selection never sees
            unaries_path = self.dir / "supernet" / "unaries_measured.json"
            unaries = cached_measured_unaries(sup, self.splits, unaries_path, c.unary_configs, log=self.log,
                                              progress=self.progress)
        else:  # the training-time statistics
            unaries_path = self.dir / "supernet" / "unaries.json"
            unaries = Unaries.load(unaries_path)
        try:
            budget, widest, target, margin_pct, margin_how = aim(table, c.budget, c.margin,
                                                                 self.state["profile"].get("check"))
        except ValueError as e:  # the check recorded by the profile stage is broken
            raise ValueError(f"{self.dir / 'run_state.json'}, profile.check: {e}; {RECOVER}") from None
        if margin_pct:
            self.log(f"search: aiming at {target:.4f} ms, margin {margin_how}")
        measure = None
        if c.method == "select":  # the candidates timed here, as verify will, for an onnxruntime profile
            self.log("search: MRF candidates, uniform and greedy, judged by the supernet on held-out validation images")
            try:
                measure = network_measurer(sup, table, self.dir / "candidates", c.verify_rounds, c.verify_round_ms)
            except ValueError as e:
                self.log(f"search: candidates judged on predicted latency only ({e})")
        sol, uni, mrf = search(table, unaries, c.method, target, budget, sup, self.splits, measure, self.log,
                               slim_images=c.slim_images)
        front = sol.pareto if sol.pareto is not None else pareto_front(mrf)
        write_pareto(self.dir / "pareto.csv", front, sol, uni, target)
        atomic_write_text(self.dir / "config.json", json.dumps(chosen_config(
            self.space, table, sol, recorded_path(unaries_path), c.budget, budget, margin_pct, margin_how), indent=1))
        # compared with the chosen network: uniform8, the multiplier rounded to 8 channels that spends the budget
        # on measurement (as the benchmarks define it); where nothing can be timed here, the ladder's uniform
        compared = measured_uniform8(sup, table, budget, self.dir / "candidates", c.verify_rounds, c.verify_round_ms,
                                     self.log, self._dense_space)
        if compared is CANNOT_TIME:
            compared = _record(uni)
        sup_acc, n_held = self._supernet_says(sup, sol, budget, compared)
        return {"budget_ms": budget, "widest_ms": widest, "target_ms": target, "margin_pct": margin_pct,
                "margin_how": margin_how, "chosen": _record(sol), "uniform": compared, "uniform_ladder": _record(uni),
                "greedy": _record(greedy(mrf, target)), "lagrangian": _record(lagrangian(mrf, target)),
                "pareto_points": len(front), "unaries": recorded_path(unaries_path), "supernet_holdout_acc": sup_acc,
                "holdout_images": n_held}

    def _supernet_says(self, sup, sol, budget: float, compared: dict | None) -> tuple[dict, int]:
        """The supernet's held-out accuracy of the chosen and the compared network (the MRF's predicted gain
        is only real if this agrees), and the number of held-out images."""
        held = holdout_split(self.splits)
        acc = {"chosen": supernet_accuracy(sup, sol.widths, self.splits, held)[0]}
        if compared:
            acc["uniform"] = supernet_accuracy(sup, compared["widths"], self.splits, held,
                                               space=self._space_of_record(compared))[0]
        self.log(f"search: chosen {sol.widths}, predicted {sol.latency:.4f} ms (budget {budget:.4f} ms), supernet "
                 f"held-out acc {acc['chosen']:.4f}" + (f"; {uniform_name(compared)}: supernet held-out acc "
                                                        f"{acc['uniform']:.4f}" if compared else ""))
        return acc, len(held[1])

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
        sp, c = self.splits, self.cfg
        sup = None if c.retrain_epochs else self._supernet()  # training starts from it, or from --weights
        user_sd = load_state_file(c.weights) if c.weights and sup is not None else None
        epochs, lr, verb = ((c.retrain_epochs, c.lr, "retrain") if c.retrain_epochs else
                            (c.finetune_epochs, c.lr * 0.2, "finetune"))
        mode = f"{verb} {epochs} epochs" + (f" from {Path(c.weights).name} (--weights), channels by {IMPORTANCE} "
                                            "importance" if user_sd is not None else "")
        kw = {"schedule": c.schedule, "greedy": GreedyOptions.parse(c.greedy)}  # and the positive-congruent loss
        if c.congruent:
            kw["loss_fn"] = congruent_loss(load_previous(c.congruent, sp, self.space), c.congruent_weight)
            mode += f", positive-congruent toward {Path(c.congruent).name} (weight {c.congruent_weight:g})"
        out = {"mode": mode}  # for the report: where the weights come from and the loss
        for name in networks(self.state):
            widths = self.state["search"][name]["widths"]
            net = self._starting_network(name, widths, sup, user_sd)
            hist = train_plain(net, sp, epochs, lr=lr, seed=c.seed, log=self.log, desc=f"{name} {verb}",
                               progress=self.progress, **kw) if epochs else []
            val_acc = accuracy(net, *sp.val, sp.mean, sp.std)[0]
            pred = torch_predictions(net, sp.test[0], sp.mean, sp.std)  # (test images,) classes
            test_acc = float((pred == sp.test[1]).double().mean())  # reported, never used for decisions
            with atomic_path(self.dir / f"final_{name}.pt") as tmp:
                torch.save(net.state_dict(), tmp)
            with atomic_path(self.dir / f"final_{name}_test_pred.pt") as tmp:  # the report's flips reuse them
                torch.save(pred, tmp)
            out[name] = {"widths": widths, "val_acc": val_acc, "test_acc": test_acc, "history": hist}
            self.log(f"{name}: val acc {val_acc:.4f}, test acc {test_acc:.4f}")
        return out

    def _starting_network(self, name: str, widths: list[int], sup, user_sd: dict | None):
        """The network training starts from: fresh (--retrain-epochs: no supernet), else the user's model
        (--weights: user_sd) or the supernet sliced to the widths, BN recalibrated."""
        sp, space = self.splits, self._space_of(name)
        if sup is None:
            torch.manual_seed(self.cfg.seed)
            return build_plain_network(space, widths)
        net = sup.materialize(widths, space) if user_sd is None else user_network(space, user_sd, widths)
        recalibrate_bn(net, calibration_images(sp, 1024), sp.mean, sp.std)
        self.log(f"{name}: val acc {accuracy(net, *sp.val, sp.mean, sp.std)[0]:.4f} from "
                 f"{'the supernet' if user_sd is None else Path(self.cfg.weights).name} after BN recalibration")
        return net

    def _test_predictions(self, name: str) -> torch.Tensor:
        """The fine-tuned network's test-set classes: those its fine-tuning saved (evaluating 10 000 images
        again took most of the demo's report stage), else computed (a run fine-tuned before they were saved)."""
        path, n = self.dir / f"final_{name}_test_pred.pt", len(self.splits.test[1])
        if path.exists():
            pred = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(pred, torch.Tensor) and pred.shape == (n,):
                return pred
        return torch_predictions(self._final_net(name), self.splits.test[0], self.splits.mean, self.splits.std)

    def _final_net(self, name: str):
        net = build_plain_network(self._space_of(name), self.state["finetune"][name]["widths"])
        net.load_state_dict(torch.load(self.dir / f"final_{name}.pt", map_location="cpu", weights_only=True))
        return net.eval()

    def stage_export(self) -> dict:
        sp, out = self.splits, {}
        real = normalize(sp.test[0][:256], sp.mean, sp.std)
        for name in networks(self.state):
            fname = {"chosen": "model.onnx", "uniform": "uniform.onnx"}[name]
            v = export_onnx(self._final_net(name), self._space_of(name), self.dir / fname, real)
            out[name] = {"path": recorded_path(self.dir / fname), **v}  # verify reads it, maybe from elsewhere
            self.log(f"export {name}: {self.dir / fname}, ORT vs torch max abs diff {v['max_abs_diff']:.2e}")
        return out

    def stage_verify(self) -> dict:
        table, out, c = self.table(), {}, self.cfg
        gs = self._guard_settings()  # a disturbed machine is waited out, not averaged into the verdict
        guard = LoadGuard(gs, log=self.log) if gs is not None else None
        if guard is not None:  # not waited out again at every timing (RESULTS §6)
            check = self.state["profile"].get("check") or {}  # anything else than a dict is refused as damaged
            guard.assume_noisy(check.get("noisy_spread", 0.0) if isinstance(check, dict) else check)
        for name in networks(self.state):
            exported, fin = self.state["export"][name], self.state["finetune"][name]
            m = verify_exported(exported["path"], table, self.state["search"]["budget_ms"],
                                self.state["search"][name]["predicted_ms"], c.verify_rounds, c.verify_round_ms, guard,
                                self.log, label(self.state, name))
            out[name] = m = {**m, "max_abs_diff": exported["max_abs_diff"]}
            write_sidecar(exported["path"], fin["widths"], self._space_of(name), table,
                          accuracy={"val": fin["val_acc"], "test": fin["test_acc"]}, latency=m, verify=exported,
                          budget=c.budget, normalization={"mean": self.splits.mean.tolist(),
                                                          "std": self.splits.std.tolist()})
        return out

    def stage_report(self) -> dict:
        st = self.state
        fix = "delete the run's supernet/ directory and run_state.json to retrain, or choose another --out"
        sup_metrics = read_jsonl(self.dir / "supernet" / "metrics.jsonl", "supernet metrics", fix)
        nar = self.dir / "supernet" / "narrowing.jsonl"
        snaps = read_jsonl(nar, "narrowing log", fix) if nar.exists() else []
        uni = st["search"]["uniform"]
        plot_widths(self.dir / "widths.png", self.space, st["search"]["chosen"]["widths"], uni and uni["widths"])
        plot_training(self.dir / "training.png", sup_metrics,
                      {k: st["finetune"][k]["history"] for k in networks(self.state)})
        has_nar = plot_narrowing(self.dir / "narrowing.png", self.space, snaps)
        flips, extra = self._flips_section()
        if self.cfg.curve:  # the supernet's width-error curve (every uniform multiplier, BN recalibrated)
            rows = supernet_curve(self._supernet(), self.space, self.splits, table=self.table(), log=self.log)
            write_curve(self.dir / "curve.csv", self.dir / "curve.png", rows)
            extra += curve_markdown(rows, "curve.png")
        res = {"space": {"name": self.space.name, "fingerprint": self.space.fingerprint}, "dataset": self.cfg.dataset,
               "budget": self.cfg.budget, "config": asdict(self.cfg), "profile": st["profile"], "search": st["search"],
               "finetune": {k: v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "history"}
                            for k, v in st["finetune"].items()},
               "verify": st["verify"], "onnx": st["export"]["chosen"]["path"], "narrowing_plot": has_nar,
               "supernet": sup_metrics,
               # the report's own time up to writing it (the write is what is left)
               "stage_seconds": {**{k: st[k]["seconds"] for k in STAGES if k in st and "seconds" in st[k]},
                                 "report": time.time() - getattr(self, "_stage_t0", time.time())},
               "flips": flips}
        path = write_report(self.dir, res, extra)
        return {"report": recorded_path(path),
                "flips": {k: {m: r[m] for m in ("nfr", "pfr")} for k, r in flips.items()}}

    def _flips_section(self) -> tuple[dict, list[str]]:
        """(flip records, report lines) of the chosen network against the uniform one (and --previous), test set."""
        sp = self.splits
        x, y = sp.test
        pred = {k: self._test_predictions(k) for k in networks(self.state)}
        old = {"uniform network": pred["uniform"]} if "uniform" in pred else {}
        if self.cfg.previous:
            prev = load_previous(self.cfg.previous, sp, self.space)
            old[f"previous model `{self.cfg.previous}`"] = prev(x).argmax(1)
        return flips_markdown(y, old, pred["chosen"], self.space.num_classes)

    def summary(self) -> str:
        c = self.cfg
        return summary_text(self.state, self.space, self.dir, (c.epochs, c.limit) if c.limit else None)


def _record(sol) -> dict | None:
    """A solution as run_state.json keeps it (numpy floats as floats)."""
    if sol is None:
        return None
    d = sol.to_dict()
    return {**d, "info": {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in d["info"].items()}}


_PACKAGE = Path(__file__).resolve().parent.parent  # warnings raised in widthnas's own code are a run's notes


def _ours(filename: str) -> bool:
    """Raised in widthnas's code (not a library's, even one installed in a venv inside the checkout)."""
    p = Path(filename).resolve()
    return _PACKAGE in p.parents and not {"site-packages", "dist-packages"} & set(p.relative_to(_PACKAGE).parts)
