"""Verification of an exported network: its measured latency against the budget, repeated until the
verdict is clear, with what the timings said about the host (another machine, an unusual speed)."""
from __future__ import annotations

from typing import Callable

from widthnas.latency.verdict import WITHIN, budget_verdict, describe

from .export import measure_exported


def host_notes(records: list[dict]) -> tuple[str | None, str | None]:
    """A verification's repeated timings each name their own host speed in their notes: one note per kind
    instead, (another machine, a host speed the profile's correction was not fitted on), each the note of
    the kind's median-speed timing with the range of speeds every timing saw, or None."""
    speeds = [r["host_speed"] for r in records if isinstance(r.get("host_speed"), (int, float))]

    def note(machine: bool) -> str | None:
        noted = sorted((r for r in records if r.get("host_note") and bool(r.get("machine_note")) == machine),
                       key=lambda r: r.get("host_speed") or 0.0)
        if not noted:
            return None
        mid = noted[len(noted) // 2]["machine_note" if machine else "host_note"]
        if len(records) > 1 and speeds:
            mid += (f" ({len(noted)} of {len(records)} timings noted; the reference ran {min(speeds):.2f}-"
                    f"{max(speeds):.2f} x its profiled time across them)")
        return mid

    return note(True), note(False)


def verify_exported(path: str, table, budget_ms: float, predicted_ms: float | None, rounds: int, round_ms: float,
                    guard=None, log: Callable[[str], None] = print, name: str = "chosen") -> dict:
    """Time the ONNX file at `path` (ms at the profile's host speed) until its 95 % interval clears
    budget_ms (latency.verdict.budget_verdict); the first timing's record with the verdict's mean, the
    error against predicted_ms, counts of disturbed timings and the host notes over every timing."""
    records: list[dict] = []

    def measure() -> float:
        log(f"verify {name}: timing {len(records) + 1}")
        for _ in range(3):  # each already waited and re-measured up to twice; then keep it, flagged
            records.append(measure_exported(path, table, rounds, round_ms, guard=guard))
            if not records[-1]["disturbed"]:
                break
        return records[-1]["normalised_ms"]

    bv = budget_verdict(measure, budget_ms)  # re-measured until the 95 % interval clears the budget
    m = {**records[0], "normalised_ms": bv["mean_ms"],  # both readings over the same timings
         "reference_normalised_ms": sum(r["reference_normalised_ms"] for r in records) / len(records)}
    m.update({"predicted_ms": predicted_ms, "budget_ms": budget_ms, "within_budget": bv["verdict"] == WITHIN,
              "budget_verdict": bv, "error": None if predicted_ms is None else m["normalised_ms"] / predicted_ms - 1,
              # measurements repeated after a disturbance; still disturbed (dropped when a clean one followed)
              "remeasured": sum(r["remeasured"] > 0 for r in records),
              "disturbed": sum(r["disturbed"] for r in records),
              "unsettled": sum(r.get("unsettled", 0) for r in records)})
    other, speed = host_notes(records)  # over every timing, not records[0]'s alone
    notes = [n for n in (other, speed) if n]
    m.update(host_notes=notes, host_note="; ".join(notes) or None, machine_note=other)
    noisy = (f"; {m['remeasured']} measurement(s) repeated after a disturbance, {m['disturbed']} still "
             "disturbed" if m["remeasured"] or m["disturbed"] else "")
    if m["unsettled"]:
        noisy += f"; {m['unsettled']} timing(s) never met their spread target (noisier; the interval counts it)"
    for n in notes:
        log(f"verify {name}: note: {n}")
    vs = ("off the profile's grid, not predicted" if predicted_ms is None
          else f"vs predicted {predicted_ms:.4f} ms ({m['error']:+.1%})")
    log(f"verify {name}: measured {m['normalised_ms']:.4f} ms (at the profile's host speed, read off its "
        f"{m['read_off']}; raw median {m['measured_ms']:.4f} ms) {vs}; {describe(bv)}{noisy}")
    return m
