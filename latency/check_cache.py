"""Reuse a latency check made today, on this machine kind, of the same profile and the same networks.

A check times 40 networks (25-65 s of `make demo`). What it tells, the profile's error here, holds
while the profile, the networks, the timing protocol and the machine stay the same; so a second run
on the same day reads it back. The machine kind is re-read from the reference network alone (a few
seconds): this machine comes in two kinds that share a CPU name and run about 2 x apart, and a check
made on the other kind is never reused.

Checks are kept in $WIDTHNAS_CACHE (default ~/.cache/widthnas)/checks, one JSON file each, named by
a hash of everything they depend on. A file that does not read back whole is ignored, and said.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Callable

import numpy as np

from widthnas._io import atomic_write_text

CACHE_ENV = "WIDTHNAS_CACHE"
SAME_SPEED = 1.10  # the reference now within this factor of the cached check's: the same machine kind
FORMAT = "widthnas-check/1"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "widthnas")


def check_key(profile_path: str | Path, device: dict, n: int, seed: int, protocol_settings: dict) -> str:
    """A name for one check: the profile's bytes, the device key, the networks and how they were timed, the host."""
    what = {"profile": hashlib.sha256(Path(profile_path).read_bytes()).hexdigest(), "device": device, "n": n,
            "seed": seed, "protocol": protocol_settings, "host": platform.node()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _today(now: dt.datetime | None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d")


def _finite_positive(values, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or not len(a) or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{what}: expected positive finite ms")
    return a


def load_check(key: str, now: dt.datetime | None = None, log: Callable[[str], None] = print) -> dict | None:
    """The check cached under `key` if it was made today (UTC) and reads back whole, else None."""
    path = cache_root() / "checks" / f"{key}.json"
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {FORMAT}")
        if d.get("date") != _today(now):
            return None  # made on another day: checked again
        if not isinstance(d["samples"], str) or not d["samples"].strip():
            raise ValueError("no samples")
        d["measured_ms"] = _finite_positive(d["measured_ms"], "measured_ms")
        d["predicted_ms"] = _finite_positive(d["predicted_ms"], "predicted_ms")
        m = d["metrics"]
        if not (np.isfinite(float(m["host_speed"])) and float(m["host_speed"]) > 0):
            raise ValueError(f"host_speed {m['host_speed']!r}")
        if not m["n"] == len(d["measured_ms"]) == len(d["predicted_ms"]):
            raise ValueError("the number of networks differs between its fields")
        for k in ("within_5", "within_10"):
            if not 0 <= float(m[k]) <= 1:
                raise ValueError(f"{k} {m[k]!r}, expected a share in [0, 1]")
        for k in ("rmse", "nrmse", "rmspe"):
            if not (np.isfinite(float(m[k])) and float(m[k]) >= 0):
                raise ValueError(f"{k} {m[k]!r}, expected a finite error >= 0")
    except (ValueError, KeyError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        log(f"latency check: the cached check {path} does not read back ({e}); timing a new one")
        return None
    return d


def save_check(key: str, metrics: dict, measured_ms: np.ndarray, predicted_ms: np.ndarray, samples: str,
               now: dt.datetime | None = None) -> Path:
    """Keep a check: its metrics, its ms, and its samples file's text (written into a run that reuses it)."""
    path = cache_root() / "checks" / f"{key}.json"
    now = now or dt.datetime.now(dt.timezone.utc)
    atomic_write_text(path, json.dumps({"format": FORMAT, "date": _today(now), "made": now.isoformat(timespec="seconds"),
                                        "metrics": metrics, "measured_ms": [float(x) for x in measured_ms],
                                        "predicted_ms": [float(x) for x in predicted_ms], "samples": samples},
                                       default=float))
    return path


def same_kind(speed_now: float, speed_then: float) -> bool:
    return abs(np.log(speed_now / speed_then)) <= np.log(SAME_SPEED)


def cached_check(key: str, run_check: Callable[[], tuple[dict, np.ndarray, np.ndarray]], samples_path: str | Path,
                 speed_now: Callable[[], float], reference_ms: float, log: Callable[[str], None] = print,
                 now: dt.datetime | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """run_check()'s (metrics, measured ms, predicted ms), which writes its timings to samples_path; read
    back from today's cache when the reference network runs at the cached check's speed (speed_now():
    reference now over profiled), the cached timings then written to samples_path. A samples file already
    there is a check under way: it is resumed, not replaced. Metrics read back carry `reused`: when the
    check was made, and the reference's speed then and now."""
    from .host_state import machine_note

    samples_path = Path(samples_path)
    if samples_path.exists():
        return run_check()
    d = load_check(key, now, log)
    if d is not None:
        then = d["metrics"]["host_speed"]
        now_speed = speed_now()
        if same_kind(now_speed, then):
            m = dict(d["metrics"])
            m["reused"] = {"made": d["made"], "host_speed_then": then, "host_speed_now": now_speed}
            m.update(host_speed=now_speed, machine_note=machine_note(now_speed, reference_ms))
            atomic_write_text(samples_path, d["samples"])
            return m, d["measured_ms"], d["predicted_ms"]
        log(f"latency check: today's check of this profile ran the reference at {then:.2f} x, now {now_speed:.2f} x "
            "(another machine kind): timing a new one")
    m, meas, pred = run_check()
    save_check(key, m, meas, pred, samples_path.read_text(), now)
    return m, meas, pred
