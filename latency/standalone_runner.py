#!/usr/bin/env python3
"""widthnas latency runner: the onnxruntime timing protocol and the samples JSONL format.

Copied verbatim into edge-device bundles (`widthnas profile --bundle DIR`), so standard library, numpy
and onnxruntime only; widthnas's own onnxruntime backend uses it too, so both measure the same way.

On a device:  python3 runner.py [--provider CPUExecutionProvider] [--threads 1] [--out samples.jsonl]
run inside the bundle directory; rerun a killed run to continue (LoadGuard: --no-guard turns it off).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

SAMPLES_FORMAT = "widthnas-samples/1"
MANIFEST = "manifest.json"


# ---- device ---------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The widest vector ISA the CPU offers: two CPUs sold under one model name ("AMD EPYC") can run a
    224 px network 2x apart when only one has AVX-512 (RESULTS.md §2.2c). "" when unknown."""
    flags: set[str] = set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        # no /proc/cpuinfo (macOS, Windows): every 64-bit ARM core has NEON; x86 stays unknown
        return "neon" if platform.machine().lower() in ("arm64", "aarch64") else ""
    for isa, need in (("avx512", {"avx512f", "avx512bw", "avx512vl"}), ("avx2", {"avx2", "fma"}), ("avx", {"avx"}),
                      ("sse4.2", {"sse4_2"}), ("sve2", {"sve2"}), ("sve", {"sve"}),
                      ("neon", {"asimd"}), ("neon", {"neon"})):  # asimd: 64-bit ARM; neon: 32-bit ARM
        if need <= flags:
            return isa
    return ""


def device_info(backend: str, provider: str, threads: int, batch: int, opt_level: str, runtime_version: str,
                gpu: str = "") -> dict:
    """What a latency depends on besides the network; profiles are only valid for an equal device key."""
    return {
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "backend": backend,  # "onnxruntime" | "torch"
        "runtime_version": runtime_version,
        "provider": provider,  # ORT execution provider, or torch device
        "gpu": gpu,
        "threads": threads,
        "batch": batch,
        "opt_level": opt_level,
    }


DEVICE_KEY = ("cpu", "isa", "cores", "backend", "provider", "gpu", "threads", "batch", "opt_level")
UNRECORDED_OK = ("isa",)  # older files lack it: a file without it matches any ISA


def device_key(info: dict) -> dict:
    return {k: info.get(k) for k in DEVICE_KEY}


def device_differences(want: dict, got: dict) -> dict:
    """{field: (want, got)} of the differing device-key fields; one in UNRECORDED_OK that a side lacks is not."""
    a, b = device_key(want), device_key(got)
    return {k: (a[k], b[k]) for k in DEVICE_KEY
            if a[k] != b[k] and not (k in UNRECORDED_OK and (a[k] in (None, "") or b[k] in (None, "")))}


def describe_differences(diff: dict, left: str = "wanted", right: str = "found") -> str:
    """Name what differs and both values (e.g. "isa: avx512 wanted, avx2 found"), for error messages."""
    def show(v):
        return "(not recorded)" if v in (None, "") else v
    return "; ".join(f"{k}: {show(a)} {left}, {show(b)} {right}" for k, (a, b) in diff.items())


# ---- onnxruntime sessions -------------------------------------------------------------
OPT_LEVELS = ("disable", "basic", "extended", "all")


def check_provider(provider: str) -> None:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider not in available:
        known = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
                 "OpenVINOExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider",
                 "ROCMExecutionProvider", "QNNExecutionProvider", "XnnpackExecutionProvider")
        what = "not installed in this onnxruntime build" if provider in known else "not a known execution provider"
        raise ValueError(f"execution provider {provider!r} is {what}; this build offers {available}. "
                         "Install the onnxruntime package for it (e.g. onnxruntime-gpu for CUDA/TensorRT).")


def ort_session(model, provider: str = "CPUExecutionProvider", threads: int = 1, opt_level: str = "all"):
    """A session with explicit threads and optimisation level; `model` is a path or serialized bytes."""
    import onnxruntime as ort

    check_provider(provider)
    if opt_level not in OPT_LEVELS:
        raise ValueError(f"graph optimisation level {opt_level!r}; choose one of {OPT_LEVELS}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = "ORT_DISABLE_ALL" if opt_level == "disable" else f"ORT_ENABLE_{opt_level.upper()}"  # basic, extended, all
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    return ort.InferenceSession(model, so, providers=providers)


def ort_runner(sess, batch: int, provider: str) -> Callable[[], None]:
    """A zero-argument call that runs one inference; on GPU through IOBinding with device-resident data."""
    import onnxruntime as ort

    inp = sess.get_inputs()[0]
    shape = [batch] + [int(d) for d in inp.shape[1:]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    if provider == "CPUExecutionProvider":
        feed = {inp.name: x}
        out = [o.name for o in sess.get_outputs()]
        return lambda: sess.run(out, feed)
    dev = "cuda" if provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
    binding = sess.io_binding()
    binding.bind_ortvalue_input(inp.name, ort.OrtValue.ortvalue_from_numpy(x, dev, 0))
    for o in sess.get_outputs():
        binding.bind_output(o.name, dev)

    def run() -> None:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


# ---- the timing protocol --------------------------------------------------------------
def time_runs(run: Callable[[], None], n: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Wall time of n back-to-back calls, in ms."""
    out = []
    for _ in range(n):
        t0 = clock()
        run()
        out.append((clock() - t0) * 1e3)
    return out


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"min": float(a.min()), "median": float(med), "iqr": float(q3 - q1), "count": int(a.size)}


# two-sided 95 % Student t quantiles by degrees of freedom (numpy only: this file runs on edge devices)
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def rel_half_width(ratios: list[float]) -> float:
    """Relative half-width of the 95 % t-interval of the mean per-round log ratio (0.01 = ±1 %)."""
    x = np.log(np.asarray(ratios, float))
    if x.size < 2:
        return float("inf")
    t = _T95[x.size - 2] if x.size - 2 < len(_T95) else 1.96
    return float(np.expm1(t * x.std(ddof=1) / np.sqrt(x.size)))


# Rounds a sample may grow to, as a multiple of its first `rounds`: rounds are not independent, so the
# cap, not the interval, sets most samples' precision (docs/RESULTS.md §2.1c).
ROUNDS_CAP = 12

# A sample's ratio from its rounds. "rounds": the median of per-round ratios (a slow spell longer than a
# round divides out within it); "pooled": median(network runs) / median(reference runs), which mixes spells.
RATIOS = ("rounds", "pooled")


def measure(run_net: Callable[[], None], run_ref: Callable[[], None], rounds: int = 5,
            round_ms: float = 10.0, min_runs: int = 5, max_runs: int = 200, warmup: int = 5,
            max_ref_iqr: float = 0.10, retries: int = 2, target_ci: float = 0.01, max_rounds: int | None = None,
            time_cap_s: float = 20.0, clock: Callable[[], float] = time.perf_counter, ratio: str = "rounds") -> dict:
    """Time a network interleaved with the reference network, until the ratio is known to ±target_ci.

    Alternating rounds of ~`round_ms` each, after `warmup` untimed runs. `norm`, the network's latency
    over the reference's, divides out machine-speed drift (docs/design.md section 3); `ratio` picks its
    estimate (RATIOS; `norms` records both). After `rounds` rounds, more are added while the 95 % interval
    is wider than ±target_ci, up to `max_rounds` (default ROUNDS_CAP x rounds) or `time_cap_s`; else
    settled=False. A reference spread over `max_ref_iqr` (IQR / median) means a disturbed machine: measured
    again up to `retries` times (`attempts`).
    """
    max_rounds = max(rounds, max_rounds if max_rounds is not None else ROUNDS_CAP * rounds)
    if ratio not in RATIOS:
        raise ValueError(f"ratio {ratio!r}: expected one of {', '.join(RATIOS)}")
    for _ in range(warmup):
        run_net()
    est = max(min(time_runs(run_net, 2, clock)), 1e-3)
    est_ref = max(min(time_runs(run_ref, 2, clock)), 1e-3)
    n_net = int(np.clip(np.ceil(round_ms / est), min_runs, max_runs))
    n_ref = int(np.clip(np.ceil(round_ms / est_ref), min_runs, max_runs))
    t0 = clock()
    for attempt in range(retries + 1):
        net, ref, ratios = [], [], []
        while True:
            r = len(ratios)
            pair = [(net, run_net, n_net), (ref, run_ref, n_ref)]
            got = {}
            for acc, fn, n in (pair if r % 2 == 0 else pair[::-1]):
                got[id(acc)] = time_runs(fn, n, clock)
                acc.extend(got[id(acc)])
            ratios.append(float(np.median(got[id(net)]) / np.median(got[id(ref)])))
            if len(ratios) >= rounds and (rel_half_width(ratios) <= target_ci or len(ratios) >= max_rounds
                                          or clock() - t0 > time_cap_s):
                break
        s_net, s_ref = stats(net), stats(ref)
        if s_ref["iqr"] / s_ref["median"] <= max_ref_iqr or clock() - t0 > time_cap_s:
            break
    ci = rel_half_width(ratios)
    norms = {"rounds": float(np.median(ratios)), "pooled": s_net["median"] / s_ref["median"]}
    return {"ms": s_net, "ref_ms": s_ref, "norm": norms[ratio], "norms": norms, "attempts": attempt + 1,
            "rounds": len(ratios), "ci_rel": ci, "settled": bool(ci <= target_ci)}


# ---- the protocol as recorded, and the load guard --------------------------------------
@dataclass
class GuardSettings:
    """When the reference network says the machine is disturbed (see LoadGuard for the reasons)."""
    drift: float = 0.15  # reference median this far over its baseline (relative) = disturbed
    spread: float = 0.10  # reference IQR / median over this = disturbed (measure's own max_ref_iqr)
    max_wait_s: float = 60.0  # s, longest wait for the machine to settle, per disturbance
    retries: int = 2  # re-measurements of a disturbed sample before it is kept out as disturbed
    window: int = 15  # accepted samples whose reference medians make the baseline
    probe_ms: float = 50.0  # ms, length of one probe of the reference alone while waiting
    step_s: float = 2.0  # s, pause between probes while waiting


@dataclass
class Protocol:
    """How one sample is timed. A samples header records it (`settings`), so that a resumed run, a
    re-measurement and a bundle on a device time the same way."""
    rounds: int = 5  # alternating net/reference rounds before the interval is first judged
    round_ms: float = 10.0  # ms, length of one round
    target_ci: float = 0.01  # 95 % interval of the ratio within ±1 % settles a sample
    max_rounds: int = 0  # 0: up to ROUNDS_CAP x rounds (adaptive); equal to rounds: fixed rounds
    time_cap_s: float = 20.0  # s, per sample (and per re-measurement)
    guard: GuardSettings | None = field(default_factory=GuardSettings)  # None: no disturbance check
    ratio: str = "rounds"  # how `norm` is estimated from the rounds (RATIOS); files without it: "pooled"

    @classmethod
    def fixed(cls, rounds: int = 5, round_ms: float = 10.0) -> "Protocol":
        """Fixed rounds, pooled medians, no disturbance check."""
        return cls(rounds, round_ms, max_rounds=rounds, guard=None, ratio="pooled")

    def rounds_cap(self) -> int:
        return max(self.rounds, self.max_rounds or ROUNDS_CAP * self.rounds)

    def settings(self) -> dict:
        """The header form (`settings` of a samples file)."""
        d = asdict(self)
        d["max_rounds"] = self.rounds_cap()
        return d

    @classmethod
    def from_settings(cls, d: dict, where: str = "samples header") -> "Protocol":
        """The protocol a header records, every number checked; missing keys take today's defaults,
        except `ratio` ("pooled")."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: settings is not an object; not a widthnas samples header")
        base = cls()
        p = cls(**{k: _num(d, k, getattr(base, k), where, *lim) for k, lim in _PROTOCOL_LIMITS.items()}, guard=None)
        p.ratio = d.get("ratio", "pooled")  # files from before it was recorded pooled the medians
        if p.ratio not in RATIOS:
            raise ValueError(f"{where}: settings.ratio is {p.ratio!r}, expected one of {', '.join(RATIOS)}; the file "
                             "was edited or is corrupt: profile again into a new file")
        if p.max_rounds and p.max_rounds < p.rounds:
            raise ValueError(f"{where}: settings.max_rounds {p.max_rounds} is below rounds {p.rounds}; "
                             "the file was edited or is corrupt: profile again into a new file")
        g = d.get("guard", asdict(GuardSettings()))  # older files: today's check
        if g is not None:
            if not isinstance(g, dict):
                raise ValueError(f"{where}: settings.guard is {g!r}, expected an object or null")
            gb, w = GuardSettings(), f"{where} settings.guard"
            p.guard = GuardSettings(**{k: _num(g, k, getattr(gb, k), w, *lim) for k, lim in _GUARD_LIMITS.items()})
        return p


# (type, lowest, highest) of every number a header's settings record, in the order they are checked
_PROTOCOL_LIMITS = {"rounds": (int, 1, 10_000), "round_ms": (float, 1e-3, 1e6), "target_ci": (float, 1e-6, 1.0),
                    "max_rounds": (int, 0, 1_000_000), "time_cap_s": (float, 1e-3, 1e6)}
_GUARD_LIMITS = {"drift": (float, 1e-3, 100.0), "spread": (float, 1e-3, 100.0), "max_wait_s": (float, 0.0, 86400.0),
                 "retries": (int, 0, 100), "window": (int, 1, 10_000), "probe_ms": (float, 1e-3, 1e6),
                 "step_s": (float, 0.0, 3600.0)}


def _num(d: dict, key: str, default, where: str, kind, lo: float, hi: float):
    """d[key] (or the default when absent) as `kind`, finite and within [lo, hi], or a ValueError naming it."""
    v = d.get(key, default)
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and lo <= v <= hi
            and (kind is not int or float(v) == int(v))):
        raise ValueError(f"{where}: {key} is {v!r}; expected a finite {'whole ' if kind is int else ''}number in "
                         f"[{lo:g}, {hi:g}]. The file was edited or is corrupt: profile again into a new file")
    return kind(v)


NOISY_SAMPLES = 3  # samples left out for spread among the last NOISY_WINDOW: the host is noisy by nature
NOISY_WINDOW = 6  # samples, kept or left out (LoadGuard.left_out): a drifting or clean one between does not reset
NOISY_MAX_SPREAD = 0.5  # IQR / median: a host spreading more stays unusable for timing


def noisy_level_ok(x) -> bool:
    """A noisy host's reference spread as read back from a file (run_state, the check cache): a number in [0, max]."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= NOISY_MAX_SPREAD


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class LoadGuard:
    """Tells a disturbed machine from the reference network's timing, waits it out, and says so.

    The baseline is the median reference time of the last `window` accepted samples (before any, of
    probes of the reference alone). A sample is disturbed when its reference median is over `drift` above
    the baseline (docs/design.md §3), or the reference's IQR / median is over `spread` (its runs were
    interrupted). A faster reference is never a disturbance; slow (thermal) drift moves the baseline along.
    The guard then probes the reference every `step_s` until it is back or `max_wait_s` passed; a reference
    steady at a new speed (three probes within drift/2) becomes the baseline, so lasting load is waited
    out once. Both thresholds are at least twice the quietest probe's spread, else a tiny reference
    (timer overhead) would count as disturbed on every sample.
    """

    def __init__(self, settings: GuardSettings | None = None, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None):
        self.s = settings or GuardSettings()
        self.clock, self.sleep, self.log = clock, sleep, log or _stderr
        self.start_ms: float | None = None  # ms, reference median from the starting probes
        self.recent: list[float] = []  # ms, reference medians of the last accepted samples
        self.quiet_spread = 0.0  # IQR / median of the reference on its quietest starting probe
        self.noisy_spread = 0.0  # IQR / median of a host noisy by nature
        self._last: list[float | None] = []  # the last NOISY_WINDOW samples: spread if left out for it, else None

    @property
    def baseline(self) -> float | None:
        """ms: what the reference takes on this machine now, undisturbed."""
        if len(self.recent) >= 3:
            return float(np.median(self.recent))
        return self.start_ms

    def probe(self, run_ref: Callable[[], None]) -> dict:
        """Stats of the reference timed alone for about `probe_ms`."""
        est = self.baseline or max(min(time_runs(run_ref, 2, self.clock)), 1e-3)
        return stats(time_runs(run_ref, int(np.clip(np.ceil(self.s.probe_ms / est), 5, 200)), self.clock))

    def start(self, run_ref: Callable[[], None]) -> None:
        """Baseline from three probes of the warmed-up reference (once per run)."""
        if self.start_ms is not None:
            return
        time_runs(run_ref, 5, self.clock)
        probes = [self.probe(run_ref) for _ in range(3)]
        meds = [p["median"] for p in probes]
        self.start_ms = float(np.median(meds))
        self.quiet_spread = float(min(p["iqr"] / p["median"] for p in probes))
        if max(meds) / min(meds) > 1 + self.s.drift:
            self.log(f"note: the machine looks busy already: reference {min(meds):.3f}-{max(meds):.3f} ms over three "
                     "probes; disturbances are judged against their median")

    @property
    def thresholds(self) -> tuple[float, float]:
        """(drift, spread) in use: the settings', raised to twice the quiet spread (spread: to a noisy host's own)."""
        floor = 2 * self.quiet_spread
        return max(self.s.drift, floor), max(self.s.spread, floor, self.noisy_spread)

    def check(self, ref: dict) -> str | None:
        """Why a sample whose reference timed `ref` (stats) was disturbed, or None."""
        base, (drift, spread) = self.baseline, self.thresholds
        if base is not None and ref["median"] > base * (1 + drift):
            return (f"reference {ref['median']:.3f} ms, {ref['median'] / base - 1:+.0%} over its baseline "
                    f"{base:.3f} ms (threshold +{drift:.0%})")
        sp = ref["iqr"] / ref["median"]
        if sp > spread:
            return f"reference timings spread {sp:.0%} (IQR / median; threshold {spread:.0%})"
        return None

    def accept(self, ref: dict) -> None:
        self.recent = (self.recent + [ref["median"]])[-self.s.window:]
        self._last = (self._last + [None])[-NOISY_WINDOW:]

    def left_out(self, ref: dict, why: str) -> None:
        """Spread that outlasts the waits of NOISY_SAMPLES of the last NOISY_WINDOW samples is the host's own
        (RESULTS §6): the threshold. Not only in a row: a noisy host also drifts, and lets a sample through now
        and then (the demo at 56d1e02 mixed the three, the count kept restarting, its check took 8.4 min). A sample
        left out for drift counts when its spread was over the threshold too (check() names the drift first)."""
        sp = ref["iqr"] / ref["median"]
        self._last = (self._last + [sp if sp > self.thresholds[1] else None])[-NOISY_WINDOW:]
        spreads = [x for x in self._last if x is not None]
        if len(spreads) >= NOISY_SAMPLES:
            level, self._last = 1.1 * max(spreads), []
            if level <= NOISY_MAX_SPREAD:
                self.noisy_spread = level
                self.log(f"the reference spread up to {level / 1.1:.0%} on {len(spreads)} of the last "
                         f"{NOISY_WINDOW} samples: this host is noisy by nature, not disturbed; spread is judged "
                         f"against {level:.0%} from now on")

    def assume_noisy(self, spread: float) -> None:
        """Judge spread against a noisy host's own level found earlier (a run's check, read back from run_state)."""
        if not noisy_level_ok(spread):
            raise ValueError(f"a noisy host's reference spread {spread!r}: expected a number in [0, {NOISY_MAX_SPREAD}] "
                             "(run_state.json damaged? delete it to redo the run's stages)")
        self.noisy_spread = float(spread)

    def wait(self, run_ref: Callable[[], None]) -> dict:
        """Wait (bounded) until the reference is back within the thresholds; {waited_s, quiet, rebaselined}."""
        t0, meds = self.clock(), []
        step = min(self.s.step_s, self.s.max_wait_s / 4)  # s; a short wait still holds the 3 probes a new level needs
        while self.clock() - t0 < self.s.max_wait_s:
            self.sleep(min(step, max(0.0, self.s.max_wait_s - (self.clock() - t0))))
            p = self.probe(run_ref)
            meds.append(p["median"] if p["iqr"] / p["median"] <= self.thresholds[1] else float("inf"))
            if self.check(p) is None:
                return {"waited_s": round(self.clock() - t0, 3), "quiet": True, "rebaselined": False}
        last = meds[-3:]
        steady = bool(len(last) == 3 and np.all(np.isfinite(last))
                      and max(last) / min(last) <= 1 + self.thresholds[0] / 2)
        if steady:
            old = self.baseline
            self.start_ms, self.recent = float(np.median(last)), []
            self.log(f"the reference has stayed at {self.start_ms:.3f} ms (baseline was {old:.3f} ms) for the last "
                     "three probes: the machine's speed changed; that is the new baseline")
        return {"waited_s": round(self.clock() - t0, 3), "quiet": steady, "rebaselined": steady}


def measure_sample(run_net: Callable[[], None], run_ref: Callable[[], None], protocol: Protocol,
                   guard: LoadGuard | None = None, clock: Callable[[], float] = time.perf_counter,
                   what: str = "sample") -> dict:
    """measure() by `protocol`; with a guard, a disturbed sample is said, waited out and measured again.
    Adds `remeasured`, `disturbed` (left out of fits) and `rejected` (what was discarded)."""
    kw = dict(rounds=protocol.rounds, round_ms=protocol.round_ms, target_ci=protocol.target_ci,
              max_rounds=protocol.rounds_cap(), time_cap_s=protocol.time_cap_s, ratio=protocol.ratio)
    if guard is None:
        return measure(run_net, run_ref, clock=clock, **kw)
    guard.start(run_ref)
    rejected: list[dict] = []
    while True:
        rec = measure(run_net, run_ref, clock=guard.clock, **kw)
        why = guard.check(rec["ref_ms"])
        if why is None or len(rejected) >= guard.s.retries:
            break
        guard.log(f"{what}: machine disturbed: {why}; waiting up to {guard.s.max_wait_s:g} s for it to settle, then "
                  f"measuring again ({len(rejected) + 1} of {guard.s.retries})")
        w = guard.wait(run_ref)
        if not w["quiet"]:
            guard.log(f"{what}: still disturbed after {w['waited_s']:.0f} s; measuring again anyway")
        rejected.append({"norm": rec["norm"], "ref_median": rec["ref_ms"]["median"], "why": why, **w})
    if why is None:
        guard.accept(rec["ref_ms"])
    else:
        guard.log(f"{what}: still disturbed after {len(rejected)} re-measurement(s) ({why}): recorded as disturbed, "
                  "left out of fits")
        guard.left_out(rec["ref_ms"], why)
    rec.update(remeasured=len(rejected), disturbed=why is not None)
    if rejected:
        rec["rejected"] = rejected
    if why is not None:
        rec["disturbance"] = why
    return rec


# ---- samples JSONL --------------------------------------------------------------------
def append_text(path, text: str) -> None:
    """Append text durably (fsynced): a crash loses at most this text, and a torn last line left by a
    killed writer is ended first, so it never glues onto this one (it is skipped on read)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path, record: dict) -> None:
    """Append one JSON line durably (append_text)."""
    append_text(path, json.dumps(record, separators=(",", ":")) + "\n")


def read_samples(path: str) -> tuple[dict, list[dict], int]:
    """(header, samples, number of corrupt lines skipped). Corrupt lines are skipped with a warning."""
    header, samples, bad = None, [], 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError:
                bad += 1
                warnings.warn(f"{path}:{lineno}: corrupt or truncated line skipped")
                continue
            if rec.get("type") == "header":
                if header is None:
                    header = rec
                continue
            if "widths" not in rec or "norm" not in rec:
                bad += 1
                warnings.warn(f"{path}:{lineno}: line without widths/norm skipped")
                continue
            samples.append(rec)
    if header is None:
        raise ValueError(f"{path}: no header line; not a widthnas samples file (format {SAMPLES_FORMAT})")
    if header.get("format") != SAMPLES_FORMAT:
        raise ValueError(f"{path}: samples format {header.get('format')!r}, expected {SAMPLES_FORMAT!r}")
    return header, samples, bad


# ---- bundle runner --------------------------------------------------------------------
def run_bundle(bundle_dir: str, out: str, provider: str, threads: int, opt_level: str, rounds: int,
               round_ms: float, guard: bool = True) -> int:
    import onnxruntime as ort

    with open(os.path.join(bundle_dir, MANIFEST)) as f:
        manifest = json.load(f)
    batch = int(manifest["batch"])
    protocol = Protocol(rounds, round_ms) if guard else Protocol(rounds, round_ms, guard=None)
    header = {
        "type": "header", "format": SAMPLES_FORMAT, "space": manifest["space"],
        "device": device_info("onnxruntime", provider, threads, batch, opt_level, ort.__version__),
        "settings": {"sampling": manifest.get("sampling", "bundle"), **protocol.settings()},
        "reference_widths": manifest["reference"]["widths"], "created": time.time(),
    }
    done: set = set()
    if os.path.exists(out) and os.path.getsize(out) > 0:
        old, samples, _ = read_samples(out)
        diff = device_differences(old["device"], header["device"])
        if diff or old["space"] != manifest["space"]:
            what = describe_differences(diff, "in the file", "here") if diff else "another search space"
            raise SystemExit(f"{out} holds samples of another device or settings ({what}); "
                             "use another --out to profile this device, or run on the device that made it")
        protocol = continuing_protocol(old, protocol, out)
        done = {tuple(s["widths"]) for s in samples}
    else:
        append_line(out, header)
    ref = ort_runner(ort_session(os.path.join(bundle_dir, manifest["reference"]["file"]), provider, threads,
                                 opt_level), batch, provider)
    todo = [n for n in manifest["networks"] if tuple(n["widths"]) not in done]
    watch = LoadGuard(protocol.guard, log=lambda m: print("\n" + m, file=sys.stderr)) if protocol.guard else None
    t0 = time.time()
    for k, net in enumerate(todo, 1):
        sess = ort_session(os.path.join(bundle_dir, net["file"]), provider, threads, opt_level)
        rec = measure_sample(ort_runner(sess, batch, provider), ref, protocol, watch, what=net["file"])
        append_line(out, {"type": "sample", "widths": net["widths"], **rec, "t": time.time()})
        eta = (time.time() - t0) / k * (len(todo) - k)
        print(f"\r{k}/{len(todo)}  {rec['ms']['median']:.3f} ms  ETA {eta:.0f} s", end="", file=sys.stderr)
    print(f"\n{len(todo)} networks measured into {out}", file=sys.stderr)
    return 0


def continuing_protocol(header: dict, protocol: Protocol, path: str, log: Callable[[str], None] | None = None
                        ) -> Protocol:
    """`protocol`, checked against the one `header` records, but keeping the file's own ratio estimate
    so that one file never mixes two."""
    settings = header.get("settings") or {}
    if "ratio" not in settings and protocol.ratio != "pooled":
        protocol = replace(protocol, ratio="pooled")
        (log or _stderr)(f"note: {path} was measured with pooled medians (before the per-round estimate); "
                         "it is continued that way")
    check_same_protocol(header, protocol, path)
    return protocol


def check_same_protocol(header: dict, protocol: Protocol, path: str) -> None:
    """A file that records its protocol is continued only with the same one (older files: unchecked)."""
    settings = header.get("settings") or {}
    if "target_ci" not in settings:
        return
    have = Protocol.from_settings(settings, f"{path} header")
    if have.settings() != protocol.settings():
        diff = {k: (v, protocol.settings()[k]) for k, v in have.settings().items() if protocol.settings()[k] != v}
        raise ValueError(f"{path} was measured with another timing protocol (recorded vs asked: {diff}); "
                         "continue it with the same settings, or choose another --out")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time the networks of a widthnas bundle with onnxruntime.")
    p.add_argument("--bundle", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--out", default="samples.jsonl")
    p.add_argument("--provider", default="CPUExecutionProvider")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--opt-level", default="all", choices=OPT_LEVELS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--round-ms", type=float, default=10.0)
    p.add_argument("--no-guard", action="store_true", help="do not watch the reference for a disturbed machine")
    a = p.parse_args(argv)
    try:
        if a.rounds < 1 or not (np.isfinite(a.round_ms) and a.round_ms > 0):
            raise ValueError(f"--rounds {a.rounds} / --round-ms {a.round_ms}: give a whole number >= 1 and a "
                             "positive, finite ms")
        return run_bundle(a.bundle, a.out, a.provider, a.threads, a.opt_level, a.rounds, a.round_ms, not a.no_guard)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
