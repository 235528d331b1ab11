"""Reuse a latency check made today, on this machine kind, of the same profile and the same networks.

A check (most of a minute) holds while the profile, networks, protocol and machine stay the same, so a
later run the same UTC day reads it back. Machines sharing a CPU name can run 2 x apart, so the machine
kind is re-read from the reference alone (seconds) and a check of another kind is never reused.

The check's samples file is kept whole and written into the reusing run's directory, where
latency.profile resumes it without timing, so its figures are recomputed and validated as usual. Checks
live in $WIDTHNAS_CACHE (default ~/.cache/widthnas)/checks, one JSON file per key, one entry per machine
kind. A cache that cannot be read or written is said and skipped: it never stops a run.
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

from .host_state import machine_note
from .standalone_runner import noisy_level_ok

CACHE_ENV = "WIDTHNAS_CACHE"
SAME_SPEED = 1.10  # the reference now within this factor of the cached check's: the same machine kind
FORMAT = "widthnas-check/2"

Check = tuple[dict, np.ndarray, np.ndarray]  # (metrics, measured ms, predicted ms), as latency.check.latency_check


def _today(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%d")


def check_key(profile_file: str | Path, device: dict, n: int, seed: int, protocol_settings: dict) -> str:
    """A name for one check: the profile's bytes, the device key, the networks and how they were timed, the host."""
    what = {"profile": hashlib.sha256(Path(profile_file).read_bytes()).hexdigest(), "device": device, "n": n,
            "seed": seed, "protocol": protocol_settings, "host": platform.node()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _valid_entry(e) -> bool:
    try:
        speed = e["host_speed"]
        return (isinstance(e, dict) and isinstance(e["date"], str) and isinstance(e["made"], str)
                and isinstance(speed, (int, float)) and not isinstance(speed, bool) and np.isfinite(speed)
                and speed > 0 and isinstance(e["samples"], str) and bool(e["samples"].strip())
                and noisy_level_ok(e.get("noisy_spread", 0.0)))
    except (KeyError, TypeError):
        return False


def _entries(path: Path, log: Callable[[str], None]) -> list[dict]:
    """The entries of a cache file, [] when there is none; a file that does not read back is said."""
    if not path.exists():
        return []
    try:
        d = json.loads(path.read_text())
        if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("entries"), list):
            raise ValueError(f"not a {FORMAT} file")
        bad = [e for e in d["entries"] if not _valid_entry(e)]
        if bad:
            raise ValueError(f"{len(bad)} entries without a date, time, positive finite host_speed or samples")
        return d["entries"]
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        log(f"latency check: the cached check {path} does not read back ({e}); timing a new one")
        return []


def same_kind(speed_now: float, speed_then: float) -> bool:
    return abs(np.log(speed_now / speed_then)) <= np.log(SAME_SPEED)


def cached_check(key: str, run_check: Callable[[], Check], samples_path: str | Path, speed_now: Callable[[], float],
                 reference_ms: float, log: Callable[[str], None] = print, now: dt.datetime | None = None) -> Check:
    """run_check(), which times a check into samples_path (or reads a complete one there without timing).

    A check cached today under `key` at the reference speed of now (speed_now()) is written to
    samples_path first, and the metrics carry `reused` (made, speed then and now) and today's
    host_speed. A file already at samples_path is a check under way: resumed, never replaced. A check
    timed here is kept beside those of other machine kinds."""
    samples_path, now = Path(samples_path), now or dt.datetime.now(dt.timezone.utc)
    if samples_path.exists():
        return run_check()
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "widthnas") / "checks" / f"{key}.json"
    date = _today(now)
    today = [e for e in _entries(path, log) if e["date"] == date]
    if today:
        speed = speed_now()
        match = next((e for e in today if same_kind(speed, e["host_speed"])), None)
        if match is not None:
            atomic_write_text(samples_path, match["samples"])
            m, meas, pred = run_check()  # a complete file: read, validated, nothing timed
            m["reused"] = {"made": match["made"], "host_speed_then": match["host_speed"], "host_speed_now": speed}
            if match.get("noisy_spread"):  # a host found noisy by nature: verify need not learn it again
                m["noisy_spread"] = match["noisy_spread"]
            m.update(host_speed=speed, machine_note=machine_note(speed, reference_ms))
            return m, meas, pred
        then = ", ".join(format(e["host_speed"], ".2f") for e in today)
        log(f"latency check: today's checks of this profile ran the reference at {then} x, now {speed:.2f} x "
            "(another machine kind): timing a new one")
    m, meas, pred = run_check()
    entry = {"date": date, "made": now.isoformat(timespec="seconds"), "host_speed": float(m["host_speed"]),
             "samples": samples_path.read_text(), "noisy_spread": float(m.get("noisy_spread", 0.0))}
    kept = [e for e in today if not same_kind(e["host_speed"], entry["host_speed"])]  # other kinds stay
    try:
        atomic_write_text(path, json.dumps({"format": FORMAT, "entries": kept + [entry]}))
    except OSError as e:
        log(f"latency check: could not keep it in {path.parent} ({e}); set ${CACHE_ENV} to a writable directory")
    return m, meas, pred


def latency_check_today(table, profile_file: str | Path, backend, samples_path: str | Path, n: int, seed: int,
                        protocol, reuse: bool = True, speed_now: Callable[[], float] | None = None,
                        log: Callable[[str], None] = print, progress: bool = False, guard=None) -> Check:
    """latency.check.latency_check, or today's of the same profile and networks on this machine kind
    (reuse=False: timed). speed_now: the reference's speed, when the caller has just timed it. guard: the
    load guard to time with (standalone_runner.LoadGuard; default: one of the protocol's settings)."""
    from .check import latency_check, reference_speed  # looked up now: a test gives its own reference speed

    def timed() -> Check:
        m, meas, pred = latency_check(table, backend, samples_path, n, seed, protocol, log=log, progress=progress,
                                      guard=guard)
        if guard is not None and guard.noisy_spread:  # a host noisy by nature: verify judges spread by it too
            m["noisy_spread"] = guard.noisy_spread
        return m, meas, pred

    if not reuse:
        return timed()
    key = check_key(profile_file, backend.device_info(), n, seed, protocol.settings())
    m, meas, pred = cached_check(key, timed, samples_path, speed_now or (lambda: reference_speed(table, backend, protocol)),
                                 table.reference_ms, log)
    if m.get("reused"):
        r = m["reused"]
        log(f"latency check: today's check of this profile reused (timed {r['made'][11:16]} UTC; the reference runs at "
            f"{r['host_speed_now'] / r['host_speed_then']:.2f} x its speed then; --recheck times a new one)")
    return m, meas, pred
