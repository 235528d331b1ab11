"""What `widthnas run` prints: one line per stage, the closing summary and the time table. The details
stay in run.log and report.md (nas/runlog.py decides what reaches the terminal)."""
from __future__ import annotations

from pathlib import Path

from .runlog import LOG_NAME
from .search import variables

STAGES = ("profile", "train", "search", "finetune", "export", "verify", "report")


def networks(state: dict) -> tuple[str, ...]:
    """The networks carried past the search: the chosen one, and the uniform one when one fits."""
    return ("chosen", "uniform") if state["search"].get("uniform") else ("chosen",)


def stage_line(stage: str, r: dict, state: dict) -> str:
    """The stage's one terminal line: what it found, in a few words (run.log and report.md say why)."""
    if stage == "profile":
        c = r["check"]
        line = f"{r['name']}; {c['within_10']:.0%} of a fresh check within ±10 % of it"
        if c.get("machine_note"):
            line += f" ({other_machine(c['host_speed'])}: ms are at its speed)"
        return line
    if stage == "train":
        acc = r.get("final", {}).get("val_acc_widest")
        return f"{r['epochs']} epochs" + (f", widest network val acc {acc:.2%}" if isinstance(acc, float) else "")
    if stage == "search":
        uni = r.get("uniform")
        return (f"chosen network predicted {r['chosen']['predicted_ms']:.4f} ms for a {r['budget_ms']:.4f} ms "
                f"budget; compared with {uniform_name(uni) if uni else 'no multiplier (none fits)'}")
    if stage == "finetune":
        return "test acc " + ", ".join(f"{label(state, k)} {r[k]['test_acc']:.2%}" for k in networks(state))
    if stage == "export":
        return ", ".join(f"{Path(r[k]['path']).name}" for k in networks(state)) + \
            f" (onnxruntime matches PyTorch to {max(r[k]['max_abs_diff'] for k in networks(state)):.0e})"
    if stage == "verify":
        return "; ".join(f"{label(state, k)} measured {r[k]['normalised_ms']:.4f} ms, "
                         f"{r[k]['budget_verdict']['verdict']}" for k in networks(state)) + \
            f" (budget {state['search']['budget_ms']:.4f} ms)"
    if stage == "report":
        return str(r["report"])
    return "done"


def label(state: dict, name: str) -> str:
    """'chosen', or the compared network's name ('uniform8 x0.55')."""
    return name if name != "uniform" else uniform_name(state["search"]["uniform"])


def summary_text(state: dict, space, run_dir: Path, subset: tuple[int, int] | None = None) -> str:
    """The terminal's closing lines: widths, accuracies, latencies against the budget, the time table.
    subset: (supernet epochs, training images) of a run on part of the data, which the accuracy line names
    (the demo's accuracies are those of a few minutes' training, not what the network can reach)."""
    s, f, v = state["search"], state["finetune"], state["verify"]
    uni = s.get("uniform")
    vs = variables(space)
    wn = max(8, *(len(n) for n, _, _ in vs))
    rows = [f"{'group':{wn}s} {'base':>5s} {'chosen':>7s} {'uniform':>8s}"]
    for i, (name, base, _) in enumerate(vs):
        rows.append(f"{name:{wn}s} {base:5d} {s['chosen']['widths'][i]:7d} {uni['widths'][i] if uni else '-':>8}")
    un = uniform_name(uni) if uni else None
    if uni:
        what = ("the largest multiplier rounded to 8 channels measured within budget" if uni.get("grid") == "dense8"
                else "the largest multiplier of the search grid within budget")
    rows.append(f"uniform: {un} ({what})" if uni else "uniform: no width multiplier fits the budget")
    rows.append(f"test accuracy: chosen {f['chosen']['test_acc']:.2%}"
                + (f", {un} {f['uniform']['test_acc']:.2%}" if uni else "") + f" ({f['mode']}"
                + (f"; a quick run: supernet {subset[0]} epochs on {subset[1]} images, --full trains on all"
                   if subset else "") + ")")
    for name in networks(state):
        vn = v[name]
        pred = "" if vn["predicted_ms"] is None else f"predicted {vn['predicted_ms']:.4f} ms, "
        rows.append(f"latency {name if name == 'chosen' else un}: {pred}measured {vn['normalised_ms']:.4f} ms, "
                    f"budget {s['budget_ms']:.4f} ms -> "
                    f"{vn.get('budget_verdict', {}).get('verdict') or ('within' if vn['within_budget'] else 'over')}")
    chk = state["profile"].get("check") or {}
    if chk.get("machine_note"):  # a profile of the other machine kind, kept: its ms, not this machine's
        rows.append(f"ms are the profile machine's ({other_machine(chk['host_speed'])}; run.log, report.md)")
    elif isinstance(chk.get("host_speed"), (int, float)):
        rows.append(f"ms are this machine's: its reference network ran at {chk['host_speed']:.2f} x "
                    "the profile's time")
    for name, r in state["report"].get("flips", {}).items():
        rows.append(f"negative flip rate of the chosen network against the {name}: {r['nfr']:.2%} "
                    f"(positive {r['pfr']:.2%})")
    rows.append("one run cannot tell two networks apart by accuracy: that takes paired seeds and a confidence "
                "interval (docs/RESULTS.md)")
    rows.extend(time_table({k: state[k]["seconds"] for k in STAGES
                            if isinstance(state.get(k, {}).get("seconds"), (int, float))}))
    rows.append(f"ONNX: {state['export']['chosen']['path']}  (report: {state['report']['report']}; every message "
                f"in full: {run_dir / LOG_NAME})")
    return "\n".join(rows)


def uniform_name(rec: dict) -> str:
    """'uniform8 x0.55' or 'uniform x0.55' (the ladder's, on the search grid)."""
    return f"{'uniform8' if rec.get('grid') == 'dense8' else 'uniform'} x{rec['info'].get('multiplier')}"


def other_machine(speed: float) -> str:
    """'made on a machine 1.76 x faster than this one' from this machine's time over the profile's."""
    return (f"made on a machine {speed:.2f} x faster than this one" if speed > 1 else
            f"made on a machine {1 / speed:.2f} x slower than this one")


def time_table(secs: dict[str, float]) -> list[str]:
    """Two aligned lines, stage names over their times, and the total: where the run's time went."""
    cols = [(k, duration(v)) for k, v in secs.items()] + [("total", duration(sum(secs.values())))]
    w = [max(len(a), len(b)) for a, b in cols]
    return ["time  " + "  ".join(f"{a:>{n}}" for (a, _), n in zip(cols, w)),
            "      " + "  ".join(f"{b:>{n}}" for (_, b), n in zip(cols, w))]


def duration(s: float) -> str:
    """'42 s' or '6.1 min'."""
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"
