"""Which networks to profile: uniform random widths, or coverage-biased widths that measure the
least-measured (layer, c_in, c_out) table entries next."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from widthnas.models.space import SearchSpace


def block_shapes(space: SearchSpace) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(c_in choices, c_out choices) of every latency block: stem, the L-1 dwsep blocks, the head."""
    ch = space.choices
    shapes = [((space.input_shape[0],), ch[0])]
    shapes += [(ch[k - 1], ch[k]) for k in range(1, space.num_layers)]
    shapes.append((ch[-1], (space.num_classes,)))
    return shapes


def block_entries(idx: Sequence[int]) -> list[tuple[int, int]]:
    """(c_in index, c_out index) of every block for a configuration given as width indices."""
    idx = list(idx)
    return [(0, idx[0])] + [(idx[k - 1], idx[k]) for k in range(1, len(idx))] + [(idx[-1], 0)]


class UniformSampler:
    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space, self.rng = space, np.random.default_rng(seed)

    def observe(self, widths: Sequence[int]) -> None:
        pass

    def next(self) -> list[int]:
        return [int(self.rng.choice(c)) for c in self.space.choices]


class CoverageSampler:
    """Each new network minimises the summed measurement counts of its table entries.

    The minimum over all configurations is a min-sum chain problem, solved exactly by dynamic
    programming; jitter summing to less than one count breaks ties, so a new entry always wins.
    """

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space, self.rng = space, np.random.default_rng(seed)
        self.counts = [np.zeros((len(ci), len(co))) for ci, co in block_shapes(space)]

    def observe(self, widths: Sequence[int]) -> None:
        for k, (a, b) in enumerate(block_entries(self.space.indices(widths))):
            self.counts[k][a, b] += 1

    def next(self) -> list[int]:
        from widthnas.mrf.chain import max_sum

        L = self.space.num_layers
        jitter = 1.0 / (len(self.counts) + 1)
        cost = [c + jitter * self.rng.random(c.shape) for c in self.counts]
        unary = [np.zeros(len(c)) for c in self.space.choices]
        unary[0] -= cost[0][0]
        unary[-1] -= cost[L][:, 0]
        pair = [-cost[k] for k in range(1, L)]
        idx, _ = max_sum(unary, pair)
        return self.space.widths_from_indices(idx)


def make_sampler(space: SearchSpace, kind: str, seed: int = 0, seen: Iterable[Sequence[int]] = ()):
    """A sampler for a chain or a graph space (graph_sampling.py), having observed `seen`."""
    if kind not in ("uniform", "coverage"):
        raise ValueError(f"unknown sampling {kind!r}; choose 'uniform' or 'coverage'")
    from widthnas.models.graph_space import GraphSpace

    if isinstance(space, GraphSpace):
        from .graph_sampling import GraphCoverageSampler, GraphUniformSampler

        s = (GraphUniformSampler if kind == "uniform" else GraphCoverageSampler)(space, seed)
    else:
        s = (UniformSampler if kind == "uniform" else CoverageSampler)(space, seed)
    for w in seen:
        s.observe(w)
    return s
