"""The width-error curve: test error of every uniform width multiplier, from the supernet (BN
recalibrated per network) and optionally retrained from scratch, against the multiplier and latency.

The supernet has already trained networks of every width; reading its error along the uniform
multipliers shows how error moves with width (and whether a wider network stops paying, or error
rises again before falling: the second descent of over-parameterised networks) at almost no cost.
"""
from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from widthnas._io import atomic_savefig, atomic_write_text, pyplot

from .export import export_onnx, measure_exported

FIELDS = ("multiplier", "widths", "predicted_ms", "measured_ms", "supernet_error", "retrain_error")


def uniform_networks(space) -> list[tuple[float, list[int]]]:
    """(multiplier, widths) for each distinct uniform network, narrowest first (0.2x-1.5x in 0.1 steps)."""
    nets: dict[tuple, tuple[float, list[int]]] = {}
    for m in np.round(np.arange(0.2, 1.5001, 0.1), 2):
        w = space.uniform(float(m))
        nets.setdefault(tuple(w), (float(m), w))  # the first multiplier that gives these widths
    return list(nets.values())


def supernet_curve(supernet, space, splits, split: str = "test", calib_images: int = 1024, table=None,
                   measure: bool = False, log: Callable[[str], None] = print) -> list[dict]:
    """Error of each uniform network materialized from the supernet after BN recalibration; latency
    predicted by `table`, and measured (exported to ONNX, timed beside the reference) with `measure`."""
    from .evaluate import accuracy, calibrated_network

    if measure and table is None:
        raise ValueError("measured latency needs a latency profile; pass --profile (or --no-measure)")
    x, y = getattr(splits, split)
    rows = []
    for m, widths in uniform_networks(space):
        net = calibrated_network(supernet, widths, splits, calib_images)
        err = 1 - accuracy(net, x, y, splits.mean, splits.std)[0]
        row = {"multiplier": m, "widths": widths, "predicted_ms": table.predict(widths) if table else None,
               "measured_ms": None, "supernet_error": err, "retrain_error": None}
        if measure:
            with tempfile.TemporaryDirectory() as d:
                export_onnx(net, space, Path(d) / "net.onnx")
                row["measured_ms"] = measure_exported(Path(d) / "net.onnx", table)["normalised_ms"]
        rows.append(row)
        log(f"curve x{m:.1f}: {split} error {err:.4f}"
            + (f", predicted {row['predicted_ms']:.4f} ms" if table else "")
            + (f", measured {row['measured_ms']:.4f} ms" if measure else ""))
    return rows


def retrain_curve(rows: list[dict], space, splits, epochs: int, split: str = "test", lr: float = 0.1,
                  seed: int = 0, log: Callable[[str], None] = print, **train_kw) -> list[dict]:
    """Adds each uniform network's error after training it from scratch for `epochs`."""
    import torch

    from .evaluate import accuracy
    from .finetune import train_plain
    from .train import build_plain_network as build_network

    if epochs < 1:
        raise ValueError(f"--retrain-epochs {epochs}: use 1 or more")
    x, y = getattr(splits, split)
    for row in rows:
        torch.manual_seed(seed)  # the same initialisation stream and data order for every width
        net = build_network(space, row["widths"])
        train_plain(net, splits, epochs, lr=lr, seed=seed, log=lambda *_: None, desc="curve", **train_kw)
        row["retrain_error"] = 1 - accuracy(net, x, y, splits.mean, splits.std)[0]
        log(f"curve x{row['multiplier']:.1f}: retrained {epochs} epochs, {split} error {row['retrain_error']:.4f}")
    return rows


def write_curve(csv_path: str | Path, png_path: str | Path | None, rows: list[dict]) -> None:
    """CSV (widths space-separated) and a two-panel PNG, each written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS)
    w.writeheader()
    w.writerows({k: (" ".join(map(str, r[k])) if k == "widths" else ("" if r[k] is None else r[k])) for k in FIELDS}
                for r in rows)
    atomic_write_text(csv_path, buf.getvalue())
    if png_path is not None:
        plot_curve(png_path, rows)


def plot_curve(path: str | Path, rows: list[dict]) -> None:
    plt = pyplot()
    lat_key = "measured_ms" if rows and rows[0]["measured_ms"] is not None else "predicted_ms"
    has_lat = bool(rows) and rows[0][lat_key] is not None
    fig, axes = plt.subplots(1, 2 if has_lat else 1, figsize=(10 if has_lat else 5, 3.6), squeeze=False)
    series = [(k, lab, st) for k, lab, st in (("supernet_error", "supernet (BN recalibrated)", "o-"),
                                              ("retrain_error", "retrained from scratch", "s--"))
              if any(r[k] is not None for r in rows)]
    for k, lab, st in series:
        pts = [r for r in rows if r[k] is not None]
        for ax, x in zip(axes[0], ("multiplier", lat_key)):  # the latency panel, when there is one
            ax.plot([r[x] for r in pts], [r[k] for r in pts], st, label=lab)
    xlabels = ("uniform width multiplier", f"{'measured' if lat_key == 'measured_ms' else 'predicted'} latency (ms)")
    for ax, xlabel in zip(axes[0], xlabels):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test error")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_savefig(fig, path)  # readers never see half a PNG
    finally:
        plt.close(fig)


def curve_markdown(rows: list[dict], png: str) -> list[str]:
    """The report.md section."""
    best = min(rows, key=lambda r: r["supernet_error"])
    lines = ["## Width-error curve (supernet)", "",
             "Test error of every uniform width multiplier, materialized from the supernet with BatchNorm "
             f"recalibrated for each; latency predicted by the profile. Lowest error at x{best['multiplier']:.1f} "
             f"({best['supernet_error']:.2%}). `widthnas curve --run DIR --retrain` adds networks trained from "
             "scratch and measured latency.", "", f"![width-error curve]({png})", "",
             "| multiplier | predicted ms | supernet test error |", "|---|---|---|"]
    for r in rows:
        ms = "" if r["predicted_ms"] is None else f"{r['predicted_ms']:.4f}"
        lines.append(f"| x{r['multiplier']:.1f} | {ms} | {r['supernet_error']:.4f} |")
    return lines + [""]
