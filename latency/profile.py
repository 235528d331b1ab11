"""`widthnas profile`: time many random-width networks on this device into a samples JSONL,
or write a bundle of ONNX networks plus a torch-free runner for an edge device.

The header records the space's definition and fingerprint; a sample's widths follow the order of the
space's free groups."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from widthnas._io import atomic_path, atomic_write_text
from widthnas.models.space import GraphSpace
from widthnas.models.space import check_fingerprint

from . import standalone_runner as sr
from .backends import clocks
from .onnx_graph import space_onnx
from .sampling import make_sampler


def _header(space: GraphSpace, device: dict, sampling: str, seed: int, protocol: sr.Protocol) -> dict:
    return {
        "type": "header", "format": sr.SAMPLES_FORMAT,
        "space": {"name": space.name, "fingerprint": space.fingerprint, "def": space.to_dict()},
        "device": device,
        "settings": {"sampling": sampling, "seed": seed, **protocol.settings()},
        "reference_widths": space.reference_widths, "created": time.time(),
    }


def profile(space: GraphSpace, out: str | Path, n: int, backend, sampling: str = "coverage", seed: int = 0,
            rounds: int = 5, round_ms: float = 10.0, progress: bool = True, time_limit_s: float | None = None,
            protocol: sr.Protocol | None = None, guard: sr.LoadGuard | None = None,
            log: Callable[[str], None] | None = None, desc: str | None = None) -> int:
    """Measure networks until `out` holds `n` samples; returns how many were added (`desc` names the bar).

    `protocol` (default: adaptive rounds with the load guard) is recorded in the header; `guard`
    replaces the one it would make (tests pass a scripted clock), `log` its messages (default: above the
    bar). An existing `out` is checked (space, device, protocol) and continued.
    """
    from tqdm import tqdm

    out = str(out)
    protocol = protocol or sr.Protocol(rounds, round_ms)
    device = backend.device_info()
    seen = []
    if os.path.exists(out) and os.path.getsize(out) > 0:
        header, recs, bad = sr.read_samples(out)
        check_fingerprint(header["space"]["fingerprint"], space,
                          f"{out} (samples of space {header['space']['name']}; or choose another --out)")
        diff = sr.device_differences(header["device"], device)
        if diff:
            raise ValueError(f"{out} was measured with other device settings ({sr.describe_differences(diff, 'in the file', 'here')}); "
                             "choose another --out, or the same --backend/--provider/--threads/--batch/--opt-level; "
                             "a different cpu or isa means another machine: profile it into its own file")
        protocol = sr.continuing_protocol(header, protocol, out, log)
        seen = [r["widths"] for r in recs]
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        sr.append_line(out, _header(space, device, sampling, seed, protocol))
    # a resumed run draws from a fresh stream; coverage sampling continues from the recorded counts
    sampler = make_sampler(space, sampling, seed + len(seen), seen)
    todo = max(0, n - len(seen))
    bar = tqdm(total=todo, disable=not progress, desc=desc or f"profile {space.name}", unit="net", dynamic_ncols=True,
               leave=False)
    clock, sleep = clocks(backend)
    if guard is None and protocol.guard is not None:  # by default, messages above the bar, never glued onto it
        guard = sr.LoadGuard(protocol.guard, clock, sleep, log=log or (lambda msg: bar.write(msg, file=sys.stderr)))
    ref = backend.open(space.reference_widths)
    t0, added, flagged = time.time(), 0, 0
    for _ in range(todo):
        if time_limit_s is not None and time.time() - t0 > time_limit_s:
            break
        widths = sampler.next()
        rec = sr.measure_sample(backend.open(widths), ref, protocol, guard, clock,
                                what=f"{Path(out).name} sample {len(seen) + added + 1}")
        sr.append_line(out, {"type": "sample", "widths": widths, **rec, "t": time.time()})
        sampler.observe(widths)
        added += 1
        flagged += bool(rec.get("remeasured") or rec.get("disturbed"))
        bar.update(1)
        bar.set_postfix_str(f"{rec['ms']['median']:.3f} ms, ref {rec['ref_ms']['median']:.3f} ms"
                            + (f", {flagged} disturbed" if flagged else ""))
    bar.close()
    return added


def write_bundle(space: GraphSpace, out_dir: str | Path, n: int, sampling: str = "coverage", seed: int = 0,
                 batch: int = 1) -> Path:
    """N ONNX networks, the reference network, a manifest and the runner, for timing on an edge device.

    Copy the directory to the device and run `python3 runner.py` there (numpy and onnxruntime only).
    Then `widthnas fit --samples samples.jsonl` on the host.
    """
    from .registry import PROFILE_DIR

    out = Path(out_dir)
    if out.resolve() == PROFILE_DIR.resolve():
        raise ValueError(f"--bundle {out_dir} is the shipped profiles' directory; write the bundle elsewhere")
    if (out / sr.MANIFEST).exists():
        raise ValueError(f"--bundle {out_dir} already holds a bundle ({sr.MANIFEST}); its networks may have been timed "
                         "already, so it is not rewritten: choose a new directory")
    (out / "networks").mkdir(parents=True, exist_ok=True)
    sampler = make_sampler(space, sampling, seed)
    nets = []
    ref_file = "networks/reference.onnx"
    with atomic_path(out / ref_file) as tmp:
        tmp.write_bytes(space_onnx(space, space.reference_widths, batch=batch).SerializeToString())
    for i in range(n):
        widths = sampler.next()
        sampler.observe(widths)
        f = f"networks/net_{i:05d}.onnx"
        with atomic_path(out / f) as tmp:
            tmp.write_bytes(space_onnx(space, widths, batch=batch).SerializeToString())
        nets.append({"file": f, "widths": widths})
    manifest = {
        "space": {"name": space.name, "fingerprint": space.fingerprint, "def": space.to_dict()},
        "batch": batch, "sampling": sampling, "seed": seed,
        "reference": {"file": ref_file, "widths": space.reference_widths}, "networks": nets,
    }
    atomic_write_text(out / sr.MANIFEST, json.dumps(manifest, indent=1))
    shutil.copyfile(Path(sr.__file__), out / "runner.py")
    return out
