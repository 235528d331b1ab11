"""The run report: report.md and report.json with PNG plots, from a run directory's artefacts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from widthnas._io import atomic_savefig, atomic_write_text, pyplot

from .search import variables


METHOD_LABELS = {"exact": "exact budgeted optimum", "lagrangian": "Lagrangian (the paper's method)",
                 "greedy": "greedy slimming (AutoSlim-style)", "uniform": "uniform width multiplier"}


def plot_widths(path: Path, space, chosen: list[int], uniform: list[int] | None) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    vs = variables(space)
    x = np.arange(len(vs))
    ax.bar(x - 0.27, space.base_widths, 0.27, label="base network", color="0.7")
    ax.bar(x, chosen, 0.27, label="chosen")
    if uniform:
        ax.bar(x + 0.27, uniform, 0.27, label="uniform multiplier")
    ax.set_xticks(x, [n for n, _, _ in vs], rotation=45, fontsize=7)
    ax.set_ylabel("channels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def plot_training(path: Path, supernet_metrics: list[dict], finetune: dict[str, list[dict]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, hist, acc, style in [("supernet widest", supernet_metrics, "val_acc_widest", "o-"),
                                   *((name, hist, "val_acc", "s--") for name, hist in finetune.items())]:
        if hist:
            ep = [h["epoch"] for h in hist]
            axes[0].plot(ep, [h["train_loss"] for h in hist], style, label=f"{name} (train)")
            axes[1].plot(ep, [h[acc] for h in hist], style, label=f"{name} (val)")
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel("validation accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def plot_narrowing(path: Path, space, snaps: list[dict]) -> bool:
    """Expected width per layer (relative to its widest choice) over training steps."""
    if not snaps:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = [s["step"] for s in snaps]
    for i, (name, _, choices) in enumerate(variables(space)):
        axes[0].plot(steps, [s["expected_widths"][i] / choices[-1] for s in snaps], label=name)
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("expected width / widest choice")
    axes[0].legend(fontsize=6, ncol=2)
    ent = [[float(-(np.asarray(m) * np.log(np.asarray(m) + 1e-12)).sum()) for m in s["marginals"]] for s in snaps]
    axes[1].plot(steps, np.mean(ent, axis=1), "k-")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("mean entropy of the width distribution (nats)")
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)
    return True


def _method_line(chosen: dict) -> str:
    """What produced the chosen network, in words (the report names the method actually used)."""
    m, info = chosen["method"], chosen.get("info", {})
    if m == "select":
        return (f"Chosen by --method select: held-out selection among {len(info.get('candidates', []))} candidates "
                f"(the MRF's exact optimum at several smoothness weights, uniform, greedy) judged by the supernet; "
                f"selected **{info.get('selected')}**.")
    label = METHOD_LABELS.get(m, m)
    if m == "exact":
        label += f" (certified: {info.get('certified')})"
    return f"Chosen by --method {m}: {label}, MRF score {chosen['score']:.4f}."


def write_report(run_dir: Path, res: dict, sections: list[str] = ()) -> Path:
    """report.md (for people) and report.json (for tools) from the run's collected results;
    `sections`: further markdown lines (negative flips, width-error curve) placed before the timing."""
    atomic_write_text(run_dir / "report.json", json.dumps(res, indent=1, default=float))
    s, p = res["search"], res["profile"]
    ver, fin = res.get("verify", {}), res.get("finetune", {})
    lines = [f"# widthnas run: {res['space']['name']} on {res['dataset']}", "",
             f"Budget **{s['budget_ms']:.4f} ms** ({res['budget']}; widest network {s['widest_ms']:.4f} ms predicted).",
             f"Profile: `{p['name']}`: {p['why']}.", ""]
    un_s = s.get("uniform") or {}  # None when no uniform multiplier fits the budget
    ch, un = ver.get("chosen", {}), ver.get("uniform", {})

    def cell(d: dict, key: str, fmt: str) -> str:
        return format(d[key], fmt) if d.get(key) is not None else "–"

    sup_acc = s.get("supernet_holdout_acc", {})
    un_name = "uniform8" if un_s.get("grid") == "dense8" else "uniform"  # rounded to 8 channels, measured; or the grid's
    lines += ["## Result", "", f"| | chosen | {un_name} |", "|---|---|---|"]
    lines.append(f"| widths | {s['chosen']['widths']} | "
                 + (f"{un_s['widths']} (x{un_s['info'].get('multiplier')})" if un_s else "none fits the budget") + " |")
    lines.append(f"| predicted latency (ms) | {s['chosen']['predicted_ms']:.4f} | {cell(un_s, 'predicted_ms', '.4f')} |")
    lines.append(f"| MRF score (predicted: −accuracy loss, higher is better) | {s['chosen']['score']:.4f} | "
                 f"{cell(un_s, 'score', '.4f')} |")
    if sup_acc:
        lines.append(f"| supernet accuracy on {s.get('holdout_images', '?')} held-out validation images "
                     f"(BN recalibrated; measured) | {cell(sup_acc, 'chosen', '.4f')} | {cell(sup_acc, 'uniform', '.4f')} |")
    if ch:
        lines.append(f"| measured latency, exported ONNX (ms, at the profile's host speed, read off its {ch.get('read_off', 'reference')}) | {ch['normalised_ms']:.4f} | "
                     f"{cell(un, 'normalised_ms', '.4f')} |")
        lines.append(f"| measured latency, raw median now (ms) | {ch['measured_ms']:.4f} | {cell(un, 'measured_ms', '.4f')} |")
        verdict = lambda d: (f"{d['budget_verdict']['verdict']} [{d['budget_verdict']['ci_low_ms']:.4f}, "  # noqa: E731
                             f"{d['budget_verdict']['ci_high_ms']:.4f}]" if d.get("budget_verdict") else "–")
        lines.append(f"| within budget on measurement (95 % interval of repeated timings, ms) | {verdict(ch)} | "
                     f"{verdict(un)} |")
    if fin:
        fu = fin.get("uniform") or {}
        lines.append(f"| test accuracy after {fin['mode']} | {fin['chosen']['test_acc']:.4f} | {cell(fu, 'test_acc', '.4f')} |")
        lines.append(f"| validation accuracy | {fin['chosen']['val_acc']:.4f} | {cell(fu, 'val_acc', '.4f')} |")
    if ch:
        lines.append(f"| ONNX vs torch max abs diff | {ch['max_abs_diff']:.2e} | {cell(un, 'max_abs_diff', '.2e')} |")
    if sup_acc:
        lines += ["", "The MRF score is the search's prediction; the supernet's held-out accuracy is a measurement on "
                  "images the unaries were not estimated on. A predicted gain over uniform that the measurement does "
                  "not show is noise in the unaries."]
    lines += ["", f"ONNX model: `{res.get('onnx')}` (sidecar `{Path(res.get('onnx', 'model.onnx')).with_suffix('.json').name}`).", ""]
    lines += latency_check_lines(p.get("check"))
    lines += ["## Search", ""]
    if s.get("margin_pct"):  # runs before the margin was recorded in the state do not say it
        lines += [f"Aimed at {s['target_ms']:.4f} ms, {s['margin_pct']:g} % under the budget {s['budget_ms']:.4f} ms: "
                  f"margin {s['margin_how']}.", ""]
    reaimed, sel_name = s["chosen"]["info"].get("reaimed_ms"), s["chosen"]["info"].get("selected", "")
    if reaimed:
        kept = ("one of the second round" if sel_name.endswith("re-aimed")
                else "the first round's winner (no network of the second round was more accurate and within)")
        lines += [f"Re-aimed at {reaimed:.4f} ms: the first winner measured more than 2 % under its prediction, so "
                  "the profile over-predicts networks like it on this machine; a second round of candidates was "
                  f"proposed at the corrected target, and the most accurate network measured within the budget is "
                  f"{kept}: {sel_name}.", ""]
    lines += [_method_line(s["chosen"]) + f" Lagrangian answer score {s['lagrangian']['score']:.4f}; "
              f"greedy {s['greedy']['score']:.4f}; uniform {cell(un_s, 'score', '.4f')} (MRF scores, higher is better).", ""]
    cands = s["chosen"]["info"].get("candidates")
    if cands:
        ms = lambda c: f"{c['measured_ms']:.4f} ({c['verdict']})" if "verdict" in c else "–"  # noqa: E731
        lines += ["| candidate | predicted ms | measured ms | MRF score | supernet held-out acc |", "|---|---|---|---|---|"]
        lines += [f"| {c['name']}{' (selected)' if c['name'] == s['chosen']['info'].get('selected') else ''} | "
                  f"{c['predicted_ms']:.4f} | {ms(c)} | {c['mrf_score']:.4f} | {c['holdout_acc']:.4f} |" for c in cands]
        lines.append("")
    lines += ["![Pareto front](pareto.png)", "", "![widths](widths.png)", ""]
    lines += ["## Training", "", "![training curves](training.png)", ""]
    if res.get("narrowing_plot"):
        lines += ["## Narrowing (AOWS)", "", "Expected width per layer and the entropy of the sampling distribution "
                  "over training: the search space narrows toward the budget.", "", "![narrowing](narrowing.png)", ""]
    lines += list(sections)
    lines += ["## Timing", "", "| stage | seconds |", "|---|---|"]
    secs = res.get("stage_seconds", {})
    lines += [f"| {k} | {v:.1f} |" for k, v in secs.items()]
    if secs:
        lines += [f"| total | {sum(secs.values()):.1f} |", "", "The report's own time is counted up to writing "
                  "this file. Every message of the run, in full and timestamped: `run.log`."]
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")
    return run_dir / "report.md"


def latency_check_lines(lc: dict | None) -> list[str]:
    """The report's section on the run's latency check (reused from earlier today, or timed in the run)."""
    if not lc:
        return []
    lines = ["## Latency model", "",
             f"{lc['n']} random networks measured against the profile"
             + (" earlier today" if lc.get("reused") else " during this run")
             + f": within ±10% {lc['within_10']:.1%}, ±5% {lc['within_5']:.1%}, NRMSE {lc['nrmse']:.2%}, "
             f"Kendall τ {lc['kendall_tau']:.3f}.", "", "![latency fit](latency_fit.png)", ""]
    if lc.get("reused"):
        r = lc["reused"]
        lines += [f"They were timed at {r['made']} for the same profile on this machine kind, by another run, and "
                  f"reused: the reference network runs at {r['host_speed_now']:.2f} x its profiled time now, "
                  f"{r['host_speed_then']:.2f} x then (`--recheck` times them again).", ""]
    if lc.get("machine_note"):
        lines += [f"**Note:** {lc['machine_note']}.", ""]
    return lines
