"""Width helpers shared by every search space: choices rounded to 8 channels, input shapes,
multipliers, fingerprint checks. The spaces themselves are graph spaces (graph_space.py)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

CHAIN_FORMAT = "widthnas-space/1"  # MobileNet-v1 spaces before they became graph spaces: refused, with what to do


class WidthError(ValueError):
    """A width configuration that does not fit the search space."""


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, int, int]:
    """'3,32,32' (C,H,W of one image) -> (3, 32, 32); anything else is refused with what to give."""
    try:
        shape = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input-shape {text!r}: give C,H,W of one image as three positive whole numbers, "
                         "e.g. 3,32,32")
    return shape


def width_choices(base: int, lo: float = 0.2, hi: float = 1.5, levels: int = 14, round_to: int = 8) -> tuple[int, ...]:
    """Multipliers lo..hi of `base` in `levels` steps, rounded to multiples of `round_to`.

    Multiples of 8 keep the vector units of CPUs and GPUs full, so widths map to real speed.
    """
    mults = np.linspace(lo, hi, levels)
    rounded = {max(round_to, int(np.floor(base * m / round_to + 0.5)) * round_to) for m in mults}
    return tuple(sorted(rounded))


def check_fingerprint(found: str, expected, what: str) -> None:
    """Refuse an artefact made for another search space."""
    if found != expected.fingerprint:
        raise ValueError(
            f"{what} was made for search space fingerprint {found}, but this space "
            f"({expected.name}, {expected.input_shape}) has {expected.fingerprint}; "
            "use the same --space (and input shape) that produced it, or regenerate it"
        )


def parse_multiplier(text: str, variables: Sequence[tuple[Sequence[int], int]], space_name: str) -> float:
    """'x0.75' -> 0.75, within the multipliers the (choices, base) of each variable span (never a
    silent clamp)."""
    lo = min(c[0] / b for c, b in variables)
    hi = max(c[-1] / b for c, b in variables)
    try:
        m = float(text[1:])
    except ValueError:
        m = float("nan")
    if not lo <= m <= hi:  # also NaN, inf
        raise WidthError(f"widths {text!r}: a uniform multiplier is 'x' and a number between x{lo:g} and "
                         f"x{hi:g} (the widths space {space_name!r} offers), e.g. x0.75")
    return m
