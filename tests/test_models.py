import numpy as np
import pytest
import torch

from widthnas.models.mobilenet import SlimmableMobileNet, build_network


def _convs(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("seed", range(3))
def test_plain_network_has_every_layers_channels_and_strides(small, seed):
    rng = np.random.default_rng(seed)
    widths = [int(rng.choice(c)) for c in small.choices]
    net = build_network(small, widths).eval()
    convs = _convs(net)
    assert len(convs) == 1 + 2 * (small.num_layers - 1)
    assert convs[0].weight.shape == (widths[0], small.input_shape[0], 3, 3) and convs[0].stride == (small.layers[0].stride,) * 2
    for i in range(1, small.num_layers):
        dw, pw = convs[2 * i - 1], convs[2 * i]
        assert dw.weight.shape == (widths[i - 1], 1, 3, 3) and dw.groups == widths[i - 1], i
        assert dw.stride == (small.layers[i].stride,) * 2, i
        assert pw.weight.shape == (widths[i], widths[i - 1], 1, 1) and pw.stride == (1, 1), i
    assert net.classifier.weight.shape == (small.num_classes, widths[-1])
    sizes = []  # every layer's output: channels = its width, side = the space's geometry
    hooks = [layer.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:]))) for layer in net.features]
    assert net(torch.randn(2, *small.input_shape)).shape == (2, small.num_classes)
    for h in hooks:
        h.remove()
    assert sizes == [(w, s, s) for w, s in zip(widths, small.spatial_sizes())]


def test_sliced_supernet_computes_the_plain_network_it_contains(small):
    """A plain network written into the first channels of the supernet's widest weights: the supernet
    at those widths must compute exactly that network (slicing is independent of `materialize`)."""
    torch.manual_seed(0)
    widths = small.uniform(0.6)
    plain = build_network(small, widths)
    for m in plain.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            for t in (m.running_mean, m.weight, m.bias):
                t.data.uniform_(-0.5, 0.5)
            m.running_var.data.uniform_(0.5, 2.0)
    sup = SlimmableMobileNet(small)
    with torch.no_grad():
        for (name, p), big in zip(plain.state_dict().items(), sup.full.state_dict().values()):
            if p.dim() == 0:
                big.copy_(p)
            elif name.startswith("classifier.weight"):
                big[:, :p.shape[1]] = p
            elif name.startswith("classifier"):
                big.copy_(p)
            else:
                big[tuple(slice(0, n) for n in p.shape)] = p
    plain.eval()
    sup.eval()
    x = torch.randn(4, *small.input_shape)
    torch.testing.assert_close(sup(x, widths), plain(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sup.materialize(widths).eval()(x), plain(x), rtol=1e-4, atol=1e-5)


def test_materialize_equals_supernet_slice(small):
    torch.manual_seed(0)
    sup = SlimmableMobileNet(small)
    sup.train()
    for _ in range(3):  # give BN non-trivial running statistics
        sup(torch.randn(8, *small.input_shape), small.max_widths)
    sup.eval()
    x = torch.randn(4, *small.input_shape)
    for widths in (small.min_widths, small.uniform(0.7), small.max_widths):
        net = sup.materialize(widths).eval()
        assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in sup.parameters()) or widths == small.max_widths
        assert [c.out_channels for c in _convs(net)][::2] == list(widths)
        torch.testing.assert_close(net(x), sup(x, widths), rtol=1e-4, atol=1e-5)


def test_narrow_pass_uses_smaller_convolutions(small):
    sup = SlimmableMobileNet(small).eval()
    seen = []
    hook = torch.nn.functional.conv2d
    try:
        torch.nn.functional.conv2d = lambda x, w, *a, **k: (seen.append(tuple(w.shape)), hook(x, w, *a, **k))[1]
        sup(torch.randn(1, *small.input_shape), small.min_widths)
    finally:
        torch.nn.functional.conv2d = hook
    w = small.min_widths  # every convolution has the narrow shape, not masked widest channels
    expected = [(w[0], small.input_shape[0], 3, 3)]
    for i in range(1, small.num_layers):
        expected += [(w[i - 1], 1, 3, 3), (w[i], w[i - 1], 1, 1)]
    assert seen == expected
