"""MobileNet-v1 as torch networks over its graph space: the plain network has the paper's layers at the
chosen widths, and a materialised network is the supernet's slice. (Slicing against a hand-written plain
network and the narrow pass's conv shapes: tests/test_graph_space.py, MobileNet-v1 among its spaces.)"""
import numpy as np
import pytest
import torch

from widthnas.models.net import SlimmableGraphNet, build_network

SMALL_STRIDES = [1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1]  # mobilenet_v1_small, written independently


def _convs(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("seed", range(3))
def test_plain_network_has_every_layers_channels_and_strides(small, seed):
    rng = np.random.default_rng(seed)
    widths = [int(rng.choice(c)) for c in small.choices]
    net = build_network(small, widths).eval()
    convs = _convs(net)
    L = len(small.free_groups)
    assert len(convs) == 1 + 2 * (L - 1)
    assert convs[0].weight.shape == (widths[0], small.input_shape[0], 3, 3) and convs[0].stride == (1, 1)
    for i in range(1, L):
        dw, pw = convs[2 * i - 1], convs[2 * i]
        assert dw.weight.shape == (widths[i - 1], 1, 3, 3) and dw.groups == widths[i - 1], i
        assert dw.stride == (SMALL_STRIDES[i],) * 2, i
        assert pw.weight.shape == (widths[i], widths[i - 1], 1, 1) and pw.stride == (1, 1), i
    assert net.layers["fc"].weight.shape == (small.num_classes, widths[-1])
    sizes = []  # every layer's output: channels = its width, side = the paper's geometry
    hooks = [c.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:]))) for c in convs[::2]]
    with torch.no_grad():
        assert net(torch.randn(2, *small.input_shape)).shape == (2, small.num_classes)
    for h in hooks:
        h.remove()
    side, want = small.input_shape[1], []
    for w, s in zip(widths, SMALL_STRIDES):
        side = (side - 1) // s + 1  # 3x3 convs, padding 1
        want.append((w, side, side))
    assert sizes == want and want[-1][1] == 4


def test_materialize_equals_supernet_slice(small):
    torch.manual_seed(0)
    sup = SlimmableGraphNet(small)
    sup.train()
    with torch.no_grad():
        for _ in range(3):  # give BN non-trivial running statistics
            sup(torch.randn(8, *small.input_shape), small.max_widths)
    sup.eval()
    x = torch.randn(4, *small.input_shape)
    outs = []
    for widths in (small.min_widths, small.uniform(0.7), small.max_widths):
        net = sup.materialize(widths).eval()
        n_net, n_sup = sum(p.numel() for p in net.parameters()), sum(p.numel() for p in sup.parameters())
        assert n_net < n_sup if widths != small.max_widths else n_net == n_sup
        assert [c.out_channels for c in _convs(net)][::2] == list(widths)
        with torch.no_grad():
            outs.append(net(x))
            torch.testing.assert_close(outs[-1], sup(x, widths), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(outs[0], outs[-1], atol=1e-3)  # the widths matter
