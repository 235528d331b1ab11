"""The checks every command shares, made before anything runs or is written.

Bad input fails at once with the option's name and what to give: `UserError` (printed by the CLI as
one clear line, exit code 2), the output-file checks (no output may overwrite an input, a shipped
profile or another output), and the numeric settings' rules.

The numeric rules: a bad value (`--batch-size 0`, `--lr nan`, `--heldout-networks -3`) must fail at
once with the option's name and what to give, not as a ZeroDivisionError or a run of NaN losses
minutes later. The same rules check settings read back from a file (a resumed run's
`run_config.json`, a checkpoint's training settings).

This module imports nothing from the command modules (nas/commands/), which import it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


class UserError(Exception):
    """Bad input: printed as one clear line, exit code 2."""


def refuse_shipped(out: str, force: bool, flag: str = "--out") -> None:
    """A shipped profile holds validated figures: overwrite it only when asked to."""
    from widthnas.latency import registry

    registry.refuse_shipped(out, force, flag)


def refuse_inputs(out: str | None, inputs, flag: str) -> None:
    """An output that is one of the command's input files would destroy measurements: refuse it."""
    if out is None:
        return
    for p in inputs:
        if Path(out).resolve() == Path(p).resolve():
            raise UserError(f"{flag} {out} is one of the input files; its measurements would be overwritten. "
                            "Choose another path")


def check_outputs(outputs: dict[str, str | Path | None], inputs, force: bool = False) -> None:
    """Before anything is computed: no output may be an input file, a shipped profile (unless
    `force`), or another output of the same command. `outputs` maps the option that names a file
    (or what it is, e.g. "the sidecar of --out") to its path; None entries are skipped."""
    seen: dict[Path, str] = {}
    for flag, out in outputs.items():
        if out is None:
            continue
        refuse_inputs(str(out), [p for p in inputs if p is not None], flag)
        refuse_shipped(str(out), force, flag)
        r = Path(out).resolve()
        if r in seen:
            raise UserError(f"{flag} {out} is also {seen[r]}: one would overwrite the other; choose two paths")
        seen[r] = flag


def check_plot_path(path: str | None) -> None:
    """A plot path matplotlib can write, checked before the fit or the measurements it would follow."""
    if path is None:
        return
    import matplotlib

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


def check_remeasure(args, inputs) -> int:
    """--remeasure N (0 = off) and --remeasure-out, checked before anything is measured or written;
    `inputs` are the command's other files, which --remeasure-out must not be."""
    from widthnas.latency.noise_floor import check_count

    n = check_count(args.remeasure)
    if args.remeasure_out is not None:
        if n == 0:
            raise UserError("--remeasure-out needs --remeasure N > 0")
        refuse_inputs(args.remeasure_out, inputs, "--remeasure-out")
        refuse_shipped(args.remeasure_out, False, "--remeasure-out")
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
        parts = [f">= {self.low:g}" if self.low is not None else "", f"> {self.above:g}" if self.above is not None else "",
                 f"<= {self.high:g}" if self.high is not None else "", f"< {self.below:g}" if self.below is not None else ""]
        rng = " and ".join(p for p in parts if p)
        return f"{what}{' ' + rng if rng else ''}{' (or 0)' if self.zero_ok else ''}"

    def ok(self, v) -> bool:
        if v is None:
            return self.none_ok
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.integer and not (isinstance(v, int) or float(v).is_integer()):
            return False
        if not math.isfinite(v):
            return False
        if self.zero_ok and v == 0:
            return True
        return ((self.low is None or v >= self.low) and (self.above is None or v > self.above)
                and (self.high is None or v <= self.high) and (self.below is None or v < self.below))


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def check_settings(obj, rules: dict[str, Rule], where: str = "") -> None:
    """Raise ValueError naming every field of `obj` whose value breaks its rule."""
    bad = []
    for field, rule in rules.items():
        v = getattr(obj, field)
        if not rule.ok(v):
            bad.append(f"{option_name(field)} {v!r}: give {rule.describe()}")
    if bad:
        raise ValueError(f"{where + ': ' if where else ''}" + "; ".join(bad))


INT_POS = Rule(integer=True, low=1)
INT_NONNEG = Rule(integer=True, low=0)
POSITIVE = Rule(above=0)
