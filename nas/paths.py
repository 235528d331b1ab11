"""The paths a run records (space, data, profile, weights, previous model, ...) and how a resume compares
them. Later commands often read a run from another directory than the one it was made in, so
`recorded_path` records each path absolute (a relative one, recorded before, is read against the current one)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

# The settings (TrainConfig, RunConfig) whose value may be a path: space and profile may instead be the
# name of a shipped one, dataset the name of a dataset (or a .npz file, when no --data is given).
PATH_SETTINGS = ("space", "dataset", "data", "profile", "weights", "previous", "congruent")


def _is_name(setting: str | None, value: str) -> bool:
    """Whether a setting's value is read as a name, not a path: a shipped space (`get_space` looks names
    up first) or a dataset other than a .npz file; a profile is a path whenever it exists (`load_profile`)."""
    if setting == "space":
        from widthnas.models.families import SPACES

        return value in SPACES
    if setting == "dataset":
        return not value.endswith(".npz")
    return False


def recorded_path(value: str | Path | None, setting: str | None = None) -> str | None:
    """`value` (of the TrainConfig / RunConfig field `setting`) absolute when it names a file or directory
    that exists here; else as given: a name, or a missing path, whose error then names it as typed."""
    if value is None or (isinstance(value, str) and (not value or _is_name(setting, value))):
        return value
    p = Path(value)
    return str(p.absolute()) if not p.is_absolute() and p.exists() else str(value)


def with_recorded_paths(cfg):
    """A copy of a settings dataclass (TrainConfig, RunConfig) with its path settings recorded."""
    return replace(cfg, **{k: recorded_path(getattr(cfg, k), k) for k in PATH_SETTINGS
                           if isinstance(getattr(cfg, k, None), str)})


def same_setting(setting: str, saved, given) -> bool:
    """Whether a setting given now is the one a run saved, for a resume: equal values, or for a path
    setting the same file (`--space runs/x/space.json` matches the absolute path the run recorded)."""
    if saved == given:
        return True
    return (setting in PATH_SETTINGS and isinstance(saved, str) and isinstance(given, str)
            and not _is_name(setting, saved) and not _is_name(setting, given)
            and Path(saved).resolve() == Path(given).resolve())
