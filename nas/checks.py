"""The checks every command shares, made before anything runs or is written: bad input fails at once
with the option's name and what to give (`UserError`: one line, exit code 2), not as a ZeroDivisionError
or NaN losses minutes later. The numeric rules also check settings read back from a file."""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path


class UserError(Exception):
    """Bad input: printed as one clear line, exit code 2."""


def check_outputs(outputs: dict[str, str | Path | None], inputs=(), force: bool | None = None,
                  in_place: dict[str, str] | None = None, dirs: dict[str, str | Path] | None = None) -> None:
    """The one check of every file a command writes, made before anything is loaded, computed or written.

    `outputs` maps what names a file (an option, or "the sidecar of --out m.onnx": the first --option in
    it is what the message asks to change) to its path; `inputs` maps an option or description to a path
    or list of paths, or is a list of (description, path or paths) pairs and plain paths; None is skipped. Refused:
    - an output that is (resolved) an input, unless `in_place` maps its name to that input's (ladder's
      --out to --profile); an option both read and written (a resumable file) is not its own input;
    - an existing shipped file (hw_profiles/), unless `force` (None: the command has no --force);
    - two outputs that are one file;
    - an input inside one of `dirs`, directories the command fills with files of its own naming."""
    from widthnas.latency.registry import PROFILE_DIR

    resolved = _resolver()
    pairs = (inputs.items() if isinstance(inputs, dict)
             else [i if isinstance(i, tuple) else ("an input file", i) for i in inputs])
    ins = [(label, Path(p), resolved(Path(p))) for label, v in pairs
           for p in (v if isinstance(v, (list, tuple)) else [v]) if p is not None]
    shipped = PROFILE_DIR.resolve()
    seen: dict[Path, str] = {}
    for label, out in outputs.items():
        if out is None:
            continue
        opt = _option(label)
        what = f"{label} {out}" if label == opt else f"{label} ({out})"
        r = Path(out).resolve()
        for in_label, p, rp in ins:
            if rp == r and in_label != label and (in_place or {}).get(label) != in_label:
                raise UserError(f"{what} is one of the input files: it would overwrite {_named(in_label, p)}; "
                                f"choose another {opt}")
        if r.is_file() and shipped in r.parents and not force:
            raise UserError(f"{what} is a shipped file ({shipped}): it holds validated figures; choose "
                            f"another {opt} (e.g. {Path(out).stem}_new{Path(out).suffix})"
                            + (", or pass --force to replace it" if force is not None else ""))
        if r in seen:
            raise UserError(f"{what} is also {seen[r]}: one would overwrite the other; choose two paths")
        seen[r] = label
    for label, d in (dirs or {}).items():
        rd = Path(d).resolve()
        for in_label, p, rp in ins:
            if rd in rp.parents:
                raise UserError(f"{_named(in_label, p)} lies in {d}, where {label} writes files of its own: it "
                                f"could be overwritten; move it elsewhere, or choose another {_option(label)}")


def _named(label: str, path) -> str:
    """An input as a message names it: '--profile p.json', or 'p.json (a file of --run r)'."""
    return f"{label} {path}" if label.startswith("-") else f"{path} ({label})"


def _option(label: str) -> str:
    """The option that names an output: the first --option in its name ("the plot beside --out": --out)."""
    m = re.search(r"--[a-z][a-z0-9-]*", label)
    return m.group(0) if m else label


def _resolver():
    """`Path.resolve`, resolving each directory once: a dataset directory's thousands of image files
    (`dataset_inputs`) would otherwise each be resolved component by component."""
    resolved_dir = functools.lru_cache(maxsize=None)(Path.resolve)
    return lambda p: p.resolve() if p.name in ("", ".", "..") or p.is_symlink() else resolved_dir(p.parent) / p.name


def dataset_inputs(dataset: str, data: str | Path | None) -> list[tuple[str, Path]]:
    """The files --dataset / --data are read from, as `check_outputs` inputs: every file a --data
    directory holds that the dataset reads (nas/data.py `data_files`), not the directory alone, which
    no output path can equal."""
    from .data import data_files

    label = ("--data" if data is not None else "--dataset" if str(dataset).endswith(".npz")
             else f"the {dataset} dataset")
    return [(label, p) for p in data_files(dataset, data)]


def run_inputs(run: str | Path | None, own: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """Every file a command reading the run directory `run` must not overwrite, as (description, path):
    the files of the directory, of its supernet/, of the `widthnas run` directory whose supernet/ it is,
    and the files its training or run recorded reading (dataset, space, profile, weights, previous and
    congruent models). `own`: names the command itself writes there (curve's curve.csv), left out.
    Nothing for a path that is no directory: the command says so."""
    from .data import data_files

    if run is None or not Path(run).is_dir():
        return []
    d = Path(run)
    dirs = {d: f"a file of --run {run}"}  # each directory read, and how its files are named
    if (d / "supernet").is_dir():  # a `widthnas run` directory: its supernet's checkpoint, settings, unaries
        dirs[d / "supernet"] = f"a file of --run {run}"
    parent = d.parent if d.name == "supernet" else d.resolve().parent  # as given, where it can be
    if d.resolve().name == "supernet" and (parent / "run_state.json").is_file():
        # `--run R/supernet`: the run R's config.json, model.onnx, report, ...
        dirs[parent] = f"a file of the run {parent} whose supernet is --run {run}"
    found = [(what, p) for dd, what in dirs.items() for p in sorted(dd.iterdir())
             if p.is_file() and not (dd == d and p.name in own)]
    for dd in dirs:  # what the training or the run read: its dataset, space, profile, weights
        for rec in ("train_config.json", "run_config.json", "run_state.json"):
            try:
                saved = json.loads((dd / rec).read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(saved, dict):
                continue
            named = {k: [saved.get(k)] for k in ("space", "profile", "weights")}
            if isinstance(saved.get("profile"), dict):  # run_state.json: {"profile": {"path": ...}}
                named["profile"] = [saved["profile"].get("path")]
            for k in ("previous", "congruent"):  # run_config.json: an .onnx (and its sidecar) or a run directory
                if isinstance(saved.get(k), str):
                    named[k] = previous_inputs(saved[k])
            dataset, data = saved.get("dataset", "fashion_mnist"), saved.get("data")
            if "dataset" in saved and isinstance(dataset, str) and isinstance(data, (str, type(None))):
                named["data"] = data_files(dataset, data)
            found += [(f"the {k} file {dd / rec} records", Path(v)) for k, vs in named.items() for v in vs
                      if isinstance(v, (str, Path)) and Path(v).is_file()]
    return found


def previous_inputs(path: str | Path | None) -> list[Path]:
    """The files a previous model (--against, --previous, --congruent: an .onnx or a `widthnas run`
    directory, whose model.onnx) is read from: the .onnx and its sidecar (its normalization)."""
    if path is None:
        return []
    p = Path(path) / "model.onnx" if Path(path).is_dir() else Path(path)
    return [p, p.with_suffix(".json")]


def check_plot_path(path: str | None) -> None:
    """A plot path matplotlib can write, checked before the fit or the measurements it would follow."""
    if path is None:
        return
    import matplotlib.figure  # (not loaded by `import matplotlib` alone)

    ok = matplotlib.figure.Figure().canvas.get_supported_filetypes()
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in ok:
        raise UserError(f"--plot {path}: give a file ending in one of {', '.join('.' + e for e in sorted(ok))} "
                        "(e.g. fit.png)")


def check_calib_images(n: int, zero_ok: bool = False) -> None:
    """--calib-images: recalibrating BatchNorm on no images would reset its statistics to 0 and 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < (0 if zero_ok else 1):
        raise UserError(f"--calib-images {n}: use 1 or more (e.g. 1024)" + (", or 0 to keep the model's own "
                        "BatchNorm statistics" if zero_ok else "; a supernet's shared statistics fit no single "
                        "network, so they must be re-estimated"))


def check_remeasure(args) -> int:
    """--remeasure N (0 = off) and --remeasure-out (which needs N > 0), checked before anything is
    measured or written; --remeasure-out's path goes through `check_outputs` with the command's others."""
    from widthnas.latency.noise_floor import check_count

    n = check_count(args.remeasure)
    if args.remeasure_out is not None and n == 0:
        raise UserError("--remeasure-out needs --remeasure N > 0")
    return n


# ---- numeric settings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    integer: bool = False
    low: float | None = None  # smallest allowed value (inclusive)
    above: float | None = None  # values must be strictly above this
    high: float | None = None  # largest allowed value (inclusive)
    below: float | None = None  # values must be strictly below this
    none_ok: bool = False  # None means "not set" (e.g. --limit: the whole split)
    zero_ok: bool = False  # 0 allowed besides the range (e.g. --remeasure 0: off)

    def describe(self) -> str:
        what = "a whole number" if self.integer else "a finite number"
        bounds = ((">=", self.low), (">", self.above), ("<=", self.high), ("<", self.below))
        rng = " and ".join(f"{op} {v:g}" for op, v in bounds if v is not None)
        return f"{what}{' ' + rng if rng else ''}{' (or 0)' if self.zero_ok else ''}"

    def ok(self, v) -> bool:
        if v is None:
            return self.none_ok
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.integer and not (isinstance(v, int) or float(v).is_integer()):
            return False
        if self.zero_ok and v == 0:
            return True
        return ((self.low is None or v >= self.low) and (self.above is None or v > self.above)
                and (self.high is None or v <= self.high) and (self.below is None or v < self.below))


def check_settings(obj, rules: dict[str, Rule], where: str = "") -> None:
    """Raise ValueError naming every field of `obj` whose value breaks its rule."""
    bad = [f"--{field.replace('_', '-')} {getattr(obj, field)!r}: give {rule.describe()}"
           for field, rule in rules.items() if not rule.ok(getattr(obj, field))]
    if bad:
        raise ValueError(f"{where + ': ' if where else ''}" + "; ".join(bad))


INT_POS = Rule(integer=True, low=1)
INT_NONNEG = Rule(integer=True, low=0)
POSITIVE = Rule(above=0)
