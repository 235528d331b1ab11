#!/usr/bin/env python3
"""widthnas latency runner: the onnxruntime timing protocol and the samples JSONL format.

This one file is copied verbatim into edge-device bundles (`widthnas profile --bundle DIR`), so it
imports only the standard library, numpy and onnxruntime. widthnas itself uses it for its
onnxruntime backend, so host and device measure the same way.

On a device:  python3 runner.py [--provider CPUExecutionProvider] [--threads 1] [--out samples.jsonl]
run inside the bundle directory. A killed run loses at most the sample in flight; rerun to continue.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
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


def device_info(backend: str, provider: str, threads: int, batch: int, opt_level: str, runtime_version: str,
                gpu: str = "") -> dict:
    """What a latency depends on besides the network; profiles are only valid for an equal device key."""
    return {
        "cpu": cpu_model(),
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


DEVICE_KEY = ("cpu", "cores", "backend", "provider", "gpu", "threads", "batch", "opt_level")


def device_key(info: dict) -> dict:
    return {k: info.get(k) for k in DEVICE_KEY}


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
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[opt_level]
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


def measure(run_net: Callable[[], None], run_ref: Callable[[], None], rounds: int = 5,
            round_ms: float = 10.0, min_runs: int = 5, max_runs: int = 200, warmup: int = 5,
            max_ref_iqr: float = 0.10, retries: int = 2, target_ci: float = 0.01, max_rounds: int | None = None,
            time_cap_s: float = 20.0, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time a network interleaved with the reference network, until the ratio is known to ±target_ci.

    Both are timed in alternating rounds, each long enough to last ~`round_ms` (so the runs per round
    follow the network's latency), after `warmup` untimed runs. `norm` = median(net) / median(ref)
    divides out machine-speed drift and thermal throttling (design.md section 3). After `rounds`
    rounds, more are added while the 95 % interval of the per-round ratio is wider than ±target_ci,
    up to `max_rounds` (default 4 x rounds) or `time_cap_s`; a sample that never got there is
    returned with settled=False, for the fit to leave out. A sample whose reference timings spread
    more than `max_ref_iqr` (IQR / median) was taken while the machine was disturbed and is measured
    again (up to `retries` times; `attempts` says how many).
    """
    max_rounds = max(rounds, max_rounds if max_rounds is not None else 4 * rounds)
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
    return {"ms": s_net, "ref_ms": s_ref, "norm": s_net["median"] / s_ref["median"], "attempts": attempt + 1,
            "rounds": len(ratios), "ci_rel": ci, "settled": bool(ci <= target_ci)}


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
               round_ms: float) -> int:
    import onnxruntime as ort

    with open(os.path.join(bundle_dir, MANIFEST)) as f:
        manifest = json.load(f)
    batch = int(manifest["batch"])
    header = {
        "type": "header", "format": SAMPLES_FORMAT, "space": manifest["space"],
        "device": device_info("onnxruntime", provider, threads, batch, opt_level, ort.__version__),
        "settings": {"rounds": rounds, "round_ms": round_ms, "sampling": manifest.get("sampling", "bundle")},
        "reference_widths": manifest["reference"]["widths"], "created": time.time(),
    }
    done: set = set()
    if os.path.exists(out) and os.path.getsize(out) > 0:
        old, samples, _ = read_samples(out)
        if device_key(old["device"]) != device_key(header["device"]) or old["space"] != manifest["space"]:
            raise SystemExit(f"{out} holds samples of another device/settings or space; use another --out")
        done = {tuple(s["widths"]) for s in samples}
    else:
        append_line(out, header)
    ref = ort_runner(ort_session(os.path.join(bundle_dir, manifest["reference"]["file"]), provider, threads,
                                 opt_level), batch, provider)
    todo = [n for n in manifest["networks"] if tuple(n["widths"]) not in done]
    t0 = time.time()
    for k, net in enumerate(todo, 1):
        sess = ort_session(os.path.join(bundle_dir, net["file"]), provider, threads, opt_level)
        rec = measure(ort_runner(sess, batch, provider), ref, rounds=rounds, round_ms=round_ms)
        append_line(out, {"type": "sample", "widths": net["widths"], **rec, "t": time.time()})
        eta = (time.time() - t0) / k * (len(todo) - k)
        print(f"\r{k}/{len(todo)}  {rec['ms']['median']:.3f} ms  ETA {eta:.0f} s", end="", file=sys.stderr)
    print(f"\n{len(todo)} networks measured into {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time the networks of a widthnas bundle with onnxruntime.")
    p.add_argument("--bundle", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--out", default="samples.jsonl")
    p.add_argument("--provider", default="CPUExecutionProvider")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--opt-level", default="all", choices=OPT_LEVELS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--round-ms", type=float, default=10.0)
    a = p.parse_args(argv)
    try:
        return run_bundle(a.bundle, a.out, a.provider, a.threads, a.opt_level, a.rounds, a.round_ms)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
