"""`widthnas export`: a materialized network to ONNX with its real channel counts, checked and verified."""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from widthnas._io import atomic_path, atomic_write_text


VERIFY_ROUNDS = 7  # rounds before a verification timing's interval is judged (it may grow to 4 x)
VERIFY_ROUND_MS = 20.0  # ms per round: every verification, the search's measured candidates, the ladder's rungs


class ExportError(ValueError):
    """The exported graph failed its checks; nothing was written."""


def export_onnx(net, space, path: str | Path, real_inputs: torch.Tensor | None = None, opset: int = 17,
                tolerance: float = 1e-3) -> dict:
    """Export with a dynamic batch axis (TorchScript exporter, after an eval-mode forward pass), check the
    graph (onnx.checker, full_check), and compare onnxruntime with torch on random inputs at two batch
    sizes and on `real_inputs` (already normalised) when given. Returns the verification figures; the
    file appears only when all checks passed."""
    import onnx
    import onnxruntime as ort

    path = Path(path)
    net = net.cpu().eval()  # the exporter traces on the CPU, whatever the network trained on
    x = torch.randn(2, *space.input_shape)
    with torch.no_grad():
        net(x)
    with atomic_path(path, suffix=".onnx.tmp") as tmp:  # removed, not left behind, when a check fails
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model, full_check=True)
        worst, diffs = _compare(net, space, ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]),
                                real_inputs)
        if worst > tolerance:
            raise ExportError(f"onnxruntime and torch disagree on the exported network (max abs diff {worst:.2e} > "
                              f"{tolerance:g}; per input: {diffs}); {path} was not written. The ONNX graph does "
                              "not compute what the network does: report it with the widths and opset")
    return {"max_abs_diff": worst, "diffs": diffs, "opset": opset, "onnx_bytes": path.stat().st_size,
            "conv_out_channels": [int(i.dims[0]) for i in model.graph.initializer if len(i.dims) == 4]}


@torch.no_grad()
def _compare(net, space, sess, real_inputs) -> tuple[float, dict]:
    """(worst max abs difference, per-input differences) of onnxruntime against torch."""
    g = torch.Generator().manual_seed(123)
    diffs = {}
    for b in (1, 5):
        xi = torch.randn(b, *space.input_shape, generator=g)
        ref = net(xi).numpy()
        diffs[f"random_batch{b}"] = float(np.abs(sess.run(None, {"input": xi.numpy()})[0] - ref).max())
    if real_inputs is not None:
        ref = net(real_inputs).numpy()
        got = sess.run(None, {"input": real_inputs.numpy().astype(np.float32)})[0]
        diffs["real"] = float(np.abs(got - ref).max())
        diffs["real_argmax_agree"] = float((got.argmax(1) == ref.argmax(1)).mean())
    return max(v for k, v in diffs.items() if not k.endswith("agree")), diffs


def check_onnx_profile(table, where: str = "--profile") -> None:
    """Refuse a profile that was not measured with onnxruntime: an exported model is timed with it."""
    backend = table.device.get("backend", "onnxruntime")
    if backend != "onnxruntime":
        raise ValueError(f"{where} {table.name or 'profile'} was measured with the {backend} backend, but an exported "
                         "ONNX model is timed with onnxruntime, so the two cannot be compared; give an onnxruntime "
                         "profile (`widthnas profiles` lists them), or leave --profile out")


def verify_timing(table, rounds: int | None = None, round_ms: float | None = None):
    """(onnxruntime backend with the profile's device settings, timing protocol) of every verification and
    of the ladder's rungs, which must be timed as the networks read off them are."""
    from widthnas.latency import standalone_runner as sr
    from widthnas.latency.backends import OrtBackend

    check_onnx_profile(table)
    dev = table.device
    be = OrtBackend(table.space, dev.get("provider", "CPUExecutionProvider"), int(dev.get("threads", 1)),
                    int(dev.get("batch", 1)), dev.get("opt_level", "all"))
    # the cap stays at 4 x rounds: verification repeats whole measurements until its interval clears the
    # budget (latency/verdict.py), and the selection times dozens of candidates this way
    return be, sr.Protocol(r := VERIFY_ROUNDS if rounds is None else rounds,
                           VERIFY_ROUND_MS if round_ms is None else round_ms, max_rounds=4 * r)


def measure_exported(path: str | Path, table, rounds: int | None = None, round_ms: float | None = None,
                     guard=None) -> dict:
    """Latency of the exported model here, timed beside the reference network as the profile was, so it
    compares with the profile's prediction. `normalised_ms`: at the profile's host speed, read off its
    ladder (latency/ref_ladder.py) when it has one, else off the reference alone (`reference_normalised_ms`).
    With a `latency.standalone_runner.LoadGuard`, a disturbed measurement is waited out and repeated
    (`remeasured`, `disturbed`); `unsettled` counts timings that never met their spread target.
    `machine_note`: the reference ran so far off its profiled time that this is another machine."""
    from widthnas.latency import standalone_runner as sr
    from widthnas.latency.host_state import machine_note, speed_note
    from widthnas.latency.ref_ladder import ladder_estimate, read_ladder

    be, protocol = verify_timing(table, rounds, round_ms)
    ref = be.open(table.space.reference_widths)
    net = be.open_file(str(path))
    rec = sr.measure_sample(net, ref, protocol, guard, what=f"latency of {Path(path).name}")
    s = rec["ref_ms"]["median"] / table.reference_ms  # > 1 when the host runs slower than profiled
    by_ref = table.measured_ms(rec["norm"], rec["ref_ms"]["median"])  # ms at the profile's speed
    out = {"measured_ms": rec["ms"]["median"], "measured_ms_min": rec["ms"]["min"],
           "reference_ms_now": rec["ref_ms"]["median"], "host_speed": s, "reference_normalised_ms": by_ref,
           "normalised_ms": by_ref, "runs": rec["ms"]["count"], "remeasured": int(rec.get("remeasured", 0)),
           "disturbed": bool(rec.get("disturbed", False)), "read_off": "reference",
           "unsettled": int(rec.get("settled", True) is False)}  # timings that never met their target: noisier
    rungs = read_ladder(table.fit, table.space, table.name or "profile")
    other = machine_note(s, table.reference_ms)  # said with or without a ladder: the ms are not this machine's
    out["machine_note"] = other
    if rungs is None:
        out["host_note"] = other or speed_note(table.fit, s)
    else:  # the ladder's rungs slow as the network does: no host-speed model is needed
        est = ladder_estimate(net, rec["norm"], rungs, table.reference_ms, be.open, protocol)
        # a rung timing that never settled is noisier, not disturbed: the verdict's interval counts that noise
        out.update(normalised_ms=est["ms"], ladder=est, host_note=other, read_off="ladder",
                   unsettled=out["unsettled"] + est["unsettled"])
    return out


def network_measurer(supernet, table, work_dir: str | Path, rounds: int | None = None,
                     round_ms: float | None = None, space=None) -> Callable[[list[int]], float]:
    """widths -> ms at the profile's speed (read off its ladder, or its reference) of that network exported
    from the supernet and timed here, as the verify stage will time it; each network is exported once.
    space: for widths off the search grid (materialize's)."""
    check_onnx_profile(table)

    def measure(widths: list[int]) -> float:
        path = Path(work_dir) / f"{'_'.join(map(str, widths))}.onnx"
        if not path.exists():
            export_onnx(supernet.materialize(list(widths), space).eval(), space or supernet.space, path)
        return measure_exported(path, table, rounds, round_ms)["normalised_ms"]

    return measure


def write_sidecar(path: str | Path, widths, space, table=None, **extra) -> Path:
    side = Path(path).with_suffix(".json")
    d = {"format": "widthnas-export/1", "model": Path(path).name, "widths": list(widths),
         "base_widths": space.base_widths,
         "space": {"name": space.name, "fingerprint": space.fingerprint, "input_shape": list(space.input_shape)},
         "profile": ({"name": table.name, "reference_ms": table.reference_ms, "device": table.device}
                     if table is not None else None),
         "created": time.time(), **extra}
    atomic_write_text(side, json.dumps(d, indent=1))
    return side
