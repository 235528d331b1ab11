"""`widthnas run`'s settings: what they are, which numbers are allowed, and the rule for resuming a run
with them (the settings saved in its run_config.json must match, but for where it computes)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from widthnas._io import atomic_write_text, read_json
from widthnas.latency.check import CHECK_NETWORKS
from widthnas.latency.noise_floor import MIN_REMEASURE
from widthnas.mrf import parse_budget

from .checks import INT_NONNEG, INT_POS, POSITIVE, Rule, check_settings
from .export import VERIFY_ROUND_MS, VERIFY_ROUNDS
from .paths import same_setting
from .selection import UNARY_IMAGES

RECOVER = "delete it to redo the run's stages (finished artefacts stay), or choose another --out"

FREE_ON_RESUME = ("threads", "time_threads", "reuse_check")  # settings that change where a run computes, not what: a resume may change them


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
    verify_rounds: int = VERIFY_ROUNDS  # rounds before a verification timing's interval is judged (it may grow to 4 x)
    verify_round_ms: float = VERIFY_ROUND_MS  # ms per verification round (the search's measured candidates, verify; not the ladder)
    guard: bool = True  # watch the reference network for a disturbed machine while timing (--no-guard: off)
    reuse_check: bool = True  # reuse today's latency check of this profile on this machine kind (--recheck: off)
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
    for flag in ("guard", "curve", "time_threads", "reuse_check"):
        if not isinstance(getattr(cfg, flag), bool):
            raise ValueError(f"{where + ': ' if where else ''}{flag} {getattr(cfg, flag)!r}: expected true or false "
                             "(--no-guard, --curve, --time-threads, --recheck)")
    try:
        parse_budget(cfg.budget, 1.0)  # its syntax and sign now, not after profiling or training
    except ValueError as e:
        raise ValueError(f"{where + ': ' if where else ''}--{e}") from None


def settle(cfg: RunConfig, run_dir: Path) -> None:
    """Save the settings of a new run; for an existing one, refuse settings other than those it was
    started with (damaged saved settings included), so a resume never mixes two runs."""
    saved = run_dir / "run_config.json"
    if not saved.exists():
        atomic_write_text(saved, json.dumps(asdict(cfg), indent=1))
        return
    old = read_json(saved, "run settings", RECOVER)
    try:  # numbers read back from the file are checked as the options are
        old = RunConfig(**{k: v for k, v in old.items() if k in asdict(cfg)})  # settings added since: defaults
        check_run_config(old, str(saved))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{e}; the saved settings are damaged: choose another --out") from None
    diff = {k: (getattr(old, k), v) for k, v in asdict(cfg).items()
            if k not in FREE_ON_RESUME and not same_setting(k, getattr(old, k), v)}
    if diff:
        raise ValueError(f"{run_dir} holds a run with other settings {diff} (saved vs now); "
                         "rerun with the same settings to resume, or choose another --out")
