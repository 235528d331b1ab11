"""The search space: the single source of truth for layers, strides, channels and width choices.

Every artefact that depends on the space (samples, profiles, unaries, checkpoints, chosen
configurations) records `SearchSpace.fingerprint` and consumers refuse a mismatch.

Layer layout of a MobileNet-v1 space with L searchable layers:
  layer 0      stem: full 3x3 conv, input channels -> widths[0]
  layer 1..L-1 depthwise-separable block: 3x3 depthwise on widths[i-1], 1x1 pointwise -> widths[i]
  head         global average pool + linear widths[L-1] -> num_classes (not searchable)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

FORMAT = "widthnas-space/1"


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


@dataclass(frozen=True)
class LayerSpec:
    name: str
    kind: str  # "conv" (stem, full 3x3) or "dwsep" (3x3 depthwise + 1x1 pointwise)
    stride: int
    base: int  # base output channels
    choices: tuple[int, ...]  # allowed output channels, ascending


@dataclass(frozen=True)
class SearchSpace:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    layers: tuple[LayerSpec, ...]
    _fp: str = field(default="", compare=False, repr=False)

    # ---- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "layers": [
                {"name": l.name, "kind": l.kind, "stride": l.stride, "base": l.base, "choices": list(l.choices)}
                for l in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a widthnas search space (format {d.get('format')!r}, expected {FORMAT!r})")
        layers = tuple(
            LayerSpec(l["name"], l["kind"], int(l["stride"]), int(l["base"]), tuple(int(c) for c in l["choices"]))
            for l in d["layers"]
        )
        space = cls(d["name"], tuple(int(x) for x in d["input_shape"]), int(d["num_classes"]), layers)
        space.check()
        return space

    @property
    def fingerprint(self) -> str:
        """Short hash of the JSON form: equal fingerprints mean interchangeable artefacts."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def check(self) -> None:
        shape = self.input_shape
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape {list(shape)}: expected C, H, W, three positive whole numbers")
        if self.num_classes < 1:
            raise ValueError(f"num_classes {self.num_classes}: expected a positive whole number")
        for l in self.layers:
            if l.stride < 1 or l.base < 1:
                raise ValueError(f"layer {l.name}: stride {l.stride} and base {l.base} must be positive whole numbers")
        if not self.layers or self.layers[0].kind != "conv":
            raise ValueError("a space starts with a 'conv' stem layer")
        for l in self.layers[1:]:
            if l.kind != "dwsep":
                raise ValueError(f"layer {l.name}: kind {l.kind!r}; only the stem is 'conv', the rest 'dwsep'")
        for l in self.layers:
            if not l.choices or list(l.choices) != sorted(set(l.choices)) or l.choices[0] <= 0:
                raise ValueError(f"layer {l.name}: choices must be positive, unique and ascending: {l.choices}")

    # ---- widths ----------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def choices(self) -> list[tuple[int, ...]]:
        return [l.choices for l in self.layers]

    @property
    def base_widths(self) -> list[int]:
        return [l.base for l in self.layers]

    @property
    def reference_widths(self) -> list[int]:
        """The 1.0x network (nearest choices to the base): the profiling reference."""
        return self.uniform(1.0)

    @property
    def max_widths(self) -> list[int]:
        return [l.choices[-1] for l in self.layers]

    @property
    def min_widths(self) -> list[int]:
        return [l.choices[0] for l in self.layers]

    def validate(self, widths: Sequence[int]) -> list[int]:
        """Return widths as ints, or raise WidthError naming the first bad layer and its choices."""
        widths = [int(w) for w in widths]
        if len(widths) != self.num_layers:
            raise WidthError(f"{len(widths)} widths given; space {self.name!r} has {self.num_layers} layers")
        for i, (w, l) in enumerate(zip(widths, self.layers)):
            if w not in l.choices:
                raise WidthError(f"layer {i} ({l.name}): width {w} is not a choice; choices are {list(l.choices)}")
        return widths

    def indices(self, widths: Sequence[int]) -> list[int]:
        """Width -> index into each layer's choices."""
        return [self.layers[i].choices.index(w) for i, w in enumerate(self.validate(widths))]

    def widths_from_indices(self, idx: Sequence[int]) -> list[int]:
        return [self.layers[i].choices[int(k)] for i, k in enumerate(idx)]

    def uniform(self, mult: float) -> list[int]:
        """The choice nearest to mult x base in every layer (the uniform width-multiplier network)."""
        return [min(l.choices, key=lambda c: (abs(c - mult * l.base), c)) for l in self.layers]

    def parse_widths(self, text: str) -> list[int]:
        """'32,64,...' or a JSON list or a uniform multiplier like 'x0.75'; WidthError says what is wrong."""
        text = text.strip()
        if text.startswith("x"):
            return self.uniform(self._multiplier(text))
        try:
            widths = json.loads(text) if text.startswith("[") else [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise WidthError(f"widths {text!r}: give channels as '8,16,...' or a JSON list, or a uniform "
                             "multiplier such as 'x0.75'")
        if not isinstance(widths, list) or not all(isinstance(w, int) for w in widths):
            raise WidthError(f"widths {text!r}: a JSON list of whole channel counts, e.g. [8, 16, ...]")
        return self.validate(widths)

    def _multiplier(self, text: str) -> float:
        return parse_multiplier(text, [(l.choices, l.base) for l in self.layers], self.name)

    # ---- geometry --------------------------------------------------------------------
    def spatial_sizes(self) -> list[int]:
        """Output side length of every layer (conv padding 1, kernel 3)."""
        h = self.input_shape[1]
        out = []
        for l in self.layers:
            h = (h + 2 - 3) // l.stride + 1
            out.append(h)
        return out

    def macs(self, widths: Sequence[int]) -> int:
        """Multiply-accumulates of one image, the FLOPs proxy."""
        widths = self.validate(widths)
        sizes = self.spatial_sizes()
        total = 9 * self.input_shape[0] * widths[0] * sizes[0] ** 2
        for i in range(1, self.num_layers):
            hw = sizes[i] ** 2
            total += 9 * widths[i - 1] * hw + widths[i - 1] * widths[i] * hw
        return total + widths[-1] * self.num_classes

    def with_input(self, input_shape: Sequence[int] | None = None, num_classes: int | None = None) -> "SearchSpace":
        """The same layers for another input shape or class count (a different fingerprint)."""
        space = SearchSpace(self.name, parse_input_shape(input_shape) if input_shape else self.input_shape,
                            num_classes or self.num_classes, self.layers)
        space.check()
        return space

    def with_dense_choices(self, step: int = 8) -> "SearchSpace":
        """Every multiple of `step` up to each layer's widest choice (plus the existing choices): the
        widths a plain width multiplier rounded to `step` produces, for baselines off the search grid.
        The latency profile does not cover the new widths; measure them."""
        from dataclasses import replace

        if step < 1:
            raise ValueError(f"step {step}: give a positive channel step, e.g. 8")
        layers = tuple(replace(l, choices=tuple(sorted(set(range(step, l.choices[-1] + 1, step)) | set(l.choices))))
                       for l in self.layers)
        return SearchSpace(self.name, self.input_shape, self.num_classes, layers)

    def multiplier_widths(self, mult: float, round_to: int = 8) -> list[int]:
        """A width multiplier as users apply it: mult x base rounded to a multiple of `round_to`
        (at least `round_to`, at most the widest choice). Not always on the search grid."""
        if not (mult > 0 and mult == mult):
            raise ValueError(f"multiplier {mult!r}: give a positive number, e.g. 0.5")
        return [int(min(l.choices[-1], max(round_to, round_to * int(mult * l.base / round_to + 0.5))))
                for l in self.layers]


# ---- shipped spaces ------------------------------------------------------------------
_MBV1_CHANNELS = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
_MBV1_STRIDES = [2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
# Small inputs: stem and block 6 keep stride 1, so 28 px ends at 4x4 after three stride-2 layers.
_SMALL_STRIDES = [1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1]


def _mobilenet(name: str, channels, strides, input_shape, num_classes) -> SearchSpace:
    layers = tuple(
        LayerSpec("stem" if i == 0 else f"block{i}", "conv" if i == 0 else "dwsep", s, c, width_choices(c))
        for i, (c, s) in enumerate(zip(channels, strides))
    )
    space = SearchSpace(name, tuple(input_shape), num_classes, layers)
    space.check()
    return space


def mobilenet_v1() -> SearchSpace:
    """The paper's space: MobileNet-v1 on 224x224x3, 1000 classes."""
    return _mobilenet("mobilenet_v1", _MBV1_CHANNELS, _MBV1_STRIDES, (3, 224, 224), 1000)


def mobilenet_v1_small() -> SearchSpace:
    """The demo space: half-width MobileNet-v1 for 28-32 px images, 10 classes."""
    return _mobilenet("mobilenet_v1_small", [c // 2 for c in _MBV1_CHANNELS], _SMALL_STRIDES, (1, 28, 28), 10)


SPACES = {"mobilenet_v1": mobilenet_v1, "mobilenet_v1_small": mobilenet_v1_small}


def get_space(name_or_path: str) -> SearchSpace:
    """A shipped space by name, or a space JSON file."""
    if name_or_path in SPACES:
        return SPACES[name_or_path]()
    p = Path(name_or_path)
    from .graph_families import GRAPH_SPACES, is_graph_space_file  # the graph module imports this one

    if name_or_path in GRAPH_SPACES or is_graph_space_file(p):
        raise ValueError(f"unknown search space {name_or_path!r} for this command: it is a graph space; this "
                         f"command takes the chain spaces {sorted(SPACES)} only (the pipeline's commands, `space`, "
                         "`profile`, `fit`, `validate`, `train`, `search`, `evaluate`, `export` and `run`, take "
                         "graph spaces too; the benchmarks do not yet)")
    if p.suffix == ".json" and p.exists():
        return SearchSpace.from_dict(json.loads(p.read_text()))
    raise ValueError(f"unknown search space {name_or_path!r}; shipped: {sorted(SPACES)}, or give a space JSON file")


def lookup_space(name_or_path: str):
    """Any shipped space by name (chain `SearchSpace` or `GraphSpace`), or a space JSON file of either format."""
    from .graph_families import GRAPH_SPACES, get_graph_space, is_graph_space_file

    if name_or_path in GRAPH_SPACES or is_graph_space_file(name_or_path):
        return get_graph_space(name_or_path)
    try:
        return get_space(name_or_path)
    except ValueError as e:
        if "unknown search space" in str(e):
            raise ValueError(f"unknown search space {name_or_path!r}; shipped: {sorted(SPACES)} (chain) and "
                             f"{sorted(GRAPH_SPACES)} (graph), or give a space JSON file") from None
        raise


def check_fingerprint(found: str, expected: SearchSpace, what: str) -> None:
    """Refuse an artefact made for another search space."""
    if found != expected.fingerprint:
        raise ValueError(
            f"{what} was made for search space fingerprint {found}, but this space "
            f"({expected.name}, {expected.input_shape}) has {expected.fingerprint}; "
            "use the same --space (and input shape) that produced it, or regenerate it"
        )


def parse_multiplier(text: str, variables: Sequence[tuple[Sequence[int], int]], space_name: str) -> float:
    """'x0.75' -> 0.75, within the multipliers the (choices, base) of each variable span (never a
    silent clamp); shared by chain and graph spaces."""
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
