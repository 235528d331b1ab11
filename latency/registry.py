"""Shipped profiles in hw_profiles/, and choosing one that matches this machine."""
from __future__ import annotations

import json
from pathlib import Path

from .table import LatencyTable
from .standalone_runner import UNRECORDED_OK, describe_differences, device_differences, device_key

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hw_profiles"


def profile_path(name_or_path: str | Path) -> Path:
    """The file of a profile given as a path, or as the name of a shipped one (hw_profiles/<name>.json)."""
    p = Path(name_or_path)
    if not p.exists() and (PROFILE_DIR / f"{name_or_path}.json").exists():
        p = PROFILE_DIR / f"{name_or_path}.json"
    return p


def load_profile(name_or_path: str | Path) -> LatencyTable:
    """A profile file, or the name of a shipped one (hw_profiles/<name>.json)."""
    return LatencyTable.load(profile_path(name_or_path))


def shipped_profiles() -> list[Path]:
    return sorted(PROFILE_DIR.glob("*.json"))


def find_profile(space, device: dict) -> tuple[Path | None, str]:
    """(a shipped profile for this space and device key, or None; why)."""
    found, why = matching_profiles(space, device)
    return (found[0] if found else None), why


def matching_profiles(space, device: dict) -> tuple[list[Path], str]:
    """Every shipped profile for this space and device key, exact matches first, then those that predate
    a field of the key; why the first was chosen. Machines behind one key differ: a run times to choose."""
    want = device_key(device)
    reasons, unrecorded, exact = [], [], []
    for p in shipped_profiles():
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            reasons.append(f"{p.name}: unreadable")
            continue
        if d.get("space", {}).get("fingerprint") != space.fingerprint:
            continue
        diff = device_differences(device, d.get("device", {}))
        if diff:
            reasons.append(f"{p.name}: {describe_differences(diff, 'here', 'in the profile')}")
            continue
        gaps = [k for k in UNRECORDED_OK if want.get(k) not in (None, "") and d.get("device", {}).get(k) in (None, "")]
        if gaps:  # matches only because it predates these fields: take it if nothing matches exactly
            unrecorded.append((p, gaps))
            continue
        exact.append(p)
    rest = [p for p, _ in unrecorded]
    if exact:
        p = exact[0]
        return exact + rest, f"shipped profile {p.name} matches this space and device ({want['cpu']}, {want['isa']}, " \
                             f"{want['provider']}, {want['threads']} thread(s), batch {want['batch']})"
    if unrecorded:
        p, gaps = unrecorded[0]
        return rest, f"shipped profile {p.name} matches this space and device, but does not record its {', '.join(gaps)} " \
                     f"(here: {', '.join(str(want[k]) for k in gaps)}): it may come from another CPU of the same name; " \
                     "the run's latency check tells, or profile this machine with `widthnas profile`"
    why = "; ".join(reasons) if reasons else f"no shipped profile for space {space.name}"
    return [], f"no matching profile ({why})"
