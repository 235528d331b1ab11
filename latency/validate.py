"""`widthnas validate`: judge a profile on networks measured in another run.

Both sides are reference-normalised, so a held-out run at another machine speed is judged fairly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from widthnas._io import atomic_savefig, pyplot


def metrics(pred: np.ndarray, meas: np.ndarray) -> dict:
    """Error statistics of predicted against measured latency (same units)."""
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    err = pred - meas
    rel = err / meas
    rmse = float(np.sqrt(np.mean(err ** 2)))
    return {
        "n": int(meas.size),
        "rmse": rmse,
        "nrmse": rmse / float(np.mean(meas)),
        "rmspe": float(np.sqrt(np.mean(rel ** 2))),
        "within_5": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10": float(np.mean(np.abs(rel) <= 0.10)),
        "kendall_tau": float(kendalltau(pred, meas)[0]),
        "median_abs_rel": float(np.median(np.abs(rel))),
    }


def validate(table, samples, proxy=None) -> dict:
    """Metrics of the LatencyTable and the FLOPs proxy, when given, on held-out samples, in reference-ms."""
    meas = table.measured_ms(samples.norm, samples.ref_ms)
    out = {"table": metrics(table.predict_many(samples.widths), meas)}
    if proxy is not None:
        out["flops_proxy"] = metrics(proxy.predict_many(table.space, samples.widths) * table.reference_ms
                                     / proxy.reference_ms, meas)
    return out


def scatter_plot(path: str | Path, meas: np.ndarray, preds: dict[str, np.ndarray], title: str = "") -> None:
    """Predicted against measured latency, one colour per predictor, with the ±10 % band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = float(np.min(meas)) * 0.9, float(np.max(meas)) * 1.1
    xs = np.linspace(lo, hi, 2)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="±10 %")
    for name, p in preds.items():
        ax.scatter(meas, p, s=6, alpha=0.6, label=name)
    ax.set_xlabel("measured latency (ms, reference-normalised)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path)
    plt.close(fig)
