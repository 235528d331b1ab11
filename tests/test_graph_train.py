"""Graph spaces in the training stages: unaries measured per channel group after training, and the
slimmable graph supernet trained with the sandwich rule (OWS)."""
import json

import numpy as np
import pytest
import torch

from widthnas.mrf.unaries import Unaries


def _splits(space, n=96, seed=0):
    from widthnas.nas.data import Splits

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 255, (n, *space.input_shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    m, s = torch.full((space.input_shape[0],), 0.5), torch.full((space.input_shape[0],), 0.25)
    return Splits((x, y), (x[:64], y[:64]), (x[64:], y[64:]), m, s)


def test_space_indices_round_trip(graph_toy):
    w = graph_toy.uniform(0.75)
    assert graph_toy.widths_from_indices(graph_toy.indices(w)) == w
    assert graph_toy.parse_widths("x0.75") == w
    assert graph_toy.parse_widths(json.dumps(dict(zip([g.name for g in graph_toy.free_groups], w)))) == w


def test_measure_unaries_per_group(graph_toy, tmp_path):
    from widthnas.models.graph_net import SlimmableGraphNet
    from widthnas.nas.unary_eval import measure_unaries, sample_deltas

    torch.manual_seed(0)
    sup = SlimmableGraphNet(graph_toy)
    sp = _splits(graph_toy)
    idx, delta = sample_deltas(sup, sp, 20, batch=32, seed=1)
    assert idx.shape == (20, len(graph_toy.free_groups)) and np.isfinite(delta).all()
    top = [len(c) - 1 for c in graph_toy.choices]
    same = np.all(idx == top, axis=1)  # the widest network against itself: no loss increase
    assert np.allclose(delta[same], 0, atol=1e-6)
    u = measure_unaries(sup, sp, 24, batch=32, smooth=1.0, log=lambda *_: None)
    assert u.names == [g.name for g in graph_toy.free_groups]
    assert [len(l) for l in u.loss] == [len(c) for c in graph_toy.choices]
    assert all(l[-1] == 0 and np.all(np.diff(l) <= 1e-12) for l in u.loss)  # widest anchored, monotone
    u.save(tmp_path / "u.json")
    back = Unaries.load(tmp_path / "u.json")
    assert back.names == u.names and back.space_fingerprint == graph_toy.fingerprint
    one = measure_unaries(sup, sp, 0, batch=32, design="one-at-a-time", log=lambda *_: None)
    assert one.names == u.names and [len(l) for l in one.loss] == [len(l) for l in u.loss]
